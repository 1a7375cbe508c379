//! Opening the state database on either engine — SQLite (header check, pragmas) or
//! PostgreSQL (session settings) — migrations, transactions and the errors that name it.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, TransactionBehavior};

use crate::engine::{Conn, Db, DbError, PgConn, WriteTx, vals};
use crate::location::{PgDsn, StateLocation};
use crate::migrations::{MIGRATIONS, PG_MIGRATIONS};

/// The database file name inside the state directory.
pub const DB_FILE: &str = "state.db";

/// Every SQLite database file starts with these 16 bytes.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Why the state could not be opened, read or written; always names the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    /// The file exists but is not an SQLite database.
    #[error(
        "{path}: not a wharf state database (not an SQLite file); move it away or pass --state-dir"
    )]
    NotSqlite { path: PathBuf },
    /// SQLite reported an error (a corrupt file, a full disk, a lock held too long).
    #[error("{path}: {action}: {source}")]
    Sqlite {
        path: PathBuf,
        action: &'static str,
        source: rusqlite::Error,
    },
    /// PostgreSQL reported an error; `path` is the DSN without its password.
    #[error("{path}: {action}: {}", pg_chain(.source))]
    Postgres {
        path: PathBuf,
        action: &'static str,
        source: postgres::Error,
    },
    /// The PostgreSQL server could not be reached or refused the login (`target` is the DSN
    /// without its password, naming host and port).
    #[error("{target}: cannot connect to the PostgreSQL state store: {}", pg_chain(.source))]
    Connect {
        target: String,
        source: postgres::Error,
    },
    /// The state DSN does not parse or asks for what this store cannot do.
    #[error("the state DSN is not usable: {reason}")]
    BadDsn { reason: String },
    /// This store's writes are fenced by a token the leader lease no longer carries: another
    /// replica took the lease, and this process must stop writing (see `Store::fence_writes`).
    #[error(
        "{path}: this process's fencing token {ours} is stale: the lease is now held under token {held} (another replica leads); nothing was written"
    )]
    Fenced { path: PathBuf, ours: u64, held: u64 },
    /// A row read back is not what the store wrote (a tampered or foreign row), or a write
    /// changed other rows than expected.
    #[error("{path}: {action}: {detail}")]
    Data {
        path: PathBuf,
        action: &'static str,
        detail: String,
    },
    /// The database was written by a newer wharf.
    #[error(
        "{path}: schema version {found} is newer than this wharf knows ({known}); upgrade wharf"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: usize,
    },
    /// The filesystem holding the state has no room left: SQLite refused the write (or could
    /// not even map its shared memory), and the transaction did not happen.
    #[error(
        "{path}: {action}: the disk holding the state is full ({source}); nothing was changed. Free some space and retry"
    )]
    DiskFull {
        path: PathBuf,
        action: &'static str,
        source: rusqlite::Error,
    },
    /// The ledger key file is unusable.
    #[error("{path}: {reason}")]
    Key { path: PathBuf, reason: String },
    /// The file fails SQLite's integrity check: appending to it would add evidence to a
    /// ledger that can no longer be verified, so a writer refuses it.
    #[error(
        "{path}: the database fails its integrity check ({detail}); nothing was written. Restore it from a backup or move it away; `wharf audit verify` shows what its ledger still proves"
    )]
    Corrupt { path: PathBuf, detail: String },
}

/// The state database. Owns the only connection this process uses (see the crate docs).
#[derive(Debug)]
pub struct Store {
    pub(crate) db: Db,
    /// The database file, or the DSN without its password: what errors name.
    pub(crate) path: PathBuf,
    /// The DSN a PostgreSQL store was opened with (a reader opens the same).
    pg: Option<PgDsn>,
}

/// Creates the state directory (its parents as usual) with mode 0700, and tightens an
/// existing one to 0700: it holds the encrypted secrets, the ledger and the logs, which are
/// the owner's alone.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The database file, created empty with mode 0600 when missing (SQLite gives its `-wal` and
/// `-shm` files the database's mode), and tightened to 0600 with those when it exists. Only
/// `chmod` touches an existing file: opening and closing it would drop this process's locks.
fn private_files(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if !path.exists() {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = Path::new(&name);
        match std::fs::metadata(file) {
            Ok(meta) if meta.permissions().mode() & 0o777 != 0o600 => {
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) `state.db` in `state_dir` and brings its schema up to date.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        private_dir(state_dir).map_err(|source| StoreError::Io {
            path: state_dir.to_owned(),
            action: "cannot create the state directory",
            source,
        })?;
        Self::open_file(&state_dir.join(DB_FILE))
    }

    /// Opens a database file directly (benchmarks and tests).
    pub fn open_file(path: &Path) -> Result<Self, StoreError> {
        private_files(path).map_err(|source| StoreError::Io {
            path: path.to_owned(),
            action: "cannot make the state database private (0600)",
            source,
        })?;
        check_header(path)?;
        let conn = Connection::open(path).map_err(sqlite(path, "cannot open"))?;
        let mut store = Self {
            db: Db::sqlite(conn),
            path: path.to_owned(),
            pg: None,
        };
        store.configure()?;
        store.migrate()?;
        tracing::debug!(path = %path.display(), "state database open");
        Ok(store)
    }

    /// Opens the state where `location` says: a state directory as [`Store::open`], or a
    /// PostgreSQL database (connecting, then bringing its schema up to date).
    pub fn open_location(location: &StateLocation) -> Result<Self, StoreError> {
        match location {
            StateLocation::Dir(dir) => Self::open(dir),
            StateLocation::Postgres(dsn) => {
                let mut store = Self {
                    db: connect(dsn, "")?,
                    path: PathBuf::from(dsn.redacted()),
                    pg: Some(dsn.clone()),
                };
                store.migrate_postgres()?;
                tracing::debug!(dsn = %dsn, "state database open");
                Ok(store)
            }
        }
    }

    /// [`Store::open_location`] for a writer: a state directory as
    /// [`Store::open_for_writing`]; see [`Store::check_integrity`] for PostgreSQL.
    pub fn open_location_for_writing(location: &StateLocation) -> Result<Self, StoreError> {
        let store = Self::open_location(location)?;
        store.check_integrity()?;
        Ok(store)
    }

    /// Which engine holds the state: `"sqlite"` or `"postgres"`.
    pub fn engine_name(&self) -> &'static str {
        match self.db.engine() {
            crate::engine::Engine::Sqlite => "sqlite",
            crate::engine::Engine::Postgres => "postgres",
        }
    }

    /// The SQLite connection, for what only SQLite has (pragmas, its own migrations).
    fn sqlite_conn(&mut self) -> Option<&mut Connection> {
        match self.db.conn_mut() {
            Conn::Sqlite(conn) => Some(conn),
            Conn::Postgres(_) => None,
        }
    }

    /// Opens the state for a writer: as [`Store::open`], then SQLite's `PRAGMA quick_check`
    /// (O(size of the file), no index cross-check), refusing a damaged file with
    /// [`StoreError::Corrupt`] before anything is appended to it.
    pub fn open_for_writing(state_dir: &Path) -> Result<Self, StoreError> {
        let store = Self::open(state_dir)?;
        store.check_integrity()?;
        Ok(store)
    }

    /// `PRAGMA quick_check`: `Ok` when SQLite answers `ok`, else [`StoreError::Corrupt`] with
    /// its first findings. On PostgreSQL, `Ok`: the server checks its own pages (with data
    /// checksums when the cluster has them), and has no whole-database check cheap enough to
    /// run at every open; the ledger's verification covers what wharf wrote.
    pub fn check_integrity(&self) -> Result<(), StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt {
            path: self.path.clone(),
            detail,
        };
        let Some(conn) = self.db.sqlite_conn() else {
            return Ok(());
        };
        let mut stmt = conn
            .prepare("PRAGMA quick_check(5)")
            .map_err(|e| corrupt(e.to_string()))?;
        let findings: Vec<String> = stmt
            .query_map([], |row| row.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| corrupt(e.to_string()))?;
        match findings.as_slice() {
            [ok] if ok == "ok" => Ok(()),
            _ => Err(corrupt(findings.join("; "))),
        }
    }

    /// A second, read-only connection to the database this one has open (the control plane's
    /// reading connection beside its writer): `query_only` makes any write through it fail,
    /// so the process's one writer stays the only one. It skips the header check on purpose: reading the file
    /// through a plain file handle and closing it would drop every POSIX lock this process holds
    /// on it — SQLite's own locks included — and another process closing its last connection
    /// would then reset the WAL under this one's feet, hiding every later commit.
    ///
    /// On PostgreSQL, a second connection whose transactions are all read-only
    /// (`default_transaction_read_only`).
    pub fn open_reader(&self) -> Result<Self, StoreError> {
        if let Some(dsn) = &self.pg {
            return Ok(Self {
                db: connect(dsn, "SET default_transaction_read_only = on;")?,
                path: self.path.clone(),
                pg: Some(dsn.clone()),
            });
        }
        let conn = Connection::open(&self.path).map_err(sqlite(&self.path, "cannot open"))?;
        let mut store = Self {
            db: Db::sqlite(conn),
            path: self.path.clone(),
            pg: None,
        };
        store.configure()?;
        store
            .db
            .batch("PRAGMA query_only = ON;")
            .map_err(fail(&self.path, "cannot configure"))?;
        Ok(store)
    }

    /// The database file; for PostgreSQL, the DSN without its password.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// WAL lets readers (a dashboard, `audit log`) run beside the writer. `synchronous=FULL`
    /// fsyncs the WAL at every commit: in WAL mode the default NORMAL may lose the last
    /// commits on power loss, and an audit entry that was acknowledged must never vanish.
    /// The busy timeout comes first so that concurrent openers wait for each other.
    fn configure(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let Some(conn) = self.sqlite_conn() else {
            return Ok(());
        };
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sqlite(&path, "cannot configure"))?;
        conn.set_prepared_statement_cache_capacity(64);
        let mode = self.enter_wal_mode()?;
        tracing::trace!(mode, "journal mode");
        self.db
            .batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(fail(&path, "cannot configure"))
    }

    /// Switches the file to WAL. Switching needs an exclusive lock, and SQLite answers
    /// `SQLITE_BUSY` at once, without calling the busy handler, when another process holds the
    /// file at that moment (several `wharf` commands racing to create the state). So the
    /// switch is retried with a short backoff until the same 10 s the busy timeout allows.
    fn enter_wal_mode(&mut self) -> Result<String, StoreError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut backoff = std::time::Duration::from_millis(1);
        let path = self.path.clone();
        let Some(conn) = self.sqlite_conn() else {
            return Ok(String::new());
        };
        loop {
            match conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)) {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy
                        && std::time::Instant::now() < deadline =>
                {
                    #[expect(
                        clippy::disallowed_methods,
                        reason = "a backoff between attempts at a lock another process holds, not synchronisation; the store is synchronous"
                    )]
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(std::time::Duration::from_millis(50));
                }
                result => {
                    return result.map_err(sqlite(&path, "cannot read the database (corrupt?)"));
                }
            }
        }
    }

    /// Applies the missing migration steps in one transaction.
    fn migrate(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let Some(conn) = self.sqlite_conn() else {
            return Ok(());
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite(&path, "cannot start the migration"))?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(sqlite(&path, "cannot read the schema version"))?;
        if version as usize > MIGRATIONS.len() {
            return Err(StoreError::TooNew {
                path,
                found: version,
                known: MIGRATIONS.len(),
            });
        }
        // What steps may read besides the database (see `migrations`): the state directory's
        // `run` folder, as the control plane joins it.
        let run_dir = migration_run_dir(&path).map_err(|source| StoreError::Io {
            path: path.clone(),
            action: "cannot resolve the state directory",
            source,
        })?;
        tx.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS migration_env (run_dir TEXT NOT NULL);
             DELETE FROM temp.migration_env;",
        )
        .map_err(sqlite(&path, "cannot prepare the migration"))?;
        tx.execute(
            "INSERT INTO temp.migration_env (run_dir) VALUES (?1)",
            [run_dir.to_string_lossy()],
        )
        .map_err(sqlite(&path, "cannot prepare the migration"))?;
        for (step, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql)
                .map_err(sqlite(&path, "migration failed"))?;
            tracing::info!(version = step + 1, "state schema migrated");
        }
        tx.execute_batch("DROP TABLE temp.migration_env")
            .map_err(sqlite(&path, "cannot finish the migration"))?;
        tx.pragma_update(None, "user_version", MIGRATIONS.len() as i64)
            .map_err(sqlite(&path, "cannot record the schema version"))?;
        tx.commit()
            .map_err(sqlite(&path, "cannot commit the migration"))
    }

    /// The PostgreSQL migration: the same steps in PostgreSQL's dialect, numbered alike, the
    /// version kept in `wharf_schema`, all in one transaction under the writer lock (so two
    /// processes opening a new database at once migrate it once).
    fn migrate_postgres(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let mut tx = self
            .db
            .write_tx()
            .map_err(fail(&path, "cannot start the migration"))?;
        tx.batch("CREATE TABLE IF NOT EXISTS wharf_schema (version BIGINT NOT NULL)")
            .map_err(fail(&path, "cannot read the schema version"))?;
        let version: i64 = tx
            .read_opt("SELECT MAX(version) FROM wharf_schema", &[], |row| {
                row.get::<Option<i64>>(0)
            })
            .map_err(fail(&path, "cannot read the schema version"))?
            .flatten()
            .unwrap_or(0);
        if version as usize > PG_MIGRATIONS.len() {
            return Err(StoreError::TooNew {
                path,
                found: version,
                known: PG_MIGRATIONS.len(),
            });
        }
        for (step, sql) in PG_MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.batch(sql).map_err(fail(&path, "migration failed"))?;
            tracing::info!(version = step + 1, "state schema migrated");
        }
        tx.execute("DELETE FROM wharf_schema", &[])
            .and_then(|_| {
                tx.execute(
                    "INSERT INTO wharf_schema (version) VALUES (?1)",
                    &vals![PG_MIGRATIONS.len() as i64],
                )
            })
            .map_err(fail(&path, "cannot record the schema version"))?;
        tx.commit()
            .map_err(fail(&path, "cannot commit the migration"))
    }

    /// Reads a meta value.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.db
            .read_opt(
                "SELECT value FROM meta WHERE key = ?1",
                &vals![key],
                |row| row.get(0),
            )
            .map_err(fail(&self.path, "cannot read meta"))
    }

    /// Writes a meta value.
    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.db
            .execute(UPSERT_META, &vals![key, value])
            .map(drop)
            .map_err(fail(&self.path, "cannot write meta"))
    }
}

/// Sets one meta value, replacing any (both engines' upsert).
pub(crate) const UPSERT_META: &str = "INSERT INTO meta (key, value) VALUES (?1, ?2)
     ON CONFLICT (key) DO UPDATE SET value = excluded.value";

/// Connects to PostgreSQL with wharf's session settings, then `extra`: commits wait for
/// their WAL to be flushed (`synchronous_commit = on`, the durability of SQLite's
/// `synchronous = FULL`), and a lock wait gives up after the 10 s SQLite's busy timeout
/// allows.
fn connect(dsn: &PgDsn, extra: &str) -> Result<Db, StoreError> {
    let setup = format!(
        "SET synchronous_commit = on; SET lock_timeout = '10s'; \
         SET client_min_messages = warning; {extra}"
    );
    PgConn::connect(dsn.config().clone(), setup)
        .map(Db::postgres)
        .map_err(|error| match error {
            DbError::Postgres(source) => StoreError::Connect {
                target: dsn.redacted().to_owned(),
                source,
            },
            other => StoreError::Data {
                path: PathBuf::from(dsn.redacted()),
                action: "cannot connect",
                detail: other.to_string(),
            },
        })
}

/// The `run` folder beside the database file, absolute. Migration 6 writes it into stored
/// handles (`exit_path`), which the control plane later reads from its own working directory:
/// a CLI reader that opened `.wharf/state.db` relative to where it was run, and so ran the
/// migration, must not store a path that only makes sense there.
fn migration_run_dir(db_file: &Path) -> std::io::Result<PathBuf> {
    let db_file = std::path::absolute(db_file)?;
    Ok(db_file.parent().unwrap_or(Path::new("/")).join("run"))
}

impl Store {
    /// Whether a transaction is open on this connection (none should be between use cases).
    pub fn in_transaction(&self) -> bool {
        self.db.in_transaction()
    }

    /// Rolls back a transaction left open (by a job that panicked halfway, say), so the
    /// connection's next writes commit on their own again; nothing to do in autocommit.
    pub fn rollback_open_transaction(&mut self) -> Result<(), StoreError> {
        if !self.db.in_transaction() {
            return Ok(());
        }
        self.db
            .rollback()
            .map_err(fail(&self.path, "cannot roll back"))
    }

    /// Opens a write transaction (see [`WriteTx`]).
    pub(crate) fn write_tx(&mut self) -> Result<WriteTx<'_>, DbError> {
        self.db.write_tx()
    }

    /// Runs `work` in one transaction: every row it writes and every ledger entry it appends
    /// commit together, or — on an error, a panic or a crash — none of them does. This is how a
    /// state change and its evidence become one fact. Nested calls join the outer transaction.
    pub fn atomically<T, E: From<StoreError>>(
        &mut self,
        work: impl FnOnce(&mut Store) -> Result<T, E>,
    ) -> Result<T, E> {
        self.atomically_as("a transaction", work)
    }

    /// [`Store::atomically`], naming the change `what` (a ledger action, say) in the record
    /// of a write the fence refused (see [`Store::fenced_writes`]).
    pub fn atomically_as<T, E: From<StoreError>>(
        &mut self,
        what: &str,
        work: impl FnOnce(&mut Store) -> Result<T, E>,
    ) -> Result<T, E> {
        if self.db.in_transaction() {
            return work(self);
        }
        self.db
            .begin_write(what)
            .map_err(fail(&self.path, "cannot start a transaction"))?;
        let guard = RollbackOnDrop(self);
        let value = work(guard.0)?;
        let store = &mut *guard.0;
        store
            .db
            .commit()
            .map_err(fail(&store.path, "cannot commit"))?;
        std::mem::forget(guard);
        Ok(value)
    }
}

/// Rolls an open [`Store::atomically`] transaction back unless it committed.
struct RollbackOnDrop<'s>(&'s mut Store);

impl Drop for RollbackOnDrop<'_> {
    fn drop(&mut self) {
        if self.0.db.in_transaction()
            && let Err(error) = self.0.db.rollback()
        {
            tracing::error!(%error, "cannot roll back");
        }
    }
}

/// Refuses a file that exists, is not empty and does not start with the SQLite header, so a
/// wrong `--state-dir` gives a clear message instead of SQLite's "file is not a database".
fn check_header(path: &Path) -> Result<(), StoreError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(StoreError::Io {
                path: path.to_owned(),
                action: "cannot open",
                source,
            });
        }
    };
    let mut header = Vec::with_capacity(16);
    file.by_ref()
        .take(16)
        .read_to_end(&mut header)
        .map_err(|source| StoreError::Io {
            path: path.to_owned(),
            action: "cannot read",
            source,
        })?;
    if !header.is_empty() && header != SQLITE_HEADER {
        return Err(StoreError::NotSqlite {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// A PostgreSQL error with its causes (`postgres::Error` shows only its kind, "db error", and
/// keeps the server's message in its source): what an operator needs to read.
pub(crate) fn pg_chain(error: &postgres::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Wraps an engine's error with the database (file or DSN) and the action.
pub(crate) fn fail(path: &Path, action: &'static str) -> impl FnOnce(DbError) -> StoreError {
    let path = path.to_owned();
    move |error| match error {
        DbError::Sqlite(source) => sqlite(&path, action)(source),
        DbError::Postgres(source) => StoreError::Postgres {
            path,
            action,
            source,
        },
        DbError::Fenced { ours, held } => StoreError::Fenced {
            path,
            ours: ours as u64,
            held: held as u64,
        },
        other => StoreError::Data {
            path,
            action,
            detail: other.to_string(),
        },
    }
}

/// Wraps a rusqlite error with the file and the action.
pub(crate) fn sqlite(
    path: &Path,
    action: &'static str,
) -> impl FnOnce(rusqlite::Error) -> StoreError {
    let path = path.to_owned();
    move |source| {
        if disk_full(&path, &source) {
            return StoreError::DiskFull {
                path,
                action,
                source,
            };
        }
        StoreError::Sqlite {
            path,
            action,
            source,
        }
    }
}

/// Whether `error` comes from a full filesystem: SQLite says so (`SQLITE_FULL`), or an I/O
/// error (a WAL or shared-memory file that could not grow) on a filesystem with next to no
/// room left — SQLite's own code there names the method that failed, not the reason.
fn disk_full(path: &Path, error: &rusqlite::Error) -> bool {
    let rusqlite::Error::SqliteFailure(failure, _) = error else {
        return false;
    };
    match failure.code {
        rusqlite::ErrorCode::DiskFull => true,
        rusqlite::ErrorCode::SystemIoFailure => {
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
            rustix::fs::statvfs(dir.unwrap_or(Path::new(".")))
                .is_ok_and(|fs| fs.f_bavail.saturating_mul(fs.f_frsize) < 256 * 1024)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_transaction_is_rolled_back_and_autocommit_left_alone() {
        crate::testing::on_both(|state| {
            let mut store = state.open();
            store.rollback_open_transaction().unwrap();
            store.db.begin_write("test").unwrap();
            store.db.execute(UPSERT_META, &vals!["k", "v"]).unwrap();
            assert!(store.in_transaction());
            store.rollback_open_transaction().unwrap();
            assert!(!store.in_transaction());
            assert_eq!(store.meta("k").unwrap(), None);
            // Writes commit on their own again.
            store.set_meta("k", "w").unwrap();
            let mut other = store.open_reader().unwrap();
            assert_eq!(other.meta("k").unwrap().as_deref(), Some("w"));
            // The reader cannot write.
            assert!(other.set_meta("k", "x").is_err());
            assert_eq!(store.meta("k").unwrap().as_deref(), Some("w"));
        });
    }

    /// PostgreSQL's counterpart of `opening_sets_wal_full_sync_and_the_schema_version`: an
    /// acknowledged commit is on disk (`synchronous_commit = on`; the server's own `fsync` is
    /// its operator's), a lock wait ends, and the reader cannot write.
    #[test]
    fn a_postgres_session_commits_synchronously_and_its_reader_is_read_only() {
        let server = std::sync::Arc::new(crate::testing::PgServer::start());
        let state = crate::testing::TestState::postgres(&server);
        let store = state.open();
        let setting = |store: &Store, name: &str| {
            store
                .db
                .read_one("SELECT current_setting(?1)", &vals![name], |r| {
                    r.get::<String>(0)
                })
                .unwrap()
        };
        assert_eq!(setting(&store, "synchronous_commit"), "on");
        assert_eq!(setting(&store, "lock_timeout"), "10s");
        assert_eq!(setting(&store, "default_transaction_read_only"), "off");
        let reader = store.open_reader().unwrap();
        assert_eq!(setting(&reader, "default_transaction_read_only"), "on");
        let schema: i64 = store
            .db
            .read_one("SELECT version FROM wharf_schema", &[], |r| r.get(0))
            .unwrap();
        assert_eq!(schema as usize, crate::SCHEMA_VERSION);
    }
}
