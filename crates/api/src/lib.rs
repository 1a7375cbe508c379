//! The control plane API's wire types, shared by the control plane that builds them, the server
//! that sends them and the CLI that reads them: one definition, so neither side indexes JSON by
//! key or matches another crate's strings. Every type derives `utoipa::ToSchema` for the
//! server's OpenAPI document. The JSON shape only ever changes compatibly (fields are added).

pub mod approvals;
pub mod audit;
pub mod backups;
pub mod config;
pub mod deploy;
pub mod error;
pub mod gates;
pub mod identity;
pub mod incidents;
pub mod promotion;
pub mod reload;
pub mod runbooks;
pub mod secrets;
pub mod silences;
pub mod status;
pub mod status_page;

pub use approvals::{
    DecideDeployRequest, DeployAnswer, DeployApproval, DeployRequestState, GatedAction,
    PendingDeploy, PendingDeployList, RestoreAnswer,
};
pub use audit::{
    AuditEntry, AuditPage, AuditVerification, CheckpointAnswer, InclusionProofAnswer, LedgerEntry,
    NoteAnswer, NoteRequest, PreflightRecordAnswer, PreflightRecordRequest, VerifierAnswer,
};
pub use backups::{
    BackupHealth, BackupOverview, BackupRequest, DatastoreBackups, DrillRequest, Job, JobCheck,
    JobKind, JobState, JobTrigger, JobsStarted, PruneRequest, RestoreRequest, RestoreTarget,
    Snapshot, SnapshotList, VerifyRequest,
};
pub use config::{
    ChangeConfigRequest, ConfigAnswer, ConfigChangeAnswer, ConfigRevision, ConfigRollbackRequest,
    RevisedConfig,
};
pub use gates::{
    GateCheckRecordAnswer, GateCheckRecordRequest, GateConditionRecord, GateInputRecord,
};

pub use deploy::{
    DeployRequest, RolloutCommand, RolloutOutcome, RolloutPhase, RolloutStrategy, RolloutView,
    VersionTraffic,
};
pub use error::{ApiErrorBody, ControlError, ErrorCode, ErrorDetail};
pub use identity::{
    Caller, CreateTokenRequest, CreatedToken, Permission, Role, TokenInfo, TokenList,
};
pub use incidents::{
    AssignRoleRequest, DeclareIncidentRequest, Incident, IncidentList, IncidentSeverity,
    IncidentStatus, IncidentStepRequest, IncidentUpdate, IncidentUpdateRequest,
};
pub use promotion::{PromotionImportAnswer, PromotionImportRequest};
pub use reload::{
    DownAnswer, DownRequest, ManifestChanges, ReloadAnswer, ReloadRequest, RestartAnswer,
};
pub use runbooks::{
    Approval, ApproveRequest, CancelRequest, ParamInfo, PlannedStep, Run, RunList, RunPlan,
    RunStarted, RunState, RunbookInfo, RunbookList, StartRunRequest, StepResult, StepState,
    Verdict,
};
pub use secrets::{
    BeginRotationRequest, FinishRotationRequest, HookResult, ReloadOutcome, RevealAnswer,
    RevealRequest, RollbackSecretRequest, RotationBegun, RotationFinished, RotationResult,
    SecretChangeAnswer, SecretVersion, SetSecretRequest,
};
pub use silences::{CreateSilenceRequest, MatchOp, Matcher, Silence, SilenceList};
pub use status::{
    DependencyStatus, HealthStatus, HealthTransition, InstancePhase, InstanceStatus, OpenPage,
    ServiceState, ServiceStatus, StackStatus, StatusReport,
};
