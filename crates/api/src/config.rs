//! The config-override routes' requests and answers (`/v1/config…`). Overrides are not secret:
//! their values travel in full, in answers and in the ledger.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};

use crate::ReloadOutcome;

/// `GET /v1/config/{service}`: the service's overrides in force and every revision of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConfigAnswer {
    /// Key → value now in force (unset keys are absent).
    pub config: BTreeMap<String, String>,
    /// Oldest first.
    pub revisions: Vec<ConfigRevision>,
}

/// One recorded change of a service's overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConfigRevision {
    /// Numbered across all services, increasing.
    #[schema(example = 4)]
    pub revision: u64,
    #[schema(example = "api")]
    pub service: String,
    /// Key → new value, or `null` where the key was unset.
    pub changes: BTreeMap<String, Option<String>>,
    pub actor: String,
    pub reason: String,
    /// RFC 3339.
    pub created_at: String,
}

/// `PUT /v1/config/{service}`: set (`"KEY": "value"`) or unset (`"KEY": null`) overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeConfigRequest {
    /// Key (an environment variable name) → new value, or `null` to unset it; at least one.
    #[schema(schema_with = changes_schema)]
    pub changes: BTreeMap<String, Option<String>>,
    /// Why, for the ledger (not blank).
    #[schema(example = "chasing a slow request", min_length = 1, pattern = r"\S")]
    pub reason: String,
}

/// What a key may be: an environment variable's name.
pub const CONFIG_KEY_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*$";

/// The schema of [`ChangeConfigRequest::changes`]: keys that can be environment variables,
/// string or `null` values, at least one.
fn changes_schema() -> Object {
    let key = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(CONFIG_KEY_PATTERN))
        .build();
    let value = ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Null]));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "Key (an environment variable name) → new value, or `null` to unset it; at least one.",
        ))
        .property_names(Some(key))
        .additional_properties(Some(value))
        .min_properties(Some(1))
        .examples([serde_json::json!({"LOG_LEVEL": "debug", "OLD_FLAG": null})])
        .build()
}

/// `POST /v1/config-rollback`: a service's overrides as of revision `to`, as a new revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigRollbackRequest {
    /// The revision whose state comes back (its service is the one rolled back).
    #[schema(example = 1, minimum = 1)]
    pub to: u64,
    /// Why, for the ledger (not blank).
    #[schema(
        example = "the debug level was too noisy",
        min_length = 1,
        pattern = r"\S"
    )]
    pub reason: String,
}

/// A revision as recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RevisedConfig {
    pub service: String,
    /// The new revision; `null` when nothing changed, so nothing was recorded.
    pub revision: Option<u64>,
    /// Key → new value, or `null` where the key was unset.
    pub changes: BTreeMap<String, Option<String>>,
}

/// A config change or rollback recorded, and what the control plane did with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConfigChangeAnswer {
    pub revised: RevisedConfig,
    pub reload: ReloadOutcome,
}
