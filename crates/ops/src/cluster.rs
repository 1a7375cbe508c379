//! A rollout on a Kubernetes cluster (`wharf cluster deploy`): its state saved with the ledger
//! entries of each step in one transaction, and read back to resume it after a crash.
//!
//! The state is the cluster runner's JSON (wharf-kube's `ClusterRollout`), kept in the
//! `rollouts` table under the key `k8s/NAMESPACE/SERVICE` — a key no manifest service can have,
//! so the local control plane, which resumes the rollouts of its own services, skips it.

use serde_json::Value;
use wharf_ledger::{Action, Ledger, NewEntry};
use wharf_store::{RolloutRow, Store};

use crate::{Actor, OpsError};

/// The `rollouts` key of a service's cluster rollout.
pub fn key(namespace: &str, service: &str) -> String {
    format!("k8s/{namespace}/{service}")
}

/// The latest saved cluster rollout of the service: its id and state.
pub fn latest(
    store: &Store,
    namespace: &str,
    service: &str,
) -> Result<Option<RolloutRow>, OpsError> {
    let key = key(namespace, service);
    Ok(store.rollouts()?.into_iter().find(|row| row.service == key))
}

/// One ledger entry a step of the rollout asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct StepEntry {
    /// A `deploy.*` action's text.
    pub action: String,
    pub target: String,
    pub details: Value,
}

/// Saves the rollout's state and appends the step's entries, in one transaction.
pub fn record(
    store: &mut Store,
    actor: &Actor,
    row: &RolloutRow,
    entries: &[StepEntry],
) -> Result<(), OpsError> {
    let mut parsed = Vec::with_capacity(entries.len());
    for entry in entries {
        let action: Action = entry.action.parse()?;
        parsed.push(NewEntry::new(
            jiff::Timestamp::now(),
            &actor.0,
            action,
            &entry.target,
            entry.details.clone(),
        )?);
    }
    store.atomically(|store: &mut Store| -> Result<(), OpsError> {
        store.save_rollout(row)?;
        let mut ledger = Ledger::new(store);
        for entry in parsed {
            ledger.append(entry)?;
        }
        Ok(())
    })
}

/// A secret's value for a cluster's Secret object, with its fingerprint for the ledger.
pub struct ClusterSecret {
    pub name: String,
    pub value: wharf_secrets::SecretValue,
    pub fingerprint: String,
}

/// The current values of `names`, for `wharf cluster apply` to send to the API server (and
/// nowhere else). A name without a stored value is refused, naming it, before anything is
/// sent: a pod whose secret key is missing would not start.
pub fn secret_values(
    store: &mut Store,
    state_dir: &std::path::Path,
    names: &[String],
) -> Result<Vec<ClusterSecret>, OpsError> {
    let mut missing = Vec::new();
    for name in names {
        if wharf_secrets::history(store, name)?.is_empty() {
            missing.push(name.as_str());
        }
    }
    if !missing.is_empty() {
        return Err(OpsError::Invalid(format!(
            "no value stored for {}; set {} with `wharf secret set NAME` first (nothing was applied)",
            missing.join(", "),
            if missing.len() == 1 { "it" } else { "them" }
        )));
    }
    let (secrets, _) = crate::secrets::unlock(store, state_dir, false)?;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        if let Some((info, value)) = secrets.current(store, name)? {
            out.push(ClusterSecret {
                name: name.clone(),
                value,
                fingerprint: info.fingerprint,
            });
        }
    }
    Ok(out)
}

/// Appends the `cluster.apply` entry (target: the namespace) before the objects are sent:
/// the values of the Secret leave wharf with it, and a disclosure that is not in the ledger
/// does not happen.
pub fn record_apply(
    store: &mut Store,
    actor: &Actor,
    namespace: &str,
    details: Value,
) -> Result<wharf_ledger::Entry, OpsError> {
    crate::append(
        store,
        actor,
        wharf_ledger::KnownAction::ClusterApply,
        namespace,
        details,
    )
}
