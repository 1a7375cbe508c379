//! `wharf secret …`, `wharf config …` and preflight's rotation checks through the real binary,
//! each in a fresh temp dir: values go in through stdin or a file, come out only through
//! `get --reveal` (recorded), and no other output, nor the ledger, nor the database file,
//! ever holds one.

mod common;

use std::cell::RefCell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use common::{eventually, wharf_bin};

/// `$$` keeps the hook's variables away from the manifest's own interpolation.
const MANIFEST: &str = r#"
name: shop
secrets:
  PG_PASS: {description: password of the shop role, max_age: 90d}
  API_TOKEN: {max_age: 1s, overdue: warn}
  STRIPE_KEY:
    max_age: 1s
    generate: {length: 24, alphabet: hex}
    rotate_command: [sh, -c, 'printf %s "$$WHARF_SECRET_NEW" > hook-new.txt; printf %s "$${WHARF_SECRET_OLD:-none}" > hook-old.txt; echo "$$WHARF_SECRET_NAME" > hook-name.txt']
  FAILING:
    rotate_command: [sh, -c, 'echo hook refused by the database >&2; exit 3']
  UNUSED: {}
  SCRIPTED: {rotate_command: [./rotate.sh]}
services:
  api:
    command: [sh, -c, "sleep 1000"]
    env:
      DATABASE_URL: postgres://shop:${secret:PG_PASS}@127.0.0.1/shop
    secrets: [STRIPE_KEY]
    secret_files: [API_TOKEN]
  worker:
    command: [sh, -c, "sleep 1000"]
    secrets: [FAILING]
"#;

/// Another 64-hex key than the one any test creates.
const OTHER_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// A stack directory; every output of every command run is kept for the leak check.
struct Fixture {
    dir: tempfile::TempDir,
    outputs: RefCell<Vec<(String, Vec<u8>)>>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("wharf.yaml"), MANIFEST).unwrap();
        Fixture {
            dir,
            outputs: RefCell::new(Vec::new()),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn key_file(&self) -> PathBuf {
        self.path().join(".wharf/master.key")
    }

    /// Runs wharf with `stdin` and extra environment; both outputs are kept, except the stdout
    /// of a reveal (the one place a value may appear).
    fn run_with(&self, args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Output {
        let mut child = Command::new(wharf_bin())
            .args(args)
            .current_dir(self.path())
            .env("NO_COLOR", "1")
            .env("WHARF_ACTOR", "tester")
            .env_remove("WHARF_MASTER_KEY")
            .env_remove("WHARF_STATE_DIR")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let output = child.wait_with_output().unwrap();
        let label = args.join(" ");
        let mut kept = self.outputs.borrow_mut();
        if !args.contains(&"--reveal") {
            kept.push((format!("stdout of {label}"), output.stdout.clone()));
        }
        kept.push((format!("stderr of {label}"), output.stderr.clone()));
        output
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, b"", &[])
    }

    /// Runs and expects exit 0.
    fn ok_with(&self, args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Output {
        let output = self.run_with(args, stdin, env);
        assert!(
            output.status.success(),
            "wharf {args:?}: {:?}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    fn ok(&self, args: &[&str]) -> Output {
        self.ok_with(args, b"", &[])
    }

    fn set(&self, name: &str, value: &str) -> Output {
        self.ok_with(&["secret", "set", name], value.as_bytes(), &[])
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let output = self.ok(&all);
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|_| panic!("{args:?}: {}", String::from_utf8_lossy(&output.stdout)))
    }

    fn reveal(&self, name: &str) -> String {
        self.reveal_with(&["secret", "get", name, "--reveal"], &[])
    }

    fn reveal_with(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let output = self.ok_with(args, b"", env);
        let text = String::from_utf8(output.stdout).unwrap();
        text.strip_suffix('\n').unwrap_or(&text).to_owned()
    }

    fn ledger(&self) -> Vec<Value> {
        self.json(&["audit", "log"]).as_array().unwrap().clone()
    }

    fn entries(&self, action: &str) -> Vec<Value> {
        self.ledger()
            .into_iter()
            .filter(|e| e["action"] == action)
            .collect()
    }

    /// No output kept so far, nor the ledger, nor the database file holds any of `values`.
    fn assert_no_leak(&self, values: &[&str]) {
        self.ledger();
        let mut haystacks = self.outputs.borrow().clone();
        for file in ["state.db", "state.db-wal"] {
            if let Ok(bytes) = std::fs::read(self.path().join(".wharf").join(file)) {
                haystacks.push((file.to_owned(), bytes));
            }
        }
        for value in values {
            assert!(value.len() >= 8, "a leak check needs a distinctive value");
            for (label, bytes) in &haystacks {
                let found = bytes
                    .windows(value.len())
                    .any(|window| window == value.as_bytes());
                assert!(!found, "a secret value leaked into {label}");
            }
        }
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn set_by_stdin_and_file_list_reveal_history_rollback_and_nothing_leaks() {
    let f = Fixture::new();
    let first = f.set("PG_PASS", "pg-pass-ALPHA-1\n");
    let notice = stderr(&first);
    assert!(
        notice.contains("a new master key was written to") && notice.contains("master.key"),
        "{notice}"
    );
    assert!(notice.contains("Back it up"), "{notice}");
    assert!(notice.contains("used by: api"), "{notice}");
    assert!(f.key_file().exists());
    assert_eq!(f.reveal("PG_PASS"), "pg-pass-ALPHA-1");

    std::fs::write(f.path().join("pg.txt"), "pg-pass-BRAVO-2\n").unwrap();
    let second = f.ok(&[
        "secret",
        "set",
        "PG_PASS",
        "--from-file",
        "pg.txt",
        "--reason",
        "rotated by hand",
    ]);
    assert!(
        !stderr(&second).contains("new master key"),
        "{}",
        stderr(&second)
    );
    assert_eq!(f.reveal("PG_PASS"), "pg-pass-BRAVO-2");
    let old = ["secret", "get", "PG_PASS", "--reveal", "--version", "1"];
    assert_eq!(f.reveal_with(&old, &[]), "pg-pass-ALPHA-1");

    let refused = f.run(&["secret", "get", "PG_PASS"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(refused.stdout.is_empty());
    assert!(stderr(&refused).contains("add --reveal to print the value; the reveal is recorded"));

    let undeclared = f.run_with(&["secret", "set", "NOPE"], b"nope-value-123", &[]);
    assert_eq!(undeclared.status.code(), Some(2));
    assert!(
        stderr(&undeclared).contains("declared: PG_PASS, API_TOKEN, STRIPE_KEY"),
        "{}",
        stderr(&undeclared)
    );
    let empty = f.run_with(&["secret", "set", "PG_PASS"], b"\n", &[]);
    assert_eq!(empty.status.code(), Some(2));
    assert!(stderr(&empty).contains("empty"), "{}", stderr(&empty));

    let sets = f.entries("secret.set");
    assert_eq!(sets.len(), 2);
    assert_eq!(sets[1]["target"], "PG_PASS");
    assert_eq!(sets[1]["details"]["version"], 2);
    assert_eq!(sets[1]["details"]["reason"], "rotated by hand");
    assert_eq!(sets[1]["details"]["origin"], "set");
    assert_eq!(
        sets[1]["details"]["fingerprint"].as_str().unwrap().len(),
        32
    );
    let reveals = f.entries("secret.reveal");
    assert_eq!(reveals.len(), 3, "every reveal is recorded");
    assert_eq!(reveals[2]["details"]["version"], 1);
    assert_eq!(reveals[2]["actor"], "tester");

    let list = f.json(&["secret", "list"]);
    let row = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(row("PG_PASS")["version"], 2);
    assert_eq!(row("PG_PASS")["rotation"]["status"], "ok");
    assert_eq!(row("PG_PASS")["description"], "password of the shop role");
    assert_eq!(row("API_TOKEN")["rotation"]["status"], "never_set");
    assert_eq!(row("UNUSED")["rotation"]["status"], "no_policy");
    let table = String::from_utf8(f.ok(&["secret", "list"]).stdout).unwrap();
    for expected in [
        "PG_PASS",
        "ok, due in",
        "never set",
        "no policy",
        "shop role",
    ] {
        assert!(table.contains(expected), "{expected} in\n{table}");
    }

    f.ok(&[
        "secret", "rollback", "PG_PASS", "--to", "1", "--reason", "bad",
    ]);
    assert_eq!(f.reveal("PG_PASS"), "pg-pass-ALPHA-1");
    let history = f.json(&["secret", "history", "PG_PASS"]);
    let versions = history.as_array().unwrap();
    assert_eq!(versions.len(), 3);
    assert_eq!(versions[0]["origin"], "set");
    assert_eq!(versions[1]["reason"], "rotated by hand");
    assert_eq!(versions[2]["origin"], "rollback:1");
    assert_eq!(versions[2]["actor"], "tester");
    assert_eq!(versions[2]["fingerprint"], versions[0]["fingerprint"]);
    assert_ne!(versions[1]["fingerprint"], versions[0]["fingerprint"]);
    let rollback = &f.entries("secret.rollback")[0];
    assert_eq!(rollback["details"]["to"], 1);
    assert_eq!(rollback["details"]["version"], 3);
    let human = String::from_utf8(f.ok(&["secret", "history", "PG_PASS"]).stdout).unwrap();
    assert!(
        human.contains("rollback:1") && human.contains("tester"),
        "{human}"
    );

    f.assert_no_leak(&["pg-pass-ALPHA-1", "pg-pass-BRAVO-2", "nope-value-123"]);
}

#[test]
fn rotate_runs_the_hook_first_and_a_failing_hook_stores_nothing() {
    let f = Fixture::new();
    let rotated = f.ok(&["secret", "rotate", "STRIPE_KEY", "--reason", "quarterly"]);
    assert!(
        stderr(&rotated).contains("used by: api"),
        "{}",
        stderr(&rotated)
    );
    let first = f.reveal("STRIPE_KEY");
    assert_eq!(first.len(), 24);
    assert!(first.bytes().all(|b| b.is_ascii_hexdigit()), "{first}");
    let hook_file = |name: &str| std::fs::read_to_string(f.path().join(name)).unwrap();
    assert_eq!(
        hook_file("hook-new.txt"),
        first,
        "the hook saw the new value"
    );
    assert_eq!(hook_file("hook-old.txt"), "none");
    assert_eq!(hook_file("hook-name.txt").trim(), "STRIPE_KEY");

    f.ok(&["secret", "rotate", "STRIPE_KEY"]);
    let second = f.reveal("STRIPE_KEY");
    assert_ne!(second, first);
    assert_eq!(
        hook_file("hook-old.txt"),
        first,
        "the hook saw the old value"
    );
    let rotations = f.entries("secret.rotate");
    assert_eq!(rotations.len(), 2);
    assert_eq!(rotations[0]["details"]["hook"], true);
    assert_eq!(rotations[0]["details"]["reason"], "quarterly");
    assert_eq!(rotations[1]["details"]["version"], 2);

    // No hook: the default generator (32 alphanumerics).
    f.ok(&["secret", "rotate", "PG_PASS"]);
    let generated = f.reveal("PG_PASS");
    assert_eq!(generated.len(), 32);
    assert!(generated.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(f.entries("secret.rotate")[2]["details"]["hook"], false);

    f.set("FAILING", "failing-old-value\n");
    let failed = f.run(&["secret", "rotate", "FAILING"]);
    assert_eq!(failed.status.code(), Some(1));
    let text = stderr(&failed);
    assert!(text.contains("hook refused by the database"), "{text}");
    assert!(text.contains("the value in force is unchanged"), "{text}");
    // Stored before the hook ran (so a hook that changed a password cannot lose it), then
    // rolled back to the value in force: both steps in the history.
    let history = f.json(&["secret", "history", "FAILING"]);
    let origins: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["origin"].as_str().unwrap())
        .collect();
    assert_eq!(origins, ["set", "rotate", "rollback:1"], "{history}");
    assert_eq!(f.reveal("FAILING"), "failing-old-value");
    assert_eq!(f.entries("secret.rotate").len(), 3);

    f.assert_no_leak(&[&first, &second, &generated, "failing-old-value"]);
}

#[test]
fn rekey_with_the_key_file_refuses_the_old_key_afterwards() {
    let f = Fixture::new();
    f.set("PG_PASS", "pg-pass-REKEY-1");
    f.set("API_TOKEN", "api-token-REKEY-2");
    let old_key = std::fs::read_to_string(f.key_file()).unwrap();
    let old_key = old_key.trim();
    let get = ["secret", "get", "PG_PASS", "--reveal"];
    assert_eq!(
        f.reveal_with(&get, &[("WHARF_MASTER_KEY", old_key)]),
        "pg-pass-REKEY-1",
        "the key file's text works as WHARF_MASTER_KEY"
    );

    let rekeyed = f.ok(&["secret", "rekey"]);
    assert!(
        stderr(&rekeyed).contains("old key no longer works"),
        "{}",
        stderr(&rekeyed)
    );
    let new_key = std::fs::read_to_string(f.key_file()).unwrap();
    assert_ne!(new_key.trim(), old_key);
    assert!(!f.path().join(".wharf/rekey.tmp").exists());
    assert_eq!(f.reveal("PG_PASS"), "pg-pass-REKEY-1");
    assert_eq!(f.reveal("API_TOKEN"), "api-token-REKEY-2");

    let refused = f.run_with(&get, b"", &[("WHARF_MASTER_KEY", old_key)]);
    assert_ne!(refused.status.code(), Some(0));
    assert!(refused.stdout.is_empty());
    assert!(
        stderr(&refused).contains("master key does not open"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(f.entries("secret.rekey")[0]["details"]["secrets"], 2);

    // The old key file put back is refused too.
    std::fs::write(f.key_file(), format!("{old_key}\n")).unwrap();
    let refused = f.run(&get);
    assert_ne!(refused.status.code(), Some(0));
    assert!(stderr(&refused).contains("master key does not open"));
    f.assert_no_leak(&["pg-pass-REKEY-1", "api-token-REKEY-2"]);
}

#[test]
fn rekey_from_the_environment_prints_the_new_key_once() {
    let f = Fixture::new();
    let env = [("WHARF_MASTER_KEY", OTHER_KEY)];
    f.ok_with(&["secret", "set", "PG_PASS"], b"pg-pass-ENV-1", &env);
    assert!(
        !f.key_file().exists(),
        "an environment key is never written to disk"
    );
    let rekeyed = f.ok_with(&["secret", "rekey"], b"", &env);
    let new_key = String::from_utf8(rekeyed.stdout.clone()).unwrap();
    let new_key = new_key.trim();
    assert_eq!(new_key.len(), 64);
    assert!(
        stderr(&rekeyed).contains("WHARF_MASTER_KEY"),
        "{}",
        stderr(&rekeyed)
    );
    assert!(!f.key_file().exists());
    let get = ["secret", "get", "PG_PASS", "--reveal"];
    assert_eq!(
        f.reveal_with(&get, &[("WHARF_MASTER_KEY", new_key)]),
        "pg-pass-ENV-1"
    );
    let refused = f.run_with(&get, b"", &env);
    assert_ne!(refused.status.code(), Some(0));

    // A hook is found relative to the manifest and never sees the master key.
    let script = f.path().join("rotate.sh");
    let text = "#!/bin/sh\nprintf %s \"${WHARF_MASTER_KEY:-absent}\" > hook-key.txt\n";
    std::fs::write(&script, text).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(&script, mode).unwrap();
    let env = [("WHARF_MASTER_KEY", new_key)];
    f.ok_with(&["secret", "rotate", "SCRIPTED"], b"", &env);
    let seen = std::fs::read_to_string(f.path().join("hook-key.txt")).unwrap();
    assert_eq!(seen, "absent");
    f.assert_no_leak(&["pg-pass-ENV-1"]);
}

#[test]
fn a_wrong_master_key_is_a_clear_error_and_changes_nothing() {
    let f = Fixture::new();
    f.set("PG_PASS", "pg-pass-RIGHT-1");
    let entries = f.ledger().len();
    let wrong = [("WHARF_MASTER_KEY", OTHER_KEY)];
    let refused = f.run_with(&["secret", "set", "PG_PASS"], b"pg-pass-WRONG-2", &wrong);
    assert_ne!(refused.status.code(), Some(0));
    assert!(
        stderr(&refused).contains("master key does not open"),
        "{}",
        stderr(&refused)
    );
    let refused = f.run_with(&["secret", "rotate", "PG_PASS"], b"", &wrong);
    assert_ne!(refused.status.code(), Some(0));
    let malformed = [("WHARF_MASTER_KEY", "not-a-key")];
    let refused = f.run_with(&["secret", "get", "PG_PASS", "--reveal"], b"", &malformed);
    assert_ne!(refused.status.code(), Some(0));
    assert!(stderr(&refused).contains("64 hex"), "{}", stderr(&refused));
    assert!(
        !stderr(&refused).contains("not-a-key"),
        "the key text is never echoed"
    );

    assert_eq!(
        f.json(&["secret", "history", "PG_PASS"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(f.ledger().len(), entries, "nothing recorded");
    assert_eq!(f.reveal("PG_PASS"), "pg-pass-RIGHT-1");
    f.assert_no_leak(&["pg-pass-RIGHT-1", "pg-pass-WRONG-2"]);
}

#[test]
fn config_set_unset_history_diff_and_rollback() {
    let f = Fixture::new();
    let reason = ["--reason", "debugging a slow query"];
    let set = |args: &[&str]| {
        let mut all = vec!["config"];
        all.extend_from_slice(args);
        all.extend_from_slice(&reason);
        f.ok(&all)
    };
    set(&["set", "api", "LOG_LEVEL=debug", "WORKERS=4"]);
    set(&["set", "api", "LOG_LEVEL=info", "GREETING=a=b"]);
    set(&["unset", "api", "WORKERS"]);
    set(&["set", "worker", "QUEUE=jobs"]);

    for (args, why) in [
        (
            vec!["config", "set", "nope", "A=1", "--reason", "x"],
            "no service",
        ),
        (
            vec!["config", "set", "api", "1BAD=x", "--reason", "x"],
            "not a valid key",
        ),
        (
            vec!["config", "set", "api", "NOEQUALS", "--reason", "x"],
            "KEY=VALUE",
        ),
        (
            vec!["config", "unset", "api", "NEVER", "--reason", "x"],
            "not set for api",
        ),
        (
            vec!["config", "set", "api", "A=1", "--reason", " "],
            "--reason",
        ),
        (
            vec!["config", "diff", "1", "99"],
            "no configuration revision 99",
        ),
        (vec!["config", "diff", "1", "4"], "one service"),
    ] {
        let output = f.run(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&output).contains(why),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let missing_reason = f.run(&["config", "set", "api", "A=1"]);
    assert_eq!(missing_reason.status.code(), Some(2));

    let history = f.json(&["config", "history", "api"]);
    let revisions = history.as_array().unwrap();
    assert_eq!(revisions.len(), 3);
    assert_eq!(revisions[0]["changes"]["WORKERS"], "4");
    assert_eq!(revisions[2]["changes"]["WORKERS"], Value::Null);
    assert_eq!(revisions[2]["actor"], "tester");
    assert_eq!(f.json(&["config", "history"]).as_array().unwrap().len(), 4);

    let diff = String::from_utf8(f.ok(&["config", "diff", "1", "3"]).stdout).unwrap();
    for line in ["~ LOG_LEVEL: debug → info", "- WORKERS=4", "+ GREETING=a=b"] {
        assert!(diff.contains(line), "{line} in\n{diff}");
    }

    f.ok(&[
        "config",
        "rollback",
        "1",
        "--reason",
        "back to the known good",
    ]);
    let shown = f.json(&["config", "show", "api"]);
    assert_eq!(
        shown,
        serde_json::json!({"LOG_LEVEL": "debug", "WORKERS": "4"})
    );
    let again = f.ok(&["config", "rollback", "1", "--reason", "twice"]);
    assert!(
        stderr(&again).contains("nothing recorded"),
        "{}",
        stderr(&again)
    );

    let sets = f.entries("config.set");
    assert_eq!(sets.len(), 3);
    assert_eq!(sets[0]["target"], "api");
    assert_eq!(sets[0]["details"]["changes"]["LOG_LEVEL"], "debug");
    assert_eq!(sets[0]["details"]["reason"], "debugging a slow query");
    assert_eq!(f.entries("config.unset").len(), 1);
    let rollback = &f.entries("config.rollback")[0];
    assert_eq!(rollback["details"]["to"], 1);
    assert_eq!(rollback["details"]["changes"]["GREETING"], Value::Null);
}

/// The preflight's secret checks, by name.
fn secret_checks(f: &Fixture) -> Vec<Value> {
    let output = f.run(&["--output", "json", "preflight"]);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["category"] == "secret")
        .cloned()
        .collect()
}

fn check<'a>(checks: &'a [Value], secret: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| {
            c["name"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{secret} "))
        })
        .unwrap_or_else(|| panic!("no check of {secret} in {checks:?}"))
}

#[test]
fn preflight_checks_that_secrets_are_set_and_rotated_in_time() {
    let f = Fixture::new();
    let checks = secret_checks(&f);
    let pg = check(&checks, "PG_PASS");
    assert_eq!(pg["status"], "fail");
    assert!(pg["reason"].as_str().unwrap().contains("never set"), "{pg}");
    assert_eq!(
        check(&checks, "FAILING")["status"],
        "fail",
        "used, never set"
    );
    assert!(
        !checks
            .iter()
            .any(|c| c["name"].as_str().unwrap().starts_with("UNUSED")),
        "no policy and unused: no check"
    );
    assert!(!f.key_file().exists(), "preflight needs no master key");

    f.set("PG_PASS", "pg-pass-PREFLIGHT-1");
    f.set("API_TOKEN", "api-token-PREFLIGHT-2");
    f.set("STRIPE_KEY", "stripe-key-PREFLIGHT-3");
    f.set("FAILING", "failing-PREFLIGHT-4");
    // max_age 1s: due soon at once, overdue a second later — polled, not slept.
    let checks = eventually("overdue secrets", Duration::from_secs(20), || {
        let checks = secret_checks(&f);
        let overdue = |name: &str| {
            check(&checks, name)["reason"]
                .as_str()
                .is_some_and(|r| r.contains("OVERDUE"))
        };
        (overdue("STRIPE_KEY") && overdue("API_TOKEN")).then_some(checks)
    });
    assert_eq!(
        check(&checks, "STRIPE_KEY")["status"],
        "fail",
        "overdue: fail"
    );
    assert_eq!(
        check(&checks, "API_TOKEN")["status"],
        "warn",
        "overdue: warn"
    );
    let pg = check(&checks, "PG_PASS");
    assert_eq!(pg["status"], "pass");
    assert!(pg["reason"].as_str().unwrap().contains("due in"), "{pg}");
    assert_eq!(check(&checks, "FAILING")["status"], "pass");

    let list = f.json(&["secret", "list"]);
    let stripe = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "STRIPE_KEY")
        .unwrap()
        .clone();
    assert_eq!(stripe["rotation"]["status"], "overdue");
    f.assert_no_leak(&[
        "pg-pass-PREFLIGHT-1",
        "api-token-PREFLIGHT-2",
        "stripe-key-PREFLIGHT-3",
        "failing-PREFLIGHT-4",
    ]);
}
