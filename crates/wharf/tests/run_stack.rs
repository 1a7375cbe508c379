//! Running a stack end to end: the real `wharf` and `wharf-testbed` binaries, real processes,
//! real sockets, each test in its own temp dir with its own free ports.

mod common;

use std::io::Read;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn shop(db_port: u16, api_replicas: u32) -> String {
    format!(
        r#"
name: shop
services:
  db:
    version: "15"
    command: [TESTBED, --port, "${{PORT}}", --version, "${{VERSION}}", --slow-start, 400ms]
    port: {db_port}
    probes:
      ready: {{http: {{path: /ready}}, interval: 200ms, timeout: 500ms}}
  api:
    version: "1.0"
    command: [TESTBED, --port, "${{PORT}}", --version, "${{VERSION}}", --depends-on, "http://127.0.0.1:{db_port}/ready"]
    replicas: {api_replicas}
    depends_on:
      db: {{condition: ready}}
    probes:
      ready: {{http: {{path: /ready}}, interval: 200ms, timeout: 500ms}}
  worker:
    command: "TESTBED --port ${{PORT}}"
    depends_on: [api]
"#
    )
}

#[test]
fn up_starts_in_dependency_order_and_status_shows_every_instance() {
    let stack = Stack::new(&shop(free_port(), 2));
    let output = stack.up();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let status = stack.status();
    assert_eq!(status["healthy"], true);
    for (name, replicas) in [("db", 1), ("api", 2), ("worker", 1)] {
        let service = stack.service(name);
        assert_eq!(service["state"], "running", "{service}");
        assert_eq!(
            service["instances"].as_array().unwrap().len(),
            replicas,
            "{service}"
        );
        assert_eq!(service["running"], replicas as u64);
    }
    assert_eq!(stack.service("api")["ready"], 2);
    // The order is evidence in the ledger: api starts only after db is ready, worker only
    // after api started.
    let ledger = stack.ledger();
    let db_ready = seq_of(&ledger, "instance.ready", "db/0");
    assert!(seq_of(&ledger, "instance.start", "db/0") < db_ready);
    assert!(db_ready < seq_of(&ledger, "instance.start", "api/0"));
    assert!(db_ready < seq_of(&ledger, "instance.start", "api/1"));
    assert!(
        seq_of(&ledger, "instance.start", "api/1") < seq_of(&ledger, "instance.start", "worker/0")
    );
    // The human table names every instance.
    let table = String::from_utf8(stack.wharf(&["status"]).stdout).unwrap();
    for row in ["db/0", "api/0", "api/1", "worker/0"] {
        assert!(table.contains(row), "{table}");
    }
    // Logs are captured per instance.
    let logs = String::from_utf8(stack.wharf(&["logs", "db"]).stdout).unwrap();
    assert!(logs.contains("db/0 | listening on 127.0.0.1:"), "{logs}");
}

#[test]
fn a_killed_instance_is_restarted_with_backoff_and_recorded() {
    let stack = Stack::new(&shop(free_port(), 1));
    assert!(stack.up().status.success());
    let old_pid = stack.service("api")["instances"][0]["pid"]
        .as_i64()
        .unwrap();
    kill9(old_pid);
    let restarted = eventually("api to be restarted", Duration::from_secs(20), || {
        let instance = stack.service("api")["instances"][0].clone();
        (instance["phase"] == "running" && instance["pid"].as_i64() != Some(old_pid))
            .then_some(instance)
    });
    assert_eq!(restarted["restarts"], 1);
    assert_eq!(restarted["last_exit"], "killed (SIGKILL)");
    let ledger = stack.ledger();
    let exit = actions(&ledger, "instance.exit")
        .into_iter()
        .find(|e| e["target"] == "api/0")
        .unwrap();
    assert_eq!(exit["details"]["pid"], old_pid);
    assert_eq!(exit["details"]["restart_in_ms"], 500);
    assert_eq!(actions(&ledger, "instance.restart")[0]["target"], "api/0");
}

#[test]
fn a_crash_looping_service_is_reported_and_backs_off() {
    let stack = Stack::new(
        r#"
name: loop
services:
  ok:
    command: [TESTBED, --port, "${PORT}"]
  flaky:
    command: [sh, -c, "echo starting; exit 3"]
"#,
    );
    let output = stack.up();
    // The stack settles with a crash-looping service: not healthy.
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let flaky = eventually("flaky to be crash-looping", Duration::from_secs(30), || {
        let service = stack.service("flaky");
        (service["state"] == "crash-loop").then_some(service)
    });
    assert!(
        flaky["reason"].as_str().unwrap().contains("exit code 3"),
        "{flaky}"
    );
    assert_eq!(
        stack.service("ok")["state"],
        "running",
        "the rest of the stack is unaffected"
    );
    // Each restart waits twice as long as the one before: not restarted at full speed.
    let exits: Vec<Value> = actions(&stack.ledger(), "instance.exit")
        .into_iter()
        .filter(|e| e["target"] == "flaky/0")
        .collect();
    let delays: Vec<u64> = exits
        .iter()
        .map(|e| e["details"]["restart_in_ms"].as_u64().unwrap())
        .collect();
    assert!(delays.len() >= 3, "{delays:?}");
    assert_eq!(&delays[..3], &[500, 1000, 2000]);
    assert_eq!(exits[2]["details"]["crash_looping"], true);
    let logs = String::from_utf8(stack.wharf(&["logs", "flaky"]).stdout).unwrap();
    assert!(logs.matches("flaky/0 | starting").count() >= 3, "{logs}");
}

#[test]
fn killing_the_control_plane_leaves_services_serving_and_up_adopts_them() {
    let port = free_port();
    let stack = Stack::new(&format!(
        r#"
name: survive
services:
  web:
    command: [TESTBED, --port, "${{PORT}}"]
    port: {port}
    probes:
      ready: {{http: {{path: /ready}}, interval: 200ms}}
  side:
    command: [TESTBED, --port, "${{PORT}}"]
    replicas: 2
"#
    ));
    assert!(stack.up().status.success());
    let pids = stack.pids();
    assert_eq!(pids.len(), 3);
    let poller = Poller::start(port);
    let control = stack.control_pid().unwrap();
    kill9(control as i64);
    eventually("the control plane to die", Duration::from_secs(10), || {
        (!alive(control as i64)).then_some(())
    });
    assert!(
        pids.iter().all(|pid| alive(*pid)),
        "instances outlive the control plane"
    );
    // Without a control plane, `status` still shows what runs, from the store.
    let orphaned = stack.wharf(&["status", "--output", "json"]);
    assert_eq!(orphaned.status.code(), Some(1));
    let recorded: Value = serde_json::from_slice(&orphaned.stdout).unwrap();
    assert!(recorded["control_plane"].is_null());
    let running: Vec<i64> = recorded["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["running"] == true && i["service"] != ".proxy")
        .map(|i| i["pid"].as_i64().unwrap())
        .collect();
    assert_eq!(running.len(), 3, "{recorded}");
    let served_before = poller.ok.load(Ordering::Relaxed);
    eventually(
        "requests while no control plane runs",
        Duration::from_secs(10),
        || (poller.ok.load(Ordering::Relaxed) > served_before + 20).then_some(()),
    );
    let output = stack.up();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stack.pids(), pids, "adopted, not restarted");
    let (ok, failed) = poller.finish();
    assert!(ok > 20, "{ok} requests served");
    assert_eq!(failed, 0, "no failed request during the whole sequence");
    let adopted: Vec<String> = actions(&stack.ledger(), "instance.adopt")
        .iter()
        .map(|e| e["target"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(adopted.len(), 3, "{adopted:?}");
    assert!(actions(&stack.ledger(), "instance.exit").is_empty());
}

#[test]
fn restart_replaces_instances_one_at_a_time_each_ready_first() {
    let stack = Stack::new(&shop(free_port(), 2));
    assert!(stack.up().status.success());
    let old: Vec<i64> = stack.service("api")["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["pid"].as_i64().unwrap())
        .collect();
    let output = stack.wharf(&["restart", "api"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let api = stack.service("api");
    let new: Vec<i64> = api["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["pid"].as_i64().unwrap())
        .collect();
    assert_eq!(new.len(), 2);
    assert!(
        new.iter().all(|pid| !old.contains(pid)),
        "every instance replaced"
    );
    assert_eq!(api["ready"], 2);
    // Ordering evidence: each old instance is stopped only after a new one became ready,
    // and the second new one starts only after the first old one stopped.
    let ledger = stack.ledger();
    let restart_seq = seq_of(&ledger, "service.restart", "api");
    let after: Vec<&Value> = ledger
        .iter()
        .filter(|e| e["seq"].as_u64().unwrap() > restart_seq)
        .collect();
    let pos = |action: &str, target: &str| {
        after
            .iter()
            .position(|e| e["action"] == action && e["target"] == target)
            .unwrap_or_else(|| panic!("{action} {target}"))
    };
    assert!(pos("instance.ready", "api/2") < pos("instance.stop", "api/0"));
    assert!(pos("instance.stop", "api/0") < pos("instance.start", "api/3"));
    assert!(pos("instance.ready", "api/3") < pos("instance.stop", "api/1"));
}

#[test]
fn down_stops_everything_and_leaves_no_process_behind() {
    let stack = Stack::new(&shop(free_port(), 2));
    assert!(stack.up().status.success());
    let pids = stack.pids();
    let control = stack.control_pid().unwrap() as i64;
    let output = stack.wharf(&["down"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for pid in &pids {
        assert!(!alive(*pid), "pid {pid} still runs");
    }
    eventually("the control plane to exit", Duration::from_secs(10), || {
        (!alive(control)).then_some(())
    });
    // Nothing anywhere in the process table still works in this stack's directory: the
    // control plane, the shims and the instances all run there.
    let dir = std::fs::canonicalize(stack.path()).unwrap();
    let leftovers = || -> Vec<String> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|entry| {
                std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(&dir))
            })
            .filter(|entry| {
                entry
                    .file_name()
                    .to_str()
                    .and_then(|p| p.parse().ok())
                    .is_some_and(alive)
            })
            .map(|entry| {
                String::from_utf8_lossy(
                    &std::fs::read(entry.path().join("cmdline")).unwrap_or_default(),
                )
                .replace('\0', " ")
            })
            .collect()
    };
    eventually(
        "every process of the stack to be gone",
        Duration::from_secs(10),
        || leftovers().is_empty().then_some(()),
    );
    let ledger = stack.ledger();
    assert_eq!(actions(&ledger, "instance.stopped").len(), 4);
    // Dependents stop first: worker, then api, then db.
    assert!(
        seq_of(&ledger, "instance.stop", "worker/0") < seq_of(&ledger, "instance.stop", "api/0")
    );
    assert!(
        seq_of(&ledger, "instance.stopped", "api/1") < seq_of(&ledger, "instance.stop", "db/0")
    );
    assert!(actions(&ledger, "stack.down").len() == 1);
    // And `status` says so.
    assert_eq!(stack.wharf(&["status"]).status.code(), Some(1));
}

#[test]
fn down_without_a_control_plane_stops_the_recorded_instances() {
    let stack = Stack::new(&shop(free_port(), 1));
    assert!(stack.up().status.success());
    let pids = stack.pids();
    kill9(stack.control_pid().unwrap() as i64);
    eventually("the control plane to die", Duration::from_secs(10), || {
        (!alive(stack.control_pid().map_or(0, i64::from))
            || stack.wharf(&["status"]).status.code() == Some(1))
        .then_some(())
    });
    let output = stack.wharf(&["down"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(pids.iter().all(|pid| !alive(*pid)));
    let stops: Vec<String> = actions(&stack.ledger(), "instance.stop")
        .iter()
        .map(|e| e["target"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(stops, ["worker/0", "api/0", "db/0"], "dependents first");
    assert_eq!(
        actions(&stack.ledger(), "proxy.stop").len(),
        1,
        "the proxy stops too"
    );
}

#[test]
fn bad_input_is_named_and_the_rest_of_the_stack_is_unaffected() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let stack = Stack::new(&format!(
        r#"
name: bad
services:
  good:
    command: [TESTBED, --port, "${{PORT}}"]
  missing:
    command: [no-such-binary-wharf, --flag]
  clash:
    command: [TESTBED, --port, "${{PORT}}"]
    port: {taken_port}
"#
    ));
    let output = stack.up();
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let missing = stack.service("missing");
    assert_eq!(missing["state"], "failed");
    assert!(
        missing["reason"]
            .as_str()
            .unwrap()
            .contains("command not found: `no-such-binary-wharf`"),
        "{missing}"
    );
    let clash = stack.service("clash");
    assert_eq!(clash["state"], "failed");
    assert!(
        clash["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("port {taken_port} is already in use")),
        "{clash}"
    );
    assert_eq!(stack.service("good")["state"], "running");
    for args in [
        &["restart", "nope"][..],
        &["down", "nope"],
        &["logs", "nope"],
    ] {
        let output = stack.wharf(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("unknown service `nope`"),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!(
        stack.service("good")["state"],
        "running",
        "still unaffected"
    );
    // A start that failed is not retried in a loop: one instance, one ledger entry each.
    assert_eq!(
        stack.service("missing")["instances"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let failures = actions(&stack.ledger(), "instance.start_failed");
    assert_eq!(failures.len(), 1, "{failures:?}");
    // The clash is the proxy's: it cannot listen on the public port, once, and says so.
    let refused = actions(&stack.ledger(), "proxy.rejected");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["target"], "clash");
    drop(taken);
}

#[test]
fn restart_never_leaves_a_finished_service_down() {
    let stack = Stack::new(
        r#"
name: once
services:
  migrate:
    command: [sh, -c, "echo migrated"]
    restart: never
  web:
    command: [TESTBED, --port, "${PORT}"]
"#,
    );
    stack.up();
    let migrate = eventually("migrate to finish", Duration::from_secs(20), || {
        let service = stack.service("migrate");
        (service["state"] == "exited").then_some(service)
    });
    assert_eq!(migrate["instances"][0]["last_exit"], "exit code 0");
    assert_eq!(migrate["restarts"], 0);
    assert_eq!(stack.service("web")["state"], "running");
    let ledger = stack.ledger();
    let starts = actions(&ledger, "instance.start")
        .into_iter()
        .filter(|e| e["target"] == "migrate/0")
        .count();
    assert_eq!(starts, 1);
    assert_eq!(
        actions(&ledger, "instance.exit")[0]["details"]["restart"],
        false
    );
    let logs = String::from_utf8(stack.wharf(&["logs", "migrate"]).stdout).unwrap();
    assert!(logs.contains("migrate/0 | migrated"), "{logs}");
}

/// compose's `on-failure:N`: a job that keeps failing is retried N times, then left exited.
#[test]
fn on_failure_with_a_retry_limit_stops_after_that_many_restarts() {
    let stack = Stack::new(
        r#"
name: retries
services:
  job:
    command: [sh, -c, "echo trying; exit 3"]
    restart: on-failure:2
"#,
    );
    stack.up();
    let job = eventually("the job to give up", Duration::from_secs(30), || {
        let service = stack.service("job");
        (service["state"] == "exited").then_some(service)
    });
    assert_eq!(job["instances"][0]["last_exit"], "exit code 3");
    assert_eq!(job["restarts"], 2);
    let ledger = stack.ledger();
    let exits: Vec<_> = actions(&ledger, "instance.exit")
        .into_iter()
        .filter(|e| e["target"] == "job/0")
        .map(|e| e["details"]["restart"].clone())
        .collect();
    assert_eq!(exits.len(), 3, "one run and two retries: {exits:?}");
    assert_eq!(exits[2], false, "the last exit is not restarted");
}

#[test]
fn up_refuses_a_broken_manifest_and_starts_nothing() {
    let stack = Stack::new("name: x\nservices:\n  a:\n    command: [TESTBED]\n    replics: 2\n");
    let output = stack.wharf(&["up", "-d"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("did you mean `replicas`?"));
    assert!(!stack.path().join(".wharf/control.pid").exists());
}

#[test]
fn foreground_up_streams_logs_and_ctrl_c_stops_the_stack() {
    let stack = Stack::new(
        r#"
name: fg
services:
  web:
    command: [TESTBED, --port, "${PORT}", --version, "7.7.7"]
    replicas: 2
"#,
    );
    let mut child = Command::new(wharf_bin())
        .arg("up")
        .current_dir(stack.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pids = eventually("both instances running", Duration::from_secs(30), || {
        let output = stack.wharf(&["status", "--output", "json"]);
        let status: Value = serde_json::from_slice(&output.stdout).ok()?;
        (status["services"][0]["running"] == 2).then(|| stack.pids())
    });
    let interrupt = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupt.success());
    let exit = eventually("wharf up to exit", Duration::from_secs(30), || {
        child.try_wait().unwrap()
    });
    assert!(exit.success(), "{exit}");
    assert!(
        pids.iter().all(|pid| !alive(*pid)),
        "Ctrl-C stopped every instance"
    );
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(
        stdout.contains("web/0 | listening on 127.0.0.1:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("web/1 | listening on 127.0.0.1:"),
        "{stdout}"
    );
    assert_eq!(actions(&stack.ledger(), "stack.down").len(), 1);
}

#[test]
fn the_tcp_api_requires_the_bearer_token() {
    let stack =
        Stack::new("name: api\nservices:\n  web:\n    command: [TESTBED, --port, \"${PORT}\"]\n");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    // A break-glass token too short to be one is refused before anything starts.
    let short = Command::new(wharf_bin())
        .args(["up", "-d", "--api-listen", &listen])
        .current_dir(stack.path())
        .env("WHARF_API_TOKEN", "short")
        .output()
        .unwrap();
    assert_eq!(short.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&short.stderr).contains("WHARF_API_TOKEN"));
    assert!(stack.control_pid().is_none());
    let token = "a-token-of-enough-length";
    let up = up_api(stack.path(), &listen, token, &[]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(
        String::from_utf8_lossy(&up.stderr).contains(&format!("https://{listen}")),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let cert = api_cert(stack.path());
    let addr = listen.parse().unwrap();
    let request = |auth: Option<&str>| https_request(&cert, addr, "GET", "/v1/status", auth, None);
    assert_eq!(request(None).0, 401);
    assert_eq!(request(Some("wrong-token-of-same-len!")).0, 401);
    let (status, body) = request(Some(token));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"stack\":\"api\""));
}

// Before: a control plane that accepted on its socket but never answered hung every CLI
// command for ever.
#[test]
fn a_control_plane_that_accepts_but_never_answers_does_not_hang_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".wharf")).unwrap();
    // The kernel completes connections into the backlog; nothing here ever reads or answers.
    let _listener =
        std::os::unix::net::UnixListener::bind(dir.path().join(".wharf/control.sock")).unwrap();
    let started = Instant::now();
    let output = Command::new(wharf_bin())
        .args(["restart", "api"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .env("WHARF_CLIENT_TIMEOUT", "500ms")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("the control plane of this stack (socket .wharf/control.sock) did not answer within 500ms"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

// Before: `down` returned once the pid file was gone, but the control plane let go of
// control.lock only after that, so an `up` at once found the lock held, asked the dying
// control plane to reload and failed with "no control plane is running".
#[test]
fn up_right_after_down_starts_the_stack_again() {
    let stack = Stack::new(
        r#"
name: again
services:
  worker:
    command: "TESTBED --port ${PORT}"
"#,
    );
    let ok = |output: std::process::Output, what: &str| {
        assert!(
            output.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    ok(stack.up(), "the first up");
    for round in 0..3 {
        ok(stack.wharf(&["down"]), &format!("down {round}"));
        ok(stack.up(), &format!("up {round} right after down"));
        assert_eq!(
            stack.service("worker")["instances"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
}

#[test]
fn up_waits_for_a_slow_start_that_fails_its_ready_probe_before_it_becomes_ready() {
    // Readiness fails many times over (1.5 s of slow start, a failure every 100 ms, two make it
    // down) before the first success: still a start coming up, which `up` waits for.
    let stack = Stack::new(
        r#"
name: slow
services:
  db:
    command: [TESTBED, --port, "${PORT}", --slow-start, 1500ms]
    probes:
      ready: {http: {path: /ready}, interval: 100ms, timeout: 500ms, failure_threshold: 2}
"#,
    );
    let output = stack.up();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stack.service("db")["state"], "running");
}
