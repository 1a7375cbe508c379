//! The `rollouts` and `deployments` tables: per service, the latest rollout and the deployed
//! versions, each one JSON document the control plane owns the shape of.
//!
//! The store keeps them opaque on purpose: the rollout state machine persists itself with
//! serde, and a column per field would have to follow every change of it.

use crate::db::{Store, StoreError, fail};
use crate::engine::vals;

/// A service's latest rollout as saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutRow {
    pub service: String,
    /// Increases with every rollout of the service.
    pub id: u64,
    /// JSON.
    pub state: String,
}

impl Store {
    /// Saves (replaces) the service's latest rollout; durable before it returns.
    pub fn save_rollout(&mut self, row: &RolloutRow) -> Result<(), StoreError> {
        self.db
            .execute(
                "INSERT INTO rollouts (service, id, state, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (service) DO UPDATE SET id = excluded.id, state = excluded.state,
                 updated_at = excluded.updated_at",
                &vals![
                    &row.service,
                    row.id as i64,
                    &row.state,
                    jiff::Timestamp::now().to_string()
                ],
            )
            .map(drop)
            .map_err(fail(&self.path, "cannot save the rollout"))
    }

    /// Every service's latest rollout.
    pub fn rollouts(&self) -> Result<Vec<RolloutRow>, StoreError> {
        self.db
            .read(
                "SELECT service, id, state FROM rollouts ORDER BY service",
                &[],
                |row| {
                    Ok(RolloutRow {
                        service: row.get(0)?,
                        id: row.get::<i64>(1)? as u64,
                        state: row.get(2)?,
                    })
                },
            )
            .map_err(fail(&self.path, "cannot read rollouts"))
    }

    /// Saves what the service runs after a rollout (JSON).
    pub fn save_deployment(&mut self, service: &str, state: &str) -> Result<(), StoreError> {
        self.db
            .execute(
                "INSERT INTO deployments (service, state, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (service) DO UPDATE SET state = excluded.state,
                 updated_at = excluded.updated_at",
                &vals![service, state, jiff::Timestamp::now().to_string()],
            )
            .map(drop)
            .map_err(fail(&self.path, "cannot save the deployment"))
    }

    /// What the service runs after its last rollout, if it had one.
    pub fn deployment(&self, service: &str) -> Result<Option<String>, StoreError> {
        self.db
            .read_opt(
                "SELECT state FROM deployments WHERE service = ?1",
                &vals![service],
                |row| row.get(0),
            )
            .map_err(fail(&self.path, "cannot read the deployment"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_rollout_replaces_the_previous_one_and_survives_reopening() {
        crate::testing::on_both(|state| {
            {
                let mut store = state.open();
                for id in 1..=2 {
                    store
                        .save_rollout(&RolloutRow {
                            service: "api".into(),
                            id,
                            state: format!("{{\"id\":{id}}}"),
                        })
                        .unwrap();
                }
                store.save_deployment("api", "{\"version\":\"2\"}").unwrap();
            }
            let store = state.open();
            let rows = store.rollouts().unwrap();
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0].id, 2);
            assert_eq!(rows[0].state, "{\"id\":2}");
            assert_eq!(
                store.deployment("api").unwrap().as_deref(),
                Some("{\"version\":\"2\"}")
            );
            assert_eq!(store.deployment("web").unwrap(), None);
        });
    }
}
