//! The two engines side by side: the same ledger gives the same tree, proofs and signed
//! checkpoints on SQLite and on PostgreSQL, tampering fails verification the same way, two
//! writers never interleave entries on either; and PostgreSQL's own failures (a wrong
//! password, a server that is down, a transaction PostgreSQL aborted) give clear errors.

use std::sync::Arc;

use serde_json::json;
use wharf_ledger::{Action, Ledger, NewEntry, SignerKey};
use wharf_store::testing::{PgServer, TestState, both, on_both};
use wharf_store::{PgDsn, SecretVersionRow, StateLocation, Store, StoreError};

fn entry(i: u64) -> NewEntry {
    let action: Action = if i.is_multiple_of(5) {
        "secret.rotate"
    } else {
        "deploy.step"
    }
    .parse()
    .unwrap();
    let time = jiff::Timestamp::from_second(1_700_000_000 + i as i64).unwrap();
    let details = json!({ "i": i, "note": "ünïcode ✓", "nested": { "k": [1, 2, 3] } });
    NewEntry::new(time, "ops@host", action, format!("svc-{}", i % 3), details).unwrap()
}

fn key() -> SignerKey {
    SignerKey::from_seed("wharf/engines", [7; 32]).unwrap()
}

/// 5 batches of 13 and 12 single appends, a checkpoint after each phase.
fn fill(store: Store) -> Ledger<Store> {
    let mut ledger = Ledger::new(store);
    for batch in 0..5u64 {
        ledger
            .append_batch((batch * 13..(batch + 1) * 13).map(entry).collect())
            .unwrap();
    }
    ledger.checkpoint(&key()).unwrap();
    for i in 65..77 {
        ledger.append(entry(i)).unwrap();
    }
    ledger.checkpoint(&key()).unwrap();
    ledger
}

#[test]
fn the_same_entries_give_the_same_tree_proofs_and_checkpoints_on_both_engines() {
    let [sqlite, postgres] = both();
    let (a, b) = (fill(sqlite.open()), fill(postgres.open()));
    let verifier = key().verifier();
    let (report_a, report_b) = (a.verify(&verifier).unwrap(), b.verify(&verifier).unwrap());
    assert_eq!(report_a.failure, None);
    assert_eq!(report_a.size, 77);
    assert_eq!(report_a.checkpoints_ok, 2);
    assert_eq!(report_a, report_b);
    assert_eq!(
        a.latest_checkpoint().unwrap(),
        b.latest_checkpoint().unwrap()
    );
    for size in [1, 13, 64, 65, 77] {
        assert_eq!(a.root(size).unwrap(), b.root(size).unwrap(), "root {size}");
        for seq in [0, size / 2, size - 1] {
            let proof = a.prove_inclusion(seq, size).unwrap();
            assert_eq!(proof, b.prove_inclusion(seq, size).unwrap());
            proof
                .verify(&b.leaf_hash(seq).unwrap(), &b.root(size).unwrap())
                .unwrap();
        }
        let consistency = a.prove_consistency(size, 77).unwrap();
        assert_eq!(consistency, b.prove_consistency(size, 77).unwrap());
        consistency
            .verify(&b.root(size).unwrap(), &report_b.root)
            .unwrap();
    }
    // The stored rows read back the same.
    let filter = wharf_store::EntryFilter {
        action: Some("secret.rotate".into()),
        target: Some("svc-1".into()),
    };
    let (rows_a, rows_b) = (
        a.storage().ledger_entries(&filter).unwrap(),
        b.storage().ledger_entries(&filter).unwrap(),
    );
    assert_eq!(rows_a, rows_b);
    assert_eq!(rows_a.len(), 5);
    assert_eq!(
        a.storage().ledger_page(Some(40), 7).unwrap(),
        b.storage().ledger_page(Some(40), 7).unwrap()
    );
}

#[test]
fn a_tampered_row_fails_verification_the_same_way_on_both_engines() {
    let tampers = [
        "UPDATE ledger_entries SET details = '{\"i\":999}' WHERE seq = 30",
        "DELETE FROM ledger_entries WHERE seq = 76",
        "UPDATE ledger_nodes SET hash = ledger_nodes.hash || ledger_nodes.hash WHERE level = 1 AND idx = 3",
        "DELETE FROM ledger_entries WHERE seq > 70",
    ];
    for tamper in tampers {
        let [sqlite, postgres] = both();
        let mut failures = Vec::new();
        for state in [&sqlite, &postgres] {
            drop(fill(state.open()));
            state.execute_raw(tamper);
            let ledger = Ledger::new(state.open());
            let report = ledger.verify(&key().verifier()).unwrap();
            failures.push(report.failure);
        }
        assert!(failures[0].is_some(), "{tamper}: not detected");
        assert_eq!(failures[0], failures[1], "{tamper}");
    }
}

/// Two stores (two connections, as two processes) append batches as fast as they can: every
/// append lands whole or not at all, none interleaves, and the ledger verifies. (Under such
/// contention an append can lose the race as many times as the ledger retries; it then fails
/// whole, as a conflict, and writes nothing — counted here, never a partial batch.)
#[test]
fn two_writers_never_interleave_entries_on_either_engine() {
    on_both(|state| {
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let mut ledger = Ledger::new(state.open());
                std::thread::spawn(move || {
                    let mut landed = 0;
                    for round in 0..15u64 {
                        let batch = (0..7).map(|i| entry(w * 1000 + round * 10 + i)).collect();
                        match ledger.append_batch(batch) {
                            Ok(appended) => {
                                let seqs: Vec<u64> = appended.iter().map(|e| e.seq).collect();
                                assert!(seqs.windows(2).all(|p| p[1] == p[0] + 1), "{seqs:?}");
                                landed += 1;
                            }
                            Err(wharf_ledger::LedgerError::Storage(e)) if e.is_conflict() => {}
                            Err(other) => panic!("{other}"),
                        }
                    }
                    landed
                })
            })
            .collect();
        let landed: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
        assert!(landed >= 15, "only {landed} of 30 appends landed");
        let ledger = Ledger::new(state.open());
        let report = ledger.verify(&key().verifier()).unwrap();
        assert_eq!((report.size, report.failure), (landed * 7, None));
        // Each batch of 7 is contiguous: entries of one writer never sit inside another's.
        let rows = ledger
            .storage()
            .ledger_entries(&Default::default())
            .unwrap();
        for chunk in rows.chunks(7) {
            let writer = |raw: &wharf_ledger::RawEntry| {
                serde_json::from_str::<serde_json::Value>(&raw.details).unwrap()["i"]
                    .as_u64()
                    .unwrap()
                    / 1000
            };
            assert!(chunk.iter().all(|r| writer(r) == writer(&chunk[0])));
        }
    });
}

#[test]
fn a_wrong_password_is_a_clear_error_that_does_not_repeat_it() {
    let server = PgServer::start();
    let wrong = "not-the-Password-42";
    let dsn = PgDsn::parse(&server.url("postgres", Some(wrong))).unwrap();
    let error = Store::open_location(&StateLocation::Postgres(dsn)).unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, StoreError::Connect { .. }), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{}", server.port()))
            && text.contains("password authentication failed"),
        "{text}"
    );
    let debug = format!("{error:?}");
    for secret in [wrong, server.password()] {
        assert!(!text.contains(secret) && !debug.contains(secret), "{text}");
    }
}

#[test]
fn a_server_that_is_down_is_named_by_host_and_port() {
    let mut server = PgServer::start();
    let dsn = PgDsn::parse(&server.url("postgres", None)).unwrap();
    server.stop();
    let error = Store::open_location(&StateLocation::Postgres(dsn))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!(
            "postgres://wharf@127.0.0.1:{}/postgres",
            server.port()
        )) && error.contains("cannot connect to the PostgreSQL state store"),
        "{error}"
    );
    assert!(!error.contains(server.password()), "{error}");
}

/// A store opened against a server that then goes away fails its next write with an error
/// naming the database, and changes nothing.
#[test]
fn a_write_after_the_server_stopped_fails_clearly() {
    let mut server = PgServer::start();
    let dsn = server.fresh_database();
    let mut store = Store::open_location(&StateLocation::Postgres(dsn.clone())).unwrap();
    server.stop();
    let error = store.set_meta("k", "v").unwrap_err().to_string();
    assert!(error.contains(dsn.redacted()), "{error}");
}

/// On SQLite a failed statement leaves its transaction usable; PostgreSQL aborts the whole
/// transaction, and its `COMMIT` would then answer `ROLLBACK` without an error. The store
/// refuses that commit instead of reporting a success that wrote nothing.
#[test]
fn a_transaction_postgres_aborted_is_refused_at_commit_not_silently_rolled_back() {
    on_both(|state| {
        let mut store = state.open();
        let row = SecretVersionRow {
            name: "db".into(),
            version: 1,
            created_at: "2026-01-01T00:00:00Z".into(),
            actor: "ops".into(),
            reason: None,
            origin: "set".into(),
            fingerprint: "fp".into(),
            wrapped_key: vec![1],
            key_nonce: vec![2],
            nonce: vec![3],
            ciphertext: vec![4],
        };
        store.insert_secret_version(&row).unwrap();
        let outcome = store.atomically(|store| {
            store.set_meta("k", "v")?;
            // A duplicate version: this statement fails, and the caller carries on.
            assert!(store.insert_secret_version(&row).is_err());
            Ok::<_, StoreError>(())
        });
        match state.engine {
            "sqlite" => {
                outcome.unwrap();
                assert_eq!(store.meta("k").unwrap().as_deref(), Some("v"));
            }
            _ => {
                let error = outcome.unwrap_err().to_string();
                assert!(
                    error.contains("cannot commit")
                        && error.contains("nothing of it was committed"),
                    "{error}"
                );
                assert_eq!(store.meta("k").unwrap(), None);
            }
        }
        assert!(!store.in_transaction());
        // The connection writes again.
        store.set_meta("after", "yes").unwrap();
    });
}

/// The sync PostgreSQL client panics when called inside a tokio runtime; the store's
/// connection thread makes it callable from anywhere, as SQLite is.
#[test]
fn the_postgres_store_works_from_inside_a_tokio_runtime() {
    let server = Arc::new(PgServer::start());
    let state = TestState::postgres(&server);
    let mut store = state.open();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        store.set_meta("from", "async").unwrap();
        assert_eq!(store.meta("from").unwrap().as_deref(), Some("async"));
        let reader = store.open_reader().unwrap();
        assert_eq!(reader.meta("from").unwrap().as_deref(), Some("async"));
    });
}

#[test]
fn the_engines_report_their_names_and_postgres_paths_hide_the_password() {
    let [sqlite, postgres] = both();
    assert_eq!(sqlite.open().engine_name(), "sqlite");
    let store = postgres.open();
    assert_eq!(store.engine_name(), "postgres");
    let shown = store.path().display().to_string();
    assert!(shown.starts_with("postgres://wharf@127.0.0.1:"), "{shown}");
    let server = postgres.server().unwrap();
    assert!(!shown.contains(server.password()));
    assert!(!format!("{store:?} {:?}", postgres.location).contains(server.password()));
}
