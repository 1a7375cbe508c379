//! A rollout on a cluster: wharf's rollout state machine (`wharf-rollout`, the same one the
//! local control plane runs) driven against the Kubernetes API.
//!
//! The new version is its own Deployment and Service beside the stable one. The split is a
//! [`Router`]: the weights of the service's HTTPRoute (Gateway API, [`GatewayRouter`]), moved
//! by one JSON patch per step and analysed on counters from Prometheus; or wharf's own proxy
//! as the router ([`crate::proxy_router::ProxyRouter`]), fed route tables through the API
//! server's pod proxy and analysed on its own per-version counters. The machine's actions map
//! to cluster calls:
//!
//! | action | on the cluster |
//! |---|---|
//! | start new instances | server-side apply of the version's ConfigMap, Deployment, Service, PDB; watch until available |
//! | set weights | one update of the split — a route patch, or one table per router pod — skipped where it is in place already; to put all traffic back on stable, first wait until the stable Deployment is fully available |
//! | stop old / new instances | drop the version from the split, then delete its objects (found by labels) |
//!
//! Crash safety: the state is handed to the [`Journal`] (with the ledger entries of the step)
//! *before* the actions run, and every action is idempotent against the cluster's state — a
//! resumed rollout re-applies what its phase expects and updates the split only where it
//! differs, so a control plane killed after an update sends no second one.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;
use wharf_manifest::model::{self, Stack};
use wharf_rollout::{
    Action, At, Event, Outcome, Phase, Plan, Policy, Rollout, Strategy, VersionCounters, Window,
};

use crate::cluster::{Cluster, ClusterError};
use crate::names::{dns_label, joined, label_value};
use crate::render::{GatewayRef, SERVICE_LABEL, Target, VERSION_LABEL, render, version_of};
use crate::route::{RouteError, backend_weights, weights_patch};

/// One version of the service on the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRef {
    pub version: String,
    /// Its Deployment (and, with a Gateway, its Service and route backend): `api-1-4-0`.
    pub workload: String,
}

/// A rendered object kept in the persisted state, so a resumed rollout applies the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredObject {
    pub kind: String,
    pub name: String,
    pub value: Value,
}

/// What splits a service's traffic on the cluster (found there by `prepare`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// The service's HTTPRoute (rollouts saved before routers existed read as this).
    #[default]
    Gateway,
    /// wharf's own proxy: the `SERVICE-router` Deployment, fed by its ConfigMap and admin API.
    Proxy,
}

/// A rollout of one service on a cluster: what [`Journal`] persists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterRollout {
    pub stack: String,
    pub service: String,
    pub namespace: String,
    /// How the traffic is split.
    #[serde(default)]
    pub split: Split,
    /// The service's HTTPRoute (with [`Split::Gateway`]).
    pub route: String,
    pub port: u16,
    pub stable: VersionRef,
    pub new: VersionRef,
    pub new_objects: Vec<StoredObject>,
    pub machine: Rollout,
}

/// One ledger entry a step asks for: a milestone's action text (`deploy.step`), the target
/// (`SERVICE@VERSION`) and its numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub action: &'static str,
    pub target: String,
    pub details: Value,
}

/// Where a rollout's state and evidence go: both in one transaction, durable before it returns.
pub trait Journal {
    fn record(&mut self, rollout: &ClusterRollout, records: &[Record]) -> Result<(), String>;
}

/// Running totals of one version's requests and errors (counters, as Prometheus keeps them).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Totals {
    pub requests: f64,
    pub errors: f64,
    /// Time to response headers as `[upper bound µs, count]` since the counters started, when
    /// the source keeps a histogram (wharf's proxy does): the window's p95 and p99 come from
    /// the difference of two, as the local control plane's do, so latency bounds are judged.
    pub latency_buckets: Option<Vec<(u64, u64)>>,
}

/// Where per-version traffic counters come from (with a Gateway: its Prometheus metrics).
pub trait StatsSource {
    fn totals(&self, version: &VersionRef) -> impl Future<Output = Result<Totals, String>> + Send;
}

/// The traffic split of one service on the cluster, and the per-version counters the
/// analysis reads from it. Both implementations are idempotent: `set_weights` sends nothing
/// where the split is in place already, which is what lets a resumed rollout re-apply its
/// phase without a second update.
pub trait Router {
    /// Puts `target` in place: each listed version with its weight (percent), every other
    /// version out. `Some(description)` of what was sent, `None` when nothing needed to be.
    fn set_weights(
        &self,
        state: &ClusterRollout,
        target: &[(VersionRef, u32)],
    ) -> impl Future<Output = Result<Option<String>, DeployError>> + Send;
    /// Running totals of the stable and the new version.
    fn totals(
        &self,
        state: &ClusterRollout,
    ) -> impl Future<Output = Result<(Totals, Totals), String>> + Send;
}

/// The split as the weights of the service's HTTPRoute, counters from a [`StatsSource`].
#[derive(Debug, Clone)]
pub struct GatewayRouter<S: StatsSource> {
    pub cluster: Cluster,
    pub stats: S,
}

impl<S: StatsSource + Sync> Router for GatewayRouter<S> {
    async fn set_weights(
        &self,
        state: &ClusterRollout,
        target: &[(VersionRef, u32)],
    ) -> Result<Option<String>, DeployError> {
        let target: Vec<(String, u32)> = target
            .iter()
            .map(|(version, weight)| (version.workload.clone(), *weight))
            .collect();
        let Some(route) = self.cluster.get("HTTPRoute", &state.route).await? else {
            return Err(DeployError::NoRoute {
                service: state.service.clone(),
                route: state.route.clone(),
            });
        };
        match weights_patch(&state.route, &route, &target, state.port)? {
            Some(patch) => {
                self.cluster.patch_route(&state.route, &patch).await?;
                Ok(Some(format!(
                    "route {}: {}",
                    state.route,
                    describe(&target)
                )))
            }
            None => Ok(None),
        }
    }

    async fn totals(&self, state: &ClusterRollout) -> Result<(Totals, Totals), String> {
        Ok((
            self.stats.totals(&state.stable).await?,
            self.stats.totals(&state.new).await?,
        ))
    }
}

/// Why a cluster rollout could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("service `{0}` is not in the manifest")]
    UnknownService(String),
    #[error(
        "service `{0}` has no `port:`; a cluster rollout splits traffic on its HTTPRoute, so it needs one"
    )]
    NoPort(String),
    #[error(
        "service `{service}`: neither its HTTPRoute `{route}` nor its router `{route}-router` is on the cluster; run `wharf cluster apply --gateway GATEWAY` or `--router wharf --router-image IMAGE` first"
    )]
    NoRoute { service: String, route: String },
    #[error(
        "service `{service}`: both its HTTPRoute and its router `{service}-router` are on the cluster; delete the one not in use"
    )]
    TwoRouters { service: String },
    #[error(
        "service `{service}`: its router's table (ConfigMap `{config_map}`) names no version; run `wharf cluster apply --router wharf --router-image IMAGE` first"
    )]
    NoTable { service: String, config_map: String },
    #[error("service `{service}`: router: {reason}")]
    Router { service: String, reason: String },
    #[error(
        "service `{service}`: the {strategy:?} strategy is not built for clusters yet; use `strategy: canary` (or roll it out locally)"
    )]
    Strategy { service: String, strategy: Strategy },
    #[error("service `{service}` already runs version {version} on the cluster")]
    SameVersion { service: String, version: String },
    #[error(
        "service `{service}`: a rollout to {running} is under way; wait for it or `wharf cluster abort {service}` first"
    )]
    Busy { service: String, running: String },
    #[error("service `{service}`: cannot render version {version}: {reason}")]
    Render {
        service: String,
        version: String,
        reason: String,
    },
    #[error("service `{0}`: {1}")]
    Plan(String, wharf_rollout::PlanError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error("cannot record the rollout (nothing further was done on the cluster): {0}")]
    Journal(String),
}

fn now() -> At {
    At(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64))
}

/// Plans a rollout of `service` to `version`: the live route says which version is stable,
/// the manifest what the new one runs.
pub async fn prepare(
    cluster: &Cluster,
    stack: &Stack,
    service: &str,
    version: &str,
) -> Result<ClusterRollout, DeployError> {
    let Some(spec) = stack.services.get(service) else {
        return Err(DeployError::UnknownService(service.to_owned()));
    };
    let Some(port) = spec.port else {
        return Err(DeployError::NoPort(service.to_owned()));
    };
    let route = dns_label(service);
    let live_route = cluster.get("HTTPRoute", &route).await?;
    let router = cluster
        .get("Deployment", &crate::router::router_name(service))
        .await?;
    let (split, target, stable_workload) = match (live_route, router) {
        (Some(_), Some(_)) => {
            return Err(DeployError::TwoRouters {
                service: service.to_owned(),
            });
        }
        (None, None) => {
            return Err(DeployError::NoRoute {
                service: service.to_owned(),
                route,
            });
        }
        (Some(live_route), None) => {
            // The version's Service is rendered for the Gateway the route is attached to.
            let parent = &live_route["spec"]["parentRefs"][0];
            let gateway = GatewayRef {
                name: parent["name"].as_str().unwrap_or_default().to_owned(),
                namespace: parent["namespace"].as_str().map(str::to_owned),
            };
            // Stable: the backend with the most weight in wharf's rule.
            let stable = backend_weights(&live_route)
                .into_iter()
                .max_by_key(|(_, w)| *w)
                .map(|(name, _)| name)
                .unwrap_or_else(|| joined(service, &version_of(spec)));
            let target = Target {
                namespace: Some(cluster.namespace().to_owned()),
                gateway: Some(gateway),
                router: None,
            };
            (Split::Gateway, target, stable)
        }
        (None, Some(router)) => {
            let config_map = crate::router::router_name(service);
            let table = cluster
                .get("ConfigMap", &config_map)
                .await?
                .as_ref()
                .and_then(crate::router::table_of_config_map);
            // Stable: the version with the most weight in the router's table.
            let Some((stable, _)) = table
                .map(|t| crate::router::weights(&t, service))
                .unwrap_or_default()
                .into_iter()
                .max_by_key(|(_, w)| *w)
            else {
                return Err(DeployError::NoTable {
                    service: service.to_owned(),
                    config_map,
                });
            };
            let image = router["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let target = Target {
                namespace: Some(cluster.namespace().to_owned()),
                gateway: None,
                router: Some(crate::router::RouterSpec { image }),
            };
            (Split::Proxy, target, joined(service, &stable))
        }
    };
    let stable_version = match cluster.get("Deployment", &stable_workload).await? {
        Some(d) => d["metadata"]["labels"][VERSION_LABEL]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        None => version_of(spec),
    };
    let new_workload = joined(service, version);
    if new_workload == stable_workload {
        return Err(DeployError::SameVersion {
            service: service.to_owned(),
            version: version.to_owned(),
        });
    }
    let mut rollout = spec
        .rollout
        .clone()
        .unwrap_or_else(model::Rollout::default_canary);
    if rollout.strategy == model::Strategy::Canary && rollout.steps.is_empty() {
        rollout.steps = model::Rollout::default_canary_steps();
    }
    let plan = Plan::from_manifest(&rollout, spec.replicas.max(1), Policy::default())
        .map_err(|e| DeployError::Plan(service.to_owned(), e))?;
    if plan.strategy() != Strategy::Canary {
        return Err(DeployError::Strategy {
            service: service.to_owned(),
            strategy: plan.strategy(),
        });
    }
    let new_objects = render_version(stack, service, version, &target)?;
    let (machine, _) = Rollout::start(plan, now());
    Ok(ClusterRollout {
        stack: stack.name.clone(),
        service: service.to_owned(),
        namespace: cluster.namespace().to_owned(),
        split,
        route,
        port,
        stable: VersionRef {
            version: stable_version,
            workload: stable_workload,
        },
        new: VersionRef {
            version: version.to_owned(),
            workload: new_workload,
        },
        new_objects,
        machine,
    })
}

/// The objects of one version of one service: its ConfigMap, Deployment, PDB and version
/// Service (not the stack's Secret, claims, the service's own Service or its route, which
/// `wharf cluster apply` keeps).
fn render_version(
    stack: &Stack,
    service: &str,
    version: &str,
    target: &Target,
) -> Result<Vec<StoredObject>, DeployError> {
    let mut one = stack.clone();
    one.services.retain(|name, _| name == service);
    if let Some(spec) = one.services.get_mut(service) {
        spec.version = Some(version.to_owned());
        spec.image = spec
            .image
            .as_deref()
            .map(|image| wharf_runtime::image::with_tag(image, version));
    }
    let rendered = render(&one, target).map_err(|errors| DeployError::Render {
        service: service.to_owned(),
        version: version.to_owned(),
        reason: errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
    })?;
    let version_label = label_value(version);
    Ok(rendered
        .objects
        .into_iter()
        .filter(|o| o.value["metadata"]["labels"][VERSION_LABEL].as_str() == Some(&version_label))
        .filter(|o| o.kind != "HTTPRoute")
        .map(|o| StoredObject {
            kind: o.kind.to_owned(),
            name: o.name,
            value: o.value,
        })
        .collect())
}

/// Knobs of the runner that are not the rollout's plan.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// How often time passes for the machine and the counters are read.
    pub interval: Duration,
    /// After all traffic left a version, how long before its pods are deleted (the Gateway
    /// applies a route asynchronously and lets requests in flight finish).
    pub drain_grace: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            interval: Duration::from_secs(1),
            drain_grace: Duration::from_secs(10),
        }
    }
}

/// What a runner reports as it goes (for the CLI's progress lines).
pub trait Progress {
    fn note(&mut self, text: &str);
}

impl<F: FnMut(&str)> Progress for F {
    fn note(&mut self, text: &str) {
        self(text)
    }
}

/// Drives one rollout to its end: starts it (`resumed == false`) or resumes a persisted one.
/// `commands` carries the operator's `Pause`, `Resume`, `Promote` and `Abort`.
pub struct Runner<'a, J: Journal, R: Router> {
    pub cluster: &'a Cluster,
    pub journal: &'a mut J,
    /// The split: [`GatewayRouter`] or [`crate::proxy_router::ProxyRouter`].
    pub router: &'a R,
    pub options: RunOptions,
}

impl<J: Journal, R: Router> Runner<'_, J, R> {
    pub async fn run(
        &mut self,
        mut state: ClusterRollout,
        resumed: bool,
        commands: &mut mpsc::Receiver<Event>,
        progress: &mut impl Progress,
    ) -> Result<Outcome, DeployError> {
        let (internal, mut internal_rx) = mpsc::channel::<Event>(8);
        let actions = if resumed {
            progress.note(&format!(
                "resuming the rollout of {} to {} ({})",
                state.service,
                state.new.version,
                state.machine.phase().name()
            ));
            let actions = state.machine.resume(now());
            // Work the phase was waiting for when the previous runner died.
            match state.machine.phase() {
                Phase::WaitingReady { .. } => self.watch_ready(&state, &internal),
                Phase::Draining { .. } | Phase::Aborting { .. } => self.drain_timer(&internal),
                _ => {}
            }
            actions
        } else {
            let plan = state.machine.plan().clone();
            let (machine, actions) = Rollout::start(plan, now());
            state.machine = machine;
            actions
        };
        self.process(&mut state, actions, &internal, progress, true)
            .await?;
        let mut ticker = tokio::time::interval(self.options.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut baseline: Option<(Totals, Totals)> = None;
        loop {
            if let Some(outcome) = state.machine.outcome() {
                return Ok(outcome);
            }
            let event = tokio::select! {
                _ = ticker.tick() => self.sample(&state, &mut baseline).await,
                Some(command) = commands.recv() => command,
                Some(event) = internal_rx.recv() => event,
            };
            let persist = matches!(event, Event::Stats { .. });
            let actions = state.machine.handle(event);
            self.process(&mut state, actions, &internal, progress, persist)
                .await?;
        }
    }

    /// A `Stats` event with the counters' increments since the last sample, or a `Tick` when
    /// there is none yet (the first sample, a counter reset, an unreachable source — a traffic
    /// phase without stats for too long rolls back, the machine's own rule).
    async fn sample(
        &self,
        state: &ClusterRollout,
        baseline: &mut Option<(Totals, Totals)>,
    ) -> Event {
        let now = now();
        let traffic = matches!(
            state.machine.phase(),
            Phase::Step(_) | Phase::Draining { .. } | Phase::Paused { .. }
        );
        if !traffic {
            return Event::Tick { now };
        }
        let (stable, new) = match self.router.totals(state).await {
            Ok(totals) => totals,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the rollout's counters");
                return Event::Tick { now };
            }
        };
        let previous = baseline.replace((stable.clone(), new.clone()));
        let Some((old_stable, old_new)) = previous else {
            return Event::Tick { now };
        };
        let delta = |now: &Totals, before: &Totals| -> Option<VersionCounters> {
            let quantile = |q: f64| match (&now.latency_buckets, &before.latency_buckets) {
                (Some(newer), Some(older)) => {
                    wharf_proxy::quantile_from_buckets(&wharf_proxy::bucket_delta(newer, older), q)
                }
                _ => None,
            };
            (now.requests >= before.requests && now.errors >= before.errors).then(|| {
                VersionCounters {
                    requests: (now.requests - before.requests).round() as u64,
                    errors: (now.errors - before.errors).round() as u64,
                    p95_ms: quantile(0.95),
                    p99_ms: quantile(0.99),
                }
            })
        };
        match (delta(&stable, &old_stable), delta(&new, &old_new)) {
            (Some(stable), Some(new)) => Event::Stats {
                now,
                window: Window { stable, new },
            },
            _ => Event::Tick { now },
        }
    }

    /// Persists the state with the step's ledger entries, then carries out the actions.
    async fn process(
        &mut self,
        state: &mut ClusterRollout,
        actions: Vec<Action>,
        internal: &mpsc::Sender<Event>,
        progress: &mut impl Progress,
        persist_anyway: bool,
    ) -> Result<(), DeployError> {
        // As the local control plane records them: the service as target, the version (and
        // here the namespace) in the details, so `wharf promote export` reads both alike.
        let records: Vec<Record> = actions
            .iter()
            .filter_map(|action| match action {
                Action::Record { milestone, details } => {
                    let mut details = details.clone();
                    if let Value::Object(map) = &mut details {
                        map.insert(
                            "version".to_owned(),
                            Value::String(state.new.version.clone()),
                        );
                        map.insert(
                            "namespace".to_owned(),
                            Value::String(state.namespace.clone()),
                        );
                    }
                    Some(Record {
                        action: milestone.as_str(),
                        target: state.service.clone(),
                        details,
                    })
                }
                _ => None,
            })
            .collect();
        if actions.is_empty() && !persist_anyway {
            return Ok(());
        }
        self.journal
            .record(state, &records)
            .map_err(DeployError::Journal)?;
        for record in &records {
            progress.note(&format!("{} {}", record.action, record.details));
        }
        for action in actions {
            self.execute(state, action, internal, progress).await?;
        }
        Ok(())
    }

    async fn execute(
        &mut self,
        state: &ClusterRollout,
        action: Action,
        internal: &mpsc::Sender<Event>,
        progress: &mut impl Progress,
    ) -> Result<(), DeployError> {
        match action {
            Action::StartNewInstances { .. } => {
                for object in &state.new_objects {
                    let object = crate::render::Object {
                        kind: kind_name(&object.kind),
                        name: object.name.clone(),
                        value: object.value.clone(),
                    };
                    self.cluster.apply(&object).await?;
                }
                progress.note(&format!(
                    "applied {} objects of {}",
                    state.new_objects.len(),
                    state.new.workload
                ));
                self.watch_ready(state, internal);
            }
            Action::SetWeights { stable, new } => {
                if new == 0 {
                    // All traffic back on stable only once stable can take it all.
                    let limit = state.machine.plan().policy().ready_timeout;
                    self.cluster
                        .wait_available(&state.stable.workload, limit)
                        .await?;
                }
                let target = [
                    (state.stable.clone(), u32::from(stable)),
                    (state.new.clone(), u32::from(new)),
                ];
                self.set_route(state, &target, progress).await?;
                if new == 100 || new == 0 {
                    self.drain_timer(internal);
                }
            }
            Action::Switch => {
                let target = [(state.stable.clone(), 0), (state.new.clone(), 100)];
                self.set_route(state, &target, progress).await?;
                self.drain_timer(internal);
            }
            Action::SetPreview | Action::StartStableInstances { .. } => {
                // Only canary plans reach a cluster (see `prepare`).
                unreachable!("blue-green and recreate are refused before a cluster rollout starts")
            }
            // The backend leaves the route before its Service and pods go.
            Action::StopOldInstances => {
                let target = [(state.new.clone(), 100)];
                self.set_route(state, &target, progress).await?;
                self.delete_version(state, &state.stable).await?;
            }
            Action::StopNewInstances => {
                let target = [(state.stable.clone(), 100)];
                self.set_route(state, &target, progress).await?;
                self.delete_version(state, &state.new).await?;
            }
            Action::Record { .. } | Action::Done { .. } => {}
        }
        Ok(())
    }

    async fn set_route(
        &self,
        state: &ClusterRollout,
        target: &[(VersionRef, u32)],
        progress: &mut impl Progress,
    ) -> Result<(), DeployError> {
        if let Some(sent) = self.router.set_weights(state, target).await? {
            progress.note(&sent);
        }
        Ok(())
    }

    /// Deletes one version's objects, found by its labels (whatever created them).
    async fn delete_version(
        &self,
        state: &ClusterRollout,
        version: &VersionRef,
    ) -> Result<(), DeployError> {
        for kind in ["Deployment", "PodDisruptionBudget", "Service", "ConfigMap"] {
            for object in self.cluster.managed(kind, &state.stack).await? {
                let labels = &object["metadata"]["labels"];
                if labels[SERVICE_LABEL].as_str() == Some(&label_value(&state.service))
                    && labels[VERSION_LABEL].as_str() == Some(&label_value(&version.version))
                    && let Some(name) = object["metadata"]["name"].as_str()
                {
                    self.cluster.delete(kind, name).await?;
                }
            }
        }
        Ok(())
    }

    fn watch_ready(&self, state: &ClusterRollout, internal: &mpsc::Sender<Event>) {
        let cluster = self.cluster.clone();
        let workload = state.new.workload.clone();
        let limit = state.machine.plan().policy().ready_timeout;
        let internal = internal.clone();
        tokio::spawn(async move {
            let event = match cluster.wait_available(&workload, limit).await {
                Ok(()) => Event::NewInstancesReady,
                Err(e) => Event::NewInstancesFailed {
                    reason: e.to_string(),
                },
            };
            let _ = internal.send(event).await;
        });
    }

    fn drain_timer(&self, internal: &mpsc::Sender<Event>) {
        let grace = self.options.drain_grace;
        let internal = internal.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let _ = internal.send(Event::DrainDone).await;
        });
    }
}

pub(crate) fn describe(target: &[(String, u32)]) -> String {
    target
        .iter()
        .map(|(name, weight)| format!("{name}={weight}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `&'static` kind name of a stored object (the kinds `render` makes).
fn kind_name(kind: &str) -> &'static str {
    match kind {
        "Deployment" => "Deployment",
        "Service" => "Service",
        "ConfigMap" => "ConfigMap",
        "Secret" => "Secret",
        "PersistentVolumeClaim" => "PersistentVolumeClaim",
        "Job" => "Job",
        "PodDisruptionBudget" => "PodDisruptionBudget",
        "HTTPRoute" => "HTTPRoute",
        "Pod" => "Pod",
        _ => "Unknown",
    }
}

/// Counters from Prometheus' HTTP API (`/api/v1/query`, plain HTTP — Prometheus inside the
/// cluster, or a port-forward): one instant query for each version's requests and one for its
/// errors, from templates where `{namespace}`, `{service}`, `{workload}` (the version's
/// Deployment and route backend) and `{version}` are replaced.
#[derive(Debug, Clone)]
pub struct PrometheusStats {
    base: String,
    pub requests_query: String,
    pub errors_query: String,
    pub namespace: String,
    pub service: String,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Empty<bytes::Bytes>,
    >,
}

impl PrometheusStats {
    /// The requests of one version through wharf's own proxy (the router mode).
    pub const PROXY_REQUESTS: &str =
        "sum(wharf_proxy_requests_total{service=\"{service}\",version=\"{version}\"})";
    /// Its 5xx answers and upstream failures.
    pub const PROXY_ERRORS: &str = "(sum(wharf_proxy_responses_total{service=\"{service}\",version=\"{version}\",class=\"5xx\"}) or vector(0)) + (sum(wharf_proxy_upstream_errors_total{service=\"{service}\",version=\"{version}\"}) or vector(0))";

    /// `url` is Prometheus' base (`http://prometheus.monitoring:9090`); only `http://`.
    pub fn new(
        url: &str,
        requests_query: String,
        errors_query: String,
        namespace: String,
        service: String,
    ) -> Result<PrometheusStats, String> {
        let base = url.trim_end_matches('/');
        let uri: hyper::Uri = base
            .parse()
            .map_err(|e| format!("--prometheus {url}: not a URL ({e})"))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(format!(
                "--prometheus {url}: give Prometheus' plain http:// address (in the cluster, or through a port-forward)"
            ));
        }
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        Ok(PrometheusStats {
            base: base.to_owned(),
            requests_query,
            errors_query,
            namespace,
            service,
            client,
        })
    }

    fn query_text(&self, template: &str, version: &VersionRef) -> String {
        template
            .replace("{namespace}", &self.namespace)
            .replace("{service}", &self.service)
            .replace("{workload}", &version.workload)
            .replace("{version}", &version.version)
    }

    async fn query(&self, query: &str) -> Result<f64, String> {
        use http_body_util::BodyExt;
        let mut encoded = String::new();
        for byte in query.bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
                encoded.push(byte as char);
            } else {
                encoded.push_str(&format!("%{byte:02X}"));
            }
        }
        let uri: hyper::Uri = format!("{}/api/v1/query?query={encoded}", self.base)
            .parse()
            .map_err(|e| format!("query URL: {e}"))?;
        let answer = tokio::time::timeout(Duration::from_secs(10), async {
            let response = self.client.get(uri).await.map_err(|e| e.to_string())?;
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            serde_json::from_slice::<Value>(&body).map_err(|e| format!("not JSON: {e}"))
        })
        .await
        .map_err(|_| "Prometheus did not answer within 10 s".to_owned())?
        .map_err(|e| format!("Prometheus at {}: {e}", self.base))?;
        instant_value(&answer)
    }
}

impl StatsSource for PrometheusStats {
    async fn totals(&self, version: &VersionRef) -> Result<Totals, String> {
        Ok(Totals {
            requests: self
                .query(&self.query_text(&self.requests_query, version))
                .await?,
            errors: self
                .query(&self.query_text(&self.errors_query, version))
                .await?,
            latency_buckets: None,
        })
    }
}

/// The value of an instant query's answer: the first sample of a vector (or a scalar); an
/// empty vector is 0 (no request yet).
pub fn instant_value(answer: &Value) -> Result<f64, String> {
    if answer["status"] != "success" {
        return Err(format!(
            "Prometheus answered {}: {}",
            answer["status"], answer["error"]
        ));
    }
    let data = &answer["data"];
    let sample = match data["resultType"].as_str() {
        Some("vector") => match data["result"].as_array() {
            Some(items) if items.is_empty() => return Ok(0.0),
            Some(items) => &items[0]["value"],
            None => return Err("a vector without result".to_owned()),
        },
        Some("scalar") => &data["result"],
        other => return Err(format!("an answer of type {other:?}")),
    };
    sample[1]
        .as_str()
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| format!("not a sample: {sample}"))
}
