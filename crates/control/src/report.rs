//! The status and health of a stack as the API returns it and `wharf status` prints it.
//!
//! The health model: an instance is live and ready by its probes; a service is `running` when
//! enough instances are ready, `degraded` when some are, `down` when none are. A service whose
//! critical dependency is not serving is `blocked` by the *root cause* — the service at the
//! bottom of the chain — so one outage is one alarm, not one per dependent. A non-critical
//! dependency that is down only degrades it. The stack is `ok`, `degraded` or `down`.
//!
//! The report types are the API's (`wharf-api`); this module builds them from the control
//! plane's state.

use wharf_api::{HealthStatus, InstancePhase, ServiceState as State, StackStatus};
use wharf_probe::Status as ProbeStatus;
use wharf_runtime::Driver;

pub use wharf_api::{DependencyStatus, InstanceStatus, ServiceStatus, StatusReport};

use crate::state::{Instance, Phase, ServiceState};

/// Every service's status, dependencies applied. `services` is in dependency order.
pub(crate) fn service_statuses(
    services: &[ServiceState],
    driver: &dyn Driver,
) -> Vec<ServiceStatus> {
    let mut statuses: Vec<ServiceStatus> = Vec::with_capacity(services.len());
    for service in services {
        let mut status = own_status(service, driver);
        apply_dependencies(&mut status, service, &statuses);
        status.health = health_of(&status);
        statuses.push(status);
    }
    statuses
}

/// ok when every service passes, down when one fails, degraded otherwise.
pub(crate) fn stack_status(statuses: &[ServiceStatus]) -> StackStatus {
    StackStatus::of(statuses)
}

/// The state's health, lowered to `warn` when an instance's last ready probe warned.
fn health_of(status: &ServiceStatus) -> HealthStatus {
    let health = status.state.health();
    let probe_warned = status
        .instances
        .iter()
        .any(|i| i.probe == Some(HealthStatus::Warn));
    if health == HealthStatus::Pass && probe_warned {
        HealthStatus::Warn
    } else {
        health
    }
}

/// A running service with a critical dependency that does not serve is blocked by the root
/// cause; a non-critical one only degrades it. Services not running yet stay as they are.
fn apply_dependencies(
    status: &mut ServiceStatus,
    service: &ServiceState,
    before: &[ServiceStatus],
) {
    if !matches!(
        status.state,
        State::Running | State::Degraded | State::Starting | State::Down
    ) {
        return;
    }
    for (name, dependency) in &service.plan.depends_on {
        let Some(dep) = before.iter().find(|s| s.name == *name) else {
            continue;
        };
        if dep.state.is_serving() {
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
                    .map_or_else(String::new, |s| s.state.to_string())
            });
        if dependency.critical {
            status.state = State::Blocked;
            status.reason = Some(format!("blocked by {root}: {why}"));
            status.blocked_by = Some(root);
            return;
        }
        if status.state == State::Running {
            status.state = State::Degraded;
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
                State::Down,
                external.last.as_ref().and_then(|o| o.reason.clone()),
            ),
            _ => (State::External, None),
        }
    } else if !service.wanted {
        (State::Stopped, None)
    } else if let Some(error) = &service.listen_error {
        (State::Failed, Some(error.clone()))
    } else if let Some(failed) = failed {
        (State::Failed, failed.error.clone())
    } else if crash_looping {
        let exit = service
            .instances
            .values()
            .find_map(|i| i.last_exit.as_ref().map(|e| format!("keeps exiting ({e})")));
        (State::CrashLoop, exit)
    } else if service.instances.is_empty() && service.waiting_for.is_some() {
        (State::Waiting, service.waiting_for.clone())
    } else if running >= desired && ready >= desired {
        (State::Running, None)
    } else if running > 0 && ready > 0 {
        (State::Degraded, not_ready_reason(service))
    } else if !service.instances.is_empty()
        && service.instances.values().all(|i| i.phase == Phase::Exited)
    {
        (State::Exited, None)
    } else if probes_failing {
        (State::Down, not_ready_reason(service))
    } else {
        (State::Starting, not_ready_reason(service))
    };
    ServiceStatus {
        name: service.plan.name.clone(),
        version: service.stable.version.clone(),
        public_port: service
            .plan
            .proxied
            .then_some(service.plan.public_port)
            .flatten(),
        backups: None,
        rollout: service
            .active_rollout()
            .map(crate::rollout_record::RolloutRecord::summary),
        state,
        health: HealthStatus::Pass,
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
        Phase::Running if instance.draining.is_some() => InstancePhase::Draining,
        Phase::Running => InstancePhase::Running,
        Phase::Starting => InstancePhase::Starting,
        Phase::Backoff { .. } if instance.generation == 0 => InstancePhase::Starting,
        Phase::Backoff { .. } => InstancePhase::Backoff,
        Phase::Stopping => InstancePhase::Stopping,
        Phase::Exited => InstancePhase::Exited,
        Phase::Failed => InstancePhase::Failed,
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
        phase,
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
        probe: probe.map(|p| probe_health(p.status)),
        probe_latency_ms: probe.map(|p| p.latency.as_millis() as u64),
        probe_reason: probe.and_then(|p| p.reason.clone()),
        probe_history: instance
            .recent_probes
            .iter()
            .map(|status| probe_health(*status))
            .collect(),
    }
}

fn probe_health(status: ProbeStatus) -> HealthStatus {
    match status {
        ProbeStatus::Pass => HealthStatus::Pass,
        ProbeStatus::Warn => HealthStatus::Warn,
        ProbeStatus::Fail => HealthStatus::Fail,
    }
}
