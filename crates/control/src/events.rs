//! What can happen to the control plane — the closed set of events its loop handles — and the
//! [`Handle`] through which the API asks it things. The loop, its subsystems and the helper
//! tasks all speak these types; this module depends on none of them (the proxy's reports are
//! the proxy link's own type), so no module imports the loop to talk to it.

use std::path::PathBuf;

use tokio::sync::{mpsc, oneshot};
use wharf_api::{ControlError, ReloadAnswer, ReloadRequest};
use wharf_probe::Outcome;
use wharf_runtime::{ExitStatus, StartError};

use crate::deploy::{DeployRequest, RolloutCommand, RolloutView};
use crate::journal::StoreWriter;
use crate::proxy_link::ProxyReport;
use crate::report::StatusReport;

/// Which probe reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Live,
    Ready,
}

/// Everything that can happen to the control plane.
#[derive(Debug)]
pub enum Event {
    Exited {
        service: String,
        ordinal: u32,
        generation: u64,
        status: Option<ExitStatus>,
    },
    Probe {
        service: String,
        ordinal: u32,
        generation: u64,
        kind: ProbeKind,
        outcome: Outcome,
    },
    Command(Command),
    /// The driver answered a start (attempt `generation` of the instance).
    Started {
        service: String,
        ordinal: u32,
        generation: u64,
        result: Box<Result<wharf_runtime::Running, StartError>>,
    },
    /// What the proxy link learned: a table applied or refused, the proxy's counters.
    Proxy(ProxyReport),
    /// A reload's task read the manifest (and unlocked secrets for it): the loop applies it
    /// and answers the request.
    ReloadPrepared(Box<(Result<PreparedReload, String>, ReloadReply)>),
    /// What became of a notice handed to a receiver's courier.
    Notice(Box<wharf_notify::Outcome>),
    /// A backup, drill, restore, prune or verify job ended (its outcome in the job).
    Backup(Box<wharf_api::Job>),
    /// A runbook step's task (a command, an HTTP call) ended.
    RunbookStep(Box<RunbookStepDone>),
}

/// What a runbook step's task reports: which attempt of which step, and how it went.
#[derive(Debug, Clone)]
pub struct RunbookStepDone {
    pub run: u64,
    /// 1-based.
    pub step: u32,
    pub attempt: u32,
    pub ok: bool,
    /// What happened, in words.
    pub result: String,
    /// Output, already truncated.
    pub output: Option<String>,
}

/// The runbook requests from the API.
#[derive(Debug)]
pub enum RunbookCommand {
    List(oneshot::Sender<wharf_api::RunbookList>),
    Start {
        name: String,
        request: wharf_api::StartRunRequest,
        /// Who asks (recorded as the run's actor).
        actor: String,
        reply: oneshot::Sender<Result<wharf_api::RunStarted, ControlError>>,
    },
    Runs(oneshot::Sender<wharf_api::RunList>),
    Run {
        id: u64,
        reply: oneshot::Sender<Result<wharf_api::Run, ControlError>>,
    },
    Resume {
        id: u64,
        actor: String,
        reply: oneshot::Sender<Result<wharf_api::Run, ControlError>>,
    },
    Approve {
        id: u64,
        request: wharf_api::ApproveRequest,
        actor: String,
        reply: oneshot::Sender<Result<wharf_api::Run, ControlError>>,
    },
    Cancel {
        id: u64,
        request: wharf_api::CancelRequest,
        actor: String,
        reply: oneshot::Sender<Result<wharf_api::Run, ControlError>>,
    },
}

/// Where a reload's answer goes.
pub type ReloadReply = oneshot::Sender<Result<ReloadAnswer, ControlError>>;

/// What a reload needs that only IO gives: the manifest's new plan, and the secrets unlocked
/// when it is the first to use them.
pub struct PreparedReload {
    pub plan: crate::plan::StackPlan,
    pub secrets: Option<wharf_secrets::Secrets>,
}

impl std::fmt::Debug for PreparedReload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedReload")
            .field("stack", &self.plan.name)
            .field("unlocked", &self.secrets.is_some())
            .finish()
    }
}

/// Requests from the API.
#[derive(Debug)]
pub enum Command {
    /// `command`, asked by `actor` (an identity the API established): the entries the loop
    /// records while handling it name them.
    As {
        actor: String,
        command: Box<Command>,
    },
    Status(oneshot::Sender<StatusReport>),
    /// What `/metrics` shows, taken in one go.
    Metrics(oneshot::Sender<Box<crate::metrics::MetricsSnapshot>>),
    /// Rolling restart of one service.
    Restart {
        service: String,
        reply: oneshot::Sender<Result<(), ControlError>>,
    },
    /// Stop one service, or the whole stack (then the control plane exits).
    Down {
        service: Option<String>,
        reply: oneshot::Sender<Result<(), ControlError>>,
    },
    /// Start a rollout of a new version — or, where the environment requires approvals, a
    /// request that waits for them.
    Deploy {
        service: String,
        request: DeployRequest,
        /// Who asks (the ledger's actor; never counts as an approver).
        actor: String,
        reply: oneshot::Sender<Result<wharf_api::DeployAnswer, ControlError>>,
    },
    /// The deploy requests: open ones, then recent ones.
    DeployRequests(oneshot::Sender<wharf_api::PendingDeployList>),
    /// An approver's word on a request (or its requester withdrawing it).
    DecideDeploy {
        id: String,
        approve: bool,
        actor: String,
        /// The caller's role allows approving.
        approver: bool,
        /// Who made the caller's token, when it is one.
        vouched_by: Option<String>,
        reason: String,
        reply: oneshot::Sender<Result<wharf_api::PendingDeploy, ControlError>>,
    },
    /// The service's current or latest rollout (`None`: never deployed).
    Rollout {
        service: String,
        reply: oneshot::Sender<Result<Option<RolloutView>, ControlError>>,
    },
    /// Pause, resume, promote or abort the running rollout.
    RolloutCommand {
        service: String,
        command: RolloutCommand,
        reply: oneshot::Sender<Result<RolloutView, ControlError>>,
    },
    /// Roll out the previous stable version again.
    Rollback {
        service: String,
        reply: oneshot::Sender<Result<RolloutView, ControlError>>,
    },
    /// A declared secret's policy and the directory its hook runs in (`None`: not declared;
    /// the error lists the declared names).
    SecretPolicy {
        name: String,
        reply:
            oneshot::Sender<Result<(wharf_manifest::model::SecretPolicy, PathBuf), ControlError>>,
    },
    /// Secrets or config overrides changed in the store: apply them.
    Reload {
        request: ReloadRequest,
        reply: ReloadReply,
    },
    /// A restore from the API: where the environment requires approvals and it reaches live
    /// data, a request that waits for them.
    Restore {
        request: wharf_api::RestoreRequest,
        reply: oneshot::Sender<Result<wharf_api::RestoreAnswer, ControlError>>,
    },
    /// Start backup jobs (a backup, drill, restore, prune or verify).
    Backup {
        command: BackupCommand,
        reply: oneshot::Sender<Result<wharf_api::JobsStarted, ControlError>>,
    },
    /// Silences were added or ended in the store: read them again.
    SilencesChanged(oneshot::Sender<()>),
    /// Whether these matchers could match a page of this stack (`Err`: why not).
    CheckMatchers {
        matchers: Vec<wharf_api::Matcher>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Tell a page's receiver someone took it on; answers whether such a page was open.
    AcknowledgePage {
        dedup_key: String,
        by: String,
        reply: oneshot::Sender<bool>,
    },
    /// Every datastore's backups and the recent jobs.
    BackupOverview(oneshot::Sender<wharf_api::BackupOverview>),
    /// One job, running or recent.
    BackupJob {
        id: u64,
        reply: oneshot::Sender<Option<wharf_api::Job>>,
    },
    /// The repository's snapshots (listed by a task, which answers).
    Snapshots {
        service: Option<String>,
        reply: oneshot::Sender<Result<wharf_api::SnapshotList, ControlError>>,
    },
    /// Runbooks and their runs.
    Runbook(RunbookCommand),
}

/// What a backup request asks.
#[derive(Debug, Clone)]
pub enum BackupCommand {
    Backup(wharf_api::BackupRequest),
    Drill(wharf_api::DrillRequest),
    Restore(wharf_api::RestoreRequest),
    Prune(wharf_api::PruneRequest),
    Verify(wharf_api::VerifyRequest),
}

/// A way to talk to a running control plane.
#[derive(Debug, Clone)]
pub struct Handle {
    pub(crate) events: mpsc::Sender<Event>,
    pub(crate) writer: StoreWriter,
    pub(crate) state_dir: PathBuf,
    pub(crate) workdir: PathBuf,
    /// Who asks through this handle (`None`: the control plane's own callers).
    pub(crate) caller: Option<String>,
}

impl Handle {
    /// The thread that owns the state database's writing connection: the API runs its use
    /// cases (`wharf-ops`) there, so the control plane stays the only writer.
    pub fn writer(&self) -> &StoreWriter {
        &self.writer
    }

    /// The manifest's directory (hooks run there; the ledger key is named after it).
    pub fn workdir(&self) -> &std::path::Path {
        &self.workdir
    }

    /// The stack's state directory (the master key file lives there).
    pub fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
    }

    /// A handle to no control plane: every command finds it stopped. For testing the layers
    /// above (the API's routing and error mapping) without a stack.
    pub fn disconnected() -> Handle {
        let (events, _) = mpsc::channel(1);
        Handle {
            events,
            writer: StoreWriter::disconnected(),
            state_dir: PathBuf::new(),
            workdir: PathBuf::new(),
            caller: None,
        }
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        let command = match &self.caller {
            Some(actor) => Command::As {
                actor: actor.clone(),
                command: Box::new(make(reply)),
            },
            None => make(reply),
        };
        self.events.send(Event::Command(command)).await.ok()?;
        answer.await.ok()
    }

    /// This handle, asking as `actor`: what the control plane records while handling its
    /// commands names them.
    pub fn as_caller(&self, actor: &str) -> Handle {
        Handle {
            caller: Some(actor.to_owned()),
            ..self.clone()
        }
    }

    /// Asks for a restore: started, or waiting for approvals.
    pub async fn restore(
        &self,
        request: wharf_api::RestoreRequest,
    ) -> Result<wharf_api::RestoreAnswer, ControlError> {
        self.ask(|reply| Command::Restore { request, reply })
            .await
            .unwrap_or_else(|| Err(ControlError::stopping()))
    }

    /// Starts backup jobs; the answer lists them, running.
    pub async fn backup(
        &self,
        command: BackupCommand,
    ) -> Result<wharf_api::JobsStarted, ControlError> {
        self.ask(|reply| Command::Backup { command, reply })
            .await
            .unwrap_or_else(|| Err(ControlError::stopping()))
    }

    pub async fn backup_overview(&self) -> Option<wharf_api::BackupOverview> {
        self.ask(Command::BackupOverview).await
    }

    /// `None`: the control plane stopped; `Some(None)`: no such job.
    pub async fn backup_job(&self, id: u64) -> Option<Option<wharf_api::Job>> {
        self.ask(|reply| Command::BackupJob { id, reply }).await
    }

    pub async fn snapshots(
        &self,
        service: Option<String>,
    ) -> Result<wharf_api::SnapshotList, ControlError> {
        self.ask(|reply| Command::Snapshots { service, reply })
            .await
            .unwrap_or_else(|| Err(ControlError::stopping()))
    }

    /// Acknowledges an open page at its receiver; `Some(false)`: no such page is open.
    pub async fn acknowledge_page(&self, dedup_key: String, by: String) -> Option<bool> {
        self.ask(|reply| Command::AcknowledgePage {
            dedup_key,
            by,
            reply,
        })
        .await
    }

    /// Whether a silence of these matchers could match a page here; `None`: it stopped.
    pub async fn check_matchers(
        &self,
        matchers: Vec<wharf_api::Matcher>,
    ) -> Option<Result<(), String>> {
        self.ask(|reply| Command::CheckMatchers { matchers, reply })
            .await
    }

    /// Tells the control plane the stored silences changed; `None`: it stopped.
    pub async fn silences_changed(&self) -> Option<()> {
        self.ask(Command::SilencesChanged).await
    }

    pub async fn status(&self) -> Option<StatusReport> {
        self.ask(Command::Status).await
    }

    /// What `/metrics` shows; `None`: the control plane stopped.
    pub async fn metrics(&self) -> Option<crate::metrics::MetricsSnapshot> {
        self.ask(Command::Metrics).await.map(|snapshot| *snapshot)
    }

    pub async fn restart(&self, service: String) -> Result<(), ControlError> {
        self.ask(|reply| Command::Restart { service, reply })
            .await
            .unwrap_or_else(|| Err(ControlError::stopping()))
    }

    pub async fn down(&self, service: Option<String>) -> Result<(), ControlError> {
        self.ask(|reply| Command::Down { service, reply })
            .await
            .unwrap_or_else(|| Err(ControlError::stopping()))
    }

    pub async fn deploy(
        &self,
        service: String,
        request: DeployRequest,
        actor: String,
    ) -> Result<wharf_api::DeployAnswer, ControlError> {
        self.ask(|reply| Command::Deploy {
            service,
            request,
            actor,
            reply,
        })
        .await
        .unwrap_or_else(|| Err(ControlError::stopping()))
    }

    pub async fn deploy_requests(&self) -> Option<wharf_api::PendingDeployList> {
        self.ask(Command::DeployRequests).await
    }

    /// Approve (or reject) a deploy request as `actor`.
    pub async fn decide_deploy(
        &self,
        id: String,
        approve: bool,
        caller: wharf_api::Caller,
        reason: String,
    ) -> Result<wharf_api::PendingDeploy, ControlError> {
        let approver = caller.role.allows(wharf_api::Permission::Approve);
        self.ask(|reply| Command::DecideDeploy {
            id,
            approve,
            actor: caller.name,
            approver,
            vouched_by: caller.vouched_by,
            reason,
            reply,
        })
        .await
        .unwrap_or_else(|| Err(ControlError::stopping()))
    }

    pub async fn rollout(&self, service: String) -> Result<Option<RolloutView>, ControlError> {
        self.ask(|reply| Command::Rollout { service, reply })
            .await
            .unwrap_or_else(|| Err(ControlError::stopping()))
    }

    pub async fn rollout_command(
        &self,
        service: String,
        command: RolloutCommand,
    ) -> Result<RolloutView, ControlError> {
        self.ask(|reply| Command::RolloutCommand {
            service,
            command,
            reply,
        })
        .await
        .unwrap_or_else(|| Err(ControlError::stopping()))
    }

    pub async fn reload(&self, request: ReloadRequest) -> Result<ReloadAnswer, ControlError> {
        self.ask(|reply| Command::Reload { request, reply })
            .await
            .unwrap_or_else(|| Err(ControlError::stopping()))
    }

    /// A declared secret's policy and the manifest's directory, for `rotate`.
    pub async fn secret_policy(
        &self,
        name: String,
    ) -> Result<(wharf_manifest::model::SecretPolicy, PathBuf), ControlError> {
        self.ask(|reply| Command::SecretPolicy { name, reply })
            .await
            .unwrap_or_else(|| Err(ControlError::stopping()))
    }

    /// The manifest's runbooks.
    pub async fn runbooks(&self) -> Option<wharf_api::RunbookList> {
        self.ask(|reply| Command::Runbook(RunbookCommand::List(reply)))
            .await
    }

    /// Starts a run of a runbook (or, with `dry_run`, only plans it).
    pub async fn start_run(
        &self,
        name: String,
        request: wharf_api::StartRunRequest,
        actor: String,
    ) -> Result<wharf_api::RunStarted, ControlError> {
        self.ask(|reply| {
            Command::Runbook(RunbookCommand::Start {
                name,
                request,
                actor,
                reply,
            })
        })
        .await
        .unwrap_or_else(|| Err(ControlError::stopping()))
    }

    /// The runs, newest first.
    pub async fn runs(&self) -> Option<wharf_api::RunList> {
        self.ask(|reply| Command::Runbook(RunbookCommand::Runs(reply)))
            .await
    }

    pub async fn run(&self, id: u64) -> Result<wharf_api::Run, ControlError> {
        self.ask(|reply| Command::Runbook(RunbookCommand::Run { id, reply }))
            .await
            .unwrap_or_else(|| Err(ControlError::stopping()))
    }

    /// Resumes a failed run at its failed step.
    pub async fn resume_run(&self, id: u64, actor: String) -> Result<wharf_api::Run, ControlError> {
        self.ask(|reply| Command::Runbook(RunbookCommand::Resume { id, actor, reply }))
            .await
            .unwrap_or_else(|| Err(ControlError::stopping()))
    }

    /// Approves the step a run waits at.
    pub async fn approve_run(
        &self,
        id: u64,
        request: wharf_api::ApproveRequest,
        actor: String,
    ) -> Result<wharf_api::Run, ControlError> {
        self.ask(|reply| {
            Command::Runbook(RunbookCommand::Approve {
                id,
                request,
                actor,
                reply,
            })
        })
        .await
        .unwrap_or_else(|| Err(ControlError::stopping()))
    }

    pub async fn cancel_run(
        &self,
        id: u64,
        request: wharf_api::CancelRequest,
        actor: String,
    ) -> Result<wharf_api::Run, ControlError> {
        self.ask(|reply| {
            Command::Runbook(RunbookCommand::Cancel {
                id,
                request,
                actor,
                reply,
            })
        })
        .await
        .unwrap_or_else(|| Err(ControlError::stopping()))
    }

    pub async fn rollback(&self, service: String) -> Result<RolloutView, ControlError> {
        self.ask(|reply| Command::Rollback { service, reply })
            .await
            .unwrap_or_else(|| Err(ControlError::stopping()))
    }
}
