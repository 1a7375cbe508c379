//! Entries that are evidence on their own: an operator's note, a preflight's verdict.

use wharf_ledger::{Entry, KnownAction};
use wharf_store::Store;

use crate::{Actor, OpsError, append};

/// Appends an `audit.note`.
pub fn note(store: &mut Store, actor: &Actor, text: &str) -> Result<Entry, OpsError> {
    if text.trim().is_empty() {
        return Err(OpsError::Invalid("a note needs some text".to_owned()));
    }
    append(
        store,
        actor,
        KnownAction::AuditNote,
        "",
        serde_json::json!({ "text": text }),
    )
}

/// Appends a `preflight.run` with its verdict and failures (`details` as preflight built it).
pub fn preflight(
    store: &mut Store,
    actor: &Actor,
    target: &str,
    details: serde_json::Value,
) -> Result<Entry, OpsError> {
    if !details.is_object() || details.get("verdict").and_then(|v| v.as_str()).is_none() {
        return Err(OpsError::Invalid(
            "a preflight record needs an object with a `verdict`".to_owned(),
        ));
    }
    append(store, actor, KnownAction::PreflightRun, target, details)
}
