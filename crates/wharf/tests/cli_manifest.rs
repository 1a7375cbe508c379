//! The manifest commands through the real binary, each in a fresh temp dir:
//! validate, render, init, completions, and the exit-code contract (0 ok, 2 invalid input).

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

fn wharf(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("wharf").expect("wharf binary is built");
    cmd.current_dir(dir)
        .env_remove("WHARF_STATE_DIR")
        .env("NO_COLOR", "1");
    cmd
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/shop/wharf.yaml")
}

const BROKEN: &str = "\
name: shop
services:
  api:
    command: [srv]
    port: 8080
    replics: 2
    depends_on: [db]
  db:
    kind: postgres
    url: postgres://localhost/db
    port: 8080
    depends_on: [api]
    backup: {schedule: \"0 3 * *\"}
";

#[test]
fn validate_accepts_the_example_stack() {
    let dir = tempfile::tempdir().unwrap();
    wharf(dir.path())
        .arg("validate")
        .arg("-f")
        .arg(example())
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "valid (base and environments dev, staging, prod",
        ));
}

#[test]
fn validate_reports_every_problem_with_a_caret_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wharf.yaml"), BROKEN).unwrap();
    let output = wharf(dir.path()).arg("validate").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    for expected in [
        "unknown key `replics` in service `api`",
        "--> wharf.yaml:6:5",
        "did you mean `replicas`?",
        "port 8080 of service `db` is already used by `api`",
        "dependency cycle: api → db → api",
        "is not a valid cron schedule",
        "4 error(s)",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    assert!(
        stderr.contains("    replics: 2\n  |     ^^^^^^^"),
        "caret under the key:\n{stderr}"
    );
}

#[test]
fn validate_json_gives_flat_records() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wharf.yaml"), BROKEN).unwrap();
    let output = wharf(dir.path())
        .args(["validate", "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let records: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(records.len(), 4);
    let first = &records[0];
    assert_eq!(first["severity"], "error");
    assert_eq!(first["file"], "wharf.yaml");
    assert_eq!(
        (first["line"].as_u64(), first["column"].as_u64()),
        (Some(6), Some(5))
    );
    assert_eq!(first["hint"], "did you mean `replicas`?");
    for record in &records {
        let keys: Vec<&str> = record
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            ["severity", "message", "file", "line", "column", "hint"]
        );
    }
}

#[test]
fn validate_of_an_unknown_environment_is_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    wharf(dir.path())
        .args(["validate", "--env", "stagin", "-f"])
        .arg(example())
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("unknown environment `stagin`")
                .and(predicate::str::contains("did you mean `staging`?")),
        );
}

#[test]
fn a_missing_manifest_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    wharf(dir.path()).arg("validate").assert().code(2).stderr(
        predicate::str::contains("cannot read manifest wharf.yaml")
            .and(predicate::str::contains("wharf init")),
    );
}

#[test]
fn a_wrong_flag_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    wharf(dir.path())
        .args(["validate", "--nope"])
        .assert()
        .code(2);
    wharf(dir.path())
        .args(["validate", "--output", "xml"])
        .assert()
        .code(2);
}

#[test]
fn help_documents_the_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    wharf(dir.path()).arg("--help").assert().code(0).stdout(
        predicate::str::contains("Exit codes:").and(predicate::str::contains("2  invalid input")),
    );
}

#[test]
fn render_applies_the_overlay_and_keeps_secrets_symbolic() {
    let dir = tempfile::tempdir().unwrap();
    let output = wharf(dir.path())
        .args(["render", "--env", "prod", "-f"])
        .arg(example())
        .env("LOG_LEVEL", "debug")
        .env("PAGER_URL", "hunter2-must-not-appear")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("environment: prod"), "{text}");
    assert!(text.contains("replicas: 3"), "{text}");
    // The overlay's env wins over the base's interpolated default.
    assert!(text.contains("LOG_LEVEL: warn"), "{text}");
    assert!(text.contains("url: ${secret:PAGER_URL}"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    // Instance variables stay for the runtime to fill.
    assert!(text.contains("${PORT}"), "{text}");
}

#[test]
fn render_interpolates_from_the_environment_and_dotenv() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("wharf.yaml"),
        "name: s\nservices:\n  a:\n    command: [run, \"${FLAG}\", \"${FROM_FILE:?set it}\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "FROM_FILE=from-dotenv\nFLAG=file\n",
    )
    .unwrap();
    let output = wharf(dir.path())
        .args(["render", "--output", "json"])
        .env("FLAG", "process")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stack: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        stack["services"]["a"]["command"],
        serde_json::json!(["run", "process", "from-dotenv"])
    );
}

#[test]
fn render_refuses_a_required_variable_that_is_unset() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("wharf.yaml"),
        "name: s\nservices:\n  a:\n    command: [run, \"${TOKEN:?TOKEN must be set}\"]\n",
    )
    .unwrap();
    wharf(dir.path())
        .arg("render")
        .env_remove("TOKEN")
        .assert()
        .code(2)
        .stdout("")
        .stderr(
            predicate::str::contains("`TOKEN`: TOKEN must be set")
                .and(predicate::str::contains("wharf.yaml:4:21")),
        );
}

#[test]
fn init_writes_a_starter_that_validates_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    wharf(dir.path()).arg("init").assert().code(0);
    let text = std::fs::read_to_string(dir.path().join("wharf.yaml")).unwrap();
    assert!(
        text.lines()
            .filter(|l| l.trim_start().starts_with('#'))
            .count()
            >= 5,
        "commented"
    );
    wharf(dir.path())
        .arg("validate")
        .assert()
        .code(0)
        .stdout(predicate::str::contains("0 warning(s)"));
    std::fs::write(dir.path().join("wharf.yaml"), "name: mine\n").unwrap();
    wharf(dir.path())
        .arg("init")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already exists"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("wharf.yaml")).unwrap(),
        "name: mine\n"
    );
    wharf(dir.path())
        .args(["init", "--force", "--name", "fresh"])
        .assert()
        .code(0);
    let text = std::fs::read_to_string(dir.path().join("wharf.yaml")).unwrap();
    assert!(text.contains("name: fresh"));
}

#[test]
fn completions_are_generated_for_bash() {
    let dir = tempfile::tempdir().unwrap();
    wharf(dir.path())
        .args(["completions", "bash"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("_wharf()").and(predicate::str::contains("validate")));
}
