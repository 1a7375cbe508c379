//! Probes: one check of one target (HTTP request, TCP connect, command, PostgreSQL query,
//! Redis PING) with a timeout, returning pass / warn / fail, the latency and, on failure, the
//! reason in a person's words ("connection refused", "status 503", "timed out after 1s").
//!
//! Checks are plain async functions of their inputs, so the control plane runs each on its own
//! task: a slow probe never delays another.

mod postgres;
mod redis;

use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Bodies larger than this are not read further (a probe is not a download).
const MAX_BODY: usize = 1 << 20;

/// A probe's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    /// Passed, but slower than the warn bound.
    Warn,
    Fail,
}

/// The result of one probe run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    pub status: Status,
    pub latency: Duration,
    /// Why it failed or warned.
    pub reason: Option<String>,
}

impl Outcome {
    fn pass(latency: Duration) -> Self {
        Outcome {
            status: Status::Pass,
            latency,
            reason: None,
        }
    }

    fn fail(latency: Duration, reason: impl Into<String>) -> Self {
        Outcome {
            status: Status::Fail,
            latency,
            reason: Some(reason.into()),
        }
    }

    pub fn passed(&self) -> bool {
        self.status != Status::Fail
    }
}

/// An HTTP check, with the URL already resolved for the instance.
#[derive(Debug, Clone)]
pub struct HttpProbe {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// Accepted statuses; empty means 2xx and 3xx.
    pub expect_status: Vec<u16>,
    pub body_contains: Option<String>,
    /// (JSON pointer, expected value)
    pub json: Option<(String, serde_json::Value)>,
    pub max_latency: Option<Duration>,
    pub warn_latency: Option<Duration>,
}

/// What a probe checks.
#[derive(Debug, Clone)]
pub enum Check {
    Http(Box<HttpProbe>),
    Tcp {
        host: String,
        port: u16,
    },
    Exec {
        command: Vec<String>,
        expect_exit: i32,
    },
    /// An exec check run elsewhere than on this host — inside an instance's container — by
    /// the runner the control plane chose for the instance.
    ExecElsewhere {
        command: Vec<String>,
        expect_exit: i32,
        runner: std::sync::Arc<dyn Runner>,
    },
    /// Connect (no TLS) and run `SELECT 1`. `url` is a libpq connection string, either
    /// `postgres://user:pass@host:port/db?…` or `host=… port=… user=… password=… dbname=…`.
    Postgres {
        url: String,
    },
    /// Connect, `AUTH` if a password is given, `SELECT db` if given, then `PING`. `url` is
    /// `redis://[[user]:password@]host[:port][/db]`.
    Redis {
        url: String,
    },
}

/// Runs an exec check's command somewhere else (inside a container), so this crate needs no
/// knowledge of where.
pub trait Runner: Send + Sync + std::fmt::Debug {
    /// Runs `command` (argv) to its end; dropping the future abandons it.
    fn run(
        &self,
        command: Vec<String>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Ran, String>> + Send>>;
}

/// How a command a [`Runner`] ran ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    /// The exit code, `None` when unknown.
    pub code: Option<i64>,
    /// The end of its output (stdout and stderr).
    pub output: String,
}

/// Lines of output, and characters, a failed exec check's reason quotes at most.
const REASON_LINES: usize = 3;
const REASON_CHARS: usize = 300;

/// Runs probes; holds the HTTP connection pool shared by every HTTP probe.
#[derive(Clone, Debug)]
pub struct Prober {
    client: Client<HttpConnector, Empty<Bytes>>,
    /// Bounds how many probes run at once, so ten thousand probes due in the same second
    /// cannot exhaust file descriptors; waiting for a permit does not count against a probe's
    /// timeout, so a slow probe delays the others at most by queueing, never fails them.
    permits: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Probes in flight at once, per [`Prober`].
pub const MAX_CONCURRENT_PROBES: usize = 512;

impl Default for Prober {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        // Keep-alive connections: thousands of probes a second would otherwise churn through
        // ephemeral ports (TIME_WAIT). A pooled connection the server closed is retried on a
        // fresh one by hyper, so a server that went away is still seen as "connection refused".
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .build(connector);
        Prober {
            client,
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_PROBES)),
        }
    }
}

impl Prober {
    /// Runs `check`, bounded by `timeout`.
    pub async fn run(&self, check: &Check, timeout: Duration) -> Outcome {
        // The semaphore is never closed, so acquiring only waits.
        let _permit = self.permits.acquire().await.ok();
        let started = Instant::now();
        let run = async {
            match check {
                Check::Http(http) => self.http(http, started).await,
                Check::Tcp { host, port } => tcp(host, *port, started).await,
                Check::Exec {
                    command,
                    expect_exit,
                } => exec(command, *expect_exit, started).await,
                Check::ExecElsewhere {
                    command,
                    expect_exit,
                    runner,
                } => exec_elsewhere(runner.as_ref(), command, *expect_exit, started).await,
                Check::Postgres { url } => postgres::check(url, started).await,
                Check::Redis { url } => redis::check(url, started).await,
            }
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::fail(
                started.elapsed(),
                format!("timed out after {}", human(timeout)),
            ),
        }
    }

    async fn http(&self, probe: &HttpProbe, started: Instant) -> Outcome {
        let request = match build_request(probe) {
            Ok(request) => request,
            Err(reason) => return Outcome::fail(started.elapsed(), reason),
        };
        let response = match self.client.request(request).await {
            Ok(response) => response,
            Err(err) => return Outcome::fail(started.elapsed(), root_cause(&err)),
        };
        let status = response.status().as_u16();
        let body = match Limited::new(response.into_body(), MAX_BODY).collect().await {
            Ok(body) => body.to_bytes(),
            Err(err) => {
                return Outcome::fail(started.elapsed(), format!("reading the body: {err}"));
            }
        };
        let latency = started.elapsed();
        if let Some(reason) = http_failure(probe, status, &body) {
            return Outcome::fail(latency, reason);
        }
        latency_verdict(latency, probe.max_latency, probe.warn_latency)
    }
}

fn build_request(probe: &HttpProbe) -> Result<hyper::Request<Empty<Bytes>>, String> {
    let uri: hyper::Uri = probe
        .url
        .parse()
        .map_err(|err| format!("invalid URL {}: {err}", probe.url))?;
    let mut builder = hyper::Request::builder()
        .method(probe.method.as_str())
        .uri(uri)
        .header("user-agent", "wharf-probe");
    for (name, value) in &probe.headers {
        builder = builder.header(name, value);
    }
    builder
        .body(Empty::new())
        .map_err(|err| format!("invalid request: {err}"))
}

fn http_failure(probe: &HttpProbe, status: u16, body: &[u8]) -> Option<String> {
    let status_ok = if probe.expect_status.is_empty() {
        (200..400).contains(&status)
    } else {
        probe.expect_status.contains(&status)
    };
    if !status_ok {
        return Some(format!("status {status}"));
    }
    if let Some(needle) = &probe.body_contains
        && !String::from_utf8_lossy(body).contains(needle.as_str())
    {
        return Some(format!("body does not contain {needle:?}"));
    }
    if let Some((pointer, expected)) = &probe.json {
        let value: serde_json::Value = match serde_json::from_slice(body) {
            Ok(value) => value,
            Err(_) => return Some("body is not JSON".to_owned()),
        };
        match value.pointer(pointer) {
            Some(found) if found == expected => {}
            Some(found) => return Some(format!("{pointer} is {found}, expected {expected}")),
            None => return Some(format!("{pointer} is missing from the body")),
        }
    }
    None
}

fn latency_verdict(latency: Duration, max: Option<Duration>, warn: Option<Duration>) -> Outcome {
    if max.is_some_and(|max| latency > max) {
        let max = max.unwrap_or_default();
        return Outcome::fail(
            latency,
            format!("took {} (max {})", human(latency), human(max)),
        );
    }
    if let Some(warn) = warn.filter(|warn| latency > *warn) {
        return Outcome {
            status: Status::Warn,
            latency,
            reason: Some(format!(
                "took {} (warn above {})",
                human(latency),
                human(warn)
            )),
        };
    }
    Outcome::pass(latency)
}

async fn tcp(host: &str, port: u16, started: Instant) -> Outcome {
    match tokio::net::TcpStream::connect((host, port)).await {
        Ok(_) => Outcome::pass(started.elapsed()),
        Err(err) => Outcome::fail(started.elapsed(), io_reason(&err)),
    }
}

async fn exec(command: &[String], expect_exit: i32, started: Instant) -> Outcome {
    let Some((program, args)) = command.split_first() else {
        return Outcome::fail(started.elapsed(), "empty command");
    };
    let output = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // A timed-out probe must not leave its command running.
        .kill_on_drop(true)
        .output()
        .await;
    match output {
        Ok(output) if output.status.code() == Some(expect_exit) => Outcome::pass(started.elapsed()),
        Ok(output) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last_line = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim();
            let code = output.status.code().map_or_else(
                || "killed by a signal".to_owned(),
                |c| format!("exit code {c}"),
            );
            let reason = if last_line.is_empty() {
                code
            } else {
                format!("{code}: {last_line}")
            };
            Outcome::fail(started.elapsed(), reason)
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            Outcome::fail(started.elapsed(), format!("command not found: `{program}`"))
        }
        Err(err) => Outcome::fail(started.elapsed(), format!("cannot run `{program}`: {err}")),
    }
}

async fn exec_elsewhere(
    runner: &dyn Runner,
    command: &[String],
    expect_exit: i32,
    started: Instant,
) -> Outcome {
    if command.is_empty() {
        return Outcome::fail(started.elapsed(), "empty command");
    }
    match runner.run(command.to_vec()).await {
        Ok(ran) if ran.code == Some(i64::from(expect_exit)) => Outcome::pass(started.elapsed()),
        Ok(ran) => Outcome::fail(started.elapsed(), ran_reason(&ran)),
        Err(reason) => Outcome::fail(started.elapsed(), reason),
    }
}

/// `exit code 2: the last lines / of its output`, bounded.
fn ran_reason(ran: &Ran) -> String {
    let code = ran
        .code
        .map_or_else(|| "no exit code".to_owned(), |c| format!("exit code {c}"));
    let lines: Vec<&str> = ran
        .output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let last = lines[lines.len().saturating_sub(REASON_LINES)..].join(" / ");
    if last.is_empty() {
        return code;
    }
    let mut quoted: String = last.chars().rev().take(REASON_CHARS).collect();
    quoted = quoted.chars().rev().collect();
    if quoted.len() < last.len() {
        quoted.insert(0, '…');
    }
    format!("{code}: {quoted}")
}

/// The innermost error's message: "connection refused", not "client error (Connect)".
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(source) = current.source() {
        current = source;
    }
    match current.downcast_ref::<std::io::Error>() {
        Some(io) => io_reason(io),
        None => current.to_string(),
    }
}

pub(crate) fn io_reason(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        std::io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
        _ => err.to_string(),
    }
}

/// `1s`, `250ms`, `1.5s`.
pub fn human(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis >= 1000 && millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else if millis >= 1000 {
        format!("{:.1}s", duration.as_secs_f64())
    } else {
        format!("{millis}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers every command with the same result, and records what it was asked.
    #[derive(Debug)]
    struct Fixed(Result<Ran, String>);

    impl Runner for Fixed {
        fn run(
            &self,
            command: Vec<String>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Ran, String>> + Send>>
        {
            let answer = self.0.clone().map(|mut ran| {
                ran.output = ran.output.replace("$0", &command[0]);
                ran
            });
            Box::pin(async move { answer })
        }
    }

    fn elsewhere(answer: Result<Ran, String>) -> Check {
        Check::ExecElsewhere {
            command: vec!["pg_isready".to_owned()],
            expect_exit: 0,
            runner: std::sync::Arc::new(Fixed(answer)),
        }
    }

    #[tokio::test]
    async fn an_exec_elsewhere_passes_on_its_expected_code_and_says_why_it_failed() {
        let prober = Prober::default();
        let timeout = Duration::from_secs(1);
        let passed = prober
            .run(
                &elsewhere(Ok(Ran {
                    code: Some(0),
                    output: String::new(),
                })),
                timeout,
            )
            .await;
        assert_eq!(passed.status, Status::Pass);
        let many: String = (1..=10).map(|i| format!("line {i}\n")).collect();
        let failed = prober
            .run(
                &elsewhere(Ok(Ran {
                    code: Some(2),
                    output: format!("{many}\n$0: no response\n"),
                })),
                timeout,
            )
            .await;
        assert_eq!(
            failed.reason.as_deref(),
            Some("exit code 2: line 9 / line 10 / pg_isready: no response")
        );
        let refused = prober
            .run(
                &elsewhere(Err("cannot exec in the container: gone".into())),
                timeout,
            )
            .await;
        assert_eq!(
            refused.reason.as_deref(),
            Some("cannot exec in the container: gone")
        );
    }

    /// Never answers, and says when its future was dropped (the probe gave up on it).
    #[derive(Debug, Default)]
    struct Hangs(std::sync::Arc<std::sync::atomic::AtomicBool>);

    struct Abandoned(std::sync::Arc<std::sync::atomic::AtomicBool>);

    impl Drop for Abandoned {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl Runner for Hangs {
        fn run(
            &self,
            _command: Vec<String>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Ran, String>> + Send>>
        {
            let guard = Abandoned(self.0.clone());
            Box::pin(async move {
                let _guard = guard;
                std::future::pending::<Result<Ran, String>>().await
            })
        }
    }

    #[tokio::test]
    async fn an_exec_elsewhere_past_its_timeout_fails_and_is_abandoned() {
        let runner = Hangs::default();
        let abandoned = runner.0.clone();
        let check = Check::ExecElsewhere {
            command: vec!["sleep".to_owned()],
            expect_exit: 0,
            runner: std::sync::Arc::new(runner),
        };
        let outcome = Prober::default()
            .run(&check, Duration::from_millis(50))
            .await;
        assert_eq!(outcome.reason.as_deref(), Some("timed out after 50ms"));
        assert!(abandoned.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[test]
    fn a_long_output_is_quoted_by_its_end_only() {
        let reason = ran_reason(&Ran {
            code: Some(1),
            output: "x".repeat(10_000),
        });
        assert!(reason.starts_with("exit code 1: …x"), "{reason}");
        assert!(reason.chars().count() < REASON_CHARS + 20, "{reason}");
    }
}
