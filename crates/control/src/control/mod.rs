//! The control plane's event loop: one task owns all state and handles a closed set of events
//! (instance exited, probe result, API command, tick). Every decision — start, restart, back
//! off, stop, adopt — happens here, in one place, and is written to the ledger.

mod adopt;
mod alerts;
mod approvals;
mod backups;
mod inject;
mod metrics;
mod promotion;
mod reconcile;
mod reload;
mod rollouts;
mod runbook_plan;
mod runbooks;
mod sandbox_app;
mod supervise;
mod traffic;

pub use backups::{repository_text as backup_repository_text, unmet_requirements};
pub use traffic::PROXY_ROW;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use wharf_ledger::KnownAction;
use wharf_probe::{Outcome, Prober};
use wharf_runtime::{
    Decision, Driver, ExitStatus, InstanceSpec, RestartLimits, Running, StartError,
};
use wharf_store::InstanceRow;

use wharf_api::ControlError;

use crate::events::{Command, Event, Handle, ProbeKind};
use crate::journal::Journal;
use crate::plan::{InstanceVars, StackPlan, resolve_check};
use crate::proxy_link::ProxyReport;
use crate::report::{ServiceStatus, StatusReport};
use crate::report::{service_statuses, stack_status};
use crate::state::{Phase, ServiceState};
use crate::tasks::{probe_loop, watch_ended};
use traffic::Traffic;

/// How long a stopping control plane waits for its last notices to reach their receivers.
const NOTICE_PATIENCE: Duration = Duration::from_secs(5);

/// An `instance.start` / `instance.restart` entry's details: a container's also name it and
/// the image it runs by digest, so the ledger says exactly what ran.
fn start_details(
    started: &wharf_runtime::HandleSummary,
    port: Option<u16>,
    version: &str,
    restarts: u32,
) -> serde_json::Value {
    let mut details =
        json!({"pid": started.pid, "port": port, "version": version, "restarts": restarts});
    if let Some(image) = &started.image {
        details["container"] = json!(started.id);
        details["image"] = json!(image);
    }
    details
}

/// An exec check of an instance whose commands run inside it (a container) goes through the
/// instance's runner; every other check is left as it is.
fn exec_where_it_runs(
    check: wharf_probe::Check,
    inside: Option<&std::sync::Arc<dyn wharf_runtime::ExecInside>>,
) -> wharf_probe::Check {
    match (check, inside) {
        (
            wharf_probe::Check::Exec {
                command,
                expect_exit,
            },
            Some(inside),
        ) => wharf_probe::Check::ExecElsewhere {
            command,
            expect_exit,
            runner: std::sync::Arc::new(crate::tasks::InstanceRunner(inside.clone())),
        },
        (check, _) => check,
    }
}

/// The engine network of a stack's containers (compose calls its own `<project>_default`).
pub fn container_network(stack: &str) -> String {
    format!("{stack}_wharf")
}

/// How long an instance without a ready probe must run before it counts as ready.
pub const PROBELESS_READY_AFTER: Duration = Duration::from_secs(1);

/// How the control plane is set up.
#[derive(Debug, Clone)]
pub struct Config {
    pub state_dir: PathBuf,
    /// Instances run in this directory (the manifest's).
    pub workdir: PathBuf,
    pub driver: std::sync::Arc<dyn Driver>,
    /// SIGTERM, then this long, then SIGKILL.
    pub stop_grace: Duration,
    pub limits: RestartLimits,
    pub log_max_bytes: u64,
    pub log_keep: u32,
    /// The `wharf-proxy` binary, needed when a service has a public port.
    pub proxy_binary: Option<PathBuf>,
    /// The control plane logs JSON lines (`WHARF_LOG_FORMAT=json`): its proxy does too.
    pub log_json: bool,
    /// Re-reads the manifest for `reload` (`wharf up` against a running control plane).
    pub reload_plan: Option<PlanLoader>,
}

/// Builds the current plan from the manifest on disk (the error is for people), for the
/// environment overlay the control plane was started with.
#[derive(Clone)]
pub struct PlanLoader {
    pub load: std::sync::Arc<dyn Fn() -> Result<StackPlan, String> + Send + Sync>,
    pub environment: Option<String>,
}

impl std::fmt::Debug for PlanLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlanLoader")
    }
}

/// A `down` waiting for its services to stop.
struct PendingDown {
    services: Vec<String>,
    reply: oneshot::Sender<Result<(), ControlError>>,
}

/// The control plane: the loop's one owner of all state, made of subsystems that each own
/// theirs — the supervisor (services and their instances), traffic (the proxy and its route
/// tables), the injector (secrets and config at instance start), alerting (pages and their
/// delivery) — over a [`Core`] they share.
/// Rollouts are per service: their records live with the supervisor's services and their
/// logic in `rollouts.rs`, which drives the supervisor and traffic. What crosses subsystems
/// (reconciling, reloading, adopting) is a method of `ControlPlane` that borrows each part
/// it needs.
pub struct ControlPlane {
    core: Core,
    supervisor: Supervisor,
    traffic: traffic::Traffic,
    injector: inject::Injector,
    alerting: alerts::Alerting,
    backups: backups::Backups,
    runbooks: runbooks::Runbooks,
    approvals: approvals::Approvals,
    /// The proxy's per-version counters as running totals, for `/metrics`.
    metrics_traffic: crate::metrics::TrafficTotals,
    /// Who asked for (and approved) the deploy being started, for its `deploy.start` entry:
    /// set only around `start_prepared`.
    deployed_by: Option<approvals::DeployedBy>,
    /// A reload's task is reading the manifest: another waits (they could land out of order).
    reload_preparing: bool,
    /// Who asked for the reload being prepared (the actor of what it changes).
    reload_caller: Option<String>,
    events_rx: mpsc::Receiver<Event>,
}

/// What every subsystem shares: the configuration, the journal (reads, and writes queued to
/// the store writer), the way back into the loop, the prober.
pub(super) struct Core {
    config: Config,
    stack: String,
    journal: Journal,
    events: mpsc::Sender<Event>,
    prober: Prober,
    started_at: jiff::Timestamp,
    /// The last instance generation handed out. One counter for the whole control plane, so a
    /// late event of a service removed and added again can never match a new instance.
    generations: u64,
    /// What handling the current event asked of the driver, handed to tasks by the loop once
    /// the event is handled (see [`Effect`]).
    effects: Vec<Effect>,
}

/// A driver call a subsystem decided on. Subsystems only say what to do; the loop turns each
/// into a task after the event ([`ControlPlane::run_effects`]), whose outcome — a start's —
/// comes back as an event. So no subsystem awaits, spawns or needs a runtime to be tested.
#[derive(Debug)]
pub(super) enum Effect {
    /// Start an instance (or the proxy, `service` = [`PROXY_ROW`]); answered by
    /// [`Event::Started`] with this generation. The resolved spec is wiped after the start.
    Start {
        service: String,
        ordinal: u32,
        generation: u64,
        spec: Box<InstanceSpec>,
    },
    /// Stop what runs under this handle: SIGTERM-equivalent, the grace, then a kill. Its exit
    /// arrives through the instance's watch.
    Stop(wharf_runtime::InstanceHandle),
    /// [`Effect::Stop`] with the service's own grace period (`stop.grace`).
    StopWithin(wharf_runtime::InstanceHandle, Duration),
}

/// The supervisor's state: each service of the plan with its instances, and the `down`s
/// waiting for them to stop.
pub(super) struct Supervisor {
    services: Vec<ServiceState>,
    pending_downs: Vec<PendingDown>,
    /// Set by a whole-stack `down`: the loop ends once everything has stopped.
    exit_when_stopped: bool,
    /// Each service's state at the last pass, to record transitions.
    last_states: std::collections::HashMap<String, wharf_api::ServiceState>,
}

impl Core {
    /// Where an instance's log is written.
    pub(super) fn log_path(&self, service: &str, ordinal: u32) -> PathBuf {
        self.config
            .state_dir
            .join("logs")
            .join(service)
            .join(format!("{ordinal}.log"))
    }

    /// Where an instance's shim writes its exit status.
    pub(super) fn exit_path(&self, service: &str, ordinal: u32) -> PathBuf {
        self.config
            .state_dir
            .join("run")
            .join(format!("{service}-{ordinal}.exit"))
    }

    /// Stops what a start nobody waits for any more brought up, so it does not run on
    /// unrecorded.
    pub(super) fn undo_start(&mut self, result: Result<Running, StartError>) {
        if let Ok(running) = result {
            self.stop(running.handle);
        }
    }

    /// Asks the driver to stop what runs under `handle` (after this event).
    pub(super) fn stop(&mut self, handle: wharf_runtime::InstanceHandle) {
        self.effects.push(Effect::Stop(handle));
    }

    /// [`Core::stop`] with the service's own grace (`stop.grace`) when it has one.
    pub(super) fn stop_within(
        &mut self,
        handle: wharf_runtime::InstanceHandle,
        grace: Option<Duration>,
    ) {
        match grace {
            Some(grace) => self.effects.push(Effect::StopWithin(handle, grace)),
            None => self.stop(handle),
        }
    }

    /// Asks the driver to start `spec` as attempt `generation` (after this event).
    pub(super) fn start(
        &mut self,
        service: String,
        ordinal: u32,
        generation: u64,
        spec: InstanceSpec,
    ) {
        self.effects.push(Effect::Start {
            service,
            ordinal,
            generation,
            spec: Box::new(spec),
        });
    }
}

impl ControlPlane {
    pub fn new(plan: StackPlan, config: Config, journal: Journal) -> (ControlPlane, Handle) {
        let (events_tx, events_rx) = mpsc::channel(1024);
        let handle = Handle {
            events: events_tx.clone(),
            writer: journal.writer(),
            state_dir: config.state_dir.clone(),
            workdir: config.workdir.clone(),
            caller: None,
        };
        let mut core = Core {
            config: config.clone(),
            stack: plan.name.clone(),
            journal,
            events: events_tx,
            prober: Prober::default(),
            started_at: jiff::Timestamp::now(),
            generations: 0,
            effects: Vec::new(),
        };
        let alerting = alerts::Alerting::new(&core, plan.alerts.clone());
        let backups = backups::Backups::new(&mut core, &plan);
        let runbooks = runbooks::Runbooks::new(&mut core, plan.runbooks.clone());
        let approvals = approvals::Approvals::load(&core);
        let mut control = ControlPlane {
            core,
            supervisor: Supervisor {
                services: plan.services.into_iter().map(ServiceState::new).collect(),
                pending_downs: Vec::new(),
                exit_when_stopped: false,
                last_states: std::collections::HashMap::new(),
            },
            traffic: traffic::Traffic::new(
                &config.state_dir,
                config.proxy_binary.clone(),
                config.log_json,
            ),
            injector: inject::Injector::new(plan.secrets.clone()),
            alerting,
            backups,
            runbooks,
            approvals,
            metrics_traffic: crate::metrics::TrafficTotals::default(),
            deployed_by: None,
            reload_preparing: false,
            reload_caller: None,
            events_rx,
        };
        control.restore_rollouts();
        (control, handle)
    }

    /// Gives the control plane the unlocked secrets its instances need.
    pub fn with_secrets(mut self, secrets: wharf_secrets::Secrets) -> Self {
        self.injector.secrets = Some(secrets);
        self
    }

    /// Adopts what still runs from a previous control plane, then supervises until a
    /// whole-stack `down` completes or `shutdown` resolves (which also stops the stack).
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        self.run_until(shutdown, std::future::pending()).await;
    }

    /// Like [`Self::run`]; when `abandon` resolves instead, the control plane exits and leaves
    /// the stack running for the next one to adopt (a detached control plane's SIGTERM, how
    /// wharf is upgraded). It first starts nothing new and waits, within the stop grace, for
    /// the starts and stops already in the driver's hands to come back, so that nothing it
    /// started runs unrecorded and no stop loses its SIGKILL.
    pub async fn run_until(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
        abandon: impl std::future::Future<Output = ()>,
    ) {
        self.core.journal.record(
            KnownAction::StackUp,
            &self.core.stack,
            json!({"control_pid": std::process::id()}),
        );
        self.adopt().await;
        self.run_effects();
        self.alerting.start_delivery(&mut self.core, &self.injector);
        tokio::spawn(crate::proxy_link::run(
            self.traffic.socket.clone(),
            self.traffic.desired.subscribe(),
            self.core.events.clone(),
            Event::Proxy,
        ));
        self.resume_rollouts();
        self.spawn_external_probes();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        tokio::pin!(abandon);
        let mut shutting_down = false;
        let mut abandoning: Option<tokio::time::Instant> = None;
        loop {
            // Probe results only change flags: they are folded in and acted on at the next
            // tick, so thousands of them a second cost one reconciliation per tick. Exits and
            // commands are acted on at once.
            let act_now = tokio::select! {
                Some(event) = self.events_rx.recv() => {
                    let urgent = !matches!(
                        event,
                        Event::Probe { .. } | Event::Proxy(ProxyReport::Applied { .. })
                    );
                    self.handle(event);
                    urgent
                }
                _ = tick.tick() => true,
                () = &mut shutdown, if !shutting_down => {
                    shutting_down = true;
                    let (reply, _) = oneshot::channel();
                    self.begin_down(None, reply);
                    true
                }
                () = &mut abandon, if abandoning.is_none() => {
                    tracing::info!("leaving the stack running for the next control plane");
                    let grace = self.core.config.stop_grace + Duration::from_secs(5);
                    abandoning = Some(tokio::time::Instant::now() + grace);
                    true
                }
            };
            // The row changes of this event, with or without an entry, reach the writer now,
            // and what it asked of the driver goes to tasks.
            self.core.journal.commit();
            self.run_effects();
            if let Some(deadline) = abandoning {
                if !self.driver_busy() || tokio::time::Instant::now() >= deadline {
                    self.core.journal.flush().await;
                    tracing::info!("control plane exits; the stack keeps running");
                    return;
                }
                continue;
            }
            if !act_now {
                continue;
            }
            self.reconcile();
            if !self.supervisor.exit_when_stopped {
                self.drive_backups();
            }
            let mut statuses =
                service_statuses(&self.supervisor.services, self.core.config.driver.as_ref());
            if !self.alerting.alerts().is_empty() {
                self.attach_backups(&mut statuses);
            }
            self.supervisor
                .record_transitions(&mut self.core, &statuses);
            if !self.supervisor.exit_when_stopped {
                self.drive_runbooks(&statuses);
            }
            self.expire_deploy_requests();
            self.alerting.evaluate(
                &mut self.core,
                &self.injector,
                &self.supervisor.services,
                &statuses,
            );
            self.start_alert_runbooks();
            self.core.journal.commit();
            self.run_effects();
            if self.supervisor.exit_when_stopped
                && self
                    .supervisor
                    .services
                    .iter()
                    .all(|s| s.instances.is_empty())
            {
                self.traffic.stop(&mut self.core);
                self.run_effects();
                if self.traffic.handle.is_none() && !self.traffic.starting {
                    break;
                }
            }
        }
        self.core
            .journal
            .record(KnownAction::StackDown, &self.core.stack, json!({}));
        self.finish_deliveries().await;
        // Every record queued so far reaches the disk before the process may exit.
        self.core.journal.flush().await;
        tracing::info!("stack stopped; control plane exits");
    }

    /// Hands the driver calls decided while handling an event to tasks: a start answers with
    /// [`Event::Started`]; a stop's outcome shows as the instance's exit.
    fn run_effects(&mut self) {
        for effect in std::mem::take(&mut self.core.effects) {
            let driver = self.core.config.driver.clone();
            match effect {
                Effect::Start {
                    service,
                    ordinal,
                    generation,
                    spec,
                } => {
                    let events = self.core.events.clone();
                    tokio::spawn(async move {
                        let result = driver.start(&spec).await;
                        // The resolved values are not needed past the start: wipe this copy.
                        let mut spec = spec;
                        for (_, value) in spec.env.iter_mut() {
                            zeroize::Zeroize::zeroize(value);
                        }
                        let started = Event::Started {
                            service,
                            ordinal,
                            generation,
                            result: Box::new(result),
                        };
                        let _ = events.send(started).await;
                    });
                }
                Effect::Stop(handle) => {
                    tokio::spawn(driver.stop(handle, self.core.config.stop_grace));
                }
                Effect::StopWithin(handle, grace) => {
                    tokio::spawn(driver.stop(handle, grace));
                }
            }
        }
    }

    /// Waits a little for the notices still on their way (the resolves the `down` itself
    /// caused); what does not arrive in time stays in the outbox for the next control plane.
    async fn finish_deliveries(&mut self) {
        let deadline = tokio::time::Instant::now() + NOTICE_PATIENCE;
        while self.alerting.delivering() || self.backups.busy() {
            match tokio::time::timeout_at(deadline, self.events_rx.recv()).await {
                Ok(Some(Event::Notice(outcome))) => {
                    self.alerting.on_outcome(&mut self.core, *outcome);
                    self.core.journal.commit();
                }
                // A backup job that ends meanwhile is recorded (one still running is recorded
                // as interrupted by the next control plane).
                Ok(Some(Event::Backup(job))) => {
                    self.backups.finish(&mut self.core, *job);
                    self.core.journal.commit();
                }
                // The stack is down: nothing else is acted on any more.
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }

    /// Whether a start or a stop is still in the driver's hands.
    fn driver_busy(&self) -> bool {
        self.traffic.starting
            || self.supervisor.services.iter().any(|s| {
                s.instances
                    .values()
                    .any(|i| matches!(i.phase, Phase::Starting | Phase::Stopping))
            })
    }

    // ----- events -----------------------------------------------------------------------------

    fn handle(&mut self, event: Event) {
        match event {
            Event::Command(Command::As { actor, command }) => {
                let before = self.core.journal.act_as(Some(actor));
                self.handle(Event::Command(*command));
                self.core.journal.act_as(before);
            }
            Event::Exited {
                service,
                ordinal,
                generation,
                status,
            } => self.on_exit(&service, ordinal, generation, status),
            Event::Probe {
                service,
                ordinal,
                generation,
                kind,
                outcome,
            } => self.supervisor.on_probe(
                &mut self.core,
                &service,
                ordinal,
                generation,
                kind,
                outcome,
            ),
            Event::Started {
                service,
                ordinal: _,
                generation,
                result,
            } if service == traffic::PROXY_ROW => {
                self.traffic.on_started(&mut self.core, generation, *result)
            }
            Event::Started {
                service,
                ordinal,
                generation,
                result,
            } => self.on_started(&service, ordinal, generation, *result),
            Event::Command(Command::Status(reply)) => {
                let _ = reply.send(self.report());
            }
            Event::Command(Command::Metrics(reply)) => {
                let _ = reply.send(Box::new(self.metrics()));
            }
            Event::Command(Command::Restart { service, reply }) => {
                let result = self.supervisor.begin_restart(&mut self.core, &service);
                if result.is_ok() {
                    self.alerting.change(
                        &self.core,
                        &service,
                        format!("{service} restarting (wharf restart)"),
                        BTreeMap::from([("action".to_owned(), "restart".to_owned())]),
                    );
                }
                let _ = reply.send(result);
            }
            Event::Command(Command::Down { service, reply }) => self.begin_down(service, reply),
            Event::Command(Command::Deploy {
                service,
                request,
                actor,
                reply,
            }) => {
                let _ = reply.send(self.request_deploy(&service, request, &actor));
            }
            Event::Command(Command::DeployRequests(reply)) => {
                let _ = reply.send(self.approvals.list());
            }
            Event::Command(Command::DecideDeploy {
                id,
                approve,
                actor,
                approver,
                vouched_by,
                reason,
                reply,
            }) => {
                let decider = approvals::Decider {
                    name: &actor,
                    approver,
                    vouched_by: vouched_by.as_deref(),
                };
                let _ = reply.send(self.decide_deploy(&id, approve, decider, &reason));
            }
            Event::Command(Command::RolloutCommand {
                service,
                command,
                reply,
            }) => {
                let _ = reply.send(self.rollout_command(&service, command));
            }
            Event::Command(Command::Reload { request, reply }) => {
                self.begin_reload(request, reply);
            }
            Event::ReloadPrepared(prepared) => {
                let (prepared, reply) = *prepared;
                self.on_reload_prepared(prepared, reply);
            }
            Event::Command(Command::SecretPolicy { name, reply }) => {
                let found = self
                    .injector
                    .policies
                    .iter()
                    .find(|(declared, _)| *declared == name)
                    .map(|(_, policy)| (policy.clone(), self.core.config.workdir.clone()));
                let declared: Vec<&str> = self
                    .injector
                    .policies
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect();
                let _ = reply.send(found.ok_or_else(|| {
                    ControlError::new(wharf_api::ErrorCode::InvalidRequest, format!(
                        "`{name}` is not declared under `secrets:` in the manifest (declared: {})",
                        if declared.is_empty() {
                            "none".to_owned()
                        } else {
                            declared.join(", ")
                        }
                    ))
                }));
            }
            Event::Command(Command::Rollback { service, reply }) => {
                let _ = reply.send(self.begin_rollback(&service));
            }
            Event::Command(Command::Rollout { service, reply }) => {
                let answer = match self.supervisor.index(&service) {
                    Some(index) => Ok(self.rollout_view(index)),
                    None => Err(self.supervisor.unknown(&service)),
                };
                let _ = reply.send(answer);
            }
            Event::Proxy(ProxyReport::Applied { seq }) => {
                tracing::debug!(seq, "route table applied");
                self.traffic.applied_seq = self.traffic.applied_seq.max(seq);
            }
            Event::Proxy(ProxyReport::Rejected(rejection)) => self.on_proxy_rejected(rejection),
            Event::Proxy(ProxyReport::Stats(snapshot)) => {
                self.alerting.on_stats(&snapshot);
                self.metrics_traffic.fold(&snapshot);
                self.on_proxy_stats(*snapshot);
            }
            Event::Notice(outcome) => self.alerting.on_outcome(&mut self.core, *outcome),
            Event::Backup(job) => {
                let free = self.backups.finish(&mut self.core, *job);
                self.want_again(free);
            }
            Event::Command(Command::Restore { request, reply }) => {
                let _ = reply.send(self.request_restore(request));
            }
            Event::Command(Command::Backup { command, reply }) => {
                let _ = reply.send(self.backup_command(command));
            }
            Event::Command(Command::BackupOverview(reply)) => {
                let _ = reply.send(wharf_api::BackupOverview {
                    repository: self.backups.repository_text(&self.core),
                    datastores: self.backups.statuses(),
                    jobs: self.backups.jobs(),
                });
            }
            Event::Command(Command::AcknowledgePage {
                dedup_key,
                by,
                reply,
            }) => {
                let _ = reply.send(self.alerting.acknowledge(&mut self.core, &dedup_key, &by));
            }
            Event::Command(Command::CheckMatchers { matchers, reply }) => {
                let services: Vec<&str> = self
                    .supervisor
                    .services
                    .iter()
                    .map(|s| s.plan.name.as_str())
                    .collect();
                let alerts = self.alerting.alerts();
                let names: Vec<&str> = alerts.iter().map(|a| a.name.as_str()).collect();
                let labels: Vec<&str> = alerts
                    .iter()
                    .flat_map(|a| a.labels.keys().map(String::as_str))
                    .collect();
                let _ = reply.send(wharf_api::silences::check_against(
                    &matchers, &services, &names, &labels,
                ));
            }
            Event::Command(Command::SilencesChanged(reply)) => {
                self.alerting.reload_silences(&mut self.core);
                let _ = reply.send(());
            }
            Event::Command(Command::BackupJob { id, reply }) => {
                let _ = reply.send(self.backups.job(id));
            }
            Event::Command(Command::Runbook(command)) => self.runbook_command(command),
            Event::RunbookStep(done) => self.on_runbook_step(*done),
            Event::Command(Command::Snapshots { service, reply }) => {
                self.backups
                    .list_snapshots(&self.core, &self.injector, service, reply);
            }
        }
    }

    fn on_exit(
        &mut self,
        service_name: &str,
        ordinal: u32,
        generation: u64,
        status: Option<ExitStatus>,
    ) {
        if service_name == traffic::PROXY_ROW {
            return self.traffic.on_exit(&mut self.core, generation, status);
        }
        let Some(index) = self.supervisor.index(service_name) else {
            return;
        };
        let limits = self.core.config.limits;
        let policy = self.supervisor.services[index].plan.restart;
        let Some(instance) = self.supervisor.services[index].instances.get_mut(&ordinal) else {
            return;
        };
        if instance.generation != generation {
            return;
        }
        instance.abort_tasks();
        let pid = instance
            .handle
            .take()
            .and_then(|h| self.core.config.driver.describe(&h).pid);
        inject::Injector::remove_secret_files(&self.core, service_name, ordinal);
        let Some(instance) = self.supervisor.services[index].instances.get_mut(&ordinal) else {
            return;
        };
        instance.ready = false;
        let status = status.unwrap_or(ExitStatus {
            code: None,
            signal: None,
            at: jiff::Timestamp::now().to_string(),
        });
        instance.last_exit = Some(status.clone());
        let target = format!("{service_name}/{ordinal}");
        let version = instance.version.clone();
        if instance.phase == Phase::Stopping || instance.outdated || instance.draining.is_some() {
            self.supervisor.services[index].instances.remove(&ordinal);
            self.core.journal.remove_instance(service_name, ordinal);
            self.core.journal.record(
                KnownAction::InstanceStopped,
                &target,
                json!({"pid": pid, "status": status.to_string()}),
            );
            return;
        }
        let ran_for = instance
            .started_at
            .map(|t| jiff::Timestamp::now().duration_since(t).unsigned_abs())
            .unwrap_or_default();
        let decision = instance.history.on_exit(policy, &status, ran_for, &limits);
        let details = match decision {
            Decision::Restart {
                after,
                crash_looping,
            } => {
                instance.phase = Phase::Backoff {
                    until: Instant::now() + after,
                };
                json!({"pid": pid, "status": status.to_string(), "ran_for_ms": ran_for.as_millis() as u64,
                       "restart_in_ms": after.as_millis() as u64, "crash_looping": crash_looping})
            }
            Decision::Stay => {
                instance.phase = Phase::Exited;
                json!({"pid": pid, "status": status.to_string(), "ran_for_ms": ran_for.as_millis() as u64, "restart": false})
            }
        };
        tracing::warn!(target, status = %status, "instance exited");
        self.core
            .journal
            .record(KnownAction::InstanceExit, &target, details);
        if matches!(decision, Decision::Stay) {
            self.core.journal.remove_instance(service_name, ordinal);
        }
        self.new_instance_failed(index, &version, format!("{target} exited ({status})"));
    }

    // ----- commands ---------------------------------------------------------------------------

    fn begin_down(
        &mut self,
        service: Option<String>,
        reply: oneshot::Sender<Result<(), ControlError>>,
    ) {
        let names: Vec<String> = match &service {
            Some(name) if self.supervisor.index(name).is_none() => {
                let _ = reply.send(Err(self.supervisor.unknown(name)));
                return;
            }
            Some(name) => vec![name.clone()],
            None => {
                self.supervisor.exit_when_stopped = true;
                self.supervisor
                    .services
                    .iter()
                    .map(|s| s.plan.name.clone())
                    .collect()
            }
        };
        // A rollout of a service that stops ends here, rolled back: nothing is left to judge.
        for name in &names {
            if let Some(index) = self.supervisor.index(name)
                && self.supervisor.services[index].active_rollout().is_some()
            {
                self.feed_rollout(
                    index,
                    wharf_rollout::Event::Abort {
                        reason: "the service was stopped".to_owned(),
                    },
                );
            }
        }
        // An operator's down takes held services over: no restore brings them back.
        self.backups.release(&names);
        for name in &names {
            if let Some(index) = self.supervisor.index(name) {
                self.supervisor.services[index].wanted = false;
            }
        }
        self.core.journal.record(
            KnownAction::StackDownRequested,
            service.as_deref().unwrap_or(&self.core.stack),
            json!({"services": names}),
        );
        self.supervisor.pending_downs.push(PendingDown {
            services: names,
            reply,
        });
    }

    // ----- instances --------------------------------------------------------------------------

    fn spec_for(
        &self,
        index: usize,
        ordinal: u32,
        port: Option<u16>,
        version: &str,
    ) -> Option<InstanceSpec> {
        let extra = self.supervisor.services[index]
            .instances
            .get(&ordinal)
            .map(|i| i.extra_ports.clone())
            .unwrap_or_default();
        self.spec_with_ports(index, ordinal, port, &extra, version)
    }

    /// [`Self::spec_for`] with the loopback ports of `ports:` given (an instance being
    /// adopted is not in the service yet: its ports come from its driver's handle).
    fn spec_with_ports(
        &self,
        index: usize,
        ordinal: u32,
        port: Option<u16>,
        extra: &[wharf_runtime::PortMapping],
        version: &str,
    ) -> Option<InstanceSpec> {
        let service = &self.supervisor.services[index];
        let plan = &service.plan;
        let spec = service.version_spec(version)?;
        let container = self.container_spec(plan, spec, port, extra);
        // Inside a container, `${PORT}` is the port it listens on there, not the loopback
        // port published to it (which probes and the proxy use).
        let inner_port = match (&container, &plan.container) {
            (Some(_), Some(c)) => c.container_port.or(port),
            _ => port,
        };
        let vars = InstanceVars {
            service: &plan.name,
            ordinal,
            version: &spec.version,
            port: inner_port,
        };
        let command = spec
            .command
            .as_ref()?
            .iter()
            .map(|a| vars.substitute(a))
            .collect();
        let mut env: Vec<(String, String)> = plan
            .env
            .iter()
            .map(|(k, v)| (k.clone(), vars.substitute(v)))
            .collect();
        // Runtime overrides (`wharf config set`) win over the manifest.
        for (key, value) in inject::Injector::overrides(&self.core, &plan.name) {
            match env.iter_mut().find(|(k, _)| *k == key) {
                Some(entry) => entry.1 = value,
                None => env.push((key, value)),
            }
        }
        env.extend(vars.env());
        Some(InstanceSpec {
            service: plan.name.clone(),
            index: ordinal,
            version: spec.version.clone(),
            command,
            env,
            workdir: self.core.config.workdir.clone(),
            log_path: self.core.log_path(&plan.name, ordinal),
            exit_path: self.core.exit_path(&plan.name, ordinal),
            log_max_bytes: self.core.config.log_max_bytes,
            log_keep: self.core.config.log_keep,
            container,
            stop_signal: plan.stop_signal.clone(),
        })
    }

    /// The container side of an instance of an `image:` service (`None` for a process):
    /// the version's image, its loopback port published to the container port, volumes
    /// (named ones prefixed with the stack, binds resolved against the manifest's directory),
    /// the stack's network with the service's name as alias.
    fn container_spec(
        &self,
        plan: &crate::plan::ServicePlan,
        version: &crate::state::VersionSpec,
        port: Option<u16>,
        extra: &[wharf_runtime::PortMapping],
    ) -> Option<wharf_runtime::ContainerSpec> {
        use wharf_manifest::model::VolumeSource as Source;
        let container = plan.container.as_ref()?;
        let image = version.image.clone().or_else(|| plan.image.clone())?;
        let stack = &self.core.stack;
        let mut ports = match (port, container.container_port) {
            (Some(host), Some(inner)) => vec![wharf_runtime::PortMapping {
                host,
                container: inner,
            }],
            _ => Vec::new(),
        };
        ports.extend_from_slice(extra);
        let volumes = container
            .volumes
            .iter()
            .map(|v| wharf_runtime::VolumeMount {
                source: match &v.source {
                    Source::Named(name) => {
                        wharf_runtime::VolumeSource::Named(format!("{stack}_{name}"))
                    }
                    Source::Bind(path) => {
                        wharf_runtime::VolumeSource::Bind(self.core.config.workdir.join(path))
                    }
                },
                target: v.target.clone(),
                read_only: v.read_only,
            })
            .collect();
        Some(wharf_runtime::ContainerSpec {
            stack: stack.clone(),
            owner: self.core.config.state_dir.display().to_string(),
            image,
            pull: container.pull,
            entrypoint: container.entrypoint.clone(),
            ports,
            volumes,
            network: container_network(stack),
            aliases: vec![plan.name.clone()],
            networks: container
                .networks
                .iter()
                .map(|(name, internal)| wharf_runtime::NetworkSpec {
                    name: if name == wharf_manifest::container_options::DEFAULT_NETWORK {
                        container_network(stack)
                    } else {
                        format!("{stack}_{name}")
                    },
                    internal: *internal,
                })
                .collect(),
            options: container.options.clone(),
            build: container
                .build
                .as_ref()
                .map(|build| build.spec(&self.core.config.workdir)),
        })
    }

    /// Hands an instance to the driver. The start itself runs in a task (a container or pod
    /// driver may take seconds); the loop goes on and learns the outcome from
    /// [`Event::Started`], matched by the attempt's generation.
    fn start_instance(&mut self, index: usize, ordinal: u32) {
        if let Err(reason) = self.supervisor.allocate_extra_ports(index, ordinal) {
            return self.fail_instance(index, ordinal, reason);
        }
        let Some((port, version)) = self.supervisor.services[index]
            .instances
            .get(&ordinal)
            .map(|i| (i.port, i.version.clone()))
        else {
            return;
        };
        let Some(spec) = self.spec_for(index, ordinal, port, &version) else {
            return;
        };
        let plan = &self.supervisor.services[index].plan;
        let identity = inject::Injector::identity(&self.core, plan, &spec);
        let mut spec = match self.injector.resolve(&self.core, plan, ordinal, spec) {
            Ok(spec) => spec,
            Err(reason) => return self.fail_instance(index, ordinal, reason),
        };
        // A container sees its secret files where a process would: the tmpfs directory,
        // mounted read-only at the same path.
        if let Some(container) = spec.container.as_mut()
            && !plan.secret_files.is_empty()
        {
            let dir = inject::Injector::secret_files_dir(&self.core, &plan.name, ordinal);
            container.volumes.push(wharf_runtime::VolumeMount {
                target: dir.display().to_string(),
                source: wharf_runtime::VolumeSource::Bind(dir),
                read_only: true,
            });
        }
        if self.supervisor.services[index].plan.binds_public_port()
            && let Some(reason) = port.and_then(port_taken)
        {
            self.fail_instance(index, ordinal, reason);
            return;
        }
        let _ = std::fs::create_dir_all(self.core.config.state_dir.join("run"));
        let service = self.supervisor.services[index].plan.name.clone();
        let Some(instance) = self.supervisor.services[index].instances.get_mut(&ordinal) else {
            return;
        };
        self.core.generations += 1;
        instance.generation = self.core.generations;
        instance.phase = Phase::Starting;
        instance.identity = identity;
        instance.error = None;
        let generation = instance.generation;
        self.core.start(service, ordinal, generation, spec);
    }

    /// The driver's answer to [`Self::start_instance`].
    fn on_started(
        &mut self,
        service_name: &str,
        ordinal: u32,
        generation: u64,
        result: Result<Running, StartError>,
    ) {
        let index = self.supervisor.index(service_name);
        let instance = index.and_then(|i| self.supervisor.services[i].instances.get_mut(&ordinal));
        let current = instance.is_some_and(|i| i.generation == generation);
        let Some(index) = index.filter(|_| current) else {
            // A start nobody waits for any more (the service went away): undo it.
            return self.core.undo_start(result);
        };
        let target = format!("{service_name}/{ordinal}");
        let stop_grace = self.supervisor.services[index].plan.stop_grace;
        let Some(instance) = self.supervisor.services[index].instances.get_mut(&ordinal) else {
            return;
        };
        if instance.phase == Phase::Stopping {
            // Stopped while starting: stop what the driver started; its exit removes the
            // instance. A start that failed leaves nothing to wait for.
            match result {
                Ok(running) => {
                    instance.handle = Some(running.handle.clone());
                    let watch = tokio::spawn(watch_ended(
                        self.core.events.clone(),
                        service_name.to_owned(),
                        ordinal,
                        generation,
                        running.ended,
                    ));
                    instance.tasks.push(watch.abort_handle());
                    self.core.stop_within(running.handle, stop_grace);
                }
                Err(_) => {
                    self.supervisor.services[index].instances.remove(&ordinal);
                }
            }
            return;
        }
        if instance.phase != Phase::Starting {
            // Not waited for in this phase: whatever the driver started must not run on
            // unrecorded.
            return self.core.undo_start(result);
        }
        let running = match result {
            Ok(running) => running,
            Err(StartError::Refused { reason, .. } | StartError::Shim { reason, .. }) => {
                return self.fail_instance(index, ordinal, reason);
            }
        };
        let started = self.core.config.driver.describe(&running.handle);
        let handle_text = running.handle.to_string();
        let now = jiff::Timestamp::now();
        instance.phase = Phase::Running;
        instance.handle = Some(running.handle);
        instance.started_at = Some(now);
        instance.ready = false;
        instance.ever_ready = false;
        instance.live = true;
        instance.ready_counts = Default::default();
        instance.live_counts = Default::default();
        instance.error = None;
        let (port, version, restarts) = (
            instance.port,
            instance.version.clone(),
            instance.history.restarts,
        );
        let spec_hash = instance.identity.full.clone();
        let watch = tokio::spawn(watch_ended(
            self.core.events.clone(),
            service_name.to_owned(),
            ordinal,
            generation,
            running.ended,
        ));
        instance.tasks.push(watch.abort_handle());
        self.core.journal.save_instance(&InstanceRow {
            service: service_name.to_owned(),
            index: ordinal,
            version: version.clone(),
            handle: handle_text,
            port,
            started_at: now.to_string(),
            restarts,
            spec_hash,
        });
        let action = if restarts > 0 {
            KnownAction::InstanceRestart
        } else {
            KnownAction::InstanceStart
        };
        self.core.journal.record(
            action,
            &target,
            start_details(&started, port, &version, restarts),
        );
        tracing::info!(
            target,
            pid = started.pid,
            id = started.id,
            ?port,
            "instance started"
        );
        self.spawn_probes(index, ordinal);
    }

    fn fail_instance(&mut self, index: usize, ordinal: u32, reason: String) {
        let name = self.supervisor.services[index].plan.name.clone();
        inject::Injector::remove_secret_files(&self.core, &name, ordinal);
        let mut version = String::new();
        if let Some(instance) = self.supervisor.services[index].instances.get_mut(&ordinal) {
            instance.phase = Phase::Failed;
            instance.error = Some(reason.clone());
            version = instance.version.clone();
        }
        self.new_instance_failed(index, &version, format!("{name}/{ordinal}: {reason}"));
        tracing::error!(service = name, ordinal, reason, "instance could not start");
        self.core.journal.record(
            KnownAction::InstanceStartFailed,
            &format!("{name}/{ordinal}"),
            json!({"reason": reason}),
        );
    }

    fn spawn_probes(&mut self, index: usize, ordinal: u32) {
        let plan = self.supervisor.services[index].plan.clone();
        let Some(instance) = self.supervisor.services[index].instances.get(&ordinal) else {
            return;
        };
        let vars = InstanceVars {
            service: &plan.name,
            ordinal,
            version: &instance.version,
            port: instance.port,
        };
        let generation = instance.generation;
        // An exec probe runs where the instance runs: inside its container, when its driver
        // says so (a container's `pg_isready` is not the host's).
        let inside = instance
            .handle
            .as_ref()
            .and_then(|handle| self.core.config.driver.exec_inside(handle));
        // Checks are resolved first (secrets in their URLs too), then handed to tasks.
        let checks: Vec<_> = [
            (ProbeKind::Ready, &plan.ready),
            (ProbeKind::Live, &plan.live),
        ]
        .into_iter()
        .filter_map(|(kind, probe)| probe.as_ref().map(|probe| (kind, probe)))
        .map(|(kind, probe)| {
            let check = resolve_check(&probe.check, &vars, None)
                .map(|check| exec_where_it_runs(check, inside.as_ref()))
                .map(|check| self.injector.resolve_check(&self.core, check));
            (kind, probe, check)
        })
        .collect();
        let Some(instance) = self.supervisor.services[index].instances.get_mut(&ordinal) else {
            return;
        };
        for (kind, probe, check) in checks {
            let check = match check {
                None => {
                    if kind == ProbeKind::Ready {
                        instance.ready = true;
                        instance.ever_ready = true;
                    }
                    continue;
                }
                Some(Err(reason)) => {
                    instance.last_probe = Some(failed_outcome(reason));
                    continue;
                }
                Some(Ok(check)) => check,
            };
            let task = tokio::spawn(probe_loop(
                self.core.events.clone(),
                self.core.prober.clone(),
                plan.name.clone(),
                ordinal,
                generation,
                kind,
                check,
                probe.clone(),
            ));
            instance.tasks.push(task.abort_handle());
        }
    }

    /// Probes the services wharf does not run (external datastores) on their own schedule;
    /// `${secret:…}` in their URLs is resolved here, in the control plane.
    pub(super) fn spawn_external_probes(&mut self) {
        for index in 0..self.supervisor.services.len() {
            let service = &self.supervisor.services[index];
            let (Some(probe), true) = (&service.plan.ready, service.is_external()) else {
                continue;
            };
            let plan = &service.plan;
            let vars = InstanceVars {
                service: &plan.name,
                ordinal: 0,
                version: &plan.version,
                port: plan.public_port,
            };
            let Some(check) = resolve_check(&probe.check, &vars, plan.url.as_deref()) else {
                continue;
            };
            let (name, probe) = (plan.name.clone(), probe.clone());
            let check = match self.injector.resolve_check(&self.core, check) {
                Ok(check) => check,
                Err(reason) => {
                    tracing::error!(service = name, reason, "cannot probe");
                    if let Some(external) = self.supervisor.services[index].external.as_mut() {
                        external.counts.failures = probe.failure_threshold;
                        external.last = Some(failed_outcome(reason));
                    }
                    continue;
                }
            };
            let task = tokio::spawn(probe_loop(
                self.core.events.clone(),
                self.core.prober.clone(),
                name,
                0,
                0,
                ProbeKind::Ready,
                check,
                probe,
            ));
            if let Some(external) = self.supervisor.services[index].external.as_mut()
                && let Some(old) = external.task.replace(task.abort_handle())
            {
                old.abort();
            }
        }
    }

    // ----- status -----------------------------------------------------------------------------

    /// Each datastore's backup health, on its status.
    fn attach_backups(&self, services: &mut [ServiceStatus]) {
        for backups in self.backups.statuses() {
            if let Some(status) = services.iter_mut().find(|s| s.name == backups.service) {
                status.backups = Some(backups);
            }
        }
    }

    fn report(&self) -> StatusReport {
        let services: Vec<ServiceStatus> =
            service_statuses(&self.supervisor.services, self.core.config.driver.as_ref());
        let status = stack_status(&services);
        let healthy = status == wharf_api::StackStatus::Ok;
        // Traffic follows only once the proxy serves the latest table: `up -d` returns when
        // requests to the public ports reach ready instances.
        let routed = !Traffic::needed(&self.supervisor.services)
            || (self.traffic.applied_seq >= self.traffic.seq
                && self.traffic.last_table.as_ref()
                    == Some(&Traffic::route_table(&self.supervisor.services)));
        let settled = routed
            && services.iter().all(|s| {
                use wharf_api::ServiceState as S;
                match s.state {
                    S::Running
                    | S::External
                    | S::Failed
                    | S::CrashLoop
                    | S::Exited
                    | S::Stopped
                    | S::Blocked => true,
                    // Down after having been up is settled; never ready since it started is
                    // a slow start still coming up (the caller's wait bounds it).
                    S::Down => self
                        .supervisor
                        .index(&s.name)
                        .map(|index| &self.supervisor.services[index])
                        .is_none_or(|service| {
                            service.is_external()
                                || service.instances.values().any(|i| i.ever_ready)
                        }),
                    S::Waiting => self.supervisor.blocked_by_failure(&s.name, 0),
                    S::Starting | S::Degraded => false,
                }
            });
        let mut services = services;
        self.attach_backups(&mut services);
        StatusReport {
            stack: self.core.stack.clone(),
            control_pid: std::process::id(),
            started_at: self.core.started_at.to_string(),
            status,
            settled,
            healthy,
            services,
            pages: self.alerting.open_pages(),
            silences: self.alerting.active_silences(),
            incidents: wharf_ops::incidents::list(self.core.journal.store(), false).unwrap_or_else(
                |error| {
                    tracing::error!(%error, "cannot read the incidents");
                    Vec::new()
                },
            ),
        }
    }
}

/// A probe that could not even be set up, in the words shown to operators.
fn failed_outcome(reason: String) -> Outcome {
    Outcome {
        status: wharf_probe::Status::Fail,
        latency: Duration::ZERO,
        reason: Some(reason),
    }
}

/// `Some(reason)` when something else already listens on the port.
fn port_taken(port: u16) -> Option<String> {
    match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => None,
        Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => {
            Some(format!("port {port} is already in use by another process"))
        }
        Err(err) => Some(format!("cannot use port {port}: {err}")),
    }
}
