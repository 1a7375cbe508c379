//! PostgreSQL: `pg_dump -Fc` inside a snapshot exported by wharf's own repeatable-read
//! transaction, so the record (row count and content digest per table, taken in that
//! transaction) describes exactly the dumped state. Restore with `pg_restore`.
//! Credentials go to the tools as `PGPASSWORD` in their environment, never on argv.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use rustic_core::repofile::Metadata;
use wharf_manifest::model::DatastoreKind;

use super::Feed;
use crate::capture::{Capture, Entry, piped};
use crate::datastore::PgConn;
use crate::error::{BackupError, Result};
use crate::record::{Part, Record};
use crate::tools::{Running, Tool, Tools};

/// The data file's name inside the snapshot.
pub(crate) const FILE: &str = "postgres.dump";

fn err(detail: impl std::fmt::Display) -> BackupError {
    BackupError::store(DatastoreKind::Postgres, detail.to_string())
}

/// The server's own message when there is one (`postgres::Error` displays only "db error").
fn text(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => error.to_string(),
    }
}

/// Connects with the `postgres` client (for the record and the exported snapshot).
pub(crate) fn connect(conn: &PgConn) -> Result<postgres::Client> {
    let mut config = postgres::Config::new();
    config
        .host(&conn.host)
        .port(conn.port)
        .user(&conn.user)
        .dbname(&conn.dbname)
        .connect_timeout(Duration::from_secs(10))
        .application_name("wharf-backup");
    if let Some(password) = &conn.password {
        config.password(password.expose());
    }
    config.connect(postgres::NoTls).map_err(|e| {
        err(format!(
            "connect to {}:{} as {}: {}",
            conn.host,
            conn.port,
            conn.user,
            text(&e)
        ))
    })
}

/// Sets the libpq environment of a tool (host, port, user, password, database).
fn env(command: &mut Command, conn: &PgConn) {
    command
        .env("PGHOST", &conn.host)
        .env("PGPORT", conn.port.to_string())
        .env("PGUSER", &conn.user)
        .env("PGDATABASE", &conn.dbname)
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGAPPNAME", "wharf-backup");
    if let Some(password) = &conn.password {
        command.env("PGPASSWORD", password.expose());
    }
    if let Some(mode) = &conn.sslmode {
        command.env("PGSSLMODE", mode);
    }
}

pub(crate) fn capture(conn: &PgConn, tools: &Tools) -> Result<Capture> {
    let mut command = tools.command(Tool::PgDump)?;
    let mut client = connect(conn)?;
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .map_err(|e| err(format!("begin: {}", text(&e))))?;
    let snapshot: String = client
        .query_one("SELECT pg_export_snapshot()", &[])
        .map_err(|e| err(format!("export a snapshot: {}", text(&e))))?
        .get(0);
    env(&mut command, conn);
    // Uncompressed: the repository compresses (zstd) and dedups, and zlib output would hide
    // the unchanged runs between two dumps from content-defined chunking.
    command.args([
        "--format=custom",
        "--compress=0",
        "--no-password",
        "--snapshot",
        &snapshot,
    ]);
    let mut dump = Running::spawn(Tool::PgDump, command, conn.password.clone())?;
    let stdout = dump
        .child
        .stdout
        .take()
        .ok_or_else(|| err("pg_dump has no stdout"))?;
    // A 1 MiB pipe instead of 64 KiB: pg_dump runs ahead while the archiver chunks, and the
    // archiver's large reads take fewer wake-ups. Best effort: a lower system limit
    // (`/proc/sys/fs/pipe-max-size`) only costs that.
    if let Err(error) = rustix::pipe::fcntl_setpipe_size(&stdout, 1 << 20) {
        tracing::debug!(%error, "pg_dump's pipe keeps its default size");
    }
    // The record is taken in the exporting transaction while pg_dump reads the same snapshot
    // in its own backend: two scans at once instead of one after the other. The transaction
    // stays open until pg_dump is done (it needs the snapshot until it has imported it).
    let (dumped_tx, dumped_rx) = std::sync::mpsc::channel::<()>();
    let recorder = std::thread::spawn(move || -> Result<Record> {
        let record = record_in(&mut client, Record::VERSION);
        let _ = dumped_rx.recv();
        let _ = client.batch_execute("COMMIT");
        record
    });
    Ok(Capture {
        entries: vec![Entry::File(FILE.into(), Metadata::default(), piped(stdout))],
        record: None,
        streamed: true,
        finish: Box::new(move || {
            let dumped = dump.finish();
            let _ = dumped_tx.send(());
            let record = recorder
                .join()
                .unwrap_or_else(|_| Err(err("the record thread panicked")));
            dumped?;
            record
        }),
    })
}

/// The record of the database as it is now (in one repeatable-read transaction), digested as
/// a record of format `version` does (a drill of an older backup digests as it did).
pub(crate) fn record(conn: &PgConn, version: u32) -> Result<Record> {
    let mut client = connect(conn)?;
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .map_err(|e| err(format!("begin: {}", text(&e))))?;
    let record = record_in(&mut client, version);
    let _ = client.batch_execute("COMMIT");
    record
}

/// The 64-bit hash of one row `t`, by record format. Both hash the row's text form.
/// Format 1: the first 64 bits of its MD5. Format 2: `hashtextextended` (PostgreSQL's own
/// hash, as hash partitioning uses; `COLLATE "C"` makes it hash the bytes): the record's
/// scan ran beside pg_dump and, with MD5, took longer than the whole dump (measured on
/// pgbench scale 20: 1.7–2.3 s against 0.5 s; pg_dump -Fc 1.2 s). Like hash partitioning,
/// format 2 assumes the backed-up server and the drill's sandbox share byte order.
fn row_hash(version: u32) -> &'static str {
    if version <= 1 {
        "('x' || substr(md5(t::text), 1, 16))::bit(64)::int8"
    } else {
        "hashtextextended(t::text COLLATE \"C\", 0)"
    }
}

/// Per ordinary table: `count(*)` and the exact sum of a 64-bit hash of each row's text form
/// (`row_hash`) — order-independent, computed in the server. `sum(int8)` accumulates in 128
/// bits and returns numeric, so it never overflows and gives the digest casting each row's hash
/// to numeric gave, ~0.1 s sooner on 2 million rows (no numeric arithmetic per row).
fn record_in(client: &mut postgres::Client, version: u32) -> Result<Record> {
    let tables = client
        .query(
            "SELECT n.nspname || '.' || c.relname, format('%I.%I', n.nspname, c.relname) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' \
             ORDER BY 1",
            &[],
        )
        .map_err(|e| err(format!("list tables: {}", text(&e))))?;
    let mut parts = BTreeMap::new();
    for table in tables {
        let (name, quoted): (String, String) = (table.get(0), table.get(1));
        let row = client
            .query_one(
                &format!(
                    "SELECT count(*)::int8, coalesce(sum({}), 0)::text FROM {quoted} t",
                    row_hash(version)
                ),
                &[],
            )
            .map_err(|e| err(format!("checksum of table {name}: {}", text(&e))))?;
        let count: i64 = row.get(0);
        let digest: String = row.get(1);
        parts.insert(
            format!("table {name}"),
            Part {
                count: u64::try_from(count).unwrap_or(0),
                digest,
            },
        );
    }
    Ok(Record { version, parts })
}

/// `pg_restore --clean --if-exists` into the database: objects in the backup are dropped and
/// recreated with exactly the backed-up rows; the restore stops at the first error.
pub(crate) fn restore(conn: &PgConn, tools: &Tools, feed: Feed<'_>) -> Result<()> {
    let mut command = tools.command(Tool::PgRestore)?;
    env(&mut command, conn);
    command
        .args(["--clean", "--if-exists", "--no-owner", "--no-privileges"])
        .args([
            "--exit-on-error",
            "--single-transaction",
            "--no-password",
            "-d",
        ])
        .arg(&conn.dbname)
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    let mut restore = Running::spawn(Tool::PgRestore, command, conn.password.clone())?;
    let mut stdin = restore
        .child
        .stdin
        .take()
        .ok_or_else(|| err("pg_restore has no stdin"))?;
    let fed = feed(&mut stdin).and_then(|()| {
        stdin
            .flush()
            .map_err(|e| BackupError::io("pg_restore stdin", e))
    });
    drop(stdin);
    let finished = restore.finish();
    // pg_restore's own error explains a broken pipe better than the pipe does.
    finished?;
    fed
}
