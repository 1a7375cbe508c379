//! Rollouts inside the control plane: `wharf deploy`, the operator's commands, feeding the
//! state machine (`wharf-rollout`) its events, and carrying out its actions — instances to
//! start or drain, weights for the proxy, ledger entries. The machine decides; this module
//! only does what it says and persists it after every step.

use serde_json::{Value, json};
use wharf_ledger::KnownAction;
use wharf_rollout::{
    Action, Event as RolloutEvent, Milestone, Outcome, Plan, Policy, Rollout, Step, Strategy,
    Thresholds, VersionCounters, Window,
};
use wharf_store::RolloutRow;

use wharf_api::ControlError;

use super::ControlPlane;
use super::approvals::DeployedBy;
use crate::deploy::{DeployRequest, RolloutCommand, RolloutView};
use crate::proxy_link::{Snapshot, window_quantile};
use crate::rollout_record::{Deployment, RolloutRecord, now_at};
use crate::state::{Phase, VersionSpec};

/// The ledger action a rollout milestone is written as. Exhaustive, so a milestone the
/// ledger has no action for does not compile.
fn ledger_action(milestone: Milestone) -> KnownAction {
    match milestone {
        Milestone::Start => KnownAction::DeployStart,
        Milestone::Ready => KnownAction::DeployReady,
        Milestone::Step => KnownAction::DeployStep,
        Milestone::Verdict => KnownAction::DeployVerdict,
        Milestone::Deadline => KnownAction::DeployDeadline,
        Milestone::Preview => KnownAction::DeployPreview,
        Milestone::Switch => KnownAction::DeploySwitch,
        Milestone::Promote => KnownAction::DeployPromote,
        Milestone::Pause => KnownAction::DeployPause,
        Milestone::Resume => KnownAction::DeployResume,
        Milestone::OldStopped => KnownAction::DeployOldStopped,
        Milestone::Rollback => KnownAction::DeployRollback,
        Milestone::RolledBack => KnownAction::DeployRolledBack,
        Milestone::Succeeded => KnownAction::DeploySucceeded,
        Milestone::Ignored => KnownAction::DeployIgnored,
    }
}

fn parse_strategy(name: &str) -> Result<wharf_manifest::model::Strategy, String> {
    use wharf_manifest::model::Strategy as S;
    match name {
        "canary" => Ok(S::Canary),
        "blue-green" => Ok(S::BlueGreen),
        "recreate" => Ok(S::Recreate),
        other => Err(format!(
            "unknown strategy `{other}`; expected canary, blue-green or recreate"
        )),
    }
}

impl ControlPlane {
    /// Restores saved rollouts and deployments before instances are adopted, so an adopted
    /// instance of a rollout's new version is recognised.
    pub(super) fn restore_rollouts(&mut self) {
        for index in 0..self.supervisor.services.len() {
            let name = self.supervisor.services[index].plan.name.clone();
            let manifest = VersionSpec::of_plan(&self.supervisor.services[index].plan);
            if let Some(saved) = self.core.journal.deployment(&name) {
                match serde_json::from_str::<Deployment>(&saved) {
                    Ok(deployment) if deployment.manifest == manifest => {
                        self.supervisor.services[index].stable = deployment.current;
                    }
                    // Where deploys are governed, a version only a manifest edit names is not
                    // deployed by restarting the control plane: the deployed one runs.
                    Ok(deployment) if self.governs_deploys() && deployment.current != manifest => {
                        tracing::warn!(
                            service = name,
                            manifest = manifest.version,
                            running = deployment.current.version,
                            "the manifest names a version no deploy put in force; the deployed one runs"
                        );
                        self.core.journal.record(
                            KnownAction::DeployHeld,
                            &name,
                            json!({
                                "manifest": manifest.version,
                                "running": deployment.current.version,
                                "hint": format!("wharf deploy {name} --version {}", manifest.version),
                            }),
                        );
                        self.supervisor.services[index].stable = deployment.current;
                    }
                    Ok(_) => tracing::info!(
                        service = name,
                        "the manifest changed since the last deploy; it wins"
                    ),
                    Err(error) => tracing::error!(%error, service = name, "unreadable deployment"),
                }
            }
        }
        let rows = match self.core.journal.rollouts() {
            Ok(rows) => rows,
            Err(error) => {
                tracing::error!(%error, "cannot read saved rollouts");
                return;
            }
        };
        for row in rows {
            let Some(index) = self.supervisor.index(&row.service) else {
                continue;
            };
            match serde_json::from_str::<RolloutRecord>(&row.state) {
                Ok(record) => self.supervisor.services[index].rollout = Some(record),
                Err(error) => {
                    tracing::error!(%error, service = row.service, "unreadable saved rollout")
                }
            }
        }
    }

    /// After adoption: every rollout that was under way continues (or rolls back when it
    /// cannot decide), per the state machine's `resume`.
    pub(super) fn resume_rollouts(&mut self) {
        for index in 0..self.supervisor.services.len() {
            let Some(record) = self.supervisor.services[index].rollout.as_mut() else {
                continue;
            };
            if !record.is_active() {
                continue;
            }
            let actions = record.machine.resume(now_at());
            self.apply_rollout_actions(index, actions);
            // Resuming may have ended it: saved now, or the next start would resume it again.
            self.persist_rollout(index);
        }
    }

    /// A deploy that does not go through approvals (a runbook's step): refused where the
    /// environment requires them, since a runbook must not be a way around four-eyes.
    pub(super) fn begin_deploy(
        &mut self,
        name: &str,
        request: DeployRequest,
    ) -> Result<RolloutView, ControlError> {
        if let Some(count) = self.backups.require().and_then(|r| r.approvals) {
            return Err(ControlError::rejected(format!(
                "deploy of `{name}` needs {count} approval(s) in this environment; ask for them with `wharf deploy {name} --version {}`",
                request.version.trim()
            )));
        }
        let prepared = self.prepare_deploy(name, request)?;
        self.start_prepared(prepared, None)
    }

    /// Every check a deploy must pass before it starts — the service, its state, the
    /// environment's `require` (backups, drills, gates) and the request itself — and the
    /// rollout it would start. Changes nothing.
    pub(super) fn prepare_deploy(
        &self,
        name: &str,
        request: DeployRequest,
    ) -> Result<PreparedDeploy, ControlError> {
        let index = self
            .supervisor
            .index(name)
            .ok_or_else(|| self.supervisor.unknown(name))?;
        let service = &self.supervisor.services[index];
        if service.is_external() {
            return Err(ControlError::rejected(format!(
                "service `{name}` is external: wharf does not run it"
            )));
        }
        if !service.plan.proxied {
            return Err(ControlError::rejected(format!(
                "service `{name}` has no `port:` served by the wharf proxy, so its traffic cannot be shifted; give it a port"
            )));
        }
        if !service.wanted {
            return Err(ControlError::rejected(format!(
                "service `{name}` is stopped; start it with `wharf up`"
            )));
        }
        if let Some(active) = service.active_rollout() {
            return Err(ControlError::rejected(format!(
                "a rollout of `{name}` is under way ({}); wait for it, or `wharf rollout abort {name}`",
                active.summary()
            )));
        }
        let version = request.version.trim();
        // The environment's `require`: a recent good backup and drill, a passing verdict of
        // each gate for this version — every unmet one named at once.
        let mut unmet: Vec<String> = self.backups.gate().into_iter().collect();
        unmet.extend(self.unmet_gates(name, version));
        unmet.extend(self.promotion_gate(name, version));
        if request.command.is_some()
            && self
                .backups
                .require()
                .is_some_and(|r| !r.gates.is_empty() || r.promoted_from.is_some())
        {
            unmet.push(format!(
                "a --command override is not what the gate verdicts and promotion evidence for {name}@{version} judged (they name a version); put the command in the manifest"
            ));
        }
        if !unmet.is_empty() {
            return Err(ControlError::rejected(format!(
                "deploy of `{name}` {version} refused: {}",
                unmet.join("; ")
            )));
        }
        if version.is_empty() || version.chars().any(char::is_whitespace) {
            return Err(ControlError::rejected(format!(
                "version `{}` must be a non-empty word",
                request.version
            )));
        }
        if matches!(&request.command, Some(command) if command.is_empty()) {
            return Err(ControlError::rejected("--command must not be empty"));
        }
        if let Some(arg) = request
            .command
            .iter()
            .flatten()
            .find(|arg| arg.contains("${secret:"))
        {
            return Err(ControlError::rejected(format!(
                "--command holds a secret reference (`{arg}`): a command line is visible to every process on the machine; pass it in the service's `env:` or `secrets:`"
            )));
        }
        if version == service.stable.version {
            return Err(ControlError::rejected(format!(
                "service `{name}` already runs version {version}; deploy another version"
            )));
        }
        let mut manifest_rollout = service
            .plan
            .rollout
            .clone()
            .unwrap_or_else(wharf_manifest::model::Rollout::default_canary);
        if let Some(strategy) = &request.strategy {
            manifest_rollout.strategy = parse_strategy(strategy).map_err(ControlError::rejected)?;
        }
        match manifest_rollout.strategy {
            wharf_manifest::model::Strategy::Canary if manifest_rollout.steps.is_empty() => {
                manifest_rollout.steps = wharf_manifest::model::Rollout::default_canary_steps();
            }
            wharf_manifest::model::Strategy::Canary => {}
            _ => manifest_rollout.steps.clear(),
        }
        let plan = Plan::from_manifest(
            &manifest_rollout,
            service.plan.replicas.max(1),
            Policy::default(),
        )
        .map_err(|err| ControlError::rejected(format!("cannot roll out `{name}`: {err}")))?;
        let new = VersionSpec {
            version: version.to_owned(),
            command: request.command.or_else(|| service.stable.command.clone()),
            // Version `v2` of an image service runs the image tagged `v2`.
            image: service
                .stable
                .image
                .as_deref()
                .map(|image| wharf_runtime::image::with_tag(image, version)),
        };
        Ok(PreparedDeploy { index, plan, new })
    }

    /// Starts a prepared deploy; `by` names who asked (and who approved) on its
    /// `deploy.start` entry.
    pub(super) fn start_prepared(
        &mut self,
        prepared: PreparedDeploy,
        by: Option<DeployedBy>,
    ) -> Result<RolloutView, ControlError> {
        self.deployed_by = by;
        let view = self.start_rollout(prepared.index, prepared.plan, prepared.new);
        self.deployed_by = None;
        view
    }
}

/// A deploy that passed every check, ready to start.
pub(super) struct PreparedDeploy {
    index: usize,
    plan: Plan,
    new: VersionSpec,
}

impl ControlPlane {
    /// `wharf rollback`: abort the rollout under way, or roll the previous version out again
    /// at once (one step to 100 %, no analysis: it is known good).
    pub(super) fn begin_rollback(&mut self, name: &str) -> Result<RolloutView, ControlError> {
        let index = self
            .supervisor
            .index(name)
            .ok_or_else(|| self.supervisor.unknown(name))?;
        if self.supervisor.services[index].active_rollout().is_some() {
            return self.rollout_command(name, RolloutCommand::Abort);
        }
        let previous = self
            .core
            .journal
            .deployment(name)
            .and_then(|saved| serde_json::from_str::<Deployment>(&saved).ok())
            .map(|d| d.previous)
            .filter(|previous| previous.version != self.supervisor.services[index].stable.version)
            .ok_or_else(|| {
                ControlError::rejected(format!(
                    "service `{name}` has no previous version to roll back to"
                ))
            })?;
        let plan = Plan::new(
            Strategy::Canary,
            vec![Step {
                weight: 100,
                pause: std::time::Duration::ZERO,
            }],
            self.supervisor.services[index].plan.replicas.max(1),
            Thresholds {
                min_requests: 0,
                ..Thresholds::default()
            },
            Policy::default(),
        )
        .map_err(|err| ControlError::rejected(err.to_string()))?;
        self.core.journal.record(
            KnownAction::DeployRollbackRequested,
            name,
            json!({"to": previous.version}),
        );
        self.start_rollout(index, plan, previous)
    }

    fn start_rollout(
        &mut self,
        index: usize,
        plan: Plan,
        new: VersionSpec,
    ) -> Result<RolloutView, ControlError> {
        let service = &self.supervisor.services[index];
        let id = service.rollout.as_ref().map_or(1, |r| r.id + 1);
        let (machine, actions) = Rollout::start(plan, now_at());
        let record = RolloutRecord {
            id,
            machine,
            previous: service.stable.clone(),
            new,
            want_new: 0,
            weights: (100, 0),
            preview: false,
            stable_suspended: false,
            weights_seq: 0,
            history: Vec::new(),
            verdict: None,
            started_at: jiff::Timestamp::now().to_string(),
            finished_at: None,
            manifest: VersionSpec::of_plan(&service.plan),
        };
        self.supervisor.services[index].rollout = Some(record);
        self.apply_rollout_actions(index, actions);
        self.persist_rollout(index);
        self.rollout_view(index)
            .ok_or_else(|| ControlError::rejected("the rollout could not be recorded"))
    }

    pub(super) fn rollout_view(&self, index: usize) -> Option<RolloutView> {
        let service = &self.supervisor.services[index];
        service.rollout.as_ref().map(|r| r.view(&service.plan.name))
    }

    pub(super) fn rollout_command(
        &mut self,
        name: &str,
        command: RolloutCommand,
    ) -> Result<RolloutView, ControlError> {
        let index = self
            .supervisor
            .index(name)
            .ok_or_else(|| self.supervisor.unknown(name))?;
        if self.supervisor.services[index].active_rollout().is_none() {
            return Err(ControlError::rejected(format!(
                "no rollout of `{name}` is under way"
            )));
        }
        let event = match command {
            RolloutCommand::Pause => RolloutEvent::Pause,
            RolloutCommand::Resume => RolloutEvent::Resume,
            RolloutCommand::Promote => RolloutEvent::Promote,
            RolloutCommand::Abort => RolloutEvent::Abort {
                reason: "aborted by the operator".to_owned(),
            },
        };
        self.feed_rollout(index, event);
        self.rollout_view(index)
            .ok_or_else(|| ControlError::rejected(format!("no rollout of `{name}`")))
    }

    /// Hands one event to the service's rollout and carries out what it answers.
    pub(super) fn feed_rollout(&mut self, index: usize, event: RolloutEvent) {
        let Some(record) = self.supervisor.services[index].rollout.as_mut() else {
            return;
        };
        if !record.is_active() {
            return;
        }
        let persist = matches!(event, RolloutEvent::Stats { .. });
        let actions = record.machine.handle(event);
        let acted = !actions.is_empty();
        self.apply_rollout_actions(index, actions);
        if acted || persist {
            self.persist_rollout(index);
        }
    }

    fn apply_rollout_actions(&mut self, index: usize, actions: Vec<Action>) {
        let name = self.supervisor.services[index].plan.name.clone();
        for action in actions {
            match action {
                Action::Record { milestone, details } => {
                    self.record_rollout(index, milestone, details)
                }
                Action::StartNewInstances { count } => {
                    if let Some(r) = self.supervisor.services[index].rollout.as_mut() {
                        r.want_new = count;
                    }
                }
                Action::StartStableInstances { .. } => {
                    if let Some(r) = self.supervisor.services[index].rollout.as_mut() {
                        r.stable_suspended = false;
                    }
                }
                Action::SetWeights { stable, new } => self.set_weights(index, (stable, new)),
                Action::SetPreview => {
                    if let Some(r) = self.supervisor.services[index].rollout.as_mut() {
                        r.preview = true;
                    }
                }
                Action::Switch => self.set_weights(index, (0, 100)),
                Action::StopOldInstances => {
                    if let Some(r) = self.supervisor.services[index].rollout.as_mut() {
                        r.stable_suspended = true;
                    }
                    let stable = self.supervisor.services[index].stable.version.clone();
                    self.retire_version(index, &stable, "replaced by the new version");
                }
                Action::StopNewInstances => {
                    let new = match self.supervisor.services[index].rollout.as_mut() {
                        Some(r) => {
                            r.want_new = 0;
                            r.preview = false;
                            r.new.version.clone()
                        }
                        None => continue,
                    };
                    self.retire_version(index, &new, "rolled back");
                }
                Action::Done { outcome } => self.finish_rollout(index, &name, outcome),
            }
        }
    }

    fn set_weights(&mut self, index: usize, weights: (u8, u8)) {
        if let Some(r) = self.supervisor.services[index].rollout.as_mut() {
            r.weights = weights;
            // Known once the table is computed (`publish_routes`).
            r.weights_seq = u64::MAX;
        }
        self.traffic.routes_dirty = true;
    }

    fn record_rollout(&mut self, index: usize, milestone: Milestone, details: Value) {
        let action = ledger_action(milestone);
        let name = self.supervisor.services[index].plan.name.clone();
        let Some(record) = self.supervisor.services[index].rollout.as_mut() else {
            return;
        };
        let mut details = details;
        if let Value::Object(map) = &mut details {
            map.insert("rollout".to_owned(), json!(record.id));
            map.insert("version".to_owned(), json!(record.new.version));
        }
        if milestone == Milestone::Verdict {
            record.verdict = Some(details.clone());
        }
        record.history.push(json!({
            "at": jiff::Timestamp::now().to_string(),
            "action": action.as_str(),
            "details": details,
        }));
        tracing::info!(service = name, %action, "rollout");
        if milestone == Milestone::Start {
            let summary = format!("deploy of {name} {} began", record.new.version);
            let mut facts = std::collections::BTreeMap::new();
            facts.insert("version".to_owned(), record.new.version.clone());
            facts.insert("from".to_owned(), record.previous.version.clone());
            self.alerting.change(&self.core, &name, summary, facts);
        }
        match (milestone, self.deployed_by.as_ref()) {
            (Milestone::Start, Some(by)) => {
                if let Value::Object(map) = &mut details {
                    map.insert("requested_by".to_owned(), json!(by.requester));
                    if let Some(request) = &by.request {
                        map.insert("deploy_request".to_owned(), json!(request));
                        map.insert("approved_by".to_owned(), json!(by.approvers));
                    }
                }
                let actor = by.requester.clone();
                self.core.journal.record_by(&actor, action, &name, details);
            }
            _ => self.core.journal.record(action, &name, details),
        }
    }

    fn finish_rollout(&mut self, index: usize, name: &str, outcome: Outcome) {
        let service = &mut self.supervisor.services[index];
        let Some(record) = service.rollout.as_mut() else {
            return;
        };
        record.finished_at = Some(jiff::Timestamp::now().to_string());
        record.stable_suspended = false;
        record.want_new = 0;
        match outcome {
            Outcome::Succeeded => {
                let deployment = Deployment {
                    current: record.new.clone(),
                    previous: record.previous.clone(),
                    manifest: record.manifest.clone(),
                };
                service.stable = record.new.clone();
                // In the view's terms (previous, new): everything on the new version.
                record.weights = (0, 100);
                if let Ok(text) = serde_json::to_string(&deployment) {
                    self.core.journal.save_deployment(name, &text);
                }
            }
            Outcome::RolledBack { .. } => record.weights = (100, 0),
        }
        self.traffic.routes_dirty = true;
    }

    fn persist_rollout(&mut self, index: usize) {
        let service = &self.supervisor.services[index];
        let Some(record) = &service.rollout else {
            return;
        };
        match serde_json::to_string(record) {
            Ok(state) => {
                let row = RolloutRow {
                    service: service.plan.name.clone(),
                    id: record.id,
                    state,
                };
                self.core.journal.save_rollout(&row);
            }
            Err(error) => tracing::error!(%error, "cannot serialise the rollout"),
        }
    }

    /// Each pass: readiness of the new instances, the end of drains, and the clock.
    pub(super) fn drive_rollouts(&mut self) {
        for index in 0..self.supervisor.services.len() {
            let Some(record) = self.supervisor.services[index].active_rollout() else {
                continue;
            };
            let phase = record.machine.phase().name();
            let new_version = record.new.version.clone();
            let want_new = record.want_new;
            let service = &self.supervisor.services[index];
            let new_ready = service
                .instances
                .values()
                .filter(|i| i.version == new_version && i.is_routable())
                .count() as u32;
            let new_left = service
                .instances
                .values()
                .filter(|i| i.version == new_version)
                .count();
            let stable_left = service
                .instances
                .values()
                .filter(|i| i.version == service.stable.version)
                .count();
            if phase == "waiting-ready" && want_new > 0 && new_ready >= want_new {
                self.feed_rollout(index, RolloutEvent::NewInstancesReady);
            } else if (phase == "stopping-old" && stable_left == 0)
                || (phase == "aborting" && new_left == 0)
            {
                self.feed_rollout(index, RolloutEvent::DrainDone);
            }
            self.feed_rollout(index, RolloutEvent::Tick { now: now_at() });
        }
    }

    /// A new-version instance exited or could not start: the rollout decides (it aborts).
    pub(super) fn new_instance_failed(&mut self, index: usize, version: &str, reason: String) {
        let is_new = self.supervisor.services[index]
            .active_rollout()
            .is_some_and(|r| r.new.version == version);
        if is_new {
            self.feed_rollout(index, RolloutEvent::NewInstancesFailed { reason });
        }
    }

    /// Per-version counters since the previous snapshot, to every rollout observing traffic;
    /// and `DrainDone` once the version that lost its traffic has nothing in flight.
    pub(super) fn rollout_stats(&mut self, previous: Option<&Snapshot>, snapshot: &Snapshot) {
        let now = now_at();
        for index in 0..self.supervisor.services.len() {
            let Some(record) = self.supervisor.services[index].active_rollout() else {
                continue;
            };
            let name = self.supervisor.services[index].plan.name.clone();
            let stable = self.supervisor.services[index].stable.version.clone();
            let new = record.new.version.clone();
            let phase = record.machine.phase().name();
            let weights_applied = snapshot.applied_seq >= record.weights_seq;
            if let Some(previous) = previous.filter(|p| p.uptime_ms <= snapshot.uptime_ms) {
                let counters = |version: &str| version_window(previous, snapshot, &name, version);
                let window = Window {
                    stable: counters(&stable),
                    new: counters(&new),
                };
                self.feed_rollout(index, RolloutEvent::Stats { now, window });
            }
            let losing = match phase {
                "draining" => Some(stable),
                "aborting" => Some(new),
                _ => None,
            };
            if let Some(losing) = losing
                && weights_applied
            {
                let in_flight: u64 = self.supervisor.services[index]
                    .instances
                    .values()
                    .filter(|i| i.version == losing && i.phase == Phase::Running)
                    .filter_map(|i| i.port)
                    .map(|port| {
                        snapshot
                            .instances
                            .get(&format!("127.0.0.1:{port}"))
                            .map_or(0, |c| c.in_flight)
                    })
                    .sum();
                if in_flight == 0 {
                    self.feed_rollout(index, RolloutEvent::DrainDone);
                }
            }
        }
    }
}

/// One version's traffic between two snapshots (responses completed, 5xx as errors, window
/// quantiles from the bucket deltas).
fn version_window(
    older: &Snapshot,
    newer: &Snapshot,
    service: &str,
    version: &str,
) -> VersionCounters {
    let get = |snapshot: &Snapshot| {
        snapshot
            .services
            .get(service)
            .and_then(|s| s.versions.get(version))
            .cloned()
            .unwrap_or_default()
    };
    let (before, after) = (get(older), get(newer));
    VersionCounters {
        requests: after
            .responses
            .total()
            .saturating_sub(before.responses.total()),
        errors: after.responses.c5xx.saturating_sub(before.responses.c5xx),
        p95_ms: window_quantile(&after.latency_buckets, &before.latency_buckets, 0.95),
        p99_ms: window_quantile(&after.latency_buckets, &before.latency_buckets, 0.99),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The machine names its milestones by the ledger's texts (logs, the rollout history);
    /// the entry written must carry the same name.
    #[test]
    fn every_milestone_is_written_under_its_own_name() {
        for milestone in Milestone::ALL {
            assert_eq!(ledger_action(*milestone).as_str(), milestone.as_str());
        }
    }
}
