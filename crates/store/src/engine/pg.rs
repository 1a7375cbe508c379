//! The PostgreSQL side of [`super::Db`]: one `postgres::Client` owned by a thread of its own.
//!
//! Why a thread: the synchronous `postgres` client drives its own tokio runtime and panics
//! ("Cannot start a runtime from within a runtime") when called on a thread that is already
//! inside one — and the store is called from tokio worker threads (the control plane's loop
//! reads through its journal), from `#[tokio::test]`'s current-thread runtime, and from plain
//! threads (the store writer). `block_in_place` would cover only the multi-thread runtime.
//! A dedicated thread works from every caller: each call sends a closure over a channel and
//! waits for its answer, which blocks the caller exactly as long as a SQLite call would, and
//! costs a few microseconds beside a network round trip.
//!
//! Every write holds wharf's writer lock: a transaction-scoped advisory lock taken right
//! after `BEGIN` (or around a lone statement), the PostgreSQL counterpart of SQLite's
//! `BEGIN IMMEDIATE`. `synchronous_commit = on` makes a `COMMIT` return only once its WAL is
//! flushed, like SQLite's `synchronous = FULL`.

use std::cell::Cell;
use std::collections::HashMap;
use std::error::Error;
use std::sync::mpsc;
use std::thread::JoinHandle;

use bytes::BytesMut;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, NoTls, Statement};

use super::{DbError, Row, Value};

/// The advisory lock key every wharf writer takes (`"wharf"` in ASCII); advisory locks are
/// per database, so two wharf states in one server do not contend.
pub(crate) const WRITER_LOCK: i64 = 0x77_68_61_72_66;

type Job = Box<dyn FnOnce(&mut Session) + Send>;

/// See [`PgConn::append_ledger`]. Data-modifying CTEs all run, whether or not the outer
/// statement reads them.
const APPEND_LEDGER: &str = "WITH entries AS (
        INSERT INTO ledger_entries (seq, time, actor, action, target, details)
        SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[])
    ), nodes AS (
        INSERT INTO ledger_nodes (level, idx, hash)
        SELECT * FROM UNNEST($7::BIGINT[], $8::BIGINT[], $9::BYTEA[])
    )
    INSERT INTO meta (key, value) VALUES ($10, $11)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value";

/// A connection: the channel to its thread, and the transaction state the store tracks.
pub(crate) struct PgConn {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    in_tx: bool,
    /// A statement failed inside the open transaction: PostgreSQL aborted it, and a `COMMIT`
    /// would answer `ROLLBACK` without an error.
    aborted: Cell<bool>,
}

/// What the connection's thread owns.
struct Session {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl PgConn {
    /// Connects on a new thread and runs `setup` (session settings) there.
    pub(crate) fn connect(config: postgres::Config, setup: String) -> Result<Self, DbError> {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready, connected) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("wharf-store-pg".into())
            .spawn(move || {
                let client = match config
                    .connect(NoTls)
                    .and_then(|mut client| client.batch_execute(&setup).map(|()| client))
                {
                    Ok(client) => client,
                    Err(error) => {
                        let _ = ready.send(Err(error));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                let mut session = Session {
                    client,
                    statements: HashMap::new(),
                };
                while let Ok(job) = inbox.recv() {
                    job(&mut session);
                }
            })
            .map_err(|_| DbError::Gone)?;
        match connected.recv() {
            Ok(Ok(())) => Ok(PgConn {
                jobs: Some(jobs),
                thread: Some(thread),
                in_tx: false,
                aborted: Cell::new(false),
            }),
            Ok(Err(error)) => {
                let _ = thread.join();
                Err(DbError::Postgres(error))
            }
            Err(_) => Err(DbError::Gone),
        }
    }

    /// Runs `job` on the connection's thread and waits for its answer.
    fn call<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Session) -> Result<R, DbError> + Send + 'static,
    ) -> Result<R, DbError> {
        let (answer, answered) = mpsc::sync_channel(1);
        let jobs = self.jobs.as_ref().ok_or(DbError::Gone)?;
        jobs.send(Box::new(move |session: &mut Session| {
            let _ = answer.send(job(session));
        }))
        .map_err(|_| DbError::Gone)?;
        let result = answered.recv().map_err(|_| DbError::Gone)?;
        if result.is_err() && self.in_tx {
            self.aborted.set(true);
        }
        result
    }

    pub(crate) fn in_transaction(&self) -> bool {
        self.in_tx
    }

    /// One write statement; alone, it runs under the writer lock.
    pub(crate) fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let (sql, params) = (sql.to_owned(), params.to_vec());
        if self.in_tx {
            self.call(move |s| s.execute(&sql, &params))
        } else {
            self.call(move |s| s.locked(|s| s.execute(&sql, &params)))
        }
    }

    /// A write that returns rows; alone, it runs under the writer lock.
    pub(crate) fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let (sql, params) = (sql.to_owned(), params.to_vec());
        if self.in_tx {
            self.call(move |s| s.query(&sql, &params))
        } else {
            self.call(move |s| s.locked(|s| s.query(&sql, &params)))
        }
    }

    /// A read.
    pub(crate) fn read(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let (sql, params) = (sql.to_owned(), params.to_vec());
        self.call(move |s| s.query(&sql, &params))
    }

    /// A script without parameters (simple query protocol).
    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        let sql = sql.to_owned();
        self.call(move |s| Ok(s.client.batch_execute(&sql)?))
    }

    /// The ledger's append in one statement (one round trip for any batch): entries and
    /// nodes bound as typed arrays and unnested, and the recorded size upserted into `meta`.
    /// Runs inside the caller's write transaction, after its size re-check.
    pub(crate) fn append_ledger(
        &mut self,
        entries: &[wharf_ledger::Entry],
        nodes: &[(wharf_ledger::NodeId, wharf_ledger::Hash)],
        recorded: u64,
        recorded_key: &'static str,
    ) -> Result<(), DbError> {
        let mut columns: [Vec<String>; 5] = Default::default();
        let mut seqs = Vec::with_capacity(entries.len());
        for raw in entries.iter().map(wharf_ledger::Entry::to_raw) {
            seqs.push(raw.seq);
            for (column, value) in
                columns
                    .iter_mut()
                    .zip([raw.time, raw.actor, raw.action, raw.target, raw.details])
            {
                column.push(value);
            }
        }
        let levels: Vec<i64> = nodes.iter().map(|(id, _)| id.level.into()).collect();
        let indexes: Vec<i64> = nodes.iter().map(|(id, _)| id.index as i64).collect();
        let hashes: Vec<Vec<u8>> = nodes.iter().map(|(_, hash)| hash.to_vec()).collect();
        let recorded = recorded.to_string();
        self.call(move |s| {
            let statement = s.statement(APPEND_LEDGER)?;
            let [time, actor, action, target, details] = &columns;
            s.client.execute(
                &statement,
                &[
                    &seqs,
                    time,
                    actor,
                    action,
                    target,
                    details,
                    &levels,
                    &indexes,
                    &hashes,
                    &recorded_key,
                    &recorded,
                ],
            )?;
            Ok(())
        })
    }

    /// `BEGIN` and the writer lock, in one round trip. A lock that times out
    /// (`lock_timeout`) rolls the transaction back.
    pub(crate) fn begin_write(&mut self) -> Result<(), DbError> {
        let begun = self.call(|s| {
            Ok(s.client.batch_execute(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock({WRITER_LOCK})"
            ))?)
        });
        if begun.is_err() {
            let _ = self.call(|s| Ok(s.client.batch_execute("ROLLBACK")?));
            return begun;
        }
        self.in_tx = true;
        self.aborted.set(false);
        Ok(())
    }

    /// `COMMIT`, refused (and rolled back) when a statement of the transaction failed.
    pub(crate) fn commit(&mut self) -> Result<(), DbError> {
        if self.aborted.get() {
            self.rollback()?;
            return Err(DbError::Aborted);
        }
        // A COMMIT that fails ends the transaction too.
        let committed = self.batch("COMMIT");
        self.in_tx = false;
        self.aborted.set(false);
        committed
    }

    pub(crate) fn rollback(&mut self) -> Result<(), DbError> {
        let rolled_back = self.batch("ROLLBACK");
        self.in_tx = false;
        self.aborted.set(false);
        rolled_back
    }

    /// `ROLLBACK TO` a savepoint, which undoes the failure that aborted the transaction.
    pub(crate) fn rollback_to(&mut self, sql: &str) -> Result<(), DbError> {
        let sql = sql.to_owned();
        self.call(move |s| Ok(s.client.batch_execute(&sql)?))?;
        self.aborted.set(false);
        Ok(())
    }
}

impl Drop for PgConn {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop; the client closes the connection (and
        // the server rolls back a transaction left open).
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Session {
    fn statement(&mut self, sql: &str) -> Result<Statement, DbError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(&placeholders(sql))?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let statement = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as _).collect();
        Ok(self.client.execute(&statement, &params)?)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let statement = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as _).collect();
        let rows = self.client.query(&statement, &params)?;
        rows.iter().map(row).collect()
    }

    /// `work` in a transaction of its own that holds the writer lock.
    fn locked<R>(
        &mut self,
        work: impl FnOnce(&mut Session) -> Result<R, DbError>,
    ) -> Result<R, DbError> {
        self.client.batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({WRITER_LOCK})"
        ))?;
        match work(self) {
            Ok(value) => {
                self.client.batch_execute("COMMIT")?;
                Ok(value)
            }
            Err(error) => {
                let _ = self.client.batch_execute("ROLLBACK");
                Err(error)
            }
        }
    }
}

/// `?N` placeholders as PostgreSQL's `$N`, outside string literals and quoted names.
pub(crate) fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote = None;
    for c in sql.chars() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '?') => {
                out.push('$');
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

fn row(row: &postgres::Row) -> Result<Row, DbError> {
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let value = match *column.type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Value::Int),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)?
                .map(|n| Value::Int(n.into())),
            Type::INT2 => row
                .try_get::<_, Option<i16>>(i)?
                .map(|n| Value::Int(n.into())),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(i)?
                .map(|b| Value::Int(b.into())),
            Type::FLOAT8 => row.try_get::<_, Option<f64>>(i)?.map(Value::Real),
            Type::FLOAT4 => row
                .try_get::<_, Option<f32>>(i)?
                .map(|x| Value::Real(x.into())),
            Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob),
            // Text-like types; any other fails here, naming the column's type.
            _ => row.try_get::<_, Option<String>>(i)?.map(Value::Text),
        };
        values.push(value.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}

/// A value goes into whatever type the server inferred for its parameter, when it fits: the
/// table modules pass integers as `i64` whether the column is `BIGINT` or a `LIMIT`.
impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        let texty = <&str as ToSql>::accepts(ty);
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(n) => match *ty {
                Type::INT8 => n.to_sql(ty, out),
                Type::INT4 => i32::try_from(*n)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*n)?.to_sql(ty, out),
                Type::BOOL => (*n != 0).to_sql(ty, out),
                Type::FLOAT8 => (*n as f64).to_sql(ty, out),
                _ if texty => n.to_string().as_str().to_sql(ty, out),
                _ => Err(format!("an integer cannot be a {ty} parameter").into()),
            },
            Value::Real(x) => match *ty {
                Type::FLOAT8 => x.to_sql(ty, out),
                Type::FLOAT4 => (*x as f32).to_sql(ty, out),
                _ if texty => x.to_string().as_str().to_sql(ty, out),
                _ => Err(format!("a real cannot be a {ty} parameter").into()),
            },
            Value::Text(text) if texty => text.as_str().to_sql(ty, out),
            Value::Text(_) => Err(format!("text cannot be a {ty} parameter").into()),
            Value::Blob(bytes) if *ty == Type::BYTEA => bytes.as_slice().to_sql(ty, out),
            Value::Blob(_) => Err(format!("bytes cannot be a {ty} parameter").into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_are_translated_outside_quotes_only() {
        assert_eq!(
            placeholders("SELECT '?1', \"a?\" FROM t WHERE a = ?1 AND b = ?12"),
            "SELECT '?1', \"a?\" FROM t WHERE a = $1 AND b = $12"
        );
        assert_eq!(placeholders("x = 'it''s ?'"), "x = 'it''s ?'");
    }
}
