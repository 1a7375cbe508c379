//! `POST /v1/gates/checks`: a release gate's verdict for the ledger, as `wharf gate check`
//! builds it — the verdict, each condition's, and every input by its SHA-256.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A gate check to record (`gate.check`, target `GATE/SERVICE@VERSION`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GateCheckRecordRequest {
    #[schema(example = "release")]
    pub gate: String,
    #[schema(example = "api")]
    pub service: String,
    #[schema(example = "1.5.0")]
    pub version: String,
    /// `pass` or `fail`.
    #[schema(example = "fail")]
    pub verdict: String,
    pub conditions: Vec<GateConditionRecord>,
    pub inputs: Vec<GateInputRecord>,
}

/// One condition's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GateConditionRecord {
    #[schema(example = "no secrets")]
    pub name: String,
    /// `pass` or `fail`.
    pub verdict: String,
    #[schema(example = "1 findings (warning 1)")]
    pub measured: String,
}

/// One input file the verdict rests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GateInputRecord {
    #[schema(example = "gitleaks.sarif")]
    pub path: String,
    /// Lowercase hex SHA-256 of its bytes.
    pub sha256: String,
    /// `sarif`, `junit`, `k6`, `cobertura` or `lcov`, detected from its content.
    pub format: String,
}

/// A gate check recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GateCheckRecordAnswer {
    /// The entry's position in the ledger.
    pub seq: u64,
}
