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

/// `GET /v1/audit/entries`: a page of the ledger, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// The ledger's size when the page was read.
    pub size: u64,
    /// Newest first; an entry whose stored row no longer decodes has `unreadable` set.
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<u64>,
}

/// One ledger entry as stored, for reading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub seq: u64,
    /// RFC 3339.
    pub time: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    /// What the action records; the stored text when it is not JSON.
    pub details: serde_json::Value,
    /// Why the stored row does not decode into an entry (verification tells more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

/// `GET /v1/audit/verify`: the whole ledger recomputed and checked against its signed
/// checkpoints, as `wharf audit verify` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditVerification {
    pub ok: bool,
    pub size: u64,
    /// The tree's root over `size` entries, base64.
    pub root: String,
    pub checkpoints_verified: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_checkpoint_size: Option<u64>,
    /// What failed, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The first entry the failure concerns, when it concerns one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_seq: Option<u64>,
    /// `ok` is false only because no verifier key was pinned yet (an operator's first
    /// `wharf audit verify` pins it): the entries were not checked, and nothing was found
    /// wrong — a dashboard says "not verified yet", not "failed".
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unpinned: bool,
}

/// `GET /v1/audit/entries/{seq}/proof`: an RFC 9162 inclusion proof of one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InclusionProofAnswer {
    pub seq: u64,
    /// The tree the proof is for: the latest signed checkpoint's when it covers the entry,
    /// else the whole ledger.
    pub tree_size: u64,
    /// The entry's leaf bytes (canonical JSON).
    pub leaf: String,
    /// Hex.
    pub leaf_hash: String,
    /// Hex.
    pub root: String,
    /// Hex hashes, leaf side first.
    pub proof: Vec<String>,
    /// The signed checkpoint note of `tree_size`, when one is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}
