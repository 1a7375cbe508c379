//! Regression tests for issue 20's "a fault leaves a change without its evidence": with the
//! state directory nearly full, `wharf secret set` exited 2 ("cannot append to the ledger:
//! database or disk is full") yet the new version was stored and in force; a `secret rotate`
//! whose hook failed created two versions with no ledger entry; concurrent `secret set`s of
//! one name failed with `UNIQUE constraint failed`. Real binary, a real tmpfs of a few hundred
//! kilobytes, a real failing hook, twenty real processes.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::Value;

const MANIFEST: &str = r#"
name: faults
secrets:
  TOKEN: {description: a token}
  FAILING:
    rotate_command: [sh, -c, 'echo the database refused the new password >&2; exit 3']
services:
  api:
    command: [sleep, "3600"]
"#;

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `wharf ARGS` in `dir` with `stdin`.
fn wharf_in(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(wharf_bin())
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("WHARF_ACTOR", "tester")
        .env_remove("WHARF_MASTER_KEY")
        .env_remove("WHARF_FAILPOINT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that fails before reading its input closes the pipe; that is its answer.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn json_in(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let output = wharf_in(dir, &all, "");
    assert!(output.status.success(), "{all:?}: {}", stderr(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// What the store holds about secret `name`: its versions (number → origin) and, for each
/// version, the ledger actions that name it.
#[derive(Debug, PartialEq, Eq)]
struct Evidence {
    versions: BTreeMap<u64, String>,
    entries: BTreeMap<u64, Vec<String>>,
}

fn evidence(dir: &Path, name: &str) -> Evidence {
    let versions = json_in(dir, &["secret", "history", name])
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["origin"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut entries: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for entry in json_in(dir, &["audit", "log", "--target", name])
        .as_array()
        .unwrap()
    {
        // A reveal records a read, not a change.
        if entry["action"] == "secret.reveal" {
            continue;
        }
        let version = entry["details"]["version"].as_u64().unwrap();
        entries
            .entry(version)
            .or_default()
            .push(entry["action"].as_str().unwrap().to_owned());
    }
    Evidence { versions, entries }
}

/// Every stored version has a ledger entry recording it, no entry names a version that is not
/// stored, and the ledger verifies.
fn assert_honest(dir: &Path, name: &str) -> Evidence {
    let found = evidence(dir, name);
    let stored: Vec<u64> = found.versions.keys().copied().collect();
    let recorded: Vec<u64> = found.entries.keys().copied().collect();
    assert_eq!(stored, recorded, "versions vs ledger entries: {found:?}");
    assert_eq!(
        stored,
        (1..=stored.len() as u64).collect::<Vec<_>>(),
        "versions are numbered without gaps: {found:?}"
    );
    let verify = wharf_in(dir, &["audit", "verify"], "");
    assert!(verify.status.success(), "{}", stderr(&verify));
    found
}

/// A tmpfs of `size` mounted on `path`, unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// `None` (with the reason printed) where mounting is not permitted.
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Tmpfs {
                path: path.to_owned(),
            }),
            Ok(out) => {
                eprintln!(
                    "SKIPPED: mounting a tmpfs is not permitted here ({}); the disk-full fault cannot be injected",
                    stderr(&out).trim()
                );
                None
            }
            Err(error) => {
                eprintln!(
                    "SKIPPED: cannot run mount ({error}); the disk-full fault cannot be injected"
                );
                None
            }
        }
    }

    /// Fills the filesystem up to `free` bytes left, with one file `path/fill`.
    fn fill_leaving(&self, free: u64) {
        let fill = self.path.join("fill");
        let _ = std::fs::remove_file(&fill);
        let mut file = std::fs::File::create(&fill).unwrap();
        let block = vec![0u8; 4096];
        while file.write_all(&block).is_ok() {}
        // A partly written block may have landed: byte-exact from here.
        let _ = file.write_all(&[0u8]);
        drop(file);
        let len = std::fs::metadata(&fill).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(&fill).unwrap();
        file.set_len(len.saturating_sub(free)).unwrap();
    }

    fn unfill(&self) {
        let _ = std::fs::remove_file(self.path.join("fill"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

// Before: with the state directory nearly full, `secret set` failed at the ledger append after
// the version had been stored, leaving a value in force with no entry. Now each attempt, at
// every amount of free space from none to a few pages, either stores the version and its entry
// or leaves the state exactly as it was.
#[test]
fn a_full_disk_during_secret_set_leaves_no_version_without_its_entry() {
    let stack = Stack::new(MANIFEST);
    let Some(tmpfs) = Tmpfs::mount(&stack.path().join(".wharf"), "768k") else {
        return;
    };
    let set = |value: &str| wharf_in(stack.path(), &["secret", "set", "TOKEN"], value);
    let first = set("value-0");
    assert!(first.status.success(), "{}", stderr(&first));
    // The ledger key exists from here on, so verification has its checkpoints to check too.
    let checkpoint = wharf_in(stack.path(), &["audit", "checkpoint"], "");
    assert!(checkpoint.status.success(), "{}", stderr(&checkpoint));

    let (mut stored, mut refused) = (1, 0);
    for (attempt, free) in [
        0u64, 512, 1024, 2048, 4096, 6144, 8192, 12288, 16384, 24576, 32768,
    ]
    .into_iter()
    .enumerate()
    {
        let before = evidence(stack.path(), "TOKEN");
        tmpfs.fill_leaving(free);
        let out = set(&format!("value-{}", attempt + 1));
        tmpfs.unfill();
        let after = assert_honest(stack.path(), "TOKEN");
        let text = stderr(&out);
        assert!(!text.contains("panicked"), "{text}");
        if out.status.success() {
            stored += 1;
            assert_eq!(after.versions.len(), before.versions.len() + 1, "{after:?}");
        } else {
            refused += 1;
            assert_eq!(after, before, "a refused set changed the state: {text}");
            assert!(
                text.contains("full") || text.contains("No space left"),
                "the error says why: {text}"
            );
        }
    }
    assert!(
        refused > 0,
        "the tmpfs never filled up: the fault was not injected"
    );
    // With room again, the state takes writes as before.
    let last = set("value-last");
    assert!(last.status.success(), "{}", stderr(&last));
    let found = assert_honest(stack.path(), "TOKEN");
    assert_eq!(found.versions.len(), stored + 1, "{found:?}");
    eprintln!("disk-full fault: {stored} sets stored, {refused} refused cleanly");
}

// Before: a rotation whose hook failed left versions `rotate` and `rollback:1` without a ledger
// entry. Now each version has its entry (`secret.rotate_pending`, `secret.rotate_failed`), and
// the value in force is the previous one — offline, and through a running control plane.
#[test]
fn a_failing_rotate_hook_leaves_every_version_with_its_ledger_entry() {
    let stack = Stack::new(MANIFEST);
    let check = |stack: &Stack, rotations: u64| {
        let found = assert_honest(stack.path(), "FAILING");
        assert_eq!(found.versions.len() as u64, 1 + 2 * rotations, "{found:?}");
        for round in 0..rotations {
            let pending = 2 + 2 * round;
            assert_eq!(found.versions[&pending], "rotate", "{found:?}");
            assert_eq!(found.entries[&pending], ["secret.rotate_pending"]);
            // The value before the rotation put back, as a new version.
            let restored = format!("rollback:{}", pending - 1);
            assert_eq!(found.versions[&(pending + 1)], restored, "{found:?}");
            assert_eq!(found.entries[&(pending + 1)], ["secret.rotate_failed"]);
        }
        let out = wharf_in(stack.path(), &["secret", "get", "FAILING", "--reveal"], "");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "the-old-one");
    };
    let set = wharf_in(stack.path(), &["secret", "set", "FAILING"], "the-old-one");
    assert!(set.status.success(), "{}", stderr(&set));

    let rotate = wharf_in(stack.path(), &["secret", "rotate", "FAILING"], "");
    assert_eq!(rotate.status.code(), Some(1), "{}", stderr(&rotate));
    assert!(stderr(&rotate).contains("the database refused the new password"));
    check(&stack, 1);

    let up = stack.up();
    assert!(up.status.success(), "{}", stderr(&up));
    let rotate = wharf_in(stack.path(), &["secret", "rotate", "FAILING"], "");
    assert_eq!(rotate.status.code(), Some(1), "{}", stderr(&rotate));
    check(&stack, 2);
}

/// Twenty `wharf secret set TOKEN` at once, each with its own value and reason.
fn twenty_concurrent_sets(dir: &Path) -> Vec<(usize, Output)> {
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let dir = dir.to_owned();
            std::thread::spawn(move || {
                let reason = format!("writer-{i}");
                let out = wharf_in(
                    &dir,
                    &["secret", "set", "TOKEN", "--reason", &reason],
                    &format!("concurrent-value-{i}"),
                );
                (i, out)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// Every writer succeeded or failed with a clear message (never SQLite's constraint text);
/// the versions are one per success, in order, each with its `secret.set` entry.
fn assert_serialised(dir: &Path, outcomes: &[(usize, Output)]) {
    let mut succeeded = 0;
    for (i, out) in outcomes {
        let text = stderr(out);
        assert!(!text.contains("UNIQUE constraint"), "writer {i}: {text}");
        assert!(!text.contains("panicked"), "writer {i}: {text}");
        if out.status.success() {
            succeeded += 1;
        } else {
            assert!(text.starts_with("error: "), "writer {i}: {text}");
        }
    }
    let found = assert_honest(dir, "TOKEN");
    assert_eq!(found.versions.len(), succeeded, "{found:?}");
    assert!(
        found
            .entries
            .values()
            .all(|actions| actions == &["secret.set"]),
        "{found:?}"
    );
    // Each success is one version with its own reason.
    let mut reasons: Vec<String> = json_in(dir, &["audit", "log", "--action", "secret.set"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["details"]["reason"].as_str().unwrap().to_owned())
        .collect();
    reasons.sort();
    reasons.dedup();
    assert_eq!(reasons.len(), succeeded, "{reasons:?}");
    assert_eq!(succeeded, 20, "every writer waited its turn and succeeded");
}

// Before: three concurrent `secret set`s of one name, and one failed with `UNIQUE constraint
// failed: secret_versions.name, secret_versions.version`.
#[test]
fn twenty_concurrent_secret_sets_of_one_name_succeed_in_order_without_a_control_plane() {
    let stack = Stack::new(MANIFEST);
    let outcomes = twenty_concurrent_sets(stack.path());
    assert_serialised(stack.path(), &outcomes);
}

#[test]
fn twenty_concurrent_secret_sets_of_one_name_succeed_in_order_through_a_control_plane() {
    let stack = Stack::new(MANIFEST);
    let up = stack.up();
    assert!(up.status.success(), "{}", stderr(&up));
    let outcomes = twenty_concurrent_sets(stack.path());
    assert_serialised(stack.path(), &outcomes);
}
