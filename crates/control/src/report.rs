//! The status of a stack as the API returns it and `wharf status` prints it.
//!
//! These types are an IPC boundary on purpose: they derive `Serialize`/`Deserialize` and change
//! only compatibly.

use serde::{Deserialize, Serialize};

use crate::state::{Instance, Phase, ServiceState};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusReport {
    pub stack: String,
    /// The control plane's pid.
    pub control_pid: u32,
    pub started_at: String,
    /// Every desired service has reached a steady state (running and ready, or failed).
    pub settled: bool,
    /// Settled, and nothing failed.
    pub healthy: bool,
    pub services: Vec<ServiceStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceStatus {
    pub name: String,
    pub version: String,
    /// running | starting | waiting | degraded | crash-loop | failed | stopped | external
    pub state: String,
    pub desired: u32,
    pub running: u32,
    pub ready: u32,
    pub restarts: u32,
    /// Why it is not running or not ready, in a person's words.
    pub reason: Option<String>,
    pub instances: Vec<InstanceStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InstanceStatus {
    /// `${INSTANCE}`: the instance's ordinal within its service.
    pub ordinal: u32,
    pub pid: Option<i32>,
    pub port: Option<u16>,
    /// running | starting | backoff | stopping | exited | failed
    pub phase: String,
    pub ready: Option<bool>,
    pub restarts: u32,
    pub crash_looping: bool,
    pub started_at: Option<String>,
    pub uptime_secs: Option<u64>,
    pub last_exit: Option<String>,
    pub error: Option<String>,
    pub probe_latency_ms: Option<u64>,
}

pub(crate) fn service_status(service: &ServiceState) -> ServiceStatus {
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
        pid: instance.recorded.as_ref().map(|r| r.instance.pid),
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
