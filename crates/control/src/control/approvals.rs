//! Governance of deploys: the environment's `require.gates` (a passing verdict of each gate
//! for the version, read from the ledger's `gate.check` entries) and `require.approvals`
//! (four-eyes: the deploy waits as a request until that many distinct approvers other than
//! its requester approve it; one rejection ends it; so does its deadline).
//!
//! A request is checked in full when asked for (so a deploy that could not start is refused
//! at once, with every reason) and again when the last approval arrives (the world may have
//! changed: a gate failed since, a rollout began); what cannot start then ends as `failed`
//! with why. Every change saves the request's row with its `approval.*` entry, naming who
//! acted; the `deploy.start` entry of an approved deploy names its requester and approvers.

use serde_json::json;
use wharf_api::{
    ControlError, DeployAnswer, DeployApproval, DeployRequestState, ErrorCode, PendingDeploy,
    PendingDeployList,
};
use wharf_ledger::KnownAction;

use super::{ControlPlane, Core};
use crate::deploy::DeployRequest;

/// How long a deploy request waits for its approvals.
pub(super) const APPROVAL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// Closed requests kept in memory for listing (older ones stay in the store).
const RECENT: u32 = 100;

/// Who asked for a deploy that starts now, and who approved it.
pub(super) struct DeployedBy {
    pub requester: String,
    /// The request (`d-N`), when it went through approvals.
    pub request: Option<String>,
    pub approvers: Vec<String>,
}

/// The deploy requests: open ones and recent closed ones.
pub(super) struct Approvals {
    requests: Vec<PendingDeploy>,
    next_id: u64,
}

fn number(id: &str) -> Option<u64> {
    id.trim().trim_start_matches("d-").parse().ok()
}

fn state_word(state: DeployRequestState) -> &'static str {
    match state {
        DeployRequestState::PendingApproval => "pending_approval",
        DeployRequestState::Started => "started",
        DeployRequestState::Failed => "failed",
        DeployRequestState::Rejected => "rejected",
        DeployRequestState::Expired => "expired",
    }
}

impl Approvals {
    /// Reads the open and recent requests back (a restarted control plane keeps them).
    pub(super) fn load(core: &Core) -> Approvals {
        let store = core.journal.store();
        let requests: Vec<PendingDeploy> = store
            .deploy_requests(RECENT)
            .unwrap_or_else(|error| {
                tracing::error!(%error, "cannot read the deploy requests");
                Vec::new()
            })
            .iter()
            .filter_map(|text| serde_json::from_str(text).ok())
            .collect();
        let next_id = store.last_deploy_request_id().unwrap_or(0) + 1;
        Approvals { requests, next_id }
    }

    pub(super) fn list(&self) -> PendingDeployList {
        let mut deploys: Vec<PendingDeploy> = self
            .requests
            .iter()
            .filter(|r| r.state.is_open())
            .cloned()
            .collect();
        let mut closed: Vec<PendingDeploy> = self
            .requests
            .iter()
            .filter(|r| !r.state.is_open())
            .cloned()
            .collect();
        closed.sort_by_key(|r| std::cmp::Reverse(number(&r.id)));
        deploys.extend(closed);
        PendingDeployList { deploys }
    }

    fn open_for(&self, service: &str) -> Option<&PendingDeploy> {
        self.requests
            .iter()
            .find(|r| r.service == service && r.state.is_open())
    }

    fn position(&self, id: &str) -> Option<usize> {
        let wanted = number(id)?;
        self.requests
            .iter()
            .position(|r| number(&r.id) == Some(wanted))
    }

    /// Saves `request`'s row with its entry (by `actor`).
    fn save(
        core: &mut Core,
        request: &PendingDeploy,
        actor: &str,
        action: KnownAction,
        details: serde_json::Value,
    ) {
        let Some(id) = number(&request.id) else {
            return;
        };
        let text = serde_json::to_string(request).unwrap_or_default();
        core.journal
            .save_deploy_request(id, &request.service, state_word(request.state), &text);
        core.journal
            .record_by(actor, action, &format!("deploy/{}", request.id), details);
    }

    fn trim(&mut self) {
        let closed = self.requests.iter().filter(|r| !r.state.is_open()).count();
        let mut excess = closed.saturating_sub(RECENT as usize);
        self.requests.retain(|r| {
            if excess > 0 && !r.state.is_open() {
                excess -= 1;
                return false;
            }
            true
        });
    }
}

impl ControlPlane {
    /// What `require.gates` finds unmet for `service` at `version` (empty: every gate's latest
    /// verdict for it passed). Read from the ledger, where `wharf gate check` records them.
    pub(super) fn unmet_gates(&self, service: &str, version: &str) -> Vec<String> {
        let Some(require) = self.backups.require() else {
            return Vec::new();
        };
        let store = self.core.journal.store();
        require
            .gates
            .iter()
            .filter_map(|gate| {
                let target = format!("{gate}/{service}@{version}");
                match store.last_gate_verdict(&target) {
                    Ok(Some((_, verdict))) if verdict == "pass" => None,
                    Ok(Some((seq, verdict))) => Some(format!(
                        "gate `{gate}`'s latest verdict for {service}@{version} is {verdict} (ledger entry {seq})"
                    )),
                    Ok(None) => Some(format!(
                        "gate `{gate}` has no verdict for {service}@{version} (run `wharf gate check {gate} --service {service} --version {version} --input …`)"
                    )),
                    Err(error) => {
                        tracing::error!(%error, gate, "cannot read gate verdicts");
                        Some(format!("gate `{gate}`'s verdicts could not be read"))
                    }
                }
            })
            .collect()
    }

    /// `POST /v1/services/{name}/deploy`: checks everything a deploy needs; where the
    /// environment requires approvals, records a request that waits for them, else starts.
    pub(super) fn request_deploy(
        &mut self,
        name: &str,
        request: DeployRequest,
        actor: &str,
    ) -> Result<DeployAnswer, ControlError> {
        let required = self.backups.require().and_then(|r| r.approvals);
        if let Some(open) = self.approvals.open_for(name) {
            return Err(ControlError::rejected(format!(
                "deploy request {} of `{name}` {} waits for approval; it must be approved, rejected or expire first",
                open.id, open.request.version
            )));
        }
        let prepared = self.prepare_deploy(name, request.clone())?;
        let Some(required) = required else {
            let by = DeployedBy {
                requester: actor.to_owned(),
                request: None,
                approvers: Vec::new(),
            };
            return self
                .start_prepared(prepared, Some(by))
                .map(|view| DeployAnswer::Started(Box::new(view)));
        };
        let now = jiff::Timestamp::now();
        let expires_at = now
            .checked_add(jiff::SignedDuration::try_from(APPROVAL_DEADLINE).unwrap_or_default())
            .unwrap_or(now);
        let id = self.approvals.next_id;
        self.approvals.next_id += 1;
        let pending = PendingDeploy {
            id: format!("d-{id}"),
            service: name.to_owned(),
            request: DeployRequest {
                version: request.version.trim().to_owned(),
                ..request
            },
            state: DeployRequestState::PendingApproval,
            requested_by: actor.to_owned(),
            requested_at: now.to_string(),
            expires_at: expires_at.to_string(),
            approvals_required: required,
            approvals: Vec::new(),
            rejected_by: None,
            rollout_id: None,
            reason: None,
        };
        Approvals::save(
            &mut self.core,
            &pending,
            actor,
            KnownAction::ApprovalRequest,
            json!({
                "id": pending.id,
                "service": name,
                "version": pending.request.version,
                "approvals_required": required,
                "environment": self.backups.environment(),
                "expires_at": pending.expires_at,
            }),
        );
        tracing::info!(service = name, id = %pending.id, required, "deploy waits for approvals");
        self.approvals.requests.push(pending.clone());
        Ok(DeployAnswer::Pending(pending))
    }

    /// An approver's word on request `id`: four-eyes (never the requester, never twice the
    /// same person); the last approval needed starts the deploy, checked again first.
    pub(super) fn decide_deploy(
        &mut self,
        id: &str,
        approve: bool,
        actor: &str,
        reason: &str,
    ) -> Result<PendingDeploy, ControlError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 || reason.chars().any(char::is_control)
        {
            return Err(ControlError::new(
                ErrorCode::InvalidRequest,
                "a reason is required: one line of at most 500 characters",
            ));
        }
        let index = self.approvals.position(id).ok_or_else(|| {
            ControlError::new(
                ErrorCode::NotFound,
                format!("no deploy request `{id}` (`wharf approvals` lists them)"),
            )
        })?;
        let request = &self.approvals.requests[index];
        if !request.state.is_open() {
            return Err(ControlError::rejected(format!(
                "deploy request {} is {}, not waiting for approval",
                request.id,
                state_word(request.state)
            )));
        }
        if request.requested_by == actor {
            return Err(ControlError::rejected(format!(
                "`{actor}` asked for deploy request {}: the requester's own approval never counts (four-eyes)",
                request.id
            )));
        }
        if approve && request.approvals.iter().any(|a| a.by == actor) {
            return Err(ControlError::rejected(format!(
                "`{actor}` already approved deploy request {}",
                request.id
            )));
        }
        let word = DeployApproval {
            by: actor.to_owned(),
            at: jiff::Timestamp::now().to_string(),
            reason: reason.to_owned(),
        };
        let mut request = request.clone();
        if !approve {
            request.state = DeployRequestState::Rejected;
            request.rejected_by = Some(word);
            Approvals::save(
                &mut self.core,
                &request,
                actor,
                KnownAction::ApprovalReject,
                json!({"id": request.id, "service": request.service, "version": request.request.version, "reason": reason}),
            );
            self.approvals.requests[index] = request.clone();
            self.approvals.trim();
            return Ok(request);
        }
        request.approvals.push(word);
        let count = request.approvals.len() as u32;
        Approvals::save(
            &mut self.core,
            &request,
            actor,
            KnownAction::ApprovalApprove,
            json!({
                "id": request.id,
                "service": request.service,
                "version": request.request.version,
                "reason": reason,
                "approvals": count,
                "approvals_required": request.approvals_required,
            }),
        );
        if count >= request.approvals_required {
            let started = self
                .prepare_deploy(&request.service, request.request.clone())
                .and_then(|prepared| {
                    let by = DeployedBy {
                        requester: request.requested_by.clone(),
                        request: Some(request.id.clone()),
                        approvers: request.approvals.iter().map(|a| a.by.clone()).collect(),
                    };
                    self.start_prepared(prepared, Some(by))
                });
            match started {
                Ok(view) => {
                    request.state = DeployRequestState::Started;
                    request.rollout_id = Some(view.id);
                    let text = serde_json::to_string(&request).unwrap_or_default();
                    if let Some(n) = number(&request.id) {
                        self.core.journal.save_deploy_request(
                            n,
                            &request.service,
                            "started",
                            &text,
                        );
                    }
                }
                Err(error) => {
                    request.state = DeployRequestState::Failed;
                    request.reason = Some(error.message.clone());
                    Approvals::save(
                        &mut self.core,
                        &request,
                        actor,
                        KnownAction::ApprovalFailed,
                        json!({"id": request.id, "service": request.service, "version": request.request.version, "reason": error.message}),
                    );
                }
            }
        }
        self.approvals.requests[index] = request.clone();
        self.approvals.trim();
        Ok(request)
    }

    /// Ends the requests whose deadline passed (each pass).
    pub(super) fn expire_deploy_requests(&mut self) {
        let now = jiff::Timestamp::now();
        for index in 0..self.approvals.requests.len() {
            let request = &self.approvals.requests[index];
            let due = request.state.is_open()
                && request
                    .expires_at
                    .parse::<jiff::Timestamp>()
                    .is_ok_and(|at| at <= now);
            if !due {
                continue;
            }
            let mut request = request.clone();
            request.state = DeployRequestState::Expired;
            let actor = self.core.journal.actor().to_owned();
            Approvals::save(
                &mut self.core,
                &request,
                &actor,
                KnownAction::ApprovalExpire,
                json!({
                    "id": request.id,
                    "service": request.service,
                    "version": request.request.version,
                    "approvals": request.approvals.len(),
                    "approvals_required": request.approvals_required,
                }),
            );
            self.approvals.requests[index] = request;
        }
    }
}
