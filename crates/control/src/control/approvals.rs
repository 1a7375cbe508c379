//! Governance of changes: the environment's `require.gates` (a passing verdict of each gate
//! for the version, read from the ledger's `gate.check` entries) and `require.approvals`
//! (four-eyes: a deploy, or a restore over live data — in place or into another server —
//! waits as a request until that many distinct approvers other than its requester approve it;
//! one rejection ends it; so does its deadline). A runbook's deploy or live restore step is
//! refused there: a runbook must not be a way around four-eyes.
//!
//! A deploy request is checked in full when asked for (so one that could not start is refused
//! at once, with every reason) and every request again when the last approval arrives (the
//! world may have changed: a gate failed since, a rollout began); what cannot start then ends
//! as `failed` with why. Every change saves the request's row with its `approval.*` entry,
//! naming who acted; the `deploy.start` entry of an approved deploy names its requester and
//! approvers, and the restore job records the request it ran for.

use serde_json::json;
use wharf_api::approvals::request_number as number;
use wharf_api::{
    ControlError, DeployAnswer, DeployApproval, DeployRequestState, ErrorCode, GatedAction,
    PendingDeploy, PendingDeployList, RestoreAnswer, RestoreRequest, RestoreTarget,
};
use wharf_ledger::KnownAction;

use super::{ControlPlane, Core};
use crate::deploy::DeployRequest;
use crate::events::BackupCommand;

/// How long a request waits for its approvals unless `require.approvals.within` says.
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

/// Who decides on a request.
pub(super) struct Decider<'a> {
    pub name: &'a str,
    /// Their role allows approving (else they may only withdraw their own request).
    pub approver: bool,
    /// Who made their token, when it is one.
    pub vouched_by: Option<&'a str>,
}

/// The deploy requests: open ones and recent closed ones.
pub(super) struct Approvals {
    requests: Vec<PendingDeploy>,
    next_id: u64,
}

/// The ledger details every `approval.*` entry carries: which request, for what.
fn about(request: &PendingDeploy) -> serde_json::Map<String, serde_json::Value> {
    let mut map = serde_json::Map::new();
    map.insert("id".to_owned(), json!(request.id));
    map.insert("service".to_owned(), json!(request.service));
    match &request.action {
        GatedAction::Deploy { request } => {
            map.insert("action".to_owned(), json!("deploy"));
            map.insert("version".to_owned(), json!(request.version));
            if let Some(command) = &request.command {
                map.insert("command".to_owned(), json!(command));
            }
            if let Some(strategy) = &request.strategy {
                map.insert("strategy".to_owned(), json!(strategy));
            }
        }
        GatedAction::Restore { request } => {
            map.insert("action".to_owned(), json!("restore"));
            map.insert(
                "snapshot".to_owned(),
                json!(request.snapshot.as_deref().unwrap_or("latest")),
            );
            let target = match &request.target {
                RestoreTarget::InPlace { .. } => "in_place",
                RestoreTarget::Url { .. } => "url",
                RestoreTarget::Sandbox => "sandbox",
            };
            map.insert("target".to_owned(), json!(target));
        }
    }
    map
}

fn with(
    mut map: serde_json::Map<String, serde_json::Value>,
    more: serde_json::Value,
) -> serde_json::Value {
    if let serde_json::Value::Object(more) = more {
        map.extend(more);
    }
    serde_json::Value::Object(map)
}

/// Whether a restore reaches live data (anything but a sandbox).
pub(super) fn restore_is_live(request: &RestoreRequest) -> bool {
    !matches!(request.target, RestoreTarget::Sandbox)
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
            .record_by(actor, action, &format!("approval/{}", request.id), details);
    }

    /// Keeps the newest `RECENT` closed requests (by id: the list's order after a restart is
    /// the store's, not the requests').
    fn trim(&mut self) {
        let mut closed: Vec<u64> = self
            .requests
            .iter()
            .filter(|r| !r.state.is_open())
            .filter_map(|r| number(&r.id))
            .collect();
        if closed.len() <= RECENT as usize {
            return;
        }
        closed.sort_unstable();
        let cut = closed[closed.len() - RECENT as usize];
        self.requests
            .retain(|r| r.state.is_open() || number(&r.id).is_some_and(|n| n >= cut));
    }
}

/// What `require` of `new` drops or weakens compared with `old` (empty: nothing).
fn loosened(
    old: &wharf_manifest::model::Requirements,
    new: Option<&wharf_manifest::model::Requirements>,
) -> Vec<String> {
    let empty = wharf_manifest::model::Requirements::default();
    let new = new.unwrap_or(&empty);
    let mut dropped = Vec::new();
    if let Some(count) = old.approvals
        && new.approvals.unwrap_or(0) < count
    {
        dropped.push(format!(
            "approvals {count} → {}",
            new.approvals.unwrap_or(0)
        ));
    }
    for gate in old.gates.iter().filter(|g| !new.gates.contains(g)) {
        dropped.push(format!("gate `{gate}`"));
    }
    if old.promoted_from.is_some() && old.promoted_from != new.promoted_from {
        dropped.push("promoted_from".to_owned());
    }
    let longer = |a: Option<wharf_manifest::values::Duration>,
                  b: Option<wharf_manifest::values::Duration>| {
        a.is_some_and(|a| b.is_none_or(|b| b.as_std() > a.as_std()))
    };
    if longer(old.backup_max_age, new.backup_max_age) {
        dropped.push("backup_max_age".to_owned());
    }
    if longer(old.drill_max_age, new.drill_max_age) {
        dropped.push("drill_max_age".to_owned());
    }
    dropped
}

impl ControlPlane {
    /// Whether the environment governs deploys (approvals, gates or promotion evidence).
    pub(super) fn governs_deploys(&self) -> bool {
        self.backups.require().is_some_and(|r| {
            r.approvals.is_some() || !r.gates.is_empty() || r.promoted_from.is_some()
        })
    }

    /// Why a manifest reload may not apply where the environment governs changes: a new
    /// version or command of a service is a deploy, which goes through `wharf deploy` (its
    /// gates, approvals and promotion evidence), and a running control plane does not loosen
    /// its own `require` (stopping and starting it does, in the ledger).
    pub(super) fn governed_manifest_change(&self, plan: &crate::plan::StackPlan) -> Option<String> {
        let require = self.backups.require()?;
        let dropped = loosened(require, plan.require.as_ref());
        if !dropped.is_empty() {
            return Some(format!(
                "the manifest loosens this environment's `require` ({}); a running control plane keeps it — stop and start the stack to change it",
                dropped.join(", ")
            ));
        }
        if !self.governs_deploys() {
            return None;
        }
        let shipped: Vec<String> = plan
            .services
            .iter()
            .filter_map(|new| {
                let index = self.supervisor.index(&new.name)?;
                let service = &self.supervisor.services[index];
                let old = &service.plan;
                // Writing down what a deploy already put in force ships nothing.
                let changed = old.version != new.version || old.command != new.command;
                let running =
                    service.stable.version == new.version && service.stable.command == new.command;
                (changed && !running).then(|| {
                    format!(
                        "`{}` {} → {} (`wharf deploy {} --version {}`)",
                        new.name, old.version, new.version, new.name, new.version
                    )
                })
            })
            .collect();
        if shipped.is_empty() {
            return None;
        }
        Some(format!(
            "in this environment a new version or command is a deploy, with its gates and approvals: {}; keep the running version in the manifest until it is deployed",
            shipped.join("; ")
        ))
    }

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
        self.refuse_while_open(name)?;
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
        let action = GatedAction::Deploy {
            request: DeployRequest {
                version: request.version.trim().to_owned(),
                ..request
            },
        };
        Ok(DeployAnswer::Pending(Box::new(
            self.open_request(name, action, actor, required),
        )))
    }

    /// `POST /v1/restores`: a restore over live data where the environment requires approvals
    /// waits as a request (a sandbox restore touches nothing live and starts at once).
    pub(super) fn request_restore(
        &mut self,
        request: RestoreRequest,
    ) -> Result<RestoreAnswer, ControlError> {
        let actor = self.core.journal.acting().to_owned();
        let actor = actor.as_str();
        let required = self.backups.require().and_then(|r| r.approvals);
        let Some(required) = required.filter(|_| restore_is_live(&request)) else {
            return self
                .backup_command(BackupCommand::Restore(request))
                .map(RestoreAnswer::Started);
        };
        // What can be known now is checked now: the datastore, and an in-place restore's
        // confirmation; the job itself checks the rest when it starts.
        if !self.backups.has_datastore(&request.service) {
            return Err(ControlError::new(
                ErrorCode::UnknownService,
                format!(
                    "`{}` is not a datastore with `backup:` in this stack",
                    request.service
                ),
            ));
        }
        if matches!(request.target, RestoreTarget::InPlace { confirm: false }) {
            return Err(ControlError::rejected(
                "a restore in place replaces the running datastore's data: confirm it",
            ));
        }
        // The request is kept and listed: no password may ride in it.
        if let RestoreTarget::Url { url } = &request.target
            && wharf_api::backups::url_holds_password(url)
        {
            return Err(ControlError::new(
                ErrorCode::InvalidRequest,
                "the target URL holds a password, and a request waiting for approval is kept and listed; store the URL as a secret and pass `${secret:NAME}`",
            ));
        }
        self.refuse_while_open(&request.service)?;
        let service = request.service.clone();
        let action = GatedAction::Restore { request };
        Ok(RestoreAnswer::Pending(Box::new(
            self.open_request(&service, action, actor, required),
        )))
    }

    fn refuse_while_open(&self, service: &str) -> Result<(), ControlError> {
        match self.approvals.open_for(service) {
            Some(open) => Err(ControlError::rejected(format!(
                "request {} ({}) waits for approval; it must be approved, rejected or expire first",
                open.id,
                open.summary()
            ))),
            None => Ok(()),
        }
    }

    /// Records a request that waits for `required` approvals.
    fn open_request(
        &mut self,
        service: &str,
        action: GatedAction,
        actor: &str,
        required: u32,
    ) -> PendingDeploy {
        let now = jiff::Timestamp::now();
        let within = self
            .backups
            .require()
            .and_then(|r| r.approvals_within)
            .map_or(APPROVAL_DEADLINE, |d| d.as_std());
        let expires_at = now
            .checked_add(jiff::SignedDuration::try_from(within).unwrap_or_default())
            .unwrap_or(now);
        let id = self.approvals.next_id;
        self.approvals.next_id += 1;
        let pending = PendingDeploy {
            id: format!("r-{id}"),
            service: service.to_owned(),
            action,
            state: DeployRequestState::PendingApproval,
            requested_by: actor.to_owned(),
            requested_at: now.to_string(),
            expires_at: expires_at.to_string(),
            approvals_required: required,
            approvals: Vec::new(),
            rejected_by: None,
            rollout_id: None,
            job_id: None,
            reason: None,
        };
        let details = with(
            about(&pending),
            json!({
                "approvals_required": required,
                "environment": self.backups.environment(),
                "expires_at": pending.expires_at,
            }),
        );
        Approvals::save(
            &mut self.core,
            &pending,
            actor,
            KnownAction::ApprovalRequest,
            details,
        );
        tracing::info!(service, id = %pending.id, required, "a change waits for approvals");
        self.approvals.requests.push(pending.clone());
        pending
    }

    /// An approver's word on request `id`: four-eyes (never the requester, never twice the
    /// same person); the last approval needed starts the deploy, checked again first.
    pub(super) fn decide_deploy(
        &mut self,
        id: &str,
        approve: bool,
        decider: Decider<'_>,
        reason: &str,
    ) -> Result<PendingDeploy, ControlError> {
        let actor = decider.name;
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
                format!("no request `{id}` waiting for approval (`wharf approvals` lists them)"),
            )
        })?;
        let request = &self.approvals.requests[index];
        if !request.state.is_open() {
            return Err(ControlError::rejected(format!(
                "request {} is {}, not waiting for approval",
                request.id,
                state_word(request.state)
            )));
        }
        let expired = request
            .expires_at
            .parse::<jiff::Timestamp>()
            .is_ok_and(|at| at <= jiff::Timestamp::now());
        if expired {
            return Err(ControlError::rejected(format!(
                "request {} expired at {}",
                request.id, request.expires_at
            )));
        }
        let withdrawing = !approve && request.requested_by == actor;
        if !decider.approver && !withdrawing {
            return Err(ControlError::new(
                ErrorCode::Forbidden,
                format!(
                    "`{actor}` may not decide on request {}: only an approver (or its requester, withdrawing it)",
                    request.id
                ),
            ));
        }
        if approve && request.requested_by == actor {
            return Err(ControlError::rejected(format!(
                "`{actor}` asked for request {}: the requester's own approval never counts (four-eyes)",
                request.id
            )));
        }
        if approve && decider.vouched_by == Some(request.requested_by.as_str()) {
            return Err(ControlError::rejected(format!(
                "`{actor}`'s token was made by `{}`, who asked for request {}: an approval through it is the requester's own (four-eyes)",
                request.requested_by, request.id
            )));
        }
        if approve && request.approvals.iter().any(|a| a.by == actor) {
            return Err(ControlError::rejected(format!(
                "`{actor}` already approved request {}",
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
                with(
                    about(&request),
                    json!({"reason": reason, "withdrawn": withdrawing}),
                ),
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
            with(
                about(&request),
                json!({
                    "reason": reason,
                    "approvals": count,
                    "approvals_required": request.approvals_required,
                }),
            ),
        );
        if count >= request.approvals_required {
            let started = match request.action.clone() {
                GatedAction::Deploy { request: deploy } => self
                    .prepare_deploy(&request.service, deploy)
                    .and_then(|prepared| {
                        let by = DeployedBy {
                            requester: request.requested_by.clone(),
                            request: Some(request.id.clone()),
                            approvers: request.approvals.iter().map(|a| a.by.clone()).collect(),
                        };
                        self.start_prepared(prepared, Some(by))
                    })
                    .map(|view| (Some(view.id), None)),
                GatedAction::Restore { request: restore } => {
                    // The job's entries are the requester's change, approved.
                    let before = self.core.journal.act_as(Some(request.requested_by.clone()));
                    let started = self.backup_command(BackupCommand::Restore(restore));
                    self.core.journal.act_as(before);
                    started.map(|jobs| (None, jobs.jobs.first().map(|job| job.id)))
                }
            };
            match started {
                Ok((rollout_id, job_id)) => {
                    request.state = DeployRequestState::Started;
                    request.rollout_id = rollout_id;
                    request.job_id = job_id;
                    let requester = request.requested_by.clone();
                    let approvers: Vec<String> =
                        request.approvals.iter().map(|a| a.by.clone()).collect();
                    Approvals::save(
                        &mut self.core,
                        &request,
                        &requester,
                        KnownAction::ApprovalStarted,
                        with(
                            about(&request),
                            json!({"rollout": rollout_id, "job": job_id, "approved_by": approvers}),
                        ),
                    );
                }
                Err(error) => {
                    request.state = DeployRequestState::Failed;
                    request.reason = Some(error.message.clone());
                    Approvals::save(
                        &mut self.core,
                        &request,
                        actor,
                        KnownAction::ApprovalFailed,
                        with(about(&request), json!({"reason": error.message})),
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
                with(
                    about(&request),
                    json!({
                        "approvals": request.approvals.len(),
                        "approvals_required": request.approvals_required,
                    }),
                ),
            );
            self.approvals.requests[index] = request;
        }
    }
}
