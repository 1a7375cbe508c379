//! The ledger's tables: [`Storage`] for the Merkle ledger, plus filtered listing.

use wharf_ledger::{
    Checkpoint, Entry, Hash, NodeId, RawEntry, Storage, StorageError, StoredCheckpoint,
};

use crate::db::{Store, StoreError, UPSERT_META, fail};
use crate::engine::{Conn, Db, DbError, Engine, Row, Value, vals};

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

/// How many rows a PostgreSQL scan reads per round trip (the scan pages by key instead of
/// holding a million rows in memory at once).
const SCAN_PAGE: i64 = 10_000;

impl Store {
    /// Entries matching `filter`, oldest first, undecoded (the caller decides how to treat a
    /// row that no longer decodes).
    pub fn ledger_entries(&self, filter: &EntryFilter) -> Result<Vec<RawEntry>, StoreError> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM ledger_entries
             WHERE (CAST(?1 AS TEXT) IS NULL OR action = ?1) AND (CAST(?2 AS TEXT) IS NULL OR target = ?2) ORDER BY seq"
        );
        self.db
            .read(&sql, &vals![&filter.action, &filter.target], raw_entry)
            .map_err(fail(&self.path, "cannot list entries"))
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
             WHERE (CAST(?1 AS BIGINT) IS NULL OR seq < ?1) ORDER BY seq DESC LIMIT ?2"
        );
        let before = before.map(|b| b.min(i64::MAX as u64) as i64);
        self.db
            .read(&sql, &vals![before, limit], raw_entry)
            .map_err(fail(&self.path, "cannot list entries"))
    }

    /// One entry by seq.
    pub fn ledger_entry(&self, seq: u64) -> Result<Option<RawEntry>, StoreError> {
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE seq = ?1");
        self.db
            .read_opt(&sql, &vals![seq as i64], raw_entry)
            .map_err(fail(&self.path, "cannot read entry"))
    }

    fn storage_error(&self, action: &'static str) -> impl FnOnce(DbError) -> StorageError {
        let path = self.path.clone();
        move |source| StorageError::new(format!("{}: {action}", path.display()), source)
    }

    /// The append in one write transaction: the size re-check under the writer's lock
    /// (`BEGIN IMMEDIATE` on SQLite, the advisory lock on PostgreSQL), then the rows.
    fn insert(
        &mut self,
        entries: &[Entry],
        nodes: &[(NodeId, Hash)],
    ) -> Result<Result<(), u64>, DbError> {
        let mut tx = self.db.write_tx_for("ledger append")?;
        let size: i64 = tx.read_one(
            "SELECT COALESCE(MAX(seq) + 1, 0) FROM ledger_entries",
            &[],
            |r| r.get(0),
        )?;
        if entries.first().is_some_and(|e| e.seq != size as u64) {
            return Ok(Err(size as u64));
        }
        // The high-water mark, in the same transaction as the entries it counts.
        let recorded = size as u64 + entries.len() as u64;
        match tx.conn_mut() {
            Conn::Postgres(conn) => conn.append_ledger(entries, nodes, recorded, RECORDED_SIZE)?,
            Conn::Sqlite(_) => insert_rows(&mut tx, entries, nodes, recorded)?,
        }
        tx.commit()?;
        Ok(Ok(()))
    }

    /// Visits the rows of `sql_page` page by page: its parameters are the key of the last row
    /// seen (the query orders and filters by it; `-1`s before the first page), then the page
    /// size.
    fn scan_pages(
        &self,
        sql_page: &str,
        key: impl Fn(&Row) -> Vec<i64>,
        mut after: Vec<i64>,
        visit: &mut dyn FnMut(&Row) -> Result<(), DbError>,
    ) -> Result<(), DbError> {
        loop {
            let mut params: Vec<Value> = after.iter().map(|k| Value::Int(*k)).collect();
            params.push(Value::Int(SCAN_PAGE));
            let rows = self.db.read(sql_page, &params, |r| Ok(r.clone()))?;
            for row in &rows {
                visit(row)?;
            }
            match rows.last() {
                Some(last) if rows.len() as i64 == SCAN_PAGE => after = key(last),
                _ => return Ok(()),
            }
        }
    }
}

/// The SQLite append: one cached statement per row (SQLite is in-process, a row costs
/// microseconds).
fn insert_rows(
    tx: &mut Db,
    entries: &[Entry],
    nodes: &[(NodeId, Hash)],
    recorded: u64,
) -> Result<(), DbError> {
    let sql =
        format!("INSERT INTO ledger_entries ({ENTRY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    for raw in entries.iter().map(Entry::to_raw) {
        tx.execute(
            &sql,
            &vals![
                raw.seq,
                raw.time,
                raw.actor,
                raw.action,
                raw.target,
                raw.details
            ],
        )?;
    }
    for (id, hash) in nodes {
        tx.execute(
            "INSERT INTO ledger_nodes (level, idx, hash) VALUES (?1, ?2, ?3)",
            &vals![id.level, id.index as i64, &hash[..]],
        )?;
    }
    tx.execute(UPSERT_META, &vals![RECORDED_SIZE, recorded.to_string()])?;
    Ok(())
}

fn raw_entry(row: &Row) -> Result<RawEntry, DbError> {
    Ok(RawEntry {
        seq: row.get(0)?,
        time: row.lossy_text(1),
        actor: row.lossy_text(2),
        action: row.lossy_text(3),
        target: row.lossy_text(4),
        details: row.lossy_text(5),
    })
}

impl Storage for Store {
    fn size(&self) -> Result<u64, StorageError> {
        let size: i64 = self
            .db
            .read_one(
                "SELECT COALESCE(MAX(seq) + 1, 0) FROM ledger_entries",
                &[],
                |r| r.get(0),
            )
            .map_err(self.storage_error("cannot read the ledger size"))?;
        Ok(size as u64)
    }

    fn node(&self, id: NodeId) -> Result<Option<Hash>, StorageError> {
        let hash = self
            .db
            .read_opt(
                "SELECT hash FROM ledger_nodes WHERE level = ?1 AND idx = ?2",
                &vals![id.level, id.index as i64],
                |row| Ok(row.lossy_bytes(0)),
            )
            .map_err(self.storage_error("cannot read a tree node"))?;
        Ok(hash.and_then(|hash| hash.as_slice().try_into().ok()))
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
        let mut each = |row: &Row| -> Result<(), DbError> {
            visit(raw_entry(row)?);
            Ok(())
        };
        let scanned = match self.db.engine() {
            Engine::Sqlite => self.db.for_each(
                &format!("SELECT {ENTRY_COLUMNS} FROM ledger_entries ORDER BY seq"),
                &mut each,
            ),
            Engine::Postgres => self.scan_pages(
                &format!(
                    "SELECT {ENTRY_COLUMNS} FROM ledger_entries
                     WHERE seq > ?1 ORDER BY seq LIMIT ?2"
                ),
                |row| vec![row.get(0).unwrap_or(i64::MAX)],
                vec![-1],
                &mut each,
            ),
        };
        scanned.map_err(self.storage_error("cannot read entries"))
    }

    fn scan_nodes(&self, visit: &mut dyn FnMut(NodeId, &[u8])) -> Result<(), StorageError> {
        let mut each = |row: &Row| -> Result<(), DbError> {
            let (level, index): (i64, i64) = (row.get(0)?, row.get(1)?);
            // A tampered level or index out of range still reaches verification, as a node
            // that belongs to no tree, instead of aborting the scan.
            let level = u8::try_from(level).unwrap_or(u8::MAX);
            visit(
                NodeId::new(level, u64::try_from(index).unwrap_or(u64::MAX)),
                &row.lossy_bytes(2),
            );
            Ok(())
        };
        let scanned = match self.db.engine() {
            Engine::Sqlite => self
                .db
                .for_each("SELECT level, idx, hash FROM ledger_nodes", &mut each),
            Engine::Postgres => self.scan_pages(
                "SELECT level, idx, hash FROM ledger_nodes
                 WHERE (level, idx) > (?1, ?2) ORDER BY level, idx LIMIT ?3",
                |row| {
                    vec![
                        row.get(0).unwrap_or(i64::MAX),
                        row.get(1).unwrap_or(i64::MAX),
                    ]
                },
                vec![-1, -1],
                &mut each,
            ),
        };
        scanned.map_err(self.storage_error("cannot read tree nodes"))
    }

    fn add_checkpoint(&mut self, checkpoint: &StoredCheckpoint) -> Result<(), StorageError> {
        let size = Checkpoint::peek(&checkpoint.note)
            .map(|c| c.size as i64)
            .unwrap_or(-1);
        self.db
            .execute(
                "INSERT INTO ledger_checkpoints (size, note) VALUES (?1, ?2)",
                &vals![size, &checkpoint.note],
            )
            .map(drop)
            .map_err(self.storage_error("cannot store the checkpoint"))
    }

    fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StorageError> {
        self.db
            .read(
                "SELECT note FROM ledger_checkpoints ORDER BY id",
                &[],
                |row| {
                    Ok(StoredCheckpoint {
                        note: row.lossy_text(0),
                    })
                },
            )
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
