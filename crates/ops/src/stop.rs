//! Stopping what a control plane left running when none runs any more (it crashed or was
//! killed): `wharf down` without a control plane. The same cleanup the control plane does when
//! it stops an instance — the row, the secret files on tmpfs, the proxy's saved table — and one
//! ledger entry per stop, committed with the row's removal.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use wharf_ledger::KnownAction;
use wharf_runtime::{Driver, InstanceHandle, StopOutcome};
use wharf_store::{PROXY_ROUTES_FILE, Store};

use crate::{Actor, ControlLock, OpsError, append};

pub use wharf_store::PROXY_ROW;

/// SIGTERM, then SIGKILL after this long.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// One recorded instance and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    pub service: String,
    pub ordinal: u32,
    /// The process id, when the driver describes one.
    pub pid: Option<u32>,
    /// `Refused`: its handle is not this driver's (or is unreadable); the row stays.
    pub outcome: StopOutcome,
}

/// Stops the recorded instances (of `service`, or all), dependents first: `order` lists the
/// services dependencies first (from the manifest when it can be read); unknown ones go last
/// in name order. Refuses when a control plane runs (the lock proves none does). `driver` is
/// the one that started them; a row whose handle it refuses is left in place and reported.
pub async fn stop_recorded(
    lock: &ControlLock,
    store: &mut Store,
    driver: &dyn Driver,
    actor: &Actor,
    service: Option<&str>,
    order: &[String],
) -> Result<Vec<Stopped>, OpsError> {
    stop_recorded_within(lock, store, driver, actor, service, order, &|_| None).await
}

/// [`stop_recorded`], each instance given its service's own grace (the manifest's
/// `stop.grace`) where `grace` names one, [`STOP_GRACE`] otherwise.
pub async fn stop_recorded_within(
    lock: &ControlLock,
    store: &mut Store,
    driver: &dyn Driver,
    actor: &Actor,
    service: Option<&str>,
    order: &[String],
    grace: &(dyn Fn(&str) -> Option<Duration> + Sync),
) -> Result<Vec<Stopped>, OpsError> {
    let state_dir = lock.state_dir();
    let mut rows: Vec<_> = store
        .instances()?
        .into_iter()
        .filter(|r| service.is_none_or(|s| r.service == s))
        .collect();
    if let (Some(name), true) = (service, rows.is_empty()) {
        return Err(OpsError::NotFound(format!(
            "no instance of service `{name}` is recorded as running"
        )));
    }
    let rank = |name: &str| order.iter().position(|n| n == name).unwrap_or(usize::MAX);
    rows.sort_by(|a, b| {
        (rank(&a.service), &a.service, a.index).cmp(&(rank(&b.service), &b.service, b.index))
    });
    let mut stopped = Vec::new();
    // Reverse order: dependents before what they depend on; the proxy (sorted last, as an
    // unknown service) first, so no new request reaches an instance about to go.
    for row in rows.iter().rev() {
        let handle = row.handle.parse::<InstanceHandle>();
        let pid = handle.as_ref().ok().and_then(|h| driver.describe(h).pid);
        let outcome = match handle {
            Ok(handle) => {
                let within = grace(&row.service).unwrap_or(STOP_GRACE);
                driver.stop(handle, within).await
            }
            Err(_) => StopOutcome::Refused,
        };
        if outcome != StopOutcome::Refused {
            let slot = (row.service.as_str(), row.index);
            forget(state_dir, store, actor, slot, pid, outcome)?;
        }
        stopped.push(Stopped {
            service: row.service.clone(),
            ordinal: row.index,
            pid,
            outcome,
        });
    }
    Ok(stopped)
}

/// After an instance stopped: its secret files go, then its row and its entry in one
/// transaction (the files first: plaintext must not outlive its user even if the write fails).
fn forget(
    state_dir: &Path,
    store: &mut Store,
    actor: &Actor,
    (service, ordinal): (&str, u32),
    pid: Option<u32>,
    outcome: StopOutcome,
) -> Result<(), OpsError> {
    if service == PROXY_ROW {
        // Its saved table names instances that are about to be gone.
        let _ = std::fs::remove_file(state_dir.join(PROXY_ROUTES_FILE));
    } else {
        wharf_secrets::remove_files(state_dir, service, ordinal).map_err(OpsError::io(format!(
            "cannot remove the secret files of {service}/{ordinal}"
        )))?;
    }
    let how = match outcome {
        StopOutcome::AlreadyGone => "already gone",
        StopOutcome::Graceful => "graceful",
        StopOutcome::Killed => "killed after the grace period",
        StopOutcome::Refused => "refused",
    };
    let (action, target) = if service == PROXY_ROW {
        (KnownAction::ProxyStop, "proxy".to_owned())
    } else {
        (KnownAction::InstanceStop, format!("{service}/{ordinal}"))
    };
    store.atomically(|store| {
        store.remove_instance(service, ordinal)?;
        let details = json!({"pid": pid, "how": how, "without_control_plane": true});
        append(store, actor, action, &target, details)?;
        Ok(())
    })
}
