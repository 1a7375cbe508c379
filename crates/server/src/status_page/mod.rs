//! The public status page (`wharf up --status-listen ADDR`): read-only, no token, plain HTTP
//! on its own listener with the TCP API's connection budget and header deadline (`tcp.rs`).
//!
//! Routes: `/` (HTML, `html.rs`), and Statuspage's public API shapes (`wharf_api::status_page`)
//! at `/api/v2/summary.json`, `/api/v2/status.json`, `/api/v2/components.json` and
//! `/api/v2/incidents/unresolved.json`. GET and HEAD only; anything else is 405, an unknown
//! path 404, both as `{"error": {"code", "message"}}`.
//!
//! Each answer is computed off the control loop: the loop is asked only for its status report
//! (as `GET /v1/status` does); the ledger's history is read on a blocking thread through a
//! read-only connection (`Store::open_reader`, `query_only`), and the pure parts —
//! the state mapping (`model.rs`), uptime from the replayed history (`history.rs`) and the
//! incidents (`incidents.rs`, behind the [`IncidentSource`] trait) — build the page, which is
//! kept for [`CACHE_FOR`] so a busy page costs one computation every few seconds.

mod history;
mod html;
mod incidents;
mod model;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;
use wharf_api::status_page::{
    AffectedComponent, Component, ComponentsAnswer, IncidentsAnswer, Maintenance, PageInfo,
    PageStatus, PublicIncident, StatusAnswer, Summary, Uptime,
};
use wharf_api::{ErrorCode, StatusReport};
use wharf_control::Handle;
use wharf_store::{EntryFilter, Store};

use crate::ApiError;

pub use history::{Fact, History, MaintenanceKind, Window, matched_services, replay};
/// HTML escaping, shared with the dashboard's server-filled pages.
pub(crate) use html::escape as escape_html;
pub use incidents::{IncidentSource, LedgerIncidents};
pub use model::{
    ComponentSpec, Grouping, Setup, component_status, groupings, indicator, service_status,
    stable_id,
};

/// How long a computed page is served before the next request computes it again.
pub const CACHE_FOR: Duration = Duration::from_secs(2);

/// Days of uptime bars on the HTML page.
const BAR_DAYS: usize = 30;

/// Everything one computation yields: the summary every route answers from, the recently
/// resolved incidents and the daily uptime bars (both for the HTML page).
#[derive(Debug, Clone)]
pub struct Page {
    pub summary: Summary,
    /// Incidents resolved in the last 7 days, newest first.
    pub recent: Vec<PublicIncident>,
    /// Per component (in order), the uptime of each of the last [`BAR_DAYS`] days, today first.
    pub bars: Vec<Vec<Option<f64>>>,
}

/// The status page's sources: the control plane (its status report, its store writer to get
/// a read-only connection from), the manifest's `status_page:` (the binary updates it when
/// the control plane loads a manifest), and the incidents.
#[derive(Clone)]
pub struct StatusPage {
    handle: Handle,
    setup: watch::Receiver<Setup>,
    incidents: Arc<dyn IncidentSource>,
    reader: Arc<std::sync::Mutex<Option<Store>>>,
    cache: Arc<tokio::sync::Mutex<Option<Cached>>>,
}

/// A computed page and when it was computed.
type Cached = (Instant, Arc<Page>);

/// Why no page could be made; the public learns only that there is none now.
#[derive(Debug)]
enum Unavailable {
    Stopping,
    Store(String),
}

impl StatusPage {
    pub fn new(handle: Handle, setup: watch::Receiver<Setup>) -> StatusPage {
        StatusPage {
            handle,
            setup,
            // The incidents' source: swap `LedgerIncidents` for a store-backed one here.
            incidents: Arc::new(LedgerIncidents),
            reader: Arc::new(std::sync::Mutex::new(None)),
            cache: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

    /// Feeds the page's incidents from another source.
    pub fn with_incidents(mut self, source: Arc<dyn IncidentSource>) -> StatusPage {
        self.incidents = source;
        self
    }

    /// The page, from the cache while it is fresh; one computation at a time.
    async fn page(&self) -> Result<Arc<Page>, Unavailable> {
        let mut cache = self.cache.lock().await;
        if let Some((at, page)) = cache.as_ref()
            && at.elapsed() < CACHE_FOR
        {
            return Ok(page.clone());
        }
        let page = Arc::new(self.compute().await?);
        *cache = Some((Instant::now(), page.clone()));
        Ok(page)
    }

    async fn compute(&self) -> Result<Page, Unavailable> {
        let report = self.handle.status().await.ok_or(Unavailable::Stopping)?;
        let setup = self.setup.borrow().clone();
        let names: Vec<&str> = report.services.iter().map(|s| s.name.as_str()).collect();
        let groups = groupings(&setup, &names);
        let reader = self.reader_store().await?;
        let source = self.incidents.clone();
        let blocking_groups = groups.clone();
        let (facts, incidents) = tokio::task::spawn_blocking(move || {
            let guard = reader.lock().unwrap_or_else(|e| e.into_inner());
            let store = guard.as_ref().ok_or("no reader")?;
            let facts = read_facts(store, history::ACTIONS).map_err(|e| e.to_string())?;
            let incidents = source
                .public_incidents(store, &blocking_groups)
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((facts, incidents))
        })
        .await
        .map_err(|e| Unavailable::Store(e.to_string()))?
        .map_err(Unavailable::Store)?;
        let now = Timestamp::now();
        let history = replay(&facts, &dependents_in(&report), now);
        Ok(build(&report, &setup, &groups, &history, incidents, now))
    }

    /// The read-only connection, opened once from the writer's (`Store::open_reader`, on the
    /// writer thread, which owns the database's first connection).
    async fn reader_store(&self) -> Result<Arc<std::sync::Mutex<Option<Store>>>, Unavailable> {
        let missing = self
            .reader
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none();
        if missing {
            let store = self
                .handle
                .writer()
                .run(|store| store.open_reader())
                .await
                .ok_or(Unavailable::Stopping)?
                .map_err(|e| Unavailable::Store(e.to_string()))?;
            *self.reader.lock().unwrap_or_else(|e| e.into_inner()) = Some(store);
        }
        Ok(self.reader.clone())
    }
}

/// The entries of `actions`, in ledger order, as facts; an entry whose time or details do not
/// parse is skipped (verification, not the status page, judges the ledger).
pub(crate) fn read_facts(
    store: &Store,
    actions: &[&str],
) -> Result<Vec<Fact>, wharf_store::StoreError> {
    let mut raw = Vec::new();
    for action in actions {
        raw.extend(store.ledger_entries(&EntryFilter {
            action: Some((*action).to_owned()),
            target: None,
        })?);
    }
    raw.sort_by_key(|entry| entry.seq);
    Ok(raw
        .into_iter()
        .filter_map(|entry| {
            Some(Fact {
                time: entry.time.parse().ok()?,
                action: entry.action,
                target: entry.target,
                details: serde_json::from_str(&entry.details).ok()?,
            })
        })
        .collect())
}

/// Who depends on whom, transitively, from the report's dependency lists (an in-place restore
/// holds every dependent of the datastore).
fn dependents_in(report: &StatusReport) -> impl Fn(&str) -> Vec<String> + use<> {
    let mut direct: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for service in &report.services {
        for dependency in &service.dependencies {
            direct
                .entry(dependency.name.clone())
                .or_default()
                .push(service.name.clone());
        }
    }
    move |root: &str| {
        let mut found: BTreeSet<String> = BTreeSet::new();
        let mut frontier = vec![root.to_owned()];
        while let Some(current) = frontier.pop() {
            for dependent in direct.get(&current).into_iter().flatten() {
                if found.insert(dependent.clone()) {
                    frontier.push(dependent.clone());
                }
            }
        }
        found.into_iter().collect()
    }
}

/// The page from its inputs (pure).
pub fn build(
    report: &StatusReport,
    setup: &Setup,
    groups: &[Grouping],
    history: &History,
    incidents: Vec<PublicIncident>,
    now: Timestamp,
) -> Page {
    let updated_at = now.to_string();
    let page_id = stable_id("page", &report.stack);
    let page = PageInfo {
        id: page_id.clone(),
        name: setup.title.clone().unwrap_or_else(|| report.stack.clone()),
        url: None,
        time_zone: "Etc/UTC".to_owned(),
        updated_at: updated_at.clone(),
    };
    let ago = |hours: i64| now - SignedDuration::from_hours(hours);
    let mut components = Vec::with_capacity(groups.len());
    let mut bars = Vec::with_capacity(groups.len());
    for (index, group) in groups.iter().enumerate() {
        let states: Vec<_> = group
            .services
            .iter()
            .filter_map(|name| report.services.iter().find(|s| s.name == *name))
            .map(|s| service_status(s, history.under_maintenance_now(&s.name, now)))
            .collect();
        components.push(Component {
            id: group.id.clone(),
            name: group.name.clone(),
            status: component_status(&states),
            position: index as u32 + 1,
            description: group.description.clone(),
            updated_at: updated_at.clone(),
            page_id: page_id.clone(),
            group: false,
            only_show_if_degraded: false,
            showcase: true,
            uptime: Uptime {
                last_24h: history.uptime(&group.services, ago(24), now),
                last_7d: history.uptime(&group.services, ago(24 * 7), now),
                last_30d: history.uptime(&group.services, ago(24 * 30), now),
            },
        });
        bars.push(
            (0..BAR_DAYS as i64)
                .map(|day| history.uptime(&group.services, ago(24 * (day + 1)), ago(24 * day)))
                .collect(),
        );
    }
    let affected = |services: &[String]| -> Vec<AffectedComponent> {
        groups
            .iter()
            .filter(|g| g.services.iter().any(|s| services.contains(s)))
            .map(|g| AffectedComponent {
                id: g.id.clone(),
                name: g.name.clone(),
            })
            .collect()
    };
    let scheduled_maintenances: Vec<Maintenance> = history
        .open_windows(now)
        .filter_map(|window| {
            let components = affected(&window.services);
            (!components.is_empty()).then(|| Maintenance {
                id: stable_id(
                    "maintenance",
                    &format!("{:?}:{}:{}", window.kind, window.subject, window.start),
                ),
                name: match window.kind {
                    MaintenanceKind::Rollout => "Upgrade in progress",
                    MaintenanceKind::Restore => "Data restore in progress",
                    MaintenanceKind::Declared => "Scheduled maintenance",
                }
                .to_owned(),
                status: "in_progress".to_owned(),
                started_at: window.start.to_string(),
                scheduled_until: window.until.map(|t| t.to_string()),
                components,
            })
        })
        .collect();
    let week_ago = ago(24 * 7).to_string();
    let (open, closed): (Vec<_>, Vec<_>) = incidents.into_iter().partition(|i| i.status.is_open());
    let recent = closed
        .into_iter()
        .filter(|i| i.resolved_at.as_deref().is_some_and(|t| *t >= *week_ago))
        .collect();
    let impacts: Vec<_> = open.iter().map(|i| i.impact).collect();
    let states: Vec<_> = components.iter().map(|c| c.status).collect();
    let indicator = indicator(&states, &impacts);
    Page {
        summary: Summary {
            page,
            status: PageStatus {
                indicator,
                description: indicator.description().to_owned(),
            },
            components,
            incidents: open,
            scheduled_maintenances,
        },
        recent,
        bars,
    }
}

/// The status page's router.
pub fn status_app(page: StatusPage) -> Router {
    Router::new()
        .route("/", get(html_page))
        .route("/index.html", get(html_page))
        .route("/api/v2/summary.json", get(summary))
        .route("/api/v2/status.json", get(status))
        .route("/api/v2/components.json", get(components))
        .route("/api/v2/incidents/unresolved.json", get(unresolved))
        .fallback(not_found)
        .method_not_allowed_fallback(read_only)
        .layer(axum::middleware::map_response(public_headers))
        .with_state(page)
}

/// Serves the status page on `listener` (plain HTTP) within `limits` until `shutdown`.
pub async fn serve_status(
    listener: tokio::net::TcpListener,
    page: StatusPage,
    limits: crate::ApiLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::tcp::serve(listener, None, status_app(page), limits, shutdown).await
}

/// Headers on every answer: nothing loads from elsewhere, nothing is sniffed or framed, the
/// JSON may be read by other origins (as Statuspage's is), nothing is cached for long.
async fn public_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-cache"),
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such page")
}

async fn read_only() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "the status page is read-only: GET or HEAD",
    )
}

impl From<Unavailable> for ApiError {
    fn from(why: Unavailable) -> Self {
        if let Unavailable::Store(error) = &why {
            tracing::warn!(%error, "the status page could not read the state");
        }
        ApiError::new(
            ErrorCode::Stopping,
            "the status page is not available right now",
        )
    }
}

async fn html_page(State(page): State<StatusPage>) -> Result<Response, ApiError> {
    let page = page.page().await?;
    Ok((
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html::render(&page),
    )
        .into_response())
}

async fn summary(State(page): State<StatusPage>) -> Result<Response, ApiError> {
    let page = page.page().await?;
    Ok(axum::Json(page.summary.clone()).into_response())
}

async fn status(State(page): State<StatusPage>) -> Result<Response, ApiError> {
    let page = page.page().await?;
    Ok(axum::Json(StatusAnswer {
        page: page.summary.page.clone(),
        status: page.summary.status.clone(),
    })
    .into_response())
}

async fn components(State(page): State<StatusPage>) -> Result<Response, ApiError> {
    let page = page.page().await?;
    Ok(axum::Json(ComponentsAnswer {
        page: page.summary.page.clone(),
        components: page.summary.components.clone(),
    })
    .into_response())
}

async fn unresolved(State(page): State<StatusPage>) -> Result<Response, ApiError> {
    let page = page.page().await?;
    Ok(axum::Json(IncidentsAnswer {
        page: page.summary.page.clone(),
        incidents: page.summary.incidents.clone(),
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use wharf_api::status_page::{ComponentStatus, Impact, IncidentStatus, Indicator};
    use wharf_api::{DependencyStatus, HealthStatus, ServiceState, ServiceStatus, StackStatus};

    fn service(name: &str, state: ServiceState, depends_on: &[&str]) -> ServiceStatus {
        ServiceStatus {
            name: name.to_owned(),
            version: "1".to_owned(),
            state,
            health: HealthStatus::Pass,
            external: false,
            desired: 1,
            running: 1,
            ready: 0,
            restarts: 0,
            reason: Some("connect to 10.1.2.3:5432: refused".to_owned()),
            blocked_by: None,
            probe_latency_ms: None,
            dependencies: depends_on
                .iter()
                .map(|d| DependencyStatus {
                    name: (*d).to_owned(),
                    critical: true,
                })
                .collect(),
            instances: Vec::new(),
            public_port: Some(8080),
            rollout: None,
            backups: None,
        }
    }

    fn report(services: Vec<ServiceStatus>) -> StatusReport {
        StatusReport {
            stack: "shop".to_owned(),
            control_pid: 4242,
            started_at: "2027-01-15T08:00:00Z".to_owned(),
            status: StackStatus::Ok,
            settled: true,
            healthy: true,
            services,
            pages: Vec::new(),
            silences: Vec::new(),
            incidents: Vec::new(),
        }
    }

    fn fact(second: i64, action: &str, target: &str, details: serde_json::Value) -> Fact {
        Fact {
            time: Timestamp::from_second(1_800_000_000 + second).unwrap(),
            action: action.to_owned(),
            target: target.to_owned(),
            details,
        }
    }

    #[test]
    fn an_in_place_restore_puts_the_datastore_and_its_dependents_under_maintenance() {
        let report = report(vec![
            service("db", ServiceState::Down, &[]),
            service("api", ServiceState::Stopped, &["db"]),
            service("web", ServiceState::Blocked, &["api"]),
            service("mail", ServiceState::Running, &[]),
        ]);
        let facts = vec![
            fact(0, "stack.up", "shop", json!({})),
            fact(1, "backup.restore_begin", "db", json!({"job": 1})),
        ];
        let now = Timestamp::from_second(1_800_000_060).unwrap();
        let history = replay(&facts, &dependents_in(&report), now);
        let setup = Setup {
            title: Some("Shop".to_owned()),
            ..Setup::default()
        };
        let names: Vec<&str> = report.services.iter().map(|s| s.name.as_str()).collect();
        let groups = groupings(&setup, &names);
        let page = build(&report, &setup, &groups, &history, Vec::new(), now);
        let states: Vec<_> = page
            .summary
            .components
            .iter()
            .map(|c| (c.name.as_str(), c.status))
            .collect();
        assert_eq!(
            states,
            [
                ("db", ComponentStatus::UnderMaintenance),
                ("api", ComponentStatus::UnderMaintenance),
                ("web", ComponentStatus::UnderMaintenance),
                ("mail", ComponentStatus::Operational),
            ]
        );
        assert_eq!(page.summary.status.indicator, Indicator::Maintenance);
        let maintenance = &page.summary.scheduled_maintenances[0];
        assert_eq!(maintenance.name, "Data restore in progress");
        assert_eq!(maintenance.components.len(), 3);
        assert_eq!(page.bars.len(), 4);
        assert_eq!(page.bars[0].len(), BAR_DAYS);
        let text = serde_json::to_string(&page.summary).unwrap();
        for internal in ["10.1.2.3", "5432", "8080", "4242", "refused"] {
            assert!(!text.contains(internal), "{internal} in {text}");
        }
        assert!(!html::render(&page).contains("10.1.2.3"));
    }

    #[test]
    fn open_incidents_raise_the_indicator_and_resolved_ones_are_recent() {
        let report = report(vec![service("api", ServiceState::Running, &[])]);
        let now = Timestamp::from_second(1_800_000_060).unwrap();
        let history = replay(&[], &dependents_in(&report), now);
        let incident = |status, impact| PublicIncident {
            id: "x".to_owned(),
            name: "Slow checkout".to_owned(),
            status,
            impact,
            created_at: now.to_string(),
            updated_at: now.to_string(),
            resolved_at: (!IncidentStatus::is_open(status)).then(|| now.to_string()),
            incident_updates: Vec::new(),
            components: Vec::new(),
        };
        let groups = groupings(&Setup::default(), &["api"]);
        let page = build(
            &report,
            &Setup::default(),
            &groups,
            &history,
            vec![
                incident(IncidentStatus::Identified, Impact::Major),
                incident(IncidentStatus::Resolved, Impact::Critical),
            ],
            now,
        );
        assert_eq!(page.summary.status.indicator, Indicator::Major);
        assert_eq!(page.summary.incidents.len(), 1);
        assert_eq!(page.recent.len(), 1);
        assert_eq!(page.summary.page.name, "shop");
        assert_eq!(page.summary.components[0].uptime.last_24h, None, "no data");
    }
}
