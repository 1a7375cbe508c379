//! The rollout state machine: one rollout of one service, events in, actions out.
//!
//! Every transition happens in [`Rollout::handle`] (or [`Rollout::resume`]) and emits a
//! `Record` action with the numbers it was based on, so the ledger tells why the rollout did
//! what it did. The machine never reads a clock: `Tick` and `Stats` carry the time, and events
//! without one are stamped with the latest time seen (the control plane ticks every second).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::analysis::{Decision, decide, numbers};
use crate::milestone::Milestone;
use crate::plan::{DeadlineAction, Plan, Strategy};
use crate::sequential::Evidence;
use crate::stats::{StepTotals, Window};
use crate::time::At;

/// What the control plane tells a rollout. A closed set (STYLE rule 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// Time passes: deadlines and pauses are checked.
    Tick { now: At },
    /// All `count` new instances are ready.
    NewInstancesReady,
    /// A new instance failed to start or became unready for good.
    NewInstancesFailed { reason: String },
    /// Per-version counters over the interval since the previous `Stats`.
    Stats { now: At, window: Window },
    /// Hold the current step or preview (operator).
    Pause,
    /// Continue after a pause; the step's pause starts again, its totals are kept.
    Resume,
    /// Skip the remaining steps: all traffic to the new version (operator).
    Promote,
    /// Roll back now, from any state (operator or another part of the control plane).
    Abort { reason: String },
    /// The version that lost its traffic has no requests in flight any more.
    DrainDone,
}

impl Event {
    fn time(&self) -> Option<At> {
        match self {
            Event::Tick { now } | Event::Stats { now, .. } => Some(*now),
            _ => None,
        }
    }
}

/// What the control plane must do, in the order given.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    StartNewInstances {
        count: u32,
    },
    /// Recreate only: the old instances were stopped before the rollback, start them again.
    StartStableInstances {
        count: u32,
    },
    /// Route weights in percent; they always sum to 100.
    SetWeights {
        stable: u8,
        new: u8,
    },
    /// Blue-green: route the preview address to the new version (live traffic stays stable).
    SetPreview,
    /// Blue-green: all live traffic to the new version in one route-table update.
    Switch,
    StopOldInstances,
    /// Also removes the preview route, if any.
    StopNewInstances,
    /// Append to the ledger: a milestone (`deploy.start`, `deploy.step`, `deploy.verdict`,
    /// `deploy.rollback`…) with the numbers it was based on.
    Record {
        milestone: Milestone,
        details: Value,
    },
    /// The rollout is over; no further action will follow.
    Done {
        outcome: Outcome,
    },
}

/// How a rollout ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    Succeeded,
    RolledBack { reason: String },
}

/// A canary step in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepState {
    pub index: usize,
    pub weight: u8,
    /// When the step began (or resumed after a pause).
    pub since: At,
    pub totals: StepTotals,
    /// The pause is over but the step lacks traffic and runs until its deadline.
    pub extended: bool,
}

/// Where a rollout is. Each non-terminal phase has a deadline ([`Rollout::next_deadline`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "kebab-case")]
pub enum Phase {
    /// Recreate: old instances are stopping before the new ones start.
    StoppingOld {
        since: At,
    },
    WaitingReady {
        since: At,
    },
    Step(StepState),
    /// Blue-green: the new version is on the preview route, waiting for `Promote`.
    Preview {
        since: At,
    },
    /// All traffic is on the new version; the old one finishes its requests in flight.
    Draining {
        since: At,
    },
    Paused {
        inner: Box<Phase>,
        since: At,
    },
    /// Traffic is back on stable; the new version finishes its requests in flight.
    Aborting {
        since: At,
        reason: String,
    },
    Succeeded,
    RolledBack {
        reason: String,
    },
}

impl Phase {
    /// The phase's name as it is serialized (`step`, `aborting`…).
    pub fn name(&self) -> &'static str {
        match self {
            Phase::StoppingOld { .. } => "stopping-old",
            Phase::WaitingReady { .. } => "waiting-ready",
            Phase::Step(_) => "step",
            Phase::Preview { .. } => "preview",
            Phase::Draining { .. } => "draining",
            Phase::Paused { .. } => "paused",
            Phase::Aborting { .. } => "aborting",
            Phase::Succeeded => "succeeded",
            Phase::RolledBack { .. } => "rolled-back",
        }
    }
}

/// One rollout: the plan, where it is, and the evidence so far. Persist it after every call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    plan: Plan,
    phase: Phase,
    evidence: Evidence,
    /// The latest time seen; stamps events that carry none.
    clock: At,
    last_stats: Option<At>,
    /// Recreate stops the old version first, so a rollback must start it again.
    old_stopped: bool,
}

fn record(out: &mut Vec<Action>, milestone: Milestone, details: Value) {
    out.push(Action::Record { milestone, details });
}

impl Rollout {
    /// Starts a rollout: the first actions are to stop the old instances (recreate) or start
    /// the new ones (canary, blue-green).
    pub fn start(plan: Plan, now: At) -> (Rollout, Vec<Action>) {
        let evidence = Evidence::new(plan.thresholds().max_error_rate);
        let recreate = plan.strategy() == Strategy::Recreate;
        let mut rollout = Rollout {
            phase: Phase::WaitingReady { since: now },
            plan,
            evidence,
            clock: now,
            last_stats: None,
            old_stopped: recreate,
        };
        let mut out = Vec::new();
        let details = json!({
            "strategy": rollout.plan.strategy(),
            "steps": rollout.plan.steps(),
            "replicas": rollout.plan.replicas(),
            "thresholds": rollout.plan.thresholds(),
        });
        record(&mut out, Milestone::Start, details);
        if recreate {
            out.push(Action::StopOldInstances);
            rollout.phase = Phase::StoppingOld { since: now };
        } else {
            rollout.start_new(&mut out);
        }
        (rollout, out)
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn evidence(&self) -> &Evidence {
        &self.evidence
    }

    /// The outcome once the rollout is over.
    pub fn outcome(&self) -> Option<Outcome> {
        match &self.phase {
            Phase::Succeeded => Some(Outcome::Succeeded),
            Phase::RolledBack { reason } => Some(Outcome::RolledBack {
                reason: reason.clone(),
            }),
            _ => None,
        }
    }

    pub fn is_done(&self) -> bool {
        self.outcome().is_some()
    }

    /// Feeds one event; returns the actions to carry out, in order. Events after the end are
    /// ignored.
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        if let Some(now) = event.time() {
            self.clock = self.clock.max(now);
        }
        let mut out = Vec::new();
        if self.is_done() {
            return out;
        }
        match event {
            Event::Abort { reason } => self.abort(reason, json!({"by": "request"}), &mut out),
            Event::Tick { .. } => self.on_tick(&mut out),
            Event::Stats { window, .. } => self.on_stats(&window, &mut out),
            Event::NewInstancesReady => self.on_ready(&mut out),
            Event::NewInstancesFailed { reason } => self.on_failed(reason, &mut out),
            Event::Pause => self.on_pause(&mut out),
            Event::Resume => self.on_resume(&mut out),
            Event::Promote => self.on_promote(&mut out),
            Event::DrainDone => self.on_drain_done(&mut out),
        }
        out
    }

    /// Continues a persisted rollout after the control plane restarted: re-applies the route
    /// the phase expects (the proxy may have lost it) and checks deadlines at `now`. A traffic
    /// phase whose last stats are older than `stats_stale_after` cannot be judged, so it rolls
    /// back (DESIGN "Fail safe").
    pub fn resume(&mut self, now: At) -> Vec<Action> {
        self.clock = self.clock.max(now);
        let mut out = Vec::new();
        if self.is_done() {
            return out;
        }
        record(
            &mut out,
            Milestone::Resume,
            json!({"phase": self.phase.name(), "now": now}),
        );
        if self.observing_step().is_some() && self.stats_stale() {
            let details = json!({"last_stats": self.last_stats, "now": now});
            self.abort(
                "resumed with stale stats: cannot decide".to_owned(),
                details,
                &mut out,
            );
            return out;
        }
        self.reapply_routes(&mut out);
        self.on_tick(&mut out);
        out
    }

    /// When the next deadline of the current phase falls, so the control plane can tick then.
    pub fn next_deadline(&self) -> Option<At> {
        let policy = self.plan.policy();
        match &self.phase {
            Phase::StoppingOld { since } | Phase::Draining { since } => {
                Some(since.plus(policy.drain_timeout))
            }
            Phase::Aborting { since, .. } => Some(since.plus(policy.drain_timeout)),
            Phase::WaitingReady { since } => Some(since.plus(policy.ready_timeout)),
            Phase::Step(step) => Some(self.step_deadline(step)),
            Phase::Preview { since } => Some(since.plus(policy.preview_timeout)),
            Phase::Paused { since, .. } => Some(since.plus(policy.pause_timeout)),
            Phase::Succeeded | Phase::RolledBack { .. } => None,
        }
    }

    fn step_deadline(&self, step: &StepState) -> At {
        let pause = self.plan.steps()[step.index].pause;
        step.since
            .plus(pause)
            .plus(self.plan.policy().step_extension)
    }

    fn deadline_passed(&self) -> bool {
        self.next_deadline()
            .is_some_and(|deadline| self.clock >= deadline)
    }

    fn start_new(&mut self, out: &mut Vec<Action>) {
        out.push(Action::StartNewInstances {
            count: self.plan.replicas(),
        });
        self.phase = Phase::WaitingReady { since: self.clock };
    }

    fn on_ready(&mut self, out: &mut Vec<Action>) {
        if !matches!(self.phase, Phase::WaitingReady { .. }) {
            return;
        }
        record(
            out,
            Milestone::Ready,
            json!({"replicas": self.plan.replicas()}),
        );
        match self.plan.strategy() {
            Strategy::Canary => self.enter_step(0, Value::Null, out),
            Strategy::BlueGreen => {
                out.push(Action::SetPreview);
                record(out, Milestone::Preview, json!({}));
                self.phase = Phase::Preview { since: self.clock };
            }
            Strategy::Recreate => {
                out.push(Action::SetWeights {
                    stable: 0,
                    new: 100,
                });
                record(out, Milestone::Switch, json!({"stable": 0, "new": 100}));
                self.succeed(json!({}), out);
            }
        }
    }

    fn on_failed(&mut self, reason: String, out: &mut Vec<Action>) {
        if matches!(self.phase, Phase::Aborting { .. }) {
            return;
        }
        let details = json!({"phase": self.phase.name()});
        self.abort(format!("new instances failed: {reason}"), details, out);
    }

    fn enter_step(&mut self, index: usize, previous: Value, out: &mut Vec<Action>) {
        let step = self.plan.steps()[index];
        out.push(Action::SetWeights {
            stable: 100 - step.weight,
            new: step.weight,
        });
        let details = json!({
            "index": index,
            "weight": step.weight,
            "pause_ms": step.pause.as_millis() as u64,
            "previous_verdict": previous,
        });
        record(out, Milestone::Step, details);
        self.phase = Phase::Step(StepState {
            index,
            weight: step.weight,
            since: self.clock,
            totals: StepTotals::default(),
            extended: false,
        });
    }

    /// The step whose traffic is being analysed, paused or not.
    fn observing_step(&self) -> Option<(&StepState, bool)> {
        match &self.phase {
            Phase::Step(step) => Some((step, false)),
            Phase::Paused { inner, .. } => match inner.as_ref() {
                Phase::Step(step) => Some((step, true)),
                _ => None,
            },
            _ => None,
        }
    }

    fn observing_step_mut(&mut self) -> Option<&mut StepState> {
        match &mut self.phase {
            Phase::Step(step) => Some(step),
            Phase::Paused { inner, .. } => match inner.as_mut() {
                Phase::Step(step) => Some(step),
                _ => None,
            },
            _ => None,
        }
    }

    fn on_stats(&mut self, window: &Window, out: &mut Vec<Action>) {
        self.last_stats = Some(self.clock);
        let Some(step) = self.observing_step_mut() else {
            return;
        };
        step.totals.add(window);
        self.evidence.observe(window);
        self.assess(out);
    }

    /// Runs the analysis of the current step and acts on the verdict. A paused step can still
    /// fail (its traffic keeps flowing) but never passes.
    fn assess(&mut self, out: &mut Vec<Action>) {
        let Some((step, paused)) = self.observing_step() else {
            return;
        };
        let step = step.clone();
        let pause = self.plan.steps()[step.index].pause;
        let pause_over = !paused && self.clock >= step.since.plus(pause);
        let plan = &self.plan;
        let (thresholds, policy) = (plan.thresholds(), plan.policy());
        let decision = decide(thresholds, policy, &self.evidence, &step.totals, pause_over);
        if matches!(decision, Decision::Continue(_)) && !pause_over {
            // The common case, once per sample: nothing to record.
            return;
        }
        let numbers = numbers(thresholds, policy, &self.evidence, &step.totals);
        match decision {
            Decision::Fail(reason) => {
                let details = json!({"verdict": "fail", "step": step.index, "reason": reason, "numbers": numbers});
                record(out, Milestone::Verdict, details);
                self.abort(format!("step {}: {reason}", step.index), numbers, out);
            }
            _ if paused => {}
            Decision::Pass => {
                let details = json!({"verdict": "pass", "step": step.index, "numbers": numbers});
                record(out, Milestone::Verdict, details);
                self.advance(step.index, numbers, out);
            }
            Decision::Continue(reason) => self.extend_or_expire(&step, reason, numbers, out),
        }
    }

    fn advance(&mut self, index: usize, numbers: Value, out: &mut Vec<Action>) {
        if index + 1 < self.plan.steps().len() {
            self.enter_step(index + 1, numbers, out);
        } else {
            self.promote_canary(json!({"by": "analysis", "numbers": numbers}), out);
        }
    }

    /// The pause is over without enough traffic: extend the step once (recorded), and at its
    /// deadline pause or abort as the policy says. Never pass blindly.
    fn extend_or_expire(
        &mut self,
        step: &StepState,
        reason: String,
        numbers: Value,
        out: &mut Vec<Action>,
    ) {
        let deadline = self.step_deadline(step);
        if self.clock >= deadline {
            let policy = self.plan.policy().on_step_deadline;
            let details =
                json!({"step": step.index, "reason": reason, "policy": policy, "numbers": numbers});
            record(out, Milestone::Deadline, details);
            match policy {
                DeadlineAction::Pause => self.pause(out),
                DeadlineAction::Abort => {
                    let why = format!("step {}: {reason} by the step deadline", step.index);
                    self.abort(why, numbers, out);
                }
            }
        } else if !step.extended {
            if let Some(current) = self.observing_step_mut() {
                current.extended = true;
            }
            let details = json!({"verdict": "continue", "step": step.index, "reason": reason,
                "extended_until": deadline, "numbers": numbers});
            record(out, Milestone::Verdict, details);
        }
    }

    fn promote_canary(&mut self, details: Value, out: &mut Vec<Action>) {
        out.push(Action::SetWeights {
            stable: 0,
            new: 100,
        });
        record(out, Milestone::Promote, details);
        self.phase = Phase::Draining { since: self.clock };
    }

    fn on_pause(&mut self, out: &mut Vec<Action>) {
        match self.phase {
            Phase::Step(_) | Phase::Preview { .. } => self.pause(out),
            _ => self.ignored("pause", out),
        }
    }

    fn pause(&mut self, out: &mut Vec<Action>) {
        let inner = std::mem::replace(&mut self.phase, Phase::Succeeded);
        record(out, Milestone::Pause, json!({"phase": inner.name()}));
        self.phase = Phase::Paused {
            inner: Box::new(inner),
            since: self.clock,
        };
    }

    fn on_resume(&mut self, out: &mut Vec<Action>) {
        let Phase::Paused { inner, .. } = &self.phase else {
            return self.ignored("resume", out);
        };
        let mut inner = inner.as_ref().clone();
        match &mut inner {
            Phase::Step(step) => {
                step.since = self.clock;
                step.extended = false;
            }
            Phase::Preview { since } => *since = self.clock,
            _ => {}
        }
        record(out, Milestone::Resume, json!({"phase": inner.name()}));
        self.phase = inner;
    }

    fn on_promote(&mut self, out: &mut Vec<Action>) {
        let current = match &self.phase {
            Phase::Paused { inner, .. } => inner.as_ref(),
            phase => phase,
        };
        match current {
            Phase::Step(step) => {
                let skipped = self.plan.steps().len() - step.index - 1;
                let details =
                    json!({"by": "request", "step": step.index, "skipped_steps": skipped});
                self.promote_canary(details, out);
            }
            Phase::Preview { .. } => {
                out.push(Action::Switch);
                record(
                    out,
                    Milestone::Switch,
                    json!({"by": "request", "stable": 0, "new": 100}),
                );
                self.phase = Phase::Draining { since: self.clock };
            }
            _ => self.ignored("promote", out),
        }
    }

    fn on_drain_done(&mut self, out: &mut Vec<Action>) {
        match &self.phase {
            Phase::StoppingOld { .. } => {
                record(out, Milestone::OldStopped, json!({}));
                self.start_new(out);
            }
            Phase::Draining { .. } => self.succeed(json!({"drain": "done"}), out),
            Phase::Aborting { reason, .. } => {
                let reason = reason.clone();
                self.rolled_back(reason, json!({"drain": "done"}), out);
            }
            _ => self.ignored("drain-done", out),
        }
    }

    fn on_tick(&mut self, out: &mut Vec<Action>) {
        if self.observing_step().is_some() && self.stats_stale() {
            let details = json!({"last_stats": self.last_stats, "now": self.clock});
            return self.abort("no traffic stats from the proxy".to_owned(), details, out);
        }
        if !self.deadline_passed() {
            return self.assess(out);
        }
        let details = json!({"phase": self.phase.name(), "deadline": self.next_deadline(), "now": self.clock});
        match &self.phase {
            Phase::Step(_) => self.assess(out),
            Phase::StoppingOld { .. } => {
                record(out, Milestone::Deadline, details);
                self.start_new(out);
            }
            Phase::Draining { .. } => {
                record(out, Milestone::Deadline, details);
                self.succeed(json!({"drain": "timeout"}), out);
            }
            Phase::Aborting { reason, .. } => {
                let reason = reason.clone();
                record(out, Milestone::Deadline, details);
                self.rolled_back(reason, json!({"drain": "timeout"}), out);
            }
            Phase::WaitingReady { .. } | Phase::Preview { .. } | Phase::Paused { .. } => {
                record(out, Milestone::Deadline, details.clone());
                let why = format!("{} deadline passed", self.phase.name());
                self.abort(why, details, out);
            }
            Phase::Succeeded | Phase::RolledBack { .. } => {}
        }
    }

    fn stats_stale(&self) -> bool {
        let Some((step, _)) = self.observing_step() else {
            return false;
        };
        let paused_since = match &self.phase {
            Phase::Paused { since, .. } => *since,
            _ => step.since,
        };
        let baseline = self
            .last_stats
            .unwrap_or(step.since)
            .max(step.since)
            .max(paused_since);
        self.clock.since(baseline) > self.plan.policy().stats_stale_after
    }

    fn reapply_routes(&self, out: &mut Vec<Action>) {
        let current = match &self.phase {
            Phase::Paused { inner, .. } => inner.as_ref(),
            phase => phase,
        };
        match current {
            Phase::Step(step) => out.push(Action::SetWeights {
                stable: 100 - step.weight,
                new: step.weight,
            }),
            Phase::Preview { .. } => out.push(Action::SetPreview),
            Phase::Draining { .. } => out.push(Action::SetWeights {
                stable: 0,
                new: 100,
            }),
            Phase::Aborting { .. } => out.push(Action::SetWeights {
                stable: 100,
                new: 0,
            }),
            Phase::StoppingOld { .. } => out.push(Action::StopOldInstances),
            _ => {}
        }
    }

    /// Rolls back: weights to stable in this very step, then the new instances drain and stop.
    /// Steps are never re-run: `Aborting` only waits for the drain.
    fn abort(&mut self, reason: String, numbers: Value, out: &mut Vec<Action>) {
        if matches!(self.phase, Phase::Aborting { .. }) {
            return;
        }
        let details = json!({"reason": reason, "phase": self.phase.name(), "numbers": numbers});
        record(out, Milestone::Rollback, details);
        out.push(Action::SetWeights {
            stable: 100,
            new: 0,
        });
        if self.old_stopped {
            out.push(Action::StartStableInstances {
                count: self.plan.replicas(),
            });
        }
        self.phase = Phase::Aborting {
            since: self.clock,
            reason,
        };
    }

    fn succeed(&mut self, details: Value, out: &mut Vec<Action>) {
        if !self.old_stopped {
            out.push(Action::StopOldInstances);
        }
        record(out, Milestone::Succeeded, details);
        out.push(Action::Done {
            outcome: Outcome::Succeeded,
        });
        self.phase = Phase::Succeeded;
    }

    fn rolled_back(&mut self, reason: String, details: Value, out: &mut Vec<Action>) {
        out.push(Action::StopNewInstances);
        record(
            out,
            Milestone::RolledBack,
            json!({"reason": reason, "details": details}),
        );
        out.push(Action::Done {
            outcome: Outcome::RolledBack {
                reason: reason.clone(),
            },
        });
        self.phase = Phase::RolledBack { reason };
    }

    fn ignored(&self, event: &str, out: &mut Vec<Action>) {
        record(
            out,
            Milestone::Ignored,
            json!({"event": event, "phase": self.phase.name()}),
        );
    }
}
