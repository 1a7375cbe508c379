//! The plan of one rollout: strategy, steps, thresholds and deadlines, checked before it starts.
//!
//! The manifest's types are `Serialize` only and belong to the manifest crate; the plan copies
//! what a rollout needs into its own types so the persisted state does not change shape when the
//! manifest schema does.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use wharf_manifest::model;

/// How the new version receives traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Weighted steps with analysis at each one.
    Canary,
    /// The new version on a preview route until promoted, then all traffic at once.
    BlueGreen,
    /// Stop the old version, start the new one (downtime accepted).
    Recreate,
}

/// One canary step: the new version's weight and how long to hold it before the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Percent of traffic on the new version, `1..=100`.
    pub weight: u8,
    /// Minimum time at this weight before the step may pass.
    #[serde(with = "crate::text_duration")]
    pub pause: Duration,
}

/// Bounds on the new version's live traffic (from the manifest's `analysis`).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Thresholds {
    /// Largest acceptable error fraction, `0.0..=1.0`.
    pub max_error_rate: Option<f64>,
    /// Largest acceptable p95 latency in milliseconds.
    pub max_latency_p95_ms: Option<f64>,
    /// Largest acceptable p99 latency in milliseconds.
    pub max_latency_p99_ms: Option<f64>,
    /// Requests the new version must serve in a step before the step can pass.
    pub min_requests: u64,
}

/// What a step does when its deadline passes without enough evidence to pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeadlineAction {
    /// Hold the current weight and wait for a person (the pause has its own deadline).
    Pause,
    /// Roll back: in doubt, the stable version serves.
    Abort,
}

/// Deadlines and statistical parameters. Every phase has a deadline so no rollout waits forever.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// How long new instances may take to become ready; then abort.
    #[serde(with = "crate::text_duration")]
    pub ready_timeout: Duration,
    /// How long a step may run past its pause while it lacks `min_requests`.
    #[serde(with = "crate::text_duration")]
    pub step_extension: Duration,
    /// What a step deadline does.
    pub on_step_deadline: DeadlineAction,
    /// How long a manual or deadline pause may last; then abort.
    #[serde(with = "crate::text_duration")]
    pub pause_timeout: Duration,
    /// How long a blue-green preview waits for `Promote`; then abort.
    #[serde(with = "crate::text_duration")]
    pub preview_timeout: Duration,
    /// How long draining may take before instances are stopped anyway.
    #[serde(with = "crate::text_duration")]
    pub drain_timeout: Duration,
    /// Traffic phases abort when no stats arrived for this long (the proxy may be gone), and a
    /// resumed rollout whose last stats are older rolls back.
    #[serde(with = "crate::text_duration")]
    pub stats_stale_after: Duration,
    /// Bound on the probability that the error-rate tests abort a version as good as stable,
    /// over the whole rollout however often they are checked. Split evenly between the
    /// comparison with stable and the absolute `max_error_rate` test.
    pub alpha: f64,
    /// The new p95/p99 may exceed stable's by this fraction (plus `latency_slack_ms`).
    pub latency_tolerance: f64,
    /// Absolute slack on the latency comparison so millisecond-scale services do not flap.
    pub latency_slack_ms: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            ready_timeout: Duration::from_secs(300),
            step_extension: Duration::from_secs(300),
            on_step_deadline: DeadlineAction::Abort,
            pause_timeout: Duration::from_secs(3600),
            preview_timeout: Duration::from_secs(3600),
            drain_timeout: Duration::from_secs(60),
            stats_stale_after: Duration::from_secs(30),
            alpha: 0.01,
            latency_tolerance: 0.2,
            latency_slack_ms: 10.0,
        }
    }
}

/// Why a plan cannot run.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PlanError {
    #[error("a canary rollout needs at least one step")]
    NoSteps,
    #[error("steps apply to canary rollouts only; {0:?} switches traffic at once")]
    StepsNotAllowed(Strategy),
    #[error("step {index}: weight {weight} must be between 1 and 100")]
    WeightOutOfRange { index: usize, weight: u8 },
    #[error("step {index}: weight {weight} must be above the previous step's {previous}")]
    WeightNotIncreasing {
        index: usize,
        weight: u8,
        previous: u8,
    },
    #[error("replicas must be at least 1")]
    NoReplicas,
    #[error("alpha {0} must lie strictly between 0 and 1")]
    Alpha(f64),
    #[error("latency tolerance {0} must be a non-negative number")]
    LatencyTolerance(f64),
}

/// A checked plan: the only way to build a [`crate::Rollout`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    strategy: Strategy,
    steps: Vec<Step>,
    replicas: u32,
    thresholds: Thresholds,
    policy: Policy,
}

impl Plan {
    /// Checks and builds a plan. Canary weights must rise strictly (a rollback never re-runs
    /// steps, and a step that lowers the weight would be one in disguise).
    pub fn new(
        strategy: Strategy,
        steps: Vec<Step>,
        replicas: u32,
        thresholds: Thresholds,
        policy: Policy,
    ) -> Result<Plan, PlanError> {
        check_steps(strategy, &steps)?;
        if replicas == 0 {
            return Err(PlanError::NoReplicas);
        }
        check_policy(&policy)?;
        Ok(Plan {
            strategy,
            steps,
            replicas,
            thresholds,
            policy,
        })
    }

    /// The plan for a service's manifest `rollout` block.
    pub fn from_manifest(
        rollout: &model::Rollout,
        replicas: u32,
        policy: Policy,
    ) -> Result<Plan, PlanError> {
        let strategy = match rollout.strategy {
            model::Strategy::Canary => Strategy::Canary,
            model::Strategy::BlueGreen => Strategy::BlueGreen,
            model::Strategy::Recreate => Strategy::Recreate,
        };
        let steps = rollout.steps.iter().map(step_from_manifest).collect();
        Plan::new(
            strategy,
            steps,
            replicas,
            thresholds_from_manifest(&rollout.analysis),
            policy_with_deadlines(policy, &rollout.deadlines),
        )
    }

    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    pub fn replicas(&self) -> u32 {
        self.replicas
    }

    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }
}

/// The manifest's `deadlines` override the given policy's, field by field.
fn policy_with_deadlines(mut policy: Policy, deadlines: &model::Deadlines) -> Policy {
    let set = |target: &mut Duration, value: Option<wharf_manifest::values::Duration>| {
        if let Some(value) = value {
            *target = value.as_std();
        }
    };
    set(&mut policy.ready_timeout, deadlines.ready);
    set(&mut policy.step_extension, deadlines.step_extension);
    set(&mut policy.preview_timeout, deadlines.preview);
    set(&mut policy.drain_timeout, deadlines.drain);
    if let Some(action) = deadlines.on_step_deadline {
        policy.on_step_deadline = match action {
            model::OnDeadline::Abort => DeadlineAction::Abort,
            model::OnDeadline::Pause => DeadlineAction::Pause,
        };
    }
    policy
}

fn step_from_manifest(step: &model::RolloutStep) -> Step {
    Step {
        weight: step.weight.get(),
        pause: step.pause.map_or(Duration::ZERO, |pause| pause.as_std()),
    }
}

fn thresholds_from_manifest(analysis: &model::Analysis) -> Thresholds {
    let millis = |d: wharf_manifest::values::Duration| d.as_std().as_secs_f64() * 1000.0;
    Thresholds {
        max_error_rate: analysis.max_error_rate.map(|p| p.fraction()),
        max_latency_p95_ms: analysis.max_latency_p95.map(millis),
        max_latency_p99_ms: analysis.max_latency_p99.map(millis),
        min_requests: analysis.min_requests,
    }
}

fn check_steps(strategy: Strategy, steps: &[Step]) -> Result<(), PlanError> {
    match strategy {
        Strategy::Canary if steps.is_empty() => return Err(PlanError::NoSteps),
        Strategy::Canary => {}
        other if !steps.is_empty() => return Err(PlanError::StepsNotAllowed(other)),
        _ => return Ok(()),
    }
    let mut previous = 0;
    for (index, step) in steps.iter().enumerate() {
        let weight = step.weight;
        if weight == 0 || weight > 100 {
            return Err(PlanError::WeightOutOfRange { index, weight });
        }
        if weight <= previous {
            return Err(PlanError::WeightNotIncreasing {
                index,
                weight,
                previous,
            });
        }
        previous = weight;
    }
    Ok(())
}

fn check_policy(policy: &Policy) -> Result<(), PlanError> {
    if !(policy.alpha > 0.0 && policy.alpha < 1.0) {
        return Err(PlanError::Alpha(policy.alpha));
    }
    if policy.latency_tolerance.is_nan() || policy.latency_tolerance < 0.0 {
        return Err(PlanError::LatencyTolerance(policy.latency_tolerance));
    }
    Ok(())
}
