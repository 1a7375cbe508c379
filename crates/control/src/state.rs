//! What the control plane believes about each service and instance.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use wharf_probe::{Outcome, Status as ProbeStatus};
use wharf_runtime::{ExitStatus, InstanceHandle, RestartHistory};

use crate::plan::ServicePlan;
pub use crate::rollout_record::VersionSpec;

/// Where an instance is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// The driver is starting it (in a task); no handle yet.
    Starting,
    /// Its process runs.
    Running,
    /// It exited and restarts at `until`.
    Backoff { until: Instant },
    /// SIGTERM was sent; it is removed once it exits.
    Stopping,
    /// It exited and the restart policy keeps it down.
    Exited,
    /// It could not be started (command not found, port taken); not retried.
    Failed,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct ProbeCounts {
    pub successes: u32,
    pub failures: u32,
}

impl ProbeCounts {
    /// Counts one result; returns the new verdict when a threshold was just crossed.
    pub fn observe(
        &mut self,
        passed: bool,
        success_threshold: u32,
        failure_threshold: u32,
        current: bool,
    ) -> Option<bool> {
        if passed {
            self.successes += 1;
            self.failures = 0;
            (!current && self.successes >= success_threshold).then_some(true)
        } else {
            self.failures += 1;
            self.successes = 0;
            (current && self.failures >= failure_threshold).then_some(false)
        }
    }
}

/// An instance taken out of the proxy's table, finishing its requests in flight before it is
/// stopped.
#[derive(Debug, Clone)]
pub struct Drain {
    pub since: Instant,
    /// The table (the loop's sequence number) without it; 0 until one was computed.
    pub seq: u64,
    pub why: String,
}

/// The identity of what an instance runs: all of it, and without secret files (a change of
/// the files alone can be delivered by SIGHUP). Hashes of the spec and of secret
/// fingerprints, never of values.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    pub full: String,
    pub env: String,
}

#[derive(Debug)]
pub struct Instance {
    /// What it was started with (see [`Identity`]).
    pub identity: Identity,
    pub ordinal: u32,
    pub port: Option<u16>,
    /// The loopback ports of an `image:` service's `ports:` (host → container port),
    /// chosen at its first start and kept across restarts and adoption.
    pub extra_ports: Vec<wharf_runtime::PortMapping>,
    /// The version it runs (the service's stable one, or a rollout's new one).
    pub version: String,
    /// Set while it drains (its process still runs, `phase` stays `Running`).
    pub draining: Option<Drain>,
    pub phase: Phase,
    /// How its driver finds, watches and stops it while it runs (opaque).
    pub handle: Option<InstanceHandle>,
    /// Increments at every start; events from an older generation are stale.
    pub generation: u64,
    pub started_at: Option<jiff::Timestamp>,
    /// Passes its ready probe (true from the start when it has none).
    pub ready: bool,
    /// Has been ready since its latest start: a service whose instances never were is still
    /// coming up (a slow start), not down.
    pub ever_ready: bool,
    pub live: bool,
    pub ready_counts: ProbeCounts,
    pub live_counts: ProbeCounts,
    pub last_probe: Option<Outcome>,
    /// The latest ready-probe results, oldest first, at most [`PROBE_HISTORY`]: the status
    /// report carries them, so a dashboard opened after a flap still shows it.
    pub recent_probes: VecDeque<ProbeStatus>,
    pub history: RestartHistory,
    pub last_exit: Option<ExitStatus>,
    pub error: Option<String>,
    /// To be replaced by a rolling restart.
    pub outdated: bool,
    /// Probe and watch tasks, aborted when the instance stops or restarts.
    pub tasks: Vec<tokio::task::AbortHandle>,
}

/// How many ready-probe results an instance keeps for its status.
pub const PROBE_HISTORY: usize = 20;

impl Instance {
    /// A ready probe's outcome: the latest, and one more in the recent results.
    pub fn record_ready_probe(&mut self, outcome: Outcome) {
        if self.recent_probes.len() == PROBE_HISTORY {
            self.recent_probes.pop_front();
        }
        self.recent_probes.push_back(outcome.status);
        self.last_probe = Some(outcome);
    }

    pub fn new(ordinal: u32, port: Option<u16>, version: String) -> Self {
        Instance {
            identity: Identity::default(),
            ordinal,
            port,
            extra_ports: Vec::new(),
            version,
            draining: None,
            phase: Phase::Backoff {
                until: Instant::now(),
            },
            handle: None,
            generation: 0,
            started_at: None,
            ready: false,
            ever_ready: false,
            live: true,
            ready_counts: ProbeCounts::default(),
            live_counts: ProbeCounts::default(),
            last_probe: None,
            recent_probes: VecDeque::new(),
            history: RestartHistory::default(),
            last_exit: None,
            error: None,
            outdated: false,
            tasks: Vec::new(),
        }
    }

    pub fn is_running(&self) -> bool {
        self.phase == Phase::Running
    }

    /// Holds one of the desired replicas: running, about to run again, or ended in a way
    /// that is not replaced automatically (failed to start, or exited under `restart: never`);
    /// only a stop or an outdated mark frees the slot.
    pub fn is_active(&self) -> bool {
        self.phase != Phase::Stopping && !self.outdated && self.draining.is_none()
    }

    /// Running and ready, not on its way out: what the proxy may send requests to.
    pub fn is_routable(&self) -> bool {
        self.is_running() && self.ready && self.draining.is_none()
    }

    /// On its way out: draining or stopping.
    pub fn is_leaving(&self) -> bool {
        self.phase == Phase::Stopping || self.draining.is_some()
    }

    pub fn abort_tasks(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

#[derive(Debug)]
pub struct ServiceState {
    pub plan: ServicePlan,
    pub instances: BTreeMap<u32, Instance>,
    pub next_ordinal: u32,
    /// False after `down SERVICE`: nothing of it is started again.
    pub wanted: bool,
    /// Why nothing of it runs yet ("waiting for db to be ready").
    pub waiting_for: Option<String>,
    /// For an external service (a datastore wharf does not run) with a ready probe: what the
    /// probe says about it.
    pub external: Option<ExternalHealth>,
    /// What it runs when no rollout is under way: the manifest's version and command, or what
    /// the last successful rollout deployed.
    pub stable: VersionSpec,
    /// The current or latest rollout.
    pub rollout: Option<crate::rollout_record::RolloutRecord>,
    /// The proxy cannot listen on its public port (another process holds it).
    pub listen_error: Option<String>,
}

/// The probed health of something wharf does not run.
#[derive(Debug, Default)]
pub struct ExternalHealth {
    pub ready: bool,
    pub counts: ProbeCounts,
    pub last: Option<Outcome>,
    /// The probe task, replaced when a secret in its URL changes.
    pub task: Option<tokio::task::AbortHandle>,
}

impl ServiceState {
    pub fn new(plan: ServicePlan) -> Self {
        let external =
            (plan.command.is_none() && plan.ready.is_some()).then(ExternalHealth::default);
        ServiceState {
            external,
            stable: VersionSpec::of_plan(&plan),
            rollout: None,
            listen_error: None,
            plan,
            instances: BTreeMap::new(),
            next_ordinal: 0,
            wanted: true,
            waiting_for: None,
        }
    }

    /// An external datastore: nothing to run, always "started".
    pub fn is_external(&self) -> bool {
        self.plan.command.is_none()
    }

    pub fn running(&self) -> usize {
        self.instances.values().filter(|i| i.is_running()).count()
    }

    pub fn ready(&self) -> usize {
        self.instances
            .values()
            .filter(|i| i.is_running() && i.ready)
            .count()
    }

    /// Every desired instance runs (what `condition: started` waits for).
    pub fn is_started(&self) -> bool {
        self.is_external()
            || (self.running() >= self.plan.replicas as usize && self.plan.replicas > 0)
    }

    /// At least one instance is ready (what `condition: ready` waits for); with no ready probe
    /// that is the same as started.
    pub fn is_ready(&self) -> bool {
        if self.is_external() {
            return self.external.as_ref().is_none_or(|e| e.ready);
        }
        self.is_started() && self.ready() > 0
    }

    pub fn has_failed(&self) -> bool {
        self.listen_error.is_some() || self.instances.values().any(|i| i.phase == Phase::Failed)
    }

    /// The rollout under way, if one is.
    pub fn active_rollout(&self) -> Option<&crate::rollout_record::RolloutRecord> {
        self.rollout.as_ref().filter(|r| !r.machine.is_done())
    }

    /// The spec of a version this service runs now (stable, or the rollout's new one).
    pub fn version_spec(&self, version: &str) -> Option<&VersionSpec> {
        if self.stable.version == version {
            return Some(&self.stable);
        }
        self.rollout
            .as_ref()
            .map(|r| &r.new)
            .filter(|new| new.version == version)
    }

    pub fn allocate_ordinal(&mut self) -> u32 {
        let ordinal = self.next_ordinal;
        self.next_ordinal += 1;
        ordinal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_keeps_its_latest_ready_probe_results_oldest_first() {
        let mut instance = Instance::new(0, None, "1".to_owned());
        let outcome = |status| Outcome {
            status,
            latency: std::time::Duration::from_millis(1),
            reason: None,
        };
        instance.record_ready_probe(outcome(ProbeStatus::Fail));
        for _ in 0..PROBE_HISTORY - 1 {
            instance.record_ready_probe(outcome(ProbeStatus::Pass));
        }
        assert_eq!(instance.recent_probes.front(), Some(&ProbeStatus::Fail));
        instance.record_ready_probe(outcome(ProbeStatus::Warn));
        assert_eq!(instance.recent_probes.len(), PROBE_HISTORY);
        assert_eq!(instance.recent_probes.front(), Some(&ProbeStatus::Pass));
        assert_eq!(instance.recent_probes.back(), Some(&ProbeStatus::Warn));
        assert_eq!(
            instance.last_probe.map(|o| o.status),
            Some(ProbeStatus::Warn)
        );
    }
}
