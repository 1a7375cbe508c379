//! Changes that wait for approval: an environment's `require.approvals: N` turns a deploy, or a
//! restore over live data (in place or into another server), into a request that runs only once
//! N distinct approvers other than its requester approve it (four-eyes), and ends when one
//! rejects it or its deadline passes. Every step is a ledger entry naming who acted.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::backups::{JobsStarted, RestoreRequest};
use crate::deploy::DeployRequest;

/// What waits for approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GatedAction {
    /// `wharf deploy SERVICE --version V`.
    Deploy { request: DeployRequest },
    /// `wharf restore SERVICE --confirm` or `--to URL`.
    Restore { request: RestoreRequest },
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeployRequestState {
    /// Waiting for approvals.
    PendingApproval,
    /// Approved, and started (`rollout_id` or `job_id`).
    Started,
    /// Approved, but it could not start then (the reason says why).
    Failed,
    /// An approver rejected it.
    Rejected,
    /// Its deadline passed first.
    Expired,
}

impl DeployRequestState {
    pub fn is_open(self) -> bool {
        self == DeployRequestState::PendingApproval
    }
}

/// One approver's word.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeployApproval {
    #[schema(example = "bob")]
    pub by: String,
    pub at: String,
    pub reason: String,
}

/// A change waiting for (or past) its approvals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PendingDeploy {
    /// `r-N`: what `wharf approve` names.
    #[schema(example = "r-1")]
    pub id: String,
    /// The service deployed or the datastore restored.
    pub service: String,
    pub action: GatedAction,
    pub state: DeployRequestState,
    /// Who asked; never counts as an approver.
    pub requested_by: String,
    pub requested_at: String,
    /// When it expires unless approved.
    pub expires_at: String,
    /// How many distinct approvers it needs.
    pub approvals_required: u32,
    pub approvals: Vec<DeployApproval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_by: Option<DeployApproval>,
    /// The rollout it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_id: Option<u64>,
    /// The restore job it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<u64>,
    /// Why it failed to start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A request's number from its id as people write it (`r-3` or `3`).
pub fn request_number(id: &str) -> Option<u64> {
    id.trim().trim_start_matches("r-").parse().ok()
}

impl PendingDeploy {
    /// What it asks, in a few words (`deploy api 1.5.0`, `restore db in place`).
    pub fn summary(&self) -> String {
        match &self.action {
            GatedAction::Deploy { request } => {
                let mut text = format!("deploy {} {}", self.service, request.version);
                if let Some(command) = &request.command {
                    text.push_str(&format!(" with command `{}`", command.join(" ")));
                }
                if let Some(strategy) = &request.strategy {
                    text.push_str(&format!(" ({strategy})"));
                }
                text
            }
            GatedAction::Restore { request } => {
                let target = match &request.target {
                    crate::backups::RestoreTarget::InPlace { .. } => "in place".to_owned(),
                    crate::backups::RestoreTarget::Url { .. } => "into another server".to_owned(),
                    crate::backups::RestoreTarget::Sandbox => "into a sandbox".to_owned(),
                };
                let snapshot = request.snapshot.as_deref().unwrap_or("latest");
                format!("restore {} ({snapshot}) {target}", self.service)
            }
        }
    }
}

/// `POST /v1/approvals/{id}/approve` and `…/reject`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideDeployRequest {
    /// Why: recorded in the ledger with the approver's identity.
    pub reason: String,
}

/// `GET /v1/approvals`: open requests first, then recent ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PendingDeployList {
    pub deploys: Vec<PendingDeploy>,
}

/// What `POST /v1/services/{name}/deploy` answers: the rollout it started (202), or the
/// request waiting for approvals (201).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DeployAnswer {
    Pending(Box<PendingDeploy>),
    Started(Box<crate::deploy::RolloutView>),
}

/// What `POST /v1/restores` answers: the jobs it started (202), or — a restore over live data
/// where the environment requires approvals — the request waiting for them (201).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RestoreAnswer {
    Pending(Box<PendingDeploy>),
    Started(JobsStarted),
}
