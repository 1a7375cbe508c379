//! The process driver: instances as local processes, each behind a shim.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use serde::{Deserialize, Serialize};

use crate::driver::{BoxFuture, Driver, Running};
use crate::handle::{HandleSummary, InstanceHandle};
use crate::procfs::ProcessId;
use crate::spec::{ExitStatus, InstanceSpec};

/// How long a shim may take to report that the instance started.
const START_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The instance could not be started (command not found, …): the user's problem.
    #[error("{service}[{index}]: {reason}")]
    Refused {
        service: String,
        index: u32,
        reason: String,
    },
    /// The shim itself failed: wharf's problem.
    #[error("{service}[{index}]: the shim failed: {reason}")]
    Shim {
        service: String,
        index: u32,
        reason: String,
    },
}

/// A started instance.
#[derive(Debug)]
pub struct Started {
    pub shim: ProcessId,
    pub instance: ProcessId,
    /// The shim as our child: awaiting it tells when the instance ended (no polling).
    pub shim_child: tokio::process::Child,
}

/// The driver kind in the handles of the process driver.
pub const PROCESS_DRIVER: &str = "process";

/// What the process driver keeps in an instance's handle: the instance and its shim (pid and
/// start time each, since a pid alone can be reused) and where the shim writes the exit
/// status, so re-adoption needs nothing else. Inside the handle as
/// `{"instance": {"pid", "start_time"}, "shim": {"pid", "start_time"}, "exit_path"}` (the
/// store's migration from the old pid columns builds exactly this).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ProcessHandle {
    instance: ProcessId,
    shim: ProcessId,
    exit_path: PathBuf,
    /// The service's stop signal (`stop.signal`) when it is not SIGTERM, kept here so a
    /// control plane that adopted the instance stops it the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stop_signal: Option<String>,
}

impl ProcessHandle {
    fn into_handle(self) -> Result<InstanceHandle, crate::handle::HandleError> {
        InstanceHandle::new(PROCESS_DRIVER, &self)
    }

    /// The process handle inside `handle`, or `None` (logged) when it is another driver's or
    /// malformed.
    fn of(handle: &InstanceHandle, action: &'static str) -> Option<ProcessHandle> {
        handle
            .data(PROCESS_DRIVER)
            .inspect_err(|error| tracing::error!(%error, action, "instance handle refused"))
            .ok()
    }
}

/// Starts instances through a shim program (`wharf __shim`).
#[derive(Debug, Clone)]
pub struct ProcessDriver {
    shim_program: PathBuf,
    shim_args: Vec<String>,
}

impl ProcessDriver {
    pub fn new(shim_program: PathBuf, shim_args: Vec<String>) -> Self {
        ProcessDriver {
            shim_program,
            shim_args,
        }
    }

    /// Starts one instance and waits until its process exists (not until it is ready).
    pub async fn start(&self, spec: &InstanceSpec) -> Result<Started, StartError> {
        let shim_error = |reason: String| StartError::Shim {
            service: spec.service.clone(),
            index: spec.index,
            reason,
        };
        let mut child = tokio::process::Command::new(&self.shim_program)
            .args(&self.shim_args)
            // wharf's own credentials stay with wharf: not in the shim, not in the instance.
            .env_remove("WHARF_MASTER_KEY")
            .env_remove("WHARF_API_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // The shim outlives us: it must never write to a pipe we own.
            .stderr(Stdio::null())
            .kill_on_drop(false)
            .spawn()
            .map_err(|err| {
                shim_error(format!(
                    "cannot start {}: {err}",
                    self.shim_program.display()
                ))
            })?;
        // Holds resolved secrets: wiped once written to the shim.
        let spec_json = zeroize::Zeroizing::new(
            serde_json::to_vec(spec).map_err(|err| shim_error(err.to_string()))?,
        );
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| shim_error("no stdin".to_owned()))?;
        stdin
            .write_all(&spec_json)
            .await
            .map_err(|err| shim_error(format!("cannot send the spec: {err}")))?;
        drop(stdin);
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| shim_error("no stdout".to_owned()))?;
        let mut line = String::new();
        let read =
            tokio::time::timeout(START_TIMEOUT, BufReader::new(stdout).read_line(&mut line)).await;
        if !matches!(read, Ok(Ok(n)) if n > 0) {
            let _ = child.start_kill();
            return Err(shim_error("no answer from the shim".to_owned()));
        }
        let shim_pid = child.id().map_or(0, |pid| pid as i32);
        match parse_announcement(line.trim()) {
            Ok(instance) => Ok(Started {
                shim: ProcessId::of(shim_pid).unwrap_or(ProcessId {
                    pid: shim_pid,
                    start_time: 0,
                }),
                instance,
                shim_child: child,
            }),
            Err(reason) => {
                let _ = child.wait().await;
                Err(StartError::Refused {
                    service: spec.service.clone(),
                    index: spec.index,
                    reason,
                })
            }
        }
    }
}

impl Driver for ProcessDriver {
    fn start<'a>(&'a self, spec: &'a InstanceSpec) -> BoxFuture<'a, Result<Running, StartError>> {
        Box::pin(async move {
            // The handle is JSON text: refuse a path it cannot carry before starting anything.
            if spec.exit_path.to_str().is_none() {
                return Err(StartError::Shim {
                    service: spec.service.clone(),
                    index: spec.index,
                    reason: format!("exit path {} is not UTF-8", spec.exit_path.display()),
                });
            }
            let mut started = ProcessDriver::start(self, spec).await?;
            let exit_path = spec.exit_path.clone();
            let process = ProcessHandle {
                instance: started.instance,
                shim: started.shim,
                exit_path: exit_path.clone(),
                stop_signal: spec.stop_signal.clone(),
            };
            let handle = match process.into_handle() {
                Ok(handle) => handle,
                Err(error) => {
                    signal_instance(started.instance, Signal::KILL);
                    return Err(StartError::Shim {
                        service: spec.service.clone(),
                        index: spec.index,
                        reason: error.to_string(),
                    });
                }
            };
            // The shim is our child: awaiting it is exact and costs no polling.
            let ended = Box::pin(async move {
                let _ = started.shim_child.wait().await;
                read_exit(&exit_path)
            });
            Ok(Running { handle, ended })
        })
    }

    fn is_running(&self, handle: &InstanceHandle) -> bool {
        ProcessHandle::of(handle, "is_running").is_some_and(|p| p.instance.is_running())
    }

    fn watch(&self, handle: InstanceHandle) -> BoxFuture<'static, Option<ExitStatus>> {
        let process = ProcessHandle::of(&handle, "watch");
        Box::pin(async move {
            let process = process?;
            wait_adopted(process.instance, process.shim).await;
            read_exit(&process.exit_path)
        })
    }

    fn exit_status(&self, handle: &InstanceHandle) -> Option<ExitStatus> {
        read_exit(&ProcessHandle::of(handle, "exit_status")?.exit_path)
    }

    fn stop(&self, handle: InstanceHandle, grace: Duration) -> BoxFuture<'static, StopOutcome> {
        match ProcessHandle::of(&handle, "stop") {
            Some(process) => {
                let signal = process
                    .stop_signal
                    .as_deref()
                    .and_then(signal_by_name)
                    .unwrap_or(Signal::TERM);
                Box::pin(stop_instance_with(process.instance, signal, grace))
            }
            None => Box::pin(std::future::ready(StopOutcome::Refused)),
        }
    }

    fn reload(&self, handle: &InstanceHandle) -> bool {
        ProcessHandle::of(handle, "reload")
            .is_some_and(|p| signal_instance(p.instance, Signal::HUP))
    }

    fn describe(&self, handle: &InstanceHandle) -> HandleSummary {
        match ProcessHandle::of(handle, "describe") {
            Some(process) => HandleSummary {
                pid: u32::try_from(process.instance.pid).ok(),
                id: process.instance.pid.to_string(),
                image: None,
                ports: Vec::new(),
            },
            None => HandleSummary::default(),
        }
    }
}

fn parse_announcement(line: &str) -> Result<ProcessId, String> {
    if let Some(reason) = line.strip_prefix("failed ") {
        return Err(reason.to_owned());
    }
    let mut words = line
        .strip_prefix("started ")
        .ok_or_else(|| format!("unexpected shim answer `{line}`"))?
        .split(' ');
    let pid = words.next().and_then(|w| w.parse().ok());
    let start_time = words.next().and_then(|w| w.parse().ok());
    match (pid, start_time) {
        (Some(pid), Some(start_time)) => Ok(ProcessId { pid, start_time }),
        _ => Err(format!("unexpected shim answer `{line}`")),
    }
}

/// Sends `signal` to the instance's process group (the instance and its children), but only
/// if the recorded process is still the one running under that pid.
pub fn signal_instance(instance: ProcessId, signal: Signal) -> bool {
    if !instance.is_running() {
        return false;
    }
    Pid::from_raw(instance.pid)
        .is_some_and(|pid| rustix::process::kill_process_group(pid, signal).is_ok())
}

/// How a stop went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// It was not running any more.
    AlreadyGone,
    /// It exited within the grace period after SIGTERM.
    Graceful,
    /// It ignored SIGTERM and was killed.
    Killed,
    /// The handle was another driver's or malformed: nothing was signalled.
    Refused,
}

/// SIGTERM, wait up to `grace`, then SIGKILL: the contract every orchestrator offers.
pub async fn stop_instance(instance: ProcessId, grace: Duration) -> StopOutcome {
    stop_instance_with(instance, Signal::TERM, grace).await
}

/// The signals a service may be stopped with (the manifest's `stop.signal`), by name.
pub fn signal_by_name(name: &str) -> Option<Signal> {
    Some(match name {
        "SIGTERM" => Signal::TERM,
        "SIGINT" => Signal::INT,
        "SIGQUIT" => Signal::QUIT,
        "SIGHUP" => Signal::HUP,
        "SIGUSR1" => Signal::USR1,
        "SIGUSR2" => Signal::USR2,
        "SIGWINCH" => Signal::WINCH,
        "SIGKILL" => Signal::KILL,
        _ => return None,
    })
}

/// `signal`, wait up to `grace`, then SIGKILL.
pub async fn stop_instance_with(
    instance: ProcessId,
    signal: Signal,
    grace: Duration,
) -> StopOutcome {
    if !signal_instance(instance, signal) {
        return StopOutcome::AlreadyGone;
    }
    let deadline = Instant::now() + grace;
    let mut poll = tokio::time::interval(Duration::from_millis(25));
    while Instant::now() < deadline {
        poll.tick().await;
        if !instance.is_running() {
            return StopOutcome::Graceful;
        }
    }
    signal_instance(instance, Signal::KILL);
    // SIGKILL cannot be ignored; the bound only guards against a process stuck in the kernel.
    let deadline = Instant::now() + Duration::from_secs(5);
    while instance.is_running() && Instant::now() < deadline {
        poll.tick().await;
    }
    StopOutcome::Killed
}

/// The exit status the shim recorded, if the instance has ended.
pub fn read_exit(path: &std::path::Path) -> Option<ExitStatus> {
    let text = std::fs::read(path).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Waits until an instance whose shim is not our child has ended (after a re-adoption), by
/// polling: such a process can only be watched, not awaited.
pub async fn wait_adopted(instance: ProcessId, shim: ProcessId) {
    let mut poll = tokio::time::interval(Duration::from_millis(500));
    while instance.is_running() || shim.is_running() {
        poll.tick().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_parse() {
        assert_eq!(
            parse_announcement("started 42 1000"),
            Ok(ProcessId {
                pid: 42,
                start_time: 1000
            })
        );
        assert_eq!(
            parse_announcement("failed command not found: `x`"),
            Err("command not found: `x`".to_owned())
        );
        assert!(parse_announcement("hello").is_err());
    }

    fn driver() -> ProcessDriver {
        ProcessDriver::new(PathBuf::from("/nonexistent/wharf-shim"), Vec::new())
    }

    #[test]
    fn a_process_handle_round_trips_and_describes_its_pid() {
        let me = ProcessId::of(std::process::id() as i32).unwrap();
        let handle = ProcessHandle {
            instance: me,
            shim: me,
            exit_path: PathBuf::from("/state/run/api-0.exit"),
            stop_signal: Some("SIGQUIT".to_owned()),
        }
        .into_handle()
        .unwrap();
        let again: InstanceHandle = handle.to_string().parse().unwrap();
        assert_eq!(again, handle);
        let driver = driver();
        assert!(driver.is_running(&again));
        assert_eq!(
            driver.describe(&again),
            HandleSummary {
                pid: Some(std::process::id()),
                id: std::process::id().to_string(),
                image: None,
                ports: Vec::new(),
            }
        );
    }

    /// The store's migration builds this text from the old pid columns with `json_object`.
    #[test]
    fn the_handle_the_store_migration_writes_is_a_process_handle() {
        let text = r#"{"driver":"process","data":{"instance":{"pid":4242,"start_time":99},"shim":{"pid":4241,"start_time":98},"exit_path":"/s/run/api-0.exit"}}"#;
        let handle: InstanceHandle = text.parse().unwrap();
        assert_eq!(
            ProcessHandle::of(&handle, "test"),
            Some(ProcessHandle {
                instance: ProcessId {
                    pid: 4242,
                    start_time: 99
                },
                shim: ProcessId {
                    pid: 4241,
                    start_time: 98
                },
                exit_path: PathBuf::from("/s/run/api-0.exit"),
                stop_signal: None,
            })
        );
        assert_eq!(driver().describe(&handle).pid, Some(4242));
    }

    #[tokio::test]
    async fn another_drivers_or_a_malformed_handle_is_refused_without_a_panic() {
        let driver = driver();
        let foreign = InstanceHandle::new("container", &serde_json::json!({"id": "3f2a"})).unwrap();
        let malformed =
            InstanceHandle::new(PROCESS_DRIVER, &serde_json::json!({"pid": "x"})).unwrap();
        for handle in [foreign, malformed] {
            assert!(!driver.is_running(&handle), "{handle}");
            assert!(!driver.reload(&handle), "{handle}");
            assert_eq!(driver.exit_status(&handle), None, "{handle}");
            assert_eq!(
                driver.describe(&handle),
                HandleSummary::default(),
                "{handle}"
            );
            assert_eq!(driver.watch(handle.clone()).await, None, "{handle}");
            assert_eq!(
                driver.stop(handle.clone(), Duration::ZERO).await,
                StopOutcome::Refused,
                "{handle}"
            );
        }
    }
}
