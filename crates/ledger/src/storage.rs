//! The storage seam: what the ledger needs from a database, and an in-memory one for tests.
//!
//! wharf-store implements [`Storage`] on SQLite; the ledger itself never does IO.

use std::collections::BTreeMap;
use std::error::Error;

use crate::entry::{Entry, RawEntry};
use crate::hash::Hash;
use crate::tree::NodeId;

/// A storage failure, with what the ledger was doing and the storage's own error.
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct StorageError {
    context: String,
    #[source]
    source: Option<Box<dyn Error + Send + Sync>>,
    conflict: bool,
}

impl StorageError {
    /// Wraps a storage error with a sentence of context.
    pub fn new(
        context: impl Into<String>,
        source: impl Into<Box<dyn Error + Send + Sync>>,
    ) -> Self {
        Self {
            context: context.into(),
            source: Some(source.into()),
            conflict: false,
        }
    }

    /// A storage problem with no underlying error (an invariant the data breaks).
    pub fn msg(context: impl Into<String>) -> Self {
        Self {
            context: context.into(),
            source: None,
            conflict: false,
        }
    }

    /// Another writer appended first: the ledger recomputes and retries.
    pub fn conflict(context: impl Into<String>) -> Self {
        Self {
            context: context.into(),
            source: None,
            conflict: true,
        }
    }

    /// Whether this is an append conflict (see [`Storage::append`]).
    pub fn is_conflict(&self) -> bool {
        self.conflict
    }
}

/// A checkpoint as stored: the signed note; size and root are read from the note itself so
/// that a replaced note cannot disagree with a separate column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub note: String,
}

/// What the ledger needs from a database.
///
/// Invariant: `append` is atomic (all entries and nodes, or nothing) and refuses to write, with
/// a [`StorageError::conflict`], if the stored size is no longer `entries[0].seq`: two
/// writers can never interleave, and the ledger retries the loser on the new tree.
pub trait Storage {
    /// The number of entries (one more than the highest seq).
    fn size(&self) -> Result<u64, StorageError>;
    /// The stored hash of a complete subtree, if any.
    fn node(&self, id: NodeId) -> Result<Option<Hash>, StorageError>;
    /// Appends entries with the complete-subtree hashes they create, in one transaction.
    fn append(&mut self, entries: &[Entry], nodes: &[(NodeId, Hash)]) -> Result<(), StorageError>;
    /// Visits every stored entry in seq order, undecoded.
    fn scan_entries(&self, visit: &mut dyn FnMut(RawEntry)) -> Result<(), StorageError>;
    /// Visits every stored node hash (as raw bytes: a tampered one may have any length).
    fn scan_nodes(&self, visit: &mut dyn FnMut(NodeId, &[u8])) -> Result<(), StorageError>;
    /// Stores a signed checkpoint.
    fn add_checkpoint(&mut self, checkpoint: &StoredCheckpoint) -> Result<(), StorageError>;
    /// Every stored checkpoint, oldest first.
    fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StorageError>;
    /// The ledger's size as the storage recorded it at its last append, kept apart from the
    /// entries (a high-water mark), so that deleting entries leaves a trace verification sees;
    /// `None` when the storage keeps no such record.
    fn recorded_size(&self) -> Result<Option<u64>, StorageError> {
        Ok(None)
    }
}

/// An in-memory [`Storage`] for tests and tools; same invariants as the SQLite one.
#[derive(Debug, Default, Clone)]
pub struct MemoryStorage {
    /// The entries as raw columns, so tests can tamper with them like with a database row.
    pub entries: BTreeMap<i64, RawEntry>,
    /// The complete-subtree hashes.
    pub nodes: BTreeMap<NodeId, Vec<u8>>,
    /// Signed checkpoints, oldest first.
    pub checkpoints: Vec<StoredCheckpoint>,
    /// The size after the last append (see [`Storage::recorded_size`]).
    pub recorded: Option<u64>,
}

impl Storage for MemoryStorage {
    fn size(&self) -> Result<u64, StorageError> {
        Ok(self
            .entries
            .keys()
            .next_back()
            .map_or(0, |&seq| seq as u64 + 1))
    }

    fn node(&self, id: NodeId) -> Result<Option<Hash>, StorageError> {
        Ok(self
            .nodes
            .get(&id)
            .and_then(|h| h.as_slice().try_into().ok()))
    }

    fn append(&mut self, entries: &[Entry], nodes: &[(NodeId, Hash)]) -> Result<(), StorageError> {
        let size = self.size()?;
        if entries.first().is_some_and(|e| e.seq != size) {
            return Err(StorageError::conflict(format!(
                "another writer appended: size is now {size}"
            )));
        }
        for entry in entries {
            self.entries.insert(entry.seq as i64, entry.to_raw());
        }
        for (id, hash) in nodes {
            self.nodes.insert(*id, hash.to_vec());
        }
        self.recorded = Some(self.size()?);
        Ok(())
    }

    fn scan_entries(&self, visit: &mut dyn FnMut(RawEntry)) -> Result<(), StorageError> {
        self.entries.values().cloned().for_each(visit);
        Ok(())
    }

    fn scan_nodes(&self, visit: &mut dyn FnMut(NodeId, &[u8])) -> Result<(), StorageError> {
        self.nodes.iter().for_each(|(id, hash)| visit(*id, hash));
        Ok(())
    }

    fn add_checkpoint(&mut self, checkpoint: &StoredCheckpoint) -> Result<(), StorageError> {
        self.checkpoints.push(checkpoint.clone());
        Ok(())
    }

    fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StorageError> {
        Ok(self.checkpoints.clone())
    }

    fn recorded_size(&self) -> Result<Option<u64>, StorageError> {
        Ok(self.recorded)
    }
}

/// A ledger can run over borrowed storage, so a use case that owns the store can append inside
/// a transaction it opened (`Ledger::new(&mut *store)`).
impl<S: Storage + ?Sized> Storage for &mut S {
    fn size(&self) -> Result<u64, StorageError> {
        (**self).size()
    }

    fn node(&self, id: NodeId) -> Result<Option<Hash>, StorageError> {
        (**self).node(id)
    }

    fn append(&mut self, entries: &[Entry], nodes: &[(NodeId, Hash)]) -> Result<(), StorageError> {
        (**self).append(entries, nodes)
    }

    fn scan_entries(&self, visit: &mut dyn FnMut(RawEntry)) -> Result<(), StorageError> {
        (**self).scan_entries(visit)
    }

    fn scan_nodes(&self, visit: &mut dyn FnMut(NodeId, &[u8])) -> Result<(), StorageError> {
        (**self).scan_nodes(visit)
    }

    fn add_checkpoint(&mut self, checkpoint: &StoredCheckpoint) -> Result<(), StorageError> {
        (**self).add_checkpoint(checkpoint)
    }

    fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StorageError> {
        (**self).checkpoints()
    }

    fn recorded_size(&self) -> Result<Option<u64>, StorageError> {
        (**self).recorded_size()
    }
}
