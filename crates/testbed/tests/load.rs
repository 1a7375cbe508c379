//! The load generator against a real testbed on a loopback port: it holds its rate, does not
//! slow down for a slow upstream, and counts injected errors as failures of their version.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::sync::oneshot;
use wharf_testbed::Config;
use wharf_testbed::load::{self, LoadPlan};

/// A testbed served in-process on its own thread and runtime; shut down when dropped.
struct Upstream {
    address: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    fn start(args: &[&str]) -> Upstream {
        let config = Config::parse_from(["wharf-testbed", "--port", "0"].iter().chain(args));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        // Bound before the thread starts, so the port accepts connections on return.
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let address = listener.local_addr().unwrap();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let stopped = async {
                let _ = stopped.await;
            };
            runtime
                .block_on(wharf_testbed::serve(config, listener, stopped))
                .unwrap();
        });
        Upstream {
            address,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        drop(self.shutdown.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn plan(url: String, rate: f64, duration: Duration) -> LoadPlan {
    LoadPlan {
        max_duration: duration,
        ..LoadPlan::new(url, rate)
    }
}

#[test]
fn steady_rate_sends_the_scheduled_count_and_all_succeed() {
    let upstream = Upstream::start(&["--version", "v1"]);
    let run = load::start(plan(upstream.url("/"), 200.0, Duration::from_secs(1))).unwrap();
    let report = run.wait();
    assert!(report.finished);
    assert_eq!(report.total(), 200, "{}", report.as_json());
    assert_eq!(report.failures(), 0, "{}", report.as_json());
    assert_eq!(report.by_version().get("v1"), Some(&200));
    assert_eq!(report.by_status().get(&200), Some(&200));
    let rate = report.achieved_rate().unwrap();
    assert!((190.0..=210.0).contains(&rate), "achieved {rate} req/s");
    let lag = report.lag_quantile(0.95).unwrap();
    assert!(lag < Duration::from_millis(50), "p95 send lag {lag:?}");
}

#[test]
fn slow_upstream_does_not_throttle_the_schedule() {
    // 8 connections at 200 ms each would allow only 40 req/s in a closed loop.
    let upstream = Upstream::start(&["--version", "slow", "--latency", "200ms"]);
    let began = Instant::now();
    let report = load::start(plan(upstream.url("/"), 200.0, Duration::from_secs(1)))
        .unwrap()
        .wait();
    let took = began.elapsed();
    assert_eq!(report.total(), 200, "{}", report.as_json());
    assert_eq!(report.failures(), 0, "{}", report.as_json());
    let lag = report.lag_quantile(0.99).unwrap();
    assert!(lag < Duration::from_millis(100), "p99 send lag {lag:?}");
    let rate = report.achieved_rate().unwrap();
    assert!((190.0..=210.0).contains(&rate), "achieved {rate} req/s");
    assert!(report.p50().unwrap() >= Duration::from_millis(200));
    // The last request is due at 995 ms and takes 200 ms; a throttled run would take 5 s.
    assert!(took < Duration::from_secs(3), "run took {took:?}");
}

#[test]
fn injected_errors_count_as_failures_of_their_version() {
    let upstream = Upstream::start(&["--version", "bad", "--error-rate", "0.2"]);
    let report = load::start(LoadPlan {
        max_requests: Some(400),
        ..LoadPlan::new(upstream.url("/"), 400.0)
    })
    .unwrap()
    .wait();
    assert_eq!(report.total(), 400);
    let failures = report.failures();
    // Binomial(400, 0.2): mean 80, standard deviation 8; this band is ±5 of them.
    assert!((40..=120).contains(&failures), "{failures} failures");
    assert_eq!(report.failures_by_version().get("bad"), Some(&failures));
    assert_eq!(report.by_status().get(&500), Some(&failures));
    assert_eq!(report.by_version().get("bad"), Some(&400));
    let first = report.first_failure().unwrap();
    assert_eq!(report.failures_after(first.sent_at), failures);
    assert_eq!(
        report.failures_after(first.sent_at + Duration::from_nanos(1)),
        failures - 1
    );
}

#[test]
fn snapshot_shows_progress_and_stop_ends_the_run_early() {
    let upstream = Upstream::start(&["--version", "v1"]);
    let run = load::start(plan(upstream.url("/"), 100.0, Duration::from_secs(60))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = run.snapshot();
    while seen.total() < 50 {
        assert!(Instant::now() < deadline, "only {} answers", seen.total());
        std::thread::park_timeout(Duration::from_millis(10));
        seen = run.snapshot();
    }
    assert!(!seen.finished);
    let began_stop = Instant::now();
    let report = run.stop();
    assert!(began_stop.elapsed() < Duration::from_secs(2));
    assert!(report.finished);
    assert!(
        report.total() >= 50 && report.total() < 1000,
        "{}",
        report.total()
    );
    assert_eq!(report.total(), report.sent);
    assert_eq!(report.failures(), 0);
    let samples_in_order = report
        .samples
        .windows(2)
        .all(|w| w[0].sent_at <= w[1].sent_at);
    assert!(samples_in_order);
}

#[test]
fn refused_connections_are_failures_without_a_version() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);
    let report = load::start(LoadPlan {
        max_requests: Some(10),
        ..LoadPlan::new(url, 100.0)
    })
    .unwrap()
    .wait();
    assert_eq!(report.total(), 10);
    assert_eq!(report.failures(), 10);
    assert!(report.by_version().is_empty());
    assert!(report.samples.iter().all(|s| s.result.is_err()));
    let errors = report.errors();
    assert!(errors.keys().any(|e| e.contains("refused")), "{errors:?}");
}

#[test]
fn bad_plans_are_refused_before_starting() {
    let bad = [
        LoadPlan::new("https://127.0.0.1:1/", 10.0),
        LoadPlan::new("not a url", 10.0),
        LoadPlan::new("http://127.0.0.1:1/", 0.0),
        LoadPlan::new("http://127.0.0.1:1/", f64::NAN),
        LoadPlan {
            connections: 0,
            ..LoadPlan::new("http://127.0.0.1:1/", 10.0)
        },
        LoadPlan {
            headers: vec![("bad header".into(), "x".into())],
            ..LoadPlan::new("http://127.0.0.1:1/", 10.0)
        },
    ];
    for plan in bad {
        assert!(load::start(plan.clone()).is_err(), "{plan:?} was accepted");
    }
}

#[test]
fn extra_headers_reach_the_server_and_x_version_is_read() {
    // A one-shot raw HTTP server records the request head (the testbed does not echo headers).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/pinned", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let reply =
            "HTTP/1.1 503 Service Unavailable\r\nx-version: raw-1\r\ncontent-length: 0\r\n\r\n";
        stream.write_all(reply.as_bytes()).unwrap();
        String::from_utf8(head).unwrap()
    });
    let report = load::start(LoadPlan {
        max_requests: Some(1),
        headers: vec![("x-wharf-pin".into(), "v2".into())],
        ..LoadPlan::new(url, 10.0)
    })
    .unwrap()
    .wait();
    let head = server.join().unwrap().to_ascii_lowercase();
    assert!(head.starts_with("get /pinned http/1.1\r\n"), "{head}");
    assert!(head.contains("\r\nx-wharf-pin: v2\r\n"), "{head}");
    assert!(head.contains("\r\nhost: 127.0.0.1:"), "{head}");
    assert_eq!(report.failures_by_version().get("raw-1"), Some(&1));
    assert_eq!(report.by_status().get(&503), Some(&1));
}

#[test]
fn binary_prints_the_json_summary() {
    let upstream = Upstream::start(&["--version", "v7"]);
    let output = Command::new(env!("CARGO_BIN_EXE_wharf-load"))
        .args([
            "--url",
            &upstream.url("/"),
            "--rate",
            "100",
            "--requests",
            "20",
        ])
        .args(["--duration", "5s", "--header", "x-test: 1"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["total"], 20);
    assert_eq!(summary["failures"], 0);
    assert_eq!(summary["by_version"]["v7"], 20);
    assert_eq!(summary["by_status"]["200"], 20);
    assert!(summary["latency_ms"]["p99"].is_number());
    assert!(summary["first_failure_ms"].is_null());
}

#[test]
fn binary_refuses_bad_usage_with_exit_2() {
    let output = Command::new(env!("CARGO_BIN_EXE_wharf-load"))
        .args(["--url", "ftp://x/", "--rate", "10"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a usable URL"));
    let output = Command::new(env!("CARGO_BIN_EXE_wharf-load"))
        .args([
            "--url",
            "http://127.0.0.1:1/",
            "--rate",
            "10",
            "--duration",
            "ten",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}
