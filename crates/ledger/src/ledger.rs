//! The ledger API every capability uses: append, checkpoint, prove, verify.

use crate::entry::{Entry, EntryError, NewEntry};
use crate::hash::Hash;
use crate::note::{Checkpoint, NoteError, SignerKey, VerifierKey};
use crate::proof::{ConsistencyProof, InclusionProof};
use crate::storage::{Storage, StorageError, StoredCheckpoint};
use crate::tree::{self, Frontier, NodeId};

/// Why a ledger operation could not be carried out (verification *findings* are not errors:
/// they are reported in a [`crate::Report`]).
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// An entry is not acceptable.
    #[error(transparent)]
    Entry(#[from] EntryError),
    /// A key, checkpoint or note is not acceptable.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// A hash the tree needs is not stored; `wharf audit verify` says why.
    #[error("the stored tree lacks node (level {}, index {}); run `wharf audit verify`", .0.level, .0.index)]
    MissingNode(NodeId),
    /// A seq at or beyond the tree size.
    #[error("entry seq {seq} is not in a tree of {size} entries")]
    SeqOutOfRange { seq: u64, size: u64 },
    /// A tree size larger than the ledger.
    #[error("tree size {size} is larger than the ledger ({current} entries)")]
    SizeOutOfRange { size: u64, current: u64 },
}

/// How often an append is tried when other writers keep winning the race.
const APPEND_ATTEMPTS: u32 = 5;

/// A checkpoint with the signed note it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub note: String,
}

/// The ledger over some storage. It holds no state of its own: the storage is the truth.
#[derive(Debug)]
pub struct Ledger<S> {
    storage: S,
}

impl<S: Storage> Ledger<S> {
    /// A ledger over `storage`.
    pub fn new(storage: S) -> Self {
        Self { storage }
    }

    /// The storage, for reads the ledger does not cover (listing entries, for instance).
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The storage back, for a reader that keeps its connection between requests.
    pub fn into_storage(self) -> S {
        self.storage
    }

    /// The storage, mutably (tests use it to tamper).
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// The number of entries.
    pub fn size(&self) -> Result<u64, LedgerError> {
        Ok(self.storage.size()?)
    }

    pub(crate) fn stored_node(&self, id: NodeId) -> Result<Hash, LedgerError> {
        self.storage.node(id)?.ok_or(LedgerError::MissingNode(id))
    }

    fn check_size(&self, size: u64) -> Result<u64, LedgerError> {
        let current = self.size()?;
        if size > current {
            return Err(LedgerError::SizeOutOfRange { size, current });
        }
        Ok(current)
    }

    /// The root of the tree of the first `size` entries: O(log n) node reads.
    pub fn root(&self, size: u64) -> Result<Hash, LedgerError> {
        self.check_size(size)?;
        tree::root(size, &|id| self.stored_node(id))
    }

    /// The stored leaf hash of entry `seq`.
    pub fn leaf_hash(&self, seq: u64) -> Result<Hash, LedgerError> {
        self.stored_node(NodeId::new(0, seq))
    }

    /// Appends one entry.
    pub fn append(&mut self, entry: NewEntry) -> Result<Entry, LedgerError> {
        let mut entries = self.append_batch(vec![entry])?;
        Ok(entries.remove(0))
    }

    /// Appends entries in one storage transaction: all of them or none. If another writer
    /// appended in between (a second process), the batch is renumbered and retried.
    pub fn append_batch(&mut self, batch: Vec<NewEntry>) -> Result<Vec<Entry>, LedgerError> {
        let mut entries: Vec<Entry> = batch.into_iter().map(|entry| entry.at(0)).collect();
        let mut attempt = 1;
        loop {
            match self.try_append(&mut entries) {
                Err(LedgerError::Storage(error))
                    if error.is_conflict() && attempt < APPEND_ATTEMPTS =>
                {
                    tracing::debug!(attempt, %error, "ledger append conflict; retrying");
                    attempt += 1;
                }
                result => return result.map(|()| entries),
            }
        }
    }

    /// One append attempt at the current size: numbers the entries, computes the new nodes
    /// from the stored frontier (O(log n) reads) and hands both to storage.
    fn try_append(&mut self, entries: &mut [Entry]) -> Result<(), LedgerError> {
        let size = self.size()?;
        let mut frontier = Frontier::load(size, &|id| self.stored_node(id))?;
        let mut nodes = Vec::with_capacity(entries.len() * 2);
        for (entry, seq) in entries.iter_mut().zip(size..) {
            entry.seq = seq;
            frontier.push(entry.leaf_hash(), &mut |id, hash| nodes.push((id, hash)));
        }
        self.storage.append(entries, &nodes)?;
        tracing::debug!(first = size, count = entries.len(), "ledger append");
        Ok(())
    }

    /// Signs and stores a checkpoint of the whole tree as it is now.
    pub fn checkpoint(&mut self, signer: &SignerKey) -> Result<SignedCheckpoint, LedgerError> {
        let size = self.size()?;
        let checkpoint = Checkpoint {
            origin: signer.name().to_owned(),
            size,
            root: self.root(size)?,
        };
        let note = signer.sign_note(&checkpoint.body());
        self.storage
            .add_checkpoint(&StoredCheckpoint { note: note.clone() })?;
        tracing::info!(size, "ledger checkpoint signed");
        Ok(SignedCheckpoint { checkpoint, note })
    }

    /// The newest stored checkpoint, parsed but not yet verified (callers that trust it must
    /// open it with a [`VerifierKey`]; `verify` does).
    pub fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, LedgerError> {
        let Some(stored) = self.storage.checkpoints()?.pop() else {
            return Ok(None);
        };
        let checkpoint = Checkpoint::peek(&stored.note)?;
        Ok(Some(SignedCheckpoint {
            checkpoint,
            note: stored.note,
        }))
    }

    /// An inclusion proof for entry `seq` in the tree of the first `size` entries.
    pub fn prove_inclusion(&self, seq: u64, size: u64) -> Result<InclusionProof, LedgerError> {
        self.check_size(size)?;
        if seq >= size {
            return Err(LedgerError::SeqOutOfRange { seq, size });
        }
        let path = tree::inclusion_path(seq, size, &|id| self.stored_node(id))?;
        Ok(InclusionProof {
            index: seq,
            size,
            path,
        })
    }

    /// A consistency proof that the tree of `first` entries is a prefix of that of `second`.
    pub fn prove_consistency(
        &self,
        first: u64,
        second: u64,
    ) -> Result<ConsistencyProof, LedgerError> {
        self.check_size(second)?;
        if first > second {
            return Err(LedgerError::SizeOutOfRange {
                size: first,
                current: second,
            });
        }
        let path = tree::consistency_path(first, second, &|id| self.stored_node(id))?;
        Ok(ConsistencyProof {
            first,
            second,
            path,
        })
    }

    /// Checks a saved (older) signed checkpoint: signed by `verifier` and consistent with
    /// today's tree. `Ok(Err(_))` is a finding, `Err(_)` a failure to check.
    pub fn check_saved_checkpoint(
        &self,
        note: &str,
        verifier: &VerifierKey,
    ) -> Result<Result<Checkpoint, crate::Mismatch>, LedgerError> {
        use crate::Mismatch;
        let saved = match Checkpoint::open(note, verifier) {
            Ok(saved) => saved,
            Err(error) => return Ok(Err(Mismatch::SavedCheckpointInvalid(error.to_string()))),
        };
        let size = self.size()?;
        if saved.size > size {
            return Ok(Err(Mismatch::TailMissing {
                seq: size,
                recorded: saved.size,
            }));
        }
        let proof = self.prove_consistency(saved.size, size)?;
        if proof.verify(&saved.root, &self.root(size)?).is_err() {
            return Ok(Err(Mismatch::SavedCheckpointInconsistent {
                size: saved.size,
            }));
        }
        Ok(Ok(saved))
    }
}
