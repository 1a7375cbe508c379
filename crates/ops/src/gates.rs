//! A release gate's verdict as evidence: `wharf gate check` records what it judged — the gate,
//! the service and version it judged for, each condition's verdict and measure, and every input
//! by its SHA-256 — so a later deploy (and an auditor) can tell which files a verdict rests on.

use serde::{Deserialize, Serialize};
use wharf_ledger::{Entry, KnownAction};
use wharf_store::Store;

use crate::{Actor, OpsError, append};

/// What a `gate.check` entry holds. Decoded strictly: a record the CLI did not build this way
/// is refused rather than written half-understood.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateCheckDetails {
    pub gate: String,
    pub service: String,
    pub version: String,
    pub verdict: Verdict,
    pub conditions: Vec<ConditionRecord>,
    pub inputs: Vec<InputRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionRecord {
    pub name: String,
    pub verdict: Verdict,
    pub measured: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputRecord {
    pub path: String,
    /// Lowercase hex SHA-256 of the file's bytes.
    pub sha256: String,
    /// The format detected from its content (`sarif`, `junit`, `k6`, `cobertura`, `lcov`).
    pub format: String,
}

/// Appends a `gate.check` (target `GATE/SERVICE@VERSION`) with `details`.
pub fn record(
    store: &mut Store,
    actor: &Actor,
    details: serde_json::Value,
) -> Result<Entry, OpsError> {
    let details: GateCheckDetails = serde_json::from_value(details)
        .map_err(|e| OpsError::Invalid(format!("a gate check record: {e}")))?;
    for (what, text) in [
        ("gate", &details.gate),
        ("service", &details.service),
        ("version", &details.version),
    ] {
        if text.trim().is_empty() {
            return Err(OpsError::Invalid(format!(
                "a gate check record needs a {what}"
            )));
        }
    }
    if details.conditions.is_empty() {
        return Err(OpsError::Invalid(
            "a gate check record needs its conditions".to_owned(),
        ));
    }
    if let Some(bad) = details.inputs.iter().find(|i| {
        i.sha256.len() != 64
            || !i
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }) {
        return Err(OpsError::Invalid(format!(
            "input {}: sha256 is 64 lowercase hex digits",
            bad.path
        )));
    }
    // A verdict is what its conditions say, and rests on at least one input: a record that
    // claims a pass its own conditions do not give is refused, not believed.
    let all_pass = details
        .conditions
        .iter()
        .all(|c| c.verdict == Verdict::Pass);
    if (details.verdict == Verdict::Pass) != all_pass {
        return Err(OpsError::Invalid(format!(
            "a gate check record's verdict must be `{}` when {} its conditions pass",
            if all_pass { "pass" } else { "fail" },
            if all_pass { "all" } else { "not all" }
        )));
    }
    if details.inputs.is_empty() {
        return Err(OpsError::Invalid(
            "a gate check record needs the inputs it judged".to_owned(),
        ));
    }
    let target = format!("{}/{}@{}", details.gate, details.service, details.version);
    let value = serde_json::to_value(&details)
        .map_err(|e| OpsError::Invalid(format!("a gate check record: {e}")))?;
    append(store, actor, KnownAction::GateCheck, &target, value)
}
