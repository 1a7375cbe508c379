//! The answers and requests of the commands that change what runs: reload (secrets, config
//! overrides, a changed manifest), restart and down.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a reload takes in: always the stored secrets and config overrides; the manifest only
/// when asked (`wharf up`), so a half-edited file never rides along with a secret change.
/// Other fields (what the CLI changed, for context) are accepted and ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReloadRequest {
    #[serde(default)]
    pub manifest: bool,
    /// The `--env` of the `wharf up` asking; must match the running stack's.
    #[serde(default)]
    pub environment: Option<String>,
}

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReloadAnswer {
    /// Services whose instances are replaced by a rolling restart.
    pub restarting: Vec<String>,
    /// Services whose instances got new secret files and SIGHUP.
    pub reloaded: Vec<String>,
    /// What changed in the manifest, when it was re-read (`null` otherwise).
    pub manifest: Option<ManifestChanges>,
}

/// A re-read manifest against the running stack.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ManifestChanges {
    pub added: Vec<String>,
    /// A changed version, command, replica count or public port.
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// Changed while a rollout of the service is under way: applied once it ends.
    pub deferred: Vec<String>,
}

/// `POST /v1/services/{name}/restart` accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RestartAnswer {
    /// The service being restarted.
    pub restarting: String,
}

/// `POST /v1/down`: one service, or the whole stack when `service` is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DownRequest {
    #[serde(default)]
    pub service: Option<String>,
}

/// `POST /v1/down` done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DownAnswer {
    /// The service stopped, or `stack`.
    pub stopped: String,
}
