//! The `runbook_runs` table: every run of a manifest runbook with its document as JSON (the
//! control plane owns the shape, `wharf_api::Run`): parameters, state and each step's result.
//! Read at start, so a restarted control plane lists its runs and can resume a failed one, and
//! counted by start time for a runbook's rate limit.

use crate::db::{Store, StoreError, fail};
use crate::engine::vals;

/// One run row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunbookRunRow {
    pub id: u64,
    pub runbook: String,
    /// `running`, `waiting_approval`, `failed`, `succeeded`, `cancelled`.
    pub state: String,
    /// Milliseconds since the Unix epoch.
    pub started_at: i64,
    /// JSON.
    pub run: String,
}

impl Store {
    /// Records a run (or its progress: the row is replaced).
    pub fn save_runbook_run(&mut self, row: &RunbookRunRow) -> Result<(), StoreError> {
        self.db
            .execute(
                "INSERT INTO runbook_runs (id, runbook, state, started_at, run)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET runbook = excluded.runbook, state = excluded.state,
                 started_at = excluded.started_at, run = excluded.run",
                &vals![
                    row.id as i64,
                    &row.runbook,
                    &row.state,
                    row.started_at,
                    &row.run
                ],
            )
            .map(drop)
            .map_err(fail(&self.path, "cannot save the runbook run"))
    }

    /// The newest `limit` runs' JSON, newest first.
    pub fn runbook_runs(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        self.db
            .read(
                "SELECT run FROM runbook_runs ORDER BY id DESC LIMIT ?1",
                &vals![limit],
                |row| row.get(0),
            )
            .map_err(fail(&self.path, "cannot read runbook runs"))
    }

    /// When each run of `runbook` that started at or after `since` (epoch ms) started, oldest
    /// first: its rate limit's window.
    pub fn runbook_starts_since(&self, runbook: &str, since: i64) -> Result<Vec<i64>, StoreError> {
        self.db
            .read(
                "SELECT started_at FROM runbook_runs WHERE runbook = ?1 AND started_at >= ?2
                 ORDER BY started_at",
                &vals![runbook, since],
                |row| row.get(0),
            )
            .map_err(fail(&self.path, "cannot read runbook runs"))
    }

    /// The number of runs stored (for tests that check a dry run wrote nothing).
    pub fn runbook_run_count(&self) -> Result<u64, StoreError> {
        self.db
            .read_one("SELECT COUNT(*) FROM runbook_runs", &[], |row| {
                row.get::<i64>(0)
            })
            .map(|count| count as u64)
            .map_err(fail(&self.path, "cannot count runbook runs"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_replaced_and_counted_in_their_window() {
        crate::testing::on_both(|state| {
            let mut store = Store::open_location_for_writing(&state.location).unwrap();
            let mut row = RunbookRunRow {
                id: 1,
                runbook: "fix".into(),
                state: "running".into(),
                started_at: 1_000,
                run: "{}".into(),
            };
            store.save_runbook_run(&row).unwrap();
            row.state = "failed".into();
            row.run = "{\"x\":1}".into();
            store.save_runbook_run(&row).unwrap();
            store
                .save_runbook_run(&RunbookRunRow {
                    id: 2,
                    started_at: 5_000,
                    ..row.clone()
                })
                .unwrap();
            assert_eq!(store.runbook_run_count().unwrap(), 2);
            assert_eq!(store.runbook_starts_since("fix", 2_000).unwrap(), [5_000]);
            assert_eq!(
                store.runbook_starts_since("fix", 0).unwrap(),
                [1_000, 5_000]
            );
            assert!(store.runbook_starts_since("other", 0).unwrap().is_empty());
            assert_eq!(store.runbook_runs(10).unwrap()[1], "{\"x\":1}");
        });
    }
}
