//! `/metrics`: the control plane's [`MetricsSnapshot`] in the OpenMetrics text format, through
//! `prometheus-client`'s encoder. Rendering is a pure function of the snapshot (the loop takes
//! it in one go), so its text is snapshot-tested.
//!
//! Cardinality is bounded by the manifest, never by traffic: labels are services, versions
//! (those the proxy routed to since the control plane started), instance ordinals, secrets,
//! datastores and fixed enums (status class, instance phase, rollout phase, verdict).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};
use std::sync::{Arc, Mutex};
use wharf_api::{HealthStatus, InstancePhase, RolloutPhase};
use wharf_control::MetricsSnapshot;
use wharf_control::metrics::VersionTotals;

use crate::{AppState, gone};

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of Prometheus' classic text format, for clients that do not ask for
/// OpenMetrics (`curl`, `promtool check metrics`).
pub const CONTENT_TYPE_PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The latency histogram's bucket bounds, in seconds. The proxy's buckets are finer (log-spaced,
/// 4.4 % apart); each of its counts lands in the first of these at or above its upper bound,
/// so a request is never counted faster than it was.
pub const LATENCY_BOUNDS_SECONDS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const INSTANCE_PHASES: [InstancePhase; 7] = [
    InstancePhase::Running,
    InstancePhase::Draining,
    InstancePhase::Starting,
    InstancePhase::Backoff,
    InstancePhase::Stopping,
    InstancePhase::Exited,
    InstancePhase::Failed,
];

const ROLLOUT_PHASES: [RolloutPhase; 9] = [
    RolloutPhase::StoppingOld,
    RolloutPhase::WaitingReady,
    RolloutPhase::Step,
    RolloutPhase::Preview,
    RolloutPhase::Draining,
    RolloutPhase::Paused,
    RolloutPhase::Aborting,
    RolloutPhase::Succeeded,
    RolloutPhase::RolledBack,
];

const VERDICTS: [&str; 3] = ["pass", "fail", "continue"];

type Labels = Vec<(String, String)>;
type Gauges = Series<ConstGauge<f64>>;
type Counters = Series<ConstCounter<u64>>;

/// One metric family's series in the order they were added (`Family` keeps a hash map, whose
/// order changes from run to run; this keeps the text stable for people and snapshots).
#[derive(Debug)]
struct Series<M>(Arc<Mutex<Vec<(Labels, M)>>>);

impl<M> Default for Series<M> {
    fn default() -> Self {
        Series(Arc::default())
    }
}

impl<M> Clone for Series<M> {
    fn clone(&self) -> Self {
        Series(self.0.clone())
    }
}

impl<M> Series<M> {
    fn push(&self, labels: Labels, metric: M) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((labels, metric));
    }
}

impl<M: EncodeMetric + TypedMetric> EncodeMetric for Series<M> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let series = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // One series without labels is written without braces (`wharf_ledger_entries 42`).
        if let [(labels, metric)] = series.as_slice()
            && labels.is_empty()
        {
            return metric.encode(encoder);
        }
        for (labels, metric) in series.iter() {
            metric.encode(encoder.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }
}

/// The control plane's metrics (the identity layer asks for `Read`, as for every GET):
/// OpenMetrics when asked for, else Prometheus' classic text format.
#[utoipa::path(get, path = "/metrics", tag = "stack", security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Per service and version requests by status class and latency histograms (from the proxy, totals since the control plane started), instance states, restarts, probes, rollouts, secret ages, the ledger, backups and open pages", content(
            (String = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
            (String = "text/plain; version=0.0.4; charset=utf-8"))),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = wharf_api::ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = wharf_api::ApiErrorBody),
    ))]
pub(crate) async fn metrics_route(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, crate::ApiError> {
    crate::authorize(&state, &headers)?;
    Ok(serve(&state.handle, &headers).await)
}

/// Asks the control plane for a snapshot and answers it (shared by the API route and
/// `--metrics-listen`): OpenMetrics to a client that accepts it (Prometheus asks for it),
/// else the same figures in Prometheus' classic text format, as client libraries negotiate.
pub async fn serve(handle: &wharf_control::Handle, headers: &axum::http::HeaderMap) -> Response {
    let Some(snapshot) = handle.metrics().await else {
        return gone().into_response();
    };
    let text = render(&snapshot);
    if wants_openmetrics(headers) {
        ([(CONTENT_TYPE, CONTENT_TYPE_OPENMETRICS)], text).into_response()
    } else {
        let text = to_prometheus_text(&text);
        ([(CONTENT_TYPE, CONTENT_TYPE_PROMETHEUS_TEXT)], text).into_response()
    }
}

/// Whether the request's `Accept` names the OpenMetrics text format.
pub fn wants_openmetrics(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

/// OpenMetrics text as Prometheus' classic text format (0.0.4): a counter family is named
/// with its `_total` (as its samples are), and `# UNIT` and `# EOF` go (0.0.4 has neither).
/// Everything else [`render`] writes reads the same in both.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// `--metrics-listen`'s router: `GET`/`HEAD /metrics` only, no credentials (what it shows is
/// figures and the manifest's names, never a secret, host or error text).
pub fn metrics_app(handle: wharf_control::Handle) -> axum::Router {
    async fn metrics(
        State(handle): State<wharf_control::Handle>,
        headers: axum::http::HeaderMap,
    ) -> Response {
        serve(&handle, &headers).await
    }
    async fn not_found() -> crate::ApiError {
        crate::ApiError::new(
            wharf_api::ErrorCode::NotFound,
            "only /metrics is served here",
        )
    }
    async fn read_only() -> crate::ApiError {
        crate::ApiError::new(
            wharf_api::ErrorCode::MethodNotAllowed,
            "/metrics is read-only: GET or HEAD",
        )
    }
    axum::Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(read_only)
        .with_state(handle)
}

/// Serves [`metrics_app`] on `listener` (plain HTTP) within `limits` until `shutdown`.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    handle: wharf_control::Handle,
    limits: crate::ApiLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::tcp::serve(listener, None, metrics_app(handle), limits, shutdown).await
}

/// The snapshot as OpenMetrics text (ends with `# EOF`).
pub fn render(snapshot: &MetricsSnapshot) -> String {
    let mut registry = Registry::with_prefix("wharf");
    services(&mut registry, snapshot);
    traffic(&mut registry, &snapshot.traffic);
    rollouts(&mut registry, snapshot);
    upkeep(&mut registry, snapshot);
    let mut text = String::new();
    // Writing to a String cannot fail, and every name here is valid.
    encode(&mut text, &registry).expect("OpenMetrics encoding into a String");
    text
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn set(family: &Gauges, pairs: &[(&str, &str)], value: f64) {
    family.push(labels(pairs), ConstGauge::new(value));
}

fn add(family: &Counters, pairs: &[(&str, &str)], value: u64) {
    family.push(labels(pairs), ConstCounter::new(value));
}

fn gauge(registry: &mut Registry, name: &str, help: &str, unit: Option<Unit>) -> Gauges {
    let family = Gauges::default();
    match unit {
        Some(unit) => registry.register_with_unit(name, help, unit, family.clone()),
        None => registry.register(name, help, family.clone()),
    }
    family
}

fn counter(registry: &mut Registry, name: &str, help: &str) -> Counters {
    let family = Counters::default();
    registry.register(name, help, family.clone());
    family
}

fn bool_value(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// Stack health, services, instances and probes.
fn services(registry: &mut Registry, snapshot: &MetricsSnapshot) {
    let status = &snapshot.status;
    let healthy = gauge(
        registry,
        "stack_healthy",
        "1 when nothing failed, nothing is blocked and nothing is still starting",
        None,
    );
    set(
        &healthy,
        &[("stack", &status.stack)],
        bool_value(status.healthy),
    );
    let service_healthy = gauge(
        registry,
        "service_healthy",
        "1 when the service passes its health check",
        None,
    );
    let instances = gauge(
        registry,
        "service_instances",
        "Instances of the service by phase",
        None,
    );
    let desired = gauge(
        registry,
        "service_desired_instances",
        "Instances the manifest asks for",
        None,
    );
    let ready = gauge(
        registry,
        "service_ready_instances",
        "Instances running and ready",
        None,
    );
    let restarts = counter(
        registry,
        "service_restarts",
        "Restarts of the service's instances",
    );
    let probes = gauge(
        registry,
        "probe_results",
        "Instances (or the external service) whose last ready probe had this result",
        None,
    );
    let probe_duration = gauge(
        registry,
        "probe_duration",
        "How long the last ready probe of each instance took (`external` for a datastore wharf only probes)",
        Some(Unit::Seconds),
    );
    for service in &status.services {
        let name = service.name.as_str();
        set(
            &service_healthy,
            &[("service", name)],
            bool_value(service.health == HealthStatus::Pass),
        );
        set(&desired, &[("service", name)], f64::from(service.desired));
        set(&ready, &[("service", name)], f64::from(service.ready));
        add(&restarts, &[("service", name)], u64::from(service.restarts));
        for phase in INSTANCE_PHASES {
            let count = service
                .instances
                .iter()
                .filter(|i| i.phase == phase)
                .count();
            set(
                &instances,
                &[("service", name), ("phase", phase.as_str())],
                count as f64,
            );
        }
        let results: Vec<HealthStatus> = if service.external {
            vec![service.health]
        } else {
            service.instances.iter().filter_map(|i| i.probe).collect()
        };
        for result in [HealthStatus::Pass, HealthStatus::Warn, HealthStatus::Fail] {
            let count = results.iter().filter(|r| **r == result).count();
            set(
                &probes,
                &[("service", name), ("result", result.as_str())],
                count as f64,
            );
        }
        if let Some(ms) = service.probe_latency_ms {
            set(
                &probe_duration,
                &[("service", name), ("instance", "external")],
                ms as f64 / 1000.0,
            );
        }
        for instance in &service.instances {
            if let Some(ms) = instance.probe_latency_ms {
                let ordinal = instance.ordinal.to_string();
                set(
                    &probe_duration,
                    &[("service", name), ("instance", &ordinal)],
                    ms as f64 / 1000.0,
                );
            }
        }
    }
}

/// Requests through the proxy by status class, and their latency.
fn traffic(registry: &mut Registry, traffic: &[VersionTotals]) {
    let requests = counter(
        registry,
        "http_requests",
        "Responses the proxy returned, by service, version and status class",
    );
    let mut histograms = Histograms::default();
    for row in traffic {
        let classes = [
            ("2xx", row.responses.c2xx),
            ("3xx", row.responses.c3xx),
            ("4xx", row.responses.c4xx),
            ("5xx", row.responses.c5xx),
        ];
        for (class, count) in classes {
            let pairs = [
                ("service", row.service.as_str()),
                ("version", row.version.as_str()),
                ("class", class),
            ];
            add(&requests, &pairs, count);
        }
        histograms.0.push((
            labels(&[("service", &row.service), ("version", &row.version)]),
            HistogramValue::from_totals(row),
        ));
    }
    registry.register_with_unit(
        "http_request_duration",
        "Time to response headers through the proxy, by service and version",
        Unit::Seconds,
        histograms,
    );
}

/// Rollouts: phase, step, weights and the latest rollout's verdicts.
fn rollouts(registry: &mut Registry, snapshot: &MetricsSnapshot) {
    let phase = gauge(
        registry,
        "rollout_phase",
        "1 for the phase the service's current or latest rollout is in",
        None,
    );
    let step = gauge(
        registry,
        "rollout_step",
        "The canary step under way (1-based; 0 before the first)",
        None,
    );
    let steps = gauge(
        registry,
        "rollout_steps",
        "The rollout's number of steps",
        None,
    );
    let weight = gauge(
        registry,
        "rollout_weight",
        "Share of the service's requests routed to the rollout's stable and new versions",
        Some(Unit::Other("ratio".to_owned())),
    );
    let verdicts = gauge(
        registry,
        "rollout_verdicts",
        "Analysis verdicts of the service's current or latest rollout, by verdict",
        None,
    );
    for view in &snapshot.rollouts {
        let service = view.service.as_str();
        for candidate in ROLLOUT_PHASES {
            set(
                &phase,
                &[("service", service), ("phase", &candidate.to_string())],
                bool_value(candidate == view.phase),
            );
        }
        set(
            &step,
            &[("service", service)],
            view.step.map_or(0.0, |s| s as f64 + 1.0),
        );
        set(&steps, &[("service", service)], view.steps as f64);
        let roles = [
            ("stable", view.stable_version.as_str(), view.weight_stable),
            ("new", view.new_version.as_str(), view.weight_new),
        ];
        for (role, version, value) in roles {
            set(
                &weight,
                &[("service", service), ("role", role), ("version", version)],
                f64::from(value) / 100.0,
            );
        }
        for verdict in VERDICTS {
            let count = view
                .history
                .iter()
                .filter(|h| h["action"] == "deploy.verdict" && h["details"]["verdict"] == verdict)
                .count();
            set(
                &verdicts,
                &[("service", service), ("verdict", verdict)],
                count as f64,
            );
        }
    }
}

/// Secrets, the ledger, backups and alert pages.
fn upkeep(registry: &mut Registry, snapshot: &MetricsSnapshot) {
    let age = gauge(
        registry,
        "secret_age",
        "Time since the secret's latest version was set",
        Some(Unit::Seconds),
    );
    let max_age = gauge(
        registry,
        "secret_max_age",
        "The secret policy's max_age",
        Some(Unit::Seconds),
    );
    for secret in &snapshot.secrets {
        if let Some(seconds) = secret.age_seconds {
            set(&age, &[("secret", &secret.name)], seconds);
        }
        if let Some(seconds) = secret.max_age_seconds {
            set(&max_age, &[("secret", &secret.name)], seconds);
        }
    }
    if let Some(ledger) = snapshot.ledger {
        let entries = gauge(registry, "ledger_entries", "Entries in the ledger", None);
        set(&entries, &[], ledger.entries as f64);
        let checkpoints = gauge(registry, "ledger_checkpoints", "Signed checkpoints", None);
        set(&checkpoints, &[], ledger.checkpoints as f64);
        let covered = gauge(
            registry,
            "ledger_checkpointed_entries",
            "The ledger size the latest checkpoint signed (0: none yet)",
            None,
        );
        set(&covered, &[], ledger.checkpointed_entries as f64);
    }
    let backup_age = gauge(
        registry,
        "backup_age",
        "Time since the datastore's last successful backup",
        Some(Unit::Seconds),
    );
    for service in &snapshot.status.services {
        let last = service
            .backups
            .as_ref()
            .and_then(|b| b.last_success.as_deref())
            .and_then(|t| t.parse::<jiff::Timestamp>().ok());
        if let Some(last) = last {
            let seconds = snapshot.at.duration_since(last).as_secs_f64().max(0.0);
            set(&backup_age, &[("service", &service.name)], seconds);
        }
    }
    let pages = gauge(registry, "alert_pages_open", "Alert pages open now", None);
    set(&pages, &[], snapshot.status.pages.len() as f64);
    // Each open page by its alert and root cause (both bounded: the manifest's alerts, and a
    // service, `secret:NAME` or `NAME:backups`), and whether its notice was sent or a
    // silence holds it.
    let page = gauge(
        registry,
        "alert_page_open",
        "1 for each alert page open now, by alert, root cause and notice state",
        None,
    );
    for open in &snapshot.status.pages {
        let state = if open.silenced_by.is_some() {
            "silenced"
        } else {
            "sent"
        };
        set(
            &page,
            &[
                ("alert", &open.alert),
                ("root_cause", &open.root_cause),
                ("state", state),
            ],
            1.0,
        );
    }
}

/// Every version's latency histogram, encoded as one metric family.
#[derive(Debug, Default)]
struct Histograms(Vec<(Labels, HistogramValue)>);

#[derive(Debug)]
struct HistogramValue {
    sum_seconds: f64,
    count: u64,
    /// Non-cumulative counts per bound of [`LATENCY_BOUNDS_SECONDS`], then `+Inf`.
    buckets: Vec<(f64, u64)>,
}

impl HistogramValue {
    fn from_totals(row: &VersionTotals) -> HistogramValue {
        let mut buckets: Vec<(f64, u64)> = LATENCY_BOUNDS_SECONDS
            .iter()
            .map(|&bound| (bound, 0))
            .chain(std::iter::once((f64::MAX, 0)))
            .collect();
        for (&bound_us, &count) in &row.latency_buckets {
            let seconds = bound_us as f64 / 1e6;
            let slot = LATENCY_BOUNDS_SECONDS
                .iter()
                .position(|&le| seconds <= le)
                .unwrap_or(LATENCY_BOUNDS_SECONDS.len());
            buckets[slot].1 += count;
        }
        HistogramValue {
            sum_seconds: row.latency_sum_us / 1e6,
            count: row.latency_buckets.values().sum(),
            buckets,
        }
    }
}

impl EncodeMetric for Histograms {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, value) in &self.0 {
            encoder
                .encode_family(labels)?
                .encode_histogram::<NoLabelSet>(
                    value.sum_seconds,
                    value.count,
                    &value.buckets,
                    None,
                )?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests;
