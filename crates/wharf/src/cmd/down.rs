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
    /// Also remove the stack's named volumes (their data is lost). Without it they are kept
    /// for the next `up`, as compose does.
    #[arg(long)]
    pub volumes: bool,
}

pub fn run(global: &Global, args: &DownArgs) -> anyhow::Result<ExitStatus> {
    if args.volumes && args.service.is_some() {
        eprintln!("error: `--volumes` removes a whole stack's volumes; run it without a service");
        return Ok(ExitStatus::Invalid);
    }
    let state_dir = global.state_dir();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let status = runtime.block_on(stop(global, args, &state_dir))?;
    if status != ExitStatus::Ok || args.service.is_some() {
        return Ok(status);
    }
    runtime.block_on(remove_container_resources(global, args.volumes, &state_dir))
}

/// After a whole-stack `down`: the stack's container network goes (it is made again at the
/// next `up`), and with `--volumes` its named volumes. A stack without containers has
/// neither, and no engine is needed.
async fn remove_container_resources(
    global: &Global,
    volumes: bool,
    state_dir: &std::path::Path,
) -> anyhow::Result<ExitStatus> {
    let Some(stack) = crate::manifest_file::ManifestFile::read(global)
        .ok()
        .and_then(|manifest| manifest.load(None).stack)
    else {
        return Ok(ExitStatus::Ok);
    };
    let engine = wharf_container::Engine::new(None);
    let owner = crate::cmd::up::absolute(state_dir)?.display().to_string();
    if stack.services.values().any(|s| s.image.is_some()) {
        // Stopped without a control plane, its containers ended unwatched: remove them.
        if let Err(error) = engine.remove_ended(&owner).await {
            eprintln!("warning: {error}");
        }
        engine
            .remove_network(&wharf_control::container_network(&stack.name))
            .await;
        // And the networks the manifest declares (`networks:`), found by their labels.
        engine.remove_networks(&stack.name, &owner).await;
    }
    if !volumes {
        return Ok(ExitStatus::Ok);
    }
    match engine.remove_volumes(&stack.name, &owner).await {
        Ok(removed) => {
            for name in removed {
                eprintln!("removed volume {name}");
            }
            Ok(ExitStatus::Ok)
        }
        Err(error) => {
            eprintln!("error: {error}");
            Ok(ExitStatus::Failed)
        }
    }
}

/// Stops the stack (or one service): through the control plane, or without one.
async fn stop(
    global: &Global,
    args: &DownArgs,
    state_dir: &std::path::Path,
) -> anyhow::Result<ExitStatus> {
    let state_dir = state_dir.to_owned();
    {
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
                let graces = stop_graces(global);
                stop_recorded(&state_dir, args.service.as_deref(), &order, &graces).await
            }
        }
    }
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

/// Each service's own `stop.grace`, when the manifest can be read.
fn stop_graces(global: &Global) -> std::collections::HashMap<String, Duration> {
    let Ok(manifest) = crate::manifest_file::ManifestFile::read(global) else {
        return Default::default();
    };
    manifest
        .load(None)
        .stack
        .map(|stack| {
            stack
                .services
                .iter()
                .filter_map(|(name, s)| Some((name.clone(), s.stop.grace?.as_std())))
                .collect()
        })
        .unwrap_or_default()
}

/// Stops what the store says is running, without a control plane, dependents first — under
/// the lock, through the same use case that removes each instance's secret files.
async fn stop_recorded(
    state_dir: &std::path::Path,
    service: Option<&str>,
    order: &[String],
    graces: &std::collections::HashMap<String, Duration>,
) -> anyhow::Result<ExitStatus> {
    if !wharf_ops::read::state_exists(state_dir)? {
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
    // Each handle goes to the driver that made it; the container driver first learns which
    // containers still run.
    let driver = crate::cmd::up::drivers()?;
    wharf_runtime::Driver::refresh(&driver).await;
    let grace = |name: &str| graces.get(name).copied();
    let stop = wharf_ops::stop::stop_recorded_within(
        &lock, &mut store, &driver, &actor, service, order, &grace,
    );
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
                    "error: cannot stop {}/{}: no driver of this wharf reads its recorded handle",
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
