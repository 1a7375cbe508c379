//! `wharf cluster …`: the stack on a Kubernetes cluster.
//!
//! - `apply`: every rendered object server-side applied under wharf's field manager, the
//!   Secret filled from wharf's secret store (the values go to the API server only — never to
//!   a file, the terminal or the ledger, which records their fingerprints). A service whose
//!   route already sends its traffic to another version (a `cluster deploy` put it there) keeps
//!   it: what runs is read from the cluster by labels, not from memory.
//!   With `--router wharf` each service gets wharf's own proxy as its router instead of an
//!   HTTPRoute; the routers' admin token is made here (or the cluster's kept) and the router's
//!   table is filled in with the versions' Service addresses before its pods start.
//! - `deploy SERVICE --version V`: a canary through the service's HTTPRoute weights, analysed
//!   on per-version counters from Prometheus — or through its router's tables, analysed on the
//!   router's own counters; each step's state and ledger entries are saved before it acts, so
//!   running the same command again after a crash resumes it.
//! - `pause | resume | promote | abort SERVICE`: to the running `deploy`, over its socket in the
//!   state directory.
//! - `status`: the services' versions on the cluster, their availability and route weights.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use wharf_kube::cluster::{Availability, Cluster};
use wharf_kube::deploy::{
    ClusterRollout, GatewayRouter, Journal, PrometheusStats, Record, RunOptions, Runner, Split,
    prepare,
};
use wharf_kube::proxy_router::ProxyRouter;
use wharf_kube::route::backend_weights;
use wharf_rollout::{Event, Outcome};

use crate::cli::{Global, Output};
use crate::exit::ExitStatus;
use crate::manifest_file::ManifestFile;

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Server-side apply the stack's objects (field manager `wharf`), the Secret's values from
    /// wharf's secret store.
    Apply(ApplyArgs),
    /// Roll a new version of a service out on the cluster (canary through the HTTPRoute's
    /// weights); running it again after a crash resumes the rollout. Exit 0 succeeded, 1
    /// rolled back.
    #[command(disable_version_flag = true)]
    Deploy(DeployArgs),
    /// The services on the cluster: versions, available replicas, route weights, rollouts.
    Status(StatusArgs),
    /// Hold the running rollout at its step.
    Pause(CommandArgs),
    /// Go on after a pause.
    Resume(CommandArgs),
    /// All traffic to the new version now.
    Promote(CommandArgs),
    /// Roll back now: all traffic to the stable version in one route update.
    Abort(CommandArgs),
    /// Run as the stack's controller: rollouts taken over an HTTP API and resumed after a
    /// restart; with the state in PostgreSQL, replicas elect a leader on a lease and the
    /// standby serves reads and forwards writes.
    Serve(crate::cmd::cluster_serve::ServeArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// The kubeconfig (default: `$KUBECONFIG`, `~/.kube/config`, else the in-cluster service
    /// account).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current one).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// The namespace (default: the context's, else `default`).
    #[arg(long, value_name = "NAMESPACE", value_parser = crate::cmd::render::kubernetes_name)]
    pub namespace: Option<String>,
    /// The environment overlay to apply (default: `dev` when the manifest defines it).
    #[arg(long = "env", value_name = "ENV")]
    pub environment: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Ask the controller at URL (`wharf cluster serve`; either replica answers) instead of
    /// the cluster and the state directly; its token from `$WHARF_TOKEN` or
    /// `$WHARF_API_TOKEN`.
    #[arg(long, value_name = "URL", env = "WHARF_CONTROLLER")]
    pub controller: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The Gateway API Gateway (`NAME` or `NAMESPACE/NAME`) the services' HTTPRoutes attach
    /// to; a rollout on the cluster needs one.
    #[arg(long, value_name = "[NAMESPACE/]NAME", value_parser = crate::cmd::render::gateway)]
    pub gateway: Option<wharf_kube::GatewayRef>,
    #[command(flatten)]
    pub router: crate::cmd::render::RouterArgs,
}

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The service to roll out.
    pub service: String,
    /// The version (an `image:` service runs its image tagged with it).
    #[arg(long)]
    pub version: String,
    /// Ask the controller at URL (`wharf cluster serve`) to run the rollout, and follow it,
    /// instead of running it in this process; its token from `$WHARF_TOKEN` or
    /// `$WHARF_API_TOKEN`.
    #[arg(long, value_name = "URL", env = "WHARF_CONTROLLER")]
    pub controller: Option<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub analysis: AnalysisArgs,
    #[command(flatten)]
    pub pacing: PacingArgs,
}

/// Where a canary behind a Gateway is judged: Prometheus and the queries for one version's
/// counters (a service behind wharf's router is judged on the router's own counters).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AnalysisArgs {
    /// Prometheus' address (`http://HOST:PORT`), where the per-version counters are read
    /// (a service behind a Gateway; one behind wharf's router is judged on its own counters).
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,
    /// PromQL for one version's request count; `{namespace}`, `{service}`, `{workload}` (the
    /// version's Deployment and route backend) and `{version}` are replaced. Default: wharf
    /// proxy's `wharf_proxy_requests_total`.
    #[arg(long, value_name = "PROMQL")]
    pub requests_query: Option<String>,
    /// PromQL for one version's failed requests (5xx and upstream errors), with the same
    /// placeholders. Default: wharf proxy's counters.
    #[arg(long, value_name = "PROMQL")]
    pub errors_query: Option<String>,
}

/// How a rollout's clock runs.
#[derive(Debug, Clone, clap::Args)]
pub struct PacingArgs {
    /// How often the counters are read and deadlines checked.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = crate::cmd::up::parse_duration)]
    pub interval: Duration,
    /// After traffic leaves a version, how long before its pods are deleted.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::cmd::up::parse_duration)]
    pub drain_grace: Duration,
}

impl PacingArgs {
    pub(crate) fn options(&self) -> RunOptions {
        RunOptions {
            interval: self.interval,
            drain_grace: self.drain_grace,
        }
    }
}

impl AnalysisArgs {
    /// The split decides where the counters come from; flags for the other one are refused
    /// before anything is sent.
    pub(crate) fn check(&self, split: Split, service: &str) -> Result<(), String> {
        let prometheus_flags = self.prometheus.is_some()
            || self.requests_query.is_some()
            || self.errors_query.is_some();
        match split {
            Split::Proxy if prometheus_flags => Err(format!(
                "service `{service}` is routed by wharf's proxy on the cluster: the analysis reads the router's own per-version counters; drop --prometheus, --requests-query and --errors-query"
            )),
            Split::Gateway if self.prometheus.is_none() => Err(
                "a canary through a Gateway is judged on per-version counters: give Prometheus' address with --prometheus URL (and --requests-query / --errors-query for your Gateway's metrics)".to_owned(),
            ),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct CommandArgs {
    /// The service whose rollout to steer.
    pub service: String,
    /// Why (recorded with an abort).
    #[arg(long)]
    pub reason: Option<String>,
    /// The namespace of the rollout (default: the kubeconfig context's, else `default`).
    #[arg(long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Send it to the controller at URL (`wharf cluster serve`) instead of a `wharf cluster
    /// deploy` running here; its token from `$WHARF_TOKEN` or `$WHARF_API_TOKEN`.
    #[arg(long, value_name = "URL", env = "WHARF_CONTROLLER")]
    pub controller: Option<String>,
}

pub fn run(global: &Global, command: ClusterCommand) -> anyhow::Result<ExitStatus> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match command {
            ClusterCommand::Apply(args) => apply(global, args).await,
            ClusterCommand::Deploy(args) => deploy(global, args).await,
            ClusterCommand::Status(args) => status(global, args).await,
            ClusterCommand::Pause(args) => steer(global, args, "pause").await,
            ClusterCommand::Resume(args) => steer(global, args, "resume").await,
            ClusterCommand::Promote(args) => steer(global, args, "promote").await,
            ClusterCommand::Abort(args) => steer(global, args, "abort").await,
            ClusterCommand::Serve(args) => crate::cmd::cluster_serve::serve(global, args).await,
        }
    })
}

/// The manifest with the environment applied, or the diagnostics printed and `None`.
pub(crate) fn load_stack(
    global: &Global,
    environment: Option<&str>,
) -> anyhow::Result<Option<wharf_manifest::Stack>> {
    let manifest = ManifestFile::read(global)?;
    let loaded = manifest.load(environment);
    manifest.print_diagnostics(&loaded.diagnostics, Output::Human)?;
    match loaded.stack {
        Some(stack) => Ok(Some((*stack).clone())),
        None => {
            eprintln!(
                "{}: the manifest has errors; nothing was sent to the cluster",
                manifest.display
            );
            Ok(None)
        }
    }
}

pub(crate) async fn connect(args: &ConnectArgs) -> anyhow::Result<Cluster> {
    Ok(Cluster::connect(
        args.kubeconfig.as_deref(),
        args.context.as_deref(),
        args.namespace.as_deref(),
    )
    .await?)
}

async fn apply(global: &Global, args: ApplyArgs) -> anyhow::Result<ExitStatus> {
    let router = match args.router.spec(args.gateway.as_ref()) {
        Ok(router) => router,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitStatus::Invalid);
        }
    };
    let Some(stack) = load_stack(global, args.connect.environment.as_deref())? else {
        return Ok(ExitStatus::Invalid);
    };
    let cluster = connect(&args.connect).await?;
    let target = wharf_kube::Target {
        namespace: Some(cluster.namespace().to_owned()),
        gateway: args.gateway.clone(),
        router,
    };
    let rendered = match wharf_kube::render(&stack, &target) {
        Ok(rendered) => rendered,
        Err(errors) => {
            for error in &errors {
                eprintln!("error: {error}");
            }
            eprintln!("nothing was sent to the cluster");
            return Ok(ExitStatus::Invalid);
        }
    };
    // (Routers' tables are filled in below: `rendered.unfilled_tables` needs no note here.)
    for note in &rendered.notes {
        eprintln!("note: {note}");
    }
    // What already runs: a route whose traffic is on another version than the manifest's
    // keeps it (and that version's objects are not re-created beside it).
    let mut keep_route = Vec::new();
    let mut skip_version = Vec::new();
    for object in rendered.objects.iter().filter(|o| o.kind == "HTTPRoute") {
        let Some(live) = cluster.get("HTTPRoute", &object.name).await? else {
            continue;
        };
        keep_route.push(object.name.clone());
        let live_backends: Vec<String> = backend_weights(&live)
            .into_iter()
            .filter(|(_, w)| *w > 0)
            .map(|(name, _)| name)
            .collect();
        let ours = backend_weights(&object.value);
        if let Some((manifest_workload, _)) = ours.first()
            && !live_backends.contains(manifest_workload)
        {
            eprintln!(
                "note: route `{}` sends its traffic to {}; the manifest's {manifest_workload} is not applied (`wharf cluster deploy` changes versions)",
                object.name,
                live_backends.join(", ")
            );
            skip_version.push(manifest_workload.clone());
        }
    }
    // Likewise a router whose table sends the traffic elsewhere keeps its table.
    let mut routed = Vec::new();
    for (name, service) in &stack.services {
        let config_map = wharf_kube::router::router_name(name);
        if !rendered
            .objects
            .iter()
            .any(|o| o.kind == "ConfigMap" && o.name == config_map)
        {
            continue;
        }
        routed.push((name.clone(), wharf_kube::render::version_of(service)));
        let Some(live) = cluster.get("ConfigMap", &config_map).await? else {
            continue;
        };
        keep_route.push(config_map.clone());
        let live_versions: Vec<String> = wharf_kube::router::table_of_config_map(&live)
            .map(|t| wharf_kube::router::weights(&t, name))
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, w)| *w > 0)
            .map(|(version, _)| version)
            .collect();
        let manifest_version = wharf_kube::render::version_of(service);
        if !live_versions.is_empty() && !live_versions.contains(&manifest_version) {
            eprintln!(
                "note: router `{config_map}` sends its traffic to {}; the manifest's {manifest_version} is not applied (`wharf cluster deploy` changes versions)",
                live_versions.join(", ")
            );
            skip_version.push(wharf_kube::names::joined(name, &manifest_version));
        }
    }
    let mut objects: Vec<wharf_kube::Object> = rendered
        .objects
        .into_iter()
        .filter(|o| !(o.kind == "HTTPRoute" && keep_route.contains(&o.name)))
        .filter(|o| !(o.kind == "ConfigMap" && keep_route.contains(&o.name)))
        .filter(|o| {
            !skip_version
                .iter()
                .any(|w| o.name == *w || o.name.starts_with(&format!("{w}-env")))
        })
        .collect();

    let state_dir = global.state_dir();
    let lock = wharf_ops::ControlLock::acquire_or_refuse(&state_dir, "`wharf cluster apply`")?;
    let mut store = wharf_ops::read::open(&lock)?;
    let mut secret_fingerprints = serde_json::Map::new();
    // The stack's Secret (its keys annotated); the routers' Secret is filled below.
    for object in objects.iter_mut().filter(|o| {
        o.kind == "Secret" && o.value["metadata"]["annotations"]["wharf.dev/keys"].is_string()
    }) {
        let names: Vec<String> = object.value["metadata"]["annotations"]["wharf.dev/keys"]
            .as_str()
            .unwrap_or("")
            .split(',')
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect();
        let values = wharf_ops::cluster::secret_values(&mut store, &state_dir, &names)?;
        let mut data = serde_json::Map::new();
        for secret in &values {
            use base64::Engine as _;
            data.insert(
                secret.name.clone(),
                Value::String(
                    base64::engine::general_purpose::STANDARD.encode(secret.value.expose()),
                ),
            );
            secret_fingerprints.insert(
                secret.name.clone(),
                Value::String(secret.fingerprint.clone()),
            );
        }
        object.value["data"] = Value::Object(data);
    }
    // The routers' admin token: the cluster's when it has one (router pods already use it),
    // else a new one. Never printed, never in the ledger.
    for object in objects.iter_mut().filter(|o| {
        o.kind == "Secret" && o.value["metadata"]["annotations"]["wharf.dev/generated"].is_string()
    }) {
        let live = cluster.get("Secret", &object.name).await?;
        let token = match live
            .as_ref()
            .and_then(|s| s["data"][wharf_kube::router::TOKEN_KEY].as_str())
        {
            Some(encoded) => encoded.to_owned(),
            None => {
                use base64::Engine as _;
                let value = wharf_secrets::generate(
                    48,
                    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
                )?;
                base64::engine::general_purpose::STANDARD.encode(value.expose())
            }
        };
        object.value["data"] = json!({ wharf_kube::router::TOKEN_KEY: token });
    }
    let digests: Vec<Value> = objects
        .iter()
        .map(|o| {
            // A Secret's digest would be a digest of its values: its fingerprints stand in.
            let sha256 = (o.kind != "Secret").then(|| {
                use sha2::Digest as _;
                hex_lower(&sha2::Sha256::digest(o.value.to_string().as_bytes()))
            });
            json!({"kind": o.kind, "name": o.name, "sha256": sha256})
        })
        .collect();
    let actor = wharf_ops::Actor::from_environment();
    wharf_ops::cluster::record_apply(
        &mut store,
        &actor,
        cluster.namespace(),
        json!({"stack": stack.name, "objects": digests, "secrets": secret_fingerprints}),
    )?;
    // A router's pods start once its table names the versions' Services: everything else
    // first, then the tables, then the router Deployments.
    let is_router = |o: &wharf_kube::Object| {
        o.kind == "Deployment"
            && o.value["metadata"]["labels"][wharf_kube::router::COMPONENT_LABEL]
                == wharf_kube::router::COMPONENT
    };
    let (routers, others): (Vec<_>, Vec<_>) = objects.into_iter().partition(is_router);
    for object in &others {
        cluster.apply(object).await?;
        println!(
            "applied {} {}/{}",
            object.kind,
            cluster.namespace(),
            object.name
        );
    }
    for (service, version) in &routed {
        let router = ProxyRouter::connect(&cluster, &stack, service).await?;
        if let Some(sent) = router.seed(version).await? {
            println!("{sent}");
        }
    }
    for object in &routers {
        cluster.apply(object).await?;
        println!(
            "applied {} {}/{}",
            object.kind,
            cluster.namespace(),
            object.name
        );
    }
    Ok(ExitStatus::Ok)
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The rollout's state and entries through `wharf-ops`, in one transaction per step. The
/// store sits behind a mutex only so that a rollout can run in a spawned task (the runner's
/// future must be `Send`, the SQLite connection is not `Sync`); one runner uses it.
pub(crate) struct OpsJournal {
    pub(crate) store: std::sync::Mutex<wharf_ops::read::StateDb>,
    pub(crate) actor: wharf_ops::Actor,
    pub(crate) key: String,
    pub(crate) id: u64,
}

impl Journal for OpsJournal {
    fn record(&mut self, rollout: &ClusterRollout, records: &[Record]) -> Result<(), String> {
        let state = serde_json::to_string(rollout).map_err(|e| e.to_string())?;
        let row = wharf_ops::read::RolloutRow {
            service: self.key.clone(),
            id: self.id,
            state,
        };
        let entries: Vec<wharf_ops::cluster::StepEntry> = records
            .iter()
            .map(|r| {
                let mut details = r.details.clone();
                if let Value::Object(map) = &mut details {
                    map.insert("rollout".to_owned(), json!(self.id));
                }
                wharf_ops::cluster::StepEntry {
                    action: r.action.to_owned(),
                    target: r.target.clone(),
                    details,
                }
            })
            .collect();
        // A transaction on the database: off the runtime's workers' async duties (the
        // controller's API and lease renewal share them), on this same thread.
        tokio::task::block_in_place(|| {
            let mut store = self
                .store
                .lock()
                .map_err(|_| "the state's connection was poisoned".to_owned())?;
            wharf_ops::cluster::record(&mut store, &self.actor, &row, &entries)
                .map_err(|e| e.to_string())
        })
    }
}

/// The socket a running `cluster deploy` of `service` listens on.
fn socket_path(state_dir: &Path, namespace: &str, service: &str) -> PathBuf {
    state_dir.join(format!("cluster-{namespace}-{service}.sock"))
}

/// A rollout about to run: a new one, or the saved one resumed.
pub(crate) struct Begun {
    pub(crate) rollout: ClusterRollout,
    pub(crate) resumed: bool,
    pub(crate) id: u64,
}

/// Why a rollout cannot begin.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BeginError {
    /// Another version's rollout is under way (it must be resumed or aborted first).
    #[error(
        "a rollout of `{service}` to {running} is under way; resume it (deploy --version {running}) or abort it first"
    )]
    Busy { service: String, running: String },
    /// What the cluster or the manifest refuses (no route, same version, a strategy…).
    #[error(transparent)]
    Refused(#[from] wharf_kube::deploy::DeployError),
    #[error(transparent)]
    State(#[from] anyhow::Error),
}

/// Where a rollout of a service starts, by its saved state: the saved rollout resumed (one
/// is under way to this version), or a new one with the next id.
pub(crate) enum StartPoint {
    Resume(Box<Begun>),
    Fresh { id: u64 },
}

/// Reads where a rollout of `service` to `version` starts; another version's rollout under
/// way is refused.
pub(crate) fn start_point(
    store: &wharf_ops::read::StateDb,
    namespace: &str,
    service: &str,
    version: &str,
) -> Result<StartPoint, BeginError> {
    let key = wharf_ops::cluster::key(namespace, service);
    let Some(row) =
        wharf_ops::cluster::latest(store, namespace, service).map_err(anyhow::Error::from)?
    else {
        return Ok(StartPoint::Fresh { id: 1 });
    };
    let previous: ClusterRollout = serde_json::from_str(&row.state)
        .with_context(|| format!("the saved rollout of {key} is unreadable"))?;
    if previous.machine.is_done() {
        return Ok(StartPoint::Fresh { id: row.id + 1 });
    }
    if previous.new.version != version {
        return Err(BeginError::Busy {
            service: service.to_owned(),
            running: previous.new.version,
        });
    }
    Ok(StartPoint::Resume(Box::new(Begun {
        rollout: previous,
        resumed: true,
        id: row.id,
    })))
}

/// Resumes the service's saved rollout when one is under way to `version`, else plans a new
/// one (its id one past the last).
pub(crate) async fn begin(
    cluster: &Cluster,
    stack: &wharf_manifest::Stack,
    start: StartPoint,
    service: &str,
    version: &str,
) -> Result<Begun, BeginError> {
    match start {
        StartPoint::Resume(begun) => Ok(*begun),
        StartPoint::Fresh { id } => Ok(Begun {
            rollout: prepare(cluster, stack, service, version).await?,
            resumed: false,
            id,
        }),
    }
}

/// Runs `rollout` to its end through its split: the HTTPRoute's weights judged on
/// Prometheus' counters, or wharf's router's tables judged on its own.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_rollout(
    cluster: &Cluster,
    stack: &wharf_manifest::Stack,
    analysis: &AnalysisArgs,
    options: RunOptions,
    begun: Begun,
    journal: &mut OpsJournal,
    commands: &mut tokio::sync::mpsc::Receiver<Event>,
    progress: &mut impl wharf_kube::deploy::Progress,
) -> anyhow::Result<Outcome> {
    let Begun {
        rollout, resumed, ..
    } = begun;
    let service = rollout.service.clone();
    let outcome = match rollout.split {
        Split::Gateway => {
            let stats = PrometheusStats::new(
                analysis.prometheus.as_deref().unwrap_or_default(),
                analysis
                    .requests_query
                    .clone()
                    .unwrap_or_else(|| PrometheusStats::PROXY_REQUESTS.to_owned()),
                analysis
                    .errors_query
                    .clone()
                    .unwrap_or_else(|| PrometheusStats::PROXY_ERRORS.to_owned()),
                cluster.namespace().to_owned(),
                service,
            )
            .map_err(anyhow::Error::msg)?;
            let router = GatewayRouter {
                cluster: cluster.clone(),
                stats,
            };
            let mut runner = Runner {
                cluster,
                journal,
                router: &router,
                options,
            };
            runner.run(rollout, resumed, commands, progress).await
        }
        Split::Proxy => {
            let router = ProxyRouter::connect(cluster, stack, &service).await?;
            let mut runner = Runner {
                cluster,
                journal,
                router: &router,
                options,
            };
            runner.run(rollout, resumed, commands, progress).await
        }
    };
    Ok(outcome?)
}

async fn deploy(global: &Global, args: DeployArgs) -> anyhow::Result<ExitStatus> {
    if let Some(controller) = &args.controller {
        return crate::cmd::cluster_serve::client::deploy(global, controller, &args).await;
    }
    let Some(stack) = load_stack(global, args.connect.environment.as_deref())? else {
        return Ok(ExitStatus::Invalid);
    };
    if !stack.services.contains_key(&args.service) {
        eprintln!("error: service `{}` is not in the manifest", args.service);
        return Ok(ExitStatus::Invalid);
    }
    let cluster = connect(&args.connect).await?;
    let state_dir = global.state_dir();
    let lock = wharf_ops::ControlLock::acquire_or_refuse(&state_dir, "`wharf cluster deploy`")?;
    let store = wharf_ops::read::open(&lock)?;
    let key = wharf_ops::cluster::key(cluster.namespace(), &args.service);
    let begun = match start_point(&store, cluster.namespace(), &args.service, &args.version)
        .map(|start| begin(&cluster, &stack, start, &args.service, &args.version))
    {
        Ok(begun) => begun.await,
        Err(refused) => Err(refused),
    };
    let begun = match begun {
        Ok(begun) => begun,
        Err(BeginError::Busy { service, running }) => {
            eprintln!(
                "error: a rollout of `{service}` to {running} is under way; run `wharf cluster deploy {service} --version {running}` to resume it, or abort it first"
            );
            return Ok(ExitStatus::Invalid);
        }
        Err(BeginError::Refused(error)) => return Err(error.into()),
        Err(BeginError::State(error)) => return Err(error),
    };
    if let Err(message) = args.analysis.check(begun.rollout.split, &args.service) {
        eprintln!("error: {message}");
        return Ok(ExitStatus::Invalid);
    }
    let socket = socket_path(&state_dir, cluster.namespace(), &args.service);
    let _ = std::fs::remove_file(&socket);
    let listener = tokio::net::UnixListener::bind(&socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
    }
    let (commands_tx, mut commands) = tokio::sync::mpsc::channel(8);
    let listen = tokio::spawn(serve_commands(listener, commands_tx.clone()));
    let interrupt = tokio::spawn(async move {
        // Ctrl-C or SIGTERM during a rollout rolls it back: in doubt, the stable version serves.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("interrupted: rolling back");
        let _ = commands_tx
            .send(Event::Abort {
                reason: "the operator interrupted `wharf cluster deploy`".to_owned(),
            })
            .await;
    });
    let mut journal = OpsJournal {
        store: std::sync::Mutex::new(store),
        actor: wharf_ops::Actor::from_environment(),
        key,
        id: begun.id,
    };
    let mut progress = |line: &str| eprintln!("{line}");
    let outcome = run_rollout(
        &cluster,
        &stack,
        &args.analysis,
        args.pacing.options(),
        begun,
        &mut journal,
        &mut commands,
        &mut progress,
    )
    .await;
    listen.abort();
    interrupt.abort();
    let _ = std::fs::remove_file(&socket);
    drop(lock);
    match outcome? {
        Outcome::Succeeded => {
            println!("{} {}: succeeded", args.service, args.version);
            Ok(ExitStatus::Ok)
        }
        Outcome::RolledBack { reason } => {
            println!("{} {}: rolled back ({reason})", args.service, args.version);
            Ok(ExitStatus::Failed)
        }
    }
}

/// Answers `pause`, `resume`, `promote`, `abort REASON` lines on the rollout's socket.
async fn serve_commands(
    listener: tokio::net::UnixListener,
    commands: tokio::sync::mpsc::Sender<Event>,
) {
    while let Ok((stream, _)) = listener.accept().await {
        let commands = commands.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(read, 4096));
            if reader.read_line(&mut line).await.is_err() {
                return;
            }
            let request: Value = serde_json::from_str(line.trim()).unwrap_or(Value::Null);
            let event = match request["command"].as_str() {
                Some("pause") => Some(Event::Pause),
                Some("resume") => Some(Event::Resume),
                Some("promote") => Some(Event::Promote),
                Some("abort") => Some(Event::Abort {
                    reason: request["reason"]
                        .as_str()
                        .unwrap_or("aborted by the operator")
                        .to_owned(),
                }),
                _ => None,
            };
            let answer = match event {
                Some(event) => match commands.send(event).await {
                    Ok(()) => json!({"ok": true}),
                    Err(_) => json!({"ok": false, "error": "the rollout has ended"}),
                },
                None => json!({"ok": false, "error": "unknown command"}),
            };
            let _ = write.write_all(format!("{answer}\n").as_bytes()).await;
        });
    }
}

async fn steer(global: &Global, args: CommandArgs, command: &str) -> anyhow::Result<ExitStatus> {
    if let Some(controller) = &args.controller {
        return crate::cmd::cluster_serve::client::steer(controller, &args, command).await;
    }
    let namespace = match &args.namespace {
        Some(namespace) => namespace.clone(),
        None => Cluster::connect(None, None, None)
            .await
            .map(|c| c.namespace().to_owned())
            .unwrap_or_else(|_| "default".to_owned()),
    };
    let socket = socket_path(&global.state_dir(), &namespace, &args.service);
    let Ok(stream) = tokio::net::UnixStream::connect(&socket).await else {
        eprintln!(
            "error: no `wharf cluster deploy {}` is running here for namespace {namespace} (no answer on {})",
            args.service,
            socket.display()
        );
        return Ok(ExitStatus::Failed);
    };
    let (read, mut write) = stream.into_split();
    let request = json!({"command": command, "reason": args.reason});
    write.write_all(format!("{request}\n").as_bytes()).await?;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    let answer: Value = serde_json::from_str(line.trim()).unwrap_or(Value::Null);
    if answer["ok"] == true {
        println!("{command}: sent to the rollout of {}", args.service);
        Ok(ExitStatus::Ok)
    } else {
        eprintln!("error: {}", answer["error"].as_str().unwrap_or("no answer"));
        Ok(ExitStatus::Failed)
    }
}

async fn status(global: &Global, args: StatusArgs) -> anyhow::Result<ExitStatus> {
    if let Some(controller) = &args.controller {
        if let Some(flag) = crate::cmd::cluster_serve::client::cluster_flag(&args.connect) {
            eprintln!(
                "error: {flag} is the controller's setting with --controller (it reports its own namespace); drop it"
            );
            return Ok(ExitStatus::Invalid);
        }
        return crate::cmd::cluster_serve::client::status(global, controller).await;
    }
    let args = args.connect;
    let Some(stack) = load_stack(global, args.environment.as_deref())? else {
        return Ok(ExitStatus::Invalid);
    };
    let cluster = connect(&args).await?;
    let store = wharf_ops::read::open_existing(&global.state_dir())?;
    let saved = saved_rollouts(store.as_ref(), cluster.namespace(), stack.services.keys())?;
    drop(store);
    let view = status_view(&cluster, &stack, &saved).await?;
    print_status(global.output, &view)?;
    Ok(ExitStatus::Ok)
}

/// The stack's services on the cluster, read from it by wharf's labels: each version's
/// availability, the route's (or router's) weights, and the latest saved rollout.
pub(crate) async fn status_view(
    cluster: &Cluster,
    stack: &wharf_manifest::Stack,
    saved: &std::collections::HashMap<String, Value>,
) -> anyhow::Result<Value> {
    let deployments = cluster.managed("Deployment", &stack.name).await?;
    let routes = cluster.managed("HTTPRoute", &stack.name).await?;
    let mut services = Vec::new();
    for name in stack.services.keys() {
        let label = wharf_kube::names::label_value(name);
        let versions: Vec<Value> = deployments
            .iter()
            .filter(|d| {
                d["metadata"]["labels"][wharf_kube::render::SERVICE_LABEL] == label.as_str()
                    && d["metadata"]["labels"][wharf_kube::router::COMPONENT_LABEL]
                        != wharf_kube::router::COMPONENT
            })
            .map(|d| {
                let availability = Availability::of(d);
                json!({
                    "deployment": d["metadata"]["name"],
                    "version": d["metadata"]["labels"][wharf_kube::render::VERSION_LABEL],
                    "available": availability.available,
                    "wanted": availability.wanted,
                    "complete": availability.complete(),
                })
            })
            .collect();
        let mut weights: Vec<Value> = routes
            .iter()
            .filter(|r| r["metadata"]["name"] == wharf_kube::names::dns_label(name).as_str())
            .flat_map(backend_weights)
            .map(|(backend, weight)| json!({"backend": backend, "weight": weight}))
            .collect();
        // Behind wharf's router: the weights of the table in force (its ConfigMap).
        if weights.is_empty()
            && let Some(table) = cluster
                .get("ConfigMap", &wharf_kube::router::router_name(name))
                .await?
                .as_ref()
                .and_then(wharf_kube::router::table_of_config_map)
        {
            weights = wharf_kube::router::weights(&table, name)
                .into_iter()
                .map(|(version, weight)| {
                    json!({"backend": wharf_kube::names::joined(name, &version), "weight": weight})
                })
                .collect();
        }
        let rollout = saved.get(name).cloned();
        if versions.is_empty() && weights.is_empty() && rollout.is_none() {
            continue;
        }
        services.push(
            json!({"service": name, "versions": versions, "route": weights, "rollout": rollout}),
        );
    }
    Ok(json!({"namespace": cluster.namespace(), "services": services}))
}

/// The latest saved rollout of each of `services` in `namespace`, as [`rollout_view`]s (read
/// before the cluster is asked: a store connection is not held across the cluster's calls).
pub(crate) fn saved_rollouts<'a>(
    store: Option<&wharf_ops::read::StateDb>,
    namespace: &str,
    services: impl Iterator<Item = &'a String>,
) -> anyhow::Result<std::collections::HashMap<String, Value>> {
    let mut saved = std::collections::HashMap::new();
    let Some(store) = store else {
        return Ok(saved);
    };
    for name in services {
        if let Some(row) = wharf_ops::cluster::latest(store, namespace, name)?
            && let Ok(rollout) = serde_json::from_str::<ClusterRollout>(&row.state)
        {
            saved.insert(name.clone(), rollout_view(row.id, &rollout));
        }
    }
    Ok(saved)
}

/// A saved rollout as `status` and the controller show it.
pub(crate) fn rollout_view(id: u64, rollout: &ClusterRollout) -> Value {
    let outcome = match rollout.machine.outcome() {
        Some(Outcome::Succeeded) => json!({"result": "succeeded"}),
        Some(Outcome::RolledBack { reason }) => json!({"result": "rolled-back", "reason": reason}),
        None => Value::Null,
    };
    json!({
        "id": id,
        "from": rollout.stable.version,
        "to": rollout.new.version,
        "phase": rollout.machine.phase().name(),
        "done": rollout.machine.is_done(),
        "outcome": outcome,
    })
}

pub(crate) fn print_status(output: Output, view: &Value) -> anyhow::Result<()> {
    let services = view["services"].as_array().cloned().unwrap_or_default();
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(view)?),
        Output::Human => {
            let mut table = comfy_table::Table::new();
            table.load_preset(comfy_table::presets::NOTHING);
            table.set_header(["SERVICE", "VERSION", "AVAILABLE", "WEIGHT", "ROLLOUT"]);
            for service in &services {
                let weights = service["route"].as_array().cloned().unwrap_or_default();
                let rollout = match &service["rollout"] {
                    Value::Null => String::new(),
                    r => format!(
                        "to {} ({})",
                        r["to"].as_str().unwrap_or(""),
                        r["phase"].as_str().unwrap_or("")
                    ),
                };
                for version in service["versions"].as_array().into_iter().flatten() {
                    let weight = weights
                        .iter()
                        .find(|w| w["backend"] == version["deployment"])
                        .map_or("-".to_owned(), |w| w["weight"].to_string());
                    table.add_row([
                        service["service"].as_str().unwrap_or("").to_owned(),
                        version["version"].as_str().unwrap_or("").to_owned(),
                        format!("{}/{}", version["available"], version["wanted"]),
                        weight,
                        rollout.clone(),
                    ]);
                }
            }
            println!("namespace {}", view["namespace"].as_str().unwrap_or(""));
            println!("{table}");
        }
    }
    Ok(())
}
