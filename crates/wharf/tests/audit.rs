//! `wharf audit` through the real binary in fresh temp dirs: the happy path, and tampering
//! with the real SQLite file (edited, deleted, swapped, truncated rows; a replaced
//! checkpoint), each of which `wharf audit verify` must catch with exit 1, naming the entry.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use rusqlite::Connection;
use tempfile::TempDir;

/// A temp dir with a ledger of `n` notes and a checkpoint, no manifest anywhere.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new(n: usize) -> Self {
        let fixture = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        for i in 0..n {
            fixture
                .wharf(&["audit", "note", &format!("note {i}")])
                .assert()
                .success();
        }
        fixture.wharf(&["audit", "checkpoint"]).assert().success();
        fixture
    }

    fn wharf(&self, args: &[&str]) -> Command {
        let mut cmd = Command::cargo_bin("wharf").unwrap();
        cmd.current_dir(self.dir.path())
            .env("WHARF_ACTOR", "tester")
            .env_remove("WHARF_STATE_DIR");
        cmd.args(args);
        cmd
    }

    fn db(&self) -> Connection {
        Connection::open(self.state().join("state.db")).unwrap()
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join(".wharf")
    }

    fn sql(&self, sql: &str) {
        self.db().execute_batch(sql).unwrap();
    }

    /// Runs verify, expects exit 1, returns stdout.
    fn verify_fails(&self) -> String {
        let out = self
            .wharf(&["audit", "verify"])
            .assert()
            .code(1)
            .get_output()
            .stdout
            .clone();
        String::from_utf8(out).unwrap()
    }
}

#[test]
fn notes_checkpoint_verify_and_log_without_a_manifest() {
    let f = Fixture::new(5);
    f.wharf(&["audit", "verify"])
        .assert()
        .success()
        .stdout(predicate::str::contains("ok: 5 entries"));
    f.wharf(&["audit", "log", "--action", "audit.note", "--since", "1h"])
        .assert()
        .success()
        .stdout(predicate::str::contains("note 4").and(predicate::str::contains("tester")));
    let json = f
        .wharf(&["--output", "json", "audit", "log", "--target", "nope"])
        .assert()
        .success();
    assert_eq!(
        String::from_utf8_lossy(&json.get_output().stdout).trim(),
        "[]"
    );
    f.wharf(&["audit", "prove", "3"])
        .assert()
        .success()
        .stdout(predicate::str::contains("tree of size 5"));
    f.wharf(&["audit", "prove", "9"]).assert().code(2);
}

#[test]
fn key_file_is_private_and_a_loose_one_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new(1);
    let key = f.state().join("ledger.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let verifier = f
        .wharf(&["audit", "key"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let name = f
        .dir
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    assert!(String::from_utf8_lossy(&verifier).starts_with(&format!("wharf/{name}+")));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    f.wharf(&["audit", "checkpoint"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("ledger.key").and(predicate::str::contains("600")));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&key, "PRIVATE+KEY+garbage\n").unwrap();
    f.wharf(&["audit", "key"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("malformed"));
}

#[test]
fn a_deleted_or_swapped_key_file_is_refused_not_silently_replaced() {
    let f = Fixture::new(2);
    let key = f.state().join("ledger.key");
    let original = std::fs::read(&key).unwrap();
    std::fs::remove_file(&key).unwrap();
    f.wharf(&["audit", "checkpoint"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("ledger key is missing"));
    assert!(!key.exists(), "no new key was made in its place");
    // Another wharf's key, swapped in: refused, naming both keys.
    let other = Fixture::new(0);
    std::fs::copy(other.state().join("ledger.key"), &key).unwrap();
    f.wharf(&["audit", "verify"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("but the ledger was signed by"));
    std::fs::write(&key, original).unwrap();
    f.wharf(&["audit", "verify"]).assert().success();
}

#[test]
fn a_non_sqlite_state_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".wharf")).unwrap();
    std::fs::write(
        dir.path().join(".wharf/state.db"),
        "this is not a database at all",
    )
    .unwrap();
    Command::cargo_bin("wharf")
        .unwrap()
        .current_dir(dir.path())
        .args(["audit", "log"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("state.db")
                .and(predicate::str::contains("not an SQLite file")),
        );
}

#[test]
fn state_dir_flag_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("elsewhere");
    let run = |args: &[&str]| {
        let mut cmd = Command::cargo_bin("wharf").unwrap();
        cmd.current_dir(dir.path())
            .arg("--state-dir")
            .arg(&state)
            .args(args);
        cmd
    };
    run(&["audit", "note", "x"]).assert().success();
    assert!(Path::new(&state).join("state.db").exists());
    run(&["audit", "verify"]).assert().success();
}

#[test]
fn tamper_edited_byte_of_an_entry_is_named() {
    let f = Fixture::new(8);
    f.sql("UPDATE ledger_entries SET details = replace(details, 'note 5', 'note 6') WHERE seq = 5");
    assert!(f.verify_fails().contains("entry seq 5 does not match"));
}

#[test]
fn tamper_deleted_row_is_named() {
    let f = Fixture::new(8);
    f.sql("DELETE FROM ledger_entries WHERE seq = 3");
    assert!(f.verify_fails().contains("entry seq 3 is missing"));
}

#[test]
fn tamper_swapped_rows_are_named() {
    let f = Fixture::new(8);
    f.sql(
        "UPDATE ledger_entries SET seq = -1 WHERE seq = 2;
         UPDATE ledger_entries SET seq = 2 WHERE seq = 6;
         UPDATE ledger_entries SET seq = 6 WHERE seq = -1;",
    );
    // The rows moved, so their seq column disagrees with the leaf each slot recorded.
    assert!(f.verify_fails().contains("entry seq 2 does not match"));
}

#[test]
fn tamper_truncated_tail_is_named() {
    let f = Fixture::new(8);
    f.sql("DELETE FROM ledger_entries WHERE seq >= 6; DELETE FROM ledger_nodes;");
    assert!(
        f.verify_fails()
            .contains("entries from seq 6 on are missing")
    );
}

#[test]
fn tamper_truncated_tail_with_its_nodes_is_caught_by_the_checkpoint() {
    let f = Fixture::new(8);
    f.sql("DELETE FROM ledger_entries WHERE seq >= 5; DELETE FROM ledger_nodes WHERE idx << level >= 5 OR ((idx + 1) << level) > 5;");
    assert!(
        f.verify_fails()
            .contains("entries from seq 5 on are missing")
    );
}

#[test]
fn tamper_replaced_checkpoint_is_refused() {
    let f = Fixture::new(8);
    f.sql("UPDATE ledger_checkpoints SET note = replace(note, char(10) || '8' || char(10), char(10) || '7' || char(10))");
    let out = f.verify_fails();
    assert!(
        out.contains("checkpoint") && out.contains("does not verify"),
        "{out}"
    );
}

#[test]
fn tamper_rehashed_history_is_caught_by_a_saved_checkpoint() {
    // Rewrite an entry and recompute every hash above it the way an attacker with write
    // access to the database could: only the signature over the old root exposes it.
    let f = Fixture::new(4);
    let saved = f.dir.path().join("saved-checkpoint");
    let note = f
        .wharf(&["audit", "checkpoint"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    std::fs::write(&saved, note).unwrap();
    // The forged ledger is signed with the original key, so only the proof can tell.
    let other = Fixture {
        dir: tempfile::tempdir().unwrap(),
    };
    std::fs::create_dir(other.state()).unwrap();
    std::fs::copy(
        f.state().join("ledger.key"),
        other.state().join("ledger.key"),
    )
    .unwrap();
    for i in 0..4 {
        let text = if i == 1 {
            "forged".to_owned()
        } else {
            format!("note {i}")
        };
        other.wharf(&["audit", "note", &text]).assert().success();
    }
    // A careful forger also pins the copied key in the new database, as wharf would have, so
    // that the key file alone does not give the replacement away.
    let key = f.wharf(&["audit", "key"]).assert().success();
    let key = String::from_utf8_lossy(&key.get_output().stdout)
        .trim()
        .to_owned();
    other.sql(&format!(
        "INSERT INTO meta (key, value) VALUES ('ledger.verifier_key', '{key}')"
    ));
    let out = other
        .wharf(&["audit", "verify", "--checkpoint", saved.to_str().unwrap()])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    assert!(String::from_utf8_lossy(&out).contains("not consistent"));
    f.wharf(&["audit", "note", "more"]).assert().success();
    f.wharf(&["audit", "verify", "--checkpoint", saved.to_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains("consistent with today's tree"));
}

#[test]
fn tamper_rewritten_and_rehashed_database_is_caught_by_the_stored_checkpoint() {
    // An attacker with write access replaces the entries and every tree node with a
    // self-consistent forged history; only the signed checkpoint still holds the old root.
    let f = Fixture::new(6);
    let forged = Fixture {
        dir: tempfile::tempdir().unwrap(),
    };
    std::fs::create_dir(forged.state()).unwrap();
    std::fs::copy(
        f.state().join("ledger.key"),
        forged.state().join("ledger.key"),
    )
    .unwrap();
    for i in 0..6 {
        let text = if i == 2 {
            "forged".to_owned()
        } else {
            format!("note {i}")
        };
        forged.wharf(&["audit", "note", &text]).assert().success();
    }
    let source = forged.state().join("state.db");
    f.sql(&format!(
        "ATTACH DATABASE '{}' AS forged;
         DELETE FROM ledger_entries; INSERT INTO ledger_entries SELECT * FROM forged.ledger_entries;
         DELETE FROM ledger_nodes; INSERT INTO ledger_nodes SELECT * FROM forged.ledger_nodes;",
        source.display()
    ));
    let out = f.verify_fails();
    assert!(
        out.contains("no longer hash to the root of the signed checkpoint of size 6"),
        "{out}"
    );
}

#[test]
fn concurrent_writers_never_interleave_or_lose_entries() {
    // Start from nothing: the processes also race to create the database and the key.
    let f = Fixture {
        dir: tempfile::tempdir().unwrap(),
    };
    let bin = assert_cmd::cargo::cargo_bin("wharf");
    let spawn = |args: &[&str]| {
        std::process::Command::new(&bin)
            .current_dir(f.dir.path())
            .env("WHARF_ACTOR", "writer")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children: Vec<_> = (0..12)
        .map(|i| match i % 3 {
            0 => spawn(&["audit", "key"]),
            _ => spawn(&["audit", "note", &format!("from writer {i}")]),
        })
        .collect();
    let mut keys = std::collections::BTreeSet::new();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if i % 3 == 0 {
            keys.insert(out.stdout);
        }
    }
    assert_eq!(keys.len(), 1, "every process must end up with the same key");
    f.wharf(&["audit", "checkpoint"]).assert().success();
    f.wharf(&["audit", "verify"])
        .assert()
        .success()
        .stdout(predicate::str::contains("ok: 8 entries"));
}

#[test]
fn tamper_absurd_node_rows_are_findings_not_crashes() {
    let f = Fixture::new(4);
    f.sql("INSERT INTO ledger_nodes (level, idx, hash) VALUES (300, -5, x'00'), (63, 9, 'text')");
    let out = f.verify_fails();
    assert!(out.contains("entries from seq 4 on are missing"), "{out}");
}
