//! A restore drill: restore a backup into a fresh sandbox, take the same record there, and
//! compare it with the one stored at backup time — pass or fail per named check, with the
//! time the restore and the checks took (RTO) and the age of the data (RPO).

use std::time::{Duration, Instant};

use crate::datastore::Datastore;
use crate::drivers;
use crate::error::Result;
use crate::record::{CheckOutcome, Record, compare};
use crate::repo::{Backup, Repo};
use crate::sandbox::Sandbox;
use crate::tools::Tools;

/// What a drill found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DrillReport {
    pub backup: Backup,
    /// Every check, in order: `record readable`, `restore`, then count and content per part.
    pub checks: Vec<CheckOutcome>,
    /// Restore plus checks (the recovery time measured).
    pub rto: Duration,
    /// Age of the restored data when the drill ran.
    pub rpo: Duration,
}

impl DrillReport {
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.passed)
    }

    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &CheckOutcome> {
        self.checks.iter().filter(|c| !c.passed)
    }
}

/// The record of a live datastore in the current format. For PostgreSQL (format 4) that is
/// every ordinary table's rows as `COPY` prints them — a backup records only the tables and
/// rows pg_dump copied, so compare a restored database with [`record_like`].
pub fn record_of(store: &Datastore, tools: &Tools) -> Result<Record> {
    record_of_format(store, tools, Record::VERSION)
}

/// The record of a live datastore computed as a record of format `version` was: a drill
/// compares like with like, whatever format the backup's record has.
pub fn record_of_format(store: &Datastore, tools: &Tools, version: u32) -> Result<Record> {
    match store {
        Datastore::Postgres(conn) => drivers::postgres::record(conn, version, None),
        Datastore::Mariadb(conn) => drivers::mariadb::record(conn, tools),
        Datastore::Redis(conn) => drivers::redis::record(conn),
        Datastore::Sqlite(path) => drivers::sqlite::record(path),
        Datastore::Directory(path) => drivers::directory::record(path),
    }
}

/// The record of a live datastore computed as `recorded` (a backup's record) was: its format,
/// and for PostgreSQL each table's hash as its digest names it.
pub fn record_like(store: &Datastore, tools: &Tools, recorded: &Record) -> Result<Record> {
    match store {
        Datastore::Postgres(conn) => {
            drivers::postgres::record(conn, recorded.version, Some(recorded))
        }
        _ => record_of_format(store, tools, recorded.version),
    }
}

fn outcome(name: &str, result: &Result<()>) -> CheckOutcome {
    CheckOutcome {
        name: name.to_owned(),
        passed: result.is_ok(),
        expected: "succeeds".into(),
        found: match result {
            Ok(()) => "succeeded".into(),
            Err(e) => e.to_string(),
        },
    }
}

/// Drills `backup`: a sandbox of its kind, restore, record, compare. Failures of the drill's
/// subject (an unreadable record, a failed restore, differing tables) are failed checks in the
/// report; an error means the drill itself could not run (no sandbox server, say).
pub fn drill(repo: &Repo, backup: &Backup, tools: &Tools) -> Result<DrillReport> {
    drill_with(repo, backup, tools, |_| Vec::new())
}

/// Like [`drill`], then — when the restored copy matches its record — runs `app` against the
/// sandbox while it still runs (the stack's own services and smoke checks pointed at the
/// restored copy) and adds its checks to the report, inside the measured RTO.
pub fn drill_with(
    repo: &Repo,
    backup: &Backup,
    tools: &Tools,
    app: impl FnOnce(&Sandbox) -> Vec<CheckOutcome>,
) -> Result<DrillReport> {
    let started = Instant::now();
    let rpo = jiff::Timestamp::now()
        .duration_since(backup.time)
        .unsigned_abs();
    let mut checks = Vec::new();
    let report = |checks, started: Instant| DrillReport {
        backup: backup.clone(),
        checks,
        rto: started.elapsed(),
        rpo,
    };
    let recorded = repo.record(backup);
    checks.push(outcome(
        "record readable",
        &recorded.as_ref().map(|_| ()).map_err(clone_err),
    ));
    let Ok(recorded) = recorded else {
        return Ok(report(checks, started));
    };
    let sandbox = Sandbox::start(backup.kind, tools)?;
    let restored = repo.restore(backup, sandbox.datastore(), tools);
    checks.push(outcome("restore", &restored));
    if restored.is_err() {
        return Ok(report(checks, started));
    }
    let found = record_like(sandbox.datastore(), tools, &recorded);
    checks.push(outcome(
        "record of the restored copy",
        &found.as_ref().map(|_| ()).map_err(clone_err),
    ));
    if let Ok(found) = found {
        checks.extend(compare(&recorded, &found));
    }
    if checks.iter().all(|c| c.passed) {
        checks.extend(app(&sandbox));
    }
    let report = report(checks, started);
    tracing::info!(
        snapshot = %backup.id,
        passed = report.passed(),
        rto_ms = report.rto.as_millis() as u64,
        "drill done"
    );
    Ok(report)
}

fn clone_err(error: &crate::error::BackupError) -> crate::error::BackupError {
    crate::error::BackupError::Restore(error.to_string())
}
