//! The control plane: brings a stack up in dependency order, supervises it from one event
//! loop, re-adopts what a previous control plane left running, and writes every start, stop,
//! exit, restart and adoption to the ledger.

mod control;
pub mod deploy;
mod events;
mod journal;
pub mod metrics;
pub mod plan;
pub mod proxy_link;
pub mod report;
mod rollout_record;
mod state;
mod tasks;

pub use control::{
    Config, ControlPlane, PROXY_ROW, PlanLoader, backup_repository_text, container_network,
    unmet_requirements,
};
pub use deploy::{DeployRequest, RolloutCommand, RolloutView, VersionTraffic};
pub use events::{
    BackupCommand, Command, Event, Handle, ProbeKind, RunbookCommand, RunbookStepDone,
};
pub use journal::{Journal, StoreWriter};
pub use metrics::MetricsSnapshot;
pub use plan::{BACKUP_PASSWORD_SECRET, PlanError, StackPlan, plan};
pub use report::{DependencyStatus, InstanceStatus, ServiceStatus, StatusReport};
/// The API's wire types and errors, re-exported for convenience; the server and the CLI import
/// them from `wharf_api`.
pub use wharf_api::{ControlError, ErrorCode, ReloadAnswer, ReloadRequest};
