//! Runbooks end to end: the real `wharf` binary, its control plane and proxy, testbed and shell
//! instances. A run that fails at a step resumes there once the cause is fixed (the steps
//! before it are not run again — the ledger shows each step's starts); an approval is recorded
//! with who and why; a dry run, a parameter of the wrong type, an exceeded blast radius or rate
//! limit change nothing (ledger and runs compared before and after) and exit 2.

mod common;

use std::process::Output;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `api` behind the proxy (a one-step canary, so a deploy and a rollback are quick) and a
/// `worker` that runs only while the file `fixed` exists beside the manifest.
fn manifest(port: u16, runbooks: &str) -> String {
    format!(
        r#"
name: books
services:
  api:
    version: "1.0"
    command: [TESTBED, --port, "${{PORT}}", --version, "${{VERSION}}"]
    port: {port}
    probes:
      ready: {{http: {{path: /ready}}, interval: 200ms}}
    rollout:
      strategy: canary
      steps: [{{weight: 100}}]
      analysis: {{min_requests: 0}}
      deadlines: {{drain: 1s}}
  worker:
    command: [sh, -c, "test -f fixed || exit 1; exec sleep 3600"]
runbooks:
{runbooks}
"#
    )
}

fn run_json(stack: &Stack, id: u64) -> Value {
    let output = stack.wharf(&["runbook", "status", &id.to_string(), "--output", "json"]);
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("runbook status: {}", text(&output)))
}

fn wait_state(stack: &Stack, id: u64, state: &str) -> Value {
    eventually(
        &format!("run {id} to be {state}"),
        Duration::from_secs(60),
        || {
            let run = run_json(stack, id);
            (run["state"] == state).then_some(run)
        },
    )
}

/// The `runbook.step_start` entries of run `target` for step `step`.
fn step_starts(ledger: &[Value], target: &str, step: u64) -> usize {
    actions(ledger, "runbook.step_start")
        .iter()
        .filter(|e| e["target"] == target && e["details"]["step"] == step)
        .count()
}

#[test]
fn a_run_failed_at_step_two_resumes_there_and_its_approval_is_recorded() {
    let port = free_port();
    let stack = Stack::new(&manifest(
        port,
        r#"  recover:
    description: roll api back, restart a service, confirm, wait for api
    params:
      svc: {type: service, default: api}
    steps:
      - rollback: {service: api}
      - restart: {service: "${param:svc}"}
        timeout: 6s
      - approve: {prompt: "Is ${param:svc} healthy?"}
      - wait_for: {service: api, state: ready, within: 30s}"#,
    ));
    std::fs::write(stack.path().join("fixed"), "").unwrap();
    let up = stack.up();
    assert!(up.status.success(), "{}", text(&up));
    // Traffic for the canary analysis of the deploy and of the runbook's rollback.
    let poller = Poller::start(port);
    let deploy = stack.wharf(&["deploy", "api", "--version", "2.0", "--watch"]);
    assert_eq!(deploy.status.code(), Some(0), "{}", text(&deploy));
    assert_eq!(stack.service("api")["version"], "2.0");

    // The cause: the worker cannot start any more, so restarting it fails.
    std::fs::remove_file(stack.path().join("fixed")).unwrap();
    let run = stack.wharf(&[
        "runbook",
        "run",
        "recover",
        "--param",
        "svc=worker",
        "--wait",
    ]);
    assert_eq!(run.status.code(), Some(1), "the run failed: {}", text(&run));
    let failed = run_json(&stack, 1);
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["current_step"], 2);
    assert_eq!(failed["steps"][0]["state"], "succeeded");
    assert_eq!(failed["steps"][1]["state"], "failed");
    assert!(
        failed["steps"][1]["result"]
            .as_str()
            .unwrap()
            .contains("restart of worker did not finish"),
        "{failed}"
    );
    assert_eq!(failed["steps"][2]["state"], "pending");
    assert_eq!(stack.service("api")["version"], "1.0", "step 1 rolled back");

    // The cause fixed, the run resumes at step 2 and stops at the approval.
    std::fs::write(stack.path().join("fixed"), "").unwrap();
    let resume = stack.wharf(&["runbook", "resume", "1"]);
    assert_eq!(resume.status.code(), Some(0), "{}", text(&resume));
    let waiting = wait_state(&stack, 1, "waiting_approval");
    assert_eq!(waiting["current_step"], 3);
    assert_eq!(waiting["steps"][1]["state"], "succeeded");
    assert_eq!(waiting["steps"][1]["attempts"], 2);

    let refused = stack.wharf(&["runbook", "approve", "1", "--reason", " "]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    let approve = stack.wharf(&["runbook", "approve", "1", "--reason", "worker is back"]);
    assert_eq!(approve.status.code(), Some(0), "{}", text(&approve));
    let done = wait_state(&stack, 1, "succeeded");
    assert_eq!(done["steps"][2]["approval"]["actor"], socket_actor());
    assert_eq!(done["steps"][2]["approval"]["reason"], "worker is back");
    assert_eq!(done["steps"][3]["state"], "succeeded");

    let ledger = stack.ledger();
    let target = "recover#1";
    assert_eq!(step_starts(&ledger, target, 1), 1, "step 1 ran once");
    assert_eq!(step_starts(&ledger, target, 2), 2, "step 2 ran twice");
    assert_eq!(step_starts(&ledger, target, 3), 1);
    assert_eq!(step_starts(&ledger, target, 4), 1);
    let approvals = actions(&ledger, "runbook.approve");
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0]["actor"], socket_actor());
    assert_eq!(approvals[0]["details"]["reason"], "worker is back");
    for action in [
        "runbook.start",
        "runbook.failed",
        "runbook.resume",
        "runbook.succeeded",
    ] {
        assert_eq!(actions(&ledger, action).len(), 1, "{action}");
    }
    let ends = actions(&ledger, "runbook.step_end");
    assert_eq!(ends.len(), 5, "four steps, one of them twice");
    assert!(ends.iter().all(|e| e["actor"] == socket_actor().as_str()));
    let verify = stack.wharf(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", text(&verify));
    let (answered, _) = poller.finish();
    assert!(answered > 0);
}

#[test]
fn dry_runs_and_refused_runs_change_nothing() {
    let port = free_port();
    let stack = Stack::new(&manifest(
        port,
        r#"  fix:
    params:
      count: {type: int, default: 1}
      svc: {type: service, default: worker}
    rate_limit: {runs: 1, per: 1h}
    blast_radius: {services: 1, instances: 1}
    steps:
      - restart: {service: "${param:svc}"}
      - exec: {command: "sh -c 'echo count=${param:count}; exit 0'", timeout: 10s}
  wide:
    blast_radius: {services: 1}
    steps:
      - restart: {service: api}
      - restart: {service: worker}"#,
    ));
    std::fs::write(stack.path().join("fixed"), "").unwrap();
    let up = stack.up();
    assert!(up.status.success(), "{}", text(&up));
    let pids = stack.pids();
    let before = stack.ledger().len();

    let dry = stack.wharf(&["runbook", "run", "fix", "--param", "count=7", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    let plan = String::from_utf8_lossy(&dry.stdout);
    assert!(plan.contains("1. restart worker"), "{plan}");
    assert!(plan.contains("echo count=7"), "{plan}");
    assert!(plan.contains("blast radius: ok"), "{plan}");
    assert!(
        plan.contains("rate limit: ok — 0 of at most 1 runs"),
        "{plan}"
    );
    let wide_dry = stack.wharf(&["runbook", "run", "wide", "--dry-run", "--output", "json"]);
    assert_eq!(wide_dry.status.code(), Some(2), "{}", text(&wide_dry));
    let wide_plan: Value = serde_json::from_slice(&wide_dry.stdout).unwrap();
    assert_eq!(wide_plan["blast_radius"]["ok"], false);

    let refusals: [(&[&str], &str); 4] = [
        (
            &["runbook", "run", "fix", "--param", "count=many"],
            "parameter `count` of runbook `fix` is of type `int`: `many` is not an integer",
        ),
        (
            &["runbook", "run", "fix", "--param", "svc=nope"],
            "`nope` is not a service of the stack",
        ),
        (
            &["runbook", "run", "wide"],
            "would touch 2 services (api, worker) where at most 1 may be touched",
        ),
        (
            &["runbook", "run", "nothing"],
            "the manifest has no runbook `nothing`",
        ),
    ];
    for (args, message) in refusals {
        let output = stack.wharf(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", text(&output));
        assert!(
            text(&output).contains(message),
            "{args:?}: {}",
            text(&output)
        );
    }
    let runs = stack.wharf(&["runbook", "runs", "--output", "json"]);
    let runs: Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(runs["runs"].as_array().unwrap().len(), 0, "no run stored");
    assert_eq!(stack.ledger().len(), before, "no ledger entry");
    assert_eq!(stack.pids(), pids, "nothing restarted");

    // One run is allowed per hour; the second is refused, and its exec output is recorded.
    let first = stack.wharf(&["runbook", "run", "fix", "--param", "count=3", "--wait"]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let run = run_json(&stack, 1);
    assert_eq!(run["state"], "succeeded");
    assert_eq!(run["steps"][1]["output"], "count=3\n");
    let after_first = stack.ledger().len();
    let second = stack.wharf(&["runbook", "run", "fix"]);
    assert_eq!(second.status.code(), Some(2), "{}", text(&second));
    assert!(
        text(&second).contains("rate limited: 1 of at most 1 runs in the last 1h"),
        "{}",
        text(&second)
    );
    assert_eq!(stack.ledger().len(), after_first);
    let dry_limited = stack.wharf(&["runbook", "run", "fix", "--dry-run"]);
    assert_eq!(dry_limited.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&dry_limited.stdout).contains("rate limit: REFUSED"));
}

#[test]
fn a_run_left_mid_step_by_a_stopped_control_plane_is_failed_and_resumable() {
    let port = free_port();
    let stack = Stack::new(&manifest(
        port,
        r#"  slow:
    steps:
      - exec: {command: "sh -c 'test -f go || sleep 30'", timeout: 60s}
      - exec: {command: "echo done", timeout: 10s}
  gate:
    steps:
      - approve: {prompt: "go?"}
      - exec: {command: "echo through", timeout: 10s}"#,
    ));
    std::fs::write(stack.path().join("fixed"), "").unwrap();
    let up = stack.up();
    assert!(up.status.success(), "{}", text(&up));
    let run = stack.wharf(&["runbook", "run", "slow"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    wait_state(&stack, 1, "running");
    let gate = stack.wharf(&["runbook", "run", "gate"]);
    assert_eq!(gate.status.code(), Some(0), "{}", text(&gate));
    wait_state(&stack, 2, "waiting_approval");
    // Each run's row is saved with its `runbook.step_start` entry: once both are in the
    // ledger, both rows are on disk.
    eventually("both steps recorded", Duration::from_secs(10), || {
        let ledger = stack.ledger();
        (step_starts(&ledger, "slow#1", 1) == 1 && step_starts(&ledger, "gate#2", 1) == 1)
            .then_some(())
    });
    // The control plane goes away mid-step; the stack keeps running and a new one adopts it.
    let pid = stack.control_pid().expect("a control plane runs");
    kill9(i64::from(pid));
    eventually(
        "the control plane to be gone",
        Duration::from_secs(10),
        || (!alive(i64::from(pid))).then_some(()),
    );
    let up = stack.up();
    assert!(up.status.success(), "{}", text(&up));
    let failed = run_json(&stack, 1);
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(failed["steps"][0]["state"], "failed");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("control plane stopped"),
        "{failed}"
    );
    std::fs::write(stack.path().join("go"), "").unwrap();
    let resume = stack.wharf(&["runbook", "resume", "1", "--wait"]);
    assert_eq!(resume.status.code(), Some(0), "{}", text(&resume));
    let done = run_json(&stack, 1);
    assert_eq!(done["state"], "succeeded");
    assert_eq!(done["steps"][1]["output"], "done\n");

    // A run that waited for approval still waits, and goes on once approved.
    assert_eq!(run_json(&stack, 2)["state"], "waiting_approval");
    let approve = stack.wharf(&["runbook", "approve", "2", "--reason", "after the restart"]);
    assert_eq!(approve.status.code(), Some(0), "{}", text(&approve));
    let through = wait_state(&stack, 2, "succeeded");
    assert_eq!(through["steps"][1]["output"], "through\n");
}

#[test]
fn runbook_mistakes_in_the_manifest_are_refused_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("wharf.yaml"),
        r#"name: books
services:
  api:
    command: ["./api"]
runbooks:
  fix:
    params:
      n: {type: int}
    steps:
      - restrat: {service: api}
      - exec: {command: "echo ${param:m}", timeout: 5s}
      - scale: {service: api, replicas: 2}
"#,
    )
    .unwrap();
    let output = std::process::Command::new(wharf_bin())
        .args(["validate"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let printed = text(&output);
    for expected in [
        "unknown step action `restrat` in runbook `fix` step 1",
        "wharf.yaml:10:9",
        "did you mean `restart`?",
        "runbook `fix` uses parameter `m`, which it does not declare",
        "wharf.yaml:11:31",
        "the `scale` step is not built yet",
    ] {
        assert!(printed.contains(expected), "{expected}: {printed}");
    }
    assert!(!dir.path().join(".wharf").exists(), "nothing written");
}

#[test]
fn drill_and_restore_steps_run_real_backup_jobs() {
    let web_port = free_port();
    let stack = Stack::new(&format!(
        r#"
name: books
services:
  db:
    kind: sqlite
    path: ./app.db
    backup: {{schedule: "0 3 * * *", retain: {{last: 3}}}}
  web:
    command: [TESTBED, --port, "${{PORT}}", --version, "${{VERSION}}"]
    version: "1"
    port: {web_port}
    depends_on: {{db: {{condition: started}}}}
runbooks:
  restore-db:
    blast_radius: {{services: 2}}
    steps:
      - drill: {{service: db}}
      - restore: {{service: db}}
      - wait_for: {{service: web, state: ready, within: 30s}}
"#
    ));
    let db = stack.path().join("app.db");
    let connection = rusqlite::Connection::open(&db).unwrap();
    let add = |rows: i64| {
        for id in 0..rows {
            connection
                .execute(
                    "INSERT INTO items (name) VALUES (?1)",
                    [format!("item {id}")],
                )
                .unwrap();
        }
    };
    let count = || -> i64 {
        connection
            .query_row("SELECT count(*) FROM items", [], |r| r.get(0))
            .unwrap()
    };
    connection
        .execute_batch("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
        .unwrap();
    add(200);
    let up = stack.up();
    assert!(up.status.success(), "{}", text(&up));
    let backup = stack.wharf(&["backup", "run", "db"]);
    assert!(backup.status.success(), "{}", text(&backup));
    add(50);
    assert_eq!(count(), 250);

    let dry = stack.wharf(&["runbook", "run", "restore-db", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    assert!(
        String::from_utf8_lossy(&dry.stdout).contains("[touches db, web"),
        "{}",
        text(&dry)
    );
    assert_eq!(count(), 250, "a dry run restores nothing");

    let run = stack.wharf(&["runbook", "run", "restore-db", "--wait"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let done = run_json(&stack, 1);
    assert_eq!(done["state"], "succeeded", "{done}");
    assert!(
        done["steps"][0]["result"]
            .as_str()
            .unwrap()
            .starts_with("drill of db succeeded"),
        "{done}"
    );
    assert_eq!(count(), 200, "the restore brought the backup back");
    let ledger = stack.ledger();
    assert_eq!(actions(&ledger, "backup.drill").len(), 1);
    assert_eq!(actions(&ledger, "backup.restore").len(), 1);
}

#[test]
fn a_secret_rotate_step_stores_a_new_version_and_restarts_its_users() {
    let stack = Stack::new(
        r#"
name: books
secrets:
  TOKEN: {description: "rotated by the runbook"}
services:
  user:
    command: [sh, -c, "exec sleep 3600"]
    secrets: [TOKEN]
runbooks:
  rotate-token:
    steps:
      - secret.rotate: {secret: TOKEN}
      - wait_for: {service: user, state: running, within: 30s}
"#,
    );
    stack.set_secret("TOKEN", "first-value-of-the-token");
    let up = stack.up();
    assert!(up.status.success(), "{}", text(&up));
    let pids = stack.pids();
    let run = stack.wharf(&["runbook", "run", "rotate-token", "--wait"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let done = run_json(&stack, 1);
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(
        done["steps"][0]["result"],
        "TOKEN is now version 2; restarting: user"
    );
    let ledger = stack.ledger();
    let rotations = actions(&ledger, "secret.rotate");
    assert_eq!(rotations.len(), 1);
    assert_eq!(rotations[0]["actor"], socket_actor());
    assert_eq!(rotations[0]["details"]["reason"], "runbook run 1 step 1");
    eventually("the user restarted", Duration::from_secs(30), || {
        let now = stack.pids();
        (!now.is_empty() && now != pids).then_some(())
    });
    assert!(
        !serde_json::to_string(&ledger)
            .unwrap()
            .contains("first-value")
    );
}
