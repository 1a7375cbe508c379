//! The secret routes' requests and answers (`/v1/secrets…`). A value enters in a request
//! (`SetSecretRequest::value`, write-only) and never leaves in an answer: answers carry a
//! version's metadata and its keyed fingerprint.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ReloadAnswer;

/// One stored version of a secret: who made it, how and when, and its fingerprint — never its
/// value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SecretVersion {
    #[schema(example = "db_password")]
    pub name: String,
    /// Starts at 1 and increases with every change (a rollback is a new version too).
    #[schema(example = 3)]
    pub version: u32,
    /// RFC 3339.
    #[schema(example = "2025-06-01T12:00:00Z")]
    pub created_at: String,
    pub actor: String,
    /// `set`, `rotate`, or `rollback:V` (the version whose value it restored).
    #[schema(example = "set")]
    pub origin: String,
    pub reason: Option<String>,
    /// Keyed fingerprint (HMAC-SHA256, hex, 32 characters) of the value: equal values have
    /// equal fingerprints, and it reveals nothing of the value without the master key.
    pub fingerprint: String,
}

/// `PUT /v1/secrets/{name}`: a new version of a declared secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetSecretRequest {
    /// The value (UTF-8, not empty). Write-only: no answer of the API ever carries it.
    #[schema(write_only, example = "s3cr3t-value", min_length = 1)]
    pub value: String,
    /// Why, for the ledger.
    #[serde(default)]
    pub reason: Option<String>,
    /// The caller generated the value and ran the manifest's rotate hook itself (`wharf
    /// secret rotate` while a control plane runs): recorded as a rotation, not a set.
    #[serde(default)]
    pub rotated: bool,
}

/// The value stays out of debug output and logs.
impl std::fmt::Debug for SetSecretRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetSecretRequest")
            .field("value", &"[redacted]")
            .field("reason", &self.reason)
            .field("rotated", &self.rotated)
            .finish()
    }
}

/// `POST /v1/secrets/{name}/rollback`: version `to`'s value becomes current again, as a new
/// version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackSecretRequest {
    /// The version whose value comes back.
    #[schema(example = 1, minimum = 1)]
    pub to: u32,
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /v1/secrets/{name}/rotate`: a generated value, after the manifest's rotate hook.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecretRequest {
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /v1/secrets/{name}/reveals`: records that the caller, who holds the master key, is
/// about to read a version's value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevealRequest {
    /// The version to reveal; the current one when absent.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub version: Option<u32>,
}

/// A reveal recorded: which version, with its fingerprint. Never the value — the caller reads
/// it with the master key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RevealAnswer {
    pub secret: SecretVersion,
}

/// What the control plane did after a change to stored state: its reload answer, or why the
/// reload failed (the change itself is stored either way). On the wire either the
/// [`ReloadAnswer`] itself or `{"error": message}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ReloadOutcome {
    /// The change is applied (or nothing running needed it).
    Applied(ReloadAnswer),
    /// The reload was refused; the services get the change at the next reload or `wharf up`.
    Failed {
        /// Why, in words.
        error: String,
    },
}

/// A secret's new version, stored, and what the control plane did with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SecretChangeAnswer {
    pub secret: SecretVersion,
    pub reload: ReloadOutcome,
}

/// A rotation done by the control plane: the new version, whether the manifest's rotate hook
/// ran (and succeeded), and what the control plane did with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RotateSecretAnswer {
    pub secret: SecretVersion,
    /// The manifest declares a `rotate_command` and it succeeded.
    pub hook: bool,
    pub reload: ReloadOutcome,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_outcome_keeps_its_wire_shapes() {
        let applied = ReloadOutcome::Applied(ReloadAnswer {
            restarting: vec!["api".to_owned()],
            ..Default::default()
        });
        let text = serde_json::to_string(&applied).unwrap();
        assert_eq!(
            text,
            r#"{"restarting":["api"],"reloaded":[],"manifest":null}"#
        );
        assert_eq!(
            serde_json::from_str::<ReloadOutcome>(&text).unwrap(),
            applied
        );
        let failed: ReloadOutcome = serde_json::from_str(r#"{"error":"stopping"}"#).unwrap();
        assert_eq!(
            failed,
            ReloadOutcome::Failed {
                error: "stopping".to_owned()
            }
        );
    }

    #[test]
    fn set_requests_refuse_unknown_fields_and_hide_the_value_from_debug() {
        let request: SetSecretRequest =
            serde_json::from_str(r#"{"value":"hunter2","reason":null}"#).unwrap();
        assert!(!request.rotated);
        assert!(!format!("{request:?}").contains("hunter2"));
        let err = serde_json::from_str::<SetSecretRequest>(r#"{"value":"x","valu":"y"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("valu"), "{err}");
    }
}
