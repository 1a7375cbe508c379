//! `POST /v1/promotions`: a promotion bundle from another environment, verified by the control
//! plane and recorded as `promotion.import` (what `require.promoted_from` checks at deploy).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A bundle to verify and record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromotionImportRequest {
    /// The bundle file's text, exactly as `wharf promote export` wrote it (its SHA-256 is
    /// recorded).
    pub bundle: String,
    /// The verifier key to check its checkpoint with (`NAME+KEYID+BASE64`); when absent, the
    /// bundle's own key (which proves only that it is self-consistent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "wharf/staging+f22fd127+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4")]
    pub key: Option<String>,
}

/// A bundle verified and recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PromotionImportAnswer {
    /// The `promotion.import` entry's position in the ledger.
    pub seq: u64,
    /// Lowercase hex SHA-256 of the bundle's bytes.
    pub bundle_sha256: String,
    #[schema(example = "staging")]
    pub env: String,
    #[schema(example = "api")]
    pub service: String,
    #[schema(example = "2.0")]
    pub version: String,
    /// The source ledger's verifier key the bundle verified with.
    pub key: String,
    /// The gates whose passing verdicts the bundle carries.
    pub gates: Vec<String>,
}
