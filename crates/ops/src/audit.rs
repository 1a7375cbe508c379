//! Entries that are evidence on their own: an operator's note, a preflight's verdict.

use std::path::Path;

use wharf_ledger::{Entry, KnownAction, Ledger, SignedCheckpoint, SignerKey};
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

/// The ledger's signing key, created on first use named `origin` and pinned in the database
/// (a write: the first use stores the verifier; a swapped or lost key file is refused).
pub fn signer(
    store: &mut Store,
    state_dir: &Path,
    origin: impl FnOnce() -> String,
) -> Result<SignerKey, OpsError> {
    Ok(store.ledger_signer(state_dir, origin)?)
}

/// Signs and stores a checkpoint of the whole ledger as it is now.
pub fn checkpoint(
    store: &mut Store,
    state_dir: &Path,
    origin: impl FnOnce() -> String,
) -> Result<SignedCheckpoint, OpsError> {
    let signer = signer(store, state_dir, origin)?;
    Ok(Ledger::new(store).checkpoint(&signer)?)
}

/// The key name a stack's ledger is signed under: `wharf/<name of the manifest's directory>`,
/// made a valid key name.
pub fn origin(manifest_dir: &Path) -> String {
    let dir = std::path::absolute(manifest_dir)
        .ok()
        .map(|p| p.canonicalize().unwrap_or(p));
    let name = dir
        .as_deref()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "stack".to_owned());
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_whitespace() || c == '+' {
                '-'
            } else {
                c
            }
        })
        .collect();
    format!("wharf/{clean}")
}
