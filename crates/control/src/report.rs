//! The status of a stack as the API returns it and `wharf status` prints it.
//!
//! These types are an IPC boundary on purpose: they derive `Serialize`/`Deserialize` and change
//! only compatibly.

use serde::{Deserialize, Serialize};

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
