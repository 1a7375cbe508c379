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
