//! A fake of the SaaS receivers (PagerDuty, Slack, an Alertmanager webhook consumer), since
//! the real ones cannot be reached from tests: a real HTTP/1 server on a loopback port that
//! records every request (path, content type, JSON body, and the virtual time it arrived at)
//! and answers from a script, then 202 once the script is used up. Also the virtual clock the
//! couriers run on in tests: its sleeps return at once and move its time forward.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use wharf_notify::Clock;

/// What the fake answers to one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A status, extra headers and a body.
    Answer {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// Never answers (for timeouts).
    Hang,
    /// Answers the status with the request's own path and body echoed back, as a careless
    /// receiver might (to prove errors redact what comes back).
    Echo { status: u16 },
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply::Answer {
            status,
            headers: vec![],
            body: String::new(),
        }
    }

    pub fn with_body(status: u16, body: &str) -> Reply {
        Reply::Answer {
            status,
            headers: vec![],
            body: body.to_owned(),
        }
    }

    pub fn retry_after(status: u16, seconds: u64) -> Reply {
        Reply::Answer {
            status,
            headers: vec![("retry-after", seconds.to_string())],
            body: String::new(),
        }
    }
}

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub content_type: Option<String>,
    pub body: serde_json::Value,
    /// The virtual clock's time when it arrived (zero without a clock).
    pub at: Duration,
}

#[derive(Default)]
struct State {
    script: VecDeque<Reply>,
    recorded: Vec<Recorded>,
}

/// The running fake; it stops with the test's runtime.
#[derive(Clone)]
pub struct FakeReceiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    arrived: Arc<Notify>,
}

impl FakeReceiver {
    /// Starts a fake answering `script` in order, then 202.
    pub async fn start(script: Vec<Reply>, clock: Option<Arc<VirtualClock>>) -> FakeReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State {
            script: script.into(),
            recorded: vec![],
        }));
        let arrived = Arc::new(Notify::new());
        let fake = FakeReceiver {
            addr,
            state: state.clone(),
            arrived: arrived.clone(),
        };
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = state.clone();
                let clock = clock.clone();
                let arrived = arrived.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        handle(req, state.clone(), clock.clone(), arrived.clone())
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        fake
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request so far.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.state.lock().expect("state").recorded.clone()
    }

    /// Waits (bounded) until at least `n` requests have arrived; all of them.
    pub async fn wait_for(&self, n: usize) -> Vec<Recorded> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.arrived.notified();
            let recorded = self.recorded();
            if recorded.len() >= n {
                return recorded;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "fake receiver: {n} requests expected, {} arrived",
                    recorded.len()
                );
            }
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    clock: Option<Arc<VirtualClock>>,
    arrived: Arc<Notify>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    let reply = {
        let mut state = state.lock().expect("state");
        state.recorded.push(Recorded {
            path: path.clone(),
            content_type,
            body,
            at: clock.map(|c| c.now()).unwrap_or_default(),
        });
        state.script.pop_front()
    };
    arrived.notify_waiters();
    let reply = reply.unwrap_or(Reply::Answer {
        status: 202,
        headers: vec![],
        body: r#"{"status":"success","message":"Event processed"}"#.to_owned(),
    });
    let (status, headers, body) = match reply {
        Reply::Answer {
            status,
            headers,
            body,
        } => (status, headers, body),
        Reply::Echo { status } => (
            status,
            vec![],
            format!("bad request to {path}: {}", String::from_utf8_lossy(&bytes)),
        ),
        Reply::Hang => std::future::pending().await,
    };
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(name, value);
    }
    Ok(response
        .body(Full::new(Bytes::from(body)))
        .expect("response"))
}

/// A clock whose sleeps return at once and add their duration to its time; it records them.
#[derive(Default)]
pub struct VirtualClock {
    now: Mutex<Duration>,
    sleeps: Mutex<Vec<Duration>>,
}

impl VirtualClock {
    pub fn new() -> Arc<VirtualClock> {
        Arc::new(VirtualClock::default())
    }

    /// Every sleep asked for, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.sleeps.lock().expect("sleeps").clone()
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Duration {
        *self.now.lock().expect("now")
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        *self.now.lock().expect("now") += duration;
        self.sleeps.lock().expect("sleeps").push(duration);
        Box::pin(async {})
    }
}
