//! The `instances` table: what the control plane is running, for re-adoption after a restart.

use crate::db::{Store, StoreError, fail};
use crate::engine::{DbError, Row, vals};

/// One running instance as recorded by the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRow {
    pub service: String,
    pub index: u32,
    pub version: String,
    /// How the driver that started the instance finds it again: its handle's text (JSON),
    /// opaque to the store.
    pub handle: String,
    pub port: Option<u16>,
    /// RFC 3339 UTC.
    pub started_at: String,
    pub restarts: u32,
    /// A hash of the instance's spec, to notice a manifest change on re-adoption.
    pub spec_hash: String,
}

impl Store {
    /// Records (or replaces) the instance in its slot.
    pub fn save_instance(&mut self, row: &InstanceRow) -> Result<(), StoreError> {
        self.db
            .execute(
                "INSERT INTO instances
                 (service, idx, version, handle, port, started_at, restarts, spec_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (service, idx) DO UPDATE SET version = excluded.version,
                 handle = excluded.handle, port = excluded.port, started_at = excluded.started_at,
                 restarts = excluded.restarts, spec_hash = excluded.spec_hash",
                &vals![
                    &row.service,
                    row.index,
                    &row.version,
                    &row.handle,
                    row.port,
                    &row.started_at,
                    row.restarts,
                    &row.spec_hash
                ],
            )
            .map(drop)
            .map_err(fail(&self.path, "cannot record the instance"))
    }

    /// Forgets the instance in a slot (it was stopped or has exited).
    pub fn remove_instance(&mut self, service: &str, index: u32) -> Result<(), StoreError> {
        self.db
            .execute(
                "DELETE FROM instances WHERE service = ?1 AND idx = ?2",
                &vals![service, index],
            )
            .map(drop)
            .map_err(fail(&self.path, "cannot forget the instance"))
    }

    /// Every recorded instance, by service and slot.
    pub fn instances(&self) -> Result<Vec<InstanceRow>, StoreError> {
        self.db
            .read(
                "SELECT service, idx, version, handle, port, started_at, restarts, spec_hash
                 FROM instances ORDER BY service, idx",
                &[],
                instance_row,
            )
            .map_err(fail(&self.path, "cannot list instances"))
    }
}

fn instance_row(row: &Row) -> Result<InstanceRow, DbError> {
    Ok(InstanceRow {
        service: row.get(0)?,
        index: row.get(1)?,
        version: row.get(2)?,
        handle: row.get(3)?,
        port: row.get(4)?,
        started_at: row.get(5)?,
        restarts: row.get(6)?,
        spec_hash: row.get(7)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_are_saved_replaced_and_removed() {
        crate::testing::on_both(|state| {
            let mut store = state.open();
            let mut row = InstanceRow {
                service: "api".into(),
                index: 0,
                version: "1.0".into(),
                handle: r#"{"driver":"process","data":{"pid":10}}"#.into(),
                port: Some(8080),
                started_at: "2026-01-01T00:00:00Z".into(),
                restarts: 0,
                spec_hash: "abc".into(),
            };
            store.save_instance(&row).unwrap();
            row.handle = r#"{"driver":"process","data":{"pid":11}}"#.into();
            row.restarts = 1;
            store.save_instance(&row).unwrap();
            assert_eq!(store.instances().unwrap(), vec![row.clone()]);
            drop(store);
            let mut reopened = state.open();
            assert_eq!(reopened.instances().unwrap(), vec![row]);
            reopened.remove_instance("api", 0).unwrap();
            assert!(reopened.instances().unwrap().is_empty());
        });
    }

    /// State directories from before handles hold pid columns: opening them with this wharf
    /// turns each row into the process driver's handle, so `wharf up` still re-adopts.
    #[test]
    fn rows_of_schema_5_get_a_process_handle_built_from_their_pid_columns() {
        let dir = tempfile::tempdir().unwrap();
        write_schema_5(dir.path());

        let store = Store::open(dir.path()).unwrap();
        let rows = store.instances().unwrap();
        let run = dir.path().join("run");
        let handle = |pid: i32, start: u64, shim: i32, shim_start: u64, exit: &str| {
            serde_json::json!({"driver": "process", "data": {
                "instance": {"pid": pid, "start_time": start},
                "shim": {"pid": shim, "start_time": shim_start},
                "exit_path": run.join(exit).to_str().unwrap(),
            }})
        };
        let handles: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| serde_json::from_str(&r.handle).unwrap())
            .collect();
        assert_eq!(
            handles,
            vec![
                handle(77, 5000, 76, 4999, ".proxy-0.exit"),
                handle(4242, 123456789, 4241, 123456700, "api-2.exit"),
            ]
        );
        assert_eq!(
            rows[1],
            InstanceRow {
                service: "api".into(),
                index: 2,
                version: "1.0".into(),
                handle: rows[1].handle.clone(),
                port: Some(8080),
                started_at: "2026-01-01T00:00:00Z".into(),
                restarts: 3,
                spec_hash: "abc".into(),
            }
        );
        let columns: Vec<String> = store
            .db
            .read(
                "SELECT name FROM pragma_table_info('instances')",
                &[],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            !columns
                .iter()
                .any(|c| c.contains("pid") || c.contains("start_time")),
            "{columns:?}"
        );
    }

    // Before: the CLI opens `.wharf` relative to where it runs, and a reader that ran the
    // migration stored `.wharf/run/api-2.exit`, which the control plane resolved against its
    // own working directory.
    #[test]
    fn rows_of_schema_5_migrated_through_a_relative_path_get_an_absolute_exit_path() {
        let dir = tempfile::tempdir().unwrap();
        write_schema_5(dir.path());
        // The same directory, named relative to this process's working directory (which a
        // test may not change): up to the root, then down to the temp dir.
        let cwd = std::env::current_dir().unwrap();
        let mut relative = std::path::PathBuf::new();
        for _ in cwd.components().skip(1) {
            relative.push("..");
        }
        relative.push(dir.path().strip_prefix("/").unwrap());
        assert!(relative.is_relative());

        let store = Store::open(&relative).unwrap();
        let rows = store.instances().unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir(&run).unwrap();
        for row in &rows {
            let handle: serde_json::Value = serde_json::from_str(&row.handle).unwrap();
            let exit = std::path::Path::new(handle["data"]["exit_path"].as_str().unwrap());
            assert!(exit.is_absolute(), "{}", exit.display());
            assert_eq!(
                exit.parent().unwrap().canonicalize().unwrap(),
                run.canonicalize().unwrap(),
                "{}",
                exit.display()
            );
        }
        assert_eq!(rows.len(), 2);
    }

    /// A schema-5 database in `state_dir` with two instance rows (pid columns, no handles).
    fn write_schema_5(state_dir: &std::path::Path) {
        let conn = rusqlite::Connection::open(state_dir.join(crate::DB_FILE)).unwrap();
        for step in &crate::migrations::MIGRATIONS[..5] {
            conn.execute_batch(step).unwrap();
        }
        conn.pragma_update(None, "user_version", 5).unwrap();
        conn.execute_batch(
            "INSERT INTO instances
             (service, idx, version, pid, start_time, shim_pid, shim_start_time, port, started_at, restarts, spec_hash)
             VALUES ('api', 2, '1.0', 4242, 123456789, 4241, 123456700, 8080, '2026-01-01T00:00:00Z', 3, 'abc'),
                    ('.proxy', 0, '0.1.0', 77, 5000, 76, 4999, NULL, '2026-01-01T00:00:01Z', 0, '')",
        )
        .unwrap();
    }
}

/// How many health transitions the store keeps; older ones live on in the ledger.
pub const HEALTH_HISTORY_LIMIT: i64 = 1000;

/// One recorded change of a service's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    pub time: String,
    pub target: String,
    pub state: String,
    pub reason: Option<String>,
}

impl Store {
    /// Records a health transition and drops the oldest beyond [`HEALTH_HISTORY_LIMIT`].
    pub fn add_health_event(
        &mut self,
        target: &str,
        state: &str,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        let time = jiff::Timestamp::now().to_string();
        let path = self.path.clone();
        let mut tx = self
            .write_tx()
            .map_err(fail(&path, "cannot record health"))?;
        tx.execute(
            "INSERT INTO health_history (time, target, state, reason) VALUES (?1, ?2, ?3, ?4)",
            &vals![time, target, state, reason],
        )
        .map_err(fail(&path, "cannot record health"))?;
        tx.execute(
            "DELETE FROM health_history WHERE id <= (SELECT MAX(id) FROM health_history) - ?1",
            &vals![HEALTH_HISTORY_LIMIT],
        )
        .map_err(fail(&path, "cannot trim the health history"))?;
        tx.commit().map_err(fail(&path, "cannot record health"))
    }

    /// The most recent state changes of one service, newest last.
    pub fn health_history_of(
        &self,
        target: &str,
        limit: i64,
    ) -> Result<Vec<HealthEvent>, StoreError> {
        self.db
            .read(
                "SELECT time, target, state, reason FROM (SELECT * FROM health_history WHERE target = ?1 ORDER BY id DESC LIMIT ?2) AS recent ORDER BY id",
                &vals![target, limit],
                health_event,
            )
            .map_err(fail(&self.path, "cannot read the health history"))
    }

    /// The most recent health transitions, newest last.
    pub fn health_history(&self, limit: i64) -> Result<Vec<HealthEvent>, StoreError> {
        self.db
            .read(
                "SELECT time, target, state, reason FROM (SELECT * FROM health_history ORDER BY id DESC LIMIT ?1) AS recent ORDER BY id",
                &vals![limit],
                health_event,
            )
            .map_err(fail(&self.path, "cannot read the health history"))
    }
}

fn health_event(row: &Row) -> Result<HealthEvent, DbError> {
    Ok(HealthEvent {
        time: row.get(0)?,
        target: row.get(1)?,
        state: row.get(2)?,
        reason: row.get(3)?,
    })
}

#[cfg(test)]
mod health_tests {
    use super::*;

    #[test]
    fn the_health_history_is_bounded_and_ordered() {
        crate::testing::on_both(|state| {
            let mut store = state.open();
            for i in 0..(HEALTH_HISTORY_LIMIT + 25) {
                store
                    .add_health_event("db", &format!("s{i}"), None)
                    .unwrap();
            }
            let all = store.health_history(i64::MAX).unwrap();
            assert_eq!(all.len() as i64, HEALTH_HISTORY_LIMIT);
            assert_eq!(
                all.last().unwrap().state,
                format!("s{}", HEALTH_HISTORY_LIMIT + 24)
            );
            assert_eq!(all.first().unwrap().state, "s25");
            assert_eq!(store.health_history(2).unwrap().len(), 2);
        });
    }
}
