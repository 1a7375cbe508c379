//! The status and health of a stack as the API returns it and `wharf status` prints it.
//!
//! The health model: an instance is live and ready by its probes; a service is `running` when
//! enough instances are ready, `degraded` when some are, `down` when none are. A service whose
//! critical dependency is not serving is `blocked` by the *root cause* — the service at the
//! bottom of the chain — so one outage is one alarm, not one per dependent. A non-critical
//! dependency that is down only degrades it. The stack is `ok`, `degraded` or `down`.
//!
//! The report types are an IPC boundary on purpose: they derive `Serialize`/`Deserialize` and
//! change only compatibly.

use serde::{Deserialize, Serialize};
use wharf_probe::Status as ProbeStatus;
use wharf_runtime::Driver;

use crate::state::{Instance, Phase, ServiceState};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusReport {
    pub stack: String,
    /// The control plane's pid.
    pub control_pid: u32,
    pub started_at: String,
    /// ok | degraded | down
    pub status: String,
    /// Every desired service has reached a steady state (running and ready, or failed).
    pub settled: bool,
    /// Nothing failed, nothing is blocked, nothing is still starting.
    pub healthy: bool,
    pub services: Vec<ServiceStatus>,
}

impl StatusReport {
    /// The services that are down on their own (not merely blocked by another): what
    /// `/health/ready` names, and what an operator must fix first.
    pub fn root_causes(&self) -> Vec<&ServiceStatus> {
        self.services
            .iter()
            .filter(|s| matches!(s.state.as_str(), "down" | "failed" | "crash-loop"))
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceStatus {
    pub name: String,
    pub version: String,
    /// running | starting | waiting | degraded | down | blocked | crash-loop | failed | stopped
    /// | exited | external
    pub state: String,
    /// pass | warn | fail
    pub health: String,
    /// A datastore wharf does not run, only probes.
    pub external: bool,
    pub desired: u32,
    pub running: u32,
    pub ready: u32,
    pub restarts: u32,
    /// Why it is not running or not ready, in a person's words.
    pub reason: Option<String>,
    /// The root cause when `state` is `blocked` (or `degraded` by a non-critical dependency).
    pub blocked_by: Option<String>,
    /// Latency of the last probe of an external service (instances carry their own).
    pub probe_latency_ms: Option<u64>,
    pub dependencies: Vec<DependencyStatus>,
    pub instances: Vec<InstanceStatus>,
    /// The port the wharf proxy serves it on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_port: Option<u16>,
    /// A rollout under way: `VERSION PHASE`, e.g. `1.5.0 step 2/4 (25%)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DependencyStatus {
    pub name: String,
    /// A critical dependency that is down blocks the service; a non-critical one degrades it.
    pub critical: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InstanceStatus {
    /// `${INSTANCE}`: the instance's ordinal within its service.
    pub ordinal: u32,
    #[serde(default)]
    pub version: String,
    /// The process id, when the instance's driver describes one (a process, not a pod).
    pub pid: Option<u32>,
    pub port: Option<u16>,
    /// running | starting | backoff | stopping | exited | failed
    pub phase: String,
    pub live: Option<bool>,
    pub ready: Option<bool>,
    pub restarts: u32,
    pub crash_looping: bool,
    pub started_at: Option<String>,
    pub uptime_secs: Option<u64>,
    pub last_exit: Option<String>,
    pub error: Option<String>,
    /// pass | warn | fail of the last ready probe.
    pub probe: Option<String>,
    pub probe_latency_ms: Option<u64>,
    /// Why the last ready probe failed or warned.
    pub probe_reason: Option<String>,
}

/// Every service's status, dependencies applied. `services` is in dependency order.
pub(crate) fn service_statuses(
    services: &[ServiceState],
    driver: &dyn Driver,
) -> Vec<ServiceStatus> {
    let mut statuses: Vec<ServiceStatus> = Vec::with_capacity(services.len());
    for service in services {
        let mut status = own_status(service, driver);
        apply_dependencies(&mut status, service, &statuses);
        status.health = health_of(&status).to_owned();
        statuses.push(status);
    }
    statuses
}

/// ok when every service passes, down when one fails, degraded otherwise.
pub(crate) fn stack_status(statuses: &[ServiceStatus]) -> &'static str {
    if statuses.iter().any(|s| s.health == "fail") {
        "down"
    } else if statuses.iter().any(|s| s.health == "warn") {
        "degraded"
    } else {
        "ok"
    }
}

fn health_of(status: &ServiceStatus) -> &'static str {
    match status.state.as_str() {
        "down" | "blocked" | "failed" | "crash-loop" => "fail",
        "degraded" | "starting" | "waiting" => "warn",
        _ if status
            .instances
            .iter()
            .any(|i| i.probe.as_deref() == Some("warn")) =>
        {
            "warn"
        }
        _ => "pass",
    }
}

/// Whether a service in this state serves its dependents.
fn serving(state: &str) -> bool {
    matches!(state, "running" | "degraded" | "external" | "exited")
}

/// A running service with a critical dependency that does not serve is blocked by the root
/// cause; a non-critical one only degrades it. Services not running yet stay as they are.
fn apply_dependencies(
    status: &mut ServiceStatus,
    service: &ServiceState,
    before: &[ServiceStatus],
) {
    if !matches!(
        status.state.as_str(),
        "running" | "degraded" | "starting" | "down"
    ) {
        return;
    }
    for (name, dependency) in &service.plan.depends_on {
        let Some(dep) = before.iter().find(|s| s.name == *name) else {
            continue;
        };
        if serving(&dep.state) {
            continue;
        }
        let root = dep.blocked_by.clone().unwrap_or_else(|| dep.name.clone());
        let why = before
            .iter()
            .find(|s| s.name == root)
            .and_then(|s| s.reason.clone())
            .unwrap_or_else(|| {
                before
                    .iter()
                    .find(|s| s.name == root)
                    .map_or_else(String::new, |s| s.state.clone())
            });
        if dependency.critical {
            status.state = "blocked".to_owned();
            status.reason = Some(format!("blocked by {root}: {why}"));
            status.blocked_by = Some(root);
            return;
        }
        if status.state == "running" {
            status.state = "degraded".to_owned();
            status.reason = Some(format!("non-critical dependency {root} is down: {why}"));
            status.blocked_by = Some(root);
        }
    }
}

fn own_status(service: &ServiceState, driver: &dyn Driver) -> ServiceStatus {
    let instances: Vec<InstanceStatus> = service
        .instances
        .values()
        .map(|i| instance_status(i, driver))
        .collect();
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
    let failure_threshold = service
        .plan
        .ready
        .as_ref()
        .map_or(u32::MAX, |p| p.failure_threshold);
    let probes_failing = service
        .instances
        .values()
        .any(|i| i.is_running() && !i.ready && i.ready_counts.failures >= failure_threshold);
    let (state, reason) = if service.is_external() {
        match &service.external {
            Some(external) if !external.ready && external.counts.failures >= failure_threshold => (
                "down",
                external.last.as_ref().and_then(|o| o.reason.clone()),
            ),
            _ => ("external", None),
        }
    } else if !service.wanted {
        ("stopped", None)
    } else if let Some(error) = &service.listen_error {
        ("failed", Some(error.clone()))
    } else if let Some(failed) = failed {
        ("failed", failed.error.clone())
    } else if crash_looping {
        let exit = service
            .instances
            .values()
            .find_map(|i| i.last_exit.as_ref().map(|e| format!("keeps exiting ({e})")));
        ("crash-loop", exit)
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
    } else if probes_failing {
        ("down", not_ready_reason(service))
    } else {
        ("starting", not_ready_reason(service))
    };
    ServiceStatus {
        name: service.plan.name.clone(),
        version: service.stable.version.clone(),
        public_port: service
            .plan
            .proxied
            .then_some(service.plan.public_port)
            .flatten(),
        rollout: service
            .active_rollout()
            .map(crate::control::RolloutRecord::summary),
        state: state.to_owned(),
        health: String::new(),
        external: service.is_external(),
        desired,
        running,
        ready,
        restarts: service.instances.values().map(|i| i.history.restarts).sum(),
        reason,
        blocked_by: None,
        probe_latency_ms: service
            .external
            .as_ref()
            .and_then(|e| e.last.as_ref())
            .map(|o| o.latency.as_millis() as u64),
        dependencies: service
            .plan
            .depends_on
            .iter()
            .map(|(name, d)| DependencyStatus {
                name: name.clone(),
                critical: d.critical,
            })
            .collect(),
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

fn instance_status(instance: &Instance, driver: &dyn Driver) -> InstanceStatus {
    let phase = match instance.phase {
        Phase::Running if instance.draining.is_some() => "draining",
        Phase::Running => "running",
        Phase::Backoff { .. } if instance.generation == 0 => "starting",
        Phase::Backoff { .. } => "backoff",
        Phase::Stopping => "stopping",
        Phase::Exited => "exited",
        Phase::Failed => "failed",
    };
    let now = jiff::Timestamp::now();
    let probe = instance.last_probe.as_ref();
    InstanceStatus {
        ordinal: instance.ordinal,
        version: instance.version.clone(),
        pid: instance
            .handle
            .as_ref()
            .and_then(|h| driver.describe(h).pid),
        port: instance.port,
        phase: phase.to_owned(),
        live: instance.is_running().then_some(instance.live),
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
        probe: probe.map(|p| probe_word(p.status).to_owned()),
        probe_latency_ms: probe.map(|p| p.latency.as_millis() as u64),
        probe_reason: probe.and_then(|p| p.reason.clone()),
    }
}

fn probe_word(status: ProbeStatus) -> &'static str {
    match status {
        ProbeStatus::Pass => "pass",
        ProbeStatus::Warn => "warn",
        ProbeStatus::Fail => "fail",
    }
}
