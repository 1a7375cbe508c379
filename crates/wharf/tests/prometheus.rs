//! `/metrics` against the real tools that read it: its text passes `promtool check metrics`,
//! and a real Prometheus (Debian's binary, its own temp dir and free port, a 1 s scrape of
//! `wharf up --metrics-listen`) answers every PromQL expression of the shipped Grafana
//! dashboard (`dashboards/wharf.json`) with data while a canary that answers errors takes
//! half the traffic — the canary's error rate by version among them.
//!
//! `scripts/test` installs Debian's `prometheus` package (which ships `promtool`); without it
//! these tests fail saying so, they do not skip.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;
use wharf_testbed::load::{self, LoadPlan};

/// A Debian binary the tests need, or a failure that says where it comes from.
fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{name}` is not installed: scripts/test installs it (apt-get install -y prometheus)"
        )
    })
}

/// One service behind the proxy whose testbed answers `error_rate` of its requests with 500,
/// a canary rollout, and `--metrics-listen` on a free port.
fn stack_with_metrics(port: u16, metrics_port: u16, error_rate: f64) -> Stack {
    let stack = Stack::new(&format!(
        r#"
name: observed
secrets:
  API_KEY: {{max_age: 90d}}
services:
  api:
    version: "1.0"
    command: [TESTBED, --port, "${{PORT}}", --version, "${{VERSION}}", --error-rate, "{error_rate}"]
    port: {port}
    replicas: 2
    secrets: [API_KEY]
    probes:
      ready: {{http: {{path: /ready}}, interval: 200ms}}
    rollout:
      strategy: canary
      steps: [{{weight: 50, pause: 10m}}, {{weight: 100}}]
      analysis: {{max_error_rate: 90%, min_requests: 20}}
"#
    ));
    // A secret with a policy, for the secret-age series and the dashboard's panel of them.
    stack.set_secret("API_KEY", "a-value-for-the-metrics-test");
    let addr = format!("127.0.0.1:{metrics_port}");
    let output = stack.wharf(&[
        "up",
        "-d",
        "--wait-timeout",
        "60s",
        "--metrics-listen",
        &addr,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stack
}

/// An HTTP/1.0 GET (so the answer is never chunked): status, headers, body.
fn http_get(port: u16, target: &str, accept: Option<&str>) -> Option<(u16, String, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(stream, "GET {target} HTTP/1.0\r\nHost: t\r\n{accept}\r\n").ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, head.to_owned(), body.to_owned()))
}

fn metrics_text(metrics_port: u16, accept: Option<&str>) -> (String, String) {
    let (status, head, body) = http_get(metrics_port, "/metrics", accept).expect("GET /metrics");
    assert_eq!(status, 200, "{head}\n{body}");
    (head, body)
}

/// `promtool check metrics` on `text`: its verdict (and what it said).
fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

#[test]
fn metrics_output_passes_promtool_check_metrics() {
    tool("promtool");
    let (port, metrics_port) = (free_port(), free_port());
    let stack = stack_with_metrics(port, metrics_port, 0.0);
    // Some traffic, so the per-version counters and histograms are there too.
    let mut plan = LoadPlan::new(format!("http://127.0.0.1:{port}/"), 50.0);
    plan.max_duration = Duration::from_secs(30);
    let run = load::start(plan).expect("load starts");
    let text = eventually(
        "the proxy's counters in /metrics",
        Duration::from_secs(20),
        || {
            let (_, text) = metrics_text(metrics_port, None);
            text.contains("wharf_http_request_duration_seconds_bucket{")
                .then_some(text)
        },
    );
    run.stop();
    // What `curl /metrics` gets: Prometheus' classic text format.
    let (head, _) = metrics_text(metrics_port, None);
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let (ok, said) = promtool_check(&text);
    assert!(
        ok,
        "promtool check metrics refused /metrics: {said}\n{text}"
    );
    for name in [
        "wharf_stack_healthy",
        "wharf_service_instances{service=\"api\",phase=\"running\"} 2",
        "wharf_service_restarts_total{service=\"api\"}",
        "wharf_http_requests_total{service=\"api\",version=\"1.0\",class=\"2xx\"}",
        "wharf_ledger_entries ",
        "wharf_secret_age_seconds{secret=\"API_KEY\"}",
        "wharf_secret_max_age_seconds{secret=\"API_KEY\"} 7776000",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    // Prometheus asks for OpenMetrics, and gets it.
    let (head, openmetrics) = metrics_text(
        metrics_port,
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    );
    assert!(
        head.contains("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{head}"
    );
    assert!(openmetrics.ends_with("# EOF\n"));
    // Only /metrics, only reads, and no token needed.
    assert_eq!(http_get(metrics_port, "/v1/status", None).unwrap().0, 404);
    drop(stack);
}

/// A Prometheus server of this test's own, stopped when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(scrape_port: u16) -> Prometheus {
        let binary = tool("prometheus");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: wharf\n    static_configs:\n      \
                 - targets: ['127.0.0.1:{scrape_port}']\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .current_dir(dir.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        let prometheus = Prometheus {
            child,
            port,
            _dir: dir,
        };
        eventually("Prometheus to be ready", Duration::from_secs(30), || {
            http_get(port, "/-/ready", None).filter(|(status, _, _)| *status == 200)
        });
        prometheus
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query through the HTTP API: the JSON answer.
    fn query(&self, expr: &str) -> Value {
        let target = format!("/api/v1/query?query={}", percent_encode(expr));
        let (_, _, body) = http_get(self.port, &target, None).expect("Prometheus answers");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs its function when dropped during a panic: a failing test's diagnostics.
struct OnPanic<F: Fn()>(F);

impl<F: Fn()> Drop for OnPanic<F> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            (self.0)();
        }
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every `expr` in the dashboard, wherever it sits.
fn dashboard_expressions(path: &Path) -> Vec<String> {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr", Value::String(expr)) => out.push(expr.clone()),
                        _ => walk(value, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(path).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut out = Vec::new();
    walk(&dashboard, &mut out);
    out
}

fn dashboard_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dashboards/wharf.json")
}

/// How often both versions answer 500 in the canary test.
const ERROR_RATE: f64 = 0.2;

#[test]
fn every_dashboard_expression_returns_data_from_a_real_prometheus_during_a_canary() {
    let expressions = dashboard_expressions(&dashboard_path());
    assert!(expressions.len() >= 10, "{expressions:?}");
    let (port, metrics_port) = (free_port(), free_port());
    // The stable version answers errors too, as often as the canary will: the analysis
    // compares the canary with it (a sequential test), so the canary stays in its step — half
    // the traffic for ten minutes — while Prometheus scrapes, instead of being rolled back.
    let stack = stack_with_metrics(port, metrics_port, ERROR_RATE);
    let prometheus = Prometheus::start(metrics_port);
    let mut plan = LoadPlan::new(format!("http://127.0.0.1:{port}/"), 100.0);
    plan.max_duration = Duration::from_secs(120);
    plan.timeout = Duration::from_secs(5);
    let run = load::start(plan).expect("load starts");
    eventually("answers through the proxy", Duration::from_secs(20), || {
        (run.snapshot().ok() >= 50).then_some(())
    });
    let canary = format!(
        "{} --port ${{PORT}} --version ${{VERSION}} --error-rate {ERROR_RATE}",
        testbed_bin().display()
    );
    let output = stack.wharf(&["deploy", "api", "--version", "2.0", "--command", &canary]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Prometheus has scraped the canary's errors: the error rate by version shows them.
    let error_rate = expressions
        .iter()
        .find(|e| e.contains("class=\"5xx\"") && e.contains('/'))
        .expect("the dashboard shows the error rate by version")
        .clone();
    // Should anything below fail, what Prometheus and wharf said goes with the failure.
    let _diagnose = OnPanic(|| {
        eprintln!(
            "/metrics:\n{}\nrollout: {}\nPrometheus log:\n{}",
            http_get(metrics_port, "/metrics", None).map_or(String::new(), |r| r.2),
            String::from_utf8_lossy(&stack.wharf(&["rollout", "status", "api"]).stdout),
            prometheus.log()
        )
    });
    let canary_rate = eventually(
        "Prometheus to see the canary's errors",
        Duration::from_secs(60),
        || {
            let answer = prometheus.query(&error_rate);
            answer["data"]["result"]
                .as_array()?
                .iter()
                .find(|r| r["metric"]["version"] == "2.0")
                .and_then(|r| r["value"][1].as_str()?.parse::<f64>().ok())
                .filter(|rate| *rate > 0.0)
        },
    );
    assert!(
        (0.05..0.6).contains(&canary_rate),
        "the canary answers {ERROR_RATE} of its requests with errors; Prometheus says {canary_rate}"
    );
    // Every expression parses and has data (each polled: a rate needs two scrapes).
    for expr in &expressions {
        let answer = eventually(
            &format!("data for `{expr}`"),
            Duration::from_secs(30),
            || {
                let answer = prometheus.query(expr);
                assert_eq!(
                    answer["status"],
                    "success",
                    "`{expr}` is refused: {answer}\n{}",
                    prometheus.log()
                );
                answer["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
                    .then_some(answer)
            },
        );
        eprintln!("{expr}: {}", answer["data"]["result"]);
    }
    // The stable version's error rate is there too, by its own label.
    let answer = prometheus.query(&error_rate);
    let stable = answer["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metric"]["version"] == "1.0")
        .and_then(|r| r["value"][1].as_str()?.parse::<f64>().ok())
        .expect("the stable version's error rate");
    assert!((0.05..0.6).contains(&stable), "{answer}");
    let phase = prometheus.query("wharf_rollout_phase == 1");
    assert_eq!(
        phase["data"]["result"][0]["metric"]["phase"], "step",
        "{phase}"
    );
    // The rollout shows in its step, half the traffic on each version.
    let weights = prometheus.query("wharf_rollout_weight_ratio");
    let new = weights["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metric"]["role"] == "new")
        .expect("the new version's weight");
    assert_eq!(new["metric"]["version"], "2.0");
    assert_eq!(new["value"][1], "0.5", "{weights}");
    run.stop();
}

#[test]
fn metrics_on_the_tls_api_listener_need_a_token_and_pass_promtool() {
    const TOKEN: &str = "a-break-glass-token-of-enough-length";
    let stack = Stack::new(
        "name: tlsmetrics\nservices:\n  web:\n    command: [TESTBED, --port, \"${PORT}\"]\n",
    );
    let listen = format!("127.0.0.1:{}", free_port());
    let up = up_api(stack.path(), &listen, TOKEN, &[]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let (cert, addr) = (api_cert(stack.path()), listen.parse().unwrap());
    let (status, _) = https_request(&cert, addr, "GET", "/metrics", None, None);
    assert_eq!(status, 401, "/metrics on the API listener needs a token");
    let (status, text) = https_request(&cert, addr, "GET", "/metrics", Some(TOKEN), None);
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("wharf_service_instances{service=\"web\",phase=\"running\"} 1"),
        "{text}"
    );
    let (ok, said) = promtool_check(&text);
    assert!(ok, "promtool check metrics refused it: {said}\n{text}");
}
