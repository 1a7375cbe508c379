//! The SQLite side of [`super::Db`]: cached prepared statements over one `rusqlite`
//! connection, values passed and read as SQLite's own types.

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, params_from_iter};

use super::{DbError, Row, Value};

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(n) => ValueRef::Integer(*n),
            Value::Real(x) => ValueRef::Real(*x),
            Value::Text(text) => ValueRef::Text(text.as_bytes()),
            Value::Blob(bytes) => ValueRef::Blob(bytes),
        }))
    }
}

fn value(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(n) => Value::Int(n),
        ValueRef::Real(x) => Value::Real(x),
        // Text that is not UTF-8 (a tampered row) stays readable as bytes.
        ValueRef::Text(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => Value::Text(text.to_owned()),
            Err(_) => Value::Blob(bytes.to_vec()),
        },
        ValueRef::Blob(bytes) => Value::Blob(bytes.to_vec()),
    }
}

pub(super) fn execute(conn: &Connection, sql: &str, params: &[Value]) -> Result<u64, DbError> {
    let mut statement = conn.prepare_cached(sql)?;
    Ok(statement.execute(params_from_iter(params))? as u64)
}

pub(super) fn query(conn: &Connection, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
    let mut out = Vec::new();
    each_row(conn, sql, params, &mut |row| {
        out.push(row.clone());
        Ok(())
    })?;
    Ok(out)
}

pub(super) fn for_each(
    conn: &Connection,
    sql: &str,
    visit: &mut dyn FnMut(&Row) -> Result<(), DbError>,
) -> Result<(), DbError> {
    each_row(conn, sql, &[], visit)
}

fn each_row(
    conn: &Connection,
    sql: &str,
    params: &[Value],
    visit: &mut dyn FnMut(&Row) -> Result<(), DbError>,
) -> Result<(), DbError> {
    let mut statement = conn.prepare_cached(sql)?;
    let columns = statement.column_count();
    let mut rows = statement.query(params_from_iter(params))?;
    while let Some(row) = rows.next()? {
        let values = (0..columns)
            .map(|i| row.get_ref(i).map(value))
            .collect::<rusqlite::Result<_>>()?;
        visit(&Row(values))?;
    }
    Ok(())
}
