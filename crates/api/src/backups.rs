//! Backups, restores and restore drills of the stack's datastores: the jobs the control plane
//! runs (on its schedules or when asked), their outcomes, and each datastore's backup health.
//! A repository password or a datastore URL never appears in any of these types.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    /// The datastore streamed into a new snapshot of the repository, then retention applied.
    Backup,
    /// A backup restored into a sandbox and compared with what was recorded at backup time.
    Drill,
    /// A backup restored into the running datastore, a sandbox, or another address.
    Restore,
    /// Retention applied to the repository: snapshots outside the policy forgotten.
    Prune,
    /// The repository's structure (and with `read_data` every pack) checked.
    Verify,
}

impl JobKind {
    /// The word on the wire (and in the store, and shown): `backup`, `drill`, ….
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Backup => "backup",
            JobKind::Drill => "drill",
            JobKind::Restore => "restore",
            JobKind::Prune => "prune",
            JobKind::Verify => "verify",
        }
    }
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
}

impl JobState {
    /// The word on the wire (and in the store).
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
        }
    }
}

/// Why a job started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum JobTrigger {
    /// The manifest's `schedule` (or `drill`) came due.
    Schedule,
    /// An operator asked (`wharf backup run`, `wharf drill`, …).
    Operator,
}

/// One named check of a drill (or a restore's verification).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobCheck {
    pub name: String,
    pub passed: bool,
    pub expected: String,
    pub found: String,
}

/// A backup, drill, restore, prune or verify, running or finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: u64,
    pub kind: JobKind,
    /// The datastore (`None` for a whole-repository job such as verify).
    pub service: Option<String>,
    pub trigger: JobTrigger,
    pub state: JobState,
    /// RFC 3339.
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// A restore's destination: `in place`, `sandbox`, or the other server's
    /// `host:port/database` (never its password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The snapshot made (backup) or used (drill, restore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Bytes the engine produced (before dedup and compression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// New bytes the backup added to the repository (after dedup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added: Option<u64>,
    /// Drill and restore: restore plus checks, in milliseconds (the recovery time measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto_ms: Option<u64>,
    /// Drill and restore: the age of the restored data, in seconds (the data that would be lost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<JobCheck>,
    /// Prune (and a backup's retention): the snapshots forgotten, or that would be.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forgotten: Vec<String>,
    /// Why it failed, in words (never a password or a URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Job {
    pub fn finished(&self) -> bool {
        self.state != JobState::Running
    }
}

/// `POST /v1/backups`: back up one datastore now, or every one with `backup:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    #[serde(default)]
    pub service: Option<String>,
}

/// `POST /v1/drills`: drill one datastore's latest backup (or the one named).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DrillRequest {
    pub service: String,
    #[serde(default)]
    pub snapshot: Option<String>,
}

/// Whether a restore target URL carries a password in its userinfo (`scheme://user:pass@…`):
/// such a URL belongs in a secret, passed as `${secret:NAME}` — in argv every process could
/// read it, and a request waiting for approval is kept and listed.
pub fn url_holds_password(url: &str) -> bool {
    url.split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// Where a restore writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum RestoreTarget {
    /// A throwaway server (or temp file / folder) of the datastore's kind, checked like a
    /// drill and removed afterwards.
    Sandbox,
    /// The running datastore itself; its dependents are stopped around the restore.
    /// Refused unless `confirm` is true.
    InPlace { confirm: bool },
    /// Another server of the datastore's kind (a staging copy, a replacement host), by URL;
    /// `${secret:NAME}` in it is resolved by the control plane, so no password travels here.
    /// The backed-up tables there are replaced.
    Url { url: String },
}

/// `POST /v1/restores`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    pub service: String,
    #[serde(default)]
    pub snapshot: Option<String>,
    pub target: RestoreTarget,
}

/// `POST /v1/backups/prune`: apply the manifest's retention now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PruneRequest {
    #[serde(default)]
    pub service: Option<String>,
    /// Say what would be forgotten; forget nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /v1/backups/verify`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// Read and decrypt every pack, not only the structure.
    #[serde(default)]
    pub read_data: bool,
}

/// The jobs a request started (one per datastore).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobsStarted {
    pub jobs: Vec<Job>,
}

/// A datastore's backups as health: fine, not yet due, failed, or overdue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BackupHealth {
    /// The last scheduled backup succeeded and the next is not late.
    Ok,
    /// No backup was due yet since backups were declared.
    Pending,
    /// The last attempt failed (a newer success would make it ok).
    Failed,
    /// A scheduled backup is late: none succeeded since it was due.
    Overdue,
}

impl BackupHealth {
    /// The word on the wire: `ok`, `pending`, `failed`, `overdue`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupHealth::Ok => "ok",
            BackupHealth::Pending => "pending",
            BackupHealth::Failed => "failed",
            BackupHealth::Overdue => "overdue",
        }
    }

    /// Whether operators must look: failed or overdue.
    pub fn is_problem(self) -> bool {
        matches!(self, BackupHealth::Failed | BackupHealth::Overdue)
    }
}

/// One datastore's backup schedule and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DatastoreBackups {
    pub service: String,
    /// `postgres`, `mariadb`, `redis`, `sqlite` or `directory`.
    pub kind: String,
    /// The manifest's cron schedule (UTC).
    pub schedule: String,
    pub health: BackupHealth,
    /// Why it is failed or overdue, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_due: Option<String>,
    /// The last drill that passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill_passed: Option<String>,
    /// The last drill, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill_failed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_drill: Option<String>,
    /// Bytes and duration of the last successful backup (figures for `/metrics`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_duration_ms: Option<u64>,
}

/// `GET /v1/backups`: every datastore's backups and the recent jobs, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BackupOverview {
    /// Where the repository is (a path or a location without credentials).
    pub repository: String,
    pub datastores: Vec<DatastoreBackups>,
    pub jobs: Vec<Job>,
}

/// One snapshot in the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Snapshot {
    pub id: String,
    /// RFC 3339.
    pub time: String,
    pub service: String,
    pub kind: String,
    pub bytes: u64,
    pub added: u64,
}

/// `GET /v1/backups/snapshots`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SnapshotList {
    pub repository: String,
    pub snapshots: Vec<Snapshot>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_the_wire_names() {
        for kind in [
            JobKind::Backup,
            JobKind::Drill,
            JobKind::Restore,
            JobKind::Prune,
            JobKind::Verify,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        for state in [JobState::Running, JobState::Succeeded, JobState::Failed] {
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
        for health in [
            BackupHealth::Ok,
            BackupHealth::Pending,
            BackupHealth::Failed,
            BackupHealth::Overdue,
        ] {
            assert_eq!(serde_json::to_value(health).unwrap(), health.as_str());
        }
    }
}
