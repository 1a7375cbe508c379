//! `wharf gate check` through the real binary in a fresh temp dir: a passing gate (exit 0, the
//! table, the JUnit file, a `gate.check` entry naming each input by its SHA-256), a failing one
//! (exit 1, the reasons, recorded too), and bad input (exit 2, nothing in the ledger).

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

const MANIFEST: &str = r#"name: shop
services:
  api:
    command: [sleep, "1000"]
gates:
  release:
    - {name: no serious findings, sarif: {max_level: warning, max_security_severity: 6.9}}
    - {name: no secrets, sarif: {max_results: 0}}
    - {name: tests pass, junit: {max_failures: 0, min_tests: 4}}
    - {name: load, k6: {p95: 3s, max_error_rate: 1%}}
    - {name: coverage, coverage: {min_lines: 85%}}
"#;

struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("wharf.yaml"), MANIFEST).unwrap();
        for rel in [
            "sarif/kind-pass.sarif",
            "sarif/gitleaks.sarif",
            "sarif/trivy.sarif",
            "junit/jest-junit.xml",
            "junit/zero-tests.xml",
            "k6/handle-summary.json",
            "k6/legacy-export.json",
            "coverage/lcov.info",
        ] {
            let name = rel.replace('/', "-");
            std::fs::copy(corpus(rel), dir.path().join(name)).unwrap();
        }
        Fixture { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn wharf(&self, args: &[&str]) -> Command {
        let mut cmd = Command::cargo_bin("wharf").unwrap();
        cmd.current_dir(self.path())
            .env("NO_COLOR", "1")
            .env("WHARF_ACTOR", "tester")
            .env_remove("WHARF_STATE_DIR")
            .args(args);
        cmd
    }

    fn check(&self, inputs: &[&str], extra: &[&str]) -> (i32, String, String) {
        let mut args = vec![
            "gate",
            "check",
            "release",
            "--version",
            "1.5.0",
            "--service",
            "api",
        ];
        args.extend(extra);
        args.push("--input");
        args.extend(inputs);
        let out = self.wharf(&args).output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }

    /// The `gate.check` entries of the ledger, oldest first (none when no ledger exists).
    fn gate_entries(&self) -> Vec<Value> {
        if !self.path().join(".wharf/state.db").exists() {
            return Vec::new();
        }
        let out = self
            .wharf(&["--output", "json", "audit", "log", "--action", "gate.check"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let entries: Value = serde_json::from_slice(&out.stdout).unwrap();
        entries.as_array().unwrap().clone()
    }

    fn sha256(&self, name: &str) -> String {
        format!(
            "{:x}",
            Sha256::digest(std::fs::read(self.path().join(name)).unwrap())
        )
    }
}

fn corpus(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../gates/tests/corpus")
        .join(rel)
}

#[test]
fn passing_gate_exits_0_writes_junit_and_records_input_hashes() {
    let f = Fixture::new();
    let inputs = [
        "sarif-kind-pass.sarif",
        "junit-jest-junit.xml",
        "k6-handle-summary.json",
        "coverage-lcov.info",
    ];
    let (code, stdout, stderr) = f.check(&inputs, &["--junit", "verdict.xml"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("gate release PASS for api@1.5.0: 5 conditions, 0 failed"),
        "{stdout}"
    );
    let row = stdout.lines().find(|l| l.contains("load")).unwrap();
    assert!(
        row.contains("k6-handle-summary.json") && row.contains("p95 1.84s") && row.contains("PASS"),
        "{row}"
    );

    let xml = std::fs::read_to_string(f.path().join("verdict.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), 5);
    assert!(
        !doc.descendants().any(|n| n.has_tag_name("failure")),
        "{xml}"
    );

    let entries = f.gate_entries();
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry["actor"], "tester");
    assert_eq!(entry["target"], "release/api@1.5.0");
    let details = &entry["details"];
    assert_eq!(details["verdict"], "pass");
    assert_eq!(details["conditions"].as_array().unwrap().len(), 5);
    let recorded: Vec<(String, String, String)> = details["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["path"].as_str().unwrap().to_owned(),
                i["sha256"].as_str().unwrap().to_owned(),
                i["format"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = inputs
        .iter()
        .zip(["sarif", "junit", "k6", "lcov"])
        .map(|(name, format)| ((*name).to_owned(), f.sha256(name), format.to_owned()))
        .collect();
    assert_eq!(recorded, expected);
    f.wharf(&["audit", "verify"]).assert().success();
}

#[test]
fn failing_gate_exits_1_with_reasons_and_is_recorded() {
    let f = Fixture::new();
    let (code, stdout, stderr) = f.check(
        &[
            "sarif-trivy.sarif",
            "sarif-gitleaks.sarif",
            "junit-zero-tests.xml",
            "k6-legacy-export.json",
        ],
        &["--junit", "verdict.xml"],
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("gate release FAIL for api@1.5.0: 5 conditions, 5 failed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("security-severity 7.5 above max_security_severity 6.9"),
        "{stdout}"
    );
    assert!(
        stdout.contains("zero tests: the condition evaluated nothing"),
        "{stdout}"
    );
    // The legacy export's `true` is a failed threshold, and its p95 is over 3 s.
    assert!(stdout.contains("p95 3.52s above 3.00s"), "{stdout}");
    assert!(
        stdout.contains("no coverage input: the condition evaluated nothing"),
        "{stdout}"
    );

    let xml = std::fs::read_to_string(f.path().join("verdict.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    assert_eq!(
        doc.descendants()
            .filter(|n| n.has_tag_name("failure"))
            .count(),
        5
    );

    let entries = f.gate_entries();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["details"]["verdict"], "fail");
    let no_secrets = &entries[0]["details"]["conditions"][1];
    assert_eq!(no_secrets["name"], "no secrets");
    assert_eq!(no_secrets["verdict"], "fail");
    assert_eq!(
        no_secrets["measured"],
        "3 findings (error 1, warning 2), max security-severity 7.5"
    );
}

#[test]
fn json_output_has_the_verdict_and_hashes() {
    let f = Fixture::new();
    let out = f
        .wharf(&[
            "--output",
            "json",
            "gate",
            "check",
            "release",
            "--version",
            "2.0.0",
            "--service",
            "api",
            "--input",
            "sarif-kind-pass.sarif",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "fail");
    assert_eq!(v["conditions"][0]["verdict"], "pass");
    assert_eq!(
        v["conditions"][2]["reason"],
        "no junit input: the condition evaluated nothing"
    );
    assert_eq!(v["inputs"][0]["sha256"], f.sha256("sarif-kind-pass.sarif"));
}

#[test]
fn bad_input_exits_2_and_records_nothing() {
    let f = Fixture::new();
    std::fs::write(f.path().join("notes.txt"), "not a report\n").unwrap();
    std::fs::write(f.path().join("broken.sarif"), "{\"runs\": [{\"tool\": ").unwrap();
    for (inputs, message) in [
        (
            vec!["coverage-lcov.info", "missing.xml"],
            "missing.xml: cannot read",
        ),
        (
            vec!["coverage-lcov.info", "notes.txt"],
            "notes.txt: unknown format",
        ),
        (
            vec!["broken.sarif"],
            "broken.sarif: line 1, column 19: EOF while parsing a value",
        ),
    ] {
        let (code, stdout, stderr) = f.check(&inputs, &["--junit", "verdict.xml"]);
        assert_eq!(code, 2, "{stdout}{stderr}");
        assert!(stderr.contains(message), "{stderr}");
    }
    let out = f
        .wharf(&[
            "gate",
            "check",
            "relase",
            "--version",
            "1",
            "--service",
            "api",
            "--input",
            "coverage-lcov.info",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no gate `relase` (the manifest's gates: release)")
    );
    let out = f
        .wharf(&[
            "gate",
            "check",
            "release",
            "--version",
            "1",
            "--service",
            "web",
            "--input",
            "coverage-lcov.info",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!f.path().join("verdict.xml").exists());
    assert_eq!(f.gate_entries(), Vec::<Value>::new());
}
