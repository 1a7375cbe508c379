//! The `backup_jobs` table: every backup, drill, restore, prune and verify the control plane
//! ran, with its outcome as JSON (the control plane owns the shape, `wharf_api::Job`). Read at
//! start to know each datastore's last good backup and drill — the backup-age gates and the
//! overdue state hold across restarts. Never holds a password or a datastore URL.

use crate::db::{Store, StoreError, fail};
use crate::engine::vals;

/// One job row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupJobRow {
    pub id: u64,
    /// `backup`, `drill`, `restore`, `prune`, `verify`.
    pub kind: String,
    pub service: Option<String>,
    /// `running`, `succeeded`, `failed`.
    pub state: String,
    pub started_at: String,
    /// JSON.
    pub job: String,
}

impl Store {
    /// Records a job (or its outcome: the row is replaced).
    pub fn save_backup_job(&mut self, row: &BackupJobRow) -> Result<(), StoreError> {
        self.db
            .execute(
                "INSERT INTO backup_jobs (id, kind, service, state, started_at, job)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, service = excluded.service,
                 state = excluded.state, started_at = excluded.started_at, job = excluded.job",
                &vals![
                    row.id as i64,
                    &row.kind,
                    &row.service,
                    &row.state,
                    &row.started_at,
                    &row.job
                ],
            )
            .map(drop)
            .map_err(fail(&self.path, "cannot save the backup job"))
    }

    /// The newest `limit` jobs' JSON, newest first.
    pub fn backup_jobs(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        self.db
            .read(
                "SELECT job FROM backup_jobs ORDER BY id DESC LIMIT ?1",
                &vals![limit],
                |row| row.get(0),
            )
            .map_err(fail(&self.path, "cannot read backup jobs"))
    }

    /// The newest job of `kind` on `service` that ended in `state` (its JSON).
    pub fn last_backup_job(
        &self,
        service: &str,
        kind: &str,
        state: &str,
    ) -> Result<Option<String>, StoreError> {
        self.db
            .read_opt(
                "SELECT job FROM backup_jobs WHERE service = ?1 AND kind = ?2 AND state = ?3
                 ORDER BY id DESC LIMIT 1",
                &vals![service, kind, state],
                |row| row.get(0),
            )
            .map_err(fail(&self.path, "cannot read backup jobs"))
    }

    /// The highest job id used so far (0 when none).
    pub fn last_backup_job_id(&self) -> Result<u64, StoreError> {
        self.db
            .read_one("SELECT COALESCE(MAX(id), 0) FROM backup_jobs", &[], |row| {
                row.get::<i64>(0)
            })
            .map(|id| id as u64)
            .map_err(fail(&self.path, "cannot read backup jobs"))
    }
}
