//! The ledger routes' requests and answers: an operator's note (`/v1/audit/notes`), a
//! preflight's verdict (`/v1/preflight`), the ledger's verifier key (`/v1/audit/verifier`) and
//! a signed checkpoint (`/v1/audit/checkpoints`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

/// `POST /v1/audit/notes`: an operator's note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    /// Not blank.
    #[schema(
        example = "failing over to the replica for maintenance",
        min_length = 1,
        pattern = r"\S"
    )]
    pub text: String,
}

/// One ledger entry, as the ledger canonicalises it (keys in this order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LedgerEntry {
    /// `audit.note`, `preflight.run`, `secret.set`, …
    #[schema(example = "audit.note")]
    pub action: String,
    pub actor: String,
    /// What the action records (its shape depends on the action).
    pub details: serde_json::Value,
    pub seq: u64,
    /// What it is about: a service, a secret, the stack; empty for a note.
    pub target: String,
    /// RFC 3339.
    pub time: String,
}

/// A note appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NoteAnswer {
    /// The entry's position in the ledger.
    pub seq: u64,
    pub entry: LedgerEntry,
}

/// `POST /v1/preflight`: a preflight's verdict for the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreflightRecordRequest {
    /// The stack checked.
    #[schema(example = "shop")]
    pub target: String,
    /// An object with at least a string `verdict`, as `wharf preflight` builds it.
    #[schema(schema_with = preflight_details_schema)]
    pub details: serde_json::Value,
}

/// The schema of [`PreflightRecordRequest::details`]: an object with a string `verdict`, any
/// other members kept as they are.
fn preflight_details_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "The verdict and what it rests on, as `wharf preflight` builds it: an object with at least a string `verdict`.",
        ))
        .property("verdict", ObjectBuilder::new().schema_type(Type::String))
        .required("verdict")
        .examples([serde_json::json!({
            "verdict": "pass", "checks": 12, "failed": 0, "warned": 0, "failures": []
        })])
        .build()
}

/// A preflight recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PreflightRecordAnswer {
    /// The entry's position in the ledger.
    pub seq: u64,
}

/// `GET /v1/audit/verifier`: the key that checks this ledger's signed checkpoints (C2SP
/// signed-note verifier key), created with the signing key on first use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VerifierAnswer {
    #[schema(example = "wharf/shop+1a2b3c4d+AbCd…")]
    pub verifier_key: String,
}

/// `POST /v1/audit/checkpoints`: a checkpoint of the whole ledger, signed and stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckpointAnswer {
    /// Entries covered.
    pub size: u64,
    /// The C2SP signed note.
    pub note: String,
}
