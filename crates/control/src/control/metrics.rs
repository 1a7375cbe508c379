//! Builds `/metrics`' snapshot from the loop's state, in one go: the status report, the
//! rollouts, the traffic totals, and what the state database's read connection says of
//! secrets and the ledger. Nothing here awaits.

use wharf_ledger::{Checkpoint, Storage};

use super::ControlPlane;
use crate::metrics::{LedgerFigures, MetricsSnapshot, SecretAge};

impl ControlPlane {
    pub(super) fn metrics(&self) -> MetricsSnapshot {
        let at = jiff::Timestamp::now();
        let rollouts = (0..self.supervisor.services.len())
            .filter_map(|index| self.rollout_view(index))
            .collect();
        MetricsSnapshot {
            at,
            status: self.report(),
            rollouts,
            traffic: self.metrics_traffic.rows(),
            secrets: self.secret_ages(at),
            ledger: self.ledger_figures(),
        }
    }

    fn secret_ages(&self, at: jiff::Timestamp) -> Vec<SecretAge> {
        let store = self.core.journal.store();
        let latest = store.latest_secret_versions().unwrap_or_else(|error| {
            tracing::error!(%error, "cannot read the secrets' versions for /metrics");
            Vec::new()
        });
        self.injector
            .policies
            .iter()
            .map(|(name, policy)| {
                let set_at = latest
                    .iter()
                    .find(|row| &row.name == name)
                    .and_then(|row| row.created_at.parse::<jiff::Timestamp>().ok());
                SecretAge {
                    name: name.clone(),
                    age_seconds: set_at.map(|t| at.duration_since(t).as_secs_f64().max(0.0)),
                    max_age_seconds: policy.max_age.map(|d| d.as_std().as_secs_f64()),
                }
            })
            .collect()
    }

    fn ledger_figures(&self) -> Option<LedgerFigures> {
        let store = self.core.journal.store();
        let entries = store.size().ok()?;
        let checkpoints = store.checkpoints().ok()?;
        let checkpointed_entries = checkpoints
            .last()
            .and_then(|c| Checkpoint::peek(&c.note).ok())
            .map_or(0, |c| c.size);
        Some(LedgerFigures {
            entries,
            checkpoints: checkpoints.len() as u64,
            checkpointed_entries,
        })
    }
}
