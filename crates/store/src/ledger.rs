//! The ledger's tables: [`Storage`] for the Merkle ledger, plus filtered listing.

use rusqlite::types::ValueRef;
use rusqlite::{Row, params};
use wharf_ledger::{
    Checkpoint, Entry, Hash, NodeId, RawEntry, Storage, StorageError, StoredCheckpoint,
};

use crate::db::{Store, StoreError, sqlite};

/// Which entries `audit log` wants; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct EntryFilter {
    pub action: Option<String>,
    pub target: Option<String>,
}

const ENTRY_COLUMNS: &str = "seq, time, actor, action, target, details";

/// The meta key holding the ledger's size after its last append ([`Storage::recorded_size`]):
/// deleting entries (or every row of the ledger's tables) leaves it behind as evidence.
const RECORDED_SIZE: &str = "ledger.recorded_size";

impl Store {
    /// Entries matching `filter`, oldest first, undecoded (the caller decides how to treat a
    /// row that no longer decodes).
    pub fn ledger_entries(&self, filter: &EntryFilter) -> Result<Vec<RawEntry>, StoreError> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM ledger_entries
             WHERE (?1 IS NULL OR action = ?1) AND (?2 IS NULL OR target = ?2) ORDER BY seq"
        );
        let mut stmt = self
            .conn
            .prepare(&sql)
            .map_err(sqlite(&self.path, "cannot list entries"))?;
        let rows = stmt
            .query_map(params![filter.action, filter.target], raw_entry)
            .map_err(sqlite(&self.path, "cannot list entries"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sqlite(&self.path, "cannot list entries"))
    }

    /// Up to `limit` entries before `before` (all when `None`), newest first: a page of the
    /// audit log without reading the whole ledger.
    pub fn ledger_page(
        &self,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<RawEntry>, StoreError> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM ledger_entries
             WHERE (?1 IS NULL OR seq < ?1) ORDER BY seq DESC LIMIT ?2"
        );
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(sqlite(&self.path, "cannot list entries"))?;
        let rows = stmt
            .query_map(
                params![before.map(|b| b.min(i64::MAX as u64) as i64), limit],
                raw_entry,
            )
            .map_err(sqlite(&self.path, "cannot list entries"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sqlite(&self.path, "cannot list entries"))
    }

    /// One entry by seq.
    pub fn ledger_entry(&self, seq: u64) -> Result<Option<RawEntry>, StoreError> {
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE seq = ?1");
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(sqlite(&self.path, "cannot read entry"))?;
        let mut rows = stmt
            .query_map([seq as i64], raw_entry)
            .map_err(sqlite(&self.path, "cannot read entry"))?;
        rows.next()
            .transpose()
            .map_err(sqlite(&self.path, "cannot read entry"))
    }

    fn storage_error(&self, action: &'static str) -> impl FnOnce(rusqlite::Error) -> StorageError {
        let path = self.path.clone();
        move |source| StorageError::new(format!("{}: {action}", path.display()), source)
    }

    fn insert(
        &mut self,
        entries: &[Entry],
        nodes: &[(NodeId, Hash)],
    ) -> rusqlite::Result<Result<(), u64>> {
        let tx = self.write_tx()?;
        let size: i64 = tx.query_row(
            "SELECT COALESCE(MAX(seq) + 1, 0) FROM ledger_entries",
            [],
            |r| r.get(0),
        )?;
        if entries.first().is_some_and(|e| e.seq != size as u64) {
            return Ok(Err(size as u64));
        }
        {
            let sql = format!(
                "INSERT INTO ledger_entries ({ENTRY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            );
            let mut insert = tx.prepare_cached(&sql)?;
            for raw in entries.iter().map(Entry::to_raw) {
                insert.execute(params![
                    raw.seq,
                    raw.time,
                    raw.actor,
                    raw.action,
                    raw.target,
                    raw.details
                ])?;
            }
            let mut insert = tx.prepare_cached(
                "INSERT INTO ledger_nodes (level, idx, hash) VALUES (?1, ?2, ?3)",
            )?;
            for (id, hash) in nodes {
                insert.execute(params![id.level, id.index as i64, &hash[..]])?;
            }
            // The high-water mark, in the same transaction as the entries it counts.
            let recorded = size as u64 + entries.len() as u64;
            tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?
                .execute(params![RECORDED_SIZE, recorded.to_string()])?;
        }
        tx.commit()?;
        Ok(Ok(()))
    }
}

fn raw_entry(row: &Row<'_>) -> rusqlite::Result<RawEntry> {
    Ok(RawEntry {
        seq: row.get(0)?,
        time: text(row, 1)?,
        actor: text(row, 2)?,
        action: text(row, 3)?,
        target: text(row, 4)?,
        details: text(row, 5)?,
    })
}

/// A column as text whatever its stored type: a tampered row that changed a column's type
/// must still reach verification (and fail there, by seq) rather than abort the read.
fn text(row: &Row<'_>, index: usize) -> rusqlite::Result<String> {
    Ok(match row.get_ref(index)? {
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => {
            String::from_utf8_lossy(bytes).into_owned()
        }
        ValueRef::Integer(n) => n.to_string(),
        ValueRef::Real(x) => x.to_string(),
        ValueRef::Null => String::new(),
    })
}

fn bytes(row: &Row<'_>, index: usize) -> rusqlite::Result<Vec<u8>> {
    Ok(match row.get_ref(index)? {
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => bytes.to_vec(),
        _ => Vec::new(),
    })
}

impl Storage for Store {
    fn size(&self) -> Result<u64, StorageError> {
        let size: i64 = self
            .conn
            .query_row(
                "SELECT COALESCE(MAX(seq) + 1, 0) FROM ledger_entries",
                [],
                |r| r.get(0),
            )
            .map_err(self.storage_error("cannot read the ledger size"))?;
        Ok(size as u64)
    }

    fn node(&self, id: NodeId) -> Result<Option<Hash>, StorageError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT hash FROM ledger_nodes WHERE level = ?1 AND idx = ?2")
            .map_err(self.storage_error("cannot read a tree node"))?;
        let mut rows = stmt
            .query(params![id.level, id.index as i64])
            .map_err(self.storage_error("cannot read a tree node"))?;
        let Some(row) = rows
            .next()
            .map_err(self.storage_error("cannot read a tree node"))?
        else {
            return Ok(None);
        };
        let hash = bytes(row, 0).map_err(self.storage_error("cannot read a tree node"))?;
        Ok(hash.as_slice().try_into().ok())
    }

    fn append(&mut self, entries: &[Entry], nodes: &[(NodeId, Hash)]) -> Result<(), StorageError> {
        let path = self.path.display().to_string();
        match self
            .insert(entries, nodes)
            .map_err(self.storage_error("cannot append to the ledger"))?
        {
            Ok(()) => Ok(()),
            Err(size) => Err(StorageError::conflict(format!(
                "{path}: another writer appended to the ledger (size is now {size}); retry"
            ))),
        }
    }

    fn scan_entries(&self, visit: &mut dyn FnMut(RawEntry)) -> Result<(), StorageError> {
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM ledger_entries ORDER BY seq");
        let mut stmt = self
            .conn
            .prepare(&sql)
            .map_err(self.storage_error("cannot read entries"))?;
        let mut rows = stmt
            .query([])
            .map_err(self.storage_error("cannot read entries"))?;
        while let Some(row) = rows
            .next()
            .map_err(self.storage_error("cannot read entries"))?
        {
            visit(raw_entry(row).map_err(self.storage_error("cannot read an entry"))?);
        }
        Ok(())
    }

    fn scan_nodes(&self, visit: &mut dyn FnMut(NodeId, &[u8])) -> Result<(), StorageError> {
        let mut stmt = self
            .conn
            .prepare("SELECT level, idx, hash FROM ledger_nodes")
            .map_err(self.storage_error("cannot read tree nodes"))?;
        let mut rows = stmt
            .query([])
            .map_err(self.storage_error("cannot read tree nodes"))?;
        while let Some(row) = rows
            .next()
            .map_err(self.storage_error("cannot read tree nodes"))?
        {
            let read = |row: &Row<'_>| -> rusqlite::Result<(i64, i64, Vec<u8>)> {
                Ok((row.get(0)?, row.get(1)?, bytes(row, 2)?))
            };
            let (level, index, hash) =
                read(row).map_err(self.storage_error("cannot read a tree node"))?;
            // A tampered level or index out of range still reaches verification, as a node
            // that belongs to no tree, instead of aborting the scan.
            let level = u8::try_from(level).unwrap_or(u8::MAX);
            visit(
                NodeId::new(level, u64::try_from(index).unwrap_or(u64::MAX)),
                &hash,
            );
        }
        Ok(())
    }

    fn add_checkpoint(&mut self, checkpoint: &StoredCheckpoint) -> Result<(), StorageError> {
        let size = Checkpoint::peek(&checkpoint.note)
            .map(|c| c.size as i64)
            .unwrap_or(-1);
        self.conn
            .execute(
                "INSERT INTO ledger_checkpoints (size, note) VALUES (?1, ?2)",
                params![size, checkpoint.note],
            )
            .map(drop)
            .map_err(self.storage_error("cannot store the checkpoint"))
    }

    fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StorageError> {
        let mut stmt = self
            .conn
            .prepare("SELECT note FROM ledger_checkpoints ORDER BY id")
            .map_err(self.storage_error("cannot read checkpoints"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok(StoredCheckpoint {
                    note: text(row, 0)?,
                })
            })
            .map_err(self.storage_error("cannot read checkpoints"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.storage_error("cannot read checkpoints"))
    }

    fn recorded_size(&self) -> Result<Option<u64>, StorageError> {
        let text = self
            .meta(RECORDED_SIZE)
            .map_err(|e| StorageError::new("cannot read the ledger's recorded size", e))?;
        // A mark that no longer parses was tampered with: it proves at least as much as
        // "some entries existed", which is what an unreadable number can still say.
        Ok(text.map(|t| t.trim().parse().unwrap_or(u64::MAX)))
    }
}
