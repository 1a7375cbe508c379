//! Seeded simulations of live traffic through the state machine: how fast a bad version is
//! aborted, how rarely a good one is, and whether a latency regression is caught.
//!
//! Every figure comes from a fixed ChaCha8 seed, so the numbers printed with
//! `cargo test -p wharf-rollout --test statistics -- --nocapture` are reproducible.

mod common;

use common::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wharf_rollout::{Event, Outcome, Phase, Plan, Policy, Rollout, VersionCounters, Window};

const RPS: u64 = 200;

/// How each version behaves in a simulation.
#[derive(Clone, Copy)]
struct Behaviour {
    stable_error: f64,
    new_error: f64,
    stable_p95_ms: f64,
    new_p95_ms: f64,
}

const GOOD: Behaviour = Behaviour {
    stable_error: 0.01,
    new_error: 0.01,
    stable_p95_ms: 100.0,
    new_p95_ms: 100.0,
};

/// What one simulated rollout did.
struct Run {
    outcome: Outcome,
    new_requests: u64,
    new_errors: u64,
}

/// A `Binomial(n, p)` draw by jumping from one success to the next with geometric gaps: the
/// cost grows with the number of errors, not of requests, which keeps debug-build tests fast.
fn binomial(rng: &mut ChaCha8Rng, n: u64, p: f64) -> u64 {
    if p <= 0.0 {
        return 0;
    }
    if p >= 1.0 {
        return n;
    }
    let (mut successes, mut position) = (0, 0u64);
    loop {
        let u: f64 = rng.r#gen();
        let gap = ((1.0 - u).ln() / (1.0 - p).ln()).floor();
        position = position.saturating_add(gap.min(u64::MAX as f64) as u64 + 1);
        if position > n {
            return successes;
        }
        successes += 1;
    }
}

fn sample_version(rng: &mut ChaCha8Rng, requests: u64, error: f64, p95: f64) -> VersionCounters {
    let errors = binomial(rng, requests, error);
    // Quantiles of a one-second window wobble by a few milliseconds.
    let p95 = p95 + rng.gen_range(-5.0..5.0);
    VersionCounters {
        requests,
        errors,
        p95_ms: Some(p95),
        p99_ms: Some(p95 * 1.3),
    }
}

/// One second of traffic: each request goes to the new version with probability `weight`.
fn sample_window(rng: &mut ChaCha8Rng, weight: u8, b: &Behaviour) -> Window {
    let new = binomial(rng, RPS, f64::from(weight) / 100.0);
    Window {
        stable: sample_version(rng, RPS - new, b.stable_error, b.stable_p95_ms),
        new: sample_version(rng, new, b.new_error, b.new_p95_ms),
    }
}

fn simulate(plan: Plan, behaviour: &Behaviour, seed: u64) -> Run {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rollout = Rollout::start(plan, at(0)).0;
    rollout.handle(Event::NewInstancesReady);
    let (mut new_requests, mut new_errors) = (0, 0);
    for second in 1..10_000 {
        match rollout.phase() {
            Phase::Draining { .. } | Phase::Aborting { .. } => {
                rollout.handle(Event::DrainDone);
            }
            _ => {}
        }
        if let Some(outcome) = rollout.outcome() {
            return Run {
                outcome,
                new_requests,
                new_errors,
            };
        }
        let window = sample_window(&mut rng, current_weight(&rollout), behaviour);
        new_requests += window.new.requests;
        new_errors += window.new.errors;
        rollout.handle(Event::Stats {
            now: at(second),
            window,
        });
        rollout.handle(Event::Tick { now: at(second) });
    }
    panic!("seed {seed}: the rollout never ended");
}

fn reason(run: &Run) -> &str {
    match &run.outcome {
        Outcome::RolledBack { reason } => reason,
        Outcome::Succeeded => "succeeded",
    }
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

fn plan_without_error_bound(steps: &[(u8, u64)]) -> Plan {
    let mut thresholds = thresholds(50);
    thresholds.max_error_rate = None;
    thresholds.max_latency_p95_ms = None;
    Plan::new(
        wharf_rollout::Strategy::Canary,
        canary(steps, 50, Policy::default()).steps().to_vec(),
        3,
        thresholds,
        Policy::default(),
    )
    .unwrap()
}

#[test]
fn a_version_with_20_percent_errors_is_aborted_within_a_few_dozen_requests() {
    let bad = Behaviour {
        stable_error: 0.001,
        new_error: 0.20,
        ..GOOD
    };
    let runs: Vec<Run> = (0..1000)
        .map(|seed| {
            simulate(
                plan_without_error_bound(&[(10, 60), (50, 60), (100, 30)]),
                &bad,
                seed,
            )
        })
        .collect();
    for run in &runs {
        assert!(
            reason(run).contains("above the stable version"),
            "{}",
            reason(run)
        );
    }
    let requests = median(runs.iter().map(|r| r.new_requests).collect());
    let errors = median(runs.iter().map(|r| r.new_errors).collect());
    let worst = runs.iter().map(|r| r.new_requests).max().unwrap();
    println!(
        "20% vs 0.1% at {RPS} req/s, 10% split: median {requests} new-version requests \
         ({errors} failed) to abort, worst {worst}, over 1000 seeds"
    );
    assert!(requests <= 60, "median {requests}");
    assert!(worst <= 200, "worst {worst}: still within the first step");
}

#[test]
fn equal_versions_are_rarely_aborted_a_over_a() {
    let plan = canary(&[(10, 120), (50, 120), (100, 30)], 50, Policy::default());
    let alpha = plan.policy().alpha;
    let rollouts = 500;
    let aborted: Vec<String> = (0..rollouts)
        .map(|seed| simulate(plan.clone(), &GOOD, 10_000 + seed))
        .filter(|run| run.outcome != Outcome::Succeeded)
        .map(|run| reason(&run).to_owned())
        .collect();
    let rate = aborted.len() as f64 / rollouts as f64;
    println!(
        "A/A, 1% errors both, {rollouts} rollouts of 270 looks: {} aborted ({rate:.4}), alpha {alpha}; {aborted:?}",
        aborted.len()
    );
    // Sampling slack: three binomial standard deviations at the bound.
    let slack = 3.0 * (alpha * (1.0 - alpha) / rollouts as f64).sqrt();
    assert!(rate <= alpha + slack, "false-abort rate {rate}");
}

#[test]
fn a_200ms_p95_regression_is_caught_in_the_first_step() {
    // No errors on either side, so only the latency rule can act.
    let slow = Behaviour {
        stable_error: 0.0,
        new_error: 0.0,
        new_p95_ms: GOOD.stable_p95_ms + 200.0,
        ..GOOD
    };
    let runs: Vec<Run> = (0..200)
        .map(|seed| {
            simulate(
                plan_without_error_bound(&[(10, 60), (100, 30)]),
                &slow,
                50_000 + seed,
            )
        })
        .collect();
    for run in &runs {
        assert!(reason(run).contains("p95"), "{}", reason(run));
        assert!(
            run.new_requests < 200,
            "caught at 10 %: {}",
            run.new_requests
        );
    }
    let requests = median(runs.iter().map(|r| r.new_requests).collect());
    println!("+200ms p95: median {requests} new-version requests to abort (min_requests 50)");
}

#[test]
fn the_absolute_error_bound_catches_a_version_that_stable_cannot_judge() {
    // At 100 % weight the stable version serves nothing; the bound still holds the line.
    let bad = Behaviour {
        stable_error: 0.0,
        new_error: 0.20,
        ..GOOD
    };
    let plan = canary(&[(100, 60)], 50, Policy::default());
    let run = simulate(plan, &bad, 7);
    assert!(reason(&run).contains("max_error_rate"), "{}", reason(&run));
    assert!(run.new_requests <= 400, "{}", run.new_requests);
}

#[test]
fn the_comparison_test_alone_stays_below_alpha_when_checked_after_every_window() {
    // The worst case for a test checked continually: long streams, many errors, every look.
    let (streams, windows, alpha) = (2000, 600, 0.01);
    let mut rejected = 0;
    for seed in 0..streams {
        let mut rng = ChaCha8Rng::seed_from_u64(90_000 + seed);
        let mut evidence = wharf_rollout::Evidence::new(None);
        let weight = [10, 25, 50][seed as usize % 3];
        let same = Behaviour {
            stable_error: 0.02,
            new_error: 0.02,
            ..GOOD
        };
        // A fixed split: the test conditions on the counts, so routing noise adds nothing.
        let new = RPS * weight / 100;
        for _ in 0..windows {
            let window = Window {
                stable: sample_version(&mut rng, RPS - new, same.stable_error, 100.0),
                new: sample_version(&mut rng, new, same.new_error, 100.0),
            };
            evidence.observe(&window);
            if evidence.comparison.rejects(alpha) {
                rejected += 1;
                break;
            }
        }
    }
    let rate = f64::from(rejected) / f64::from(streams as u32);
    println!(
        "comparison test alone, A/A at 2%: {rejected}/{streams} streams rejected over {windows} looks each (alpha {alpha})"
    );
    let slack = 3.0 * (alpha * (1.0 - alpha) / streams as f64).sqrt();
    assert!(rate <= alpha + slack, "{rate}");
}
