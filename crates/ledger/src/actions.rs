//! The closed vocabulary of ledger actions wharf writes: one [`KnownAction`] per dotted name,
//! so a misspelt or malformed action is a compile error instead of an entry dropped at run time.
//!
//! Reading stays open: an [`Action`] read back from storage is any valid dotted name, because
//! ledgers written by other versions of wharf (or an `audit` filter typed by a user) may name
//! actions this build does not write. The texts below are part of the ledger format — entries
//! already in users' ledgers carry them — so a variant's text never changes once released.

use std::fmt;

use crate::Action;

/// Declares [`KnownAction`], its texts and [`KnownAction::ALL`] from one table, so a variant
/// cannot be added without a text or be missing from `ALL` (which the tests check the texts
/// through before any of them reaches a ledger).
macro_rules! known_actions {
    ($( $(#[$doc:meta])* $variant:ident = $text:literal, )*) => {
        /// Every action wharf writes to its ledger, by subsystem: stack, instance, service,
        /// proxy, deploy (rollouts), secret, config, audit, preflight, alert, backup, runbook,
        /// gate, promotion, control.
        ///
        /// Writers take this type ([`From<KnownAction> for Action`](Action)); readers get an
        /// [`Action`], which also holds names this build does not know.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum KnownAction {
            $( $(#[$doc])* $variant, )*
        }

        impl KnownAction {
            /// Every variant, in declaration order.
            pub const ALL: &[KnownAction] = &[ $( KnownAction::$variant, )* ];

            /// The dotted name stored in the ledger (`instance.start`).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( KnownAction::$variant => $text, )*
                }
            }
        }
    };
}

known_actions! {
    // ── stack: the whole stack, written by the control plane ──────────────────────────────
    /// The control plane started the stack (`wharf up`); target: the stack.
    StackUp = "stack.up",
    /// The control plane stopped everything and is exiting; target: the stack.
    StackDown = "stack.down",
    /// A `down` was asked over the API; target: the stack.
    StackDownRequested = "stack.down_requested",
    /// A reloaded manifest was applied; target: the stack.
    StackReload = "stack.reload",

    // ── instance: one process of a service; target `service/ordinal` ──────────────────────
    /// An instance was started for the first time.
    InstanceStart = "instance.start",
    /// An instance was started again after it exited (restart policy).
    InstanceRestart = "instance.restart",
    /// The driver could not start an instance.
    InstanceStartFailed = "instance.start_failed",
    /// The control plane (or `wharf-ops`' cleanup of a dead control plane) asked an
    /// instance to stop.
    InstanceStop = "instance.stop",
    /// An instance stopped after being asked to.
    InstanceStopped = "instance.stopped",
    /// An instance exited on its own (or was found gone at adoption).
    InstanceExit = "instance.exit",
    /// A restarted control plane re-adopted a running instance.
    InstanceAdopt = "instance.adopt",
    /// An instance's readiness probe passed.
    InstanceReady = "instance.ready",
    /// An instance's readiness probe failed after passing.
    InstanceUnready = "instance.unready",
    /// An instance's liveness probe failed; it is restarted.
    InstanceUnhealthy = "instance.unhealthy",
    /// A routed instance left the proxy's table and is draining before it stops.
    InstanceDrain = "instance.drain",

    // ── service: all instances of one service; target: the service ────────────────────────
    /// The service became ready.
    ServiceReady = "service.ready",
    /// The service stopped being ready.
    ServiceUnready = "service.unready",
    /// The service's instances are being replaced (a restart asked, or changed config or
    /// secrets).
    ServiceRestart = "service.restart",
    /// The service's instances were sent SIGHUP in place (their secret files changed).
    ServiceReload = "service.reload",
    /// The service's state (running, degraded, blocked, crash-loop…) changed.
    ServiceState = "service.state",

    // ── proxy: wharf's data-plane proxy process; target `proxy` ───────────────────────────
    /// The proxy process was started.
    ProxyStart = "proxy.start",
    /// The proxy was asked to stop.
    ProxyStop = "proxy.stop",
    /// The proxy could not be started.
    ProxyStartFailed = "proxy.start_failed",
    /// The proxy stopped after being asked to.
    ProxyStopped = "proxy.stopped",
    /// The proxy exited on its own.
    ProxyExit = "proxy.exit",
    /// A restarted control plane re-adopted the running proxy.
    ProxyAdopt = "proxy.adopt",
    /// The proxy refused a route table.
    ProxyRejected = "proxy.rejected",

    // ── deploy: rollouts (the rollout state machine's milestones); target: the service ────
    /// A rollout started.
    DeployStart = "deploy.start",
    /// The new version's instances are ready.
    DeployReady = "deploy.ready",
    /// A canary step began, with its weight.
    DeployStep = "deploy.step",
    /// The analysis of a step's traffic decided, with the numbers it was based on.
    DeployVerdict = "deploy.verdict",
    /// A phase (or a step lacking traffic) reached its deadline; the policy's answer follows.
    DeployDeadline = "deploy.deadline",
    /// Blue-green: the new version is on the preview route.
    DeployPreview = "deploy.preview",
    /// All live traffic moved to the new version.
    DeploySwitch = "deploy.switch",
    /// The operator promoted the rollout.
    DeployPromote = "deploy.promote",
    /// The operator paused the rollout.
    DeployPause = "deploy.pause",
    /// The rollout resumed (operator, or a restarted control plane).
    DeployResume = "deploy.resume",
    /// Recreate: the old version's instances stopped.
    DeployOldStopped = "deploy.old_stopped",
    /// The rollout is rolling back (abort, failed verdict, deadline), with why.
    DeployRollback = "deploy.rollback",
    /// The operator asked to go back to the previous deployment.
    DeployRollbackRequested = "deploy.rollback_requested",
    /// The rollback finished: traffic is on the stable version.
    DeployRolledBack = "deploy.rolled_back",
    /// The rollout finished: the new version is deployed.
    DeploySucceeded = "deploy.succeeded",
    /// An event that does not apply to the rollout's phase was ignored.
    DeployIgnored = "deploy.ignored",
    /// At start, in an environment that governs deploys, the manifest names a version (or
    /// command) no deploy put in force: the deployed one runs, and this says so.
    DeployHeld = "deploy.held",

    // ── secret: secret versions (a fingerprint, never a value); target: the secret ────────
    /// A new version was set.
    SecretSet = "secret.set",
    /// The current version was moved back to an earlier one.
    SecretRollback = "secret.rollback",
    /// A value was revealed to an operator.
    SecretReveal = "secret.reveal",
    /// A new version was generated by rotation (and its `rotate_command`, if any, succeeded).
    SecretRotate = "secret.rotate",
    /// A rotated version was stored and its `rotate_command` hook is about to run.
    SecretRotatePending = "secret.rotate_pending",
    /// A rotation's hook failed; the previous version is current again.
    SecretRotateFailed = "secret.rotate_failed",
    /// Every secret was re-encrypted under a new master key; target empty.
    SecretRekey = "secret.rekey",

    // ── config: runtime config overrides; target: the service ─────────────────────────────
    /// An override was set.
    ConfigSet = "config.set",
    /// An override was removed.
    ConfigUnset = "config.unset",
    /// The overrides went back to an earlier revision.
    ConfigRollback = "config.rollback",

    // ── audit: what operators write themselves ────────────────────────────────────────────
    /// An operator's note (`wharf audit note`).
    AuditNote = "audit.note",

    // ── preflight: checks before a change ─────────────────────────────────────────────────
    /// A preflight run and its verdict (`wharf preflight`).
    PreflightRun = "preflight.run",

    // ── alert: pages and their notices; target: the page's root cause ────────────────────
    /// A page opened: one root cause, its affected dependents, the notice queued.
    AlertTrigger = "alert.trigger",
    /// A page resolved; its resolve notice queued.
    AlertResolve = "alert.resolve",
    /// A notice reached its receiver.
    AlertDelivered = "alert.delivered",
    /// A notice was given up on (the receiver refused it), with why.
    AlertUndelivered = "alert.undelivered",

    // ── backup: the datastores' backups, drills and restores; target: the datastore ───────
    /// A backup stored: its snapshot, size, what it added, how long it took.
    BackupRun = "backup.run",
    /// A backup that failed, with why; nothing of it is listed as a backup.
    BackupFailed = "backup.failed",
    /// Snapshots forgotten by the retention policy.
    BackupPrune = "backup.prune",
    /// A restore drill: each check, RTO and RPO, passed or failed.
    BackupDrill = "backup.drill",
    /// A restore began into the running datastore (its dependents stopped first).
    BackupRestoreBegin = "backup.restore_begin",
    /// A restore finished (or failed), with where it went and what it checked.
    BackupRestore = "backup.restore",
    /// The repository was checked (`wharf backup verify`), with the outcome.
    BackupVerify = "backup.verify",

    // ── silence: operators' audited silences; target: `silence/ID` ────────────────────────
    /// A silence created: its matchers, owner, reason, end and whether it is maintenance.
    SilenceCreate = "silence.create",
    /// A silence ended: run out (actor wharf) or ended early by an operator.
    SilenceExpire = "silence.expire",
    /// A page that opened under a silence: recorded, its notice held back (target: the root).
    AlertSilenced = "alert.silenced",
    /// A sent page taken on by someone (its incident acknowledged): the receiver is told.
    AlertAcknowledge = "alert.acknowledge",

    // ── incident: incidents and their response; target: `incident/ID` ─────────────────────
    /// An incident declared, by a person or by an alert rule (with its page).
    IncidentDeclare = "incident.declare",
    /// A status update (status, message, whether it is public, a changed severity).
    IncidentUpdate = "incident.update",
    /// Someone took it on (the acknowledgement MTTA is measured to).
    IncidentAck = "incident.ack",
    /// A role (commander, comms, scribe…) given to a person.
    IncidentAssign = "incident.assign",
    /// The incident resolved (MTTR is measured to it).
    IncidentResolve = "incident.resolve",
    // ── runbook: runs of the manifest's runbooks; target: `RUNBOOK#RUN` ──────────────────
    /// A run started: its parameters and who or what started it.
    RunbookStart = "runbook.start",
    /// A step began: its number, action and what it touches.
    RunbookStepStart = "runbook.step_start",
    /// A step ended: its result (succeeded or failed, with why) and output, truncated.
    RunbookStepEnd = "runbook.step_end",
    /// A human approved a waiting step, with who and why.
    RunbookApprove = "runbook.approve",
    /// A run stopped at a failed step (or was interrupted or cancelled); it can resume there.
    RunbookFailed = "runbook.failed",
    /// A failed run resumed from its failed step.
    RunbookResume = "runbook.resume",
    /// Every step of a run succeeded.
    RunbookSucceeded = "runbook.succeeded",
    /// An operator cancelled a run that was not finished; it does not resume.
    RunbookCancel = "runbook.cancel",
    /// A runbook an alert runs automatically could not start (a limit, a bad parameter),
    /// with why (target: the runbook).
    RunbookRefused = "runbook.refused",

    // ── gate: release gates judged on CI tool output; target: `GATE/SERVICE@VERSION` ───────
    /// `wharf gate check`: the verdict, each condition's verdict and measure, and every input
    /// with its SHA-256 and detected format.
    GateCheck = "gate.check",

    // ── approval: deploys and live restores waiting for approvers (four-eyes); target: `approval/r-N`
    /// A deploy into an environment with `require.approvals` waits: the requester, the
    /// service, the version, how many approvals it needs and its deadline.
    ApprovalRequest = "approval.request",
    /// An approver approved it, with their reason.
    ApprovalApprove = "approval.approve",
    /// An approver rejected it, with their reason: it will not start.
    ApprovalReject = "approval.reject",
    /// Its deadline passed before enough approvals.
    ApprovalExpire = "approval.expire",
    /// Approved, but the deploy could not start (a gate or backup requirement no longer met,
    /// a rollout under way), with why.
    ApprovalFailed = "approval.failed",
    /// Approved, and started: the rollout or the restore job it ran as.
    ApprovalStarted = "approval.started",

    // ── token: API tokens, one per person; target: `token/NAME` (never the token) ─────────
    /// A token was made: its id, role and expiry.
    TokenCreate = "token.create",
    /// A token was revoked.
    TokenRevoke = "token.revoke",

    // ── session: the web dashboard's logins; target `session/NAME` (never the cookie) ─────
    /// Someone logged in to the dashboard with a token: which credential (`t-N`, or the
    /// break-glass `api-token`).
    SessionLogin = "session.login",
    /// They logged out.
    SessionLogout = "session.logout",
    // ── promotion: evidence from another environment's ledger; target `SERVICE@VERSION` ────
    /// `wharf promote import`: a verified promotion bundle accepted, with its SHA-256, the
    /// environment and verifier key it came from, the service, version and checkpoint.
    PromotionImport = "promotion.import",

    // ── cluster: a Kubernetes cluster driven by `wharf cluster`; target `NAMESPACE` ───────
    /// `wharf cluster apply`: the stack's objects server-side applied, each with the SHA-256
    /// of what was sent (a Secret's keys with their fingerprints, never a value).
    ClusterApply = "cluster.apply",

    // ── control: the control plane's replicas (state in PostgreSQL) ───────────────────────
    /// A replica took the control lease and leads from now on; target: the lease
    /// (`control`); details: its holder, fencing token, and how long the lease had been free.
    ControlLeader = "control.leader",
}

impl fmt::Display for KnownAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<KnownAction> for Action {
    fn from(action: KnownAction) -> Action {
        Action::known(action.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_known_action_is_a_valid_action() {
        for known in KnownAction::ALL {
            let parsed = known.as_str().parse::<Action>();
            assert_eq!(parsed, Ok(Action::from(*known)), "{known:?}");
        }
    }

    #[test]
    fn known_action_texts_are_unique() {
        let mut seen = HashSet::new();
        for known in KnownAction::ALL {
            assert!(seen.insert(known.as_str()), "{known} is used twice");
        }
    }

    #[test]
    fn all_lists_every_variant_once_in_declaration_order() {
        for (index, known) in KnownAction::ALL.iter().enumerate() {
            assert_eq!(*known as usize, index, "{known:?}");
        }
    }

    /// The names in ledgers written so far; a change here breaks `audit log --action` on
    /// existing ledgers and makes old and new entries disagree.
    #[test]
    fn texts_are_the_ones_already_in_ledgers() {
        let texts: Vec<&str> = KnownAction::ALL.iter().map(|a| a.as_str()).collect();
        insta::assert_snapshot!(texts.join("\n"));
    }
}
