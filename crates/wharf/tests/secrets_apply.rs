//! Secrets and config reaching running services: injection as environment and files, rotation
//! applied by a rolling restart through the proxy, a real PostgreSQL password rotated by a
//! hook, config overrides with history and rollback — and no secret value anywhere it should
//! not be (outputs, logs, ledger, API answers, the state directory, argv).

mod common;
#[path = "../../probe/tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;
use support::postgres::{PASSWORD, Postgres, USER};
use wharf_testbed::load::{self, LoadPlan};

/// Everything a scenario printed or answered, to search for values that must not be there.
#[derive(Default)]
struct Transcript(Vec<u8>);

impl Transcript {
    fn add(&mut self, output: &Output) {
        self.0.extend_from_slice(&output.stdout);
        self.0.extend_from_slice(&output.stderr);
    }

    fn run(&mut self, stack: &Stack, args: &[&str]) -> Output {
        let output = stack.wharf(args);
        self.add(&output);
        output
    }

    /// Every file under `dir` (logs, the database and its WAL, the proxy's table, keys…).
    fn add_tree(&mut self, dir: &Path) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                self.add_tree(&path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                self.0.extend_from_slice(&bytes);
            }
        }
    }

    /// The ledger as `audit log` prints it and every file of the state dir, then the check.
    fn finish(mut self, stack: &Stack, values: &[&str]) {
        self.run(stack, &["audit", "log", "--output", "json"]);
        self.add_tree(&stack.path().join(".wharf"));
        self.assert_clean(values);
    }

    fn assert_clean(&self, values: &[&str]) {
        for value in values {
            let found = self
                .0
                .windows(value.len())
                .any(|window| window == value.as_bytes());
            assert!(
                !found,
                "a secret value leaked ({} bytes searched)",
                self.0.len()
            );
        }
    }
}

/// `wharf secret set NAME` with the value on stdin (never argv).
fn set_secret(stack: &Stack, transcript: &mut Transcript, name: &str, value: &str) {
    let mut child = Command::new(wharf_bin())
        .args(["secret", "set", name, "--reason", "test"])
        .current_dir(stack.path())
        .env("NO_COLOR", "1")
        .env("WHARF_ACTOR", "tester")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{value}\n").as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    transcript.add(&output);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn reveal(stack: &Stack, name: &str) -> String {
    let output = stack.wharf(&["secret", "get", name, "--reveal"]);
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .unwrap()
        .trim_end()
        .to_owned()
}

fn environ(pid: i64) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

fn env_of(pid: i64, key: &str) -> Option<String> {
    environ(pid)
        .into_iter()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_owned))
}

fn service_pids(stack: &Stack, service: &str) -> Vec<i64> {
    stack.service(service)["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["phase"] == "running" && i["ready"] == true)
        .filter_map(|i| i["pid"].as_i64())
        .collect()
}

#[test]
fn secrets_reach_instances_as_env_and_files_and_never_rest_in_plaintext() {
    let port = free_port();
    let stack = Stack::new(&format!(
        r#"
name: vault
secrets:
  API_TOKEN: {{description: token}}
  TLS_KEY: {{}}
  DB_PASS: {{}}
services:
  web:
    command: [TESTBED, --port, "${{PORT}}"]
    port: {port}
    env:
      DB_URL: "postgres://app:${{secret:DB_PASS}}@127.0.0.1:1/app"
    secrets: [API_TOKEN]
    secret_files: [TLS_KEY]
"#
    ));
    let values = ["tok-5e1f0a9b7c3d", "key-84c2b1d0e9f7", "pw-3a7e9d1c5b2f"];
    let mut transcript = Transcript::default();
    for (name, value) in ["API_TOKEN", "TLS_KEY", "DB_PASS"].iter().zip(values) {
        set_secret(&stack, &mut transcript, name, value);
    }
    let output = stack.up();
    transcript.add(&output);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let pid = stack.pids()[0];
    assert_eq!(env_of(pid, "API_TOKEN").as_deref(), Some(values[0]));
    assert_eq!(
        env_of(pid, "DB_URL").as_deref(),
        Some("postgres://app:pw-3a7e9d1c5b2f@127.0.0.1:1/app")
    );
    let dir = env_of(pid, "WHARF_SECRETS_DIR").expect("the secret files' directory");
    let file = Path::new(&dir).join("TLS_KEY");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), values[1]);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o400
    );
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert!(
        !dir.starts_with(&stack.path().display().to_string()),
        "outside the state dir"
    );
    // No process on the machine carries a value in its argv (the shim got the spec on stdin).
    let mut argv = Transcript::default();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            argv.0.extend_from_slice(&cmdline);
        }
    }
    argv.assert_clean(&values);
    for args in [
        &["status", "--output", "json"][..],
        &["status"],
        &["secret", "list"],
        &["secret", "list", "--output", "json"],
        &["secret", "history", "API_TOKEN"],
        &["render"],
        &["logs", "web"],
        &["audit", "log", "--output", "json"],
        &["preflight", "--output", "json"],
    ] {
        transcript.run(&stack, args);
    }
    let output = transcript.run(&stack, &["down"]);
    assert!(output.status.success());
    assert!(
        !Path::new(&dir).exists(),
        "secret files removed when the instance stops"
    );
    transcript.add_tree(stack.path());
    transcript.assert_clean(&values);
}

#[test]
fn a_wrong_master_key_is_a_clear_error_and_starts_nothing() {
    let stack = Stack::new(
        r#"
name: locked
secrets:
  TOKEN: {}
services:
  web:
    command: [TESTBED, --port, "${PORT}"]
    secrets: [TOKEN]
"#,
    );
    let mut transcript = Transcript::default();
    set_secret(&stack, &mut transcript, "TOKEN", "value-0c9d8e7f6a5b");
    let wrong = "00".repeat(32);
    let output = Command::new(wharf_bin())
        .args(["up", "-d"])
        .current_dir(stack.path())
        .env(wharf_secrets::MASTER_KEY_ENV, &wrong)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("master key"), "{stderr}");
    assert!(stack.control_pid().is_none_or(|pid| !alive(i64::from(pid))));
    assert!(stack.ledger().iter().all(|e| e["action"] != "stack.up"));
}

#[test]
fn rotating_a_secret_restarts_the_service_rolling_with_no_failed_request() {
    let port = free_port();
    let stack = Stack::new(&format!(
        r#"
name: rotate
secrets:
  TOKEN: {{max_age: 90d, generate: {{length: 24, alphabet: hex}}}}
services:
  api:
    command: [TESTBED, --port, "${{PORT}}"]
    port: {port}
    replicas: 2
    secrets: [TOKEN]
    probes:
      ready: {{http: {{path: /ready}}, interval: 200ms}}
"#
    ));
    let mut transcript = Transcript::default();
    let first = "first-token-7b6a5c4d3e2f";
    set_secret(&stack, &mut transcript, "TOKEN", first);
    assert!(stack.up().status.success());
    let before = service_pids(&stack, "api");
    assert!(
        before
            .iter()
            .all(|pid| env_of(*pid, "TOKEN").as_deref() == Some(first))
    );
    let mut plan = LoadPlan::new(format!("http://127.0.0.1:{port}/"), 100.0);
    plan.max_duration = Duration::from_secs(60);
    let run = load::start(plan).unwrap();
    eventually("traffic", Duration::from_secs(20), || {
        (run.snapshot().ok() > 50).then_some(())
    });
    let output = transcript.run(
        &stack,
        &["secret", "rotate", "TOKEN", "--reason", "quarterly"],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let second = reveal(&stack, "TOKEN");
    assert_ne!(second, first);
    assert_eq!(second.len(), 24);
    eventually(
        "every instance runs with the new token",
        Duration::from_secs(30),
        || {
            let pids = service_pids(&stack, "api");
            (pids.len() == 2
                && pids.iter().all(|pid| !before.contains(pid))
                && pids
                    .iter()
                    .all(|pid| env_of(*pid, "TOKEN").as_deref() == Some(second.as_str())))
            .then_some(())
        },
    );
    let answered = run.snapshot().total();
    eventually("traffic after the restart", Duration::from_secs(10), || {
        (run.snapshot().total() > answered + 50).then_some(())
    });
    let report = run.stop();
    assert_eq!(report.failures(), 0, "{:?}", report.errors());
    let ledger = stack.ledger();
    let rotated = &actions(&ledger, "secret.rotate")[0];
    assert!(rotated["details"]["fingerprint"].is_string());
    // Begun over the API (the value stored first), then finished: pending, then rotate.
    assert!(
        seq_of(&ledger, "secret.rotate_pending", "TOKEN")
            < seq_of(&ledger, "secret.rotate", "TOKEN")
    );
    assert_eq!(
        rotated["details"]["hook"], false,
        "the manifest declares no hook"
    );
    let restart = &actions(&ledger, "service.restart")[0];
    assert_eq!(restart["details"]["mode"], "rolling");
    transcript.finish(&stack, &[first, second.as_str()]);
}

/// With a control plane running, the CLI runs the hook between begin and finish: a failing
/// hook's rotation is finished as failed, which puts the old value back, and nothing restarts.
#[test]
fn a_failing_hook_with_a_control_plane_running_leaves_the_old_value_in_force() {
    let stack = Stack::new(
        r#"
name: rotfail
secrets:
  TOKEN:
    rotate_command: [sh, -c, 'echo "refused $$WHARF_SECRET_NAME" >&2; exit 3']
services:
  api:
    command: [TESTBED, --port, "${PORT}"]
    secrets: [TOKEN]
"#,
    );
    let mut transcript = Transcript::default();
    let first = "first-token-5d4c3b2a1f0e";
    set_secret(&stack, &mut transcript, "TOKEN", first);
    assert!(stack.up().status.success());
    let before = stack.pids();
    let output = transcript.run(&stack, &["secret", "rotate", "TOKEN"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refused TOKEN"), "{stderr}");
    assert!(
        stderr.contains("the value in force is unchanged"),
        "{stderr}"
    );
    assert_eq!(reveal(&stack, "TOKEN"), first);
    let ledger = stack.ledger();
    let pending = seq_of(&ledger, "secret.rotate_pending", "TOKEN");
    let failed = seq_of(&ledger, "secret.rotate_failed", "TOKEN");
    assert!(pending < failed);
    assert!(actions(&ledger, "secret.rotate").is_empty());
    let details = &actions(&ledger, "secret.rotate_failed")[0]["details"];
    assert_eq!(details["failed_version"], 2);
    assert_eq!(details["reason"], "exit status: 3");
    let history = stack.wharf(&["secret", "history", "TOKEN", "--output", "json"]);
    let history: Value = serde_json::from_slice(&history.stdout).unwrap();
    let origins: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["origin"].as_str().unwrap())
        .collect();
    assert_eq!(origins, ["set", "rotate", "rollback:1"]);
    // The restored value has the old fingerprint: the running instance needs no restart.
    assert_eq!(stack.pids(), before);
    transcript.finish(&stack, &[first]);
}

#[test]
fn config_overrides_apply_rolling_and_roll_back() {
    let port = free_port();
    let stack = Stack::new(&format!(
        r#"
name: tune
services:
  web:
    command: [TESTBED, --port, "${{PORT}}"]
    port: {port}
    env: {{GREETING: hello}}
    probes:
      ready: {{http: {{path: /ready}}, interval: 200ms}}
"#
    ));
    assert!(stack.up().status.success());
    let first = service_pids(&stack, "web");
    assert_eq!(env_of(first[0], "GREETING").as_deref(), Some("hello"));
    let output = stack.wharf(&[
        "config",
        "set",
        "web",
        "GREETING=bonjour",
        "LEVEL=debug",
        "--reason",
        "try french",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let changed = eventually("the override applied", Duration::from_secs(30), || {
        let pids = service_pids(&stack, "web");
        (pids.len() == 1
            && pids != first
            && env_of(pids[0], "GREETING").as_deref() == Some("bonjour"))
        .then_some(pids)
    });
    assert_eq!(env_of(changed[0], "LEVEL").as_deref(), Some("debug"));
    let history = stack.wharf(&["config", "history", "web", "--output", "json"]);
    let history: Value = serde_json::from_slice(&history.stdout).unwrap();
    let revisions = history.as_array().unwrap();
    assert_eq!(revisions.len(), 1);
    assert_eq!(revisions[0]["reason"], "try french");
    let revision = revisions[0]["revision"].as_u64().unwrap().to_string();
    let output = stack.wharf(&["config", "unset", "web", "LEVEL", "--reason", "quiet"]);
    assert!(output.status.success());
    let diff = stack.wharf(&[
        "config",
        "diff",
        &revision,
        &(revision.parse::<u64>().unwrap() + 1).to_string(),
    ]);
    assert!(
        String::from_utf8_lossy(&diff.stdout).contains("LEVEL"),
        "{}",
        String::from_utf8_lossy(&diff.stdout)
    );
    eventually("the unset applied", Duration::from_secs(30), || {
        let pids = service_pids(&stack, "web");
        (pids.len() == 1
            && env_of(pids[0], "LEVEL").is_none()
            && env_of(pids[0], "GREETING").as_deref() == Some("bonjour"))
        .then_some(())
    });
    // Back to the first revision: LEVEL returns, through another rolling restart.
    let output = stack.wharf(&["config", "rollback", &revision, "--reason", "undo"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eventually("the rollback applied", Duration::from_secs(30), || {
        let pids = service_pids(&stack, "web");
        (pids.len() == 1 && env_of(pids[0], "LEVEL").as_deref() == Some("debug")).then_some(())
    });
    let ledger = stack.ledger();
    for action in ["config.set", "config.unset", "config.rollback"] {
        assert_eq!(actions(&ledger, action).len(), 1, "{action} recorded");
    }
    assert!(
        actions(&ledger, "service.restart").len() >= 3,
        "each change applied rolling"
    );
}

fn sql(url: &str, statement: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let words = |e: tokio_postgres::Error| {
            e.as_db_error()
                .map_or_else(|| e.to_string(), |db| db.message().to_owned())
        };
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(words)?;
        tokio::spawn(connection);
        client.batch_execute(statement).await.map_err(words)
    })
}

#[test]
fn a_postgres_password_rotated_by_its_hook_is_used_after_the_rolling_restart() {
    let pg = Postgres::start();
    let admin = pg.url(USER, PASSWORD, "postgres");
    let old = "old-pass-1f2e3d4c5b6a";
    sql(&admin, &format!("CREATE ROLE app LOGIN PASSWORD '{old}'")).unwrap();
    let app_url = |password: &str| pg.url("app", password, "postgres");
    assert!(sql(&app_url(old), "SELECT 1").is_ok());
    let port = free_port();
    // The hook gets the new value in its environment and pipes the statement to psql on
    // stdin: the password never appears in an argv. (`$$` keeps the manifest's own `${VAR}`
    // interpolation away from the hook's shell variables.)
    let stack = Stack::new(&format!(
        r#"
name: pg
secrets:
  APP_DB_PASSWORD:
    max_age: 30d
    generate: {{length: 32, alphabet: alnum}}
    rotate_command: [sh, -c, "printf \"ALTER ROLE app PASSWORD '%s';\" \"$$WHARF_SECRET_NEW\" | psql -v ON_ERROR_STOP=1 -q \"$$ADMIN_URL\""]
services:
  api:
    command: [TESTBED, --port, "${{PORT}}"]
    port: {port}
    env:
      DATABASE_URL: "postgres://app:${{secret:APP_DB_PASSWORD}}@127.0.0.1:{pg_port}/postgres"
    probes:
      ready: {{http: {{path: /ready}}, interval: 300ms, failure_threshold: 20}}
"#,
        pg_port = pg.port
    ));
    let mut transcript = Transcript::default();
    set_secret(&stack, &mut transcript, "APP_DB_PASSWORD", old);
    assert!(stack.up().status.success());
    assert_eq!(
        stack.service("api")["state"],
        "running",
        "ready: logged in with the first password"
    );
    let before = service_pids(&stack, "api");
    let output = Command::new(wharf_bin())
        .args(["secret", "rotate", "APP_DB_PASSWORD", "--reason", "drill"])
        .current_dir(stack.path())
        .env("ADMIN_URL", &admin)
        .output()
        .unwrap();
    transcript.add(&output);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let new = reveal(&stack, "APP_DB_PASSWORD");
    assert_ne!(new, old);
    eventually(
        "the service reconnected with the new password",
        Duration::from_secs(30),
        || {
            let pids = service_pids(&stack, "api");
            (pids.len() == 1 && pids != before).then_some(())
        },
    );
    assert!(
        sql(&app_url(&new), "SELECT 1").is_ok(),
        "the new password logs in"
    );
    let refused = sql(&app_url(old), "SELECT 1").unwrap_err();
    assert!(
        refused.contains("password") || refused.contains("authentication"),
        "{refused}"
    );
    transcript.run(&stack, &["logs", "api"]);
    transcript.finish(&stack, &[old, new.as_str()]);
}

#[test]
fn a_service_that_reloads_by_signal_gets_new_secret_files_and_sighup_not_a_restart() {
    let port = free_port();
    let stack = Stack::new(&format!(
        r#"
name: hup
secrets:
  CERT: {{generate: {{length: 40, alphabet: hex}}}}
services:
  web:
    command: [TESTBED, --port, "${{PORT}}"]
    port: {port}
    reload: signal
    secret_files: [CERT]
"#
    ));
    let mut transcript = Transcript::default();
    let first = "cert-one-0a1b2c3d4e5f";
    set_secret(&stack, &mut transcript, "CERT", first);
    assert!(stack.up().status.success());
    let pid = stack.pids()[0];
    let dir = env_of(pid, "WHARF_SECRETS_DIR").unwrap();
    let file = Path::new(&dir).join("CERT");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), first);
    let output = transcript.run(&stack, &["secret", "rotate", "CERT"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let second = reveal(&stack, "CERT");
    eventually(
        "the file rewritten and the instance signalled",
        Duration::from_secs(20),
        || {
            let stats = get(port, "/stats")?.1;
            let stats: Value = serde_json::from_str(&stats).ok()?;
            (stats["reloads"] == 1 && std::fs::read_to_string(&file).ok()? == second).then_some(())
        },
    );
    assert_eq!(stack.pids(), [pid], "reloaded in place, not restarted");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o400
    );
    assert_eq!(actions(&stack.ledger(), "service.reload").len(), 1);
    transcript.finish(&stack, &[first, second.as_str()]);
}

#[test]
fn an_external_database_is_probed_with_the_url_in_its_secret() {
    let pg = Postgres::start();
    let url = pg.url(USER, PASSWORD, "postgres");
    let stack = Stack::new(
        r#"
name: ext
secrets:
  PG_URL: {}
services:
  db:
    kind: postgres
    url: ${secret:PG_URL}
    probes:
      ready: {postgres: {}, interval: 200ms}
"#,
    );
    let mut transcript = Transcript::default();
    set_secret(&stack, &mut transcript, "PG_URL", &url);
    let output = stack.up();
    transcript.add(&output);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let readiness = |action: &str| {
        actions(&stack.ledger(), action)
            .iter()
            .any(|e| e["target"] == "db")
            .then_some(())
    };
    eventually("the database probed ready", Duration::from_secs(20), || {
        readiness("service.ready")
    });
    transcript.run(&stack, &["status", "--output", "json"]);
    // Preflight passes only if the database answered the probe (logged in with the URL).
    let preflight = transcript.run(&stack, &["preflight", "--output", "json"]);
    assert_eq!(
        preflight.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&preflight.stdout)
    );
    transcript.run(&stack, &["render"]);
    // A new URL (a wrong password here) reaches the probe at once.
    let wrong = pg.url(USER, "not-the-password-4d3c", "postgres");
    set_secret(&stack, &mut transcript, "PG_URL", &wrong);
    eventually(
        "the database probed with the new URL",
        Duration::from_secs(20),
        || readiness("service.unready"),
    );
    transcript.run(&stack, &["status", "--output", "json"]);
    transcript.run(&stack, &["down"]);
    transcript.finish(&stack, &[PASSWORD, url.as_str(), "not-the-password-4d3c"]);
}

#[test]
fn a_manifest_that_starts_using_secrets_unlocks_them_at_reload_and_restarts_the_service() {
    // The control plane starts without the master key (no service uses a secret yet); the
    // changed manifest needs it: the reload's task unlocks the secrets (the loop never reads
    // the key file or writes the store) and the service restarts with the value.
    let manifest = |uses: &str| {
        format!(
            r#"
name: unlock
secrets:
  TOKEN: {{}}
services:
  web:
    command: [TESTBED, --port, "${{PORT}}"]
{uses}"#
        )
    };
    let stack = Stack::new(&manifest(""));
    let mut transcript = Transcript::default();
    set_secret(&stack, &mut transcript, "TOKEN", "tok-0c9d8e7f6a5b");
    let output = transcript.run(&stack, &["up", "-d", "--wait-timeout", "60s"]);
    assert!(output.status.success());
    let before = stack.pids();
    assert_eq!(env_of(before[0], "TOKEN"), None);
    let text =
        manifest("    secrets: [TOKEN]\n").replace("TESTBED", &testbed_bin().display().to_string());
    std::fs::write(stack.path().join("wharf.yaml"), text).unwrap();
    let output = transcript.run(&stack, &["up", "-d", "--wait-timeout", "60s"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(said.contains("restarting (rolling): web"), "{said}");
    let pid = eventually(
        "web restarted with the secret",
        Duration::from_secs(30),
        || {
            service_pids(&stack, "web")
                .into_iter()
                .find(|pid| !before.contains(pid) && env_of(*pid, "TOKEN").is_some())
        },
    );
    assert_eq!(env_of(pid, "TOKEN").as_deref(), Some("tok-0c9d8e7f6a5b"));
    let entries = stack.ledger();
    assert!(!actions(&entries, "stack.reload").is_empty());
    transcript.run(&stack, &["down"]);
    transcript.finish(&stack, &["tok-0c9d8e7f6a5b"]);
}
