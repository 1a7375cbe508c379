//! wharf-testbed: a configurable HTTP service (HTTP/1.1 and h2c on hyper) that behaves like the
//! services wharf runs — versions, readiness that depends on other services, errors, latency,
//! crashes, slow starts, graceful shutdown — so tests and benchmarks exercise real sockets.
//! [`load`] is the other side: an open-loop load generator (binary `wharf-load`) that sends to
//! such services, usually through wharf's proxy, and reports every request's outcome.

mod config;
pub mod load;

pub use config::{Config, Latency, parse_duration};

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::Rng;
use tokio::net::TcpListener;

/// The largest body `/work?bytes=` will produce, so a typo cannot exhaust memory.
const MAX_WORK_BYTES: usize = 64 << 20;

struct State {
    config: Config,
    started: Instant,
    served: AtomicU64,
    in_flight: AtomicU64,
    /// SIGHUPs received (a configuration reload, for wharf's `reload: signal`).
    reloads: AtomicU64,
    ready: AtomicBool,
    live: AtomicBool,
    /// `/health` never answers (a hung process, for liveness-probe tests).
    health_hangs: AtomicBool,
    client: Client<HttpConnector, Empty<Bytes>>,
    version: HeaderValue,
    instance: HeaderValue,
}

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish
/// (at most `drain_timeout`).
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let version = HeaderValue::from_str(&config.service_version)
        .unwrap_or(HeaderValue::from_static("invalid"));
    let instance =
        HeaderValue::from_str(&config.instance).unwrap_or(HeaderValue::from_static("invalid"));
    let drain_timeout = config.drain_timeout;
    let state = Arc::new(State {
        config,
        started: Instant::now(),
        served: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        reloads: AtomicU64::new(0),
        ready: AtomicBool::new(true),
        live: AtomicBool::new(true),
        health_hangs: AtomicBool::new(false),
        client: Client::builder(TokioExecutor::new()).build_http(),
        version,
        instance,
    });
    // SIGHUP is a reload, not the default death: counted in `/stats`.
    if let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    {
        let state = state.clone();
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                state.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!("SIGHUP: reload");
            }
        });
    }
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        // Running out of file descriptors must not kill the server.
                        tracing::warn!(%err, "accept failed");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let service = hyper::service::service_fn(move |request| handle(state.clone(), request));
                let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("draining in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(drain_timeout) => tracing::warn!("drain timeout reached"),
    }
    Ok(())
}

async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let count = state.served.fetch_add(1, Ordering::Relaxed);
    if state.config.crash_after.is_some_and(|limit| count >= limit) {
        tracing::error!(count, "crashing as asked by --crash-after");
        std::process::exit(1);
    }
    state.in_flight.fetch_add(1, Ordering::Relaxed);
    let mut response = route(&state, request).await;
    state.in_flight.fetch_sub(1, Ordering::Relaxed);
    let headers = response.headers_mut();
    headers.insert("x-version", state.version.clone());
    headers.insert("x-instance", state.instance.clone());
    Ok(response)
}

async fn route(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    match (request.method(), path.as_str()) {
        (&Method::GET | &Method::HEAD, "/health") => {
            if state.health_hangs.load(Ordering::Relaxed) {
                std::future::pending::<()>().await;
            }
            health(state)
        }
        (&Method::GET | &Method::HEAD, "/ready") => ready(state).await,
        (&Method::GET, "/stats") => json(
            StatusCode::OK,
            serde_json::json!({
                "served": state.served.load(Ordering::Relaxed),
                "in_flight": state.in_flight.load(Ordering::Relaxed),
                "reloads": state.reloads.load(Ordering::Relaxed),
            }),
        ),
        (&Method::POST, "/control/ready") => control(&state.ready, None, request).await,
        (&Method::POST, "/control/health") => {
            control(&state.live, Some(&state.health_hangs), request).await
        }
        (_, "/work") => {
            let query = request.uri().query().unwrap_or_default().to_owned();
            // Drain the request body so a client streaming an upload is read in full.
            let _ = request.into_body().collect().await;
            work(state, &query).await
        }
        _ => {
            let _ = request.into_body().collect().await;
            default_route(state, &path).await
        }
    }
}

fn health(state: &State) -> Response<Full<Bytes>> {
    if state.live.load(Ordering::Relaxed) {
        json(
            StatusCode::OK,
            serde_json::json!({"status": "ok", "version": state.config.service_version}),
        )
    } else {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "unhealthy", "version": state.config.service_version}),
        )
    }
}

async fn ready(state: &State) -> Response<Full<Bytes>> {
    let mut failures = Vec::new();
    if let Some(left) = slow_start_left(state) {
        failures.push(format!("starting: {} ms left", left.as_millis()));
    }
    if !state.ready.load(Ordering::Relaxed) {
        failures.push("set not ready through /control/ready".to_owned());
    }
    failures.extend(dependency_failures(state).await);
    if let Some(url) = &state.config.database_url
        && let Err(reason) = database_answers(url).await
    {
        failures.push(reason);
    }
    let version = &state.config.service_version;
    if failures.is_empty() {
        json(
            StatusCode::OK,
            serde_json::json!({"status": "ready", "version": version}),
        )
    } else {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "not ready", "version": version, "failures": failures}),
        )
    }
}

/// Logs in to the database afresh and runs `SELECT 1`; the reason never carries the URL.
async fn database_answers(url: &str) -> Result<(), String> {
    let attempt = async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|err| {
                format!(
                    "database: {}",
                    err.as_db_error()
                        .map_or("cannot connect".to_owned(), |e| e.message().to_owned())
                )
            })?;
        tokio::spawn(connection);
        client
            .simple_query("SELECT 1")
            .await
            .map(drop)
            .map_err(|_| "database: SELECT 1 failed".to_owned())
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .unwrap_or_else(|_| Err("database: no answer in 2 s".to_owned()))
}

fn slow_start_left(state: &State) -> Option<Duration> {
    let period = state.config.slow_start?;
    period
        .checked_sub(state.started.elapsed())
        .filter(|left| !left.is_zero())
}

/// Checks every `--depends-on` URL concurrently, one second each at most.
async fn dependency_failures(state: &State) -> Vec<String> {
    let mut checks = tokio::task::JoinSet::new();
    for url in &state.config.depends_on {
        let (client, url) = (state.client.clone(), url.clone());
        checks.spawn(async move {
            let Ok(uri) = url.parse::<hyper::Uri>() else {
                return Some(format!("{url}: not a valid URL"));
            };
            match tokio::time::timeout(Duration::from_secs(1), client.get(uri)).await {
                Ok(Ok(response)) if response.status().is_success() => None,
                Ok(Ok(response)) => Some(format!("{url}: status {}", response.status().as_u16())),
                Ok(Err(err)) => Some(format!("{url}: {}", connect_error(&err))),
                Err(_) => Some(format!("{url}: timed out after 1s")),
            }
        });
    }
    let mut failures: Vec<String> = checks.join_all().await.into_iter().flatten().collect();
    failures.sort();
    failures
}

/// "connection refused" rather than hyper's layered "client error (Connect)".
fn connect_error(err: &hyper_util::client::legacy::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(err);
    let mut last = err.to_string();
    while let Some(current) = source {
        last = current.to_string();
        source = current.source();
    }
    last
}

/// Sets a flag from the body: `true` or `false`, and for `/control/health` also `hang`
/// (requests to `/health` then never answer).
async fn control(
    flag: &AtomicBool,
    hang: Option<&AtomicBool>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return text(StatusCode::BAD_REQUEST, "could not read the body\n"),
    };
    match (body.trim_ascii(), hang) {
        (b"true", _) => flag.store(true, Ordering::Relaxed),
        (b"false", _) => flag.store(false, Ordering::Relaxed),
        (b"hang", Some(hang)) => hang.store(true, Ordering::Relaxed),
        _ => return text(StatusCode::BAD_REQUEST, "send `true` or `false`\n"),
    }
    if let (b"true" | b"false", Some(hang)) = (body.trim_ascii(), hang) {
        hang.store(false, Ordering::Relaxed);
    }
    text(StatusCode::OK, "ok\n")
}

async fn work(state: &State, query: &str) -> Response<Full<Bytes>> {
    let mut millis = 0u64;
    let mut bytes = 0usize;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let parsed = match key {
            "ms" => value.parse().map(|v| millis = v).is_ok(),
            "bytes" => value.parse().map(|v| bytes = v).is_ok(),
            _ => true,
        };
        if !parsed {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("`{key}` takes a whole number, not `{value}`\n"),
            );
        }
    }
    if bytes > MAX_WORK_BYTES {
        return text(
            StatusCode::BAD_REQUEST,
            &format!("at most {MAX_WORK_BYTES} bytes\n"),
        );
    }
    if let Some(failure) = misbehave(state).await {
        return failure;
    }
    tokio::time::sleep(Duration::from_millis(millis)).await;
    let mut response = Response::new(Full::new(Bytes::from(vec![b'x'; bytes])));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

async fn default_route(state: &State, path: &str) -> Response<Full<Bytes>> {
    if let Some(failure) = misbehave(state).await {
        return failure;
    }
    let version = &state.config.service_version;
    text(
        StatusCode::OK,
        &format!(
            "wharf-testbed {version} instance {} path {path}\n",
            state.config.instance
        ),
    )
}

/// The configured bad behaviour: slow start, added latency, injected errors.
async fn misbehave(state: &State) -> Option<Response<Full<Bytes>>> {
    if slow_start_left(state).is_some() {
        return Some(text(StatusCode::SERVICE_UNAVAILABLE, "starting\n"));
    }
    let (delay, fail) = {
        let mut rng = rand::thread_rng();
        let delay =
            (!state.config.latency.is_zero()).then(|| state.config.latency.sample(&mut rng));
        (delay, rng.r#gen::<f64>() < state.config.error_rate)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let version = &state.config.service_version;
    fail.then(|| {
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("injected error from {version}\n"),
        )
    })
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
