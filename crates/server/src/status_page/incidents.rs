//! Where the status page gets its incidents: the [`IncidentSource`] trait, and for now
//! [`LedgerIncidents`], which folds the ledger's `incident.*` entries into public incidents.
//!
//! The ledger entries read (`details`): `incident.declare` {`id`, `title`, `severity`,
//! `status`?, `message`?, `public`?, `services`?}, `incident.update` {`id`, `status`?,
//! `severity`?, `title`?, `message`?, `public`?, `services`?}, `incident.resolve` {`id`,
//! `message`?, `public`?, `status`? (`postmortem`)}. Only entries with `"public": true` and a
//! `message` become updates; **a message not marked public never reaches the page**, and an
//! incident shows only once one of its entries is public (until then its title is not
//! shown either). Severity maps to Statuspage's impact: `sev1` → critical, `sev2` → major,
//! `sev3` → minor, `sev4` → none; any other word → minor (a problem, not overstated). Status
//! is Statuspage's words (investigating, identified, monitoring, resolved, postmortem);
//! a declare without one is investigating, a resolve without one resolved. `services` names
//! the affected services; each component showing one of them is listed as affected.

use std::collections::BTreeMap;

use serde_json::Value;
use wharf_api::status_page::{
    AffectedComponent, Impact, IncidentStatus, IncidentUpdate, PublicIncident,
};
use wharf_store::Store;

use super::history::Fact;
use super::model::{Grouping, stable_id};

/// The status page's one question about incidents. The page calls it on a blocking thread
/// with a read-only connection to the state database (never the writing one).
///
/// To feed the page from the incidents' own tables, implement this over them and change the
/// one line in `StatusPage::new` that picks [`LedgerIncidents`].
pub trait IncidentSource: Send + Sync + 'static {
    /// Every incident the public may see, newest first, with only its public updates
    /// (newest first), its affected components among `components`.
    fn public_incidents(
        &self,
        store: &Store,
        components: &[Grouping],
    ) -> Result<Vec<PublicIncident>, wharf_store::StoreError>;
}

/// Incidents from the ledger's `incident.declare` / `incident.update` / `incident.resolve`
/// entries (the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct LedgerIncidents;

/// The ledger actions [`LedgerIncidents`] reads.
pub const ACTIONS: &[&str] = &["incident.declare", "incident.update", "incident.resolve"];

impl IncidentSource for LedgerIncidents {
    fn public_incidents(
        &self,
        store: &Store,
        components: &[Grouping],
    ) -> Result<Vec<PublicIncident>, wharf_store::StoreError> {
        let facts = super::read_facts(store, ACTIONS)?;
        Ok(from_facts(&facts, components))
    }
}

/// `sev1`..`sev4` → Statuspage's impact (the module docs).
pub fn impact(severity: &str) -> Impact {
    match severity.trim().to_ascii_lowercase().as_str() {
        "sev1" => Impact::Critical,
        "sev2" => Impact::Major,
        "sev3" => Impact::Minor,
        "sev4" => Impact::None,
        _ => Impact::Minor,
    }
}

fn status_word(details: &Value) -> Option<IncidentStatus> {
    serde_json::from_value(details.get("status")?.clone()).ok()
}

#[derive(Debug)]
struct Building {
    name: String,
    impact: Impact,
    status: IncidentStatus,
    public: bool,
    created_at: String,
    updated_at: String,
    resolved_at: Option<String>,
    updates: Vec<IncidentUpdate>,
    services: Vec<String>,
}

/// Folds incident facts (ledger order) into public incidents (the module docs), newest first.
pub fn from_facts(facts: &[Fact], components: &[Grouping]) -> Vec<PublicIncident> {
    let mut incidents: BTreeMap<String, Building> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for fact in facts {
        let details = &fact.details;
        let Some(id) = (match details.get("id") {
            Some(Value::String(id)) => Some(id.clone()),
            Some(Value::Number(id)) => Some(id.to_string()),
            _ => None,
        }) else {
            continue;
        };
        let time = fact.time.to_string();
        let declare = fact.action == "incident.declare";
        if !incidents.contains_key(&id) {
            if !declare {
                continue;
            }
            order.push(id.clone());
            incidents.insert(
                id.clone(),
                Building {
                    name: String::new(),
                    impact: Impact::Minor,
                    status: IncidentStatus::Investigating,
                    public: false,
                    created_at: time.clone(),
                    updated_at: time.clone(),
                    resolved_at: None,
                    updates: Vec::new(),
                    services: Vec::new(),
                },
            );
        }
        let Some(incident) = incidents.get_mut(&id) else {
            continue;
        };
        if let Some(title) = details.get("title").and_then(Value::as_str) {
            incident.name = title.to_owned();
        }
        if let Some(severity) = details.get("severity").and_then(Value::as_str) {
            incident.impact = impact(severity);
        }
        if let Some(services) = details.get("services").and_then(Value::as_array) {
            incident.services = services
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
        }
        match fact.action.as_str() {
            "incident.resolve" => {
                incident.status = status_word(details)
                    .filter(|s| !s.is_open())
                    .unwrap_or(IncidentStatus::Resolved);
                incident.resolved_at = Some(time.clone());
            }
            _ => {
                if let Some(status) = status_word(details) {
                    incident.status = status;
                    if status.is_open() {
                        incident.resolved_at = None;
                    } else if incident.resolved_at.is_none() {
                        incident.resolved_at = Some(time.clone());
                    }
                }
            }
        }
        incident.updated_at = time.clone();
        let public = details.get("public").and_then(Value::as_bool) == Some(true);
        if public {
            incident.public = true;
            if let Some(message) = details.get("message").and_then(Value::as_str) {
                incident.updates.push(IncidentUpdate {
                    id: stable_id("update", &format!("{id}:{}", incident.updates.len())),
                    status: incident.status,
                    body: message.to_owned(),
                    created_at: time,
                });
            }
        }
    }
    order
        .iter()
        .rev()
        .filter_map(|id| {
            let incident = incidents.remove(id)?;
            incident.public.then(|| finish(id, incident, components))
        })
        .collect()
}

fn finish(id: &str, incident: Building, components: &[Grouping]) -> PublicIncident {
    let affected = components
        .iter()
        .filter(|c| c.services.iter().any(|s| incident.services.contains(s)))
        .map(|c| AffectedComponent {
            id: c.id.clone(),
            name: c.name.clone(),
        })
        .collect();
    let mut updates = incident.updates;
    updates.reverse();
    PublicIncident {
        id: stable_id("incident", id),
        name: incident.name,
        status: incident.status,
        impact: incident.impact,
        created_at: incident.created_at,
        updated_at: incident.updated_at,
        resolved_at: incident.resolved_at,
        incident_updates: updates,
        components: affected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use serde_json::json;

    fn fact(minute: i64, action: &str, details: Value) -> Fact {
        Fact {
            time: Timestamp::from_second(1_800_000_000 + minute * 60).unwrap(),
            action: action.to_owned(),
            target: "incident".to_owned(),
            details,
        }
    }

    fn website() -> Vec<Grouping> {
        vec![Grouping {
            id: stable_id("component", "Website"),
            name: "Website".to_owned(),
            services: vec!["api".to_owned()],
            description: None,
        }]
    }

    #[test]
    fn only_public_updates_show_and_an_incident_shows_once_something_is_public() {
        let facts = vec![
            fact(
                0,
                "incident.declare",
                json!({"id": "INC-1", "title": "Checkout errors", "severity": "sev2", "services": ["api"], "message": "db-7.internal:5432 refused", "public": false}),
            ),
            fact(
                1,
                "incident.declare",
                json!({"id": "INC-2", "title": "internal only", "severity": "sev1"}),
            ),
            fact(
                2,
                "incident.update",
                json!({"id": "INC-1", "status": "identified", "message": "We found the cause.", "public": true}),
            ),
            fact(
                3,
                "incident.update",
                json!({"id": "INC-1", "message": "restarted pg on 10.0.0.7", "public": false}),
            ),
        ];
        let found = from_facts(&facts, &website());
        assert_eq!(found.len(), 1, "INC-2 has nothing public");
        let incident = &found[0];
        assert_eq!(incident.name, "Checkout errors");
        assert_eq!(incident.impact, Impact::Major);
        assert_eq!(incident.status, IncidentStatus::Identified);
        assert_eq!(incident.incident_updates.len(), 1);
        assert_eq!(incident.incident_updates[0].body, "We found the cause.");
        assert_eq!(incident.components[0].name, "Website");
        let text = serde_json::to_string(&found).unwrap();
        assert!(!text.contains("10.0.0.7") && !text.contains("5432") && !text.contains("INC-"));
    }

    #[test]
    fn a_resolve_closes_the_incident_and_severities_map_to_impacts() {
        let facts = vec![
            fact(
                0,
                "incident.declare",
                json!({"id": 4, "title": "Slow pages", "severity": "sev3", "status": "monitoring", "message": "Watching.", "public": true}),
            ),
            fact(
                5,
                "incident.resolve",
                json!({"id": 4, "message": "All good.", "public": true}),
            ),
        ];
        let found = from_facts(&facts, &[]);
        assert_eq!(found[0].status, IncidentStatus::Resolved);
        assert!(found[0].resolved_at.is_some());
        assert_eq!(found[0].incident_updates[0].body, "All good.");
        assert_eq!(
            found[0].incident_updates[1].status,
            IncidentStatus::Monitoring
        );
        assert_eq!(impact("sev1"), Impact::Critical);
        assert_eq!(impact("SEV4"), Impact::None);
        assert_eq!(impact("whatever"), Impact::Minor);
    }
}
