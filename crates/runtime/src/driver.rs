//! The `Driver` trait: how the control plane starts, watches, re-finds and stops instances,
//! whatever runs them (local processes today; containers and pods later).

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use crate::process::{StartError, StopOutcome};
use crate::procfs::ProcessId;
use crate::spec::{ExitStatus, InstanceSpec};

/// A boxed future, so `Driver` can be used as `dyn Driver`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the control plane records about a started instance to find it again after its own
/// restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub instance: ProcessId,
    pub shim: ProcessId,
    /// Where the instance's exit status appears once it has ended.
    pub exit_path: PathBuf,
}

/// A freshly started instance.
pub struct Running {
    pub recorded: Recorded,
    /// Resolves with the exit status when the instance has ended.
    pub ended: BoxFuture<'static, Option<ExitStatus>>,
}

impl fmt::Debug for Running {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Running")
            .field("recorded", &self.recorded)
            .finish_non_exhaustive()
    }
}

/// Runs instances of services.
pub trait Driver: Send + Sync + fmt::Debug {
    /// Starts one instance; resolves once it runs (not once it is ready).
    fn start<'a>(&'a self, spec: &'a InstanceSpec) -> BoxFuture<'a, Result<Running, StartError>>;

    /// Whether a recorded instance is still the one running (for re-adoption).
    fn is_running(&self, recorded: &Recorded) -> bool;

    /// Resolves with the exit status once a re-adopted instance has ended.
    fn watch(&self, recorded: Recorded) -> BoxFuture<'static, Option<ExitStatus>>;

    /// How a recorded instance ended, if it has.
    fn exit_status(&self, recorded: &Recorded) -> Option<ExitStatus>;

    /// Asks the instance to stop, and forces it after `grace`.
    fn stop(&self, recorded: Recorded, grace: Duration) -> BoxFuture<'static, StopOutcome>;

    /// Asks a running instance to reload its configuration (SIGHUP for processes); false
    /// when it is not running.
    fn reload(&self, recorded: &Recorded) -> bool;
}
