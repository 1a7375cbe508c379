//! Instances of services on this machine: the process driver and its shim, instance logs,
//! process identity from `/proc`, and the restart policy.
//!
//! The control plane decides *what* should run; this crate knows *how* to run, stop, watch and
//! re-find a process, so that services survive the control plane's death and can be adopted.

pub mod driver;
pub mod handle;
pub mod image;
pub mod logs;
pub mod process;
pub mod procfs;
pub mod restart;
pub mod shim;
pub mod spec;

pub use driver::{BoxFuture, CONTAINER_DRIVER, Driver, Drivers, ExecInside, Executed, Running};
pub use handle::{HandleError, HandleSummary, InstanceHandle};
pub use process::{
    PROCESS_DRIVER, ProcessDriver, StartError, Started, StopOutcome, read_exit, signal_by_name,
    signal_instance, stop_instance, stop_instance_with, wait_adopted,
};
pub use procfs::ProcessId;
pub use restart::{Decision, RestartHistory, RestartLimits, RestartPolicy};
pub use spec::{
    BuildSpec, ContainerOptions, ContainerSpec, ExitStatus, InstanceSpec, NetworkSpec, PortMapping,
    PullPolicy, Ulimit, VolumeMount, VolumeSource,
};
