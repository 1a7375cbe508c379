//! Incidents: declare, update, acknowledge, assign roles, resolve — each the incident's row and
//! its ledger entry in one transaction — and, read back, the timeline and the postmortem draft.
//!
//! The timeline is the ledger: the incident's own entries and, within its window (from when
//! the trouble began to its resolution), every entry about the services it concerns — pages,
//! state changes, deploys and rollbacks, restarts, runbooks, restores, config and secret
//! changes. Nothing of it is typed in by hand, so it cannot be edited after the fact.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use jiff::Timestamp;
use serde_json::{Value, json};
use wharf_api::{
    DeclareIncidentRequest, Incident, IncidentSeverity, IncidentStatus, IncidentStepRequest,
    IncidentUpdate, IncidentUpdateRequest,
};
use wharf_ledger::{Entry, KnownAction};
use wharf_store::Store;

use crate::{Actor, OpsError, append};

/// The ledger target of an incident.
pub fn target(id: u64) -> String {
    format!("incident/{id}")
}

/// Reads `INC-3`, `inc-3` or `3`.
pub fn parse_id(text: &str) -> Result<u64, OpsError> {
    let trimmed = text.trim();
    let digits = trimmed
        .strip_prefix("INC-")
        .or_else(|| trimmed.strip_prefix("inc-"))
        .unwrap_or(trimmed);
    digits
        .parse::<u64>()
        .map_err(|_| OpsError::Invalid(format!("`{text}` is not an incident id (like `INC-3`)")))
}

/// Where an incident a rule opened came from.
#[derive(Debug, Clone)]
pub struct FromPage {
    pub dedup_key: String,
    pub started_at: Timestamp,
}

fn line(what: &str, text: &str, max: usize) -> Result<String, OpsError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(OpsError::Invalid(format!("an incident needs a {what}")));
    }
    if text.chars().count() > max {
        return Err(OpsError::Invalid(format!(
            "the {what} is longer than {max} characters"
        )));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(OpsError::Invalid(format!(
            "the {what} holds control characters"
        )));
    }
    Ok(text.to_owned())
}

fn name(what: &str, text: &str) -> Result<String, OpsError> {
    let text = text.trim();
    let ok = !text.is_empty()
        && text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.@".contains(c));
    if ok {
        Ok(text.to_owned())
    } else {
        Err(OpsError::Invalid(format!(
            "`{text}` is not a {what} (letters, digits, `_-.@`; at most 64)"
        )))
    }
}

fn save(store: &mut Store, incident: &Incident) -> Result<(), OpsError> {
    let doc = serde_json::to_string(incident).map_err(|e| OpsError::Invalid(e.to_string()))?;
    store.save_incident(incident.id, incident.status.as_str(), &doc)?;
    Ok(())
}

/// One incident.
pub fn get(store: &Store, id: u64) -> Result<Incident, OpsError> {
    let doc = store
        .incident(id)?
        .ok_or_else(|| OpsError::NotFound(format!("no incident INC-{id}")))?;
    serde_json::from_str(&doc)
        .map_err(|e| OpsError::Invalid(format!("incident INC-{id} does not decode: {e}")))
}

/// The unresolved incidents, or with `all` the last 200 of any state; newest first.
pub fn list(store: &Store, all: bool) -> Result<Vec<Incident>, OpsError> {
    Ok(store
        .incidents(all, 200)?
        .iter()
        .filter_map(|doc| serde_json::from_str(doc).ok())
        .collect())
}

/// Declares an incident (a person, or an alert rule with its page).
pub fn declare(
    store: &mut Store,
    actor: &Actor,
    request: &DeclareIncidentRequest,
    from_page: Option<FromPage>,
    now: Timestamp,
) -> Result<Incident, OpsError> {
    let title = line("title", &request.title, 200)?;
    let commander = match &request.commander {
        Some(person) => name("person", person)?,
        None => actor.0.clone(),
    };
    let mut services = Vec::new();
    for service in &request.services {
        let service = name("service name", service)?;
        if !services.contains(&service) {
            services.push(service);
        }
    }
    let message = match &request.message {
        Some(message) => Some(line("message", message, 4000)?),
        None => None,
    };
    store.atomically(|store| {
        let id = store.new_incident_id(&now.to_string())?;
        let mut incident = Incident {
            id,
            title: title.clone(),
            severity: request.severity,
            status: IncidentStatus::Investigating,
            services: services.clone(),
            roles: [("commander".to_owned(), commander.clone())].into(),
            declared_by: actor.0.clone(),
            declared_at: now.to_string(),
            alert: from_page.as_ref().map(|p| p.dedup_key.clone()),
            started_at: from_page.as_ref().map(|p| p.started_at.to_string()),
            acknowledged_at: None,
            acknowledged_by: None,
            resolved_at: None,
            resolved_by: None,
            updates: Vec::new(),
        };
        if let Some(message) = &message {
            incident.updates.push(IncidentUpdate {
                at: now.to_string(),
                by: actor.0.clone(),
                status: IncidentStatus::Investigating,
                message: message.clone(),
                public: request.public,
            });
        }
        save(store, &incident)?;
        append(
            store,
            actor,
            KnownAction::IncidentDeclare,
            &target(id),
            json!({
                "id": id,
                "title": incident.title,
                "severity": incident.severity,
                "status": incident.status,
                "services": incident.services,
                "commander": commander,
                "alert": incident.alert,
                "message": message,
                "public": request.public,
            }),
        )?;
        Ok(incident)
    })
}

/// Loads an incident that is still open, for a change.
fn open_incident(store: &Store, id: u64) -> Result<Incident, OpsError> {
    let incident = get(store, id)?;
    if incident.status == IncidentStatus::Resolved {
        return Err(OpsError::Conflict(format!(
            "incident INC-{id} is resolved (at {}); declare a new one",
            incident.resolved_at.as_deref().unwrap_or("?")
        )));
    }
    Ok(incident)
}

/// A status update; an update to `resolved` resolves it.
pub fn update(
    store: &mut Store,
    actor: &Actor,
    id: u64,
    request: &IncidentUpdateRequest,
    now: Timestamp,
) -> Result<Incident, OpsError> {
    if request.status == Some(IncidentStatus::Resolved) {
        // The last word on severity may come with the resolution.
        return resolve_with(
            store,
            actor,
            id,
            &IncidentStepRequest {
                message: Some(request.message.clone()),
                public: request.public,
            },
            request.severity,
            now,
        );
    }
    let message = line("message", &request.message, 4000)?;
    store.atomically(|store| {
        let mut incident = open_incident(store, id)?;
        let status = request.status.unwrap_or(incident.status);
        incident.status = status;
        if let Some(severity) = request.severity {
            incident.severity = severity;
        }
        incident.updates.push(IncidentUpdate {
            at: now.to_string(),
            by: actor.0.clone(),
            status,
            message: message.clone(),
            public: request.public,
        });
        save(store, &incident)?;
        append(
            store,
            actor,
            KnownAction::IncidentUpdate,
            &target(id),
            json!({
                "id": id,
                "status": status,
                "severity": incident.severity,
                "message": message,
                "public": request.public,
            }),
        )?;
        Ok(incident)
    })
}

/// Someone takes the incident on; the first acknowledgement is the one MTTA counts to.
pub fn ack(
    store: &mut Store,
    actor: &Actor,
    id: u64,
    request: &IncidentStepRequest,
    now: Timestamp,
) -> Result<Incident, OpsError> {
    let message = match &request.message {
        Some(m) => Some(line("message", m, 4000)?),
        None => None,
    };
    store.atomically(|store| {
        let mut incident = open_incident(store, id)?;
        if let Some(at) = &incident.acknowledged_at {
            return Err(OpsError::Conflict(format!(
                "incident INC-{id} was acknowledged by {} at {at}",
                incident.acknowledged_by.as_deref().unwrap_or("?")
            )));
        }
        incident.acknowledged_at = Some(now.to_string());
        incident.acknowledged_by = Some(actor.0.clone());
        if let Some(message) = &message {
            incident.updates.push(IncidentUpdate {
                at: now.to_string(),
                by: actor.0.clone(),
                status: incident.status,
                message: message.clone(),
                public: request.public,
            });
        }
        save(store, &incident)?;
        append(
            store,
            actor,
            KnownAction::IncidentAck,
            &target(id),
            json!({"id": id, "message": message, "public": request.public}),
        )?;
        Ok(incident)
    })
}

/// Gives a role to a person.
pub fn assign(
    store: &mut Store,
    actor: &Actor,
    id: u64,
    role: &str,
    person: &str,
) -> Result<Incident, OpsError> {
    let role = name("role", role)?;
    let person = name("person", person)?;
    store.atomically(|store| {
        let mut incident = open_incident(store, id)?;
        let previous = incident.roles.insert(role.clone(), person.clone());
        save(store, &incident)?;
        append(
            store,
            actor,
            KnownAction::IncidentAssign,
            &target(id),
            json!({"id": id, "role": role, "person": person, "previous": previous}),
        )?;
        Ok(incident)
    })
}

/// Resolves the incident.
pub fn resolve(
    store: &mut Store,
    actor: &Actor,
    id: u64,
    request: &IncidentStepRequest,
    now: Timestamp,
) -> Result<Incident, OpsError> {
    resolve_with(store, actor, id, request, None, now)
}

fn resolve_with(
    store: &mut Store,
    actor: &Actor,
    id: u64,
    request: &IncidentStepRequest,
    severity: Option<IncidentSeverity>,
    now: Timestamp,
) -> Result<Incident, OpsError> {
    let message = match &request.message {
        Some(m) => Some(line("message", m, 4000)?),
        None => None,
    };
    store.atomically(|store| {
        let mut incident = open_incident(store, id)?;
        incident.status = IncidentStatus::Resolved;
        if let Some(severity) = severity {
            incident.severity = severity;
        }
        incident.resolved_at = Some(now.to_string());
        incident.resolved_by = Some(actor.0.clone());
        if let Some(message) = &message {
            incident.updates.push(IncidentUpdate {
                at: now.to_string(),
                by: actor.0.clone(),
                status: IncidentStatus::Resolved,
                message: message.clone(),
                public: request.public,
            });
        }
        save(store, &incident)?;
        append(
            store,
            actor,
            KnownAction::IncidentResolve,
            &target(id),
            json!({"id": id, "message": message, "public": request.public, "severity": incident.severity}),
        )?;
        Ok(incident)
    })
}

/// The incident a rule's page asks for: a new one, or — when an unresolved incident already
/// came from a page of this key (the page flapped: resolved, then opened again) — that one,
/// set back to investigating with an update saying so.
pub fn declare_for_page(
    store: &mut Store,
    actor: &Actor,
    request: &DeclareIncidentRequest,
    page: FromPage,
    now: Timestamp,
) -> Result<Incident, OpsError> {
    let open = list(store, false)?
        .into_iter()
        .find(|i| i.alert.as_deref() == Some(page.dedup_key.as_str()));
    match open {
        Some(incident) => update(
            store,
            actor,
            incident.id,
            &IncidentUpdateRequest {
                status: Some(IncidentStatus::Investigating),
                message: format!("the page {} opened again", page.dedup_key),
                public: false,
                severity: None,
            },
            now,
        ),
        None => declare(store, actor, request, Some(page), now),
    }
}

/// Notes on an open incident that a rule's page resolved (the incident stays open: people
/// resolve incidents).
pub fn page_resolved(
    store: &mut Store,
    actor: &Actor,
    dedup_key: &str,
    now: Timestamp,
) -> Result<Option<Incident>, OpsError> {
    let Some(incident) = list(store, false)?
        .into_iter()
        .find(|i| i.alert.as_deref() == Some(dedup_key))
    else {
        return Ok(None);
    };
    update(
        store,
        actor,
        incident.id,
        &IncidentUpdateRequest {
            status: Some(IncidentStatus::Monitoring),
            message: format!("the page {dedup_key} resolved"),
            public: false,
            severity: None,
        },
        now,
    )
    .map(Some)
}

/// How far before the trouble's start the timeline looks: what changed just before an
/// outage (a deploy, a config change, the first state change) is often its cause.
const LEAD: jiff::SignedDuration = jiff::SignedDuration::from_mins(15);

/// When the incident's window begins: the trouble's start when known, else its declaration.
fn window_start(incident: &Incident) -> Option<Timestamp> {
    let declared = incident.declared_at.parse::<Timestamp>().ok()?;
    Some(
        incident
            .started_at
            .as_deref()
            .and_then(|s| s.parse::<Timestamp>().ok())
            .map_or(declared, |started| started.min(declared)),
    )
}

/// Actions about a service that belong in an incident's timeline.
fn concerns(entry: &Entry, services: &BTreeSet<&str>) -> bool {
    let action = entry.action.as_str();
    let family = action.split('.').next().unwrap_or("");
    let relevant = matches!(
        family,
        "alert" | "deploy" | "service" | "backup" | "runbook" | "config" | "secret"
    ) || matches!(
        action,
        "instance.restart" | "instance.exit" | "instance.unhealthy"
    );
    if !relevant || matches!(action, "alert.delivered" | "alert.undelivered") {
        return false;
    }
    let service = entry.target.split('/').next().unwrap_or("");
    let service = service.trim_end_matches(":backups");
    if services.contains(service) {
        return true;
    }
    // A page names its affected dependents; a runbook its touched services.
    ["affected", "services", "touched"].iter().any(|key| {
        entry
            .details
            .get(*key)
            .and_then(Value::as_array)
            .is_some_and(|names| {
                names
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|name| services.contains(name))
            })
    })
}

/// The incident's timeline from the ledger, oldest first.
pub fn timeline(store: &Store, incident: &Incident) -> Result<Vec<Entry>, OpsError> {
    let own = target(incident.id);
    let from = window_start(incident);
    let to = incident
        .resolved_at
        .as_deref()
        .and_then(|s| s.parse::<Timestamp>().ok());
    let services: BTreeSet<&str> = incident.services.iter().map(String::as_str).collect();
    let mut entries = Vec::new();
    for raw in store.ledger_entries(&Default::default())? {
        let Ok(entry) = Entry::try_from(raw) else {
            continue;
        };
        if entry.target == own {
            entries.push(entry);
            continue;
        }
        let inside = from.is_some_and(|from| entry.time >= from.checked_sub(LEAD).unwrap_or(from))
            && to.is_none_or(|to| entry.time <= to);
        if inside && concerns(&entry, &services) {
            entries.push(entry);
        }
    }
    Ok(entries)
}

/// Time to acknowledge and to resolve, from the trouble's start (or the declaration).
pub fn mtta_mttr(
    incident: &Incident,
) -> (Option<jiff::SignedDuration>, Option<jiff::SignedDuration>) {
    let Some(from) = window_start(incident) else {
        return (None, None);
    };
    let since = |at: &Option<String>| {
        at.as_deref()
            .and_then(|s| s.parse::<Timestamp>().ok())
            .map(|t| t.duration_since(from))
    };
    (
        since(&incident.acknowledged_at),
        since(&incident.resolved_at),
    )
}

/// A duration the way people read it: `4m 12s`.
pub fn human(duration: jiff::SignedDuration) -> String {
    let secs = duration.as_secs().max(0);
    match (secs / 3600, secs % 3600 / 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

/// One timeline entry in words.
fn describe(entry: &Entry) -> String {
    let d = &entry.details;
    let text = |key: &str| d.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
    match entry.action.as_str() {
        "incident.declare" => format!(
            "Incident declared: \"{}\" ({})",
            text("title"),
            text("severity")
        ),
        "incident.update" => format!("Status {}: {}", text("status"), text("message")),
        "incident.ack" => "Acknowledged".to_owned(),
        "incident.assign" => format!("{} is {}", text("person"), text("role")),
        "incident.resolve" => "Resolved".to_owned(),
        "alert.trigger" => format!("Paged ({}): {}", text("rule"), text("summary")),
        "alert.silenced" => format!("Page held by a silence: {}", text("summary")),
        "alert.acknowledge" => format!("Page acknowledged at its receiver ({})", text("rule")),
        "alert.resolve" => format!("Page resolved ({}): {}", text("rule"), text("summary")),
        "service.state" => {
            let reason = text("reason");
            let mut out = format!("{} {} → {}", entry.target, text("from"), text("to"));
            if !reason.is_empty() {
                let _ = write!(out, " ({reason})");
            }
            out
        }
        _ => {
            let mut out = format!("{} {}", entry.action.as_str(), entry.target);
            for key in ["version", "from", "to", "reason", "result", "step"] {
                if let Some(value) = d.get(key).filter(|v| !v.is_null()) {
                    let value = value
                        .as_str()
                        .map_or_else(|| value.to_string(), str::to_owned);
                    let _ = write!(out, " {key}={value}");
                }
            }
            out
        }
    }
}

/// The postmortem draft in Markdown: the facts — summary, impact, timeline with times and
/// actors, actions taken, signals — and headed sections for what people must write.
pub fn postmortem(incident: &Incident, timeline: &[Entry]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Postmortem: INC-{} — {}\n",
        incident.id, incident.title
    );
    let _ = writeln!(
        out,
        "*Draft written by wharf from the ledger; edit the prose, keep the facts.*\n"
    );
    let _ = writeln!(out, "## Summary\n");
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| Severity | {} |", incident.severity.as_str());
    let _ = writeln!(out, "| Status | {} |", incident.status.as_str());
    if let Some(started) = &incident.started_at {
        let _ = writeln!(out, "| Trouble began | {started} |");
    }
    let _ = writeln!(
        out,
        "| Declared | {} by {} |",
        incident.declared_at, incident.declared_by
    );
    if let (Some(at), Some(by)) = (&incident.acknowledged_at, &incident.acknowledged_by) {
        let _ = writeln!(out, "| Acknowledged | {at} by {by} |");
    }
    if let (Some(at), Some(by)) = (&incident.resolved_at, &incident.resolved_by) {
        let _ = writeln!(out, "| Resolved | {at} by {by} |");
    }
    let (mtta, mttr) = mtta_mttr(incident);
    let _ = writeln!(
        out,
        "| Time to acknowledge | {} |",
        mtta.map_or("—".to_owned(), human)
    );
    let _ = writeln!(
        out,
        "| Time to resolve | {} |",
        mttr.map_or("— (open)".to_owned(), human)
    );
    let roles: Vec<String> = incident
        .roles
        .iter()
        .map(|(role, person)| format!("{role}: {person}"))
        .collect();
    let _ = writeln!(out, "| Roles | {} |", roles.join(", "));
    if let Some(alert) = &incident.alert {
        let _ = writeln!(out, "| Opened by page | `{alert}` |");
    }
    let _ = writeln!(out, "\n## Impact\n");
    if incident.services.is_empty() {
        let _ = writeln!(out, "No services named.");
    } else {
        let _ = writeln!(out, "Services affected: {}.", incident.services.join(", "));
    }
    let downs: Vec<&Entry> = timeline
        .iter()
        .filter(|e| e.action.as_str() == "service.state")
        .collect();
    if !downs.is_empty() {
        let _ = writeln!(out, "\nState changes in the window: {}.", downs.len());
    }
    let _ = writeln!(out, "\n## Timeline (UTC)\n");
    let _ = writeln!(out, "| Time | Actor | Event | Ledger |\n|---|---|---|---|");
    for entry in timeline {
        let event = describe(entry).replace('|', "\\|").replace('\n', " ");
        let _ = writeln!(
            out,
            "| {} | {} | {} | #{} |",
            entry.time.strftime("%Y-%m-%d %H:%M:%S"),
            entry.actor,
            event,
            entry.seq
        );
    }
    let actions: Vec<&Entry> = timeline
        .iter()
        .filter(|e| {
            let a = e.action.as_str();
            a.starts_with("deploy.rollback")
                || a == "deploy.start"
                || a == "deploy.rolled_back"
                || a.starts_with("runbook.")
                || a.starts_with("backup.restore")
                || a == "service.restart"
                || a == "instance.restart"
                || a.starts_with("config.")
                || a.starts_with("secret.")
        })
        .collect();
    let _ = writeln!(out, "\n## Actions taken\n");
    if actions.is_empty() {
        let _ = writeln!(out, "None recorded.");
    }
    for entry in actions {
        let _ = writeln!(
            out,
            "- {} — {} ({})",
            entry.time.strftime("%H:%M:%S"),
            describe(entry),
            entry.actor
        );
    }
    let signals: Vec<&Entry> = timeline
        .iter()
        .filter(|e| {
            matches!(
                e.action.as_str(),
                "alert.trigger" | "alert.silenced" | "deploy.verdict"
            )
        })
        .collect();
    let _ = writeln!(out, "\n## Signals around the window\n");
    if signals.is_empty() {
        let _ = writeln!(out, "No page or rollout analysis in the window.");
    }
    for entry in signals {
        let detail = match entry.action.as_str() {
            "deploy.verdict" => format!("rollout analysis of {}: {}", entry.target, entry.details),
            _ => describe(entry),
        };
        let _ = writeln!(out, "- {} — {detail}", entry.time.strftime("%H:%M:%S"));
    }
    let updates: Vec<&IncidentUpdate> = incident.updates.iter().collect();
    if !updates.is_empty() {
        let _ = writeln!(out, "\n## Status updates\n");
        for update in updates {
            let _ = writeln!(
                out,
                "- {} — **{}** ({}{}) {}",
                update.at,
                update.status.as_str(),
                update.by,
                if update.public { ", public" } else { "" },
                update.message
            );
        }
    }
    for heading in [
        "Root cause",
        "What went well",
        "What went wrong",
        "Follow-up actions",
    ] {
        let _ = writeln!(out, "\n## {heading}\n\n_To be written._");
    }
    out
}

/// The severity an alert rule's `incident:` names.
pub fn severity_of(text: &str) -> Option<IncidentSeverity> {
    IncidentSeverity::parse(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declare_one(store: &mut Store, now: Timestamp) -> Incident {
        declare(
            store,
            &Actor("ana".to_owned()),
            &DeclareIncidentRequest {
                title: "checkout errors".to_owned(),
                severity: IncidentSeverity::Sev2,
                commander: None,
                services: vec!["api".to_owned()],
                message: Some("looking".to_owned()),
                public: true,
            },
            None,
            now,
        )
        .unwrap()
    }

    #[test]
    fn an_incident_runs_its_course_with_an_entry_per_step_and_mtta_mttr() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let t0: Timestamp = "2026-12-05T10:00:00Z".parse().unwrap();
        let at = |s: i64| t0.checked_add(jiff::SignedDuration::from_secs(s)).unwrap();
        let incident = declare_one(&mut store, t0);
        assert_eq!(incident.id, 1);
        assert_eq!(incident.roles["commander"], "ana");
        let bo = Actor("bo".to_owned());
        ack(&mut store, &bo, 1, &Default::default(), at(90)).unwrap();
        assert!(matches!(
            ack(&mut store, &bo, 1, &Default::default(), at(91)),
            Err(OpsError::Conflict(_))
        ));
        assign(&mut store, &bo, 1, "scribe", "cy").unwrap();
        update(
            &mut store,
            &bo,
            1,
            &IncidentUpdateRequest {
                status: Some(IncidentStatus::Identified),
                message: "bad deploy".to_owned(),
                public: false,
                severity: Some(IncidentSeverity::Sev1),
            },
            at(120),
        )
        .unwrap();
        let done = resolve(&mut store, &bo, 1, &Default::default(), at(600)).unwrap();
        assert_eq!(done.status, IncidentStatus::Resolved);
        assert_eq!(done.severity, IncidentSeverity::Sev1);
        let (mtta, mttr) = mtta_mttr(&done);
        assert_eq!(mtta.unwrap().as_secs(), 90);
        assert_eq!(mttr.unwrap().as_secs(), 600);
        assert!(matches!(
            update(
                &mut store,
                &bo,
                1,
                &IncidentUpdateRequest {
                    status: None,
                    message: "late".to_owned(),
                    public: false,
                    severity: None
                },
                at(700)
            ),
            Err(OpsError::Conflict(_))
        ));
        let timeline = timeline(&store, &done).unwrap();
        let actions: Vec<&str> = timeline.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "incident.declare",
                "incident.ack",
                "incident.assign",
                "incident.update",
                "incident.resolve"
            ]
        );
        let draft = postmortem(&done, &timeline);
        assert!(
            draft.contains("| Time to acknowledge | 1m 30s |"),
            "{draft}"
        );
        assert!(draft.contains("| Time to resolve | 10m 0s |"), "{draft}");
        assert!(draft.contains("| bo | Acknowledged |"), "{draft}");
        assert!(draft.contains("scribe: cy"), "{draft}");
    }

    #[test]
    fn a_page_that_opens_again_reopens_its_incident_instead_of_declaring_another() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let actor = Actor("wharf".to_owned());
        let t0: Timestamp = "2026-12-05T10:00:00Z".parse().unwrap();
        let request = DeclareIncidentRequest {
            title: "db is down".to_owned(),
            severity: IncidentSeverity::Sev2,
            commander: None,
            services: vec!["db".to_owned()],
            message: None,
            public: false,
        };
        let page = || FromPage {
            dedup_key: "wharf/shop/oncall/db".to_owned(),
            started_at: t0,
        };
        let first = declare_for_page(&mut store, &actor, &request, page(), t0).unwrap();
        page_resolved(&mut store, &actor, "wharf/shop/oncall/db", t0).unwrap();
        let again = declare_for_page(&mut store, &actor, &request, page(), t0).unwrap();
        assert_eq!(again.id, first.id);
        assert_eq!(again.status, IncidentStatus::Investigating);
        assert_eq!(list(&store, true).unwrap().len(), 1);
        // Once people resolved it, the next page is a new incident.
        resolve(&mut store, &actor, first.id, &Default::default(), t0).unwrap();
        let third = declare_for_page(&mut store, &actor, &request, page(), t0).unwrap();
        assert_ne!(third.id, first.id);
    }

    #[test]
    fn bad_incident_input_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let actor = Actor("ana".to_owned());
        let mut request = DeclareIncidentRequest {
            title: " ".to_owned(),
            severity: IncidentSeverity::Sev3,
            commander: None,
            services: Vec::new(),
            message: None,
            public: false,
        };
        assert!(declare(&mut store, &actor, &request, None, Timestamp::now()).is_err());
        request.title = "x".to_owned();
        request.services = vec!["no spaces allowed".to_owned()];
        assert!(declare(&mut store, &actor, &request, None, Timestamp::now()).is_err());
        assert!(matches!(
            ack(&mut store, &actor, 4, &Default::default(), Timestamp::now()),
            Err(OpsError::NotFound(_))
        ));
        assert!(
            store
                .ledger_entries(&Default::default())
                .unwrap()
                .is_empty()
        );
        assert!(list(&store, true).unwrap().is_empty());
        assert_eq!(parse_id("INC-12").unwrap(), 12);
        assert!(parse_id("twelve").is_err());
    }
}
