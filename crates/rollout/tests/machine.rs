//! The rollout state machine driven by events: strategies, operator commands, aborts,
//! deadlines, low traffic and crash-resume.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use wharf_rollout::{
    Action, DeadlineAction, Event, Milestone, Outcome, Phase, Plan, PlanError, Policy, Rollout,
    Step, Strategy, Window,
};

fn started(plan: Plan) -> Rollout {
    Rollout::start(plan, at(0)).0
}

/// A canary whose new instances are ready and whose first step began at t = 0.
fn in_first_step() -> Rollout {
    let mut rollout = started(standard_canary());
    rollout.handle(Event::NewInstancesReady);
    rollout
}

#[test]
fn a_good_canary_walks_every_step_to_100_percent_and_drains_the_old_version() {
    let (mut rollout, first) = Rollout::start(standard_canary(), at(0));
    assert_eq!(
        effects(&first),
        vec![Action::StartNewInstances { count: 3 }]
    );
    assert_eq!(records(&first), vec![Milestone::Start]);

    let mut actions = rollout.handle(Event::NewInstancesReady);
    actions.extend(clean_traffic(&mut rollout, 1, 125, 200));
    assert!(
        matches!(rollout.phase(), Phase::Draining { .. }),
        "{:?}",
        rollout.phase()
    );
    assert_eq!(
        weights(&actions),
        vec![(90, 10), (50, 50), (0, 100), (0, 100)]
    );
    let steps = records(&actions)
        .iter()
        .filter(|r| **r == Milestone::Step)
        .count();
    assert_eq!(steps, 3);
    assert!(records(&actions).contains(&Milestone::Promote));
    assert!(
        !actions.contains(&Action::StopOldInstances),
        "old stops only after the drain"
    );

    let done = rollout.handle(Event::DrainDone);
    assert_eq!(
        effects(&done),
        vec![
            Action::StopOldInstances,
            Action::Done {
                outcome: Outcome::Succeeded
            }
        ]
    );
    assert_eq!(rollout.outcome(), Some(Outcome::Succeeded));
}

#[test]
fn every_step_verdict_records_the_numbers_it_was_based_on() {
    let mut rollout = in_first_step();
    let actions = clean_traffic(&mut rollout, 1, 40, 200);
    let verdict = actions
        .iter()
        .find_map(|a| match a {
            Action::Record {
                milestone: Milestone::Verdict,
                details,
            } => Some(details.clone()),
            _ => None,
        })
        .expect("a verdict at the end of step 0");
    assert_eq!(verdict["verdict"], "pass");
    assert_eq!(verdict["numbers"]["new"]["requests"], Value::from(30 * 20));
    assert_eq!(verdict["numbers"]["stable"]["errors"], Value::from(0));
    assert!(verdict["numbers"]["log_e_threshold"].as_f64().unwrap() > 5.0);
}

#[test]
fn blue_green_previews_then_switches_at_once() {
    let mut rollout = started(switch_plan(Strategy::BlueGreen));
    let preview = rollout.handle(Event::NewInstancesReady);
    assert_eq!(effects(&preview), vec![Action::SetPreview]);
    assert!(matches!(rollout.phase(), Phase::Preview { .. }));
    rollout.handle(Event::Tick { now: at(600) });
    assert!(
        matches!(rollout.phase(), Phase::Preview { .. }),
        "waits for promote"
    );

    let switch = rollout.handle(Event::Promote);
    assert_eq!(effects(&switch), vec![Action::Switch]);
    let done = rollout.handle(Event::DrainDone);
    assert_eq!(
        effects(&done),
        vec![
            Action::StopOldInstances,
            Action::Done {
                outcome: Outcome::Succeeded
            }
        ]
    );
}

#[test]
fn recreate_stops_the_old_version_before_starting_the_new_one() {
    let (mut rollout, first) = Rollout::start(switch_plan(Strategy::Recreate), at(0));
    assert_eq!(effects(&first), vec![Action::StopOldInstances]);
    assert_eq!(
        effects(&rollout.handle(Event::DrainDone)),
        vec![Action::StartNewInstances { count: 2 }]
    );
    let ready = rollout.handle(Event::NewInstancesReady);
    assert_eq!(
        effects(&ready),
        vec![
            Action::SetWeights {
                stable: 0,
                new: 100
            },
            Action::Done {
                outcome: Outcome::Succeeded
            }
        ]
    );
}

#[test]
fn recreate_rollback_starts_the_stable_version_again() {
    let mut rollout = started(switch_plan(Strategy::Recreate));
    rollout.handle(Event::DrainDone);
    let abort = rollout.handle(Event::NewInstancesFailed {
        reason: "exit 1".into(),
    });
    assert_eq!(
        effects(&abort),
        vec![
            Action::SetWeights {
                stable: 100,
                new: 0
            },
            Action::StartStableInstances { count: 2 }
        ]
    );
}

#[test]
fn pause_holds_the_step_resume_restarts_its_pause_and_promote_skips_the_rest() {
    let mut rollout = in_first_step();
    clean_traffic(&mut rollout, 1, 10, 200);
    rollout.handle(Event::Pause);
    let held = clean_traffic(&mut rollout, 10, 100, 200);
    assert!(weights(&held).is_empty(), "a paused step never advances");
    assert!(matches!(rollout.phase(), Phase::Paused { .. }));

    rollout.handle(Event::Resume);
    let resumed = clean_traffic(&mut rollout, 100, 129, 200);
    assert!(
        weights(&resumed).is_empty(),
        "the pause starts again on resume"
    );
    let next = clean_traffic(&mut rollout, 129, 132, 200);
    assert_eq!(weights(&next), vec![(50, 50)]);

    let promote = rollout.handle(Event::Promote);
    assert_eq!(weights(&promote), vec![(0, 100)]);
    let Some(Action::Record { details, .. }) = promote.iter().find(|a| {
        matches!(
            a,
            Action::Record {
                milestone: Milestone::Promote,
                ..
            }
        )
    }) else {
        panic!("promote is recorded")
    };
    assert_eq!(details["skipped_steps"], 1);
    assert!(matches!(rollout.phase(), Phase::Draining { .. }));
}

#[test]
fn promote_while_paused_promotes() {
    let mut rollout = in_first_step();
    rollout.handle(Event::Pause);
    assert_eq!(weights(&rollout.handle(Event::Promote)), vec![(0, 100)]);
}

#[test]
fn commands_that_do_not_apply_are_recorded_and_change_nothing() {
    let mut rollout = started(standard_canary());
    let before = rollout.clone();
    for event in [Event::Pause, Event::Resume, Event::Promote] {
        let actions = rollout.handle(event);
        assert_eq!(records(&actions), vec![Milestone::Ignored]);
        assert!(effects(&actions).is_empty());
    }
    assert_eq!(rollout, before);
}

/// Every non-terminal state, each reached by events from the start.
fn every_active_state() -> Vec<(&'static str, Rollout)> {
    let mut states = Vec::new();
    let recreate = started(switch_plan(Strategy::Recreate));
    states.push(("stopping-old", recreate));
    states.push(("waiting-ready", started(standard_canary())));
    states.push(("step 0", in_first_step()));
    let mut step1 = in_first_step();
    clean_traffic(&mut step1, 1, 35, 200);
    states.push(("step 1", step1.clone()));
    let mut step2 = step1.clone();
    clean_traffic(&mut step2, 35, 100, 200);
    assert!(matches!(step2.phase(), Phase::Step(s) if s.index == 2));
    states.push(("step 2 at 100%", step2.clone()));
    let mut paused = step1.clone();
    paused.handle(Event::Pause);
    states.push(("paused step", paused));
    let mut preview = started(switch_plan(Strategy::BlueGreen));
    preview.handle(Event::NewInstancesReady);
    states.push(("preview", preview.clone()));
    preview.handle(Event::Pause);
    states.push(("paused preview", preview.clone()));
    let mut draining = step2;
    clean_traffic(&mut draining, 100, 140, 200);
    assert!(matches!(draining.phase(), Phase::Draining { .. }));
    states.push(("draining", draining));
    states
}

#[test]
fn abort_from_every_state_sets_stable_weights_at_once_and_never_reruns_steps() {
    for (name, mut rollout) in every_active_state() {
        // Time 0 never moves the clock back: later events land at the abort's own time.
        let now = at(0);
        let abort = rollout.handle(Event::Abort {
            reason: "operator".into(),
        });
        assert_eq!(
            weights(&abort),
            vec![(100, 0)],
            "{name}: one SetWeights in the same step"
        );
        let Some(Action::SetWeights { .. }) = effects(&abort).first().cloned() else {
            panic!("{name}: stable weights come first");
        };
        assert!(matches!(rollout.phase(), Phase::Aborting { .. }), "{name}");

        // Nothing afterwards moves traffic back to the new version or re-runs a step.
        let mut later = rollout.handle(Event::Abort {
            reason: "again".into(),
        });
        for _ in 0..5 {
            let window = clean_window(200, 50);
            later.extend(rollout.handle(Event::Stats { now, window }));
            later.extend(rollout.handle(Event::Tick { now }));
        }
        for event in [Event::NewInstancesReady, Event::Promote, Event::Resume] {
            later.extend(rollout.handle(event));
        }
        assert!(weights(&later).is_empty(), "{name}: {later:?}");
        assert!(!records(&later).contains(&Milestone::Step), "{name}");

        let done = rollout.handle(Event::DrainDone);
        assert_eq!(effects(&done)[0], Action::StopNewInstances, "{name}");
        assert!(
            matches!(rollout.outcome(), Some(Outcome::RolledBack { .. })),
            "{name}"
        );
        assert!(
            rollout
                .handle(Event::Abort {
                    reason: "late".into()
                })
                .is_empty()
        );
    }
}

#[test]
fn deadlines_act_in_every_phase() {
    let policy = Policy::default();
    let cases: Vec<(&str, Rollout, Duration, bool)> = vec![
        (
            "waiting-ready",
            started(standard_canary()),
            policy.ready_timeout,
            false,
        ),
        (
            "preview",
            every_active_state().remove(6).1,
            policy.preview_timeout,
            false,
        ),
        (
            "paused preview",
            every_active_state().remove(7).1,
            policy.pause_timeout,
            false,
        ),
        (
            "draining",
            every_active_state().remove(8).1,
            policy.drain_timeout,
            true,
        ),
        (
            "stopping-old",
            started(switch_plan(Strategy::Recreate)),
            policy.drain_timeout,
            false,
        ),
    ];
    for (name, mut rollout, timeout, succeeds) in cases {
        let deadline = rollout.next_deadline().unwrap();
        assert!(deadline.0 >= timeout.as_millis() as u64, "{name}");
        let before = rollout.handle(Event::Tick {
            now: wharf_rollout::At(deadline.0 - 1),
        });
        assert!(!records(&before).contains(&Milestone::Deadline), "{name}");
        let after = rollout.handle(Event::Tick { now: deadline });
        assert!(
            records(&after).contains(&Milestone::Deadline),
            "{name}: {after:?}"
        );
        match name {
            "stopping-old" => assert_eq!(
                effects(&after),
                vec![Action::StartNewInstances { count: 2 }]
            ),
            _ if succeeds => assert_eq!(rollout.outcome(), Some(Outcome::Succeeded), "{name}"),
            _ => assert_eq!(weights(&after), vec![(100, 0)], "{name} aborts"),
        }
    }
}

#[test]
fn the_rollback_drain_has_a_deadline_too() {
    let mut rollout = in_first_step();
    rollout.handle(Event::Abort {
        reason: "operator".into(),
    });
    let deadline = rollout.next_deadline().unwrap();
    let done = rollout.handle(Event::Tick { now: deadline });
    assert_eq!(effects(&done)[0], Action::StopNewInstances);
    assert!(matches!(
        rollout.outcome(),
        Some(Outcome::RolledBack { .. })
    ));
}

#[test]
fn missing_stats_during_a_step_roll_back() {
    let mut rollout = in_first_step();
    clean_traffic(&mut rollout, 1, 10, 200);
    let quiet = rollout.handle(Event::Tick { now: at(40) });
    assert_eq!(weights(&quiet), vec![(100, 0)]);
    assert!(matches!(rollout.phase(), Phase::Aborting { reason, .. } if reason.contains("stats")));
}

fn low_traffic_policy(on_step_deadline: DeadlineAction) -> Policy {
    Policy {
        step_extension: Duration::from_secs(60),
        on_step_deadline,
        ..Policy::default()
    }
}

#[test]
fn low_traffic_extends_the_step_then_the_deadline_aborts() {
    let plan = canary(
        &[(10, 30), (100, 30)],
        100,
        low_traffic_policy(DeadlineAction::Abort),
    );
    let mut rollout = started(plan);
    rollout.handle(Event::NewInstancesReady);
    // 10 requests a second, 1 to the new version: 30 by the end of the pause, 90 by the deadline.
    let during = clean_traffic(&mut rollout, 1, 90, 10);
    assert!(weights(&during).is_empty(), "never passed blindly");
    let extended = records(&during)
        .iter()
        .filter(|r| **r == Milestone::Verdict)
        .count();
    assert_eq!(extended, 1, "the extension is recorded once");
    assert!(matches!(rollout.phase(), Phase::Step(s) if s.extended));

    let deadline = clean_traffic(&mut rollout, 90, 91, 10);
    assert!(records(&deadline).contains(&Milestone::Deadline));
    assert_eq!(weights(&deadline), vec![(100, 0)]);
}

#[test]
fn low_traffic_deadline_pauses_when_the_policy_says_so() {
    let plan = canary(
        &[(10, 30), (100, 30)],
        100,
        low_traffic_policy(DeadlineAction::Pause),
    );
    let mut rollout = started(plan);
    rollout.handle(Event::NewInstancesReady);
    let actions = clean_traffic(&mut rollout, 1, 91, 10);
    assert!(records(&actions).contains(&Milestone::Deadline));
    assert!(
        matches!(rollout.phase(), Phase::Paused { inner, .. } if matches!(**inner, Phase::Step(_)))
    );
    assert!(weights(&actions).is_empty());
}

#[test]
fn an_extended_step_passes_once_traffic_reaches_min_requests() {
    let plan = canary(
        &[(10, 30), (100, 30)],
        50,
        low_traffic_policy(DeadlineAction::Abort),
    );
    let mut rollout = started(plan);
    rollout.handle(Event::NewInstancesReady);
    // 2 new-version requests a second: min_requests (50) is reached at second 25, inside the
    // pause; but the manifest's p95 bound needs 100 (five beyond the p95): second 50.
    let actions = clean_traffic(&mut rollout, 1, 45, 20);
    assert_eq!(
        weights(&actions),
        vec![],
        "extended: 90 requests cannot judge a p95"
    );
    let actions = clean_traffic(&mut rollout, 45, 60, 20);
    assert_eq!(
        weights(&actions),
        vec![(0, 100)],
        "passed once 100 requests were seen"
    );
}

#[test]
fn a_resumed_rollout_continues_from_its_serialized_state() {
    let mut rollout = in_first_step();
    clean_traffic(&mut rollout, 1, 35, 200);
    let saved = serde_json::to_string(&rollout).unwrap();

    let mut restored: Rollout = serde_json::from_str(&saved).unwrap();
    assert_eq!(restored, rollout);
    let resumed = restored.resume(at(40));
    assert_eq!(
        effects(&resumed),
        vec![Action::SetWeights {
            stable: 50,
            new: 50
        }]
    );
    assert!(
        matches!(restored.phase(), Phase::Step(s) if s.index == 1),
        "no step re-run"
    );
    clean_traffic(&mut restored, 40, 140, 200);
    restored.handle(Event::DrainDone);
    assert_eq!(restored.outcome(), Some(Outcome::Succeeded));
}

#[test]
fn a_resumed_rollout_with_stale_stats_rolls_back() {
    let mut rollout = in_first_step();
    clean_traffic(&mut rollout, 1, 35, 200);
    let saved = serde_json::to_value(&rollout).unwrap();
    let mut restored: Rollout = serde_json::from_value(saved).unwrap();
    let resumed = restored.resume(at(600));
    assert_eq!(
        effects(&resumed),
        vec![Action::SetWeights {
            stable: 100,
            new: 0
        }]
    );
    assert!(matches!(restored.phase(), Phase::Aborting { reason, .. } if reason.contains("stale")));
}

#[test]
fn resume_reapplies_the_route_of_every_phase() {
    for (name, rollout) in every_active_state() {
        let mut restored: Rollout =
            serde_json::from_str(&serde_json::to_string(&rollout).unwrap()).unwrap();
        let now = rollout
            .next_deadline()
            .map_or(at(0), |d| wharf_rollout::At(d.0 - 1));
        let actions = restored.resume(now);
        assert_eq!(records(&actions)[0], Milestone::Resume, "{name}");
        assert!(
            !records(&actions).contains(&Milestone::Step),
            "{name}: no step re-run"
        );
    }
}

#[test]
fn a_failed_new_instance_aborts() {
    let mut rollout = started(standard_canary());
    let actions = rollout.handle(Event::NewInstancesFailed {
        reason: "exit 1".into(),
    });
    assert_eq!(weights(&actions), vec![(100, 0)]);
}

#[test]
fn a_bad_step_fails_mid_pause_with_its_numbers() {
    let mut rollout = in_first_step();
    let window = Window {
        stable: counters(180, 0, 100.0),
        new: counters(20, 10, 100.0),
    };
    let actions = rollout.handle(Event::Stats { now: at(1), window });
    let Some(Action::Record { details, .. }) = actions.iter().find(|a| {
        matches!(
            a,
            Action::Record {
                milestone: Milestone::Rollback,
                ..
            }
        )
    }) else {
        panic!("{actions:?}")
    };
    assert_eq!(details["numbers"]["new"]["errors"], 10);
    assert_eq!(weights(&actions), vec![(100, 0)]);
}

#[test]
fn invalid_plans_are_refused() {
    let step = |weight| Step {
        weight,
        pause: Duration::ZERO,
    };
    let plan = |strategy, steps| {
        Plan::new(strategy, steps, 1, thresholds(1), Policy::default()).unwrap_err()
    };
    assert_eq!(plan(Strategy::Canary, vec![]), PlanError::NoSteps);
    assert_eq!(
        plan(Strategy::Canary, vec![step(50), step(20)]),
        PlanError::WeightNotIncreasing {
            index: 1,
            weight: 20,
            previous: 50
        }
    );
    assert_eq!(
        plan(Strategy::Canary, vec![step(0)]),
        PlanError::WeightOutOfRange {
            index: 0,
            weight: 0
        }
    );
    assert_eq!(
        plan(Strategy::BlueGreen, vec![step(10)]),
        PlanError::StepsNotAllowed(Strategy::BlueGreen)
    );
    let bad_alpha = Policy {
        alpha: 0.0,
        ..Policy::default()
    };
    let error = Plan::new(Strategy::Recreate, vec![], 1, thresholds(1), bad_alpha).unwrap_err();
    assert_eq!(
        error.to_string(),
        "alpha 0 must lie strictly between 0 and 1"
    );
}

#[test]
fn a_plan_comes_from_the_manifest_rollout() {
    use wharf_manifest::model;
    use wharf_manifest::values::{Duration as ManifestDuration, Weight};
    let rollout = model::Rollout {
        strategy: model::Strategy::Canary,
        steps: vec![
            model::RolloutStep {
                weight: Weight::new(10).unwrap(),
                pause: Some(ManifestDuration::from_secs(30)),
            },
            model::RolloutStep {
                weight: Weight::FULL,
                pause: None,
            },
        ],
        analysis: model::Analysis {
            max_error_rate: Some("1%".parse().unwrap()),
            max_latency_p95: Some(ManifestDuration::from_millis(300)),
            max_latency_p99: None,
            min_requests: 50,
        },
        deadlines: model::Deadlines {
            step_extension: Some(ManifestDuration::from_secs(7)),
            on_step_deadline: Some(model::OnDeadline::Pause),
            ..model::Deadlines::default()
        },
    };
    let plan = Plan::from_manifest(&rollout, 2, Policy::default()).unwrap();
    assert_eq!(
        plan.steps()[0],
        Step {
            weight: 10,
            pause: Duration::from_secs(30)
        }
    );
    assert_eq!(plan.steps()[1].pause, Duration::ZERO);
    assert_eq!(plan.thresholds().max_error_rate, Some(0.01));
    assert_eq!(plan.thresholds().max_latency_p95_ms, Some(300.0));
    assert_eq!(plan.policy().step_extension, Duration::from_secs(7));
    assert_eq!(plan.policy().on_step_deadline, DeadlineAction::Pause);
    assert_eq!(plan.policy().ready_timeout, Policy::default().ready_timeout);
}

/// The persisted shape is a contract with the state store: a change here breaks resuming the
/// rollouts in flight during an upgrade, so it shows up in review as a snapshot diff.
#[test]
fn the_persisted_state_keeps_its_shape() {
    let mut rollout = in_first_step();
    let window = Window {
        stable: counters(180, 1, 100.0),
        new: counters(20, 1, 110.0),
    };
    rollout.handle(Event::Stats { now: at(1), window });
    insta::assert_json_snapshot!(rollout);
}
