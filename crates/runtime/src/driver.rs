//! The `Driver` trait: how the control plane starts, watches, re-finds and stops instances,
//! whatever runs them (local processes today; containers and pods later).
//!
//! Every method after `start` takes the [`InstanceHandle`] the driver produced: nothing above
//! a driver knows how it finds its instance. A driver refuses another driver's handle or a
//! malformed one (false, `None`, [`StopOutcome::Refused`], with a log), never panics.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::handle::{HandleSummary, InstanceHandle};
use crate::process::{StartError, StopOutcome};
use crate::spec::{ExitStatus, InstanceSpec};

/// A boxed future, so `Driver` can be used as `dyn Driver`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A freshly started instance.
pub struct Running {
    /// How its driver finds it again (the control plane stores it, opaque).
    pub handle: InstanceHandle,
    /// Resolves with the exit status when the instance has ended.
    pub ended: BoxFuture<'static, Option<ExitStatus>>,
}

impl fmt::Debug for Running {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Running")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

/// Runs instances of services.
pub trait Driver: Send + Sync + fmt::Debug {
    /// Starts one instance; resolves once it runs (not once it is ready).
    fn start<'a>(&'a self, spec: &'a InstanceSpec) -> BoxFuture<'a, Result<Running, StartError>>;

    /// Whether the instance behind a handle is still the one running (for re-adoption).
    fn is_running(&self, handle: &InstanceHandle) -> bool;

    /// Resolves with the exit status once a re-adopted instance has ended.
    fn watch(&self, handle: InstanceHandle) -> BoxFuture<'static, Option<ExitStatus>>;

    /// How the instance behind a handle ended, if it has.
    fn exit_status(&self, handle: &InstanceHandle) -> Option<ExitStatus>;

    /// Asks the instance to stop, and forces it after `grace`.
    fn stop(&self, handle: InstanceHandle, grace: Duration) -> BoxFuture<'static, StopOutcome>;

    /// Asks a running instance to reload its configuration (SIGHUP for processes); false
    /// when it is not running.
    fn reload(&self, handle: &InstanceHandle) -> bool;

    /// What to show people about the instance (a pid for processes), without the caller
    /// knowing what the handle holds.
    fn describe(&self, handle: &InstanceHandle) -> HandleSummary;
}
