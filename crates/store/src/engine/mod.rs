//! The two database engines behind one small interface, so every table module is written
//! once: execute, query rows, run a script, and transactions — with typed values (integer,
//! text, bytes, null) and `?N` placeholders (translated to `$N` for PostgreSQL).
//!
//! The SQL the table modules write is the dialect both engines share (`INSERT … ON CONFLICT
//! … DO UPDATE`, `RETURNING`, subqueries with an alias); where the engines differ (JSON
//! functions, the schema version, integrity checks) the caller asks [`Db::engine`].

mod pg;
mod sqlite;

use std::fmt;

pub(crate) use pg::PgConn;

/// Which engine a [`Db`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    Sqlite,
    Postgres,
}

/// One SQL value, as both engines store it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

impl From<u32> for Value {
    fn from(n: u32) -> Self {
        Value::Int(n.into())
    }
}

impl From<u16> for Value {
    fn from(n: u16) -> Self {
        Value::Int(n.into())
    }
}

impl From<u8> for Value {
    fn from(n: u8) -> Self {
        Value::Int(n.into())
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Value::Text(text.to_owned())
    }
}

impl From<&String> for Value {
    fn from(text: &String) -> Self {
        Value::Text(text.clone())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Value::Text(text)
    }
}

impl From<&[u8]> for Value {
    fn from(bytes: &[u8]) -> Self {
        Value::Blob(bytes.to_vec())
    }
}

impl From<&Vec<u8>> for Value {
    fn from(bytes: &Vec<u8>) -> Self {
        Value::Blob(bytes.clone())
    }
}

impl<T> From<Option<T>> for Value
where
    Value: From<T>,
{
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null, Value::from)
    }
}

impl<T: Clone> From<&Option<T>> for Value
where
    Value: From<T>,
{
    fn from(value: &Option<T>) -> Self {
        value.clone().map_or(Value::Null, Value::from)
    }
}

/// The parameters of one statement: `vals![a, b]` is `[Value::from(a), Value::from(b)]`.
macro_rules! vals {
    ($($value:expr),* $(,)?) => {
        [$($crate::engine::Value::from($value)),*]
    };
}
pub(crate) use vals;

/// Why a statement failed, before the store names the database and the action.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DbError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Postgres(#[from] postgres::Error),
    /// A column held what its reader cannot decode (a tampered or foreign row).
    #[error("column {column}: {detail}")]
    Decode { column: usize, detail: String },
    /// A query that must return a row returned none.
    #[error("the query returned no row")]
    NoRow,
    /// Fewer or more rows changed than the write expects (a concurrent writer).
    #[error("{0} rows changed where 1 was expected")]
    ChangedRows(u64),
    /// A write inside a transaction failed earlier, so PostgreSQL aborted the transaction:
    /// its `COMMIT` would silently roll back, and is refused instead.
    #[error("a statement of this transaction failed, so nothing of it was committed")]
    Aborted,
    /// The PostgreSQL connection's thread is gone (it panicked).
    #[error("the connection to PostgreSQL is gone")]
    Gone,
    /// The store is fenced by a token the lease no longer carries (see `leases`).
    #[error("fencing token {ours} is stale: the lease is held under token {held}")]
    Fenced { ours: i64, held: i64 },
}

/// One result row.
#[derive(Debug, Clone)]
pub(crate) struct Row(Vec<Value>);

impl Row {
    /// Column `index`, converted to `T`.
    pub(crate) fn get<T: FromValue>(&self, index: usize) -> Result<T, DbError> {
        let value = self.0.get(index).unwrap_or(&Value::Null);
        T::from_value(value).map_err(|detail| DbError::Decode {
            column: index,
            detail,
        })
    }

    /// Column `index` as text whatever its stored type: a tampered row that changed a
    /// column's type must still reach verification (and fail there) rather than abort a read.
    pub(crate) fn lossy_text(&self, index: usize) -> String {
        match self.0.get(index) {
            Some(Value::Text(text)) => text.clone(),
            Some(Value::Blob(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
            Some(Value::Int(n)) => n.to_string(),
            Some(Value::Real(x)) => x.to_string(),
            Some(Value::Null) | None => String::new(),
        }
    }

    /// Column `index` as bytes (text as its UTF-8; anything else empty).
    pub(crate) fn lossy_bytes(&self, index: usize) -> Vec<u8> {
        match self.0.get(index) {
            Some(Value::Text(text)) => text.as_bytes().to_vec(),
            Some(Value::Blob(bytes)) => bytes.clone(),
            _ => Vec::new(),
        }
    }
}

/// A Rust type a column converts to.
pub(crate) trait FromValue: Sized {
    fn from_value(value: &Value) -> Result<Self, String>;
}

fn unexpected(value: &Value, wanted: &str) -> String {
    let found = match value {
        Value::Null => "null",
        Value::Int(_) => "an integer",
        Value::Real(_) => "a real",
        Value::Text(_) => "text",
        Value::Blob(_) => "bytes",
    };
    format!("expected {wanted}, found {found}")
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Int(n) => Ok(*n),
            other => Err(unexpected(other, "an integer")),
        }
    }
}

impl FromValue for u64 {
    fn from_value(value: &Value) -> Result<Self, String> {
        u64::try_from(i64::from_value(value)?).map_err(|e| e.to_string())
    }
}

impl FromValue for u32 {
    fn from_value(value: &Value) -> Result<Self, String> {
        u32::try_from(i64::from_value(value)?).map_err(|e| e.to_string())
    }
}

impl FromValue for u16 {
    fn from_value(value: &Value) -> Result<Self, String> {
        u16::try_from(i64::from_value(value)?).map_err(|e| e.to_string())
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Text(text) => Ok(text.clone()),
            other => Err(unexpected(other, "text")),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Blob(bytes) => Ok(bytes.clone()),
            other => Err(unexpected(other, "bytes")),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// The savepoint name nested write transactions use (both engines allow it to repeat:
/// `RELEASE` and `ROLLBACK TO` take the innermost).
const SAVEPOINT: &str = "wharf_nested";

/// The connection itself.
pub(crate) enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres(PgConn),
}

/// What a fenced store's writes are checked against: the lease, the token it must still
/// carry, and the holder (named in the record of a refused write).
#[derive(Debug, Clone)]
pub(crate) struct Fence {
    pub(crate) lease: String,
    pub(crate) token: i64,
    pub(crate) holder: String,
}

/// A connection to the state database, on either engine, and the fencing token its writes
/// are checked against (see `leases`).
pub(crate) struct Db {
    conn: Conn,
    fence: Option<Fence>,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.conn {
            Conn::Sqlite(_) => "Db::Sqlite",
            Conn::Postgres(_) => "Db::Postgres",
        })
    }
}

impl Db {
    pub(crate) fn sqlite(conn: rusqlite::Connection) -> Db {
        Db {
            conn: Conn::Sqlite(conn),
            fence: None,
        }
    }

    pub(crate) fn postgres(conn: PgConn) -> Db {
        Db {
            conn: Conn::Postgres(conn),
            fence: None,
        }
    }

    /// The connection, for what one engine does its own way.
    pub(crate) fn conn_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// The SQLite connection, if this is SQLite.
    pub(crate) fn sqlite_conn(&self) -> Option<&rusqlite::Connection> {
        match &self.conn {
            Conn::Sqlite(conn) => Some(conn),
            Conn::Postgres(_) => None,
        }
    }

    /// Which engine this is.
    pub(crate) fn engine(&self) -> Engine {
        match self.conn {
            Conn::Sqlite(_) => Engine::Sqlite,
            Conn::Postgres(_) => Engine::Postgres,
        }
    }

    /// Checks every later write transaction against this fence (`None`: no check).
    pub(crate) fn set_fence(&mut self, fence: Option<Fence>) {
        self.fence = fence;
    }

    /// Runs `work` without the fencing check (taking or giving up the lease itself).
    pub(crate) fn unfenced<R>(&mut self, work: impl FnOnce(&mut Db) -> R) -> R {
        let saved = self.fence.take();
        let result = work(self);
        self.fence = saved;
        result
    }

    /// Runs one write statement; returns how many rows it changed. On PostgreSQL outside a
    /// transaction it runs in one that holds wharf's writer lock (see [`Db::begin_write`]);
    /// a fenced store runs it in a checked write transaction on either engine.
    pub(crate) fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        if self.fence.is_some() && !self.in_transaction() {
            let mut tx = self.write_tx_for(&statement_head(sql))?;
            let changed = tx.execute(sql, params)?;
            tx.commit()?;
            return Ok(changed);
        }
        match &mut self.conn {
            Conn::Sqlite(conn) => sqlite::execute(conn, sql, params),
            Conn::Postgres(conn) => conn.execute(sql, params),
        }
    }

    /// Runs one read and maps every row.
    pub(crate) fn read<T>(
        &self,
        sql: &str,
        params: &[Value],
        map: impl FnMut(&Row) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError> {
        let rows = match &self.conn {
            Conn::Sqlite(conn) => sqlite::query(conn, sql, params)?,
            Conn::Postgres(conn) => conn.read(sql, params)?,
        };
        rows.iter().map(map).collect()
    }

    /// Visits every row of a read without holding them all: SQLite streams them; PostgreSQL
    /// reads them in one answer (page large reads by key there, as the ledger scans do).
    pub(crate) fn for_each(
        &self,
        sql: &str,
        visit: &mut dyn FnMut(&Row) -> Result<(), DbError>,
    ) -> Result<(), DbError> {
        match &self.conn {
            Conn::Sqlite(conn) => sqlite::for_each(conn, sql, visit),
            Conn::Postgres(conn) => conn.read(sql, &[])?.iter().try_for_each(visit),
        }
    }

    /// The first row of a read, if any.
    pub(crate) fn read_opt<T>(
        &self,
        sql: &str,
        params: &[Value],
        map: impl FnMut(&Row) -> Result<T, DbError>,
    ) -> Result<Option<T>, DbError> {
        Ok(self.read(sql, params, map)?.into_iter().next())
    }

    /// The first row of a read, which must exist.
    pub(crate) fn read_one<T>(
        &self,
        sql: &str,
        params: &[Value],
        map: impl FnMut(&Row) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        self.read_opt(sql, params, map)?.ok_or(DbError::NoRow)
    }

    /// A write with `RETURNING` one integer (a new row's id).
    pub(crate) fn insert_returning(&mut self, sql: &str, params: &[Value]) -> Result<i64, DbError> {
        if self.fence.is_some() && !self.in_transaction() {
            let mut tx = self.write_tx_for(&statement_head(sql))?;
            let id = tx.insert_returning(sql, params)?;
            tx.commit()?;
            return Ok(id);
        }
        let rows = match &mut self.conn {
            Conn::Sqlite(conn) => sqlite::query(conn, sql, params)?,
            Conn::Postgres(conn) => conn.query(sql, params)?,
        };
        rows.first().ok_or(DbError::NoRow)?.get(0)
    }

    /// Runs a script of statements without parameters.
    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        match &mut self.conn {
            Conn::Sqlite(conn) => Ok(conn.execute_batch(sql)?),
            Conn::Postgres(conn) => conn.batch(sql),
        }
    }

    /// Whether a transaction is open.
    pub(crate) fn in_transaction(&self) -> bool {
        match &self.conn {
            Conn::Sqlite(conn) => !conn.is_autocommit(),
            Conn::Postgres(conn) => conn.in_transaction(),
        }
    }

    /// Starts a write transaction that excludes every other writer until it ends, as SQLite's
    /// `BEGIN IMMEDIATE` does; on PostgreSQL, `BEGIN` plus a transaction-scoped advisory lock
    /// every wharf writer of the database takes (so a count-then-update, or the ledger's
    /// size re-check, sees no other writer between its statements). A fenced store then
    /// checks its token under that lock, and refuses the transaction if the lease moved on;
    /// `what` names the write in the record of a refusal (`fenced_writes`).
    pub(crate) fn begin_write(&mut self, what: &str) -> Result<(), DbError> {
        match &mut self.conn {
            Conn::Sqlite(conn) => conn.execute_batch("BEGIN IMMEDIATE")?,
            Conn::Postgres(conn) => conn.begin_write()?,
        }
        let Some(fence) = self.fence.clone() else {
            return Ok(());
        };
        // `FOR SHARE` on PostgreSQL: a takeover's update of the lease row waits for this
        // transaction to end (the writer lock already orders them; the row lock says so in
        // the lease's own terms, and holds for a writer that does not take that lock).
        let check = match self.engine() {
            Engine::Sqlite => "SELECT token FROM leases WHERE name = ?1",
            Engine::Postgres => "SELECT token FROM leases WHERE name = ?1 FOR SHARE",
        };
        let held = self.read_opt(check, &[Value::Text(fence.lease.clone())], |row| {
            row.get::<i64>(0)
        });
        match held {
            Ok(Some(held)) if held == fence.token => Ok(()),
            checked => {
                let _ = self.rollback();
                let held = checked?.unwrap_or(0);
                self.record_refusal(&fence, held, what);
                Err(DbError::Fenced {
                    ours: fence.token,
                    held,
                })
            }
        }
    }

    /// Records a refused write in `fenced_writes`, in a transaction of its own outside the
    /// fence (the refused one is rolled back): evidence that a deposed leader tried to write.
    /// A failure here is logged, not returned: the caller's answer is the refusal.
    fn record_refusal(&mut self, fence: &Fence, held: i64, what: &str) {
        let now = crate::leases::now_expr(self.engine());
        let sql = format!(
            "INSERT INTO fenced_writes (lease, token, holder, held, at_ms, what)
             VALUES (?1, ?2, ?3, ?4, {now}, ?5)"
        );
        let params = [
            Value::Text(fence.lease.clone()),
            Value::Int(fence.token),
            Value::Text(fence.holder.clone()),
            Value::Int(held),
            Value::Text(what.to_owned()),
        ];
        let recorded = match &mut self.conn {
            Conn::Sqlite(conn) => sqlite::execute(conn, &sql, &params),
            Conn::Postgres(conn) => conn.execute(&sql, &params),
        };
        if let Err(error) = recorded {
            tracing::warn!(%error, token = fence.token, held, what, "cannot record a fenced write");
        }
        tracing::warn!(
            token = fence.token,
            held,
            holder = %fence.holder,
            what,
            "write refused: this process's lease was taken over"
        );
    }

    /// Commits the open transaction.
    pub(crate) fn commit(&mut self) -> Result<(), DbError> {
        match &mut self.conn {
            Conn::Sqlite(conn) => Ok(conn.execute_batch("COMMIT")?),
            Conn::Postgres(conn) => conn.commit(),
        }
    }

    /// Rolls the open transaction back.
    pub(crate) fn rollback(&mut self) -> Result<(), DbError> {
        match &mut self.conn {
            Conn::Sqlite(conn) => Ok(conn.execute_batch("ROLLBACK")?),
            Conn::Postgres(conn) => conn.rollback(),
        }
    }

    fn savepoint(&mut self) -> Result<(), DbError> {
        self.batch(&format!("SAVEPOINT {SAVEPOINT}"))
    }

    fn release(&mut self) -> Result<(), DbError> {
        self.batch(&format!("RELEASE {SAVEPOINT}"))
    }

    fn rollback_to(&mut self) -> Result<(), DbError> {
        let sql = format!("ROLLBACK TO {SAVEPOINT}; RELEASE {SAVEPOINT}");
        match &mut self.conn {
            Conn::Sqlite(conn) => Ok(conn.execute_batch(&sql)?),
            Conn::Postgres(conn) => conn.rollback_to(&sql),
        }
    }

    /// Opens a write transaction (see [`WriteTx`]).
    pub(crate) fn write_tx(&mut self) -> Result<WriteTx<'_>, DbError> {
        self.write_tx_for("a write transaction")
    }

    /// Opens a write transaction, naming it `what` should the fence refuse it.
    pub(crate) fn write_tx_for(&mut self, what: &str) -> Result<WriteTx<'_>, DbError> {
        let nested = self.in_transaction();
        if nested {
            self.savepoint()?;
        } else {
            self.begin_write(what)?;
        }
        Ok(WriteTx {
            db: self,
            nested,
            done: false,
        })
    }
}

/// The first words of a statement up to its table (`INSERT INTO rollouts`): what a refused
/// lone write was, without its values.
fn statement_head(sql: &str) -> String {
    let mut words = sql.split_whitespace();
    let first = words.next().unwrap_or_default();
    let rest = if first.eq_ignore_ascii_case("UPDATE") {
        1
    } else {
        2
    };
    std::iter::once(first)
        .chain(words.take(rest))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A write transaction that nests: a writer's transaction on its own, a savepoint inside
/// `Store::atomically`, so a method that needs all-or-nothing keeps it either way and an
/// enclosing use case still commits everything together. Dropped without
/// [`WriteTx::commit`], it rolls back.
pub(crate) struct WriteTx<'d> {
    db: &'d mut Db,
    nested: bool,
    done: bool,
}

impl std::ops::Deref for WriteTx<'_> {
    type Target = Db;

    fn deref(&self) -> &Db {
        self.db
    }
}

impl std::ops::DerefMut for WriteTx<'_> {
    fn deref_mut(&mut self) -> &mut Db {
        self.db
    }
}

impl WriteTx<'_> {
    /// Commits the transaction (or releases the savepoint into the enclosing one).
    pub(crate) fn commit(mut self) -> Result<(), DbError> {
        self.done = true;
        if self.nested {
            self.db.release()
        } else {
            self.db.commit()
        }
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let undone = if self.nested {
            self.db.rollback_to()
        } else {
            self.db.rollback()
        };
        if let Err(error) = undone {
            tracing::error!(%error, "cannot roll back");
        }
    }
}
