//! The testbed binary over real sockets: every knob does what it says, because every later
//! test of wharf leans on it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running testbed process, killed when dropped.
struct Testbed {
    child: Child,
    port: u16,
}

impl Testbed {
    fn start(args: &[&str]) -> Testbed {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wharf-testbed"))
            .args(["--port", "0"])
            .args(args)
            .env("WHARF_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("testbed starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        Testbed { child, port }
    }

    fn get(&self, path: &str) -> Reply {
        request(self.port, "GET", path, "").expect("request answered")
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait_exit(&mut self, deadline: Duration) -> Option<i32> {
        let until = Instant::now() + deadline;
        while Instant::now() < until {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            // A short timed park between polls keeps the loop from spinning a core.
            std::thread::park_timeout(Duration::from_millis(10));
        }
        panic!("testbed did not exit within {deadline:?}");
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: String,
    body: String,
}

/// One HTTP/1.1 request on a fresh connection, read to the end.
fn request(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<Reply> {
    request_within(port, method, path, body, Duration::from_secs(10))
}

fn request_within(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
    limit: Duration,
) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(limit))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no response: {raw:?}")))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok(Reply {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_owned(),
    })
}

/// Polls `check` until it holds or the deadline passes.
fn eventually(deadline: Duration, mut check: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if check() {
            return true;
        }
        std::thread::yield_now();
    }
    false
}

#[test]
fn version_is_in_every_body_and_header() {
    let bed = Testbed::start(&["--version", "2.1.0", "--instance", "api-1"]);
    for path in ["/", "/anything", "/health", "/ready"] {
        let reply = bed.get(path);
        assert_eq!(reply.status, 200, "{path}: {reply:?}");
        assert!(
            reply.headers.contains("x-version: 2.1.0"),
            "{path}: {reply:?}"
        );
        assert!(reply.body.contains("2.1.0"), "{path}: {reply:?}");
    }
    assert!(bed.get("/").headers.contains("x-instance: api-1"));
}

#[test]
fn work_sleeps_and_returns_the_asked_bytes() {
    let bed = Testbed::start(&[]);
    let started = Instant::now();
    let reply = bed.get("/work?ms=100&bytes=5000");
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!((reply.status, reply.body.len()), (200, 5000));
    assert_eq!(bed.get("/work?ms=abc").status, 400);
}

#[test]
fn ready_follows_its_dependencies_and_names_the_one_down() {
    let mut db = Testbed::start(&["--version", "db"]);
    let url = format!("http://127.0.0.1:{}/ready", db.port);
    let api = Testbed::start(&["--depends-on", &url]);
    assert_eq!(api.get("/ready").status, 200);
    db.terminate();
    db.wait_exit(Duration::from_secs(10));
    let reply = api.get("/ready");
    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(
        reply.body.contains(&url) && reply.body.contains("refused"),
        "{reply:?}"
    );
    // Liveness does not depend on anyone else.
    assert_eq!(api.get("/health").status, 200);
}

#[test]
fn control_endpoints_flip_readiness_and_liveness() {
    let bed = Testbed::start(&[]);
    assert_eq!(
        request(bed.port, "POST", "/control/ready", "false")
            .unwrap()
            .status,
        200
    );
    assert_eq!(bed.get("/ready").status, 503);
    assert_eq!(
        request(bed.port, "POST", "/control/ready", "true")
            .unwrap()
            .status,
        200
    );
    assert_eq!(bed.get("/ready").status, 200);
    assert_eq!(
        request(bed.port, "POST", "/control/health", "false")
            .unwrap()
            .status,
        200
    );
    assert_eq!(bed.get("/health").status, 503);
    assert_eq!(
        request(bed.port, "POST", "/control/health", "hang")
            .unwrap()
            .status,
        200
    );
    let hung = request_within(bed.port, "GET", "/health", "", Duration::from_millis(300));
    assert!(hung.is_err(), "a hanging /health never answers: {hung:?}");
    assert_eq!(bed.get("/ready").status, 200, "only /health hangs");
    assert_eq!(
        request(bed.port, "POST", "/control/health", "true")
            .unwrap()
            .status,
        200
    );
    assert_eq!(bed.get("/health").status, 200);
    assert_eq!(
        request(bed.port, "POST", "/control/health", "maybe")
            .unwrap()
            .status,
        400
    );
}

#[test]
fn error_rate_injects_server_errors_in_proportion() {
    let all = Testbed::start(&["--error-rate", "1.0"]);
    assert!((0..20).all(|_| all.get("/").status == 500));
    assert_eq!(
        all.get("/health").status,
        200,
        "probes are never failed by injection"
    );
    let half = Testbed::start(&["--error-rate", "0.5"]);
    let errors = (0..400).filter(|_| half.get("/").status == 500).count();
    // Binomial(400, 0.5): 120..280 is more than 8 standard deviations wide.
    assert!((120..280).contains(&errors), "{errors} errors of 400");
}

#[test]
fn fixed_latency_delays_every_answer() {
    let bed = Testbed::start(&["--latency", "80ms"]);
    let started = Instant::now();
    assert_eq!(bed.get("/").status, 200);
    assert!(started.elapsed() >= Duration::from_millis(80));
}

#[test]
fn crash_after_serves_n_requests_then_exits_without_answering() {
    let mut bed = Testbed::start(&["--crash-after", "3"]);
    for _ in 0..3 {
        assert_eq!(bed.get("/").status, 200);
    }
    assert!(
        request(bed.port, "GET", "/", "").is_err(),
        "the fourth request gets no answer"
    );
    assert_eq!(bed.wait_exit(Duration::from_secs(10)), Some(1));
}

#[test]
fn slow_start_is_not_ready_until_the_period_ends() {
    let bed = Testbed::start(&["--slow-start", "700ms"]);
    let reply = bed.get("/ready");
    assert_eq!(reply.status, 503);
    assert!(reply.body.contains("starting"), "{reply:?}");
    assert_eq!(bed.get("/health").status, 200);
    assert!(eventually(Duration::from_secs(10), || bed
        .get("/ready")
        .status
        == 200));
}

#[test]
fn sigterm_finishes_in_flight_requests_then_exits_cleanly() {
    let mut bed = Testbed::start(&[]);
    let port = bed.port;
    let slow = std::thread::spawn(move || request(port, "GET", "/work?ms=1000&bytes=10", ""));
    // The /stats request itself is in flight too, hence 2.
    assert!(eventually(Duration::from_secs(10), || {
        let stats: serde_json::Value = serde_json::from_str(&bed.get("/stats").body).unwrap();
        stats["in_flight"].as_u64() >= Some(2)
    }));
    bed.terminate();
    let reply = slow.join().unwrap().expect("in-flight request answered");
    assert_eq!((reply.status, reply.body.as_str()), (200, "xxxxxxxxxx"));
    assert_eq!(bed.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "no longer listening"
    );
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_wharf-testbed"))
        .args(["--port", &port])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot listen on 127.0.0.1:{port}: the port is already in use"
        )),
        "{stderr}"
    );
}

#[test]
fn bad_flags_are_rejected() {
    for args in [
        &["--port", "1", "--error-rate", "2"][..],
        &["--port", "1", "--latency", "gauss:1ms"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_wharf-testbed"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
}
