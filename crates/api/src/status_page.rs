//! The public status page's JSON, in the shapes of Atlassian Statuspage's public API
//! (`/api/v2/summary.json`, `status.json`, `components.json`, `incidents/unresolved.json`), so
//! the widgets and monitors that read a Statuspage page read wharf's too.
//!
//! Nothing here may carry an internal detail: no host, port, pid, path, reason text or error
//! message of the control plane — only the names and descriptions the manifest chose to make
//! public, states, times and the incident updates marked public. Fields beyond Statuspage's
//! (`uptime`) are additions a Statuspage client ignores.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A public component's state, Statuspage's five words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ComponentStatus {
    Operational,
    DegradedPerformance,
    PartialOutage,
    MajorOutage,
    UnderMaintenance,
}

impl ComponentStatus {
    /// How bad it is, for "the worst of": operational < under maintenance < degraded <
    /// partial outage < major outage. A declared maintenance ranks below a real problem, so an
    /// outage of another service of the same component still shows.
    pub fn severity(self) -> u8 {
        match self {
            ComponentStatus::Operational => 0,
            ComponentStatus::UnderMaintenance => 1,
            ComponentStatus::DegradedPerformance => 2,
            ComponentStatus::PartialOutage => 3,
            ComponentStatus::MajorOutage => 4,
        }
    }

    /// Whether the component counts as up for uptime: operational or degraded.
    pub fn is_up(self) -> bool {
        matches!(
            self,
            ComponentStatus::Operational | ComponentStatus::DegradedPerformance
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ComponentStatus::Operational => "operational",
            ComponentStatus::DegradedPerformance => "degraded_performance",
            ComponentStatus::PartialOutage => "partial_outage",
            ComponentStatus::MajorOutage => "major_outage",
            ComponentStatus::UnderMaintenance => "under_maintenance",
        }
    }

    /// The words a person reads on the page.
    pub fn label(self) -> &'static str {
        match self {
            ComponentStatus::Operational => "Operational",
            ComponentStatus::DegradedPerformance => "Degraded performance",
            ComponentStatus::PartialOutage => "Partial outage",
            ComponentStatus::MajorOutage => "Major outage",
            ComponentStatus::UnderMaintenance => "Under maintenance",
        }
    }
}

/// The page's overall indicator (Statuspage's `status.indicator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Indicator {
    None,
    Maintenance,
    Minor,
    Major,
    Critical,
}

impl Indicator {
    /// Statuspage's own descriptions of each indicator.
    pub fn description(self) -> &'static str {
        match self {
            Indicator::None => "All Systems Operational",
            Indicator::Maintenance => "Service Under Maintenance",
            Indicator::Minor => "Minor Service Outage",
            Indicator::Major => "Partial System Outage",
            Indicator::Critical => "Major System Outage",
        }
    }
}

/// The page itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct PageInfo {
    /// Stable: derived from the stack's name, never a host.
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub time_zone: String,
    /// When this answer was computed (RFC 3339).
    pub updated_at: String,
}

/// `status.json`'s `status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct PageStatus {
    pub indicator: Indicator,
    pub description: String,
}

/// The share of a window a component was up (operational or degraded), in percent, leaving
/// out declared maintenance and the time before the stack first ran; `None` when the window
/// holds no data at all.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct Uptime {
    pub last_24h: Option<f64>,
    pub last_7d: Option<f64>,
    pub last_30d: Option<f64>,
}

/// One public component.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct Component {
    /// Stable: derived from the component's name.
    pub id: String,
    pub name: String,
    pub status: ComponentStatus,
    pub position: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub updated_at: String,
    pub page_id: String,
    pub group: bool,
    pub only_show_if_degraded: bool,
    pub showcase: bool,
    /// wharf's addition: uptime over the last 24 hours, 7 and 30 days.
    pub uptime: Uptime,
}

/// An incident's state (Statuspage's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    Investigating,
    Identified,
    Monitoring,
    Resolved,
    Postmortem,
}

impl IncidentStatus {
    /// Resolved and postmortem incidents are over.
    pub fn is_open(self) -> bool {
        !matches!(self, IncidentStatus::Resolved | IncidentStatus::Postmortem)
    }

    pub fn label(self) -> &'static str {
        match self {
            IncidentStatus::Investigating => "Investigating",
            IncidentStatus::Identified => "Identified",
            IncidentStatus::Monitoring => "Monitoring",
            IncidentStatus::Resolved => "Resolved",
            IncidentStatus::Postmortem => "Postmortem",
        }
    }
}

/// An incident's impact (Statuspage's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Impact {
    None,
    Minor,
    Major,
    Critical,
}

impl Impact {
    /// The page indicator an open incident of this impact calls for.
    pub fn indicator(self) -> Indicator {
        match self {
            Impact::None => Indicator::None,
            Impact::Minor => Indicator::Minor,
            Impact::Major => Indicator::Major,
            Impact::Critical => Indicator::Critical,
        }
    }
}

/// One public update of an incident. Updates not marked public never become one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct IncidentUpdate {
    pub id: String,
    pub status: IncidentStatus,
    pub body: String,
    pub created_at: String,
}

/// A component an incident affects.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct AffectedComponent {
    pub id: String,
    pub name: String,
}

/// An incident as the public sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct PublicIncident {
    /// Stable and opaque (derived from the incident's own id).
    pub id: String,
    pub name: String,
    pub status: IncidentStatus,
    pub impact: Impact,
    pub created_at: String,
    pub updated_at: String,
    pub resolved_at: Option<String>,
    /// Newest first, as Statuspage lists them.
    pub incident_updates: Vec<IncidentUpdate>,
    pub components: Vec<AffectedComponent>,
}

/// A maintenance in progress (a rollout, an in-place restore, a declared maintenance
/// silence), in Statuspage's `scheduled_maintenances` place.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct Maintenance {
    pub id: String,
    pub name: String,
    /// Always `in_progress`: wharf shows maintenance while it runs.
    pub status: String,
    pub started_at: String,
    /// When it is declared to end, if it is.
    pub scheduled_until: Option<String>,
    pub components: Vec<AffectedComponent>,
}

/// `/api/v2/summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct Summary {
    pub page: PageInfo,
    pub status: PageStatus,
    pub components: Vec<Component>,
    /// Unresolved incidents.
    pub incidents: Vec<PublicIncident>,
    pub scheduled_maintenances: Vec<Maintenance>,
}

/// `/api/v2/status.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct StatusAnswer {
    pub page: PageInfo,
    pub status: PageStatus,
}

/// `/api/v2/components.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct ComponentsAnswer {
    pub page: PageInfo,
    pub components: Vec<Component>,
}

/// `/api/v2/incidents/unresolved.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct IncidentsAnswer {
    pub page: PageInfo,
    pub incidents: Vec<PublicIncident>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_keep_statuspage_words() {
        for status in [
            ComponentStatus::Operational,
            ComponentStatus::DegradedPerformance,
            ComponentStatus::PartialOutage,
            ComponentStatus::MajorOutage,
            ComponentStatus::UnderMaintenance,
        ] {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        assert_eq!(serde_json::to_value(Indicator::None).unwrap(), "none");
        assert_eq!(
            serde_json::to_value(IncidentStatus::Postmortem).unwrap(),
            "postmortem"
        );
        assert_eq!(serde_json::to_value(Impact::Critical).unwrap(), "critical");
    }
}
