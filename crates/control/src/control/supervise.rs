//! The supervisor: each service of the plan with its instances — which run, which are ready
//! and live by their probes, which stopped — and the evidence of every change of a service's
//! state. Starting an instance involves the injector (its secrets) and traffic (its routes):
//! that is the control plane's (`mod.rs`, `reconcile.rs`); what only concerns the services'
//! own state is here.

use serde_json::json;
use wharf_api::{ControlError, ErrorCode};
use wharf_ledger::KnownAction;
use wharf_probe::Outcome;

use super::{Core, Supervisor};
use crate::events::ProbeKind;
use crate::report::ServiceStatus;
use crate::state::Phase;

impl Supervisor {
    /// The position of a service of this name.
    pub(super) fn index(&self, name: &str) -> Option<usize> {
        self.services.iter().position(|s| s.plan.name == name)
    }

    /// A probe's result: readiness and liveness follow their thresholds; a failed liveness
    /// probe stops the instance (its exit applies the restart policy).
    pub(super) fn on_probe(
        &mut self,
        core: &mut Core,
        service_name: &str,
        ordinal: u32,
        generation: u64,
        kind: ProbeKind,
        outcome: Outcome,
    ) {
        let Some(index) = self.index(service_name) else {
            return;
        };
        let service = &mut self.services[index];
        let stop_grace = service.plan.stop_grace;
        let plan = match kind {
            ProbeKind::Ready => service.plan.ready.clone(),
            ProbeKind::Live => service.plan.live.clone(),
        };
        let Some(plan) = plan else { return };
        if let Some(external) = service.external.as_mut() {
            let passed = outcome.passed();
            let reason = outcome.reason.clone();
            external.last = Some(outcome);
            let current = external.ready;
            let change = external.counts.observe(
                passed,
                plan.success_threshold,
                plan.failure_threshold,
                current,
            );
            if let Some(now_ready) = change {
                external.ready = now_ready;
                let action = if now_ready {
                    KnownAction::ServiceReady
                } else {
                    KnownAction::ServiceUnready
                };
                core.journal
                    .record(action, service_name, json!({"reason": reason}));
            }
            return;
        }
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
                instance.record_ready_probe(outcome);
                let current = instance.ready;
                if let Some(now_ready) = instance.ready_counts.observe(
                    passed,
                    plan.success_threshold,
                    plan.failure_threshold,
                    current,
                ) {
                    instance.ready = now_ready;
                    instance.ever_ready |= now_ready;
                    let action = if now_ready {
                        KnownAction::InstanceReady
                    } else {
                        KnownAction::InstanceUnready
                    };
                    core.journal
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
                        if let Some(handle) = instance.handle.clone() {
                            core.stop_within(handle, stop_grace);
                        }
                        core.journal.record(
                            KnownAction::InstanceUnhealthy,
                            &target,
                            json!({"reason": reason, "action": "restart"}),
                        );
                    }
                }
            }
        }
    }

    /// `wharf restart SERVICE`: its instances are marked outdated and replaced.
    pub(super) fn begin_restart(
        &mut self,
        core: &mut Core,
        name: &str,
    ) -> Result<(), ControlError> {
        let Some(index) = self.index(name) else {
            return Err(self.unknown(name));
        };
        let service = &mut self.services[index];
        if service.is_external() {
            return Err(ControlError::rejected(format!(
                "service `{name}` is external: wharf does not run it"
            )));
        }
        if let Some(rollout) = service.active_rollout() {
            return Err(ControlError::rejected(format!(
                "a rollout of `{name}` is under way ({}); restart it once the rollout is over",
                rollout.summary()
            )));
        }
        service.listen_error = None;
        // Instances that ended for good are replaced by fresh ones.
        service
            .instances
            .retain(|_, i| !matches!(i.phase, Phase::Failed | Phase::Exited));
        let mut count = 0;
        for instance in service.instances.values_mut().filter(|i| {
            i.is_running() || matches!(i.phase, Phase::Backoff { .. } | Phase::Starting)
        }) {
            instance.outdated = true;
            count += 1;
        }
        service.wanted = true;
        core.journal.record(KnownAction::ServiceRestart, name, json!({"instances": count, "mode": if self.services[index].plan.binds_public_port() { "recreate" } else { "rolling" }}));
        Ok(())
    }

    /// The port a new instance of the service listens on.
    pub(super) fn allocate_port(&self, index: usize) -> Option<u16> {
        let plan = &self.services[index].plan;
        if plan.binds_public_port() {
            return plan.public_port;
        }
        // A free port from the kernel; the instance binds it a moment later. Until it does,
        // the kernel may hand the same port out again: never to two instances of this stack
        // (two started in one pass once shared one, and the second crash-looped on it).
        let taken: std::collections::HashSet<u16> = self
            .services
            .iter()
            .flat_map(|s| s.instances.values())
            .flat_map(|i| {
                i.port
                    .into_iter()
                    .chain(i.extra_ports.iter().map(|m| m.host))
            })
            .collect();
        (0..16).find_map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .ok()?
                .local_addr()
                .ok()
                .map(|a| a.port())
                .filter(|port| !taken.contains(port))
        })
    }

    /// Chooses the loopback ports an instance publishes its `ports:` on, once: a restart of
    /// the same instance keeps them (the proxy's table names them). Free ports from the
    /// kernel, never one another instance of the stack has.
    pub(super) fn allocate_extra_ports(
        &mut self,
        index: usize,
        ordinal: u32,
    ) -> Result<(), String> {
        let wanted: Vec<u16> = self.services[index]
            .plan
            .container
            .as_ref()
            .map(|c| c.ports.iter().map(|p| p.target).collect())
            .unwrap_or_default();
        let have = self.services[index]
            .instances
            .get(&ordinal)
            .map_or(0, |i| i.extra_ports.len());
        if wanted.is_empty() || have == wanted.len() {
            return Ok(());
        }
        let mut taken: std::collections::HashSet<u16> = self
            .services
            .iter()
            .flat_map(|s| s.instances.values())
            .flat_map(|i| {
                i.port
                    .into_iter()
                    .chain(i.extra_ports.iter().map(|m| m.host))
            })
            .collect();
        let mut mappings = Vec::with_capacity(wanted.len());
        for container in wanted {
            let host = (0..16)
                .find_map(|_| {
                    std::net::TcpListener::bind("127.0.0.1:0")
                        .ok()?
                        .local_addr()
                        .ok()
                        .map(|a| a.port())
                        .filter(|port| !taken.contains(port))
                })
                .ok_or_else(|| format!("no free loopback port for container port {container}"))?;
            taken.insert(host);
            mappings.push(wharf_runtime::PortMapping { host, container });
        }
        if let Some(instance) = self.services[index].instances.get_mut(&ordinal) {
            instance.extra_ports = mappings;
        }
        Ok(())
    }

    /// Asks the driver to stop an instance; its exit removes it.
    pub(super) fn stop_instance(&mut self, core: &mut Core, index: usize, ordinal: u32, why: &str) {
        let name = self.services[index].plan.name.clone();
        let grace = self.services[index].plan.stop_grace;
        let Some(instance) = self.services[index].instances.get_mut(&ordinal) else {
            return;
        };
        instance.phase = Phase::Stopping;
        instance.draining = None;
        let pid = instance
            .handle
            .as_ref()
            .and_then(|h| core.config.driver.describe(h).pid);
        if let Some(handle) = instance.handle.clone() {
            core.stop_within(handle, grace);
        }
        core.journal.record(
            KnownAction::InstanceStop,
            &format!("{name}/{ordinal}"),
            json!({"pid": pid, "reason": why}),
        );
    }

    /// Writes every change of a service's state to the ledger and the bounded history in the
    /// store: the evidence of when something went down, why, and when it recovered.
    pub(super) fn record_transitions(&mut self, core: &mut Core, statuses: &[ServiceStatus]) {
        for status in statuses {
            let previous = self.last_states.insert(status.name.clone(), status.state);
            if previous == Some(status.state) {
                continue;
            }
            let from = previous.map_or("new", wharf_api::ServiceState::as_str);
            let details = json!({"from": from, "to": status.state, "health": status.health, "reason": status.reason, "blocked_by": status.blocked_by});
            core.journal
                .record(KnownAction::ServiceState, &status.name, details);
            core.journal.record_health(
                &status.name,
                status.state.as_str(),
                status.reason.as_deref(),
            );
        }
    }

    /// Whether a waiting service can never start because a dependency (transitively) failed.
    pub(super) fn blocked_by_failure(&self, name: &str, depth: usize) -> bool {
        let Some(index) = self.index(name) else {
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

    /// The error for a service name the stack does not have, listing those it has.
    pub(super) fn unknown(&self, name: &str) -> ControlError {
        let names: Vec<&str> = self.services.iter().map(|s| s.plan.name.as_str()).collect();
        ControlError::new(
            ErrorCode::UnknownService,
            format!(
                "unknown service `{name}`; the stack has: {}",
                names.join(", ")
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    //! The supervisor fed events directly, without a loop: its state is its own, so a test
    //! needs only a plan, a journal over a temp directory and a driver that is never called
    //! (named so).

    use std::time::Duration;

    use wharf_probe::{Outcome, Status};
    use wharf_runtime::{
        BoxFuture, Driver, ExitStatus, HandleSummary, InstanceHandle, InstanceSpec, Running,
        StartError, StopOutcome,
    };

    use super::super::{Config, Core, Effect, Supervisor};
    use crate::events::ProbeKind;
    use crate::journal::Journal;
    use crate::state::{Instance, Phase, ServiceState};

    /// A driver no subsystem calls (they only decide [`Effect`]s, which the loop runs): any
    /// call but `describe` is a test failure.
    #[derive(Debug)]
    struct UncalledDriver;

    impl Driver for UncalledDriver {
        fn start<'a>(&'a self, _: &'a InstanceSpec) -> BoxFuture<'a, Result<Running, StartError>> {
            panic!("the supervisor started something on a probe result")
        }
        fn is_running(&self, _: &InstanceHandle) -> bool {
            panic!("unexpected driver call")
        }
        fn watch(&self, _: InstanceHandle) -> BoxFuture<'static, Option<ExitStatus>> {
            panic!("unexpected driver call")
        }
        fn exit_status(&self, _: &InstanceHandle) -> Option<ExitStatus> {
            panic!("unexpected driver call")
        }
        fn stop(&self, _: InstanceHandle, _: Duration) -> BoxFuture<'static, StopOutcome> {
            panic!("the supervisor stopped something on a readiness result")
        }
        fn reload(&self, _: &InstanceHandle) -> bool {
            panic!("unexpected driver call")
        }
        fn describe(&self, _: &InstanceHandle) -> HandleSummary {
            HandleSummary {
                pid: None,
                id: String::new(),
                image: None,
                ports: Vec::new(),
            }
        }
    }

    const MANIFEST: &str = "\
name: unit
services:
  api:
    command: [api]
    probes:
      ready: {http: /ready, success_threshold: 2, failure_threshold: 2}
      live: {http: /live, failure_threshold: 2}
";

    fn supervisor_and_core(dir: &std::path::Path) -> (Supervisor, Core) {
        let loaded = wharf_manifest::load(MANIFEST, Default::default(), &|_: &str| None);
        let stack = loaded.stack.expect("the test manifest is valid");
        let plan = crate::plan(&stack).expect("the test manifest plans");
        let (events, _) = tokio::sync::mpsc::channel(8);
        let core = Core {
            config: Config {
                state_dir: dir.to_owned(),
                workdir: dir.to_owned(),
                driver: std::sync::Arc::new(UncalledDriver),
                stop_grace: Duration::from_secs(1),
                limits: Default::default(),
                log_max_bytes: 1 << 20,
                log_keep: 1,
                proxy_binary: None,
                log_json: false,
                reload_plan: None,
            },
            stack: plan.name.clone(),
            journal: Journal::open(dir, "test".to_owned()).expect("a fresh store opens"),
            events,
            prober: Default::default(),
            started_at: jiff::Timestamp::now(),
            generations: 0,
            effects: Vec::new(),
        };
        let mut service = ServiceState::new(plan.services.into_iter().next().unwrap());
        let mut instance = Instance::new(0, Some(1), "1".to_owned());
        instance.phase = Phase::Running;
        instance.generation = 7;
        instance.handle = Some(InstanceHandle::new("test", &0).unwrap());
        service.instances.insert(0, instance);
        let supervisor = Supervisor {
            services: vec![service],
            pending_downs: Vec::new(),
            exit_when_stopped: false,
            last_states: Default::default(),
        };
        (supervisor, core)
    }

    fn outcome(status: Status) -> Outcome {
        Outcome {
            status,
            latency: Duration::ZERO,
            reason: None,
        }
    }

    #[test]
    fn readiness_follows_the_probe_thresholds_and_ignores_a_stale_generation() {
        let dir = tempfile::tempdir().unwrap();
        let (mut supervisor, mut core) = supervisor_and_core(dir.path());
        let ready = |s: &Supervisor| s.services[0].instances[&0].ready;
        let pass = || outcome(Status::Pass);
        supervisor.on_probe(&mut core, "api", 0, 7, ProbeKind::Ready, pass());
        assert!(!ready(&supervisor), "one pass of two needed");
        // A result from an earlier start of the instance counts for nothing.
        supervisor.on_probe(&mut core, "api", 0, 6, ProbeKind::Ready, pass());
        assert!(!ready(&supervisor), "a stale generation moved readiness");
        supervisor.on_probe(&mut core, "api", 0, 7, ProbeKind::Ready, pass());
        assert!(ready(&supervisor), "two passes make it ready");
        supervisor.on_probe(
            &mut core,
            "api",
            0,
            7,
            ProbeKind::Ready,
            outcome(Status::Fail),
        );
        assert!(ready(&supervisor), "one failure of two needed");
        supervisor.on_probe(
            &mut core,
            "api",
            0,
            7,
            ProbeKind::Ready,
            outcome(Status::Fail),
        );
        assert!(!ready(&supervisor), "two failures make it unready");
        // Unknown services and instances are ignored, not a panic.
        supervisor.on_probe(&mut core, "nope", 0, 7, ProbeKind::Ready, pass());
        supervisor.on_probe(&mut core, "api", 9, 7, ProbeKind::Ready, pass());
    }

    #[test]
    fn a_failing_liveness_probe_decides_a_stop_and_the_ledger_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let (mut supervisor, mut core) = supervisor_and_core(dir.path());
        let fail = || outcome(Status::Fail);
        supervisor.on_probe(&mut core, "api", 0, 7, ProbeKind::Live, fail());
        assert!(core.effects.is_empty(), "one failure of two needed");
        supervisor.on_probe(&mut core, "api", 0, 7, ProbeKind::Live, fail());
        let [Effect::Stop(handle)] = core.effects.as_slice() else {
            panic!("expected one stop, got {:?}", core.effects);
        };
        assert_eq!(handle.data::<u32>("test").unwrap(), 0);
        assert!(!supervisor.services[0].instances[&0].live);
        // Stopping an instance decides its stop too, and marks it.
        core.effects.clear();
        supervisor.stop_instance(&mut core, 0, 0, "test");
        assert!(matches!(core.effects.as_slice(), [Effect::Stop(_)]));
        assert_eq!(supervisor.services[0].instances[&0].phase, Phase::Stopping);
    }

    #[test]
    fn a_service_with_its_own_grace_is_stopped_within_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut supervisor, mut core) = supervisor_and_core(dir.path());
        supervisor.services[0].plan.stop_grace = Some(Duration::from_millis(300));
        supervisor.stop_instance(&mut core, 0, 0, "test");
        let [Effect::StopWithin(_, grace)] = core.effects.as_slice() else {
            panic!("expected one stop within the grace, got {:?}", core.effects);
        };
        assert_eq!(*grace, Duration::from_millis(300));
    }

    #[test]
    fn restart_marks_running_instances_outdated_and_refuses_an_unknown_service() {
        let dir = tempfile::tempdir().unwrap();
        let (mut supervisor, mut core) = supervisor_and_core(dir.path());
        supervisor.begin_restart(&mut core, "api").unwrap();
        assert!(supervisor.services[0].instances[&0].outdated);
        let error = supervisor.begin_restart(&mut core, "nope").unwrap_err();
        assert_eq!(error.code, wharf_api::ErrorCode::UnknownService);
        assert!(error.message.contains("the stack has: api"), "{error:?}");
    }
}
