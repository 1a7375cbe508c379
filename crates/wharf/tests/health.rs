//! Health and preflight end to end: real PostgreSQL and Redis servers started by the test,
//! the real `wharf` and `wharf-testbed` binaries, wharf's own `/health` endpoints over its unix
//! socket, and `wharf preflight` with its JUnit and JSON output.

mod common;
#[path = "../../probe/tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use support::postgres::{PASSWORD, Postgres, USER};
use support::redis::{Auth, Redis};

/// GET `path` on wharf's API socket: (status, JSON body).
fn api(stack: &Stack, path: &str) -> (u16, Value) {
    let mut stream = UnixStream::connect(stack.path().join(".wharf/control.sock")).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: wharf\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let status = raw.split(' ').nth(1).unwrap().parse().unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/health+json"),
        "{head}"
    );
    // Chunked or not, the body's JSON object is what matters.
    let start = body.find('{').unwrap();
    let end = body.rfind('}').unwrap();
    (status, serde_json::from_str(&body[start..=end]).unwrap())
}

fn instance_pid(stack: &Stack, service: &str) -> i64 {
    stack.service(service)["instances"][0]["pid"]
        .as_i64()
        .unwrap()
}

#[test]
fn a_stopped_database_blocks_its_dependents_and_everything_recovers_without_restarts() {
    let mut postgres = Postgres::start();
    let redis = Redis::start(Auth::default());
    let stack = Stack::new(&format!(
        r#"
name: health
services:
  db:
    kind: postgres
    url: "{pg}"
    probes:
      ready: {{postgres: {{}}, interval: 200ms, timeout: 1s, failure_threshold: 2}}
  cache:
    kind: redis
    url: "{redis}"
    probes:
      ready: {{redis: {{}}, interval: 200ms, timeout: 1s}}
  api:
    command: [TESTBED, --port, "${{PORT}}"]
    depends_on:
      db: {{condition: ready}}
      cache: {{condition: ready, critical: false}}
    probes:
      ready: {{http: {{path: /ready}}, interval: 200ms}}
  worker:
    command: [TESTBED, --port, "${{PORT}}"]
    depends_on: [api]
"#,
        pg = postgres.url(USER, PASSWORD, "postgres"),
        redis = redis.url(None),
    ));
    let up = stack.up();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert_eq!(stack.status()["status"], "ok");
    assert_eq!(api(&stack, "/health/ready").0, 200);
    let api_pid = instance_pid(&stack, "api");
    let worker_pid = instance_pid(&stack, "worker");

    postgres.stop();
    let db = eventually("db to be down", Duration::from_secs(20), || {
        let db = stack.service("db");
        (db["state"] == "down").then_some(db)
    });
    assert!(
        db["reason"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{db}"
    );
    // One root cause, not one alarm per dependent: api and worker are blocked by db.
    let blocked = eventually("api and worker blocked", Duration::from_secs(20), || {
        let status = stack.status();
        let state = |name: &str| {
            status["services"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == name)
                .unwrap()
                .clone()
        };
        (state("api")["state"] == "blocked" && state("worker")["state"] == "blocked")
            .then_some(status)
    });
    assert_eq!(blocked["status"], "down");
    for name in ["api", "worker"] {
        let service = blocked["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap();
        assert_eq!(service["blocked_by"], "db", "{service}");
        assert!(
            service["reason"]
                .as_str()
                .unwrap()
                .starts_with("blocked by db: connection refused"),
            "{service}"
        );
    }
    let (code, ready) = api(&stack, "/health/ready");
    assert_eq!(code, 503, "{ready}");
    let failures = ready["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "only the root cause is named: {ready}");
    assert_eq!(failures[0]["service"], "db");
    assert!(
        failures[0]["reason"]
            .as_str()
            .unwrap()
            .contains("connection refused")
    );
    assert_eq!(failures[0]["blocks"], serde_json::json!(["api", "worker"]));
    let (code, detailed) = api(&stack, "/health/detailed");
    assert_eq!(code, 503);
    assert_eq!(detailed["status"], "fail");
    assert_eq!(detailed["checks"]["db:state"][0]["status"], "fail");
    assert_eq!(
        detailed["checks"]["api:dependencies"][0]["componentId"],
        "db"
    );
    assert_eq!(detailed["checks"]["api:dependencies"][0]["status"], "fail");
    assert_eq!(
        detailed["checks"]["api:dependencies"][1]["status"], "pass",
        "cache is up"
    );
    let preflight = stack.wharf(&["preflight", "--output", "json"]);
    assert_eq!(preflight.status.code(), Some(1));
    let result: Value = serde_json::from_slice(&preflight.stdout).unwrap();
    let api_check = result["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().starts_with("api is live"))
        .unwrap()
        .clone();
    assert_eq!(api_check["status"], "fail");
    assert!(
        api_check["reason"]
            .as_str()
            .unwrap()
            .contains("blocked by db"),
        "{api_check}"
    );

    postgres.restart();
    eventually("everything to recover", Duration::from_secs(30), || {
        (stack.status()["status"] == "ok").then_some(())
    });
    assert_eq!(api(&stack, "/health/ready").0, 200);
    assert_eq!(
        instance_pid(&stack, "api"),
        api_pid,
        "api was not restarted"
    );
    assert_eq!(
        instance_pid(&stack, "worker"),
        worker_pid,
        "worker was not restarted"
    );
    assert_eq!(stack.service("api")["restarts"], 0);
    assert_eq!(stack.wharf(&["preflight"]).status.code(), Some(0));
    // The transitions are evidence in the ledger.
    let states: Vec<(String, String)> = actions(&stack.ledger(), "service.state")
        .iter()
        .filter(|e| e["target"] == "api")
        .map(|e| {
            (
                e["details"]["from"].as_str().unwrap().to_owned(),
                e["details"]["to"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        states.contains(&("running".to_owned(), "blocked".to_owned())),
        "{states:?}"
    );
    assert!(
        states.contains(&("blocked".to_owned(), "running".to_owned())),
        "{states:?}"
    );
}

#[test]
fn a_non_critical_dependency_down_only_degrades() {
    let mut redis = Redis::start(Auth::default());
    let stack = Stack::new(&format!(
        r#"
name: degrade
services:
  cache:
    kind: redis
    url: "{redis}"
    probes:
      ready: {{redis: {{}}, interval: 200ms, timeout: 1s, failure_threshold: 1}}
  api:
    command: [TESTBED, --port, "${{PORT}}"]
    depends_on:
      cache: {{critical: false}}
"#,
        redis = redis.url(None),
    ));
    assert!(stack.up().status.success());
    redis.stop();
    let api_status = eventually("api degraded", Duration::from_secs(20), || {
        let api = stack.service("api");
        (api["state"] == "degraded").then_some(api)
    });
    assert_eq!(api_status["blocked_by"], "cache");
    assert_eq!(api_status["health"], "warn");
    let cache = stack.service("cache");
    assert_eq!(cache["state"], "down");
    assert!(
        cache["reason"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{cache}"
    );
}

#[test]
fn a_failing_live_probe_restarts_the_instance_and_a_failing_ready_probe_does_not() {
    let stack = Stack::new(
        r#"
name: probes
services:
  hangs:
    command: [TESTBED, --port, "${PORT}"]
    probes:
      live: {http: {path: /health}, interval: 200ms, timeout: 300ms, failure_threshold: 2}
  unready:
    command: [TESTBED, --port, "${PORT}"]
    probes:
      live: {http: {path: /health}, interval: 200ms, timeout: 300ms, failure_threshold: 2}
      ready: {http: {path: /ready}, interval: 200ms, timeout: 300ms, failure_threshold: 2}
"#,
    );
    assert!(stack.up().status.success());
    let port = |name: &str| {
        stack.service(name)["instances"][0]["port"]
            .as_u64()
            .unwrap() as u16
    };
    let hangs_pid = instance_pid(&stack, "hangs");
    let unready_pid = instance_pid(&stack, "unready");
    post(port("hangs"), "/control/health", "hang");
    post(port("unready"), "/control/ready", "false");
    let restarted = eventually(
        "the hung instance to be restarted",
        Duration::from_secs(30),
        || {
            let instance = stack.service("hangs")["instances"][0].clone();
            (instance["pid"].as_i64() != Some(hangs_pid) && instance["phase"] == "running")
                .then_some(instance)
        },
    );
    assert_eq!(restarted["restarts"], 1);
    let ledger = stack.ledger();
    let unhealthy = actions(&ledger, "instance.unhealthy");
    assert_eq!(unhealthy[0]["target"], "hangs/0");
    assert!(
        unhealthy[0]["details"]["reason"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{unhealthy:?}"
    );
    // The unready instance is out of rotation but keeps running: same pid, no restart, for
    // as long as the hung one took to be restarted and a while after.
    eventually("unready to be not ready", Duration::from_secs(10), || {
        (stack.service("unready")["instances"][0]["ready"] == false).then_some(())
    });
    let watch_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < watch_until {
        let instance = stack.service("unready")["instances"][0].clone();
        assert_eq!(instance["pid"].as_i64(), Some(unready_pid));
        assert_eq!(instance["restarts"], 0);
        assert_eq!(instance["live"], true);
    }
    assert!(
        actions(&stack.ledger(), "instance.unready")
            .iter()
            .any(|e| e["target"] == "unready/0")
    );
}

fn post(port: u16, path: &str, body: &str) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
}

#[test]
fn preflight_writes_junit_and_stable_json_and_records_its_verdict() {
    let port = free_port();
    let stack = Stack::new(&format!(
        r#"
name: pre
services:
  web:
    command: [TESTBED, --port, "${{PORT}}", --version, "2.0.0"]
    port: {port}
smoke:
  - name: web answers with its version
    http: {{url: "http://127.0.0.1:{port}/", expect_status: 200, body_contains: "2.0.0", max_latency: 2s}}
  - name: web serves a page that does not exist
    http: {{url: "http://127.0.0.1:{port}/health", body_contains: "no such text"}}
  - name: a command succeeds
    exec: [sh, -c, "exit 0"]
"#
    ));
    assert!(stack.up().status.success());
    let junit = stack.path().join("preflight.xml");
    let output = stack.wharf(&["preflight", "--junit", junit.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "one smoke check fails");
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(
        table.contains("FAIL") && table.contains("body does not contain \"no such text\""),
        "{table}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .unwrap();
    assert_eq!(suite.attribute("name"), Some("wharf preflight"));
    let cases: Vec<_> = suite
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert!(cases.len() >= 6, "{xml}");
    let failed: Vec<_> = cases
        .iter()
        .filter(|c| c.children().any(|n| n.has_tag_name("failure")))
        .collect();
    assert_eq!(failed.len(), 1, "{xml}");
    assert_eq!(
        failed[0].attribute("name"),
        Some("web serves a page that does not exist")
    );
    assert_eq!(failed[0].attribute("classname"), Some("preflight.smoke"));
    assert_eq!(suite.attribute("failures"), Some("1"));
    let json: Value =
        serde_json::from_slice(&stack.wharf(&["preflight", "--output", "json"]).stdout).unwrap();
    assert_eq!(json["status"], "fail");
    for check in json["checks"].as_array().unwrap() {
        let keys: Vec<&str> = check
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            ["category", "name", "status", "duration_ms", "reason"],
            "stable shape"
        );
    }
    let categories: Vec<&str> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["category"].as_str().unwrap())
        .collect();
    for category in ["manifest", "stack", "service", "smoke", "ledger"] {
        assert!(categories.contains(&category), "{categories:?}");
    }
    let runs = actions(&stack.ledger(), "preflight.run");
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["details"]["verdict"], "fail");
    assert_eq!(runs[0]["details"]["failed"], 1);
}

#[test]
fn preflight_without_a_running_stack_fails_with_the_reason() {
    let stack =
        Stack::new("name: idle\nservices:\n  web:\n    command: [TESTBED, --port, \"${PORT}\"]\n");
    let output = stack.wharf(&["preflight", "--output", "json"]);
    assert_eq!(output.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    let control = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["category"] == "stack")
        .unwrap()
        .clone();
    assert_eq!(control["status"], "fail");
    assert!(
        control["reason"]
            .as_str()
            .unwrap()
            .contains("no control plane is running"),
        "{control}"
    );
}
