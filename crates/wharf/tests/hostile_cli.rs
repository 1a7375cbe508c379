//! The smaller findings of the hostile trial (issue 20, item 7), each against the real binary
//! in a fresh temp dir and named after what broke.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Runs wharf in `dir` with stdout a pipe whose reader is already gone: every write to it
/// fails with EPIPE, as `wharf … | head -3` does once head has its lines.
fn with_closed_stdout(dir: &Path, args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(wharf_bin())
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("WHARF_ACTOR", "tester")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

// Before: `wharf up -d | head -3` panicked with "failed printing to stdout: Broken pipe".
#[test]
fn up_detached_into_a_closed_pipe_exits_quietly() {
    let stack = Stack::new("name: pipe\nservices:\n  w:\n    command: [sleep, \"600\"]\n");
    for args in [
        &["up", "-d", "--wait-timeout", "60s"][..],
        &["status"],
        &["status", "--output", "json"],
        &["validate"],
        &["render"],
        &["audit", "log"],
    ] {
        let output = with_closed_stdout(stack.path(), args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(141), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
    }
    // The stack did start: the pipe only cut the report.
    assert!(stack.control_pid().is_some());
}

// Before: a manifest with a byte that is not UTF-8 got "stream did not contain valid UTF-8"
// with no line or column, and `--output json` printed nothing.
#[test]
fn non_utf8_manifest_is_reported_with_line_and_column_in_both_outputs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("wharf.yaml"),
        b"name: shop\nservices:\n  api:\n    command: [caf\xe9]\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(wharf_bin())
            .args(args)
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let human = run(&["validate"]);
    assert_eq!(human.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&human.stderr);
    assert!(stderr.contains("wharf.yaml:4:18"), "{stderr}");
    assert!(stderr.contains("not UTF-8"), "{stderr}");
    let json = run(&["--output", "json", "validate"]);
    assert_eq!(json.status.code(), Some(2));
    let records: serde_json::Value = serde_json::from_slice(&json.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&json.stdout)));
    assert_eq!(records[0]["line"], 4, "{records}");
    assert_eq!(records[0]["column"], 18, "{records}");
    assert_eq!(records[0]["severity"], "error");
    // `up` refuses it the same way, starting nothing.
    let up = run(&["up", "-d"]);
    assert_eq!(up.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&up.stderr).contains("wharf.yaml:4:18"));
    assert!(!dir.path().join(".wharf/control.pid").exists());
}

// Before: `up -d` of a stack with secrets on a corrupt state database exited 1 ("the checked
// thing failed") where the docs say a corrupt file is 2.
#[test]
fn up_detached_on_a_corrupt_database_exits_2() {
    let stack = Stack::new(
        "name: corrupt\nsecrets:\n  TOKEN: {}\nservices:\n  w:\n    command: [sleep, \"600\"]\n    secrets: [TOKEN]\n",
    );
    stack.set_secret("TOKEN", "value-9d8c7b6a");
    let db = stack.path().join(".wharf/state.db");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::write(&db, vec![0x5a; 8192]).unwrap();
    let output = stack.up();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("state.db"), "{stderr}");
    assert!(stack.control_pid().is_none(), "nothing started");
}

// Before: `state.db` (encrypted secrets, the ledger) and the logs were 0644 in a 0755 state
// directory.
#[test]
fn state_database_and_logs_are_private_in_a_private_state_directory() {
    let stack = Stack::new(
        "name: private\nsecrets:\n  TOKEN: {}\nservices:\n  w:\n    command: [sh, -c, \"echo hello; exec sleep 600\"]\n    secrets: [TOKEN]\n",
    );
    // An existing, open state directory is tightened.
    let state = stack.path().join(".wharf");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    stack.set_secret("TOKEN", "value-1a2b3c4d");
    let output = stack.up();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(mode(&state), 0o700);
    for file in ["state.db", "state.db-wal", "state.db-shm", "control.log"] {
        assert_eq!(mode(&state.join(file)), 0o600, "{file}");
    }
    let logs = state.join("logs");
    let log = eventually("the instance's log", Duration::from_secs(30), || {
        find_file(&logs)
    });
    assert_eq!(mode(&log), 0o600, "{}", log.display());
    let mut dir = log.parent();
    while let Some(d) = dir.filter(|d| d.starts_with(&logs)) {
        assert_eq!(mode(d), 0o700, "{}", d.display());
        dir = d.parent();
    }
}

fn find_file(dir: &Path) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path) {
                return Some(found);
            }
        } else if path.metadata().is_ok_and(|m| m.len() > 0) {
            return Some(path);
        }
    }
    None
}

// Before: an empty `/dev/shm/wharf-<id>` directory was left behind after `down`.
#[test]
fn secret_files_directory_is_removed_after_down() {
    let stack = Stack::new(
        "name: shm\nsecrets:\n  CERT: {}\nservices:\n  w:\n    command: [sleep, \"600\"]\n    replicas: 2\n    secret_files: [CERT]\n",
    );
    stack.set_secret("CERT", "cert-7e6d5c4b");
    let output = stack.up();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let state = std::path::absolute(stack.path().join(".wharf")).unwrap();
    let instance = wharf_secrets::files_dir(&state, "w", 0);
    let stack_dir = instance.parent().unwrap().to_owned();
    assert!(instance.join("CERT").exists(), "{}", instance.display());
    let down = stack.wharf(&["down"]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(!instance.exists());
    assert!(!stack_dir.exists(), "{} is left", stack_dir.display());
}
