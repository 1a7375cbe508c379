//! MariaDB: `mariadb-dump --single-transaction`, with the record taken in a consistent
//! snapshot of wharf's own that is started, like the dump's, while wharf holds
//! `FLUSH TABLES WITH READ LOCK` (released as soon as the dump has begun its first table, so
//! writers wait milliseconds). Restore pipes the dump into `mariadb`. Credentials go in a
//! 0600 option file (`--defaults-extra-file`), never on argv or in the environment.
//! SQL runs through the `mariadb` client in batch mode, one statement at a time.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Stdio};
use std::sync::mpsc;

use rustic_core::repofile::Metadata;
use tempfile::TempDir;
use wharf_manifest::model::DatastoreKind;

use super::Feed;
use crate::capture::{Capture, Entry};
use crate::datastore::MariadbConn;
use crate::error::{BackupError, Result};
use crate::record::{Part, Record};
use crate::tools::{Running, Tool, Tools, private_file};

pub(crate) const FILE: &str = "mariadb.sql";

fn err(detail: impl Into<String>) -> BackupError {
    BackupError::store(DatastoreKind::Mariadb, detail)
}

/// The 0600 option file with the connection and password, in its own temp dir.
struct Options {
    _dir: TempDir,
    path: PathBuf,
}

fn options(conn: &MariadbConn) -> Result<Options> {
    let dir = tempfile::Builder::new()
        .prefix("wharf-mariadb")
        .tempdir()
        .map_err(|e| BackupError::io(std::env::temp_dir(), e))?;
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut text = format!("[client]\nuser={}\n", quote(&conn.user));
    match &conn.socket {
        Some(socket) => text.push_str(&format!("socket={}\n", quote(&socket.to_string_lossy()))),
        None => text.push_str(&format!(
            "host={}\nport={}\nprotocol=TCP\n",
            quote(&conn.host),
            conn.port
        )),
    }
    if let Some(password) = &conn.password {
        text.push_str(&format!("password={}\n", quote(password.expose())));
    }
    let path = private_file(dir.path(), "client.cnf", &text)?;
    Ok(Options { _dir: dir, path })
}

fn defaults(path: &Path) -> String {
    format!("--defaults-extra-file={}", path.display())
}

/// A `mariadb` client session: statements in on stdin, tab-separated rows out.
struct Session {
    running: Running,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
    sync: u64,
    _options: Options,
}

impl Session {
    fn open(conn: &MariadbConn, tools: &Tools) -> Result<Session> {
        let options = options(conn)?;
        let mut command = tools.command(Tool::Mariadb)?;
        command
            .arg(defaults(&options.path))
            .args(["--batch", "--skip-column-names", "--raw", "--unbuffered"])
            .arg(format!("--database={}", conn.dbname))
            .stdin(Stdio::piped());
        let mut running = Running::spawn(Tool::Mariadb, command, conn.password.clone())?;
        let stdin = running
            .child
            .stdin
            .take()
            .ok_or_else(|| err("mariadb has no stdin"))?;
        let out = BufReader::new(
            running
                .child
                .stdout
                .take()
                .ok_or_else(|| err("no stdout"))?,
        );
        Ok(Session {
            running,
            stdin,
            out,
            sync: 0,
            _options: options,
        })
    }

    /// Runs one statement; its rows, each split at tabs.
    fn query(&mut self, sql: &str) -> Result<Vec<Vec<String>>> {
        self.sync += 1;
        let marker = format!("wharf-sync-{}", self.sync);
        let sent =
            write!(self.stdin, "{sql};\nSELECT '{marker}';\n").and_then(|()| self.stdin.flush());
        let mut rows = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            let read = if sent.is_ok() {
                self.out.read_line(&mut line).unwrap_or(0)
            } else {
                0
            };
            if read == 0 {
                return Err(self.failed(sql));
            }
            let text = line.trim_end_matches('\n');
            if text == marker {
                return Ok(rows);
            }
            rows.push(text.split('\t').map(str::to_owned).collect());
        }
    }

    /// The client ended (it stops at the first error): its stderr says why.
    fn failed(&mut self, sql: &str) -> BackupError {
        let statement: String = sql.chars().take(60).collect();
        match self.running.finish() {
            Err(e) => err(format!("`{statement}`: {e}")),
            Ok(()) => err(format!("`{statement}`: the client ended early")),
        }
    }

    fn close(mut self) -> Result<()> {
        let _ = writeln!(self.stdin, "COMMIT;");
        drop(self.stdin);
        self.running.finish()
    }
}

pub(crate) fn capture(conn: &MariadbConn, tools: &Tools) -> Result<Capture> {
    let mut command = tools.command(Tool::MariadbDump)?;
    let mut session = Session::open(conn, tools)?;
    session.query("FLUSH TABLES WITH READ LOCK").map_err(|e| {
        err(format!(
            "{e} (a consistent backup needs the RELOAD privilege for FLUSH TABLES WITH READ LOCK)"
        ))
    })?;
    session.query("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")?;
    session.query("START TRANSACTION WITH CONSISTENT SNAPSHOT")?;
    let options = options(conn)?;
    command
        .arg(defaults(&options.path))
        .args([
            "--single-transaction",
            "--routines",
            "--triggers",
            "--hex-blob",
        ])
        .args(["--default-character-set=utf8mb4", "--skip-dump-date"])
        .arg(&conn.dbname);
    let mut dump = Running::spawn(Tool::MariadbDump, command, conn.password.clone())?;
    let stdout = dump
        .child
        .stdout
        .take()
        .ok_or_else(|| err("mariadb-dump has no stdout"))?;
    let (started, begun) = mpsc::channel();
    let reader = Marker {
        inner: stdout,
        seen: Vec::new(),
        signal: Some(started),
    };
    // Unlocks once the dump is inside its transaction, then takes the record in wharf's own
    // snapshot (the same state) while the archiver drains the dump.
    let recorder = std::thread::spawn(move || -> Result<Record> {
        let _ = begun.recv();
        session.query("UNLOCK TABLES")?;
        let record = record_in(&mut session)?;
        session.close()?;
        Ok(record)
    });
    Ok(Capture {
        entries: vec![Entry::File(
            FILE.into(),
            Metadata::default(),
            Box::new(reader),
        )],
        finish: Box::new(move || {
            let dumped = dump.finish();
            drop(options);
            let record = recorder
                .join()
                .unwrap_or_else(|_| Err(err("the record thread panicked")));
            dumped?;
            record
        }),
    })
}

/// Passes the dump through and signals once its first table (or its end) has been reached:
/// mariadb-dump starts its transaction before dumping any table.
struct Marker {
    inner: ChildStdout,
    seen: Vec<u8>,
    signal: Option<mpsc::Sender<()>>,
}

const FIRST_TABLE: &[u8] = b"-- Table structure for table";

impl Read for Marker {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.signal.is_some() {
            self.seen.extend_from_slice(&buf[..n]);
            let found = self
                .seen
                .windows(FIRST_TABLE.len())
                .any(|w| w == FIRST_TABLE);
            if n == 0 || found {
                if let Some(signal) = self.signal.take() {
                    let _ = signal.send(());
                }
                self.seen = Vec::new();
            } else if self.seen.len() > FIRST_TABLE.len() {
                let keep = self.seen.len() - FIRST_TABLE.len();
                self.seen.drain(..keep);
            }
        }
        Ok(n)
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        if let Some(signal) = self.signal.take() {
            let _ = signal.send(());
        }
    }
}

/// The record of the database as it is now.
pub(crate) fn record(conn: &MariadbConn, tools: &Tools) -> Result<Record> {
    let mut session = Session::open(conn, tools)?;
    session.query("START TRANSACTION WITH CONSISTENT SNAPSHOT")?;
    let record = record_in(&mut session)?;
    session.close()?;
    Ok(record)
}

/// Per base table: `COUNT(*)` and the sum of the first 64 bits of the MD5 of each row's
/// columns (with a NULL mask, since CONCAT_WS skips NULLs) — order-independent, in the server.
fn record_in(session: &mut Session) -> Result<Record> {
    session.query("SET SESSION group_concat_max_len = 16777216")?;
    let tables = session.query(
        "SELECT c.TABLE_NAME, GROUP_CONCAT(CONCAT('`', REPLACE(c.COLUMN_NAME, '`', '``'), '`') \
         ORDER BY c.ORDINAL_POSITION SEPARATOR ',') FROM information_schema.COLUMNS c \
         JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA \
         AND t.TABLE_NAME = c.TABLE_NAME WHERE c.TABLE_SCHEMA = DATABASE() \
         AND t.TABLE_TYPE = 'BASE TABLE' GROUP BY c.TABLE_NAME ORDER BY c.TABLE_NAME",
    )?;
    let mut parts = BTreeMap::new();
    for row in tables {
        let [name, columns] = [&row[0], &row[1]];
        let nulls: Vec<String> = columns.split(',').map(|c| format!("ISNULL({c})")).collect();
        let sql = format!(
            "SELECT COUNT(*), COALESCE(SUM(CAST(CONV(SUBSTRING(MD5(CONCAT_WS(0x1f, {columns}, \
             CONCAT({}))), 1, 16), 16, 10) AS DECIMAL(40, 0))), 0) FROM `{}`",
            nulls.join(", "),
            name.replace('`', "``")
        );
        let result = session.query(&sql)?;
        let first = result
            .first()
            .ok_or_else(|| err(format!("no checksum for table {name}")))?;
        parts.insert(
            format!("table {name}"),
            Part {
                count: first[0].parse().unwrap_or(0),
                digest: first.get(1).cloned().unwrap_or_default(),
            },
        );
    }
    Ok(Record::new(parts))
}

/// Pipes the dump into `mariadb` (the dump drops and recreates each table it holds).
pub(crate) fn restore(conn: &MariadbConn, tools: &Tools, feed: Feed<'_>) -> Result<()> {
    let options = options(conn)?;
    let mut command = tools.command(Tool::Mariadb)?;
    command
        .arg(defaults(&options.path))
        .arg(format!("--database={}", conn.dbname))
        .arg("--batch")
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    let mut client = Running::spawn(Tool::Mariadb, command, conn.password.clone())?;
    let mut stdin = client
        .child
        .stdin
        .take()
        .ok_or_else(|| err("mariadb has no stdin"))?;
    let fed = feed(&mut stdin);
    drop(stdin);
    client.finish()?;
    fed
}
