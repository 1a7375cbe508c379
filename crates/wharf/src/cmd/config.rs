//! `wharf config …`: a service's configuration overrides as numbered revisions — set, unset,
//! history, diff between revisions, roll back — each with a reason, in the ledger, and
//! applied by a running control plane.
//!
//! Config values are not secrets: the ledger records them in full. Secrets go through
//! `wharf secret`.

use std::collections::BTreeMap;

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde_json::{Value, json};
use wharf_ops::read::{ConfigRevision, StateDb};

use crate::cli::{Global, Output};

use crate::client;
use crate::cmd::secret::{applied_by_control_plane, load_stack, print_json};
use crate::exit::ExitStatus;
use crate::writer::{self, Route};
use wharf_api::{
    ChangeConfigRequest, ConfigChangeAnswer, ConfigRollbackRequest, ReloadOutcome, RevisedConfig,
};
use wharf_ops::config::Revised;
use wharf_ops::{Actor, OpsErrorKind};

/// Key → new value, or `None` to unset (the store's shape).
type Changes = BTreeMap<String, Option<String>>;

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Set one or more keys of a service's configuration (a new revision).
    Set {
        /// The service, as named in the manifest.
        service: String,
        /// `KEY=VALUE` pairs; KEY is an environment variable name.
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
        /// Why, for the ledger (required).
        #[arg(long)]
        reason: String,
    },
    /// Remove keys from a service's configuration (a new revision).
    Unset {
        /// The service, as named in the manifest.
        service: String,
        /// The keys to remove.
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
        /// Why, for the ledger (required).
        #[arg(long)]
        reason: String,
    },
    /// A service's effective configuration overrides (now, or as of a revision).
    Show {
        /// The service.
        service: String,
        /// As of this revision instead of now.
        #[arg(long, value_name = "REV")]
        at: Option<u64>,
    },
    /// Every revision (of one service, or all), oldest first.
    History {
        /// Only this service's revisions.
        service: Option<String>,
    },
    /// How the service of revision FROM was configured at FROM and at TO.
    Diff {
        /// The earlier revision.
        from: u64,
        /// The later revision.
        to: u64,
    },
    /// A new revision restoring the service's configuration as of REV.
    Rollback {
        /// The revision to go back to.
        rev: u64,
        /// Why, for the ledger (required).
        #[arg(long)]
        reason: String,
    },
}

pub fn run(global: &Global, command: ConfigCommand) -> anyhow::Result<ExitStatus> {
    match command {
        ConfigCommand::Set {
            service,
            pairs,
            reason,
        } => match parse_pairs(&pairs) {
            Ok(changes) => change(global, &service, changes, &reason),
            Err(message) => invalid(&message),
        },
        ConfigCommand::Unset {
            service,
            keys,
            reason,
        } => match parse_keys(&keys) {
            Ok(changes) => change(global, &service, changes, &reason),
            Err(message) => invalid(&message),
        },
        ConfigCommand::Show { service, at } => show(global, &service, at),
        ConfigCommand::History { service } => history(global, service.as_deref()),
        ConfigCommand::Diff { from, to } => diff(global, from, to),
        ConfigCommand::Rollback { rev, reason } => rollback(global, rev, &reason),
    }
}

fn invalid(message: &str) -> anyhow::Result<ExitStatus> {
    eprintln!("error: {message}");
    Ok(ExitStatus::Invalid)
}

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_key(key: &str) -> Result<(), String> {
    if valid_key(key) {
        Ok(())
    } else {
        Err(format!(
            "`{key}` is not a valid key: use an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
        ))
    }
}

fn parse_pairs(pairs: &[String]) -> Result<Changes, String> {
    let mut changes = Changes::new();
    for pair in pairs {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("`{pair}`: expected KEY=VALUE"))?;
        check_key(key)?;
        if changes
            .insert(key.to_owned(), Some(value.to_owned()))
            .is_some()
        {
            return Err(format!("`{key}` is given twice"));
        }
    }
    Ok(changes)
}

fn parse_keys(keys: &[String]) -> Result<Changes, String> {
    let mut changes = Changes::new();
    for key in keys {
        check_key(key)?;
        changes.insert(key.clone(), None);
    }
    Ok(changes)
}

/// Validates the service against the manifest and the change against the current values,
/// then records the revision, its ledger entry, and asks for a reload.
fn change(
    global: &Global,
    service: &str,
    changes: Changes,
    reason: &str,
) -> anyhow::Result<ExitStatus> {
    if reason.trim().is_empty() {
        return invalid("--reason must say why");
    }
    if let Some(status) = unknown_service(global, service)? {
        return Ok(status);
    }
    let state_dir = global.state_dir();
    let (revised, reload) = match writer::route(&state_dir)? {
        Route::Api => {
            let request = ChangeConfigRequest {
                changes,
                reason: reason.to_owned(),
            };
            let path = format!("/v1/config/{}", writer::segment(service));
            let answer: ConfigChangeAnswer = match writer::call(&state_dir, "PUT", &path, &request)
            {
                Err(err) if err.is::<client::ApiRejected>() => {
                    return invalid(&err.to_string());
                }
                other => other?,
            };
            (revised_from_api(answer.revised), Some(answer.reload))
        }
        Route::Local(lock) => {
            let mut store = wharf_ops::read::open(&lock)?;
            let actor = Actor::from_environment();
            match wharf_ops::config::change(&mut store, &actor, service, changes, reason) {
                Ok(revised) => (revised, None),
                Err(err) if err.kind() == OpsErrorKind::Invalid => {
                    return invalid(&err.to_string());
                }
                Err(err) => return Err(err.into()),
            }
        }
    };
    applied(global, &revised, reload.as_ref())?;
    Ok(ExitStatus::Ok)
}

/// A revision as the API sends it.
fn revised_from_api(revised: RevisedConfig) -> Revised {
    Revised {
        service: revised.service,
        revision: revised.revision,
        changes: revised.changes,
    }
}

/// Reports a recorded revision and asks a running control plane to apply it.
fn applied(
    global: &Global,
    revised: &Revised,
    reload: Option<&ReloadOutcome>,
) -> anyhow::Result<()> {
    let revision = revised.revision.unwrap_or_default();
    match global.output {
        Output::Json => print_json(&json!({
            "revision": revision,
            "service": revised.service,
            "changes": revised.changes,
        }))?,
        Output::Human => {
            eprintln!("recorded revision {revision} of {}:", revised.service);
            for line in change_lines(&revised.changes) {
                eprintln!("  {line}");
            }
        }
    }
    applied_by_control_plane(reload);
    Ok(())
}

fn change_lines(changes: &Changes) -> Vec<String> {
    changes
        .iter()
        .map(|(key, value)| match value {
            Some(value) => format!("{key}={value}"),
            None => format!("unset {key}"),
        })
        .collect()
}

/// The state database if there is one; commands that only read never create it.
fn open_existing(global: &Global) -> anyhow::Result<Option<StateDb>> {
    Ok(wharf_ops::read::open_existing(&global.state_dir())?)
}

fn revision(store: Option<&StateDb>, id: u64) -> anyhow::Result<Result<ConfigRevision, String>> {
    let found = match store {
        Some(store) => store.config_revision(id)?,
        None => None,
    };
    Ok(found.ok_or_else(|| format!("no configuration revision {id}")))
}

/// `Some(exit status)` (after saying why) when the manifest has no such service.
fn unknown_service(global: &Global, service: &str) -> anyhow::Result<Option<ExitStatus>> {
    let stack = match load_stack(global)? {
        Ok(stack) => stack,
        Err(status) => return Ok(Some(status)),
    };
    if stack.services.contains_key(service) {
        return Ok(None);
    }
    let names: Vec<&str> = stack.services.keys().map(String::as_str).collect();
    invalid(&format!(
        "no service `{service}` in the manifest (services: {})",
        names.join(", ")
    ))
    .map(Some)
}

fn show(global: &Global, service: &str, at: Option<u64>) -> anyhow::Result<ExitStatus> {
    if let Some(status) = unknown_service(global, service)? {
        return Ok(status);
    }
    let store = open_existing(global)?;
    if let Some(at) = at
        && let Err(message) = revision(store.as_ref(), at)?
    {
        return invalid(&message);
    }
    let config = match store {
        Some(store) => store.config_at(service, at)?,
        None => BTreeMap::new(),
    };
    match global.output {
        Output::Json => print_json(&json!(config))?,
        Output::Human if config.is_empty() => eprintln!("no configuration set for {service}"),
        Output::Human => {
            for (key, value) in &config {
                println!("{key}={value}");
            }
        }
    }
    Ok(ExitStatus::Ok)
}

fn history(global: &Global, service: Option<&str>) -> anyhow::Result<ExitStatus> {
    let revisions = match open_existing(global)? {
        Some(store) => store.config_revisions(service)?,
        None => Vec::new(),
    };
    if global.output == Output::Json {
        let records: Vec<Value> = revisions.iter().map(revision_json).collect();
        print_json(&Value::Array(records))?;
        return Ok(ExitStatus::Ok);
    }
    if revisions.is_empty() {
        println!("no configuration revisions");
        return Ok(ExitStatus::Ok);
    }
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header(["REV", "SERVICE", "CREATED", "ACTOR", "CHANGES", "REASON"]);
    for r in &revisions {
        table.add_row([
            r.id.to_string(),
            r.service.clone(),
            r.created_at.clone(),
            r.actor.clone(),
            change_lines(&r.changes).join("\n"),
            r.reason.clone(),
        ]);
    }
    println!("{table}");
    Ok(ExitStatus::Ok)
}

fn revision_json(r: &ConfigRevision) -> Value {
    json!({
        "revision": r.id,
        "service": r.service,
        "changes": r.changes,
        "actor": r.actor,
        "reason": r.reason,
        "created_at": r.created_at,
    })
}

fn diff(global: &Global, from: u64, to: u64) -> anyhow::Result<ExitStatus> {
    let store = open_existing(global)?;
    let first = match revision(store.as_ref(), from)? {
        Ok(r) => r,
        Err(message) => return invalid(&message),
    };
    let second = match revision(store.as_ref(), to)? {
        Ok(r) => r,
        Err(message) => return invalid(&message),
    };
    if first.service != second.service {
        return invalid(&format!(
            "revision {from} is of {} and revision {to} of {}: diff compares one service",
            first.service, second.service
        ));
    }
    let Some(store) = store else {
        return invalid("no configuration revisions");
    };
    let before = store.config_at(&first.service, Some(from))?;
    let after = store.config_at(&first.service, Some(to))?;
    let lines = diff_lines(&before, &after);
    match global.output {
        Output::Json => print_json(&json!({
            "service": first.service,
            "from": from,
            "to": to,
            "changes": lines.iter().map(DiffLine::to_json).collect::<Vec<_>>(),
        }))?,
        Output::Human => {
            println!("{} from revision {from} to {to}:", first.service);
            if lines.is_empty() {
                println!("  (no difference)");
            }
            for line in &lines {
                println!("{line}");
            }
        }
    }
    Ok(ExitStatus::Ok)
}

/// One key's difference between two configurations.
#[derive(Debug, PartialEq)]
enum DiffLine<'a> {
    Added(&'a str, &'a str),
    Removed(&'a str, &'a str),
    Changed(&'a str, &'a str, &'a str),
}

impl DiffLine<'_> {
    fn to_json(&self) -> Value {
        match self {
            DiffLine::Added(key, value) => json!({"op": "add", "key": key, "to": value}),
            DiffLine::Removed(key, value) => json!({"op": "remove", "key": key, "from": value}),
            DiffLine::Changed(key, a, b) => {
                json!({"op": "change", "key": key, "from": a, "to": b})
            }
        }
    }
}

impl std::fmt::Display for DiffLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiffLine::Added(key, value) => write!(f, "+ {key}={value}"),
            DiffLine::Removed(key, value) => write!(f, "- {key}={value}"),
            DiffLine::Changed(key, a, b) => write!(f, "~ {key}: {a} → {b}"),
        }
    }
}

/// Pure: every key that differs, in key order.
fn diff_lines<'a>(
    before: &'a BTreeMap<String, String>,
    after: &'a BTreeMap<String, String>,
) -> Vec<DiffLine<'a>> {
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|key| match (before.get(key), after.get(key)) {
            (None, Some(b)) => Some(DiffLine::Added(key, b)),
            (Some(a), None) => Some(DiffLine::Removed(key, a)),
            (Some(a), Some(b)) if a != b => Some(DiffLine::Changed(key, a, b)),
            _ => None,
        })
        .collect()
}

/// Pure: the changes that turn `current` into `target`.
fn rollback(global: &Global, rev: u64, reason: &str) -> anyhow::Result<ExitStatus> {
    if reason.trim().is_empty() {
        return invalid("--reason must say why");
    }
    let state_dir = global.state_dir();
    let (revised, reload) = match writer::route(&state_dir)? {
        Route::Api => {
            let request = ConfigRollbackRequest {
                to: rev,
                reason: reason.to_owned(),
            };
            let path = "/v1/config-rollback";
            let answer: ConfigChangeAnswer = match writer::call(&state_dir, "POST", path, &request)
            {
                Err(err) if err.is::<client::ApiRejected>() => return invalid(&err.to_string()),
                other => other?,
            };
            (revised_from_api(answer.revised), Some(answer.reload))
        }
        Route::Local(lock) => {
            if !wharf_ops::read::state_exists(&state_dir)? {
                return invalid(&format!("no configuration revision {rev}"));
            }
            let mut store = wharf_ops::read::open(&lock)?;
            let actor = Actor::from_environment();
            match wharf_ops::config::rollback(&mut store, &actor, rev, reason) {
                Ok(revised) => (revised, None),
                Err(err)
                    if matches!(err.kind(), OpsErrorKind::Invalid | OpsErrorKind::NotFound) =>
                {
                    return invalid(&err.to_string());
                }
                Err(err) => return Err(err.into()),
            }
        }
    };
    if revised.revision.is_none() {
        eprintln!(
            "{} is already configured as of revision {rev}; nothing recorded",
            revised.service
        );
        return Ok(ExitStatus::Ok);
    }
    applied(global, &revised, reload.as_ref())?;
    Ok(ExitStatus::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn keys_are_environment_variable_names() {
        for good in ["A", "_x", "LOG_LEVEL", "a1"] {
            assert!(valid_key(good), "{good}");
        }
        for bad in ["", "1A", "A-B", "A B", "É", "A="] {
            assert!(!valid_key(bad), "{bad}");
        }
    }

    #[test]
    fn pairs_split_at_the_first_equals_and_refuse_duplicates() {
        let changes = parse_pairs(&["A=b=c".to_owned(), "E=".to_owned()]).unwrap();
        assert_eq!(changes["A"].as_deref(), Some("b=c"));
        assert_eq!(changes["E"].as_deref(), Some(""));
        assert!(parse_pairs(&["A=1".to_owned(), "A=2".to_owned()]).is_err());
        assert!(parse_pairs(&["A".to_owned()]).is_err());
    }

    #[test]
    fn diff_and_restore_are_inverse() {
        let before = map(&[("A", "1"), ("B", "2"), ("C", "3")]);
        let after = map(&[("B", "2"), ("C", "4"), ("D", "5")]);
        let lines: Vec<String> = diff_lines(&before, &after)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(lines, ["- A=1", "~ C: 3 → 4", "+ D=5"]);
        let changes = wharf_ops::config::restoring(&after, &before);
        let mut restored = after.clone();
        for (key, value) in changes {
            match value {
                Some(value) => restored.insert(key, value),
                None => restored.remove(&key),
            };
        }
        assert_eq!(restored, before);
    }
}
