//! The control plane's event loop: one task owns all state and handles a closed set of events
//! (instance exited, probe result, API command, tick). Every decision — start, restart, back
//! off, stop, adopt — happens here, in one place, and is written to the ledger.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use wharf_manifest::model::DependencyCondition;
use wharf_probe::{Outcome, Prober};
use wharf_runtime::{
    Decision, ExitStatus, InstanceSpec, ProcessDriver, ProcessId, RestartLimits, StartError,
    read_exit,
};
use wharf_store::InstanceRow;

use crate::journal::Journal;
use crate::plan::{InstanceVars, ProbePlan, StackPlan, resolve_check};
use crate::report::{InstanceStatus, ServiceStatus, StatusReport};
use crate::state::{Instance, Phase, ServiceState};

/// How long an instance without a ready probe must run before it counts as ready.
pub const PROBELESS_READY_AFTER: Duration = Duration::from_secs(1);

/// How the control plane is set up.
#[derive(Debug, Clone)]
pub struct Config {
    pub state_dir: PathBuf,
    /// Instances run in this directory (the manifest's).
    pub workdir: PathBuf,
    pub driver: ProcessDriver,
    /// SIGTERM, then this long, then SIGKILL.
    pub stop_grace: Duration,
    pub limits: RestartLimits,
    pub log_max_bytes: u64,
    pub log_keep: u32,
}

/// Which probe reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Live,
    Ready,
}

/// Everything that can happen to the control plane.
#[derive(Debug)]
pub enum Event {
    Exited {
        service: String,
        ordinal: u32,
        generation: u64,
        status: Option<ExitStatus>,
    },
    Probe {
        service: String,
        ordinal: u32,
        generation: u64,
        kind: ProbeKind,
        outcome: Outcome,
    },
    Command(Command),
}

/// Requests from the API.
#[derive(Debug)]
pub enum Command {
    Status(oneshot::Sender<StatusReport>),
    /// Rolling restart of one service.
    Restart {
        service: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Stop one service, or the whole stack (then the control plane exits).
    Down {
        service: Option<String>,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// A way to talk to a running control plane.
#[derive(Debug, Clone)]
pub struct Handle {
    events: mpsc::Sender<Event>,
}

impl Handle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.events.send(Event::Command(make(reply))).await.ok()?;
        answer.await.ok()
    }

    pub async fn status(&self) -> Option<StatusReport> {
        self.ask(Command::Status).await
    }

    pub async fn restart(&self, service: String) -> Result<(), String> {
        self.ask(|reply| Command::Restart { service, reply })
            .await
            .unwrap_or_else(|| Err("the control plane stopped".to_owned()))
    }

    pub async fn down(&self, service: Option<String>) -> Result<(), String> {
        self.ask(|reply| Command::Down { service, reply })
            .await
            .unwrap_or_else(|| Err("the control plane stopped".to_owned()))
    }
}

/// A `down` waiting for its services to stop.
struct PendingDown {
    services: Vec<String>,
    reply: oneshot::Sender<Result<(), String>>,
}

pub struct ControlPlane {
    config: Config,
    stack: String,
    services: Vec<ServiceState>,
    journal: Journal,
    prober: Prober,
    events_tx: mpsc::Sender<Event>,
    events_rx: mpsc::Receiver<Event>,
    started_at: jiff::Timestamp,
    pending_downs: Vec<PendingDown>,
    /// Set by a whole-stack `down`: the loop ends once everything has stopped.
    exit_when_stopped: bool,
}

impl ControlPlane {
    pub fn new(plan: StackPlan, config: Config, journal: Journal) -> (ControlPlane, Handle) {
        let (events_tx, events_rx) = mpsc::channel(1024);
        let handle = Handle {
            events: events_tx.clone(),
        };
        let control = ControlPlane {
            config,
            stack: plan.name.clone(),
            services: plan.services.into_iter().map(ServiceState::new).collect(),
            journal,
            prober: Prober::default(),
            events_tx,
            events_rx,
            started_at: jiff::Timestamp::now(),
            pending_downs: Vec::new(),
            exit_when_stopped: false,
        };
        (control, handle)
    }

    /// Adopts what still runs from a previous control plane, then supervises until a
    /// whole-stack `down` completes or `shutdown` resolves (which also stops the stack).
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        self.journal.record(
            "stack.up",
            &self.stack,
            json!({"control_pid": std::process::id()}),
        );
        self.adopt();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        let mut shutting_down = false;
        loop {
            tokio::select! {
                Some(event) = self.events_rx.recv() => self.handle(event),
                _ = tick.tick() => {}
                () = &mut shutdown, if !shutting_down => {
                    shutting_down = true;
                    let (reply, _) = oneshot::channel();
                    self.begin_down(None, reply);
                }
            }
            self.reconcile().await;
            if self.exit_when_stopped && self.services.iter().all(|s| s.instances.is_empty()) {
                break;
            }
        }
        self.journal.record("stack.down", &self.stack, json!({}));
        tracing::info!("stack stopped; control plane exits");
    }

    fn service_index(&self, name: &str) -> Option<usize> {
        self.services.iter().position(|s| s.plan.name == name)
    }

    // ----- adoption -------------------------------------------------------------------------

    /// Re-finds instances a previous control plane started: those whose pid and start time
    /// still match are adopted without a restart; the others are recorded as exited.
    fn adopt(&mut self) {
        let rows = match self.journal.instances() {
            Ok(rows) => rows,
            Err(error) => {
                tracing::error!(%error, "cannot read recorded instances; starting fresh");
                return;
            }
        };
        for row in rows {
            let process = ProcessId {
                pid: row.pid,
                start_time: row.start_time,
            };
            let shim = ProcessId {
                pid: row.shim_pid,
                start_time: row.shim_start_time,
            };
            let target = format!("{}/{}", row.service, row.index);
            let Some(index) = self.service_index(&row.service) else {
                self.retire_orphan(&row, process);
                continue;
            };
            if !process.is_running() {
                let status = read_exit(&self.exit_path(&row.service, row.index));
                let detail = status
                    .as_ref()
                    .map_or_else(|| "unknown".to_owned(), ToString::to_string);
                self.journal.record(
                    "instance.exit",
                    &target,
                    json!({"pid": row.pid, "status": detail, "noticed": "at control plane start"}),
                );
                self.journal.remove_instance(&row.service, row.index);
                continue;
            }
            let expected_hash = self
                .spec_for(index, row.index, row.port)
                .map(|spec| spec_hash(&spec));
            let service = &mut self.services[index];
            let mut instance = Instance::new(row.index, row.port);
            instance.phase = Phase::Running;
            instance.process = Some(process);
            instance.shim = Some(shim);
            instance.generation = 1;
            instance.started_at = row.started_at.parse().ok();
            instance.ready = false;
            instance.history.restarts = row.restarts;
            instance.outdated = expected_hash.as_deref() != Some(row.spec_hash.as_str());
            service.next_ordinal = service.next_ordinal.max(row.index + 1);
            service.instances.insert(row.index, instance);
            self.journal.record(
                "instance.adopt",
                &target,
                json!({"pid": row.pid, "port": row.port, "version": row.version, "outdated": expected_hash.as_deref() != Some(row.spec_hash.as_str())}),
            );
            tracing::info!(target, pid = row.pid, "adopted a running instance");
            let watch = tokio::spawn(watch_adopted(
                self.events_tx.clone(),
                row.service.clone(),
                row.index,
                1,
                process,
                shim,
                self.exit_path(&row.service, row.index),
            ));
            if let Some(i) = self.services[index].instances.get_mut(&row.index) {
                i.tasks.push(watch.abort_handle())
            }
            self.spawn_probes(index, row.index);
        }
    }

    /// An instance of a service the manifest no longer has: stop it.
    fn retire_orphan(&mut self, row: &InstanceRow, process: ProcessId) {
        let target = format!("{}/{}", row.service, row.index);
        if process.is_running() {
            let grace = self.config.stop_grace;
            tokio::spawn(wharf_runtime::stop_instance(process, grace));
            self.journal.record(
                "instance.stop",
                &target,
                json!({"pid": row.pid, "reason": "the service is no longer in the manifest"}),
            );
        }
        self.journal.remove_instance(&row.service, row.index);
    }

    // ----- events -----------------------------------------------------------------------------

    fn handle(&mut self, event: Event) {
        match event {
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
            } => self.on_probe(&service, ordinal, generation, kind, outcome),
            Event::Command(Command::Status(reply)) => {
                let _ = reply.send(self.report());
            }
            Event::Command(Command::Restart { service, reply }) => {
                let _ = reply.send(self.begin_restart(&service));
            }
            Event::Command(Command::Down { service, reply }) => self.begin_down(service, reply),
        }
    }

    fn on_exit(
        &mut self,
        service_name: &str,
        ordinal: u32,
        generation: u64,
        status: Option<ExitStatus>,
    ) {
        let Some(index) = self.service_index(service_name) else {
            return;
        };
        let limits = self.config.limits;
        let policy = self.services[index].plan.restart;
        let Some(instance) = self.services[index].instances.get_mut(&ordinal) else {
            return;
        };
        if instance.generation != generation {
            return;
        }
        instance.abort_tasks();
        let pid = instance.process.map(|p| p.pid);
        instance.process = None;
        instance.shim = None;
        instance.ready = false;
        let status = status.unwrap_or(ExitStatus {
            code: None,
            signal: None,
            at: jiff::Timestamp::now().to_string(),
        });
        instance.last_exit = Some(status.clone());
        let target = format!("{service_name}/{ordinal}");
        if instance.phase == Phase::Stopping || instance.outdated {
            self.services[index].instances.remove(&ordinal);
            self.journal.remove_instance(service_name, ordinal);
            self.journal.record(
                "instance.stopped",
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
        self.journal.record("instance.exit", &target, details);
        if matches!(decision, Decision::Stay) {
            self.journal.remove_instance(service_name, ordinal);
        }
    }

    fn on_probe(
        &mut self,
        service_name: &str,
        ordinal: u32,
        generation: u64,
        kind: ProbeKind,
        outcome: Outcome,
    ) {
        let Some(index) = self.service_index(service_name) else {
            return;
        };
        let service = &mut self.services[index];
        let plan = match kind {
            ProbeKind::Ready => service.plan.ready.clone(),
            ProbeKind::Live => service.plan.live.clone(),
        };
        let Some(plan) = plan else { return };
        let Some(instance) = service.instances.get_mut(&ordinal) else {
            return;
        };
        if instance.generation != generation || instance.phase != Phase::Running {
            return;
        }
        let target = format!("{service_name}/{ordinal}");
        let passed = outcome.passed();
        let reason = outcome.reason.clone();
        match kind {
            ProbeKind::Ready => {
                instance.last_probe = Some(outcome);
                let current = instance.ready;
                if let Some(now_ready) = instance.ready_counts.observe(
                    passed,
                    plan.success_threshold,
                    plan.failure_threshold,
                    current,
                ) {
                    instance.ready = now_ready;
                    let action = if now_ready {
                        "instance.ready"
                    } else {
                        "instance.unready"
                    };
                    self.journal
                        .record(action, &target, json!({"reason": reason}));
                }
            }
            ProbeKind::Live => {
                let current = instance.live;
                if let Some(now_live) =
                    instance
                        .live_counts
                        .observe(passed, 1, plan.failure_threshold, current)
                {
                    instance.live = now_live;
                    if !now_live {
                        // A failed liveness probe restarts the instance: stop it; the exit
                        // event applies the restart policy.
                        if let Some(process) = instance.process {
                            tokio::spawn(wharf_runtime::stop_instance(
                                process,
                                self.config.stop_grace,
                            ));
                        }
                        self.journal.record(
                            "instance.unhealthy",
                            &target,
                            json!({"reason": reason, "action": "restart"}),
                        );
                    }
                }
            }
        }
    }

    // ----- commands ---------------------------------------------------------------------------

    fn begin_restart(&mut self, name: &str) -> Result<(), String> {
        let Some(index) = self.service_index(name) else {
            return Err(unknown_service(name, &self.services));
        };
        let service = &mut self.services[index];
        if service.is_external() {
            return Err(format!(
                "service `{name}` is external: wharf does not run it"
            ));
        }
        // Instances that ended for good are replaced by fresh ones.
        service
            .instances
            .retain(|_, i| !matches!(i.phase, Phase::Failed | Phase::Exited));
        let mut count = 0;
        for instance in service
            .instances
            .values_mut()
            .filter(|i| i.is_running() || matches!(i.phase, Phase::Backoff { .. }))
        {
            instance.outdated = true;
            count += 1;
        }
        service.wanted = true;
        self.journal.record("service.restart", name, json!({"instances": count, "mode": if self.services[index].plan.binds_public_port() { "recreate" } else { "rolling" }}));
        Ok(())
    }

    fn begin_down(&mut self, service: Option<String>, reply: oneshot::Sender<Result<(), String>>) {
        let names: Vec<String> = match &service {
            Some(name) if self.service_index(name).is_none() => {
                let _ = reply.send(Err(unknown_service(name, &self.services)));
                return;
            }
            Some(name) => vec![name.clone()],
            None => {
                self.exit_when_stopped = true;
                self.services.iter().map(|s| s.plan.name.clone()).collect()
            }
        };
        for name in &names {
            if let Some(index) = self.service_index(name) {
                self.services[index].wanted = false;
            }
        }
        self.journal.record(
            "stack.down_requested",
            service.as_deref().unwrap_or(&self.stack),
            json!({"services": names}),
        );
        self.pending_downs.push(PendingDown {
            services: names,
            reply,
        });
    }

    // ----- reconciliation ---------------------------------------------------------------------

    /// Moves every service one step toward what is wanted.
    async fn reconcile(&mut self) {
        for index in 0..self.services.len() {
            if self.services[index].wanted {
                self.reconcile_wanted(index).await;
            }
        }
        self.reconcile_stops();
        self.answer_downs();
    }

    async fn reconcile_wanted(&mut self, index: usize) {
        if self.services[index].is_external() {
            return;
        }
        let waiting = self.unmet_dependency(index);
        self.services[index].waiting_for = waiting.clone();
        if waiting.is_some() && self.services[index].instances.is_empty() {
            return;
        }
        // Backed-off instances whose time has come start again, in place.
        let now = Instant::now();
        let due: Vec<u32> = self.services[index]
            .instances
            .values()
            .filter(|i| matches!(i.phase, Phase::Backoff { until } if until <= now))
            .map(|i| i.ordinal)
            .collect();
        for ordinal in due {
            self.start_instance(index, ordinal).await;
        }
        self.settle_probeless(index);
        self.replace_outdated(index);
        // Start what is missing, all in this pass (a rolling restart adds one at a time).
        loop {
            let service = &self.services[index];
            let active = service.instances.values().filter(|i| i.is_active()).count() as u32;
            let surging = service
                .instances
                .values()
                .any(|i| !i.outdated && i.is_running() && !i.ready);
            let outdated_running = service
                .instances
                .values()
                .filter(|i| i.outdated && i.phase == Phase::Running)
                .count();
            let rolling = outdated_running > 0;
            // Recreate (public port bound directly): the old instance must be gone first.
            let blocked = service.plan.binds_public_port() && rolling;
            if active >= service.plan.replicas
                || blocked
                || (rolling && surging)
                || waiting.is_some()
            {
                break;
            }
            let ordinal = self.services[index].allocate_ordinal();
            let port = self.allocate_port(index);
            self.services[index]
                .instances
                .insert(ordinal, Instance::new(ordinal, port));
            self.start_instance(index, ordinal).await;
            if rolling
                || self.services[index]
                    .instances
                    .get(&ordinal)
                    .is_some_and(|i| i.phase == Phase::Failed)
            {
                break;
            }
        }
    }

    /// An instance without a ready probe counts as ready once it has stayed up for
    /// [`PROBELESS_READY_AFTER`] (Kubernetes' `minReadySeconds`): a process that exits at once
    /// is never reported ready.
    fn settle_probeless(&mut self, index: usize) {
        if self.services[index].plan.ready.is_some() {
            return;
        }
        let now = jiff::Timestamp::now();
        for instance in self.services[index].instances.values_mut() {
            let up_long_enough = instance
                .started_at
                .is_some_and(|t| now.duration_since(t).unsigned_abs() >= PROBELESS_READY_AFTER);
            if instance.is_running() && !instance.ready && up_long_enough {
                instance.ready = true;
            }
        }
    }

    /// Rolling restart: stop an outdated instance once a new one is ready to take its place
    /// (or at once when the public port forces a recreate).
    fn replace_outdated(&mut self, index: usize) {
        let service = &self.services[index];
        let replicas = service.plan.replicas as usize;
        let fresh_ready = service
            .instances
            .values()
            .filter(|i| !i.outdated && i.is_running() && i.ready)
            .count();
        let outdated: Vec<u32> = service
            .instances
            .values()
            .filter(|i| i.outdated && i.phase == Phase::Running)
            .map(|i| i.ordinal)
            .collect();
        let stopping = service
            .instances
            .values()
            .any(|i| i.phase == Phase::Stopping);
        let Some(&victim) = outdated.first() else {
            // Outdated instances that are not running (backing off) are simply dropped.
            let dead: Vec<u32> = service
                .instances
                .values()
                .filter(|i| i.outdated && !i.is_running() && i.phase != Phase::Stopping)
                .map(|i| i.ordinal)
                .collect();
            for ordinal in dead {
                self.services[index].instances.remove(&ordinal);
            }
            return;
        };
        let recreate = service.plan.binds_public_port();
        if !stopping && (recreate || fresh_ready + outdated.len() > replicas) {
            self.stop_instance(index, victim, "rolling restart");
        }
    }

    /// The first dependency that is not yet started or ready, in words.
    fn unmet_dependency(&self, index: usize) -> Option<String> {
        for (dep, condition) in &self.services[index].plan.depends_on {
            let Some(dep_index) = self.service_index(dep) else {
                continue;
            };
            let dep_state = &self.services[dep_index];
            let met = match condition {
                DependencyCondition::Started => dep_state.is_started(),
                DependencyCondition::Ready => dep_state.is_ready(),
            };
            if !met {
                let word = if *condition == DependencyCondition::Ready {
                    "ready"
                } else {
                    "started"
                };
                let failed = if dep_state.has_failed() {
                    " (it failed to start)"
                } else {
                    ""
                };
                return Some(format!("waiting for `{dep}` to be {word}{failed}"));
            }
        }
        None
    }

    /// Stops services that are no longer wanted, dependents first.
    fn reconcile_stops(&mut self) {
        for index in (0..self.services.len()).rev() {
            if self.services[index].wanted {
                continue;
            }
            let name = self.services[index].plan.name.clone();
            let dependents_running = self.services.iter().any(|s| {
                !s.wanted
                    && s.plan.depends_on.iter().any(|(dep, _)| *dep == name)
                    && !s.instances.is_empty()
            });
            if dependents_running {
                continue;
            }
            let ordinals: Vec<u32> = self.services[index].instances.keys().copied().collect();
            for ordinal in ordinals {
                let phase = self.services[index].instances[&ordinal].phase.clone();
                match phase {
                    Phase::Running => self.stop_instance(index, ordinal, "down"),
                    Phase::Stopping => {}
                    _ => {
                        self.services[index].instances.remove(&ordinal);
                        self.journal.remove_instance(&name, ordinal);
                    }
                }
            }
        }
    }

    fn answer_downs(&mut self) {
        let services = &self.services;
        let done = |names: &[String]| {
            names.iter().all(|name| {
                services
                    .iter()
                    .find(|s| s.plan.name == *name)
                    .is_none_or(|s| s.instances.is_empty())
            })
        };
        let (finished, waiting): (Vec<_>, Vec<_>) = self
            .pending_downs
            .drain(..)
            .partition(|down| done(&down.services));
        self.pending_downs = waiting;
        for down in finished {
            let _ = down.reply.send(Ok(()));
        }
    }

    // ----- instances --------------------------------------------------------------------------

    fn allocate_port(&self, index: usize) -> Option<u16> {
        let plan = &self.services[index].plan;
        if plan.binds_public_port() {
            return plan.public_port;
        }
        // A free port from the kernel; the instance binds it a moment later.
        std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()
            .map(|a| a.port())
    }

    fn log_path(&self, service: &str, ordinal: u32) -> PathBuf {
        self.config
            .state_dir
            .join("logs")
            .join(service)
            .join(format!("{ordinal}.log"))
    }

    fn exit_path(&self, service: &str, ordinal: u32) -> PathBuf {
        self.config
            .state_dir
            .join("run")
            .join(format!("{service}-{ordinal}.exit"))
    }

    fn spec_for(&self, index: usize, ordinal: u32, port: Option<u16>) -> Option<InstanceSpec> {
        let plan = &self.services[index].plan;
        let vars = InstanceVars {
            service: &plan.name,
            ordinal,
            version: &plan.version,
            port,
        };
        let command = plan
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
        env.extend(vars.env());
        Some(InstanceSpec {
            service: plan.name.clone(),
            index: ordinal,
            version: plan.version.clone(),
            command,
            env,
            workdir: self.config.workdir.clone(),
            log_path: self.log_path(&plan.name, ordinal),
            exit_path: self.exit_path(&plan.name, ordinal),
            log_max_bytes: self.config.log_max_bytes,
            log_keep: self.config.log_keep,
        })
    }

    async fn start_instance(&mut self, index: usize, ordinal: u32) {
        let name = self.services[index].plan.name.clone();
        let target = format!("{name}/{ordinal}");
        let port = self.services[index]
            .instances
            .get(&ordinal)
            .and_then(|i| i.port);
        let Some(spec) = self.spec_for(index, ordinal, port) else {
            return;
        };
        if self.services[index].plan.binds_public_port()
            && let Some(reason) = port.and_then(port_taken)
        {
            self.fail_instance(index, ordinal, reason);
            return;
        }
        let _ = std::fs::create_dir_all(self.config.state_dir.join("run"));
        let result = self.config.driver.start(&spec).await;
        let restarts = self.services[index]
            .instances
            .get(&ordinal)
            .map_or(0, |i| i.history.restarts);
        match result {
            Ok(started) => {
                let now = jiff::Timestamp::now();
                let Some(instance) = self.services[index].instances.get_mut(&ordinal) else {
                    return;
                };
                instance.generation += 1;
                instance.phase = Phase::Running;
                instance.process = Some(started.instance);
                instance.shim = Some(started.shim);
                instance.started_at = Some(now);
                instance.ready = false;
                instance.live = true;
                instance.ready_counts = Default::default();
                instance.live_counts = Default::default();
                instance.error = None;
                let generation = instance.generation;
                let watch = tokio::spawn(watch_child(
                    self.events_tx.clone(),
                    name.clone(),
                    ordinal,
                    generation,
                    started.shim_child,
                    spec.exit_path.clone(),
                ));
                instance.tasks.push(watch.abort_handle());
                self.journal.save_instance(&InstanceRow {
                    service: name.clone(),
                    index: ordinal,
                    version: spec.version.clone(),
                    pid: started.instance.pid,
                    start_time: started.instance.start_time,
                    shim_pid: started.shim.pid,
                    shim_start_time: started.shim.start_time,
                    port,
                    started_at: now.to_string(),
                    restarts,
                    spec_hash: spec_hash(&spec),
                });
                let action = if restarts > 0 {
                    "instance.restart"
                } else {
                    "instance.start"
                };
                self.journal.record(action, &target, json!({"pid": started.instance.pid, "port": port, "version": spec.version, "restarts": restarts}));
                tracing::info!(
                    target,
                    pid = started.instance.pid,
                    ?port,
                    "instance started"
                );
                self.spawn_probes(index, ordinal);
            }
            Err(StartError::Refused { reason, .. } | StartError::Shim { reason, .. }) => {
                self.fail_instance(index, ordinal, reason)
            }
        }
    }

    fn fail_instance(&mut self, index: usize, ordinal: u32, reason: String) {
        let name = self.services[index].plan.name.clone();
        if let Some(instance) = self.services[index].instances.get_mut(&ordinal) {
            instance.phase = Phase::Failed;
            instance.error = Some(reason.clone());
        }
        tracing::error!(service = name, ordinal, reason, "instance could not start");
        self.journal.record(
            "instance.start_failed",
            &format!("{name}/{ordinal}"),
            json!({"reason": reason}),
        );
    }

    fn stop_instance(&mut self, index: usize, ordinal: u32, why: &str) {
        let grace = self.config.stop_grace;
        let name = self.services[index].plan.name.clone();
        let Some(instance) = self.services[index].instances.get_mut(&ordinal) else {
            return;
        };
        instance.phase = Phase::Stopping;
        let pid = instance.process.map(|p| p.pid);
        if let Some(process) = instance.process {
            tokio::spawn(wharf_runtime::stop_instance(process, grace));
        }
        self.journal.record(
            "instance.stop",
            &format!("{name}/{ordinal}"),
            json!({"pid": pid, "reason": why}),
        );
    }

    fn spawn_probes(&mut self, index: usize, ordinal: u32) {
        let plan = self.services[index].plan.clone();
        let Some(instance) = self.services[index].instances.get_mut(&ordinal) else {
            return;
        };
        let vars = InstanceVars {
            service: &plan.name,
            ordinal,
            version: &plan.version,
            port: instance.port,
        };
        for (kind, probe) in [
            (ProbeKind::Ready, &plan.ready),
            (ProbeKind::Live, &plan.live),
        ] {
            let Some(probe) = probe else { continue };
            let Some(check) = resolve_check(&probe.check, &vars) else {
                if kind == ProbeKind::Ready {
                    instance.ready = true;
                }
                continue;
            };
            let task = tokio::spawn(probe_loop(
                self.events_tx.clone(),
                self.prober.clone(),
                plan.name.clone(),
                ordinal,
                instance.generation,
                kind,
                check,
                probe.clone(),
            ));
            instance.tasks.push(task.abort_handle());
        }
    }

    // ----- status -----------------------------------------------------------------------------

    fn report(&self) -> StatusReport {
        let services: Vec<ServiceStatus> = self.services.iter().map(service_status).collect();
        let healthy = services
            .iter()
            .all(|s| matches!(s.state.as_str(), "running" | "external" | "stopped"));
        let settled = services.iter().all(|s| match s.state.as_str() {
            "running" | "external" | "failed" | "crash-loop" | "exited" | "stopped" => true,
            "waiting" => self.blocked_by_failure(&s.name, 0),
            _ => false,
        });
        StatusReport {
            stack: self.stack.clone(),
            control_pid: std::process::id(),
            started_at: self.started_at.to_string(),
            settled,
            healthy,
            services,
        }
    }

    /// Whether a waiting service can never start because a dependency (transitively) failed.
    fn blocked_by_failure(&self, name: &str, depth: usize) -> bool {
        let Some(index) = self.service_index(name) else {
            return false;
        };
        let service = &self.services[index];
        if service.has_failed()
            || service
                .instances
                .values()
                .any(|i| i.history.short_runs >= 3 && !i.is_running())
        {
            return true;
        }
        depth < self.services.len()
            && service.instances.is_empty()
            && service
                .plan
                .depends_on
                .iter()
                .any(|(dep, _)| self.blocked_by_failure(dep, depth + 1))
    }
}

fn service_status(service: &ServiceState) -> ServiceStatus {
    let instances: Vec<InstanceStatus> = service.instances.values().map(instance_status).collect();
    let running = service.running() as u32;
    let ready = service.ready() as u32;
    let desired = service.plan.replicas;
    let crash_looping = service
        .instances
        .values()
        .any(|i| i.history.short_runs >= 3 && !i.is_running());
    let failed = service
        .instances
        .values()
        .find(|i| i.phase == Phase::Failed);
    let (state, reason) = if service.is_external() {
        ("external", None)
    } else if !service.wanted {
        ("stopped", None)
    } else if let Some(failed) = failed {
        ("failed", failed.error.clone())
    } else if crash_looping {
        (
            "crash-loop",
            service
                .instances
                .values()
                .find_map(|i| i.last_exit.as_ref().map(|e| format!("keeps exiting ({e})"))),
        )
    } else if service.instances.is_empty() && service.waiting_for.is_some() {
        ("waiting", service.waiting_for.clone())
    } else if running >= desired && ready >= desired {
        ("running", None)
    } else if running > 0 && ready > 0 {
        ("degraded", not_ready_reason(service))
    } else if !service.instances.is_empty()
        && service.instances.values().all(|i| i.phase == Phase::Exited)
    {
        ("exited", None)
    } else {
        ("starting", not_ready_reason(service))
    };
    ServiceStatus {
        name: service.plan.name.clone(),
        version: service.plan.version.clone(),
        state: state.to_owned(),
        desired,
        running,
        ready,
        restarts: service.instances.values().map(|i| i.history.restarts).sum(),
        reason,
        instances,
    }
}

fn not_ready_reason(service: &ServiceState) -> Option<String> {
    service.instances.values().find_map(|i| {
        i.last_probe
            .as_ref()
            .and_then(|p| p.reason.clone())
            .or_else(|| i.last_exit.as_ref().map(|e| format!("last exit: {e}")))
    })
}

fn instance_status(instance: &Instance) -> InstanceStatus {
    let phase = match instance.phase {
        Phase::Running => "running",
        Phase::Backoff { .. } if instance.generation == 0 => "starting",
        Phase::Backoff { .. } => "backoff",
        Phase::Stopping => "stopping",
        Phase::Exited => "exited",
        Phase::Failed => "failed",
    };
    let now = jiff::Timestamp::now();
    InstanceStatus {
        ordinal: instance.ordinal,
        pid: instance.process.map(|p| p.pid),
        port: instance.port,
        phase: phase.to_owned(),
        ready: instance.is_running().then_some(instance.ready),
        restarts: instance.history.restarts,
        crash_looping: instance.history.short_runs >= 3,
        started_at: instance.started_at.map(|t| t.to_string()),
        uptime_secs: instance
            .started_at
            .filter(|_| instance.is_running())
            .map(|t| now.duration_since(t).as_secs().max(0) as u64),
        last_exit: instance.last_exit.as_ref().map(ToString::to_string),
        error: instance.error.clone(),
        probe_latency_ms: instance
            .last_probe
            .as_ref()
            .map(|p| p.latency.as_millis() as u64),
    }
}

fn unknown_service(name: &str, services: &[ServiceState]) -> String {
    let names: Vec<&str> = services.iter().map(|s| s.plan.name.as_str()).collect();
    format!(
        "unknown service `{name}`; the stack has: {}",
        names.join(", ")
    )
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

/// A stable fingerprint of what an instance runs, to notice a manifest change on adoption.
fn spec_hash(spec: &InstanceSpec) -> String {
    use sha2::Digest;
    let material = json!({"command": spec.command, "env": spec.env, "version": spec.version});
    let digest = sha2::Sha256::digest(material.to_string().as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

async fn watch_child(
    events: mpsc::Sender<Event>,
    service: String,
    ordinal: u32,
    generation: u64,
    mut shim: tokio::process::Child,
    exit_path: PathBuf,
) {
    let _ = shim.wait().await;
    let status = read_exit(&exit_path);
    let _ = events
        .send(Event::Exited {
            service,
            ordinal,
            generation,
            status,
        })
        .await;
}

async fn watch_adopted(
    events: mpsc::Sender<Event>,
    service: String,
    ordinal: u32,
    generation: u64,
    process: ProcessId,
    shim: ProcessId,
    exit_path: PathBuf,
) {
    wharf_runtime::wait_adopted(process, shim).await;
    let status = read_exit(&exit_path);
    let _ = events
        .send(Event::Exited {
            service,
            ordinal,
            generation,
            status,
        })
        .await;
}

#[allow(clippy::too_many_arguments)]
async fn probe_loop(
    events: mpsc::Sender<Event>,
    prober: Prober,
    service: String,
    ordinal: u32,
    generation: u64,
    kind: ProbeKind,
    check: wharf_probe::Check,
    plan: ProbePlan,
) {
    if !plan.start_period.is_zero() {
        tokio::time::sleep(plan.start_period).await;
    }
    let mut interval = tokio::time::interval(plan.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Until the first success, probe quickly so a dependent does not wait a whole interval.
    let mut fast = true;
    loop {
        let outcome = prober.run(&check, plan.timeout).await;
        let passed = outcome.passed();
        let event = Event::Probe {
            service: service.clone(),
            ordinal,
            generation,
            kind,
            outcome,
        };
        if events.send(event).await.is_err() {
            return;
        }
        if fast && passed {
            fast = false;
            interval.reset();
        }
        if fast {
            tokio::time::sleep(plan.interval.min(Duration::from_millis(100))).await;
        } else {
            interval.tick().await;
        }
    }
}
