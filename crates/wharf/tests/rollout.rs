//! Progressive delivery end to end: the real `wharf` binary, its proxy and control plane,
//! testbed instances, and an open-loop client (`wharf_testbed::load`) on the public port.
//! Figures (failed requests, seconds to rollback) are asserted loosely here; the benchmark
//! `scripts/bench/rollout.sh` prints them.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime};

use common::*;
use serde_json::Value;
use wharf_testbed::load::{self, LoadPlan, LoadReport, LoadRun};

/// One service behind the proxy, two replicas, with the given rollout block (YAML, indented
/// under `rollout:`) and any extra service keys.
fn stack(port: u16, rollout: &str, extra: &str) -> Stack {
    Stack::new(&format!(
        r#"
name: deliver
services:
  api:
    version: "1.0"
    command: [TESTBED, --port, "${{PORT}}", --version, "${{VERSION}}"]
    port: {port}
    replicas: 2
    probes:
      ready: {{http: {{path: /ready}}, interval: 200ms}}
{extra}
    rollout:
{rollout}
"#
    ))
}

fn testbed_command(extra: &str) -> String {
    format!(
        "{} --port ${{PORT}} --version ${{VERSION}} {extra}",
        testbed_bin().display()
    )
}

fn start_load(port: u16, rate: f64, max: Duration) -> LoadRun {
    let mut plan = LoadPlan::new(format!("http://127.0.0.1:{port}/"), rate);
    plan.max_duration = max;
    plan.timeout = Duration::from_secs(5);
    load::start(plan).expect("load starts")
}

/// Waits until the load has `n` answers (the proxy serves).
fn until_answered(run: &LoadRun, n: u64) {
    eventually("answers through the proxy", Duration::from_secs(20), || {
        (run.snapshot().ok() >= n).then_some(())
    });
}

fn view(stack: &Stack) -> Value {
    let output = stack.wharf(&["rollout", "status", "api", "--output", "json"]);
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}

fn deploy(stack: &Stack, args: &[&str]) {
    let mut all = vec!["deploy", "api"];
    all.extend_from_slice(args);
    let output = stack.wharf(&all);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn wait_outcome(stack: &Stack, deadline: Duration) -> Value {
    eventually("the rollout to end", deadline, || {
        let view = view(stack);
        view["outcome"].is_string().then_some(view)
    })
}

fn wait_phase(stack: &Stack, phase: &str) -> Value {
    eventually(&format!("phase {phase}"), Duration::from_secs(30), || {
        let view = view(stack);
        (view["phase"] == phase).then_some(view)
    })
}

fn ledger_time(entry: &Value) -> SystemTime {
    let time: jiff::Timestamp = entry["time"].as_str().unwrap().parse().unwrap();
    SystemTime::UNIX_EPOCH + Duration::from_nanos(time.as_nanosecond() as u64)
}

/// The versions of the instances that run (status JSON).
fn instance_versions(stack: &Stack) -> Vec<String> {
    stack.service("api")["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["version"].as_str().unwrap().to_owned())
        .collect()
}

fn assert_no_failures(report: &LoadReport) {
    assert!(report.total() > 0);
    let failed: Vec<_> = report
        .samples
        .iter()
        .filter(|s| s.is_failure())
        .map(|s| {
            (
                s.sent_at,
                s.result.as_ref().map(|r| (r.status, r.version.clone())),
            )
        })
        .collect();
    assert_eq!(report.failures(), 0, "failed requests: {failed:?}");
}

const CANARY: &str = "      strategy: canary
      steps: [{weight: 20, pause: 30s}, {weight: 100}]
      analysis: {max_error_rate: 1%, max_latency_p95: 100ms, min_requests: 20}
      deadlines: {drain: 5s}";

/// Under `rate` requests/s, deploys a 2.0 whose testbed gets `flags`, and waits for the
/// rollout to end rolled back; the load keeps running.
fn rolled_back_canary(rate: f64, flags: &str) -> (Stack, LoadRun, Value) {
    let port = free_port();
    let stack = stack(port, CANARY, "");
    assert!(stack.up().status.success());
    let run = start_load(port, rate, Duration::from_secs(40));
    until_answered(&run, rate as u64);
    let command = testbed_command(flags);
    deploy(&stack, &["--version", "2.0", "--command", &command]);
    let view = wait_outcome(&stack, Duration::from_secs(30));
    assert_eq!(view["outcome"], "rolled-back", "{view}");
    (stack, run, view)
}

#[test]
fn a_canary_answering_errors_is_rolled_back_within_seconds() {
    let (stack, run, view) = rolled_back_canary(200.0, "--error-rate 0.2");
    let reason = view["reason"].as_str().unwrap();
    assert!(reason.contains("error"), "{reason}");
    // The new instances are drained and stopped; only the stable version runs.
    eventually("the canary stopped", Duration::from_secs(20), || {
        instance_versions(&stack)
            .iter()
            .all(|v| v == "1.0")
            .then_some(())
    });
    let report = run.stop();
    let ledger = stack.ledger();
    let rollback = ledger_time(&actions(&ledger, "deploy.rollback")[0]);
    let first_bad = report.first_failure().expect("the canary answered errors");
    let first_bad_at = report.started_at + first_bad.answered_at();
    let seconds = rollback
        .duration_since(first_bad_at)
        .unwrap_or_default()
        .as_secs_f64();
    eprintln!(
        "bad canary: {} failed of {} requests; rollback {seconds:.2} s after the first bad response",
        report.failures(),
        report.total()
    );
    // Not a speed test (scripts/bench/rollout.sh prints the figures): the step's pause is 30 s,
    // so a gate that waited for it would cost ~240 failed requests and 30 s; aborting mid-pause,
    // on the evidence, costs a fraction of that even on a loaded machine.
    assert!(
        report.failures() <= 100,
        "{} failed requests",
        report.failures()
    );
    assert!(seconds < 10.0, "{seconds:.2} s to roll back");
    // Nothing sent after the weights went back (plus in-flight slack) failed.
    let after = report.offset_of(rollback) + Duration::from_millis(500);
    assert_eq!(report.failures_after(after), 0);
    assert!(
        report
            .samples
            .iter()
            .filter(|s| s.is_failure())
            .all(|s| s.version() == Some("2.0")),
        "only the canary failed"
    );
    let verdict = &actions(&ledger, "deploy.verdict");
    assert!(
        verdict.iter().any(|v| v["details"]["verdict"] == "fail"),
        "the failing verdict is recorded with its numbers: {verdict:?}"
    );
}

#[test]
fn a_canary_slower_by_200ms_is_rolled_back() {
    let (_stack, run, view) = rolled_back_canary(100.0, "--latency 200ms");
    let reason = view["reason"].as_str().unwrap();
    assert!(
        reason.contains("p95") || reason.contains("latency"),
        "{reason}"
    );
    let report = run.stop();
    assert_no_failures(&report);
}

#[test]
fn a_good_canary_goes_through_every_step_with_no_failed_request() {
    let port = free_port();
    let rollout = "      strategy: canary
      steps: [{weight: 20, pause: 1s}, {weight: 50, pause: 1s}, {weight: 100}]
      analysis: {max_error_rate: 1%, min_requests: 20}
      deadlines: {drain: 5s}";
    let stack = stack(port, rollout, "");
    assert!(stack.up().status.success());
    let run = start_load(port, 100.0, Duration::from_secs(60));
    until_answered(&run, 100);
    let output = stack.wharf(&["deploy", "api", "--version", "2.0", "--watch"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let view = view(&stack);
    assert_eq!(view["outcome"], "succeeded", "{view}");
    let steps: Vec<Value> = actions(&stack.ledger(), "deploy.step");
    assert!(steps.len() >= 2, "every step recorded: {steps:?}");
    eventually("the old instances drained", Duration::from_secs(20), || {
        let versions = instance_versions(&stack);
        (versions.len() == 2 && versions.iter().all(|v| v == "2.0")).then_some(())
    });
    assert_eq!(stack.service("api")["version"], "2.0");
    let answered = run.snapshot().total();
    eventually(
        "traffic on the new version",
        Duration::from_secs(10),
        || (run.snapshot().total() > answered + 50).then_some(()),
    );
    let report = run.stop();
    assert_no_failures(&report);
    let late: Vec<_> = report
        .samples
        .iter()
        .skip(answered as usize + 20)
        .filter(|s| s.version() != Some("2.0"))
        .collect();
    assert!(late.is_empty(), "{} late requests on 1.0", late.len());
    assert!(
        actions(&stack.ledger(), "instance.drain").len() >= 2,
        "the old instances drained before they stopped"
    );
}

#[test]
fn blue_green_previews_then_switches_at_once_with_no_failed_request() {
    let port = free_port();
    let stack = stack(port, CANARY, "");
    assert!(stack.up().status.success());
    let run = start_load(port, 100.0, Duration::from_secs(60));
    until_answered(&run, 100);
    deploy(&stack, &["--version", "2.0", "--strategy", "blue-green"]);
    wait_phase(&stack, "preview");
    // Live traffic stays on 1.0; the pin header reaches the preview.
    assert_eq!(
        get_with(port, &[("x-wharf-version", "2.0")]).1.as_deref(),
        Some("2.0")
    );
    assert_eq!(get_with(port, &[]).1.as_deref(), Some("1.0"));
    let output = stack.wharf(&["rollout", "promote", "api"]);
    assert!(output.status.success());
    let view = wait_outcome(&stack, Duration::from_secs(30));
    assert_eq!(view["outcome"], "succeeded", "{view}");
    assert_eq!(get_with(port, &[]).1.as_deref(), Some("2.0"));
    let report = run.stop();
    assert_no_failures(&report);
    let by_version = report.by_version();
    assert!(by_version.get("2.0").copied().unwrap_or(0) > 0);
}

#[test]
fn a_control_plane_killed_mid_rollout_leaves_traffic_split_and_the_rollout_resumes() {
    let port = free_port();
    let rollout = "      strategy: canary
      steps: [{weight: 50, pause: 10m}, {weight: 100}]
      analysis: {max_error_rate: 1%, min_requests: 20}
      deadlines: {drain: 5s}";
    let stack = stack(port, rollout, "");
    assert!(stack.up().status.success());
    let run = start_load(port, 100.0, Duration::from_secs(90));
    until_answered(&run, 100);
    deploy(&stack, &["--version", "2.0"]);
    wait_phase(&stack, "step");
    let control = stack.control_pid().unwrap();
    kill9(i64::from(control));
    eventually("the control plane to die", Duration::from_secs(10), || {
        (!alive(i64::from(control))).then_some(())
    });
    // Both versions keep serving at the current weights.
    let before = run.snapshot().by_version();
    eventually(
        "both versions serve without a control plane",
        Duration::from_secs(10),
        || {
            let now = run.snapshot().by_version();
            let grew = |v: &str| {
                now.get(v).copied().unwrap_or(0) > before.get(v).copied().unwrap_or(0) + 20
            };
            (grew("1.0") && grew("2.0")).then_some(())
        },
    );
    let output = stack.up();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !actions(&stack.ledger(), "deploy.resume").is_empty(),
        "the rollout resumed"
    );
    assert_eq!(view(&stack)["phase"], "step");
    let output = stack.wharf(&["rollout", "promote", "api"]);
    assert!(output.status.success());
    let view = wait_outcome(&stack, Duration::from_secs(30));
    assert_eq!(view["outcome"], "succeeded", "{view}");
    let report = run.stop();
    assert_no_failures(&report);
}

#[test]
fn low_traffic_extends_the_step_and_the_deadline_then_rolls_back() {
    let port = free_port();
    let rollout = "      strategy: canary
      steps: [{weight: 50, pause: 1s}, {weight: 100}]
      analysis: {max_error_rate: 1%, min_requests: 50}
      deadlines: {step_extension: 3s, on_step_deadline: abort, drain: 2s}";
    let stack = stack(port, rollout, "");
    assert!(stack.up().status.success());
    let run = start_load(port, 1.0, Duration::from_secs(60));
    until_answered(&run, 1);
    deploy(&stack, &["--version", "2.0"]);
    eventually("the step to be extended", Duration::from_secs(20), || {
        let view = view(&stack);
        (view["extended"] == true).then_some(())
    });
    assert_eq!(view(&stack)["weight_new"], 50, "extended, not passed");
    let view = wait_outcome(&stack, Duration::from_secs(30));
    assert_eq!(view["outcome"], "rolled-back", "{view}");
    assert!(
        actions(&stack.ledger(), "deploy.step")
            .iter()
            .all(|s| s["details"]["weight"] != 100),
        "the 100% step was never reached"
    );
    run.stop();
}

#[test]
fn the_split_follows_the_weights_and_sticky_clients_never_flip() {
    let port = free_port();
    let rollout = "      strategy: canary
      steps: [{weight: 25, pause: 10m}, {weight: 100}]
      analysis: {min_requests: 20}";
    let stack = stack(port, rollout, "    sticky: {cookie: session}");
    assert!(stack.up().status.success());
    deploy(&stack, &["--version", "2.0"]);
    wait_phase(&stack, "step");
    eventually("the canary in the table", Duration::from_secs(10), || {
        (0..50)
            .any(|_| get_with(port, &[]).1.as_deref() == Some("2.0"))
            .then_some(())
    });
    let mut plan = LoadPlan::new(format!("http://127.0.0.1:{port}/"), 2000.0);
    plan.max_requests = Some(10_000);
    plan.max_duration = Duration::from_secs(30);
    let report = load::start(plan).unwrap().wait();
    assert_no_failures(&report);
    let by_version = report.by_version();
    let total: u64 = by_version.values().sum();
    assert_eq!(total, 10_000);
    let share = by_version.get("2.0").copied().unwrap_or(0) as f64 * 100.0 / total as f64;
    assert!((23.0..=27.0).contains(&share), "canary share {share:.2}%");
    let mut on_canary = 0;
    for client in 0..200 {
        let cookie = format!("session=client-{client}");
        let first = get_with(port, &[("cookie", &cookie)]).1;
        for _ in 0..4 {
            assert_eq!(
                get_with(port, &[("cookie", &cookie)]).1,
                first,
                "client {client} flipped"
            );
        }
        on_canary += usize::from(first.as_deref() == Some("2.0"));
    }
    assert!(
        (20..=80).contains(&on_canary),
        "{on_canary} of 200 sticky clients on the canary"
    );
    let output = stack.wharf(&["rollout", "abort", "api"]);
    assert!(output.status.success());
    let view = wait_outcome(&stack, Duration::from_secs(30));
    assert_eq!(view["outcome"], "rolled-back");
    assert_eq!(view["reason"], "aborted by the operator");
}

#[test]
fn deploy_refuses_bad_requests_and_changes_nothing() {
    let port = free_port();
    let stack = stack(port, CANARY, "");
    assert!(stack.up().status.success());
    for (args, message) in [
        (
            &["deploy", "api", "--version", "1.0"][..],
            "already runs version 1.0",
        ),
        (
            &["deploy", "nope", "--version", "2.0"],
            "unknown service `nope`",
        ),
        (
            &["deploy", "api", "--version", "2.0", "--strategy", "yolo"],
            "",
        ),
        (
            &["rollout", "promote", "api"],
            "no rollout of `api` is under way",
        ),
        (&["rollback", "api"], "no previous version"),
    ] {
        let output = stack.wharf(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    assert!(actions(&stack.ledger(), "deploy.start").is_empty());
    assert_eq!(instance_versions(&stack), ["1.0", "1.0"]);
}

#[test]
fn rollback_returns_to_the_previous_version_without_steps() {
    let port = free_port();
    let rollout = "      strategy: canary
      steps: [{weight: 50, pause: 1s}, {weight: 100}]
      analysis: {min_requests: 5}
      deadlines: {drain: 2s}";
    let stack = stack(port, rollout, "");
    assert!(stack.up().status.success());
    let run = start_load(port, 50.0, Duration::from_secs(60));
    until_answered(&run, 50);
    let output = stack.wharf(&["deploy", "api", "--version", "2.0", "--watch"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let output = stack.wharf(&["rollback", "api", "--watch"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stack.service("api")["version"], "1.0");
    eventually("only 1.0 runs", Duration::from_secs(20), || {
        instance_versions(&stack)
            .iter()
            .all(|v| v == "1.0")
            .then_some(())
    });
    let report = run.stop();
    assert_no_failures(&report);
}

/// One request with headers; the status and the `x-version` the testbed answered with.
fn get_with(port: u16, headers: &[(&str, &str)]) -> (u16, Option<String>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut request = "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n".to_owned();
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let version = raw
        .lines()
        .find_map(|l| l.strip_prefix("x-version: "))
        .map(|v| v.trim().to_owned());
    (status, version)
}

#[test]
fn restart_of_a_single_replica_behind_the_proxy_drops_no_request() {
    let port = free_port();
    let stack = Stack::new(&format!(
        r#"
name: one
services:
  web:
    command: [TESTBED, --port, "${{PORT}}", --version, "1"]
    port: {port}
    probes:
      ready: {{http: {{path: /ready}}, interval: 200ms}}
"#
    ));
    assert!(stack.up().status.success());
    let before = stack.pids();
    let run = start_load(port, 200.0, Duration::from_secs(60));
    until_answered(&run, 100);
    let output = stack.wharf(&["restart", "web"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eventually("a new instance took over", Duration::from_secs(20), || {
        let pids = stack.pids();
        (pids.len() == 1 && pids != before).then_some(())
    });
    let answered = run.snapshot().total();
    eventually(
        "traffic on the new instance",
        Duration::from_secs(10),
        || (run.snapshot().total() > answered + 100).then_some(()),
    );
    let report = run.stop();
    assert_no_failures(&report);
    let restart = &actions(&stack.ledger(), "service.restart")[0];
    assert_eq!(restart["details"]["mode"], "rolling");
    assert_eq!(actions(&stack.ledger(), "instance.drain").len(), 1);
    // The proxy's own log: every table it applied.
    let logs = stack.wharf(&["logs", "proxy"]);
    assert!(
        logs.status.success(),
        "{}",
        String::from_utf8_lossy(&logs.stderr)
    );
    assert!(String::from_utf8_lossy(&logs.stdout).contains("route table applied"));
}

#[test]
fn up_with_a_changed_manifest_replaces_the_running_stack_without_a_failed_request() {
    let port = free_port();
    let manifest = |version: &str, greeting: &str, extra: &str| {
        format!(
            r#"
name: evolve
services:
  api:
    version: "{version}"
    command: [TESTBED, --port, "${{PORT}}", --version, "${{VERSION}}"]
    port: {port}
    replicas: 2
    env: {{GREETING: {greeting}}}
    probes:
      ready: {{http: {{path: /ready}}, interval: 200ms}}
{extra}"#
        )
    };
    let stack = Stack::new(&manifest("1.0", "hello", ""));
    assert!(stack.up().status.success());
    let run = start_load(port, 100.0, Duration::from_secs(60));
    until_answered(&run, 100);
    let rewrite = |text: String| {
        std::fs::write(
            stack.path().join("wharf.yaml"),
            text.replace("TESTBED", &testbed_bin().display().to_string()),
        )
        .unwrap()
    };
    // A new version and env, and a service added: `up` applies it to the running stack.
    let side = "  side:\n    command: [TESTBED, --port, \"${PORT}\"]\n";
    rewrite(manifest("1.1", "bonjour", side));
    let output = stack.up();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("added: side") && said.contains("api"),
        "{said}"
    );
    eventually("api replaced by 1.1", Duration::from_secs(30), || {
        let versions = instance_versions(&stack);
        (versions.len() == 2 && versions.iter().all(|v| v == "1.1")).then_some(())
    });
    eventually("side started", Duration::from_secs(20), || {
        (stack.service("side")["state"] == "running").then_some(())
    });
    // And removed again.
    rewrite(manifest("1.1", "bonjour", ""));
    assert!(stack.up().status.success());
    eventually("side stopped", Duration::from_secs(20), || {
        (stack.service("side")["running"] == 0).then_some(())
    });
    let answered = run.snapshot().total();
    eventually("traffic on 1.1", Duration::from_secs(10), || {
        (run.snapshot().total() > answered + 50).then_some(())
    });
    let report = run.stop();
    assert_no_failures(&report);
    assert_eq!(report.samples.last().unwrap().version(), Some("1.1"));
    assert_eq!(actions(&stack.ledger(), "stack.reload").len(), 2);
}

#[test]
fn pause_holds_the_weights_and_resume_continues() {
    let port = free_port();
    let rollout = "      strategy: canary
      steps: [{weight: 30, pause: 1s}, {weight: 100}]
      analysis: {min_requests: 5}
      deadlines: {drain: 2s}";
    let stack = stack(port, rollout, "");
    assert!(stack.up().status.success());
    let run = start_load(port, 50.0, Duration::from_secs(60));
    until_answered(&run, 50);
    deploy(&stack, &["--version", "2.0"]);
    wait_phase(&stack, "step");
    let output = stack.wharf(&["rollout", "pause", "api"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Paused past the step's 1 s pause with traffic flowing: the weights hold, nothing passes.
    let served = run.snapshot().total();
    eventually("traffic while paused", Duration::from_secs(10), || {
        (run.snapshot().total() > served + 100).then_some(())
    });
    let paused = view(&stack);
    assert_eq!(paused["phase"], "paused", "{paused}");
    assert_eq!(paused["weight_new"], 30);
    let output = stack.wharf(&["rollout", "resume", "api"]);
    assert!(output.status.success());
    let done = wait_outcome(&stack, Duration::from_secs(30));
    assert_eq!(done["outcome"], "succeeded", "{done}");
    let report = run.stop();
    assert_no_failures(&report);
    let ledger = stack.ledger();
    assert_eq!(
        actions(&ledger, "deploy.pause").len(),
        1,
        "the pause is recorded"
    );
    assert!(
        !actions(&ledger, "deploy.resume").is_empty(),
        "and the resume"
    );
}

#[test]
fn the_manifests_proxy_timeouts_reach_the_proxy() {
    let port = free_port();
    let stack = stack(
        port,
        CANARY,
        "    proxy: {upstream_timeout: 400ms, client_timeout: 500ms}",
    );
    assert!(stack.up().status.success());
    let status_of = |path: &str| {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).unwrap();
        raw.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok())
    };
    eventually("the proxy to serve", Duration::from_secs(20), || {
        (status_of("/work?ms=10") == Some(200)).then_some(())
    });
    let started = std::time::Instant::now();
    assert_eq!(status_of("/work?ms=5000"), Some(504));
    assert!(started.elapsed() < Duration::from_secs(4));
    // An upload that stops halfway is the client's stall: 408 at the client timeout.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"POST /work HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello")
        .unwrap();
    let started = std::time::Instant::now();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 408");
    assert!(started.elapsed() < Duration::from_secs(4));
}
