//! Runbooks: runs of the manifest's runbooks, step by step, inside the control plane's loop.
//!
//! A run is planned first (parameters typed and filled in, what each step touches, the
//! blast-radius cap and the rate limit judged) and refused whole before any step runs when the
//! plan breaks a limit; a dry run answers with the plan and changes nothing. Steps that act on
//! the stack (restart, rollback, deploy, restore, drill) go through the same paths the API's
//! commands use and are judged done on the control plane's own view each pass; `exec` and
//! `http` run as tasks answering [`Event::RunbookStep`]; `wait_for` is checked each pass
//! against the status report until its deadline; `approve` parks the run until a person
//! approves it. Every state change saves the run's row together with its ledger entry
//! (`runbook.*`), so a restarted control plane lists each run — one it left mid-step is failed
//! at that step, and resumes there.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use serde_json::json;
use tokio::sync::oneshot;

use wharf_api::{
    Approval, ControlError, ErrorCode, JobState, ParamInfo, RolloutOutcome, Run, RunList,
    RunStarted, RunState, RunbookInfo, RunbookList, StepResult, StepState,
};
use wharf_ledger::KnownAction;
use wharf_manifest::model::{Runbook, StepAction, WaitState};

use super::runbook_plan::{
    StackView, detail, plan, reached, resolve, truncate_output, typed_params, wait_word,
};
use super::{ControlPlane, Core};
use crate::events::{BackupCommand, Event, RunbookCommand, RunbookStepDone};
use crate::report::ServiceStatus;

/// Runs kept in memory (and read back at start) for listing; older ones stay in the store.
const RECENT_RUNS: u32 = 200;
/// How long a restart, rollback or deploy step may take unless its `timeout` says otherwise.
const DEFAULT_ACTION_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a restore or drill step may take unless its `timeout` says otherwise.
const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long an `http` step may take unless its `timeout` says otherwise.
const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The runbooks subsystem: the manifest's runbooks, the recent runs, and each runbook's run
/// starts inside its rate-limit window.
pub(super) struct Runbooks {
    books: IndexMap<String, Runbook>,
    /// Oldest first.
    runs: Vec<Entry>,
    /// Start times (epoch ms) per runbook, oldest first, pruned to the window when counted.
    starts: HashMap<String, VecDeque<i64>>,
    next_id: u64,
}

/// A run with what the loop needs to drive it.
struct Entry {
    run: Run,
    /// Each step's action with the parameters filled in. Empty for a run read back from the
    /// store: filled again from the manifest when it resumes.
    actions: Vec<StepAction>,
    progress: Progress,
}

/// What the current step waits for.
enum Progress {
    /// Nothing: the current step is to begin at the next pass (or the run is not running).
    Idle,
    Restart {
        service: String,
        since: jiff::Timestamp,
        deadline: Instant,
    },
    Rollout {
        service: String,
        id: u64,
        /// It aborted a rollout under way: rolled back is its success.
        abort: bool,
        deadline: Instant,
    },
    Job {
        id: u64,
        deadline: Instant,
    },
    WaitFor {
        service: String,
        state: WaitState,
        deadline: Instant,
    },
    /// A command or a call runs as a task (which bounds itself) and answers with an event.
    Task(tokio::task::AbortHandle),
    Approval {
        deadline: Option<Instant>,
    },
}

/// How a step ended.
struct Ending {
    ok: bool,
    result: String,
    output: Option<String>,
}

impl Ending {
    fn ok(result: impl Into<String>) -> Ending {
        Ending {
            ok: true,
            result: result.into(),
            output: None,
        }
    }

    fn failed(result: impl Into<String>) -> Ending {
        Ending {
            ok: false,
            result: result.into(),
            output: None,
        }
    }
}

impl Runbooks {
    /// The manifest's runbooks and the runs the store holds; a run a stopped control plane
    /// left mid-step is failed at that step (row and entry), so it can be resumed.
    pub(super) fn new(core: &mut Core, books: IndexMap<String, Runbook>) -> Runbooks {
        let store = core.journal.store();
        let mut runs: Vec<Run> = store
            .runbook_runs(RECENT_RUNS)
            .unwrap_or_else(|error| {
                tracing::error!(%error, "could not read the runbook runs");
                Vec::new()
            })
            .iter()
            .filter_map(|text| serde_json::from_str(text).ok())
            .collect();
        runs.reverse();
        let next_id = runs.iter().map(|r| r.id).max().unwrap_or(0) + 1;
        let now = now_ms();
        let mut starts = HashMap::new();
        for (name, book) in &books {
            if let Some(limit) = &book.rate_limit {
                let since = now - limit.per.as_std().as_millis() as i64;
                let found = core
                    .journal
                    .store()
                    .runbook_starts_since(name, since)
                    .unwrap_or_default();
                starts.insert(name.clone(), found.into_iter().collect());
            }
        }
        let mut runbooks = Runbooks {
            books,
            runs: runs
                .into_iter()
                .map(|run| Entry {
                    run,
                    actions: Vec::new(),
                    progress: Progress::Idle,
                })
                .collect(),
            starts,
            next_id,
        };
        for index in 0..runbooks.runs.len() {
            match runbooks.runs[index].run.state {
                RunState::Running => runbooks.fail(
                    core,
                    index,
                    "the control plane stopped during this step".to_owned(),
                ),
                // Nothing was in flight: it still waits, with its steps from the manifest.
                RunState::WaitingApproval => {
                    match runbooks.actions_again(&runbooks.runs[index].run) {
                        Ok(actions) => {
                            let entry = &mut runbooks.runs[index];
                            entry.actions = actions;
                            entry.progress = Progress::Approval { deadline: None };
                        }
                        Err(error) => runbooks.fail(core, index, error.message),
                    }
                }
                _ => {}
            }
        }
        runbooks
    }

    /// The steps of a run read back from the store, from the manifest again — only if the
    /// runbook still says the same thing (each step's resolved text is compared).
    fn actions_again(&self, run: &Run) -> Result<Vec<StepAction>, ControlError> {
        let name = &run.runbook;
        let book = self.books.get(name).ok_or_else(|| self.unknown(name))?;
        let actions: Vec<StepAction> = book
            .steps
            .iter()
            .map(|s| resolve(&s.action, &run.params))
            .collect();
        let same = actions.len() == run.steps.len()
            && actions
                .iter()
                .zip(&run.steps)
                .all(|(a, s)| detail(a) == s.plan.detail);
        if !same {
            return Err(ControlError::rejected(format!(
                "runbook `{name}` changed in the manifest since run {} started; start a new run",
                run.id
            )));
        }
        Ok(actions)
    }

    /// Who started run `id` (the control plane's actor when it is unknown).
    fn runs_actor(&self, id: u64) -> String {
        self.runs
            .iter()
            .find(|e| e.run.id == id)
            .map(|e| e.run.actor.clone())
            .unwrap_or_default()
    }

    pub(super) fn set_runbooks(&mut self, books: IndexMap<String, Runbook>) {
        self.books = books;
    }

    fn find(&self, id: u64) -> Result<usize, ControlError> {
        self.runs
            .iter()
            .position(|e| e.run.id == id)
            .ok_or_else(|| {
                ControlError::new(
                    ErrorCode::UnknownRunbook,
                    format!("there is no runbook run {id} (`wharf runbook runs` lists them)"),
                )
            })
    }

    fn unknown(&self, name: &str) -> ControlError {
        let names: Vec<&str> = self.books.keys().map(String::as_str).collect();
        ControlError::new(
            ErrorCode::UnknownRunbook,
            format!(
                "the manifest has no runbook `{name}` (runbooks: {})",
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ),
        )
    }

    fn list(&self) -> RunbookList {
        RunbookList {
            runbooks: self
                .books
                .iter()
                .map(|(name, book)| RunbookInfo {
                    name: name.clone(),
                    description: book.description.clone(),
                    params: book
                        .params
                        .iter()
                        .map(|(name, p)| ParamInfo {
                            name: name.clone(),
                            kind: p.kind.as_str().to_owned(),
                            default: p.default.clone(),
                            description: p.description.clone(),
                        })
                        .collect(),
                    steps: book.steps.iter().map(|s| detail(&s.action)).collect(),
                    rate_limit: book
                        .rate_limit
                        .as_ref()
                        .map(|r| format!("{} runs per {}", r.runs, r.per)),
                    blast_radius: book.blast_radius.as_ref().map(|b| {
                        let mut parts = Vec::new();
                        if let Some(n) = b.services {
                            parts.push(format!("{n} services"));
                        }
                        if let Some(n) = b.instances {
                            parts.push(format!("{n} instances"));
                        }
                        parts.join(", ")
                    }),
                })
                .collect(),
        }
    }

    fn run_list(&self) -> RunList {
        RunList {
            runs: self.runs.iter().rev().map(|e| e.run.clone()).collect(),
        }
    }

    /// The runs started within the runbook's window, after dropping older ones.
    fn recent_starts(&mut self, name: &str, per: Duration, now: i64) -> usize {
        let window = per.as_millis() as i64;
        let starts = self.starts.entry(name.to_owned()).or_default();
        while starts.front().is_some_and(|&t| t < now - window) {
            starts.pop_front();
        }
        starts.len()
    }

    /// Saves the run's row; committed with the entry recorded next.
    fn save(&self, core: &mut Core, index: usize) {
        let run = &self.runs[index].run;
        let started_at = run
            .started_at
            .parse::<jiff::Timestamp>()
            .map(|t| t.as_millisecond())
            .unwrap_or_default();
        core.journal.save_runbook_run(&wharf_store::RunbookRunRow {
            id: run.id,
            runbook: run.runbook.clone(),
            state: run.state.as_str().to_owned(),
            started_at,
            run: serde_json::to_string(run).unwrap_or_default(),
        });
    }

    /// Marks the run failed at its current step (the step too, if it was under way).
    fn fail(&mut self, core: &mut Core, index: usize, reason: String) {
        let now = jiff::Timestamp::now().to_string();
        let entry = &mut self.runs[index];
        if let Progress::Task(task) = &entry.progress {
            task.abort();
        }
        entry.progress = Progress::Idle;
        let run = &mut entry.run;
        run.state = RunState::Failed;
        run.ended_at = Some(now.clone());
        run.reason = Some(reason.clone());
        let step = run.current_step;
        if let Some(step) = step.and_then(|n| run.steps.get_mut(n as usize - 1))
            && matches!(step.state, StepState::Running | StepState::WaitingApproval)
        {
            step.state = StepState::Failed;
            step.ended_at = Some(now);
            step.result = Some(reason.clone());
        }
        let target = target(run);
        self.save(core, index);
        core.journal.record(
            KnownAction::RunbookFailed,
            &target,
            json!({"step": step, "reason": reason}),
        );
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// A run's target in the ledger: `RUNBOOK#ID`.
fn target(run: &Run) -> String {
    format!("{}#{}", run.runbook, run.id)
}

/// Runs a step's command in the manifest's directory in its own process group, killing the
/// group at the timeout; its stdout and stderr together are its output.
async fn exec(command: Vec<String>, workdir: std::path::PathBuf, timeout: Duration) -> Ending {
    let Some((program, args)) = command.split_first() else {
        return Ending::failed("empty command");
    };
    let child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(&workdir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(error) => return Ending::failed(format!("cannot run `{program}`: {error}")),
    };
    let pid = child.id();
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            let output_text = (!text.is_empty()).then(|| truncate_output(&text));
            let result = match output.status.code() {
                Some(0) => "exit code 0".to_owned(),
                Some(code) => format!("exit code {code}"),
                None => "killed by a signal".to_owned(),
            };
            Ending {
                ok: output.status.success(),
                result,
                output: output_text,
            }
        }
        Ok(Err(error)) => Ending::failed(format!("cannot wait for `{program}`: {error}")),
        Err(_) => {
            if let Some(pid) = pid
                .and_then(|p| i32::try_from(p).ok())
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            Ending::failed(format!(
                "timed out after {} and was killed",
                wharf_probe::human(timeout)
            ))
        }
    }
}

impl ControlPlane {
    /// Starts the runbooks alerts asked for (`runbook: {auto: true}`) as this control plane;
    /// one that cannot start (a limit, a parameter of the wrong type) is recorded with why.
    pub(super) fn start_alert_runbooks(&mut self) {
        for due in self.alerting.take_runbooks_due() {
            let actor = self.core.journal.actor().to_owned();
            match self.start_runbook(&due.name, due.params.clone(), false, &due.trigger, &actor) {
                Ok(_) => tracing::info!(
                    runbook = due.name,
                    trigger = due.trigger,
                    "runbook started by an alert"
                ),
                Err(error) => {
                    tracing::warn!(runbook = due.name, error = %error.message, "an alert's runbook could not start");
                    self.core.journal.record(
                        KnownAction::RunbookRefused,
                        &due.name,
                        serde_json::json!({"trigger": due.trigger, "params": due.params, "reason": error.message}),
                    );
                }
            }
        }
    }

    /// What the plan needs of the stack.
    fn stack_view(&self) -> StackView {
        let mut view = StackView {
            replicas: HashMap::new(),
            dependents: HashMap::new(),
        };
        for service in &self.supervisor.services {
            let plan = &service.plan;
            view.replicas.insert(plan.name.clone(), plan.replicas);
            for (dependency, _) in &plan.depends_on {
                view.dependents
                    .entry(dependency.clone())
                    .or_default()
                    .push(plan.name.clone());
            }
        }
        view
    }

    /// Starts a run of runbook `name` with `params` (text, checked against their types), as
    /// `trigger` says (`operator`, or an alert rule). With `dry_run` it only plans: nothing is
    /// stored, recorded or done. Refused whole — nothing changed — when a parameter is wrong,
    /// the plan exceeds the blast-radius cap or the rate limit is reached.
    pub(crate) fn start_runbook(
        &mut self,
        name: &str,
        params: BTreeMap<String, String>,
        dry_run: bool,
        trigger: &str,
        actor: &str,
    ) -> Result<RunStarted, ControlError> {
        let book = self
            .runbooks
            .books
            .get(name)
            .cloned()
            .ok_or_else(|| self.runbooks.unknown(name))?;
        let services: Vec<&str> = self
            .supervisor
            .services
            .iter()
            .map(|s| s.plan.name.as_str())
            .collect();
        let params = typed_params(name, &book, &params, &services)?;
        let actions: Vec<StepAction> = book
            .steps
            .iter()
            .map(|s| resolve(&s.action, &params))
            .collect();
        // A service named through a parameter was checked by its type; a literal by validation.
        for action in &actions {
            if let StepAction::Restart { service }
            | StepAction::Rollback { service }
            | StepAction::Deploy { service, .. }
            | StepAction::Restore { service, .. }
            | StepAction::Drill { service }
            | StepAction::WaitFor { service, .. } = action
                && self.supervisor.index(service).is_none()
            {
                return Err(self.supervisor.unknown(service));
            }
        }
        let now = now_ms();
        let recent = match &book.rate_limit {
            Some(limit) => self.runbooks.recent_starts(name, limit.per.as_std(), now),
            None => 0,
        };
        let plan = plan(
            name,
            &book,
            params.clone(),
            &actions,
            &self.stack_view(),
            recent,
        );
        if dry_run {
            return Ok(RunStarted { plan, run: None });
        }
        if !plan.blast_radius.ok {
            return Err(ControlError::new(
                ErrorCode::LimitExceeded,
                format!(
                    "runbook `{name}` would touch {}; nothing was started",
                    plan.blast_radius.detail
                ),
            ));
        }
        if !plan.rate_limit.ok {
            let limit = book
                .rate_limit
                .as_ref()
                .map(|l| l.per.as_std())
                .unwrap_or_default();
            let next = self
                .runbooks
                .starts
                .get(name)
                .and_then(|s| s.front())
                .and_then(|&t| jiff::Timestamp::from_millisecond(t + limit.as_millis() as i64).ok())
                .map(|t| format!("; the next run is allowed at {t}"))
                .unwrap_or_default();
            return Err(ControlError::new(
                ErrorCode::LimitExceeded,
                format!(
                    "runbook `{name}` is rate limited: {}{next}; nothing was started",
                    plan.rate_limit.detail
                ),
            ));
        }
        let id = self.runbooks.next_id;
        self.runbooks.next_id += 1;
        self.runbooks
            .starts
            .entry(name.to_owned())
            .or_default()
            .push_back(now);
        let started_at = jiff::Timestamp::from_millisecond(now)
            .unwrap_or_else(|_| jiff::Timestamp::now())
            .to_string();
        let run = Run {
            id,
            runbook: name.to_owned(),
            state: RunState::Running,
            params: params.clone(),
            actor: actor.to_owned(),
            trigger: trigger.to_owned(),
            started_at,
            ended_at: None,
            current_step: Some(1),
            steps: plan
                .steps
                .iter()
                .map(|step| StepResult {
                    plan: step.clone(),
                    state: StepState::Pending,
                    attempts: 0,
                    started_at: None,
                    ended_at: None,
                    result: None,
                    output: None,
                    approval: None,
                    approvals: Vec::new(),
                })
                .collect(),
            reason: None,
        };
        self.runbooks.runs.push(Entry {
            run,
            actions,
            progress: Progress::Idle,
        });
        let index = self.runbooks.runs.len() - 1;
        self.runbooks.save(&mut self.core, index);
        let run = &self.runbooks.runs[index].run;
        self.core.journal.record_by(
            actor,
            KnownAction::RunbookStart,
            &target(run),
            json!({"params": params, "trigger": trigger, "steps": run.steps.len(),
                   "services": plan.services, "instances": plan.instances}),
        );
        // The first step begins now rather than at the next pass, so the answer shows it.
        self.advance_run(index, &[]);
        Ok(RunStarted {
            plan,
            run: Some(self.runbooks.runs[index].run.clone()),
        })
    }

    /// Answers a runbook request from the API.
    pub(super) fn runbook_command(&mut self, command: RunbookCommand) {
        match command {
            RunbookCommand::List(reply) => {
                let _ = reply.send(self.runbooks.list());
            }
            RunbookCommand::Start {
                name,
                request,
                actor,
                reply,
            } => {
                let _ = reply.send(self.start_runbook(
                    &name,
                    request.params,
                    request.dry_run,
                    "operator",
                    &actor,
                ));
            }
            RunbookCommand::Runs(reply) => {
                let _ = reply.send(self.runbooks.run_list());
            }
            RunbookCommand::Run { id, reply } => {
                let answer = self
                    .runbooks
                    .find(id)
                    .map(|index| self.runbooks.runs[index].run.clone());
                let _ = reply.send(answer);
            }
            RunbookCommand::Resume { id, actor, reply } => {
                let _ = reply.send(self.resume_run(id, &actor));
            }
            RunbookCommand::Approve {
                id,
                request,
                actor,
                reply,
            } => {
                let _ = reply.send(self.approve_run(id, request.reason, &actor));
            }
            RunbookCommand::Cancel {
                id,
                request,
                actor,
                reply,
            } => {
                let _ = reply.send(self.cancel_run(id, request.reason, &actor));
            }
        }
    }

    fn resume_run(&mut self, id: u64, actor: &str) -> Result<Run, ControlError> {
        let index = self.runbooks.find(id)?;
        let entry = &self.runbooks.runs[index];
        if entry.run.state != RunState::Failed {
            return Err(ControlError::rejected(format!(
                "run {id} is {}: only a failed run resumes",
                entry.run.state.as_str()
            )));
        }
        if entry.actions.is_empty() {
            let actions = self.runbooks.actions_again(&entry.run)?;
            self.runbooks.runs[index].actions = actions;
        }
        let entry = &mut self.runbooks.runs[index];
        let step = entry.run.current_step.unwrap_or(1);
        entry.run.state = RunState::Running;
        entry.run.ended_at = None;
        entry.run.reason = None;
        entry.progress = Progress::Idle;
        if let Some(result) = entry.run.steps.get_mut(step as usize - 1) {
            result.state = StepState::Pending;
        }
        let target = target(&entry.run);
        self.runbooks.save(&mut self.core, index);
        self.core.journal.record_by(
            actor,
            KnownAction::RunbookResume,
            &target,
            json!({"step": step}),
        );
        self.advance_run(index, &[]);
        Ok(self.runbooks.runs[index].run.clone())
    }

    fn approve_run(&mut self, id: u64, reason: String, actor: &str) -> Result<Run, ControlError> {
        let index = self.runbooks.find(id)?;
        if reason.trim().is_empty() {
            return Err(ControlError::new(
                ErrorCode::InvalidRequest,
                "an approval needs a reason (`--reason TEXT`)",
            ));
        }
        let entry = &mut self.runbooks.runs[index];
        if entry.run.state != RunState::WaitingApproval {
            return Err(ControlError::rejected(format!(
                "run {id} is {}: it waits for no approval",
                entry.run.state.as_str()
            )));
        }
        // Four-eyes where the environment requires approvals: whoever started the run may not
        // approve its steps, and a step needs as many distinct approvers as a deploy does.
        let required = self.backups.require().and_then(|r| r.approvals);
        let step = entry.run.current_step.unwrap_or(1);
        if required.is_some() && entry.run.actor == actor {
            return Err(ControlError::rejected(format!(
                "`{actor}` started run {id}: in this environment its approval must come from someone else (four-eyes)"
            )));
        }
        let given = entry
            .run
            .steps
            .get(step as usize - 1)
            .map(|r| r.approvals.clone())
            .unwrap_or_default();
        if given.iter().any(|a| a.actor == actor) {
            return Err(ControlError::rejected(format!(
                "`{actor}` already approved step {step} of run {id}"
            )));
        }
        let actor = actor.to_owned();
        let now = jiff::Timestamp::now().to_string();
        let approval = Approval {
            actor: actor.clone(),
            reason: reason.clone(),
            at: now,
        };
        let count = given.len() as u32 + 1;
        let needed = required.unwrap_or(1);
        if let Some(result) = entry.run.steps.get_mut(step as usize - 1) {
            if required.is_some() {
                result.approvals.push(approval.clone());
            }
            if count >= needed {
                result.approval = Some(approval);
            }
        }
        let target = target(&entry.run);
        // Until the last approval needed, the step stays waiting; each approval is recorded.
        let through = count >= needed;
        if through {
            entry.run.state = RunState::Running;
            entry.progress = Progress::Idle;
        }
        self.runbooks.save(&mut self.core, index);
        self.core.journal.record_by(
            &actor,
            KnownAction::RunbookApprove,
            &target,
            json!({"step": step, "approved_by": actor, "reason": reason, "approvals": count, "approvals_required": needed}),
        );
        if !through {
            return Ok(self.runbooks.runs[index].run.clone());
        }
        self.end_step(index, Ending::ok(format!("approved by {actor}: {reason}")));
        self.advance_run(index, &[]);
        Ok(self.runbooks.runs[index].run.clone())
    }

    fn cancel_run(
        &mut self,
        id: u64,
        reason: Option<String>,
        actor: &str,
    ) -> Result<Run, ControlError> {
        let index = self.runbooks.find(id)?;
        let entry = &mut self.runbooks.runs[index];
        if !matches!(
            entry.run.state,
            RunState::Running | RunState::WaitingApproval | RunState::Failed
        ) {
            return Err(ControlError::rejected(format!(
                "run {id} is {}: there is nothing to cancel",
                entry.run.state.as_str()
            )));
        }
        if let Progress::Task(task) = &entry.progress {
            task.abort();
        }
        entry.progress = Progress::Idle;
        let now = jiff::Timestamp::now().to_string();
        let reason = reason.unwrap_or_else(|| "cancelled by an operator".to_owned());
        entry.run.state = RunState::Cancelled;
        entry.run.ended_at = Some(now.clone());
        entry.run.reason = Some(reason.clone());
        for step in &mut entry.run.steps {
            if matches!(
                step.state,
                StepState::Pending | StepState::Running | StepState::WaitingApproval
            ) {
                step.state = StepState::Cancelled;
            }
        }
        let target = target(&entry.run);
        self.runbooks.save(&mut self.core, index);
        self.core.journal.record_by(
            actor,
            KnownAction::RunbookCancel,
            &target,
            json!({"reason": reason}),
        );
        Ok(self.runbooks.runs[index].run.clone())
    }

    /// Each pass: drives every running run as far as it goes now.
    pub(super) fn drive_runbooks(&mut self, statuses: &[ServiceStatus]) {
        for index in 0..self.runbooks.runs.len() {
            let entry = &self.runbooks.runs[index];
            match (&entry.run.state, &entry.progress) {
                (RunState::Running, _) => self.advance_run(index, statuses),
                // An approval with a timeout that passed fails its step.
                (RunState::WaitingApproval, Progress::Approval { deadline: Some(at) })
                    if Instant::now() >= *at =>
                {
                    let reason = "not approved within the step's timeout".to_owned();
                    self.end_step(index, Ending::failed(reason.clone()));
                    self.runbooks.fail(&mut self.core, index, reason);
                }
                _ => {}
            }
        }
    }

    /// A step's task ended: the step ends with it, if it is still the one waiting.
    pub(super) fn on_runbook_step(&mut self, done: RunbookStepDone) {
        let Ok(index) = self.runbooks.find(done.run) else {
            return;
        };
        let entry = &self.runbooks.runs[index];
        let current = entry.run.current_step == Some(done.step)
            && entry.run.state == RunState::Running
            && matches!(entry.progress, Progress::Task(_))
            && entry
                .run
                .steps
                .get(done.step as usize - 1)
                .is_some_and(|s| s.attempts == done.attempt);
        if !current {
            return;
        }
        self.end_step(
            index,
            Ending {
                ok: done.ok,
                result: done.result,
                output: done.output,
            },
        );
        self.advance_run(index, &[]);
    }

    /// Begins the current step, or judges the one under way; goes on to the next while steps
    /// end at once. `statuses` is this pass's report (empty outside a pass: steps that need
    /// it wait for the next).
    fn advance_run(&mut self, index: usize, statuses: &[ServiceStatus]) {
        loop {
            let entry = &self.runbooks.runs[index];
            if entry.run.state != RunState::Running {
                return;
            }
            let Some(step) = entry.run.current_step else {
                return;
            };
            if step as usize > entry.run.steps.len() {
                self.succeed_run(index);
                return;
            }
            let ending = match entry.progress {
                Progress::Idle => self.begin_step(index),
                _ if statuses.is_empty() => None,
                _ => self.check_step(index, statuses),
            };
            match ending {
                Some(ending) => {
                    let ok = ending.ok;
                    let reason = ending.result.clone();
                    self.end_step(index, ending);
                    if !ok {
                        self.runbooks.fail(&mut self.core, index, reason);
                        return;
                    }
                }
                None => return,
            }
        }
    }

    /// Starts the current step: records it, then acts. An ending when it is over at once
    /// (refused, or nothing to wait for).
    fn begin_step(&mut self, index: usize) -> Option<Ending> {
        let entry = &self.runbooks.runs[index];
        let step = entry.run.current_step.unwrap_or(1);
        let position = step as usize - 1;
        let Some(action) = entry.actions.get(position).cloned() else {
            return Some(Ending::failed("the run's steps are not known any more"));
        };
        let timeout = self
            .runbooks
            .books
            .get(&entry.run.runbook)
            .and_then(|b| b.steps.get(position))
            .and_then(|s| s.timeout)
            .map(|t| t.as_std());
        let entry = &mut self.runbooks.runs[index];
        // An approval waits from its start: the row saved with `runbook.step_start` says so.
        let approval = matches!(action, StepAction::Approve { .. });
        if approval {
            entry.run.state = RunState::WaitingApproval;
        }
        let result = &mut entry.run.steps[position];
        result.state = if approval {
            StepState::WaitingApproval
        } else {
            StepState::Running
        };
        result.attempts += 1;
        result.started_at = Some(jiff::Timestamp::now().to_string());
        result.ended_at = None;
        result.result = None;
        result.output = None;
        let attempt = result.attempts;
        let details = json!({"step": step, "action": action.key(), "detail": result.plan.detail,
                             "touches": result.plan.touches, "attempt": attempt});
        let run_id = entry.run.id;
        let target = target(&entry.run);
        self.runbooks.save(&mut self.core, index);
        let actor = self.runbooks.runs[index].run.actor.clone();
        self.core
            .journal
            .record_by(&actor, KnownAction::RunbookStepStart, &target, details);
        let deadline = Instant::now() + timeout.unwrap_or(DEFAULT_ACTION_TIMEOUT);
        let progress = match action {
            StepAction::Restart { service } => {
                let since = jiff::Timestamp::now();
                if let Err(error) = self.supervisor.begin_restart(&mut self.core, &service) {
                    return Some(Ending::failed(error.message));
                }
                Progress::Restart {
                    service,
                    since,
                    deadline,
                }
            }
            StepAction::Rollback { service } => {
                let abort = self
                    .supervisor
                    .index(&service)
                    .is_some_and(|i| self.supervisor.services[i].active_rollout().is_some());
                match self.begin_rollback(&service) {
                    Ok(view) => Progress::Rollout {
                        service,
                        id: view.id,
                        abort,
                        deadline,
                    },
                    Err(error) => return Some(Ending::failed(error.message)),
                }
            }
            StepAction::Deploy { service, version } => {
                let request = crate::deploy::DeployRequest {
                    version,
                    command: None,
                    strategy: None,
                };
                match self.begin_deploy(&service, request) {
                    Ok(view) => Progress::Rollout {
                        service,
                        id: view.id,
                        abort: false,
                        deadline,
                    },
                    Err(error) => return Some(Ending::failed(error.message)),
                }
            }
            StepAction::Restore { service, snapshot } => {
                let command = BackupCommand::Restore(wharf_api::RestoreRequest {
                    service,
                    snapshot,
                    target: wharf_api::RestoreTarget::InPlace { confirm: true },
                });
                match self.start_job_step(command, timeout.unwrap_or(DEFAULT_JOB_TIMEOUT)) {
                    Ok(progress) => progress,
                    Err(ending) => return Some(ending),
                }
            }
            StepAction::Drill { service } => {
                let command = BackupCommand::Drill(wharf_api::DrillRequest {
                    service,
                    snapshot: None,
                });
                match self.start_job_step(command, timeout.unwrap_or(DEFAULT_JOB_TIMEOUT)) {
                    Ok(progress) => progress,
                    Err(ending) => return Some(ending),
                }
            }
            StepAction::SecretRotate { secret } => {
                match self.rotate_step(secret, run_id, step, attempt) {
                    Ok(progress) => progress,
                    Err(ending) => return Some(ending),
                }
            }
            StepAction::Exec { command, timeout } => {
                let workdir = self.core.config.workdir.clone();
                let events = self.core.events.clone();
                let task = tokio::spawn(async move {
                    let ending = exec(command, workdir, timeout.as_std()).await;
                    let _ = events.send(step_done(run_id, step, attempt, ending)).await;
                });
                Progress::Task(task.abort_handle())
            }
            StepAction::Http {
                url,
                method,
                expect_status,
            } => {
                let check = wharf_probe::Check::Http(Box::new(wharf_probe::HttpProbe {
                    method,
                    url,
                    headers: Vec::new(),
                    expect_status,
                    body_contains: None,
                    json: None,
                    max_latency: None,
                    warn_latency: None,
                }));
                let prober = self.core.prober.clone();
                let events = self.core.events.clone();
                let bound = timeout.unwrap_or(DEFAULT_HTTP_TIMEOUT);
                let task = tokio::spawn(async move {
                    let outcome = prober.run(&check, bound).await;
                    let ending = match outcome.reason {
                        Some(reason) if !outcome.passed() => Ending::failed(reason),
                        _ => Ending::ok(format!(
                            "answered in {}",
                            wharf_probe::human(outcome.latency)
                        )),
                    };
                    let _ = events.send(step_done(run_id, step, attempt, ending)).await;
                });
                Progress::Task(task.abort_handle())
            }
            StepAction::WaitFor {
                service,
                state,
                within,
            } => Progress::WaitFor {
                service,
                state,
                deadline: Instant::now() + within.as_std(),
            },
            StepAction::Approve { .. } => Progress::Approval {
                deadline: timeout.map(|t| Instant::now() + t),
            },
        };
        self.runbooks.runs[index].progress = progress;
        None
    }

    /// Rotates a secret without a hook: on the store writer, the rotation use case stores a
    /// generated value with its `secret.rotate` entry; then the task asks this loop for a reload
    /// (as the API would), so the services using it move to the new value. A secret with a
    /// `rotate_command` is refused: no hook runs in the control plane.
    fn rotate_step(
        &mut self,
        secret: String,
        run: u64,
        step: u32,
        attempt: u32,
    ) -> Result<Progress, Ending> {
        let policy = self
            .injector
            .policies
            .iter()
            .find(|(name, _)| *name == secret)
            .map(|(_, policy)| policy.clone())
            .ok_or_else(|| {
                Ending::failed(format!("`{secret}` is not declared under `secrets:`"))
            })?;
        if policy.rotate_command.is_some() {
            return Err(Ending::failed(format!(
                "`{secret}` has a `rotate_command`, and no hook runs in the control plane: rotate it with `wharf secret rotate {secret}`"
            )));
        }
        let actor = wharf_ops::Actor(self.runbooks.runs_actor(run));
        let state_dir = self.core.config.state_dir.clone();
        let workdir = self.core.config.workdir.clone();
        let writer = self.core.journal.writer();
        let events = self.core.events.clone();
        let reason = format!("runbook run {run} step {step}");
        let task = tokio::spawn(async move {
            let rotated = writer
                .run(move |store| {
                    let (secrets, _) = wharf_ops::secrets::unlock(store, &state_dir, false)?;
                    wharf_ops::secrets::rotate(
                        store,
                        &secrets,
                        &actor,
                        &secret,
                        &policy,
                        &workdir,
                        Some(&reason),
                        wharf_ops::secrets::HOOK_TIMEOUT,
                    )
                    .map(|rotated| match rotated {
                        wharf_ops::secrets::Rotated::Done { info, .. } => {
                            format!("{secret} is now version {}", info.version)
                        }
                        wharf_ops::secrets::Rotated::HookFailed { new, .. } => {
                            format!("{secret} stored as version {}", new.version)
                        }
                    })
                })
                .await;
            let ending = match rotated {
                None => Ending::failed("the store writer stopped"),
                Some(Err(error)) => Ending::failed(format!("the rotation failed: {error}")),
                Some(Ok(done)) => {
                    let (reply, answer) = oneshot::channel();
                    let request = wharf_api::ReloadRequest::default();
                    let asked = events
                        .send(Event::Command(crate::events::Command::Reload {
                            request,
                            reply,
                        }))
                        .await;
                    match (asked, answer.await) {
                        (Ok(()), Ok(Ok(reload))) => Ending::ok(format!(
                            "{done}; restarting: {}",
                            if reload.restarting.is_empty() {
                                "nothing".to_owned()
                            } else {
                                reload.restarting.join(", ")
                            }
                        )),
                        (_, Ok(Err(error))) => Ending::failed(format!(
                            "{done}, but the reload failed: {}",
                            error.message
                        )),
                        _ => Ending::failed(format!("{done}, but the control plane stopped")),
                    }
                }
            };
            let _ = events.send(step_done(run, step, attempt, ending)).await;
        });
        Ok(Progress::Task(task.abort_handle()))
    }

    /// Starts a restore or drill job for a step.
    fn start_job_step(
        &mut self,
        command: BackupCommand,
        timeout: Duration,
    ) -> Result<Progress, Ending> {
        if let BackupCommand::Restore(request) = &command
            && super::approvals::restore_is_live(request)
            && let Some(count) = self.backups.require().and_then(|r| r.approvals)
        {
            return Err(Ending::failed(format!(
                "a restore of `{}` over live data needs {count} approval(s) in this environment; ask for it with `wharf restore`",
                request.service
            )));
        }
        let started = self
            .backup_command(command)
            .map_err(|error| Ending::failed(error.message))?;
        let job = started
            .jobs
            .first()
            .ok_or_else(|| Ending::failed("no job was started"))?;
        Ok(Progress::Job {
            id: job.id,
            deadline: Instant::now() + timeout,
        })
    }

    /// Whether the step under way is over, judged on this pass's view.
    fn check_step(&mut self, index: usize, statuses: &[ServiceStatus]) -> Option<Ending> {
        let now = Instant::now();
        let find = |name: &str| statuses.iter().find(|s| s.name == name);
        match &self.runbooks.runs[index].progress {
            Progress::Idle | Progress::Task(_) => None,
            // Judged by `drive_runbooks` while the run waits.
            Progress::Approval { .. } => None,
            Progress::Restart {
                service,
                since,
                deadline,
            } => {
                let status = find(service)?;
                let fresh = status.instances.iter().all(|i| {
                    i.phase == wharf_api::InstancePhase::Running
                        && i.ready != Some(false)
                        && i.started_at
                            .as_deref()
                            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                            .is_some_and(|t| t >= *since)
                });
                if fresh && status.instances.len() as u32 == status.desired {
                    return Some(Ending::ok(format!(
                        "{} instance(s) replaced and ready",
                        status.instances.len()
                    )));
                }
                if status.state == wharf_api::ServiceState::Failed || now >= *deadline {
                    return Some(Ending::failed(format!(
                        "the restart of {service} did not finish: {}",
                        status.reason.as_deref().unwrap_or(status.state.as_str())
                    )));
                }
                None
            }
            Progress::Rollout {
                service,
                id,
                abort,
                deadline,
            } => {
                let index = self.supervisor.index(service)?;
                let view = self.rollout_view(index)?;
                if view.id != *id {
                    return Some(Ending::failed(format!(
                        "another rollout of {service} replaced this one"
                    )));
                }
                match view.outcome {
                    Some(RolloutOutcome::Succeeded) => Some(Ending::ok(format!(
                        "{service} now serves {}",
                        view.new_version
                    ))),
                    Some(RolloutOutcome::RolledBack) if *abort => Some(Ending::ok(format!(
                        "the rollout of {} was rolled back; {service} serves {}",
                        view.new_version, view.stable_version
                    ))),
                    Some(RolloutOutcome::RolledBack) => Some(Ending::failed(format!(
                        "the rollout of {} to {service} rolled back: {}",
                        view.new_version,
                        view.reason.as_deref().unwrap_or("no reason given")
                    ))),
                    None if now >= *deadline => Some(Ending::failed(format!(
                        "the rollout of {} to {service} did not end within the step's timeout",
                        view.new_version
                    ))),
                    None => None,
                }
            }
            Progress::Job { id, deadline } => {
                let job = self.backups.job(*id)?;
                match job.state {
                    JobState::Succeeded => Some(Ending::ok(format!(
                        "{} of {} succeeded{}",
                        job.kind.as_str(),
                        job.service.as_deref().unwrap_or("the repository"),
                        job.snapshot
                            .as_deref()
                            .map(|s| format!(" (snapshot {s})"))
                            .unwrap_or_default()
                    ))),
                    JobState::Failed => Some(Ending::failed(format!(
                        "{} failed: {}",
                        job.kind.as_str(),
                        job.error.as_deref().unwrap_or("no reason given")
                    ))),
                    JobState::Running if now >= *deadline => Some(Ending::failed(format!(
                        "{} job {id} did not end within the step's timeout (it goes on)",
                        job.kind.as_str()
                    ))),
                    JobState::Running => None,
                }
            }
            Progress::WaitFor {
                service,
                state,
                deadline,
            } => {
                let status = find(service)?;
                if reached(*state, status) {
                    return Some(Ending::ok(format!(
                        "{service} is {}",
                        status.state.as_str()
                    )));
                }
                (now >= *deadline).then(|| {
                    Ending::failed(format!(
                        "{service} was not {} in time: it is {}{}",
                        wait_word(*state),
                        status.state.as_str(),
                        status
                            .reason
                            .as_deref()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    ))
                })
            }
        }
    }

    /// Records the current step's end; a success moves the run to the next step.
    fn end_step(&mut self, index: usize, ending: Ending) {
        let entry = &mut self.runbooks.runs[index];
        entry.progress = Progress::Idle;
        let step = entry.run.current_step.unwrap_or(1);
        let Some(result) = entry.run.steps.get_mut(step as usize - 1) else {
            return;
        };
        result.state = if ending.ok {
            StepState::Succeeded
        } else {
            StepState::Failed
        };
        result.ended_at = Some(jiff::Timestamp::now().to_string());
        result.result = Some(ending.result.clone());
        result.output = ending.output.clone();
        let details = json!({"step": step, "action": result.plan.action,
                             "result": result.state.as_str(), "detail": ending.result,
                             "output": ending.output, "attempt": result.attempts});
        if ending.ok {
            entry.run.current_step = Some(step + 1);
        }
        let target = target(&entry.run);
        let actor = entry.run.actor.clone();
        self.runbooks.save(&mut self.core, index);
        self.core
            .journal
            .record_by(&actor, KnownAction::RunbookStepEnd, &target, details);
    }

    fn succeed_run(&mut self, index: usize) {
        let entry = &mut self.runbooks.runs[index];
        entry.run.state = RunState::Succeeded;
        entry.run.current_step = None;
        entry.run.ended_at = Some(jiff::Timestamp::now().to_string());
        let steps = entry.run.steps.len();
        let target = target(&entry.run);
        self.runbooks.save(&mut self.core, index);
        self.core.journal.record(
            KnownAction::RunbookSucceeded,
            &target,
            json!({"steps": steps}),
        );
    }
}

fn step_done(run: u64, step: u32, attempt: u32, ending: Ending) -> Event {
    Event::RunbookStep(Box::new(RunbookStepDone {
        run,
        step,
        attempt,
        ok: ending.ok,
        result: ending.result,
        output: ending.output,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_command_past_its_timeout_is_killed_with_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let ending = exec(
            vec![
                "sh".into(),
                "-c".into(),
                "sleep 30 & sleep 30; echo never".into(),
            ],
            dir.path().to_owned(),
            Duration::from_millis(300),
        )
        .await;
        assert!(
            !ending.ok && ending.result.contains("timed out"),
            "{}",
            ending.result
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        let ending = exec(
            vec![
                "sh".into(),
                "-c".into(),
                "echo out; echo err >&2; exit 3".into(),
            ],
            dir.path().to_owned(),
            Duration::from_secs(10),
        )
        .await;
        assert!(!ending.ok);
        assert_eq!(ending.result, "exit code 3");
        assert_eq!(ending.output.as_deref(), Some("out\nerr\n"));
    }
}
