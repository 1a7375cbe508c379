//! PostgreSQL: `pg_dump -Fc` inside a snapshot exported by wharf's own repeatable-read
//! transaction, so the record (row count and content digest per table, taken in that
//! transaction) describes exactly the dumped state. Restore with `pg_restore`.
//! Credentials go to the tools as `PGPASSWORD` in their environment, never on argv.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustic_core::repofile::Metadata;
use wharf_manifest::model::DatastoreKind;

use super::Feed;
use super::pg_archive::{ArchiveParser, ArchiveRecord, CopyDigest, Tapped};
use crate::capture::{Capture, Entry};
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
    // No parallel workers for the record's scans: they run beside pg_dump's COPY, so extra
    // workers only take cores from it (and from the archiver) and add their own start-up and
    // tuple-passing work — on 2 cores they cost as much CPU as the COPY did.
    client
        .batch_execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
             SET LOCAL max_parallel_workers_per_gather = 0",
        )
        .map_err(|e| err(format!("begin: {}", text(&e))))?;
    let snapshot: String = client
        .query_one("SELECT pg_export_snapshot()", &[])
        .map_err(|e| err(format!("export a snapshot: {}", text(&e))))?
        .get(0);
    env(&mut command, conn);
    // Timestamps with time zone print in UTC, as a drill's COPY prints them (pg_dump sets the
    // date, interval and float output itself; the time zone is a startup parameter poolers
    // pass on). pg_restore reads them whatever the target's settings.
    command.env("PGTZ", "UTC");
    // Uncompressed: the repository compresses (zstd) and dedups, and zlib output would hide
    // the unchanged runs between two dumps from content-defined chunking; and the record is
    // read from the rows as they pass.
    command.args([
        "--format=custom",
        "--compress=0",
        "--no-password",
        "--snapshot",
        &snapshot,
    ]);
    // What else shapes the rows' text and pg_dump leaves as the server has it (the same role
    // and database as this connection): a drill sets the same. And the server's version:
    // before 12, `extra_float_digits = 3` printed floats otherwise than a drill's server does.
    let output = OutputSettings::read(&mut client)?;
    let from_stream = output.server_version_num >= 120_000;
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
    // The record is read from the archive as it streams past (`pg_archive`). The exporting
    // transaction stays open until pg_dump is done (it needs the snapshot until it has
    // imported it) and, should the archive not be understood (a pg_dump newer than this
    // reader), the record is taken by query in that same snapshot instead (format 3).
    let parser = Arc::new(Mutex::new(ArchiveParser::default()));
    let (understood_tx, understood_rx) = std::sync::mpsc::channel::<bool>();
    let recorder = std::thread::spawn(move || -> Result<Option<Record>> {
        let fallback = match understood_rx.recv() {
            Ok(false) => Some(record_in(&mut client, 3, None)),
            _ => None,
        };
        let _ = client.batch_execute("COMMIT");
        fallback.transpose()
    });
    let tapped = Tapped::new(stdout, parser.clone());
    Ok(Capture {
        entries: vec![Entry::File(
            FILE.into(),
            Metadata::default(),
            Box::new(tapped),
        )],
        finish: Box::new(move || {
            let dumped = dump.finish();
            let parsed = match parser.lock() {
                Ok(_) if !from_stream => Err("a server before PostgreSQL 12".into()),
                Ok(mut p) => std::mem::take(&mut *p).finish(),
                Err(_) => Err("the archive reader panicked".into()),
            };
            let _ = understood_tx.send(parsed.is_ok() || dumped.is_err());
            let fallback = recorder
                .join()
                .unwrap_or_else(|_| Err(err("the record thread panicked")));
            dumped?;
            match parsed {
                Ok(archive) => archive_record(archive, &output),
                Err(reason) => {
                    tracing::warn!(%reason, "the record is taken by query, not from pg_dump's archive");
                    fallback?.ok_or_else(|| err(reason))
                }
            }
        }),
    })
}

/// Output settings a session has from the server (pg_dump's, see `capture`; a drill's own
/// where the record names none), and the server's version.
struct OutputSettings {
    lc_monetary: String,
    bytea_output: String,
    server_encoding: String,
    server_version_num: i32,
}

impl OutputSettings {
    fn read(client: &mut postgres::Client) -> Result<OutputSettings> {
        let shown = client
            .query_one(
                "SELECT current_setting('lc_monetary'), current_setting('bytea_output'), \
                        current_setting('server_encoding'), \
                        current_setting('server_version_num')::int",
                &[],
            )
            .map_err(|e| err(format!("read the output settings: {}", text(&e))))?;
        Ok(OutputSettings {
            lc_monetary: shown.get(0),
            bytea_output: shown.get(1),
            server_encoding: shown.get(2),
            server_version_num: shown.get(3),
        })
    }
}

/// A format-4 record from what the archive held.
fn archive_record(archive: ArchiveRecord, output: &OutputSettings) -> Result<Record> {
    let mut parts = BTreeMap::new();
    for (name, digest) in archive.tables {
        parts.insert(format!("table {name}"), digest.part().map_err(err)?);
    }
    let mut settings = BTreeMap::from([
        ("lc_monetary".to_owned(), output.lc_monetary.clone()),
        ("bytea_output".to_owned(), output.bytea_output.clone()),
    ]);
    if let Some(encoding) = archive.encoding {
        settings.insert("client_encoding".to_owned(), encoding);
    }
    let columns = archive
        .columns
        .into_iter()
        .map(|(name, list)| (format!("table {name}"), list))
        .collect();
    Ok(Record {
        version: 4,
        parts,
        settings,
        columns,
    })
}

/// A table of at least this many blocks (64 MiB of 8 KiB pages) is copied in block ranges on
/// several connections at once, in one snapshot: its digest is a sum, so order does not
/// matter, and a drill's RTO is mostly its largest tables' COPY.
const SPLIT_BLOCKS: i64 = 8192;

/// Connections copying one table at most.
const MAX_COPIERS: usize = 4;

/// The ordinary tables outside the system schemas, as `c` (pg_class) and `n` (pg_namespace):
/// what a record lists, in every format.
const USER_TABLES: &str = "FROM pg_catalog.pg_class c \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
       AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'";

/// Format 4's record of a live database: each table's rows as pg_dump copies them — its
/// columns (those the backup's record lists, else the table's own but generated ones), an
/// extension's configuration table filtered by the extension's condition — printed under
/// pg_dump's output settings and the recorded ones, digested as the backup digested pg_dump's
/// rows. With `like`, only the tables it names (pg_dump copies no rows of an extension's
/// other tables, and a drill compares like with like). `client` is in a repeatable-read
/// transaction; a large table is copied in block ranges by more connections to `conn` that
/// share its snapshot.
fn copy_record(
    conn: &PgConn,
    client: &mut postgres::Client,
    like: Option<&Record>,
) -> Result<Record> {
    // Listed before any encoding change: names are read as UTF-8 text.
    let tables = client
        .query(
            &format!(
                "SELECT n.nspname || '.' || c.relname, format('%I.%I', n.nspname, c.relname), \
                    coalesce((SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) \
                      FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 \
                       AND NOT a.attisdropped AND a.attgenerated = ''), ''), \
                    (SELECT e.extcondition[array_position(e.extconfig, c.oid)] \
                      FROM pg_catalog.pg_extension e WHERE c.oid = ANY (e.extconfig)), \
                    pg_catalog.pg_relation_size(c.oid) \
                      / pg_catalog.current_setting('block_size')::bigint \
             {USER_TABLES} ORDER BY 1"
            ),
            &[],
        )
        .map_err(|e| err(format!("list tables: {}", text(&e))))?;
    let shown = OutputSettings::read(client)?;
    let recorded = like.map(|r| &r.settings);
    let setting = |name: &str, own: &String| -> String {
        recorded.and_then(|s| s.get(name)).unwrap_or(own).clone()
    };
    let (lc_monetary, mut bytea_output, encoding) = (
        setting("lc_monetary", &shown.lc_monetary),
        setting("bytea_output", &shown.bytea_output),
        setting("client_encoding", &shown.server_encoding),
    );
    // The first format-4 records dumped bytea in hex and did not say so.
    if recorded.is_some_and(|s| !s.contains_key("bytea_output")) {
        bytea_output = "hex".into();
    }
    // TID range scans (PostgreSQL 14) read only a range's blocks.
    let copiers = if shown.server_version_num >= 140_000 {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_COPIERS))
    } else {
        1
    };
    let session = Session {
        settings: vec![
            ("DateStyle", "ISO".into()),
            ("IntervalStyle", "postgres".into()),
            ("extra_float_digits", "3".into()),
            ("TimeZone", "UTC".into()),
            ("search_path", String::new()),
            ("row_security", "off".into()),
            ("bytea_output", bytea_output.clone()),
            // As pg_dump: a long COPY, or the snapshot's connection idle while ranges are
            // copied, is not cut short by a server's or role's timeouts.
            ("statement_timeout", "0".into()),
            ("lock_timeout", "0".into()),
            ("idle_in_transaction_session_timeout", "0".into()),
        ],
        lc_monetary: lc_monetary.clone(),
        encoding: encoding.clone(),
    };
    session.apply(client, false)?;
    let mut snapshot: Option<String> = None;
    let mut parts = BTreeMap::new();
    let mut columns = BTreeMap::new();
    for table in tables {
        let name: String = table.get(0);
        let quoted: String = table.get(1);
        let condition = table
            .get::<_, Option<String>>(3)
            .filter(|c| !c.trim().is_empty());
        let blocks: i64 = table.get(4);
        let key = format!("table {name}");
        if like.is_some_and(|r| !r.parts.contains_key(&key)) {
            continue;
        }
        let list = match like.and_then(|r| r.columns.get(&key)) {
            Some(list) => list.clone(),
            None => {
                let own: String = table.get(2);
                if own.is_empty() {
                    own
                } else {
                    format!("({own})")
                }
            }
        };
        let select = list
            .strip_prefix('(')
            .and_then(|l| l.strip_suffix(')'))
            .unwrap_or("*");
        let digest = if let Some(condition) = condition {
            // As pg_dump's `dumpTableData_copy` builds it.
            let sql = format!("COPY (SELECT {select} FROM {quoted} {condition}) TO STDOUT");
            copy_digest(client, &sql, &name)?
        } else if copiers > 1 && blocks >= SPLIT_BLOCKS {
            // `ONLY`: COPY of a table copies no rows of its inheritance children. No column
            // list is no columns (a table of generated columns only), as COPY's.
            let select = if list.is_empty() { "" } else { select };
            let split = split_copy(
                conn,
                client,
                &mut snapshot,
                &session,
                copiers,
                blocks,
                select,
                &quoted,
                &name,
            );
            match split {
                Ok(digest) => digest,
                Err(error) => {
                    // More connections refused (a pooler's or the server's limit), say:
                    // the table is copied whole on this one.
                    tracing::warn!(table = %name, %error, "copying in block ranges failed; copying it whole");
                    copy_digest(client, &format!("COPY {quoted} {list} TO STDOUT"), &name)?
                }
            }
        } else {
            copy_digest(client, &format!("COPY {quoted} {list} TO STDOUT"), &name)?
        };
        parts.insert(key.clone(), digest.part().map_err(err)?);
        columns.insert(key, list);
    }
    Ok(Record {
        version: 4,
        parts,
        settings: BTreeMap::from([
            ("lc_monetary".to_owned(), lc_monetary),
            ("bytea_output".to_owned(), bytea_output),
            ("client_encoding".to_owned(), encoding),
        ]),
        columns,
    })
}

/// One table's digest from block ranges copied at once on connections sharing the
/// transaction's snapshot (exported on first use).
#[allow(clippy::too_many_arguments)]
fn split_copy(
    conn: &PgConn,
    client: &mut postgres::Client,
    snapshot: &mut Option<String>,
    session: &Session,
    copiers: usize,
    blocks: i64,
    select: &str,
    quoted: &str,
    name: &str,
) -> Result<CopyDigest> {
    let snapshot = match snapshot {
        Some(s) => s.clone(),
        None => {
            // Under a savepoint: a refusal leaves the transaction usable for the whole copy.
            let mut exported = String::new();
            with_savepoint(client, |c| {
                exported = c
                    .query_one("SELECT pg_catalog.pg_export_snapshot()", &[])?
                    .get(0);
                Ok(())
            })
            .map_err(|e| err(format!("export a snapshot: {}", text(&e))))?;
            snapshot.insert(exported).clone()
        }
    };
    let ranges = block_ranges(blocks, copiers);
    let digests: Vec<Result<CopyDigest>> = std::thread::scope(|scope| {
        let workers: Vec<_> = ranges
            .iter()
            .map(|&(lo, hi)| {
                let upper = hi.map_or(String::new(), |hi| {
                    format!(" AND ctid < '({hi},0)'::pg_catalog.tid")
                });
                let sql = format!(
                    "COPY (SELECT {select} FROM ONLY {quoted} \
                     WHERE ctid >= '({lo},0)'::pg_catalog.tid{upper}) TO STDOUT"
                );
                let snapshot = &snapshot;
                scope.spawn(move || copy_range(conn, snapshot, session, &sql, name))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(err("a copying thread panicked")))
            })
            .collect()
    });
    let mut whole = CopyDigest::default();
    for digest in digests {
        whole.merge(&digest?).map_err(err)?;
    }
    Ok(whole)
}

/// `copiers` block ranges covering `blocks` blocks, the last open-ended (rows a table gained
/// past the size read are still in it).
fn block_ranges(blocks: i64, copiers: usize) -> Vec<(i64, Option<i64>)> {
    let step = (blocks / copiers as i64).max(1);
    (0..copiers as i64)
        .map(|i| {
            let lo = i * step;
            let hi = (i + 1 < copiers as i64).then_some((i + 1) * step);
            (lo, hi)
        })
        .collect()
}

/// The output settings of a format-4 record's sessions.
struct Session {
    settings: Vec<(&'static str, String)>,
    lc_monetary: String,
    encoding: String,
}

impl Session {
    /// Sets them for the current transaction; the encoding last (names were read before).
    /// `quiet`: a copying connection of the same record, whose first already warned.
    fn apply(&self, client: &mut postgres::Client, quiet: bool) -> Result<()> {
        for (name, value) in &self.settings {
            set_local(client, name, value).map_err(|e| err(format!("set {name}: {}", text(&e))))?;
        }
        // A locale the drill's host lacks is no reason to fail every table: only money
        // prints by it, and a money column then shows as a content difference.
        if let Err(e) = with_savepoint(client, |c| set_local(c, "lc_monetary", &self.lc_monetary))
            && !quiet
        {
            tracing::warn!(lc_monetary = %self.lc_monetary, error = %text(&e), "lc_monetary is not available here");
        }
        set_local(client, "client_encoding", &self.encoding)
            .map_err(|e| err(format!("set client_encoding: {}", text(&e))))
    }
}

/// One block range of a table, copied on a connection of its own in `snapshot`.
fn copy_range(
    conn: &PgConn,
    snapshot: &str,
    session: &Session,
    sql: &str,
    name: &str,
) -> Result<CopyDigest> {
    let mut client = connect(conn)?;
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .map_err(|e| err(format!("begin: {}", text(&e))))?;
    client
        .batch_execute(&format!(
            "SET TRANSACTION SNAPSHOT '{}'",
            snapshot.replace('\'', "''")
        ))
        .map_err(|e| err(format!("import the snapshot: {}", text(&e))))?;
    session.apply(&mut client, true)?;
    let digest = copy_digest(&mut client, sql, name)?;
    let _ = client.batch_execute("COMMIT");
    Ok(digest)
}

/// The digest of what `sql` (a `COPY … TO STDOUT`) prints.
fn copy_digest(client: &mut postgres::Client, sql: &str, name: &str) -> Result<CopyDigest> {
    let mut reader = client
        .copy_out(sql)
        .map_err(|e| err(format!("copy table {name}: {}", text(&e))))?;
    let mut digest = CopyDigest::default();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| err(format!("copy table {name}: {e}")))?;
        if n == 0 {
            return Ok(digest);
        }
        digest.feed(&buf[..n]);
    }
}

/// `SET LOCAL name = value`, the value bound (not spliced into SQL).
fn set_local(
    client: &mut postgres::Client,
    name: &str,
    value: &str,
) -> std::result::Result<(), postgres::Error> {
    client
        .execute(
            "SELECT pg_catalog.set_config($1, $2, true)",
            &[&name, &value],
        )
        .map(|_| ())
}

/// Runs `f` under a savepoint, rolled back when it fails, so the transaction goes on.
fn with_savepoint(
    client: &mut postgres::Client,
    f: impl FnOnce(&mut postgres::Client) -> std::result::Result<(), postgres::Error>,
) -> std::result::Result<(), postgres::Error> {
    client.batch_execute("SAVEPOINT wharf_setting")?;
    match f(client) {
        Ok(()) => client.batch_execute("RELEASE SAVEPOINT wharf_setting"),
        Err(e) => {
            // ROLLBACK TO keeps the savepoint: released too, so the transaction is no longer
            // in a subtransaction (which, among others, cannot export a snapshot).
            client.batch_execute(
                "ROLLBACK TO SAVEPOINT wharf_setting; RELEASE SAVEPOINT wharf_setting",
            )?;
            Err(e)
        }
    }
}

/// The record of the database as it is now (in one repeatable-read transaction), digested as
/// a record of format `version` does (a drill of an older backup digests as it did). `like`:
/// the backup's record, whose format-3 digests say how each table was hashed.
pub(crate) fn record(conn: &PgConn, version: u32, like: Option<&Record>) -> Result<Record> {
    let mut client = connect(conn)?;
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .map_err(|e| err(format!("begin: {}", text(&e))))?;
    let record = if version >= 4 {
        copy_record(conn, &mut client, like)
    } else {
        record_in(&mut client, version, like)
    };
    let _ = client.batch_execute("COMMIT");
    record
}

/// How a table's rows are hashed into its digest (each row to 64 bits, summed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowHash {
    /// Format 1: the first 64 bits of the MD5 of the row's text form.
    Md5,
    /// Formats 2 and 3: `hashtextextended` of the row's text form (PostgreSQL's own hash, as
    /// hash partitioning uses; `COLLATE "C"` makes it hash the bytes). With MD5 the record's
    /// scan beside pg_dump took longer than the whole dump (pgbench scale 20: 1.7–2.3 s
    /// against 0.5 s; pg_dump -Fc 1.2 s).
    Text,
    /// Format 3, for a table whose column types all have a hash function:
    /// `hash_record_extended` of the row, each column hashed by its type's extended hash (the
    /// one hash partitioning keeps stable across versions) without first writing the row out
    /// as text: half the text form's scan (pgbench scale 20: 0.32 s against 0.63 s). Values
    /// equal by their type hash alike (numeric `1.0` and `1.00`), which a restore of a dump
    /// never tells apart anyway.
    Typed,
}

impl RowHash {
    fn sql(self) -> &'static str {
        match self {
            RowHash::Md5 => "('x' || substr(md5(t::text), 1, 16))::bit(64)::int8",
            RowHash::Text => "hashtextextended(t::text COLLATE \"C\", 0)",
            RowHash::Typed => "hash_record_extended(t, 0)",
        }
    }

    /// The digest's prefix in a format-3 record, so a drill hashes each table as its backup did.
    fn tag(self) -> &'static str {
        match self {
            RowHash::Typed => "typed:",
            RowHash::Text | RowHash::Md5 => "text:",
        }
    }
}

/// Per ordinary table: `count(*)` and the exact sum of a 64-bit hash of each row (`RowHash`) —
/// order-independent, computed in the server. `sum(int8)` accumulates in 128 bits and returns
/// numeric: it never overflows and gives the digest that casting each row's hash to numeric
/// gave, ~0.1 s sooner on 2 million rows. Like hash partitioning, formats 2 and 3 assume the
/// backed-up server and the drill's sandbox share byte order.
fn record_in(client: &mut postgres::Client, version: u32, like: Option<&Record>) -> Result<Record> {
    let tables = client
        .query(
            &format!(
                "SELECT n.nspname || '.' || c.relname, format('%I.%I', n.nspname, c.relname) \
                 {USER_TABLES} ORDER BY 1"
            ),
            &[],
        )
        .map_err(|e| err(format!("list tables: {}", text(&e))))?;
    let mut parts = BTreeMap::new();
    for table in tables {
        let (name, quoted): (String, String) = (table.get(0), table.get(1));
        let key = format!("table {name}");
        let recorded = like
            .and_then(|r| r.parts.get(&key))
            .map(|p| p.digest.as_str());
        let part = match version {
            ..=1 => checksum(client, &name, &quoted, RowHash::Md5)?,
            2 => checksum(client, &name, &quoted, RowHash::Text)?,
            _ => match recorded {
                Some(d) if d.starts_with(RowHash::Text.tag()) => tagged(
                    checksum(client, &name, &quoted, RowHash::Text)?,
                    RowHash::Text,
                ),
                Some(d) if d.starts_with(RowHash::Typed.tag()) => tagged(
                    checksum(client, &name, &quoted, RowHash::Typed)?,
                    RowHash::Typed,
                ),
                _ => typed_or_text(client, &name, &quoted)?,
            },
        };
        parts.insert(key, part);
    }
    Ok(Record {
        version,
        parts,
        settings: BTreeMap::new(),
        columns: BTreeMap::new(),
    })
}

/// Format 3's choice: the typed hash, or the text form's when a column type has no hash
/// function (`json`, geometric types) or the server predates `hash_record_extended` (14) —
/// both `undefined_function`; the savepoint keeps the transaction (and its snapshot) usable.
fn typed_or_text(client: &mut postgres::Client, name: &str, quoted: &str) -> Result<Part> {
    let savepoint = |client: &mut postgres::Client, sql: &str| {
        client
            .batch_execute(sql)
            .map_err(|e| err(format!("checksum of table {name}: {}", text(&e))))
    };
    savepoint(client, "SAVEPOINT wharf_record")?;
    match query_checksum(client, quoted, RowHash::Typed) {
        Ok(part) => {
            savepoint(client, "RELEASE SAVEPOINT wharf_record")?;
            Ok(tagged(part, RowHash::Typed))
        }
        Err(e) if e.code() == Some(&postgres::error::SqlState::UNDEFINED_FUNCTION) => {
            savepoint(client, "ROLLBACK TO SAVEPOINT wharf_record")?;
            Ok(tagged(
                checksum(client, name, quoted, RowHash::Text)?,
                RowHash::Text,
            ))
        }
        Err(e) => Err(err(format!("checksum of table {name}: {}", text(&e)))),
    }
}

fn tagged(mut part: Part, hash: RowHash) -> Part {
    part.digest = format!("{}{}", hash.tag(), part.digest);
    part
}

fn checksum(
    client: &mut postgres::Client,
    name: &str,
    quoted: &str,
    hash: RowHash,
) -> Result<Part> {
    query_checksum(client, quoted, hash)
        .map_err(|e| err(format!("checksum of table {name}: {}", text(&e))))
}

fn query_checksum(
    client: &mut postgres::Client,
    quoted: &str,
    hash: RowHash,
) -> std::result::Result<Part, postgres::Error> {
    let row = client.query_one(
        &format!(
            "SELECT count(*)::int8, coalesce(sum({}), 0)::text FROM {quoted} t",
            hash.sql()
        ),
        &[],
    )?;
    let count: i64 = row.get(0);
    Ok(Part {
        count: u64::try_from(count).unwrap_or(0),
        digest: row.get(1),
    })
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
