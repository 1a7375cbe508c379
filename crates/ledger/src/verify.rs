//! Full verification: recompute every leaf and the whole tree from the stored entries,
//! compare with the stored hashes and with every signed checkpoint, and name the first
//! entry that does not match.

use std::convert::Infallible;
use std::fmt;

use crate::entry::RawEntry;
use crate::hash::{Hash, leaf_hash};
use crate::ledger::{Ledger, LedgerError};
use crate::note::{Checkpoint, VerifierKey};
use crate::storage::Storage;
use crate::tree::{self, Frontier, NodeId};

/// A verification finding: what does not match, by the first seq it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// The entries jump over `seq`: a row was deleted.
    EntryMissing { seq: u64 },
    /// Entry `seq` does not hash to its recorded leaf: the entry was altered or moved.
    LeafMismatch { seq: u64 },
    /// A stored interior node differs from the one recomputed from the entries.
    NodeMismatch { id: NodeId },
    /// A node the entries need is not stored.
    NodeMissing { id: NodeId },
    /// The tree or a checkpoint records `recorded` entries but only `seq` remain.
    TailMissing { seq: u64, recorded: u64 },
    /// A stored checkpoint's signature or format is wrong.
    CheckpointInvalid { position: usize, reason: String },
    /// The entries no longer hash to the root a stored checkpoint signed.
    CheckpointRoot { size: u64 },
    /// A saved checkpoint given by the caller is not signed by the ledger's key.
    SavedCheckpointInvalid(String),
    /// A saved checkpoint given by the caller is not a prefix of today's tree.
    SavedCheckpointInconsistent { size: u64 },
    /// Evidence outside the ledger's tables (its key file) shows a ledger existed that the
    /// storage no longer holds; the reason says which evidence.
    Forgotten(String),
}

impl Mismatch {
    /// The first entry this finding concerns, if it can be told.
    pub fn first_seq(&self) -> Option<u64> {
        match self {
            Self::EntryMissing { seq }
            | Self::LeafMismatch { seq }
            | Self::TailMissing { seq, .. } => Some(*seq),
            Self::NodeMismatch { id } | Self::NodeMissing { id } => Some(id.first_leaf()),
            _ => None,
        }
    }

    /// Entry findings first (by seq): a changed entry also changes every node above it, so
    /// node and checkpoint findings are reported only when no entry explains them.
    fn rank(&self) -> (u8, u64) {
        let kind = match self {
            Self::NodeMismatch { .. } | Self::NodeMissing { .. } => 1,
            Self::CheckpointInvalid { .. } | Self::CheckpointRoot { .. } => 2,
            _ => 0,
        };
        (kind, self.first_seq().unwrap_or(u64::MAX))
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EntryMissing { seq } => write!(f, "entry seq {seq} is missing (deleted row)"),
            Self::LeafMismatch { seq } => write!(
                f,
                "entry seq {seq} does not match its recorded leaf hash (altered or moved)"
            ),
            Self::NodeMismatch { id } => write!(
                f,
                "tree node (level {}, index {}) over entries from seq {} does not match the entries",
                id.level,
                id.index,
                id.first_leaf()
            ),
            Self::NodeMissing { id } => write!(
                f,
                "tree node (level {}, index {}) over entries from seq {} is missing",
                id.level,
                id.index,
                id.first_leaf()
            ),
            Self::TailMissing { seq, recorded } => write!(
                f,
                "entries from seq {seq} on are missing: {recorded} entries were recorded, {seq} remain"
            ),
            Self::CheckpointInvalid { position, reason } => {
                write!(
                    f,
                    "stored checkpoint #{} is invalid: {reason}",
                    position + 1
                )
            }
            Self::CheckpointRoot { size } => write!(
                f,
                "the first {size} entries no longer hash to the root of the signed checkpoint of size {size}"
            ),
            Self::SavedCheckpointInvalid(reason) => {
                write!(f, "the saved checkpoint is invalid: {reason}")
            }
            Self::SavedCheckpointInconsistent { size } => write!(
                f,
                "the saved checkpoint of size {size} is not consistent with today's tree (history rewritten)"
            ),
            Self::Forgotten(reason) => write!(f, "the ledger is gone: {reason}"),
        }
    }
}

/// The outcome of [`Ledger::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Entries checked.
    pub size: u64,
    /// The root recomputed from the entries.
    pub root: Hash,
    /// Stored checkpoints whose signature and root checked out.
    pub checkpoints_ok: usize,
    /// The newest stored checkpoint that checked out.
    pub latest: Option<Checkpoint>,
    /// The first finding (by seq), or `None` if everything matches.
    pub failure: Option<Mismatch>,
}

/// Keeps only the first finding by seq, so a badly damaged ledger costs no memory.
#[derive(Default)]
struct First(Option<Mismatch>);

impl First {
    fn add(&mut self, finding: Mismatch) {
        if self
            .0
            .as_ref()
            .is_none_or(|current| finding.rank() < current.rank())
        {
            self.0 = Some(finding);
        }
    }
}

/// Every complete-subtree hash recomputed from the entries, level by level.
struct Recomputed {
    levels: Vec<Vec<Hash>>,
    frontier: Frontier,
}

impl Recomputed {
    fn size(&self) -> u64 {
        self.frontier.size()
    }

    fn node(&self, id: NodeId) -> Option<&Hash> {
        self.levels
            .get(usize::from(id.level))?
            .get(usize::try_from(id.index).ok()?)
    }

    fn push(&mut self, leaf: Hash) {
        let levels = &mut self.levels;
        self.frontier.push(leaf, &mut |id, hash| {
            if levels.len() <= usize::from(id.level) {
                levels.push(Vec::new());
            }
            levels[usize::from(id.level)].push(hash);
        });
    }

    fn root(&self, size: u64) -> Hash {
        let node = |id| Ok::<_, Infallible>(*self.node(id).expect("complete node was recomputed"));
        match tree::root(size, &node) {
            Ok(root) => root,
        }
    }
}

/// Rows handed from the reading thread to the hashing thread at a time.
const CHUNK: usize = 1024;

/// The hashing side of [`Ledger::recompute`]: returns the tree up to the first gap.
fn hash_entries(chunks: std::sync::mpsc::Receiver<Vec<RawEntry>>) -> (Recomputed, Option<u64>) {
    let mut tree = Recomputed {
        levels: vec![Vec::new()],
        frontier: Frontier::new(),
    };
    let mut gap = None;
    for raw in chunks.into_iter().flatten() {
        if gap.is_some() {
            continue;
        }
        if raw.seq != tree.size() as i64 {
            gap = Some(tree.size());
            continue;
        }
        tree.push(leaf_hash(&raw.leaf_bytes()));
    }
    (tree, gap)
}

impl<S: Storage> Ledger<S> {
    /// Recomputes everything from the entries and checks stored hashes and checkpoints.
    /// `Err` means the check could not run; findings are in [`Report::failure`].
    pub fn verify(&self, verifier: &VerifierKey) -> Result<Report, LedgerError> {
        let mut first = First::default();
        let tree = self.recompute(&mut first)?;
        if let Some(recorded) = self.storage().recorded_size()?
            && recorded > tree.size()
        {
            first.add(Mismatch::TailMissing {
                seq: tree.size(),
                recorded,
            });
        }
        self.compare_nodes(&tree, &mut first)?;
        let (checkpoints_ok, latest) = self.check_checkpoints(&tree, verifier, &mut first)?;
        let report = Report {
            size: tree.size(),
            root: tree.root(tree.size()),
            checkpoints_ok,
            latest,
            failure: first.0,
        };
        tracing::info!(
            size = report.size,
            ok = report.failure.is_none(),
            "ledger verified"
        );
        Ok(report)
    }

    /// Hashes every entry in seq order from its stored columns (no parsing: see
    /// [`RawEntry::leaf_bytes`]), stopping at the first gap (past it the positions of later
    /// entries are unknown). Reading rows and hashing them are pipelined on two threads:
    /// each takes about half the time of verifying a large ledger.
    fn recompute(&self, first: &mut First) -> Result<Recomputed, LedgerError> {
        let (tree, gap, scanned) = std::thread::scope(|scope| {
            let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<RawEntry>>(16);
            let hasher = scope.spawn(move || hash_entries(receiver));
            let mut chunk = Vec::with_capacity(CHUNK);
            let scanned = self.storage().scan_entries(&mut |raw| {
                chunk.push(raw);
                if chunk.len() == CHUNK {
                    // A send fails only if the hasher is gone, which join reports below.
                    let _ = sender.send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)));
                }
            });
            let _ = sender.send(chunk);
            drop(sender);
            let (tree, gap) = hasher.join().expect("the hashing thread does not panic");
            (tree, gap, scanned)
        });
        scanned?;
        if let Some(seq) = gap {
            first.add(Mismatch::EntryMissing { seq });
        }
        Ok(tree)
    }

    /// Compares every stored node with the recomputed one; reports altered, extra and
    /// missing nodes.
    fn compare_nodes(&self, tree: &Recomputed, first: &mut First) -> Result<(), LedgerError> {
        let mut seen: Vec<Vec<bool>> = tree.levels.iter().map(|l| vec![false; l.len()]).collect();
        self.storage().scan_nodes(&mut |id, stored| {
            let Some(hash) = tree.node(id) else {
                let recorded = (id.index.saturating_add(1))
                    .checked_shl(u32::from(id.level))
                    .unwrap_or(u64::MAX);
                first.add(Mismatch::TailMissing {
                    seq: tree.size(),
                    recorded,
                });
                return;
            };
            seen[usize::from(id.level)][id.index as usize] = true;
            if hash[..] != *stored {
                first.add(match id.level {
                    0 => Mismatch::LeafMismatch { seq: id.index },
                    _ => Mismatch::NodeMismatch { id },
                });
            }
        })?;
        for (level, flags) in seen.iter().enumerate() {
            if let Some(index) = flags.iter().position(|seen| !seen) {
                first.add(Mismatch::NodeMissing {
                    id: NodeId::new(level as u8, index as u64),
                });
            }
        }
        Ok(())
    }

    /// Opens every stored checkpoint and compares its root with the recomputed tree.
    fn check_checkpoints(
        &self,
        tree: &Recomputed,
        verifier: &VerifierKey,
        first: &mut First,
    ) -> Result<(usize, Option<Checkpoint>), LedgerError> {
        let (mut ok, mut latest) = (0, None);
        for (position, stored) in self.storage().checkpoints()?.iter().enumerate() {
            match Checkpoint::open(&stored.note, verifier) {
                Err(error) => first.add(Mismatch::CheckpointInvalid {
                    position,
                    reason: error.to_string(),
                }),
                Ok(cp) if cp.size > tree.size() => {
                    first.add(Mismatch::TailMissing {
                        seq: tree.size(),
                        recorded: cp.size,
                    });
                }
                Ok(cp) if tree.root(cp.size) != cp.root => {
                    first.add(Mismatch::CheckpointRoot { size: cp.size })
                }
                Ok(cp) => {
                    ok += 1;
                    latest = Some(cp);
                }
            }
        }
        Ok((ok, latest))
    }
}
