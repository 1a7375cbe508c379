//! Deploys that wait for approval: an environment's `require.approvals: N` turns a deploy into
//! a request that starts only once N distinct approvers other than its requester approve it
//! (four-eyes), and ends when one rejects it or its deadline passes. Every step is a ledger
//! entry naming who acted.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::deploy::DeployRequest;

/// Where a deploy request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeployRequestState {
    /// Waiting for approvals.
    PendingApproval,
    /// Approved, and its rollout started (`rollout_id`).
    Started,
    /// Approved, but the rollout could not start then (the reason says why).
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

/// A deploy waiting for (or past) its approvals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PendingDeploy {
    /// `d-N`: what `wharf approve` names.
    #[schema(example = "d-1")]
    pub id: String,
    pub service: String,
    pub request: DeployRequest,
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
    /// Why it failed to start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /v1/deploys/{id}/approve` and `…/reject`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideDeployRequest {
    /// Why: recorded in the ledger with the approver's identity.
    pub reason: String,
}

/// `GET /v1/deploys`: open requests first, then recent ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PendingDeployList {
    pub deploys: Vec<PendingDeploy>,
}

/// What `POST /v1/services/{name}/deploy` answers: the rollout it started (200), or the
/// request waiting for approvals (202).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DeployAnswer {
    Pending(PendingDeploy),
    Started(Box<crate::deploy::RolloutView>),
}
