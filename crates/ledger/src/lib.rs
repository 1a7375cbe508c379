//! wharf-ledger: the tamper-evident audit ledger — entries as leaves of an RFC 9162 Merkle
//! tree, inclusion and consistency proofs, and Ed25519-signed C2SP checkpoints.
//!
//! Architecture Invariant: this crate does no IO. Storage sits behind [`Storage`]
//! (implemented by wharf-store on SQLite, and by [`MemoryStorage`] here for tests), time
//! and randomness come from the caller, so every function is a function of its inputs.

mod actions;
mod entry;
mod hash;
mod ledger;
mod note;
mod proof;
mod storage;
pub mod tree;
mod verify;

pub use actions::KnownAction;
pub use entry::{Action, Entry, EntryError, NewEntry, RawEntry};
pub use hash::{Hash, empty_root, from_hex, hash_from_slice, leaf_hash, node_hash, to_hex};
pub use ledger::{Ledger, LedgerError, SignedCheckpoint};
pub use note::{Checkpoint, NoteError, SignerKey, VerifierKey, key_id};
pub use proof::{
    ConsistencyProof, InclusionProof, ProofError, verify_consistency, verify_inclusion,
};
pub use storage::{MemoryStorage, Storage, StorageError, StoredCheckpoint};
pub use tree::NodeId;
pub use verify::{Mismatch, Report};
