//! The verdict on a step's live traffic: pass, continue (need more data) or fail, with numbers.
//!
//! Order of checks, each stated so an operator can predict the outcome:
//! 1. **Error rate vs stable** — the anytime-valid comparison test ([`crate::Evidence`]) at
//!    `alpha / 2`. Evaluated after every window, so a clearly bad version fails mid-pause.
//! 2. **Error rate vs `max_error_rate`** — the anytime-valid one-sample test at `alpha / 2`;
//!    a zero bound fails on the first error.
//! 3. **Latency** (a simpler, fixed rule) — once the new version served `min_requests` requests
//!    in the step, and enough for the quantile to mean something (100 for p95, 500 for p99: five
//!    requests beyond it): fail if its pooled p95 / p99 exceed the manifest bounds, or if
//!    the stable version also served `min_requests` and the new p95 / p99 exceeds
//!    `stable × (1 + latency_tolerance) + latency_slack_ms`.
//! 4. **Minimum-sample guard** — fewer than `min_requests` new-version requests in the step, or
//!    too few to judge a quantile the manifest bounds: `Continue`, never a blind pass.
//! 5. **End of the step** (pause elapsed) — one fixed look: fail if the step's observed error
//!    rate exceeds `max_error_rate`, else pass. Before the pause ends: `Continue`.

use serde::Serialize;
use serde_json::{Value, json};

use crate::plan::{Policy, Thresholds};
use crate::sequential::Evidence;
use crate::stats::{StepTotals, VersionTotals};

/// The outcome of analysing a step so far.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    /// The step met every bound with enough traffic.
    Pass { numbers: Value },
    /// Not decided yet: the pause runs, or there is too little traffic.
    Continue { reason: String, numbers: Value },
    /// The new version is worse; roll back.
    Fail { reason: String, numbers: Value },
}

impl Verdict {
    pub fn numbers(&self) -> &Value {
        match self {
            Verdict::Pass { numbers }
            | Verdict::Continue { numbers, .. }
            | Verdict::Fail { numbers, .. } => numbers,
        }
    }
}

/// A verdict without its numbers: what the state machine checks after every sample, cheaply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    Pass,
    Continue(String),
    Fail(String),
}

/// Analyses the current step. `pause_over` says whether the step's pause has elapsed, the only
/// moment a step can pass.
pub fn evaluate(
    thresholds: &Thresholds,
    policy: &Policy,
    evidence: &Evidence,
    totals: &StepTotals,
    pause_over: bool,
) -> Verdict {
    let numbers = numbers(thresholds, policy, evidence, totals);
    match decide(thresholds, policy, evidence, totals, pause_over) {
        Decision::Pass => Verdict::Pass { numbers },
        Decision::Continue(reason) => Verdict::Continue { reason, numbers },
        Decision::Fail(reason) => Verdict::Fail { reason, numbers },
    }
}

pub(crate) fn decide(
    thresholds: &Thresholds,
    policy: &Policy,
    evidence: &Evidence,
    totals: &StepTotals,
    pause_over: bool,
) -> Decision {
    let min_requests = thresholds.min_requests.max(1);
    let reason = error_failure(policy, evidence)
        .or_else(|| latency_failure(thresholds, policy, totals, min_requests))
        .or_else(|| end_of_step_failure(thresholds, totals, pause_over, min_requests));
    if let Some(reason) = reason {
        return Decision::Fail(reason);
    }
    if totals.new.requests < min_requests {
        let seen = totals.new.requests;
        return Decision::Continue(format!(
            "{seen} of {min_requests} requests on the new version"
        ));
    }
    // A latency bound the manifest sets is never passed blindly: the step waits for enough
    // requests to judge the quantile. (The comparison with stable, always on, is simply not
    // made on fewer.)
    for (name, q, bound) in [
        ("p95", 0.95, thresholds.max_latency_p95_ms),
        ("p99", 0.99, thresholds.max_latency_p99_ms),
    ] {
        let needed = min_requests.max(samples_for(q));
        let seen = totals.new.latency_requests;
        if bound.is_some() && seen < needed {
            return Decision::Continue(format!(
                "{seen} of {needed} requests on the new version to judge its {name}"
            ));
        }
    }
    if !pause_over {
        return Decision::Continue("pause running".to_owned());
    }
    Decision::Pass
}

fn error_failure(policy: &Policy, evidence: &Evidence) -> Option<String> {
    let half = policy.alpha / 2.0;
    if evidence.comparison.rejects(half) {
        return Some(format!(
            "error rate above the stable version (sequential test, alpha {half})"
        ));
    }
    if evidence.errors_over_zero_bound > 0 {
        return Some("errors on the new version with max_error_rate 0%".to_owned());
    }
    if evidence.bound.is_some() && evidence.absolute.rejects(half) {
        return Some(format!(
            "error rate above max_error_rate (sequential test, alpha {half})"
        ));
    }
    None
}

fn latency_failure(
    thresholds: &Thresholds,
    policy: &Policy,
    totals: &StepTotals,
    min_requests: u64,
) -> Option<String> {
    let checks = [
        (
            "p95",
            0.95,
            totals.new.p95_ms(),
            totals.stable.p95_ms(),
            thresholds.max_latency_p95_ms,
        ),
        (
            "p99",
            0.99,
            totals.new.p99_ms(),
            totals.stable.p99_ms(),
            thresholds.max_latency_p99_ms,
        ),
    ];
    checks
        .into_iter()
        .find_map(|(name, q, new, stable, bound)| {
            // A quantile of a handful of requests is their maximum: one slow request (a cold
            // start, a scheduling hiccup) would fail the rollout. Judge a quantile only once it
            // rests on at least five requests beyond it.
            let needed = min_requests.max(samples_for(q));
            if totals.new.latency_requests < needed {
                return None;
            }
            let new = new?;
            let stable_enough = totals.stable.latency_requests >= needed;
            if let Some(bound) = bound.filter(|bound| new > *bound) {
                return Some(format!("{name} {new:.1}ms above the bound {bound:.1}ms"));
            }
            let stable = stable.filter(|_| stable_enough)?;
            let limit = stable * (1.0 + policy.latency_tolerance) + policy.latency_slack_ms;
            (new > limit).then(|| {
                format!("{name} {new:.1}ms above stable {stable:.1}ms (limit {limit:.1}ms)")
            })
        })
}

/// Requests needed for the `q` quantile to have five requests above it.
fn samples_for(q: f64) -> u64 {
    (5.0 / (1.0 - q)).ceil() as u64
}

fn end_of_step_failure(
    thresholds: &Thresholds,
    totals: &StepTotals,
    pause_over: bool,
    min_requests: u64,
) -> Option<String> {
    if !pause_over || totals.new.requests < min_requests {
        return None;
    }
    let bound = thresholds.max_error_rate?;
    let rate = totals.new.error_rate()?;
    (rate > bound).then(|| {
        format!("error rate {rate:.4} above max_error_rate {bound:.4} at the end of the step")
    })
}

fn version_numbers(totals: &VersionTotals) -> Value {
    json!({
        "requests": totals.requests,
        "errors": totals.errors,
        "error_rate": totals.error_rate(),
        "p95_ms": totals.p95_ms(),
        "p99_ms": totals.p99_ms(),
    })
}

/// The figures a verdict is based on, as recorded in the ledger.
pub(crate) fn numbers(
    thresholds: &Thresholds,
    policy: &Policy,
    evidence: &Evidence,
    totals: &StepTotals,
) -> Value {
    json!({
        "new": version_numbers(&totals.new),
        "stable": version_numbers(&totals.stable),
        "min_requests": thresholds.min_requests,
        "max_error_rate": thresholds.max_error_rate,
        "max_latency_p95_ms": thresholds.max_latency_p95_ms,
        "max_latency_p99_ms": thresholds.max_latency_p99_ms,
        "alpha": policy.alpha,
        "log_e_comparison": evidence.comparison.log_statistic(),
        "log_e_bound": evidence.absolute.log_statistic(),
        "log_e_threshold": (2.0 / policy.alpha).ln(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{VersionCounters, Window};

    fn thresholds() -> Thresholds {
        Thresholds {
            max_error_rate: Some(0.05),
            max_latency_p95_ms: Some(300.0),
            max_latency_p99_ms: None,
            min_requests: 50,
        }
    }

    fn counters(requests: u64, errors: u64, p95: f64) -> VersionCounters {
        VersionCounters {
            requests,
            errors,
            p95_ms: Some(p95),
            p99_ms: None,
        }
    }

    /// (case, new (requests, errors, p95), stable (requests, errors, p95), pause over, expected)
    #[test]
    fn verdicts_follow_the_documented_order() {
        let cases = [
            (
                "too few requests",
                (20, 0, 100.0),
                (180, 0, 100.0),
                true,
                "continue",
            ),
            (
                "pause running",
                (120, 0, 100.0),
                (1080, 0, 100.0),
                false,
                "continue",
            ),
            (
                "good at the end",
                (120, 0, 100.0),
                (1080, 0, 100.0),
                true,
                "pass",
            ),
            (
                "significant errors mid-pause",
                (20, 8, 100.0),
                (180, 0, 100.0),
                false,
                "fail",
            ),
            (
                "p95 above the bound",
                (120, 0, 350.0),
                (1080, 0, 100.0),
                false,
                "fail",
            ),
            (
                "p95 above stable",
                (120, 0, 250.0),
                (1080, 0, 100.0),
                false,
                "fail",
            ),
            (
                "p95 within tolerance",
                (120, 0, 125.0),
                (1080, 0, 100.0),
                true,
                "pass",
            ),
            (
                "slow but too few samples",
                (20, 0, 999.0),
                (180, 0, 100.0),
                false,
                "continue",
            ),
            (
                "a p95 bound is not judged on 60 requests: the step waits",
                (60, 0, 999.0),
                (540, 0, 100.0),
                true,
                "continue",
            ),
            (
                "observed rate over the bound at the end",
                (60, 4, 100.0),
                (540, 30, 100.0),
                true,
                "fail",
            ),
        ];
        for (case, new, stable, pause_over, expected) in cases {
            let window = Window {
                new: counters(new.0, new.1, new.2),
                stable: counters(stable.0, stable.1, stable.2),
            };
            let mut evidence = Evidence::new(Some(0.05));
            evidence.observe(&window);
            let mut totals = StepTotals::default();
            totals.add(&window);
            let verdict = evaluate(
                &thresholds(),
                &Policy::default(),
                &evidence,
                &totals,
                pause_over,
            );
            let kind = match &verdict {
                Verdict::Pass { .. } => "pass",
                Verdict::Continue { .. } => "continue",
                Verdict::Fail { .. } => "fail",
            };
            assert_eq!(kind, expected, "{case}: {verdict:?}");
            assert_eq!(verdict.numbers()["new"]["requests"], new.0, "{case}");
        }
    }
}
