//! A client for the control plane's API on its unix socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use wharf_api::{ApiErrorBody, ErrorCode};

/// The socket's file name inside the state directory.
pub const SOCKET: &str = "control.sock";

pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET)
}

/// No control plane answers on the socket.
#[derive(Debug, thiserror::Error)]
#[error(
    "no control plane is running for this stack (state in {state_dir}); start it with `wharf up`"
)]
pub struct NotRunning {
    pub state_dir: String,
}

/// How long one API call may take, connection to the answer's last byte, unless `--timeout`
/// (or [`TIMEOUT_ENV`]) says otherwise: every route but `down` answers at once (a state route
/// after its transaction, which SQLite's busy timeout bounds to 10 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The environment variable behind `--timeout`, in the manifest's duration syntax (`90s`).
pub const TIMEOUT_ENV: &str = "WHARF_CLIENT_TIMEOUT";

/// The bound `--timeout` set for this process (see [`set_timeout`]).
static TIMEOUT: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();

/// Sets the bound on every API call of this process (`--timeout`, read once at start).
pub fn set_timeout(timeout: Duration) {
    let _ = TIMEOUT.set(timeout);
}

/// A control plane that accepted the connection (so it holds the lock) but did not answer in
/// time: stuck, stopped, or too loaded to serve.
#[derive(Debug, thiserror::Error)]
#[error(
    "the control plane of this stack ({pid}socket {socket}) did not answer within {}; is it stuck or stopped? (its log: {log}; --timeout or {TIMEOUT_ENV} sets the limit)",
    display_duration(*within)
)]
pub struct NoAnswer {
    pub within: Duration,
    /// `pid N, ` when the pid file names one.
    pub pid: String,
    pub socket: String,
    pub log: String,
}

impl NoAnswer {
    fn new(state_dir: &Path, within: Duration) -> NoAnswer {
        let pid = std::fs::read_to_string(state_dir.join(wharf_ops::PID_FILE))
            .ok()
            .map(|pid| pid.trim().to_owned())
            .filter(|pid| !pid.is_empty())
            .map_or_else(String::new, |pid| format!("pid {pid}, "));
        NoAnswer {
            within,
            pid,
            socket: socket_path(state_dir).display().to_string(),
            log: state_dir
                .join(crate::cmd::up::LOG_FILE)
                .display()
                .to_string(),
        }
    }
}

/// `30s`, `1500ms`: as the user would write it.
fn display_duration(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

/// The bound on one call: `--timeout` / [`TIMEOUT_ENV`] if given, else [`DEFAULT_TIMEOUT`].
pub fn timeout() -> anyhow::Result<Duration> {
    if let Some(timeout) = TIMEOUT.get() {
        return Ok(*timeout);
    }
    match std::env::var(TIMEOUT_ENV) {
        Ok(text) => crate::cmd::up::parse_duration(text.trim())
            .map_err(|error| anyhow::anyhow!("{TIMEOUT_ENV}={text}: {error}")),
        Err(_) => Ok(DEFAULT_TIMEOUT),
    }
}

/// Sends one request and returns the status and JSON body; a control plane that is not
/// running comes back as a [`NotRunning`] error, one that does not answer within
/// [`timeout`] as a [`NoAnswer`] error.
pub async fn call(
    state_dir: &Path,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let within = timeout()?;
    match tokio::time::timeout(within, exchange(state_dir, method, path, body)).await {
        Ok(answer) => answer,
        Err(_) => Err(NoAnswer::new(state_dir, within).into()),
    }
}

/// Like [`call_ok`], but waits for the answer as long as it takes: for a request the control
/// plane answers only once slow work is done (`POST /v1/down` answers when the stack has
/// stopped, after each tier's drains and stop grace, which no fixed bound fits). Ctrl-C
/// still ends the wait.
pub async fn call_ok_unbounded(
    state_dir: &Path,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    ok(exchange(state_dir, method, path, body).await?)
}

/// Connects, sends, and reads the whole answer.
async fn exchange(
    state_dir: &Path,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let socket = socket_path(state_dir);
    let stream = match tokio::net::UnixStream::connect(&socket).await {
        Ok(stream) => stream,
        Err(_) => {
            return Err(NotRunning {
                state_dir: state_dir.display().to_string(),
            }
            .into());
        }
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("cannot talk to the control plane")?;
    tokio::spawn(connection);
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "wharf")
        .header("content-type", "application/json");
    // Who acts: the control plane names the OS user this process runs as (the kernel tells
    // it), unless a person's token is given, which makes the request theirs, with its role.
    if let Some(token) = personal_token() {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request.body(Full::new(Bytes::from(bytes)))?;
    let response = sender
        .send_request(request)
        .await
        .context("the control plane did not answer")?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .context("reading the control plane's answer")?
        .to_bytes();
    let value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).context("the control plane sent invalid JSON")?
    };
    Ok((status, value))
}

/// Like [`call`], but a non-2xx answer becomes an error carrying the API's message.
pub async fn call_ok(
    state_dir: &Path,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    ok(call(state_dir, method, path, body).await?)
}

/// A non-2xx answer as an [`ApiRejected`] error.
fn ok((status, value): (u16, Value)) -> anyhow::Result<Value> {
    if !(200..300).contains(&status) {
        bail!(ApiRejected::from_answer(status, value));
    }
    Ok(value)
}

/// The control plane refused a request (unknown service, …): the user's input was wrong.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiRejected {
    /// The HTTP status.
    pub status: u16,
    /// The API's stable error code (`unknown_service`, `no_rollout`, `rejected`, …); `None`
    /// when the answer was not the API's error body.
    pub code: Option<ErrorCode>,
    pub message: String,
}

impl ApiRejected {
    /// A non-2xx answer, its body decoded as the API's [`ApiErrorBody`].
    pub fn from_answer(status: u16, body: Value) -> ApiRejected {
        match serde_json::from_value::<ApiErrorBody>(body) {
            Ok(body) => ApiRejected {
                status,
                code: Some(body.error.code),
                message: body.error.message,
            },
            Err(_) => ApiRejected {
                status,
                code: None,
                message: "request failed".to_owned(),
            },
        }
    }
}

/// `$WHARF_TOKEN`: a person's API token (`wharf token create`), sent on the socket too.
fn personal_token() -> Option<String> {
    std::env::var("WHARF_TOKEN")
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}
