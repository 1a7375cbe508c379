//! `wharf down [SERVICE]`: stop the stack (or one service) gracefully, dependents first.
//!
//! With a running control plane the request goes through its API. Without one (it crashed or
//! was killed), `down` stops the recorded instances itself, so nothing is ever left behind.

use std::time::Duration;

use serde_json::json;
use wharf_ops::{Actor, ControlLock};
use wharf_runtime::StopOutcome;

use crate::cli::Global;
use crate::client::{self, ApiRejected, NotRunning};
use crate::exit::ExitStatus;

#[derive(Debug, clap::Args)]
pub struct DownArgs {
    /// Stop only this service (default: the whole stack, and the control plane with it).
    pub service: Option<String>,
}

pub fn run(global: &Global, args: &DownArgs) -> anyhow::Result<ExitStatus> {
    let state_dir = global.state_dir();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let body = json!({"service": args.service});
        // Unbounded: the control plane answers once everything has stopped (see
        // `call_ok_unbounded`).
        match client::call_ok_unbounded(&state_dir, "POST", "/v1/down", Some(body)).await {
            Ok(_) => {
                if args.service.is_none() {
                    wait_for_exit(&state_dir).await;
                }
                eprintln!("stopped {}", args.service.as_deref().unwrap_or("the stack"));
                Ok(ExitStatus::Ok)
            }
            Err(err) if err.is::<ApiRejected>() => {
                eprintln!("error: {err}");
                Ok(ExitStatus::Invalid)
            }
            // No control plane answers (none runs, or a killed one is being torn down and
            // reset the connection): stop what it recorded, once its lock is free.
            Err(err) => {
                if !err.is::<NotRunning>() {
                    tracing::debug!(error = %err, "the control plane did not answer; stopping without it");
                }
                let order = dependency_order(global);
                stop_recorded(&state_dir, args.service.as_deref(), &order).await
            }
        }
    })
}

/// Waits (bounded) until the control plane has released its lock, so that a `wharf up` right
/// after `down` finds it free. Not its pid file: the control plane removes that first, then
/// shuts its runtime down, and only then lets go of the lock.
async fn wait_for_exit(state_dir: &std::path::Path) {
    let dir = state_dir.to_owned();
    let waited = tokio::task::spawn_blocking(move || {
        ControlLock::acquire_within(&dir, Duration::from_secs(30))
    })
    .await;
    match waited {
        // Taken and dropped at once: the control plane has gone.
        Ok(Ok(Some(_lock))) => {}
        Ok(Ok(None)) => eprintln!(
            "warning: the stack stopped, but its control plane still holds {} after 30s",
            wharf_ops::LOCK_FILE
        ),
        Ok(Err(error)) => tracing::warn!(%error, "cannot wait for the control plane's lock"),
        Err(error) => tracing::warn!(%error, "cannot wait for the control plane's lock"),
    }
}

/// The manifest's services, dependencies first, when the manifest can be read; without it
/// the recorded instances are stopped in reverse order of their names.
fn dependency_order(global: &Global) -> Vec<String> {
    let Ok(manifest) = crate::manifest_file::ManifestFile::read(global) else {
        return Vec::new();
    };
    manifest
        .load(None)
        .stack
        .map(|stack| wharf_control::plan::dependency_order(&stack))
        .unwrap_or_default()
}

/// Stops what the store says is running, without a control plane, dependents first — under
/// the lock, through the same use case that removes each instance's secret files.
async fn stop_recorded(
    state_dir: &std::path::Path,
    service: Option<&str>,
    order: &[String],
) -> anyhow::Result<ExitStatus> {
    if !state_dir.join(wharf_ops::read::DB_FILE).exists() {
        eprintln!("nothing to stop: no state in {}", state_dir.display());
        return Ok(ExitStatus::Ok);
    }
    // The control plane may have just exited (its socket is gone) but not yet let go.
    let lock = match ControlLock::acquire_within(state_dir, Duration::from_secs(10))? {
        Some(lock) => lock,
        None => {
            eprintln!(
                "error: a control plane holds {} but does not answer; try again in a moment",
                wharf_ops::LOCK_FILE
            );
            return Ok(ExitStatus::Failed);
        }
    };
    let mut store = wharf_ops::read::open(&lock)?;
    let actor = Actor::from_environment();
    // Instances are started by the process driver, so their handles are its to use.
    let driver = crate::cmd::up::process_driver()?;
    let stop = wharf_ops::stop::stop_recorded(&lock, &mut store, &driver, &actor, service, order);
    let stopped = match stop.await {
        Ok(stopped) => stopped,
        Err(err) if err.kind() == wharf_ops::OpsErrorKind::NotFound => {
            eprintln!("error: {err}");
            return Ok(ExitStatus::Invalid);
        }
        Err(err) => return Err(err.into()),
    };
    let mut refused = false;
    for stopped in &stopped {
        let how = match stopped.outcome {
            StopOutcome::AlreadyGone => "already gone",
            StopOutcome::Graceful => "graceful",
            StopOutcome::Killed => "killed after the grace period",
            StopOutcome::Refused => {
                // Nothing was stopped: the row stays for whatever can use its handle.
                eprintln!(
                    "error: cannot stop {}/{}: its recorded handle is not the process driver's",
                    stopped.service, stopped.ordinal
                );
                refused = true;
                continue;
            }
        };
        let pid = stopped
            .pid
            .map_or_else(|| "-".to_owned(), |p| p.to_string());
        eprintln!(
            "stopped {}/{} (pid {pid}, {how})",
            stopped.service, stopped.ordinal
        );
    }
    Ok(if refused {
        ExitStatus::Failed
    } else {
        ExitStatus::Ok
    })
}
