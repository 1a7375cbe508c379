//! The public status page end to end: a real stack (`wharf` and `wharf-testbed` processes)
//! started with `--status-listen`, read over a real socket. The states follow a database made
//! unready and ready again; a recreate rollout shows `under_maintenance` and its outage is left
//! out of the uptime; a reloaded manifest regroups the page; no route ever shows a host, port,
//! pid, path, secret or error text, and bad requests get clean errors.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use serde_json::Value;

const SECRET: &str = "s3cr3t-Value-9f1c2e";

/// One raw request on a fresh connection: (status, head, body); `None` when the server closed
/// the connection without an answer.
fn request(port: u16, raw: &[u8]) -> Option<(u16, String, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .ok()?;
    // A server that answers early and closes may refuse the rest of a huge request.
    let _ = stream.write_all(raw);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((status, head.to_owned(), body.to_owned()))
}

fn json(port: u16, path: &str) -> Value {
    let (status, body) = get(port, path).unwrap_or_else(|| panic!("GET {path} answered"));
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

fn component(port: u16, name: &str) -> Value {
    json(port, "/api/v2/components.json")["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("component {name}"))
}

fn wait_state(port: u16, name: &str, state: &str) -> Value {
    eventually(&format!("{name} {state}"), Duration::from_secs(30), || {
        let found = component(port, name);
        (found["status"] == state).then_some(found)
    })
}

/// Flips the testbed's readiness through its control endpoint.
fn set_ready(port: u16, ready: bool) {
    let body = if ready { "true" } else { "false" };
    let raw = format!(
        "POST /control/ready HTTP/1.1\r\nHost: t\r\nConnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, _, _) = request(port, raw.as_bytes()).expect("the testbed answers");
    assert_eq!(status, 200);
}

fn up_with_status_page(stack: &Stack, status_port: u16) {
    let listen = format!("127.0.0.1:{status_port}");
    let output = stack.wharf(&[
        "up",
        "-d",
        "--wait-timeout",
        "60s",
        "--status-listen",
        &listen,
    ]);
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Words made of letters and digits: a port or pid is found as a whole token, never inside a
/// timestamp's nanoseconds or an id's hex.
fn tokens(text: &str) -> Vec<&str> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Asserts that nothing internal is in `body`.
fn assert_nothing_internal(what: &str, body: &str, numbers: &[String], texts: &[String]) {
    let words = tokens(body);
    for number in numbers {
        assert!(
            !words.contains(&number.as_str()),
            "{what} shows {number}:\n{body}"
        );
    }
    for text in texts {
        assert!(
            !body.contains(text.as_str()),
            "{what} shows `{text}`:\n{body}"
        );
    }
}

#[test]
fn the_page_follows_a_database_down_and_back_and_never_shows_anything_internal() {
    let (db, public, status_port) = (free_port(), free_port(), free_port());
    let stack = Stack::new(&format!(
        r#"
name: shop
secrets:
  DB_PASSWORD: {{}}
services:
  db:
    command: [TESTBED, --port, "{db}"]
    probes:
      ready: {{http: {{url: "http://127.0.0.1:{db}/ready"}}, interval: 200ms, failure_threshold: 1}}
  api:
    command: [TESTBED, --port, "${{PORT}}"]
    port: {public}
    secrets: [DB_PASSWORD]
    depends_on: {{db: {{condition: ready}}}}
    probes:
      ready: {{http: {{path: /ready}}, interval: 200ms}}
status_page:
  title: Shop <status>
  components:
    - {{name: Storefront, services: [api], description: Browsing & checkout}}
    - {{name: Data, services: [db]}}
"#
    ));
    stack.set_secret("DB_PASSWORD", SECRET);
    up_with_status_page(&stack, status_port);

    wait_state(status_port, "Storefront", "operational");
    let data = wait_state(status_port, "Data", "operational");
    assert_eq!(data["position"], 2);
    assert_eq!(data["id"].as_str().unwrap().len(), 12);
    let status = json(status_port, "/api/v2/status.json");
    assert_eq!(status["status"]["indicator"], "none");
    assert_eq!(status["page"]["name"], "Shop <status>");

    set_ready(db, false);
    wait_state(status_port, "Data", "major_outage");
    let storefront = component(status_port, "Storefront")["status"].clone();
    assert!(
        storefront == "partial_outage" || storefront == "major_outage",
        "api is blocked by db: {storefront}"
    );
    let summary = json(status_port, "/api/v2/summary.json");
    assert_eq!(summary["status"]["indicator"], "critical");
    assert_eq!(summary["status"]["description"], "Major System Outage");

    // Every route, while something is down (reasons are at their richest now).
    let status_report = stack.status();
    let mut numbers: Vec<String> = vec![
        db.to_string(),
        public.to_string(),
        status_port.to_string(),
        status_report["control_pid"].to_string(),
    ];
    numbers.extend(stack.pids().iter().map(i64::to_string));
    for service in status_report["services"].as_array().unwrap() {
        for instance in service["instances"].as_array().unwrap() {
            if let Some(port) = instance["port"].as_u64() {
                numbers.push(port.to_string());
            }
        }
    }
    let texts: Vec<String> = [
        SECRET,
        "127.0.0.1",
        "localhost",
        "DB_PASSWORD",
        "blocked by",
        "panicked",
        "unwrap",
        "os error",
        "src/",
        "wharf-testbed",
        ".wharf",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([stack.path().display().to_string()])
    .collect();
    let (_, page) = get(status_port, "/").unwrap();
    for path in [
        "/",
        "/api/v2/summary.json",
        "/api/v2/status.json",
        "/api/v2/components.json",
        "/api/v2/incidents/unresolved.json",
        "/nope",
        "/api/v2/../../etc/passwd",
    ] {
        let (_, body) = get(status_port, path).unwrap();
        assert_nothing_internal(path, &body, &numbers, &texts);
    }
    // Self-contained: nothing loads from anywhere, no script runs.
    for outside in ["http://", "https://", "src=", "<script", "@import", "url("] {
        assert!(
            !page.contains(outside),
            "the page holds `{outside}`:\n{page}"
        );
    }
    assert!(page.starts_with("<!doctype html>"));
    assert!(page.contains("Shop &lt;status&gt;"), "escaped title");
    assert!(page.contains("Browsing &amp; checkout"));
    assert!(page.contains("Major outage"));

    // Bad requests: clean errors, nothing internal.
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let raw = format!(
            "{method} /api/v2/summary.json HTTP/1.1\r\nHost: t\r\nConnection: close\r\ncontent-length: 2\r\n\r\n{{}}"
        );
        let (status, head, body) = request(status_port, raw.as_bytes()).unwrap();
        assert_eq!(status, 405, "{method}: {head}");
        assert!(body.contains("method_not_allowed"), "{body}");
        assert_nothing_internal(method, &body, &numbers, &texts);
    }
    let (status, _, body) = request(
        status_port,
        b"GET /no/such/page HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(status, 404);
    assert!(body.contains("not_found"), "{body}");
    let (status, head, body) = request(
        status_port,
        b"HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(status, 200, "{head}");
    assert!(body.is_empty(), "HEAD has no body");
    // A header of 1 MiB and a request with 500 headers: refused (431) or cut, never a crash.
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let many: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: t\r\n{many}Connection: close\r\n\r\n");
    for raw in [huge, many] {
        if let Some((status, _, body)) = request(status_port, raw.as_bytes()) {
            assert_eq!(status, 431, "{body}");
            assert_nothing_internal("431", &body, &numbers, &texts);
        }
    }
    let (status, _) = get(status_port, "/api/v2/status.json").unwrap();
    assert_eq!(status, 200, "still serving after the bad requests");

    set_ready(db, true);
    wait_state(status_port, "Data", "operational");
    wait_state(status_port, "Storefront", "operational");
    // The outage was outside any maintenance: it counts.
    let data = component(status_port, "Data");
    let uptime = data["uptime"]["last_24h"].as_f64().unwrap();
    assert!(uptime < 100.0, "the outage counts: {uptime}");
}

#[test]
fn a_recreate_rollout_is_under_maintenance_and_its_outage_is_left_out_of_the_uptime() {
    let (public, status_port) = (free_port(), free_port());
    let stack = Stack::new(&format!(
        r#"
name: deliver
services:
  api:
    version: "1.0"
    command: [TESTBED, --port, "${{PORT}}", --version, "${{VERSION}}"]
    port: {public}
    probes:
      ready: {{http: {{path: /ready}}, interval: 200ms}}
"#
    ));
    up_with_status_page(&stack, status_port);
    wait_state(status_port, "api", "operational");

    // The new version is not ready for 6 s after it starts; recreate stops the old one first,
    // so the service is down for that long — inside the rollout's maintenance.
    let command = format!(
        "{} --port ${{PORT}} --version ${{VERSION}} --slow-start 6s",
        testbed_bin().display()
    );
    let output = stack.wharf(&[
        "deploy",
        "api",
        "--version",
        "2.0",
        "--strategy",
        "recreate",
        "--command",
        &command,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    wait_state(status_port, "api", "under_maintenance");
    let summary = json(status_port, "/api/v2/summary.json");
    assert_eq!(summary["status"]["indicator"], "maintenance");
    let maintenance = &summary["scheduled_maintenances"][0];
    assert_eq!(maintenance["name"], "Upgrade in progress");
    assert_eq!(maintenance["components"][0]["name"], "api");
    let (_, page) = get(status_port, "/").unwrap();
    assert!(page.contains("Upgrade in progress") && page.contains("Under maintenance"));

    let api = wait_state(status_port, "api", "operational");
    // The service really was down during the rollout…
    let ledger = stack.ledger();
    let start = seq_of(&ledger, "deploy.start", "api");
    let end = seq_of(&ledger, "deploy.succeeded", "api");
    let down_inside = ledger.iter().any(|e| {
        let seq = e["seq"].as_u64().unwrap();
        e["action"] == "service.state"
            && e["target"] == "api"
            && seq > start
            && seq < end
            && !matches!(e["details"]["to"].as_str(), Some("running" | "degraded"))
    });
    assert!(
        down_inside,
        "the recreate left api without a ready instance"
    );
    // …and none of it counts: the page's uptime is whole (a millisecond of ledger order
    // between the success and the state change may remain).
    let uptime = api["uptime"]["last_24h"].as_f64().unwrap();
    assert!(uptime > 99.0, "the maintenance is left out: {uptime}");

    // A reloaded manifest regroups the page: `wharf up` again with a `status_page:`.
    let manifest = std::fs::read_to_string(stack.path().join("wharf.yaml")).unwrap();
    std::fs::write(
        stack.path().join("wharf.yaml"),
        format!("{manifest}status_page:\n  title: Deliveries\n  components:\n    - {{name: Public API, services: [api]}}\n"),
    )
    .unwrap();
    let output = stack.wharf(&["up", "-d"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eventually("the reloaded grouping", Duration::from_secs(30), || {
        let components = json(status_port, "/api/v2/components.json");
        (components["page"]["name"] == "Deliveries"
            && components["components"][0]["name"] == "Public API")
            .then_some(())
    });
}

#[test]
fn public_incident_updates_and_a_maintenance_silence_reach_the_page_and_private_ones_do_not() {
    let status_port = free_port();
    let stack = Stack::new(
        r#"
name: shop
services:
  api:
    command: [TESTBED, --port, "${PORT}"]
    probes:
      ready: {http: {path: /ready}, interval: 200ms}
"#,
    );
    up_with_status_page(&stack, status_port);
    let declared = stack.wharf(&[
        "incident",
        "declare",
        "Checkout is slow",
        "--severity",
        "sev2",
        "--service",
        "api",
        "--message",
        "We are looking into slow checkouts.",
        "--public",
    ]);
    assert!(declared.status.success());
    let private = stack.wharf(&[
        "incident",
        "update",
        "INC-1",
        "--status",
        "identified",
        "--message",
        "db pool exhausted on host-7",
    ]);
    assert!(private.status.success());
    let incidents = eventually("the public incident", Duration::from_secs(10), || {
        let unresolved = json(status_port, "/api/v2/incidents/unresolved.json");
        let list = unresolved["incidents"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (!list.is_empty()).then_some(list)
    });
    assert_eq!(incidents[0]["name"], "Checkout is slow");
    assert_eq!(incidents[0]["impact"], "major");
    let text = serde_json::to_string(&incidents).unwrap();
    assert!(
        text.contains("We are looking into slow checkouts."),
        "{text}"
    );
    assert!(
        !text.contains("host-7"),
        "a private update stays private: {text}"
    );
    let (_, html) = get(status_port, "/").unwrap();
    assert!(html.contains("Checkout is slow"));
    assert!(!html.contains("host-7"));
    // Declared maintenance: a silence with --maintenance puts api under maintenance.
    let silenced = stack.wharf(&[
        "silence",
        "add",
        "--match",
        "service=api",
        "--for",
        "1h",
        "--reason",
        "planned upgrade",
        "--maintenance",
    ]);
    assert!(silenced.status.success());
    wait_state(status_port, "api", "under_maintenance");
    // Resolved: gone from the unresolved list.
    assert!(
        stack
            .wharf(&[
                "incident",
                "resolve",
                "INC-1",
                "--message",
                "Fixed.",
                "--public"
            ])
            .status
            .success()
    );
    eventually(
        "the incident resolved on the page",
        Duration::from_secs(10),
        || {
            let unresolved = json(status_port, "/api/v2/incidents/unresolved.json");
            unresolved["incidents"]
                .as_array()
                .is_some_and(Vec::is_empty)
                .then_some(())
        },
    );
}
