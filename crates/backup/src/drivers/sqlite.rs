//! SQLite: the online backup API copies a consistent image to a temp file (writers keep
//! going), the record is taken from that copy, and the copy is streamed. Restore goes the
//! other way through the same API, so a process holding the database sees a whole database.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use rusqlite::{Connection, OpenFlags, types::ValueRef};
use rustic_core::repofile::Metadata;
use wharf_manifest::model::DatastoreKind;

use super::Feed;
use crate::capture::{Capture, Entry};
use crate::error::{BackupError, Result};
use crate::record::{MultisetDigest, Record};

pub(crate) const FILE: &str = "database.sqlite";

fn err(detail: impl Into<String>) -> BackupError {
    BackupError::store(DatastoreKind::Sqlite, detail)
}

pub(crate) fn capture(path: &Path) -> Result<Capture> {
    let source = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| err(format!("open {}: {e}", path.display())))?;
    let dir = tempfile::Builder::new()
        .prefix("wharf-sqlite")
        .tempdir()
        .map_err(|e| BackupError::io(std::env::temp_dir(), e))?;
    let copy = dir.path().join(FILE);
    source
        .backup(rusqlite::DatabaseName::Main, &copy, None)
        .map_err(|e| err(format!("online backup of {}: {e}", path.display())))?;
    let record = record(&copy)?;
    let file = std::fs::File::open(&copy).map_err(|e| BackupError::io(&copy, e))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok(Capture {
        entries: vec![Entry::File(
            FILE.into(),
            Metadata {
                size,
                ..Metadata::default()
            },
            Box::new(file),
        )],
        finish: Box::new(move || {
            drop(dir);
            Ok(record)
        }),
    })
}

/// Per table: row count and a multiset digest of its rows (each value typed, length-prefixed).
pub(crate) fn record(path: &Path) -> Result<Record> {
    let db = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| err(format!("open {}: {e}", path.display())))?;
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| err(format!("list tables: {e}")))?;
    let mut parts = BTreeMap::new();
    for table in tables {
        let sql = format!("SELECT * FROM \"{}\"", table.replace('"', "\"\""));
        let mut digest = MultisetDigest::default();
        let mut statement = db.prepare(&sql).map_err(|e| err(format!("{table}: {e}")))?;
        let columns = statement.column_count();
        let mut rows = statement
            .query([])
            .map_err(|e| err(format!("{table}: {e}")))?;
        while let Some(row) = rows.next().map_err(|e| err(format!("{table}: {e}")))? {
            let mut bytes = Vec::new();
            for i in 0..columns {
                let value = row.get_ref(i).map_err(|e| err(format!("{table}: {e}")))?;
                let (tag, data): (u8, Vec<u8>) = match value {
                    ValueRef::Null => (0, Vec::new()),
                    ValueRef::Integer(v) => (1, v.to_be_bytes().to_vec()),
                    ValueRef::Real(v) => (2, v.to_be_bytes().to_vec()),
                    ValueRef::Text(v) => (3, v.to_vec()),
                    ValueRef::Blob(v) => (4, v.to_vec()),
                };
                bytes.push(tag);
                bytes.extend_from_slice(&(data.len() as u64).to_be_bytes());
                bytes.extend_from_slice(&data);
            }
            digest.add(&bytes);
        }
        parts.insert(format!("table {table}"), digest.part());
    }
    Ok(Record::new(parts))
}

/// Writes the backup to a temp file beside `path`, then copies it over the database with the
/// backup API (a new database when `path` does not exist).
pub(crate) fn restore(path: &Path, feed: Feed<'_>) -> Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".wharf-restore")
        .tempfile_in(parent)
        .map_err(|e| BackupError::io(parent, e))?;
    feed(temp.as_file_mut())?;
    temp.as_file_mut()
        .flush()
        .map_err(|e| BackupError::io(temp.path(), e))?;
    let mut target =
        Connection::open(path).map_err(|e| err(format!("open {}: {e}", path.display())))?;
    target
        .restore(
            rusqlite::DatabaseName::Main,
            temp.path(),
            None::<fn(rusqlite::backup::Progress)>,
        )
        .map_err(|e| err(format!("restore into {}: {e}", path.display())))
}
