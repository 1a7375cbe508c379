//! Shared helpers for the rollout tests: plans, windows of traffic, and action filters.
#![allow(dead_code)]

use std::time::Duration;

use wharf_rollout::{
    Action, At, Event, Milestone, Phase, Plan, Policy, Rollout, Step, Strategy, Thresholds,
    VersionCounters, Window,
};

pub const SECOND: u64 = 1000;

pub fn at(seconds: u64) -> At {
    At(seconds * SECOND)
}

pub fn thresholds(min_requests: u64) -> Thresholds {
    Thresholds {
        max_error_rate: Some(0.05),
        max_latency_p95_ms: Some(500.0),
        max_latency_p99_ms: None,
        min_requests,
    }
}

pub fn canary(steps: &[(u8, u64)], min_requests: u64, policy: Policy) -> Plan {
    let steps = steps
        .iter()
        .map(|&(weight, pause)| Step {
            weight,
            pause: Duration::from_secs(pause),
        })
        .collect();
    Plan::new(Strategy::Canary, steps, 3, thresholds(min_requests), policy).unwrap()
}

pub fn standard_canary() -> Plan {
    canary(&[(10, 30), (50, 60), (100, 30)], 50, Policy::default())
}

pub fn switch_plan(strategy: Strategy) -> Plan {
    Plan::new(strategy, Vec::new(), 2, thresholds(50), Policy::default()).unwrap()
}

/// One version's counters with a fixed latency.
pub fn counters(requests: u64, errors: u64, p95_ms: f64) -> VersionCounters {
    VersionCounters {
        requests,
        errors,
        p95_ms: Some(p95_ms),
        p99_ms: Some(p95_ms * 1.5),
    }
}

/// `total` requests in one second split by the current weight, with no errors.
pub fn clean_window(total: u64, new_weight: u8) -> Window {
    let new = total * u64::from(new_weight) / 100;
    Window {
        stable: counters(total - new, 0, 100.0),
        new: counters(new, 0, 100.0),
    }
}

/// The new version's weight in the current phase (0 outside steps).
pub fn current_weight(rollout: &Rollout) -> u8 {
    match rollout.phase() {
        Phase::Step(step) => step.weight,
        Phase::Paused { inner, .. } => match inner.as_ref() {
            Phase::Step(step) => step.weight,
            _ => 0,
        },
        Phase::Draining { .. } => 100,
        _ => 0,
    }
}

/// Feeds one clean second of traffic (stats, then a tick) at every second in `from..to`.
pub fn clean_traffic(rollout: &mut Rollout, from: u64, to: u64, rps: u64) -> Vec<Action> {
    let mut out = Vec::new();
    for second in from..to {
        let window = clean_window(rps, current_weight(rollout));
        out.extend(rollout.handle(Event::Stats {
            now: at(second),
            window,
        }));
        out.extend(rollout.handle(Event::Tick { now: at(second) }));
    }
    out
}

pub fn weights(actions: &[Action]) -> Vec<(u8, u8)> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::SetWeights { stable, new } => Some((*stable, *new)),
            _ => None,
        })
        .collect()
}

pub fn records(actions: &[Action]) -> Vec<Milestone> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Record { milestone, .. } => Some(*milestone),
            _ => None,
        })
        .collect()
}

/// The actions other than ledger records, for comparing sequences.
pub fn effects(actions: &[Action]) -> Vec<Action> {
    actions
        .iter()
        .filter(|a| !matches!(a, Action::Record { .. }))
        .cloned()
        .collect()
}
