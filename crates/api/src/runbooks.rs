//! Runbooks and their runs: the manifest's runbooks as the API lists them, the plan of a run
//! (each step with its parameters filled in, what it touches, the blast-radius and rate-limit
//! verdicts), and a run's document — its state and each step's start, end, result and output —
//! which the control plane stores and answers with.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// A step is under way.
    Running,
    /// An `approve` step waits for `wharf runbook approve RUN --reason …`.
    WaitingApproval,
    /// A step failed (or the control plane stopped under it); `resume` starts again there.
    Failed,
    /// Every step succeeded.
    Succeeded,
    /// An operator cancelled it; it does not resume.
    Cancelled,
}

impl RunState {
    /// The word on the wire and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::WaitingApproval => "waiting_approval",
            RunState::Failed => "failed",
            RunState::Succeeded => "succeeded",
            RunState::Cancelled => "cancelled",
        }
    }

    /// Whether the run may still change (running or waiting).
    pub fn is_active(self) -> bool {
        matches!(self, RunState::Running | RunState::WaitingApproval)
    }
}

/// Where one step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Not reached yet.
    Pending,
    Running,
    WaitingApproval,
    Succeeded,
    Failed,
    /// Not reached because the run was cancelled.
    Cancelled,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Running => "running",
            StepState::WaitingApproval => "waiting_approval",
            StepState::Succeeded => "succeeded",
            StepState::Failed => "failed",
            StepState::Cancelled => "cancelled",
        }
    }
}

/// A person's confirmation of an `approve` step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Approval {
    /// Who approved (the ledger's actor).
    pub actor: String,
    /// Why, in their words.
    pub reason: String,
    /// RFC 3339.
    pub at: String,
}

/// One step of a plan: what it will do with the run's parameters filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlannedStep {
    /// 1-based.
    pub number: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The action's key (`restart`, `wait_for`, …).
    pub action: String,
    /// What it does, parameters filled in (`restart api`, `exec ./fix.sh --all`).
    pub detail: String,
    /// The services it acts on (none for `exec`, `http`, `wait_for`, `approve`).
    pub touches: Vec<String>,
    /// How many instances it acts on.
    pub instances: u32,
}

/// A limit's verdict on a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Verdict {
    /// Whether the run stays within the limit (true when the runbook sets none).
    pub ok: bool,
    /// The figures in words (`2 of at most 3 services`, `no limit`).
    pub detail: String,
}

/// A run's plan: every step resolved, what the run touches in all, and whether the runbook's
/// limits let it start. A dry run answers with it and changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunPlan {
    pub runbook: String,
    /// Every parameter's value (given or default), in canonical text.
    pub params: BTreeMap<String, String>,
    pub steps: Vec<PlannedStep>,
    /// The distinct services the steps act on.
    pub services: Vec<String>,
    /// The instances they act on in all.
    pub instances: u32,
    pub blast_radius: Verdict,
    pub rate_limit: Verdict,
}

/// One step of a run and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StepResult {
    #[serde(flatten)]
    pub plan: PlannedStep,
    pub state: StepState,
    /// How many times it was started (a resumed step counts again).
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// What happened, in words (why it failed, what it did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// A command's or a request's output, truncated (never more than a few KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// The approval that let an `approve` step through (the last one, where several were
    /// needed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// Where the environment requires N approvals: every one given so far, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<Approval>,
}

/// A run of a runbook: the document the control plane stores and answers with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Run {
    pub id: u64,
    pub runbook: String,
    pub state: RunState,
    pub params: BTreeMap<String, String>,
    /// Who started it (the ledger's actor).
    pub actor: String,
    /// What started it (`operator`, or an alert rule's description).
    pub trigger: String,
    /// RFC 3339.
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// The step under way, waiting or failed (1-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step: Option<u32>,
    pub steps: Vec<StepResult>,
    /// Why it failed or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /v1/runbooks/{name}/runs`: parameters as text (each checked against its declared
/// type), and whether only to plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRunRequest {
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Plan only: nothing is stored, recorded or done.
    #[serde(default)]
    pub dry_run: bool,
}

/// The answer to a start: the plan, and the run unless it was a dry run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunStarted {
    pub plan: RunPlan,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<Run>,
}

/// `POST /v1/runbooks/runs/{id}/approve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// Why the step may go on; recorded with who approved.
    pub reason: String,
}

/// `POST /v1/runbooks/runs/{id}/cancel`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    #[serde(default)]
    pub reason: Option<String>,
}

/// A declared parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ParamInfo {
    pub name: String,
    /// `string`, `int`, `bool`, `duration` or `service`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A runbook of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunbookInfo {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub params: Vec<ParamInfo>,
    /// Each step as written (`restart ${param:svc}`).
    pub steps: Vec<String>,
    /// `N runs per DURATION`, when limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<String>,
    /// `N services, M instances`, when capped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blast_radius: Option<String>,
}

/// `GET /v1/runbooks`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunbookList {
    pub runbooks: Vec<RunbookInfo>,
}

/// `GET /v1/runbooks/runs`: the newest runs first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunList {
    pub runs: Vec<Run>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_with_an_unknown_field_is_refused() {
        let error = serde_json::from_str::<StartRunRequest>(r#"{"params": {}, "dryrun": true}"#)
            .unwrap_err();
        assert!(
            error.to_string().contains("unknown field `dryrun`"),
            "{error}"
        );
        let ok: StartRunRequest = serde_json::from_str(r#"{"dry_run": true}"#).unwrap();
        assert!(ok.dry_run && ok.params.is_empty());
    }

    #[test]
    fn states_are_their_wire_words() {
        for state in [
            RunState::Running,
            RunState::WaitingApproval,
            RunState::Failed,
            RunState::Succeeded,
            RunState::Cancelled,
        ] {
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::Value::from(state.as_str())
            );
        }
    }
}
