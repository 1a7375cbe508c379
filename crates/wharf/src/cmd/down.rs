//! `wharf down [SERVICE]`: stop the stack (or one service) gracefully, dependents first.
//!
//! With a running control plane the request goes through its API. Without one (it crashed or
//! was killed), `down` stops the recorded instances itself, so nothing is ever left behind.

use std::time::{Duration, Instant};

use serde_json::json;
use wharf_control::PROXY_ROW;
use wharf_ledger::{Ledger, NewEntry};
use wharf_runtime::{Driver, InstanceHandle, StopOutcome};
use wharf_store::Store;

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
        match client::call_ok(&state_dir, "POST", "/v1/down", Some(body)).await {
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
            Err(err) if err.is::<NotRunning>() => {
                let order = dependency_order(global);
                stop_recorded(&state_dir, args.service.as_deref(), &order).await
            }
            Err(err) => Err(err),
        }
    })
}

/// Waits (bounded) until the control plane has released its lock.
async fn wait_for_exit(state_dir: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    while Instant::now() < deadline && state_dir.join(crate::cmd::up::PID_FILE).exists() {
        poll.tick().await;
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

/// Stops what the store says is running, without a control plane, dependents first.
async fn stop_recorded(
    state_dir: &std::path::Path,
    service: Option<&str>,
    order: &[String],
) -> anyhow::Result<ExitStatus> {
    if !state_dir.join(wharf_store::DB_FILE).exists() {
        eprintln!("nothing to stop: no state in {}", state_dir.display());
        return Ok(ExitStatus::Ok);
    }
    let mut store = Store::open(state_dir)?;
    let mut rows: Vec<_> = store
        .instances()?
        .into_iter()
        .filter(|r| service.is_none_or(|s| r.service == s))
        .collect();
    let rank = |name: &str| order.iter().position(|n| n == name).unwrap_or(usize::MAX);
    rows.sort_by(|a, b| {
        (rank(&a.service), &a.service, a.index).cmp(&(rank(&b.service), &b.service, b.index))
    });
    if let (Some(name), true) = (service, rows.is_empty()) {
        eprintln!("error: no instance of service `{name}` is recorded as running");
        return Ok(ExitStatus::Invalid);
    }
    let actor = crate::cmd::audit::actor();
    // Instances are started by the process driver, so their handles are its to use.
    let driver = crate::cmd::up::process_driver()?;
    let mut stopped = Vec::new();
    let mut refused = false;
    for row in rows.iter().rev() {
        let handle = row.handle.parse::<InstanceHandle>();
        let pid = handle.as_ref().ok().and_then(|h| driver.describe(h).pid);
        let outcome = match handle {
            Ok(handle) => driver.stop(handle, Duration::from_secs(10)).await,
            Err(_) => StopOutcome::Refused,
        };
        if outcome == StopOutcome::Refused {
            // Nothing was stopped: the row stays for whatever can use its handle.
            eprintln!(
                "error: cannot stop {}/{}: its recorded handle is not the process driver's",
                row.service, row.index
            );
            refused = true;
            continue;
        }
        stopped.push((row.service.clone(), row.index, pid, outcome));
        store.remove_instance(&row.service, row.index)?;
        if row.service == PROXY_ROW {
            // Its saved table names instances that are about to be gone.
            let _ = std::fs::remove_file(state_dir.join("proxy-routes.json"));
        }
    }
    let mut ledger = Ledger::new(store);
    for (service, index, pid, outcome) in &stopped {
        let how = match outcome {
            StopOutcome::AlreadyGone => "already gone",
            StopOutcome::Graceful => "graceful",
            StopOutcome::Killed => "killed after the grace period",
            StopOutcome::Refused => "refused",
        };
        // The proxy is recorded beside the instances; it stops first (no new requests).
        let (action, target) = if service == PROXY_ROW {
            ("proxy.stop", "proxy".to_owned())
        } else {
            ("instance.stop", format!("{service}/{index}"))
        };
        let entry = NewEntry::new(
            jiff::Timestamp::now(),
            &actor,
            action.parse()?,
            target,
            json!({"pid": pid, "how": how, "without_control_plane": true}),
        )?;
        ledger.append(entry)?;
        let pid = pid.map_or_else(|| "no pid".to_owned(), |pid| format!("pid {pid}"));
        eprintln!("stopped {service}/{index} ({pid}, {how})");
    }
    Ok(if refused {
        ExitStatus::Failed
    } else {
        ExitStatus::Ok
    })
}
