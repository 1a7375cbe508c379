//! A rollout as the control plane keeps it: the pure state machine (`wharf-rollout`) and what
//! is kept beside it (versions, weights, history, verdict), persisted after every transition,
//! and its view for the API. Data only: the carrying-out lives in `control/rollouts.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use wharf_rollout::{At, Outcome, Phase as RolloutPhase, Rollout, Strategy};

use crate::deploy::{RolloutView, VersionTraffic};

/// A version of a service: its name and command line, and for an `image:` service the image
/// (a new tag is a new version).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VersionSpec {
    pub version: String,
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl VersionSpec {
    /// The version the manifest names for a service.
    pub fn of_plan(plan: &crate::plan::ServicePlan) -> VersionSpec {
        VersionSpec {
            version: plan.version.clone(),
            command: plan.command.clone(),
            image: plan.image.clone(),
        }
    }
}

/// One rollout of one service: the state machine and what the control plane keeps beside it.
/// Saved as JSON after every transition; a restarted control plane resumes from it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutRecord {
    pub id: u64,
    pub machine: Rollout,
    /// The version serving when the rollout began, and the one rolled out.
    pub previous: VersionSpec,
    pub new: VersionSpec,
    /// New-version instances the machine asked for (0 once they are to stop).
    pub want_new: u32,
    /// Route weights in force: (stable, new).
    pub weights: (u8, u8),
    /// The new version is reachable with the pin header while live traffic stays stable.
    pub preview: bool,
    /// Recreate: the stable instances were stopped and are not replaced.
    pub stable_suspended: bool,
    /// The table sequence from which the current weights are in force (for drains).
    #[serde(default)]
    pub weights_seq: u64,
    pub history: Vec<Value>,
    pub verdict: Option<Value>,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// The manifest's version and command when the rollout began: a deployed version stays in
    /// force across restarts only while the manifest still says the same.
    pub manifest: VersionSpec,
}

/// What a service runs after a successful rollout, saved in the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployment {
    pub current: VersionSpec,
    pub previous: VersionSpec,
    pub manifest: VersionSpec,
}

pub fn now_at() -> At {
    At(u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0))
}

/// The canary step a phase is in (looking through a pause).
pub(crate) fn step_of(phase: &RolloutPhase) -> Option<&wharf_rollout::StepState> {
    match phase {
        RolloutPhase::Step(step) => Some(step),
        RolloutPhase::Paused { inner, .. } => step_of(inner),
        _ => None,
    }
}

pub(crate) fn at_to_rfc3339(at: At) -> Option<String> {
    jiff::Timestamp::from_millisecond(i64::try_from(at.0).ok()?)
        .ok()
        .map(|t| t.to_string())
}

impl RolloutRecord {
    pub fn is_active(&self) -> bool {
        !self.machine.is_done()
    }

    /// One line for `wharf status`: `1.5.0 step 2/4 (25%)`.
    pub fn summary(&self) -> String {
        let phase = self.machine.phase().name();
        match step_of(self.machine.phase()) {
            Some(step) => format!(
                "{} {phase} {}/{} ({}%)",
                self.new.version,
                step.index + 1,
                self.machine.plan().steps().len(),
                self.weights.1
            ),
            None => format!("{} {phase}", self.new.version),
        }
    }

    pub fn view(&self, service: &str) -> RolloutView {
        let phase = self.machine.phase();
        let step = step_of(phase);
        let mut traffic = BTreeMap::new();
        if let Some(step) = step {
            for (version, totals) in [
                (&self.previous.version, &step.totals.stable),
                (&self.new.version, &step.totals.new),
            ] {
                traffic.insert(
                    version.clone(),
                    VersionTraffic {
                        requests: totals.requests,
                        errors: totals.errors,
                        p95_ms: totals.p95_ms(),
                    },
                );
            }
        }
        let outcome = self.machine.outcome();
        RolloutView {
            service: service.to_owned(),
            id: self.id,
            strategy: match self.machine.plan().strategy() {
                Strategy::Canary => wharf_api::RolloutStrategy::Canary,
                Strategy::BlueGreen => wharf_api::RolloutStrategy::BlueGreen,
                Strategy::Recreate => wharf_api::RolloutStrategy::Recreate,
            },
            phase: api_phase(phase),
            stable_version: self.previous.version.clone(),
            new_version: self.new.version.clone(),
            step: step.map(|s| s.index),
            steps: self.machine.plan().steps().len(),
            weight_stable: self.weights.0,
            weight_new: self.weights.1,
            extended: step.is_some_and(|s| s.extended),
            traffic,
            verdict: self.verdict.clone(),
            outcome: outcome.as_ref().map(|o| match o {
                Outcome::Succeeded => wharf_api::RolloutOutcome::Succeeded,
                Outcome::RolledBack { .. } => wharf_api::RolloutOutcome::RolledBack,
            }),
            reason: match outcome {
                Some(Outcome::RolledBack { reason }) => Some(reason),
                _ => None,
            },
            started_at: self.started_at.clone(),
            finished_at: self.finished_at.clone(),
            deadline: self.machine.next_deadline().and_then(at_to_rfc3339),
            history: self.history.clone(),
        }
    }
}

/// The state machine's phase as the API names it.
pub(crate) fn api_phase(phase: &RolloutPhase) -> wharf_api::RolloutPhase {
    use wharf_api::RolloutPhase as P;
    match phase {
        RolloutPhase::StoppingOld { .. } => P::StoppingOld,
        RolloutPhase::WaitingReady { .. } => P::WaitingReady,
        RolloutPhase::Step(_) => P::Step,
        RolloutPhase::Preview { .. } => P::Preview,
        RolloutPhase::Draining { .. } => P::Draining,
        RolloutPhase::Paused { .. } => P::Paused,
        RolloutPhase::Aborting { .. } => P::Aborting,
        RolloutPhase::Succeeded => P::Succeeded,
        RolloutPhase::RolledBack { .. } => P::RolledBack,
    }
}
