//! The process driver: instances as local processes, each behind a shim.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::driver::{BoxFuture, Driver, Recorded, Running};
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
            let mut started = ProcessDriver::start(self, spec).await?;
            let exit_path = spec.exit_path.clone();
            let recorded = Recorded {
                instance: started.instance,
                shim: started.shim,
                exit_path: exit_path.clone(),
            };
            // The shim is our child: awaiting it is exact and costs no polling.
            let ended = Box::pin(async move {
                let _ = started.shim_child.wait().await;
                read_exit(&exit_path)
            });
            Ok(Running { recorded, ended })
        })
    }

    fn is_running(&self, recorded: &Recorded) -> bool {
        recorded.instance.is_running()
    }

    fn watch(&self, recorded: Recorded) -> BoxFuture<'static, Option<ExitStatus>> {
        Box::pin(async move {
            wait_adopted(recorded.instance, recorded.shim).await;
            read_exit(&recorded.exit_path)
        })
    }

    fn exit_status(&self, recorded: &Recorded) -> Option<ExitStatus> {
        read_exit(&recorded.exit_path)
    }

    fn stop(&self, recorded: Recorded, grace: Duration) -> BoxFuture<'static, StopOutcome> {
        Box::pin(stop_instance(recorded.instance, grace))
    }

    fn reload(&self, recorded: &Recorded) -> bool {
        signal_instance(recorded.instance, Signal::HUP)
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
}

/// SIGTERM, wait up to `grace`, then SIGKILL: the contract every orchestrator offers.
pub async fn stop_instance(instance: ProcessId, grace: Duration) -> StopOutcome {
    if !signal_instance(instance, Signal::TERM) {
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
}
