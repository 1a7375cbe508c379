//! The secret routes' requests and answers (`/v1/secrets…`). A value enters in a request
//! (`SetSecretRequest::value`, `BeginRotationRequest::value`, write-only) and never leaves in an
//! answer: answers carry a version's metadata and its keyed fingerprint.

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
}

/// The value stays out of debug output and logs.
impl std::fmt::Debug for SetSecretRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetSecretRequest")
            .field("value", &"[redacted]")
            .field("reason", &self.reason)
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

/// `POST /v1/secrets/{name}/rotations`: begins a rotation. The caller generated `value` and
/// will run the manifest's `rotate_command` itself, after this answer (no hook runs in the
/// control plane); the value is stored first, as a new version, so no failure later can lose
/// it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BeginRotationRequest {
    /// The new value (UTF-8, not empty). Write-only: no answer of the API ever carries it.
    #[schema(write_only, example = "s3cr3t-value", min_length = 1)]
    pub value: String,
    /// Why, for the ledger.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The value stays out of debug output and logs.
impl std::fmt::Debug for BeginRotationRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BeginRotationRequest")
            .field("value", &"[redacted]")
            .field("reason", &self.reason)
            .finish()
    }
}

/// A rotation begun: the new version, current from now on (`secret.rotate_pending`), and the
/// version it replaced, which a failed hook puts back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RotationBegun {
    pub secret: SecretVersion,
    /// The version current before; none for a secret's first value.
    #[schema(example = 2)]
    pub previous: Option<u32>,
}

/// How the caller's run of the `rotate_command` went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HookResult {
    /// It succeeded (or the manifest declares none): the new value is in force.
    Succeeded,
    /// It failed, could not start or timed out.
    Failed,
}

/// `POST /v1/secrets/{name}/rotations/{version}`: finishes the rotation that began as
/// `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishRotationRequest {
    pub outcome: HookResult,
    /// Why it failed, for the ledger: a summary such as an exit status, never the hook's
    /// output (which may echo the value).
    #[serde(default)]
    pub reason: Option<String>,
}

/// How a rotation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RotationResult {
    /// `secret.rotate`: the new version is the rotation's result.
    Rotated,
    /// `secret.rotate_failed`: the previous value is current again, as a new version.
    Restored,
    /// `secret.rotate_failed`: there was no previous value; the new one stays stored but may
    /// not be in force where the hook would have put it.
    Kept,
}

/// A rotation finished: the version in force, how it ended, and what the control plane did
/// (`reload` is absent when nothing was to be applied: a kept value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RotationFinished {
    pub secret: SecretVersion,
    pub result: RotationResult,
    pub reload: Option<ReloadOutcome>,
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
        assert!(!format!("{request:?}").contains("hunter2"));
        let err = serde_json::from_str::<SetSecretRequest>(r#"{"value":"x","valu":"y"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("valu"), "{err}");
        // A `PUT` is always a `secret.set`: the old `rotated` flag is refused.
        let err = serde_json::from_str::<SetSecretRequest>(r#"{"value":"x","rotated":true}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("rotated"), "{err}");
        let begin: BeginRotationRequest =
            serde_json::from_str(r#"{"value":"hunter2","reason":"drill"}"#).unwrap();
        assert!(!format!("{begin:?}").contains("hunter2"));
    }

    #[test]
    fn a_finish_names_its_outcome_in_snake_case() {
        let request: FinishRotationRequest =
            serde_json::from_str(r#"{"outcome":"failed","reason":"exit status: 3"}"#).unwrap();
        assert_eq!(request.outcome, HookResult::Failed);
        let answer = serde_json::to_value(RotationResult::Restored).unwrap();
        assert_eq!(answer, "restored");
    }
}
