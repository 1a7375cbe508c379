//! The store on both engines: migrations, clear errors and the ledger running on each, plus
//! SQLite's own checks (pragmas, file header, corruption).

use rusqlite::Connection;
use serde_json::json;
use wharf_ledger::{Action, Ledger, NewEntry, SignerKey};
use wharf_store::testing::on_both;
use wharf_store::{EntryFilter, Store, StoreError, load_or_create_signer};

fn entry(i: u64, action: &str) -> NewEntry {
    let action: Action = action.parse().unwrap();
    let time = jiff::Timestamp::from_second(1_700_000_000 + i as i64).unwrap();
    NewEntry::new(
        time,
        "ops",
        action,
        format!("svc-{}", i % 3),
        json!({ "i": i }),
    )
    .unwrap()
}

#[test]
fn opening_sets_wal_full_sync_and_the_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    drop(store);
    let conn = Connection::open(dir.path().join("state.db")).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        (mode.as_str(), version),
        ("wal", wharf_store::SCHEMA_VERSION as i64)
    );
    // Reopening is a no-op migration.
    Store::open(dir.path()).unwrap();
}

#[test]
fn a_database_from_a_newer_wharf_is_refused() {
    on_both(|state| {
        drop(state.open());
        // Reopening is a no-op migration.
        drop(state.open());
        state.execute_raw(match state.engine {
            "sqlite" => "PRAGMA user_version = 99",
            _ => "UPDATE wharf_schema SET version = 99",
        });
        let error = Store::open_location(&state.location).unwrap_err();
        assert!(
            matches!(error, StoreError::TooNew { found: 99, .. }),
            "{error}"
        );
    });
}

#[test]
fn a_file_that_is_not_sqlite_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("state.db"), b"{\"json\": true}").unwrap();
    let error = Store::open(dir.path()).unwrap_err().to_string();
    assert!(
        error.contains("state.db") && error.contains("not an SQLite file"),
        "{error}"
    );
}

#[test]
fn a_corrupt_sqlite_file_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = b"SQLite format 3\0".to_vec();
    bytes.extend(std::iter::repeat_n(0xA5u8, 4096));
    std::fs::write(dir.path().join("state.db"), bytes).unwrap();
    let error = Store::open(dir.path()).unwrap_err().to_string();
    assert!(error.contains("state.db"), "{error}");
}

#[test]
fn the_ledger_appends_proves_and_verifies_on_both_engines() {
    on_both(|state| the_ledger_appends_proves_and_verifies(state.open(), || state.open()));
}

fn the_ledger_appends_proves_and_verifies(store: Store, reopen: impl Fn() -> Store) {
    let mut ledger = Ledger::new(store);
    ledger
        .append_batch((0..40).map(|i| entry(i, "deploy.step")).collect())
        .unwrap();
    ledger.append(entry(40, "secret.rotate")).unwrap();
    let key = SignerKey::from_seed("wharf/test", [3; 32]).unwrap();
    ledger.checkpoint(&key).unwrap();
    drop(ledger);

    let ledger = Ledger::new(reopen());
    let report = ledger.verify(&key.verifier()).unwrap();
    assert_eq!((report.size, report.failure), (41, None));
    let proof = ledger.prove_inclusion(17, 41).unwrap();
    proof
        .verify(&ledger.leaf_hash(17).unwrap(), &report.root)
        .unwrap();
    let consistency = ledger.prove_consistency(9, 41).unwrap();
    consistency
        .verify(&ledger.root(9).unwrap(), &report.root)
        .unwrap();

    let filter = EntryFilter {
        action: Some("secret.rotate".into()),
        target: None,
    };
    let found = ledger.storage().ledger_entries(&filter).unwrap();
    assert_eq!(found.iter().map(|e| e.seq).collect::<Vec<_>>(), [40]);
    let filter = EntryFilter {
        action: None,
        target: Some("svc-1".into()),
    };
    assert_eq!(ledger.storage().ledger_entries(&filter).unwrap().len(), 14);
}

#[test]
fn the_key_is_created_once_with_its_origin() {
    let dir = tempfile::tempdir().unwrap();
    let first = load_or_create_signer(dir.path(), || "wharf/alpha".into()).unwrap();
    let again = load_or_create_signer(dir.path(), || "wharf/other".into()).unwrap();
    assert_eq!(again.name(), "wharf/alpha");
    assert_eq!(first.verifier(), again.verifier());
}
