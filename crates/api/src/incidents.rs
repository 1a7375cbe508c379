//! Incidents: declared by a person or opened by an alert rule, run through status updates, an
//! acknowledgement and a resolution. Their timeline is the ledger: every change here is an
//! entry, and what happened to the affected services meanwhile (pages, deploys, rollbacks,
//! restarts, runbooks, restores) is read from it beside them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How bad: `sev1` (critical, all hands) to `sev4` (minor).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum IncidentSeverity {
    Sev1,
    Sev2,
    Sev3,
    Sev4,
}

impl IncidentSeverity {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentSeverity::Sev1 => "sev1",
            IncidentSeverity::Sev2 => "sev2",
            IncidentSeverity::Sev3 => "sev3",
            IncidentSeverity::Sev4 => "sev4",
        }
    }

    pub fn parse(text: &str) -> Option<IncidentSeverity> {
        match text.to_ascii_lowercase().as_str() {
            "sev1" | "1" => Some(IncidentSeverity::Sev1),
            "sev2" | "2" => Some(IncidentSeverity::Sev2),
            "sev3" | "3" => Some(IncidentSeverity::Sev3),
            "sev4" | "4" => Some(IncidentSeverity::Sev4),
            _ => None,
        }
    }
}

/// Where the response stands (Statuspage's incident states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum IncidentStatus {
    Investigating,
    Identified,
    Monitoring,
    Resolved,
}

impl IncidentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Investigating => "investigating",
            IncidentStatus::Identified => "identified",
            IncidentStatus::Monitoring => "monitoring",
            IncidentStatus::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<IncidentStatus> {
        match text {
            "investigating" => Some(IncidentStatus::Investigating),
            "identified" => Some(IncidentStatus::Identified),
            "monitoring" => Some(IncidentStatus::Monitoring),
            "resolved" => Some(IncidentStatus::Resolved),
            _ => None,
        }
    }
}

/// One status update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IncidentUpdate {
    /// RFC 3339.
    pub at: String,
    pub by: String,
    pub status: IncidentStatus,
    pub message: String,
    /// Shown on the public status page.
    #[serde(default)]
    pub public: bool,
}

/// An incident as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Incident {
    pub id: u64,
    pub title: String,
    pub severity: IncidentSeverity,
    pub status: IncidentStatus,
    /// The services it concerns (the page's root cause and its affected dependents).
    pub services: Vec<String>,
    /// Role → person: `commander` always, `comms`, `scribe`… as assigned.
    pub roles: BTreeMap<String, String>,
    pub declared_by: String,
    /// RFC 3339.
    pub declared_at: String,
    /// The page that opened it, when a rule did (its dedup key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// When the trouble began, if earlier than the declaration (the page's start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
    pub updates: Vec<IncidentUpdate>,
}

/// `POST /v1/incidents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeclareIncidentRequest {
    pub title: String,
    pub severity: IncidentSeverity,
    /// Defaults to the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commander: Option<String>,
    #[serde(default)]
    pub services: Vec<String>,
    /// A first message (public when `public`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub public: bool,
}

/// `POST /v1/incidents/{id}/updates`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentUpdateRequest {
    /// The new status; the current one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<IncidentStatus>,
    pub message: String,
    #[serde(default)]
    pub public: bool,
    /// A changed severity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<IncidentSeverity>,
}

/// `POST /v1/incidents/{id}/roles`: `person` takes `role` (`commander`, `comms`, `scribe`…).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRoleRequest {
    pub role: String,
    pub person: String,
}

/// `POST /v1/incidents/{id}/ack` and `/resolve`: an optional message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentStepRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub public: bool,
}

/// `GET /v1/incidents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IncidentList {
    pub incidents: Vec<Incident>,
}
