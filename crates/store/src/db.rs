//! Opening the state database: header check, pragmas, migrations.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::migrations::MIGRATIONS;

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
    pub(crate) conn: Connection,
    pub(crate) path: PathBuf,
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
            conn,
            path: path.to_owned(),
        };
        store.configure()?;
        store.migrate()?;
        tracing::debug!(path = %path.display(), "state database open");
        Ok(store)
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
    /// its first findings.
    pub fn check_integrity(&self) -> Result<(), StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt {
            path: self.path.clone(),
            detail,
        };
        let mut stmt = self
            .conn
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
    pub fn open_reader(&self) -> Result<Self, StoreError> {
        let conn = Connection::open(&self.path).map_err(sqlite(&self.path, "cannot open"))?;
        let mut store = Self {
            conn,
            path: self.path.clone(),
        };
        store.configure()?;
        store
            .conn
            .execute_batch("PRAGMA query_only = ON;")
            .map_err(sqlite(&self.path, "cannot configure"))?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// WAL lets readers (a dashboard, `audit log`) run beside the writer. `synchronous=FULL`
    /// fsyncs the WAL at every commit: in WAL mode the default NORMAL may lose the last
    /// commits on power loss, and an audit entry that was acknowledged must never vanish.
    /// The busy timeout comes first so that concurrent openers wait for each other.
    fn configure(&mut self) -> Result<(), StoreError> {
        self.conn
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sqlite(&self.path, "cannot configure"))?;
        let mode = self.enter_wal_mode()?;
        tracing::trace!(mode, "journal mode");
        self.conn
            .execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(sqlite(&self.path, "cannot configure"))
    }

    /// Switches the file to WAL. Switching needs an exclusive lock, and SQLite answers
    /// `SQLITE_BUSY` at once, without calling the busy handler, when another process holds the
    /// file at that moment (several `wharf` commands racing to create the state). So the
    /// switch is retried with a short backoff until the same 10 s the busy timeout allows.
    fn enter_wal_mode(&mut self) -> Result<String, StoreError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut backoff = std::time::Duration::from_millis(1);
        loop {
            match self
                .conn
                .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            {
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
                    return result
                        .map_err(sqlite(&self.path, "cannot read the database (corrupt?)"));
                }
            }
        }
    }

    /// Applies the missing migration steps in one transaction.
    fn migrate(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self
            .conn
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

    /// Reads a meta value.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()
            .map_err(sqlite(&self.path, "cannot read meta"))
    }

    /// Writes a meta value.
    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![key, value],
            )
            .map(drop)
            .map_err(sqlite(&self.path, "cannot write meta"))
    }
}

/// The `run` folder beside the database file, absolute. Migration 6 writes it into stored
/// handles (`exit_path`), which the control plane later reads from its own working directory:
/// a CLI reader that opened `.wharf/state.db` relative to where it was run, and so ran the
/// migration, must not store a path that only makes sense there.
fn migration_run_dir(db_file: &Path) -> std::io::Result<PathBuf> {
    let db_file = std::path::absolute(db_file)?;
    Ok(db_file.parent().unwrap_or(Path::new("/")).join("run"))
}

/// A write transaction that nests: `BEGIN IMMEDIATE` on its own, a savepoint inside
/// [`Store::atomically`], so a method that needs all-or-nothing keeps it either way and an
/// enclosing use case still commits everything together.
pub(crate) enum WriteTx<'c> {
    Top(rusqlite::Transaction<'c>),
    Nested(rusqlite::Savepoint<'c>),
}

impl std::ops::Deref for WriteTx<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        match self {
            WriteTx::Top(tx) => tx,
            WriteTx::Nested(savepoint) => savepoint,
        }
    }
}

impl WriteTx<'_> {
    pub(crate) fn commit(self) -> rusqlite::Result<()> {
        match self {
            WriteTx::Top(tx) => tx.commit(),
            WriteTx::Nested(savepoint) => savepoint.commit(),
        }
    }
}

impl Store {
    /// Whether a transaction is open on this connection (none should be between use cases).
    pub fn in_transaction(&self) -> bool {
        !self.conn.is_autocommit()
    }

    /// Rolls back a transaction left open (by a job that panicked halfway, say), so the
    /// connection's next writes commit on their own again; nothing to do in autocommit.
    pub fn rollback_open_transaction(&mut self) -> Result<(), StoreError> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        self.conn
            .execute_batch("ROLLBACK")
            .map_err(sqlite(&self.path, "cannot roll back"))
    }

    /// Opens a write transaction (see [`WriteTx`]).
    pub(crate) fn write_tx(&mut self) -> rusqlite::Result<WriteTx<'_>> {
        if self.conn.is_autocommit() {
            self.conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map(WriteTx::Top)
        } else {
            self.conn.savepoint().map(WriteTx::Nested)
        }
    }

    /// Runs `work` in one transaction: every row it writes and every ledger entry it appends
    /// commit together, or — on an error, a panic or a crash — none of them does. This is how a
    /// state change and its evidence become one fact. Nested calls join the outer transaction.
    pub fn atomically<T, E: From<StoreError>>(
        &mut self,
        work: impl FnOnce(&mut Store) -> Result<T, E>,
    ) -> Result<T, E> {
        if !self.conn.is_autocommit() {
            return work(self);
        }
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(sqlite(&self.path, "cannot start a transaction"))?;
        let guard = RollbackOnDrop(self);
        let value = work(guard.0)?;
        let store = &mut *guard.0;
        store
            .conn
            .execute_batch("COMMIT")
            .map_err(sqlite(&store.path, "cannot commit"))?;
        std::mem::forget(guard);
        Ok(value)
    }
}

/// Rolls an open [`Store::atomically`] transaction back unless it committed.
struct RollbackOnDrop<'s>(&'s mut Store);

impl Drop for RollbackOnDrop<'_> {
    fn drop(&mut self) {
        if !self.0.conn.is_autocommit()
            && let Err(error) = self.0.conn.execute_batch("ROLLBACK")
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
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store.rollback_open_transaction().unwrap();
        store
            .conn
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO meta (key, value) VALUES ('k', 'v');")
            .unwrap();
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
    }
}
