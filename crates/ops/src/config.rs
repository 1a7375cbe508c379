//! Config override use cases: a revision of a service's overrides and its ledger entry (values
//! in full: config is not secret) in one transaction.

use std::collections::BTreeMap;

use serde_json::json;
use wharf_ledger::KnownAction;
use wharf_store::Store;

use crate::{Actor, OpsError, append, fault};

/// Key → new value, or `None` to unset.
pub type Changes = BTreeMap<String, Option<String>>;

/// A recorded revision.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Revised {
    pub service: String,
    /// `None`: nothing changed, nothing recorded.
    pub revision: Option<u64>,
    pub changes: Changes,
}

/// Whether `key` can be an environment variable name.
pub fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check(service: &str, changes: &Changes, reason: &str) -> Result<(), OpsError> {
    if reason.trim().is_empty() {
        return Err(OpsError::Invalid("a reason must say why".to_owned()));
    }
    if service.is_empty() {
        return Err(OpsError::Invalid("a service name is required".to_owned()));
    }
    if changes.is_empty() {
        return Err(OpsError::Invalid("no change given".to_owned()));
    }
    if let Some(bad) = changes.keys().find(|key| !valid_key(key)) {
        return Err(OpsError::Invalid(format!(
            "`{bad}` is not a valid key (letters, digits and _, not starting with a digit)"
        )));
    }
    Ok(())
}

/// Records `changes` to `service`'s overrides (`config set` / `unset`) with its entry
/// (`action`: `config.set` or `config.unset`). Unsetting a key that is not set is refused.
pub fn change(
    store: &mut Store,
    actor: &Actor,
    service: &str,
    changes: Changes,
    reason: &str,
) -> Result<Revised, OpsError> {
    check(service, &changes, reason)?;
    let action = if changes.values().all(Option::is_none) {
        KnownAction::ConfigUnset
    } else {
        KnownAction::ConfigSet
    };
    store.atomically(|store| {
        let current = store.config_at(service, None)?;
        let missing: Vec<&str> = changes
            .iter()
            .filter(|(key, value)| value.is_none() && !current.contains_key(*key))
            .map(|(key, _)| key.as_str())
            .collect();
        if !missing.is_empty() {
            let set: Vec<&str> = current.keys().map(String::as_str).collect();
            return Err(OpsError::Invalid(format!(
                "not set for {service}: {} (set: {})",
                missing.join(", "),
                if set.is_empty() {
                    "none".to_owned()
                } else {
                    set.join(", ")
                }
            )));
        }
        let revision = store.add_config_revision(service, &changes, &actor.0, reason)?;
        fault::point("config.set:stored");
        let details = json!({"revision": revision, "changes": changes, "reason": reason});
        append(store, actor, action, service, details)?;
        Ok(Revised {
            service: service.to_owned(),
            revision: Some(revision),
            changes,
        })
    })
}

/// The changes that turn `current` into `target`.
pub fn restoring(current: &BTreeMap<String, String>, target: &BTreeMap<String, String>) -> Changes {
    let mut changes = Changes::new();
    for key in current.keys() {
        if !target.contains_key(key) {
            changes.insert(key.clone(), None);
        }
    }
    for (key, value) in target {
        if current.get(key) != Some(value) {
            changes.insert(key.clone(), Some(value.clone()));
        }
    }
    changes
}

/// Makes a service's overrides what they were as of revision `to`, as a new revision.
pub fn rollback(
    store: &mut Store,
    actor: &Actor,
    to: u64,
    reason: &str,
) -> Result<Revised, OpsError> {
    if reason.trim().is_empty() {
        return Err(OpsError::Invalid("a reason must say why".to_owned()));
    }
    store.atomically(|store| {
        let target_revision = store
            .config_revision(to)?
            .ok_or_else(|| OpsError::NotFound(format!("no configuration revision {to}")))?;
        let service = target_revision.service;
        let current = store.config_at(&service, None)?;
        let target = store.config_at(&service, Some(to))?;
        let changes = restoring(&current, &target);
        if changes.is_empty() {
            return Ok(Revised {
                service,
                revision: None,
                changes,
            });
        }
        let revision = store.add_config_revision(&service, &changes, &actor.0, reason)?;
        let details = json!({"revision": revision, "to": to, "changes": changes, "reason": reason});
        append(store, actor, KnownAction::ConfigRollback, &service, details)?;
        Ok(Revised {
            service,
            revision: Some(revision),
            changes,
        })
    })
}
