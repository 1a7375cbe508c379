//! The control plane's side of the proxy's admin API: one task that PUTs the latest route
//! table and reads the proxy's counters every [`STATS_EVERY`], and only ever sends events.
//!
//! Tables are numbered by the loop (`seq`); the task assigns the proxy's revisions, so a
//! proxy that kept a newer revision from an earlier run (409) is caught up with, not fought.
//! Each stats snapshot says which `seq` was in force when it was read: an instance removed in
//! table `seq` has drained once a snapshot at or after `seq` shows nothing in flight to it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use wharf_proxy::table::RouteTable;

/// How often the proxy's counters are read (the rollout analysis' sampling interval).
pub const STATS_EVERY: Duration = Duration::from_millis(250);

/// A table to apply, numbered by the loop.
#[derive(Debug, Clone)]
pub struct Desired {
    pub seq: u64,
    pub table: RouteTable,
}

/// What the proxy reported in one `/v1/stats`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Snapshot {
    #[serde(default)]
    pub uptime_ms: u64,
    #[serde(default)]
    pub services: BTreeMap<String, ServiceCounters>,
    #[serde(default)]
    pub instances: BTreeMap<String, InstanceCounters>,
    /// The proxy process, whose descriptors `listeners` names.
    #[serde(default)]
    pub pid: Option<i32>,
    /// Its open ports: each one's listening sockets' descriptors in the proxy.
    #[serde(default)]
    pub listeners: BTreeMap<String, Vec<i32>>,
    /// The loop's `seq` of the last table applied before this snapshot was read.
    #[serde(skip)]
    pub applied_seq: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServiceCounters {
    #[serde(default)]
    pub versions: BTreeMap<String, VersionSnapshot>,
}

/// Monotonic counters of one version since the proxy started.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct VersionSnapshot {
    #[serde(default)]
    pub responses: Classes,
    /// `[upper bound in µs, count]`, sparse, counts since start.
    #[serde(default)]
    pub latency_buckets: Vec<(u64, u64)>,
    /// The latency summary since start (`/metrics` needs the sum: `mean × count`).
    #[serde(default)]
    pub latency_us: LatencySummary,
}

/// The part of the proxy's latency summary `/metrics` uses.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct LatencySummary {
    #[serde(default)]
    pub count: u64,
    /// In µs.
    #[serde(default)]
    pub mean: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Classes {
    #[serde(rename = "2xx", default)]
    pub c2xx: u64,
    #[serde(rename = "3xx", default)]
    pub c3xx: u64,
    #[serde(rename = "4xx", default)]
    pub c4xx: u64,
    #[serde(rename = "5xx", default)]
    pub c5xx: u64,
}

impl Classes {
    pub fn total(&self) -> u64 {
        self.c2xx + self.c3xx + self.c4xx + self.c5xx
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct InstanceCounters {
    #[serde(default)]
    pub in_flight: u64,
}

/// Why a table was not applied.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub seq: u64,
    /// The proxy's error code (`bind_failed` for a port it cannot listen on).
    pub code: Option<String>,
    /// The service at fault, when the proxy named one (a port it cannot bind).
    pub service: Option<String>,
    pub message: String,
}

/// What the link tells the loop.
#[derive(Debug)]
pub enum ProxyReport {
    /// The proxy applied the table numbered `seq`.
    Applied { seq: u64 },
    /// The proxy refused a table (a port it cannot bind).
    Rejected(Rejection),
    /// The proxy's counters, every [`STATS_EVERY`].
    Stats(Box<Snapshot>),
}

/// Runs until the loop goes away: applies every new desired table (the latest wins; retried
/// while the proxy is unreachable) and reads stats on a timer. Reports go to `events`, wrapped
/// by `wrap` into the loop's own event type (so this module does not depend on it).
pub async fn run<E: Send + 'static>(
    socket: PathBuf,
    mut desired: watch::Receiver<Option<Desired>>,
    events: mpsc::Sender<E>,
    wrap: fn(ProxyReport) -> E,
) {
    let mut revision: u64 = 0;
    let mut applied_seq: u64 = 0;
    let mut pending: Option<Desired> = None;
    let mut stats = tokio::time::interval(STATS_EVERY);
    stats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = desired.changed() => {
                if changed.is_err() {
                    return;
                }
                pending = desired.borrow_and_update().clone();
            }
            _ = stats.tick() => {
                if let Ok(mut snapshot) = get_json::<Snapshot>(&socket, "/v1/stats").await {
                    snapshot.applied_seq = applied_seq;
                    if events.send(wrap(ProxyReport::Stats(Box::new(snapshot)))).await.is_err() {
                        return;
                    }
                }
            }
        }
        let Some(next) = pending.clone() else {
            continue;
        };
        if next.seq <= applied_seq {
            pending = None;
            continue;
        }
        match put_table(&socket, &next, &mut revision).await {
            Ok(()) => {
                applied_seq = next.seq;
                pending = None;
                let applied = ProxyReport::Applied { seq: next.seq };
                if events.send(wrap(applied)).await.is_err() {
                    return;
                }
            }
            Err(PutError::Refused(rejection)) => {
                pending = None;
                if events
                    .send(wrap(ProxyReport::Rejected(rejection)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            // Unreachable (starting, restarting): kept pending, tried again at the next
            // stats tick or table change.
            Err(PutError::Unreachable(reason)) => {
                tracing::debug!(reason, "proxy unreachable; the table stays pending");
            }
        }
    }
}

enum PutError {
    Refused(Rejection),
    Unreachable(String),
}

async fn put_table(
    socket: &std::path::Path,
    desired: &Desired,
    revision: &mut u64,
) -> Result<(), PutError> {
    for _ in 0..3 {
        let mut table = desired.table.clone();
        *revision += 1;
        table.revision = *revision;
        let body = serde_json::to_vec(&table).unwrap_or_default();
        let (status, answer) = request(socket, "PUT", "/v1/routes", body)
            .await
            .map_err(PutError::Unreachable)?;
        match status {
            200..=299 => return Ok(()),
            // The proxy holds a newer revision (kept from an earlier run): continue above it.
            409 => {
                let current: RouteTable = get_json(socket, "/v1/routes")
                    .await
                    .map_err(PutError::Unreachable)?;
                *revision = current.revision;
            }
            _ => {
                let error: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
                let message = error["error"]["message"]
                    .as_str()
                    .or(error["message"].as_str())
                    .unwrap_or("the proxy refused the route table")
                    .to_owned();
                let service = error["error"]["service"]
                    .as_str()
                    .or(error["service"].as_str())
                    .map(str::to_owned)
                    .or_else(|| named_service(&message));
                let code = error["error"]["code"].as_str().map(str::to_owned);
                return Err(PutError::Refused(Rejection {
                    seq: desired.seq,
                    code,
                    service,
                    message,
                }));
            }
        }
    }
    Err(PutError::Unreachable(
        "the proxy's revision kept moving".to_owned(),
    ))
}

/// The first `` `name` `` in a message.
fn named_service(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let end = start + message[start..].find('`')?;
    Some(message[start..end].to_owned())
}

/// Fetches the table the proxy serves now (at control-plane start, before any PUT).
pub async fn current_table(socket: &std::path::Path) -> Result<RouteTable, String> {
    get_json(socket, "/v1/routes").await
}

async fn get_json<T: serde::de::DeserializeOwned>(
    socket: &std::path::Path,
    path: &str,
) -> Result<T, String> {
    let (status, body) = request(socket, "GET", path, Vec::new()).await?;
    if status != 200 {
        return Err(format!("{path}: status {status}"));
    }
    serde_json::from_slice(&body).map_err(|err| format!("{path}: {err}"))
}

/// One request over a fresh connection (the admin socket is local; a connection costs
/// microseconds and nothing stays half-open across a proxy restart).
async fn request(
    socket: &std::path::Path,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<(u16, Bytes), String> {
    let exchange = async {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|err| format!("cannot reach the proxy at {}: {err}", socket.display()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|err| format!("proxy handshake: {err}"))?;
        tokio::spawn(connection);
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "wharf-proxy")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|err| err.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|err| format!("proxy request: {err}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|err| format!("proxy answer: {err}"))?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .unwrap_or_else(|_| Err(format!("the proxy did not answer {method} {path} in 5 s")))
}

/// Latency quantile (milliseconds) of the requests between two bucket snapshots.
pub fn window_quantile(newer: &[(u64, u64)], older: &[(u64, u64)], q: f64) -> Option<f64> {
    wharf_proxy::quantile_from_buckets(&wharf_proxy::bucket_delta(newer, older), q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_quantiles_count_only_the_requests_between_snapshots() {
        let older = [(1_000, 90), (300_000, 0)];
        let newer = [(1_000, 95), (300_000, 95)];
        // In the window: 5 fast, 95 slow → p95 is slow, and the 90 old fast ones do not count.
        let p95 = window_quantile(&newer, &older, 0.95).unwrap();
        assert!(p95 > 100.0 && p95 <= 300.0, "{p95}");
        let p05 = window_quantile(&newer, &older, 0.05).unwrap();
        assert!(p05 <= 1.0, "{p05}");
        assert_eq!(window_quantile(&older, &older, 0.95), None);
    }

    #[test]
    fn the_service_named_in_a_refusal_is_found() {
        assert_eq!(
            named_service("service `api`: cannot bind 0.0.0.0:80"),
            Some("api".to_owned())
        );
        assert_eq!(named_service("no names"), None);
    }
}
