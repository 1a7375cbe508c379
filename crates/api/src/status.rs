//! The status of a stack as `GET /v1/status` returns it and `wharf status` prints it: the
//! stack, its services with their state and health, their instances and dependencies.
//!
//! The states are closed sets, enums serialised to the same kebab-case words the API has always
//! sent, and the questions asked of them ("does it serve?", "is it healthy?") are answered here
//! once, for the control plane, the server and the CLI alike.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The whole stack.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct StatusReport {
    pub stack: String,
    /// The control plane's pid.
    pub control_pid: u32,
    pub started_at: String,
    pub status: StackStatus,
    /// Every desired service has reached a steady state (running and ready, or failed).
    pub settled: bool,
    /// Nothing failed, nothing is blocked, nothing is still starting.
    pub healthy: bool,
    pub services: Vec<ServiceStatus>,
    /// The alert pages open now: one per root cause and alert.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pages: Vec<OpenPage>,
    /// The silences in force now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub silences: Vec<crate::Silence>,
    /// The incidents not resolved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incidents: Vec<crate::Incident>,
}

/// An alert page open now (its notice sent or on its way to the alert's receiver).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct OpenPage {
    /// The alert (receiver) it went to.
    pub alert: String,
    pub root_cause: String,
    pub summary: String,
    /// Dependents in trouble through the root cause when it opened.
    pub affected: Vec<String>,
    /// When the trouble began (RFC 3339).
    pub since: String,
    /// The silence holding its notice back, when one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silenced_by: Option<String>,
}

impl StatusReport {
    /// The services that are down on their own (not merely blocked by another): what
    /// `/health/ready` names, and what an operator must fix first.
    pub fn root_causes(&self) -> Vec<&ServiceStatus> {
        self.services
            .iter()
            .filter(|s| s.state.is_root_cause())
            .collect()
    }
}

/// The stack as a whole: `ok` when every service passes, `down` when one fails, `degraded`
/// otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StackStatus {
    Ok,
    Degraded,
    Down,
}

impl StackStatus {
    /// The stack's status from its services' health.
    pub fn of(services: &[ServiceStatus]) -> StackStatus {
        if services.iter().any(|s| s.health == HealthStatus::Fail) {
            StackStatus::Down
        } else if services.iter().any(|s| s.health == HealthStatus::Warn) {
            StackStatus::Degraded
        } else {
            StackStatus::Ok
        }
    }

    /// The IETF health-check status for the stack.
    pub fn health(self) -> HealthStatus {
        match self {
            StackStatus::Ok => HealthStatus::Pass,
            StackStatus::Degraded => HealthStatus::Warn,
            StackStatus::Down => HealthStatus::Fail,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StackStatus::Ok => "ok",
            StackStatus::Degraded => "degraded",
            StackStatus::Down => "down",
        }
    }
}

impl std::fmt::Display for StackStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The health-check status of the IETF "Health Check Response Format for HTTP APIs", also what
/// a probe reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HealthStatus {
    Pass,
    Warn,
    Fail,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Pass => "pass",
            HealthStatus::Warn => "warn",
            HealthStatus::Fail => "fail",
        }
    }
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a service stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceState {
    /// Enough instances are running and ready.
    Running,
    /// Some instances are ready, or a non-critical dependency is down.
    Degraded,
    /// Instances are starting and not ready yet.
    Starting,
    /// Waiting for its dependencies before its first start.
    Waiting,
    /// Its instances run but fail their ready probe (or an external datastore fails its probe).
    Down,
    /// A critical dependency does not serve (`blocked_by` names the root cause).
    Blocked,
    /// An instance could not start (a refused spec, a taken port).
    Failed,
    /// Its instances keep exiting soon after they start.
    CrashLoop,
    /// A datastore wharf does not run, only probes, whose probe passes.
    External,
    /// Its instances ran to completion and are not restarted (a one-shot job).
    Exited,
    /// Stopped by an operator (`wharf down SERVICE`).
    Stopped,
}

impl ServiceState {
    /// Whether a service in this state serves its dependents: the one answer to "is this
    /// service serving?" for dependency blocking, `/health/detailed`'s dependency checks and
    /// `wharf preflight`'s.
    ///
    /// Three local definitions used to disagree on `stopped`: the server's counted a stopped
    /// service as serving, the control plane's and preflight's did not. A stopped service
    /// answers no request, so its critical dependents are `blocked` (the control plane's rule,
    /// which the dependency tests rely on). `exited` serves: a one-shot job that finished has
    /// done what its dependents waited for. Readiness of the stack is another question:
    /// see [`ServiceState::counts_as_ready`].
    pub fn is_serving(self) -> bool {
        matches!(
            self,
            ServiceState::Running
                | ServiceState::Degraded
                | ServiceState::External
                | ServiceState::Exited
        )
    }

    /// Whether a service in this state lets the stack count as ready (`/health/ready`): it
    /// serves, or an operator stopped it on purpose, which is not an outage.
    pub fn counts_as_ready(self) -> bool {
        self.is_serving() || self == ServiceState::Stopped
    }

    /// Down on its own rather than because of another service: what `/health/ready` names
    /// as a root cause.
    pub fn is_root_cause(self) -> bool {
        matches!(
            self,
            ServiceState::Down | ServiceState::Failed | ServiceState::CrashLoop
        )
    }

    /// The service's health by its state alone: `fail` when it does not serve because of a
    /// fault, `warn` while it is on its way or partly serving, `pass` otherwise (a probe's
    /// warning can still lower a `pass` to `warn`).
    pub fn health(self) -> HealthStatus {
        match self {
            ServiceState::Down
            | ServiceState::Blocked
            | ServiceState::Failed
            | ServiceState::CrashLoop => HealthStatus::Fail,
            ServiceState::Degraded | ServiceState::Starting | ServiceState::Waiting => {
                HealthStatus::Warn
            }
            ServiceState::Running
            | ServiceState::External
            | ServiceState::Exited
            | ServiceState::Stopped => HealthStatus::Pass,
        }
    }

    /// The state's word on the wire and in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Running => "running",
            ServiceState::Degraded => "degraded",
            ServiceState::Starting => "starting",
            ServiceState::Waiting => "waiting",
            ServiceState::Down => "down",
            ServiceState::Blocked => "blocked",
            ServiceState::Failed => "failed",
            ServiceState::CrashLoop => "crash-loop",
            ServiceState::External => "external",
            ServiceState::Exited => "exited",
            ServiceState::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for ServiceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct ServiceStatus {
    pub name: String,
    pub version: String,
    pub state: ServiceState,
    pub health: HealthStatus,
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
    /// A datastore with `backup:`: where its backups stand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backups: Option<crate::backups::DatastoreBackups>,
}

/// One dependency of a service, as the manifest declares it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct DependencyStatus {
    pub name: String,
    /// A critical dependency that is down blocks the service; a non-critical one degrades it.
    pub critical: bool,
}

/// Where one instance stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum InstancePhase {
    Running,
    /// Running, but leaving the proxy's table before it stops.
    Draining,
    /// Not started yet (its first start is pending).
    Starting,
    /// Exited and waiting to be restarted.
    Backoff,
    Stopping,
    Exited,
    Failed,
}

impl InstancePhase {
    pub fn as_str(self) -> &'static str {
        match self {
            InstancePhase::Running => "running",
            InstancePhase::Draining => "draining",
            InstancePhase::Starting => "starting",
            InstancePhase::Backoff => "backoff",
            InstancePhase::Stopping => "stopping",
            InstancePhase::Exited => "exited",
            InstancePhase::Failed => "failed",
        }
    }
}

impl std::fmt::Display for InstancePhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One instance of a service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct InstanceStatus {
    /// `${INSTANCE}`: the instance's ordinal within its service.
    pub ordinal: u32,
    #[serde(default)]
    pub version: String,
    pub pid: Option<u32>,
    pub port: Option<u16>,
    pub phase: InstancePhase,
    pub live: Option<bool>,
    pub ready: Option<bool>,
    pub restarts: u32,
    pub crash_looping: bool,
    pub started_at: Option<String>,
    pub uptime_secs: Option<u64>,
    pub last_exit: Option<String>,
    pub error: Option<String>,
    /// The result of the last ready probe.
    pub probe: Option<HealthStatus>,
    pub probe_latency_ms: Option<u64>,
    /// Why the last ready probe failed or warned.
    pub probe_reason: Option<String>,
    /// The latest ready-probe results, oldest first (at most 20, since the instance's
    /// control plane started).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probe_history: Vec<HealthStatus>,
}

impl InstanceStatus {
    /// The instance's health check: `pass` when running and ready (`warn` if its probe
    /// warned), `warn` while running but not ready, `fail` otherwise.
    pub fn health(&self) -> HealthStatus {
        match (self.phase, self.ready, self.probe) {
            (InstancePhase::Running, Some(true), Some(HealthStatus::Warn)) => HealthStatus::Warn,
            (InstancePhase::Running, Some(true), _) => HealthStatus::Pass,
            (InstancePhase::Running, _, _) => HealthStatus::Warn,
            _ => HealthStatus::Fail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_keep_their_wire_words() {
        let all = [
            ServiceState::Running,
            ServiceState::Degraded,
            ServiceState::Starting,
            ServiceState::Waiting,
            ServiceState::Down,
            ServiceState::Blocked,
            ServiceState::Failed,
            ServiceState::CrashLoop,
            ServiceState::External,
            ServiceState::Exited,
            ServiceState::Stopped,
        ];
        for state in all {
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
        assert_eq!(
            serde_json::to_value(ServiceState::CrashLoop).unwrap(),
            "crash-loop"
        );
        for phase in [
            InstancePhase::Running,
            InstancePhase::Draining,
            InstancePhase::Starting,
            InstancePhase::Backoff,
            InstancePhase::Stopping,
            InstancePhase::Exited,
            InstancePhase::Failed,
        ] {
            assert_eq!(serde_json::to_value(phase).unwrap(), phase.as_str());
        }
    }

    #[test]
    fn a_stopped_service_does_not_serve_but_does_not_make_the_stack_unready() {
        assert!(!ServiceState::Stopped.is_serving());
        assert!(ServiceState::Stopped.counts_as_ready());
        assert!(ServiceState::Exited.is_serving());
        assert!(!ServiceState::Blocked.is_serving());
    }
}

/// `GET /v1/services/{name}/health-history`: one recorded change of a service's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthTransition {
    /// RFC 3339.
    pub time: String,
    /// The state it entered (`running`, `down`, `blocked`, …).
    pub state: String,
    /// Why, when it is not serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
