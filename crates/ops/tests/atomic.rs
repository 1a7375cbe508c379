//! The use cases commit a change and its ledger entry together, visible to every other reader.

use wharf_ops::Actor;
use wharf_store::Store;

#[test]
fn a_note_is_committed_and_visible_to_another_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Store::open(dir.path()).unwrap();
    let reader = Store::open(dir.path()).unwrap();
    let actor = Actor("test".to_owned());
    for text in ["one", "two"] {
        wharf_ops::audit::note(&mut writer, &actor, text).unwrap();
        assert!(!writer.in_transaction());
    }
    let other = Store::open(dir.path()).unwrap();
    let ledger = wharf_ledger::Ledger::new(other);
    assert_eq!(ledger.size().unwrap(), 2);
    drop(reader);
}
