//! The deploy API's types: what a client asks for (`DeployRequest`, `RolloutCommand`) and what
//! it is shown (`RolloutView`). The control plane builds them, the server serialises them as
//! they are, and the CLI deserialises them, so fields are only ever added.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `wharf deploy SERVICE --version V [--command …] [--strategy …]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// The new version's name (what `${VERSION}` and `X-Wharf-Version` carry).
    pub version: String,
    /// The new version's command line; the current one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// `canary`, `blue-green` or `recreate`; the manifest's `rollout.strategy` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
}

/// An operator's word on a running rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RolloutCommand {
    Pause,
    Resume,
    /// Skip the remaining steps (canary) or switch (blue-green).
    Promote,
    Abort,
}

impl RolloutCommand {
    pub fn name(self) -> &'static str {
        match self {
            RolloutCommand::Pause => "pause",
            RolloutCommand::Resume => "resume",
            RolloutCommand::Promote => "promote",
            RolloutCommand::Abort => "abort",
        }
    }
}

/// A rollout as `wharf rollout status` and `wharf deploy --watch` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RolloutView {
    pub service: String,
    /// Rollout id: increases with every deploy of the service.
    pub id: u64,
    pub strategy: RolloutStrategy,
    /// Where the state machine stands.
    pub phase: RolloutPhase,
    /// The version serving before the rollout and the one being rolled out.
    pub stable_version: String,
    pub new_version: String,
    /// Canary: the current step (0-based) and the number of steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    pub steps: usize,
    /// Route weights in percent (stable, new) now in force.
    pub weight_stable: u8,
    pub weight_new: u8,
    /// The step's pause is over but it lacks traffic; it runs on until its deadline.
    #[serde(default)]
    pub extended: bool,
    /// Per version (by version name): traffic seen by the proxy during the current step.
    pub traffic: BTreeMap<String, VersionTraffic>,
    /// The latest verdict with the numbers it was based on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<serde_json::Value>,
    /// How it ended, once over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<RolloutOutcome>,
    /// Why it rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// When the current phase's deadline falls (RFC 3339), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    /// Every transition so far, oldest first: `{at, action, details}` as in the ledger.
    #[serde(default)]
    pub history: Vec<serde_json::Value>,
}

/// How a rollout moves traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutStrategy {
    /// Weighted steps, each analysed before the next.
    Canary,
    /// The new version fully started and previewed, then all traffic switched at once.
    BlueGreen,
    /// The old version stopped, then the new one started.
    Recreate,
}

/// The rollout state machine's phases, by their names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutPhase {
    StoppingOld,
    WaitingReady,
    Step,
    Preview,
    Draining,
    Paused,
    Aborting,
    Succeeded,
    RolledBack,
}

/// How a rollout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutOutcome {
    Succeeded,
    RolledBack,
}

macro_rules! display_by_serde_name {
    ($($ty:ty),*) => {$(
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match serde_json::to_value(self) {
                    Ok(serde_json::Value::String(name)) => f.write_str(&name),
                    _ => write!(f, "{self:?}"),
                }
            }
        }
    )*};
}

display_by_serde_name!(RolloutStrategy, RolloutPhase, RolloutOutcome);

impl RolloutView {
    pub fn is_done(&self) -> bool {
        self.outcome.is_some()
    }
}

/// One version's traffic during the current step.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct VersionTraffic {
    pub requests: u64,
    pub errors: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_ms: Option<f64>,
}
