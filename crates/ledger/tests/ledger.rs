//! The ledger API over in-memory storage: append, checkpoint, prove, and verification that
//! names the first entry that does not match.

use serde_json::json;
use wharf_ledger::{
    Action, Ledger, MemoryStorage, Mismatch, NewEntry, SignerKey, StoredCheckpoint, leaf_hash,
};

fn entry(i: u64) -> NewEntry {
    let action: Action = "deploy.step".parse().unwrap();
    let time = jiff::Timestamp::from_second(1_700_000_000 + i as i64).unwrap();
    NewEntry::new(time, "ops", action, format!("svc-{i}"), json!({"i": i})).unwrap()
}

fn ledger(n: u64) -> (Ledger<MemoryStorage>, SignerKey) {
    let key = SignerKey::from_seed("wharf/test", [7; 32]).unwrap();
    let mut ledger = Ledger::new(MemoryStorage::default());
    ledger
        .append_batch((0..n / 2).map(entry).collect())
        .unwrap();
    for i in n / 2..n {
        ledger.append(entry(i)).unwrap();
    }
    ledger.checkpoint(&key).unwrap();
    (ledger, key)
}

fn failure(ledger: &Ledger<MemoryStorage>, key: &SignerKey) -> Option<Mismatch> {
    ledger.verify(&key.verifier()).unwrap().failure
}

#[test]
fn an_untouched_ledger_verifies_and_proves() {
    let (ledger, key) = ledger(13);
    let report = ledger.verify(&key.verifier()).unwrap();
    assert_eq!(report.failure, None);
    assert_eq!((report.size, report.checkpoints_ok), (13, 1));
    assert_eq!(report.root, ledger.root(13).unwrap());
    for seq in 0..13 {
        let proof = ledger.prove_inclusion(seq, 13).unwrap();
        proof
            .verify(&ledger.leaf_hash(seq).unwrap(), &report.root)
            .unwrap();
    }
    let raw = ledger.storage().entries[&4].clone();
    let leaf = wharf_ledger::Entry::try_from(raw).unwrap().leaf_bytes();
    assert_eq!(leaf_hash(&leaf), ledger.leaf_hash(4).unwrap());
    for first in 0..=13 {
        let proof = ledger.prove_consistency(first, 13).unwrap();
        proof
            .verify(&ledger.root(first).unwrap(), &report.root)
            .unwrap();
    }
}

#[test]
fn an_edited_entry_is_named() {
    let (mut ledger, key) = ledger(10);
    ledger.storage_mut().entries.get_mut(&6).unwrap().target = "evil".into();
    ledger.storage_mut().entries.get_mut(&8).unwrap().target = "evil".into();
    assert_eq!(
        failure(&ledger, &key),
        Some(Mismatch::LeafMismatch { seq: 6 })
    );
}

#[test]
fn a_deleted_entry_is_named() {
    let (mut ledger, key) = ledger(10);
    ledger.storage_mut().entries.remove(&3);
    assert_eq!(
        failure(&ledger, &key),
        Some(Mismatch::EntryMissing { seq: 3 })
    );
}

#[test]
fn a_truncated_tail_is_named() {
    let (mut ledger, key) = ledger(10);
    ledger.storage_mut().entries.retain(|&seq, _| seq < 7);
    ledger.storage_mut().nodes.clear();
    assert_eq!(failure(&ledger, &key).and_then(|f| f.first_seq()), Some(7));
}

// Issue 20: every entry, node and checkpoint deleted left an empty ledger that verified.
// The storage's high-water mark, kept apart from the entries, still counts them.
#[test]
fn a_ledger_emptied_of_every_row_fails_against_its_recorded_size() {
    let (mut ledger, key) = ledger(10);
    let storage = ledger.storage_mut();
    storage.entries.clear();
    storage.nodes.clear();
    storage.checkpoints.clear();
    assert_eq!(
        failure(&ledger, &key),
        Some(Mismatch::TailMissing {
            seq: 0,
            recorded: 10
        })
    );
    // Without the mark (a storage that keeps none), an empty ledger is just empty.
    ledger.storage_mut().recorded = None;
    assert_eq!(failure(&ledger, &key), None);
}

#[test]
fn a_replaced_checkpoint_is_refused() {
    let (mut ledger, key) = ledger(10);
    let note = ledger.storage().checkpoints[0]
        .note
        .replacen("\n10\n", "\n9\n", 1);
    ledger.storage_mut().checkpoints[0] = StoredCheckpoint { note };
    assert!(matches!(
        failure(&ledger, &key),
        Some(Mismatch::CheckpointInvalid { .. })
    ));
}

#[test]
fn a_rewritten_history_fails_against_a_saved_checkpoint() {
    let (ledger_a, key) = ledger(10);
    let saved = ledger_a.latest_checkpoint().unwrap().unwrap().note;
    let mut ledger_b = Ledger::new(MemoryStorage::default());
    ledger_b
        .append_batch((100..120).map(entry).collect())
        .unwrap();
    let outcome = ledger_b
        .check_saved_checkpoint(&saved, &key.verifier())
        .unwrap();
    assert_eq!(
        outcome,
        Err(Mismatch::SavedCheckpointInconsistent { size: 10 })
    );
    let mut grown = ledger_a;
    grown.append_batch((10..30).map(entry).collect()).unwrap();
    assert!(
        grown
            .check_saved_checkpoint(&saved, &key.verifier())
            .unwrap()
            .is_ok()
    );
}

/// Storage whose first append loses the race to another writer that appends `sneak`.
struct Racing {
    inner: MemoryStorage,
    sneak: Option<NewEntry>,
}

impl wharf_ledger::Storage for Racing {
    fn size(&self) -> Result<u64, wharf_ledger::StorageError> {
        self.inner.size()
    }
    fn node(
        &self,
        id: wharf_ledger::NodeId,
    ) -> Result<Option<wharf_ledger::Hash>, wharf_ledger::StorageError> {
        self.inner.node(id)
    }
    fn append(
        &mut self,
        entries: &[wharf_ledger::Entry],
        nodes: &[(wharf_ledger::NodeId, wharf_ledger::Hash)],
    ) -> Result<(), wharf_ledger::StorageError> {
        if let Some(sneak) = self.sneak.take() {
            let mut other = Ledger::new(std::mem::take(&mut self.inner));
            other.append(sneak).unwrap();
            self.inner = std::mem::take(other.storage_mut());
        }
        self.inner.append(entries, nodes)
    }
    fn scan_entries(
        &self,
        visit: &mut dyn FnMut(wharf_ledger::RawEntry),
    ) -> Result<(), wharf_ledger::StorageError> {
        self.inner.scan_entries(visit)
    }
    fn scan_nodes(
        &self,
        visit: &mut dyn FnMut(wharf_ledger::NodeId, &[u8]),
    ) -> Result<(), wharf_ledger::StorageError> {
        self.inner.scan_nodes(visit)
    }
    fn add_checkpoint(
        &mut self,
        checkpoint: &StoredCheckpoint,
    ) -> Result<(), wharf_ledger::StorageError> {
        self.inner.add_checkpoint(checkpoint)
    }
    fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, wharf_ledger::StorageError> {
        self.inner.checkpoints()
    }
}

#[test]
fn an_append_that_loses_a_race_is_renumbered_and_retried() {
    let (base, key) = ledger(5);
    let mut ledger = Ledger::new(Racing {
        inner: base.storage().clone(),
        sneak: Some(entry(99)),
    });
    let appended = ledger.append_batch(vec![entry(5), entry(6)]).unwrap();
    assert_eq!(appended.iter().map(|e| e.seq).collect::<Vec<_>>(), [6, 7]);
    assert_eq!(ledger.verify(&key.verifier()).unwrap().failure, None);
    assert_eq!(ledger.size().unwrap(), 8);
}
