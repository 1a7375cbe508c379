//! The `Driver` trait: how the control plane starts, watches, re-finds and stops instances,
//! whatever runs them (local processes today; containers and pods later).
//!
//! Every method after `start` takes the [`InstanceHandle`] the driver produced: nothing above
//! a driver knows how it finds its instance. A driver refuses another driver's handle or a
//! malformed one (false, `None`, [`StopOutcome::Refused`], with a log), never panics.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
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

    /// Brings what the synchronous questions (`is_running`, `exit_status`) answer from up to
    /// date, before a restarted control plane adopts. A driver that asks the kernel directly
    /// (processes) has nothing to do; one behind an API (containers) lists its instances once
    /// here, so the loop never waits on that API.
    fn refresh(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    /// How to run a command inside the instance behind `handle` (an exec probe of a
    /// container), or `None` when its commands run on the host as its own processes do.
    fn exec_inside(&self, _handle: &InstanceHandle) -> Option<Arc<dyn ExecInside>> {
        None
    }
}

/// Runs commands inside one instance (a container's `exec`).
pub trait ExecInside: Send + Sync + fmt::Debug {
    /// Runs `command` (argv, no shell) to its end. Dropping the future abandons it.
    fn run(&self, command: Vec<String>) -> BoxFuture<'static, Result<Executed, String>>;
}

/// How a command run inside an instance ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed {
    /// Its exit code (`None` when the engine could not tell).
    pub code: Option<i64>,
    /// The end of its output, stdout and stderr interleaved (bounded by the driver).
    pub output: String,
}

/// Several drivers behind one: a start goes to the container driver when the spec has a
/// [`ContainerSpec`](crate::ContainerSpec), else to the process driver; every other call to
/// the driver whose kind the handle names. So a stack mixes processes and containers while
/// the control plane holds one `dyn Driver`.
#[derive(Debug, Clone)]
pub struct Drivers {
    pub process: std::sync::Arc<dyn Driver>,
    /// `None` when this wharf runs no containers (no service has `image:`).
    pub container: Option<std::sync::Arc<dyn Driver>>,
}

/// The driver kind in the handles of the container driver.
pub const CONTAINER_DRIVER: &str = "container";

impl Drivers {
    fn of(&self, handle: &InstanceHandle) -> &dyn Driver {
        match (&self.container, handle.driver()) {
            (Some(container), CONTAINER_DRIVER) => container.as_ref(),
            // Another kind goes to the process driver, which refuses it with a log.
            _ => self.process.as_ref(),
        }
    }
}

impl Driver for Drivers {
    fn start<'a>(&'a self, spec: &'a InstanceSpec) -> BoxFuture<'a, Result<Running, StartError>> {
        match (&spec.container, &self.container) {
            (None, _) => self.process.start(spec),
            (Some(_), Some(container)) => container.start(spec),
            (Some(_), None) => Box::pin(std::future::ready(Err(StartError::Refused {
                service: spec.service.clone(),
                index: spec.index,
                reason: "this wharf was started without a container driver".to_owned(),
            }))),
        }
    }

    fn is_running(&self, handle: &InstanceHandle) -> bool {
        self.of(handle).is_running(handle)
    }

    fn watch(&self, handle: InstanceHandle) -> BoxFuture<'static, Option<ExitStatus>> {
        self.of(&handle).watch(handle)
    }

    fn exit_status(&self, handle: &InstanceHandle) -> Option<ExitStatus> {
        self.of(handle).exit_status(handle)
    }

    fn stop(&self, handle: InstanceHandle, grace: Duration) -> BoxFuture<'static, StopOutcome> {
        self.of(&handle).stop(handle, grace)
    }

    fn reload(&self, handle: &InstanceHandle) -> bool {
        self.of(handle).reload(handle)
    }

    fn describe(&self, handle: &InstanceHandle) -> HandleSummary {
        self.of(handle).describe(handle)
    }

    fn exec_inside(&self, handle: &InstanceHandle) -> Option<Arc<dyn ExecInside>> {
        self.of(handle).exec_inside(handle)
    }

    fn refresh(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.process.refresh().await;
            if let Some(container) = &self.container {
                container.refresh().await;
            }
        })
    }
}
