//! Rotation in two steps around its hook: [`rotate_begin`] stores the generated value as a new
//! version with a `secret.rotate_pending` entry, whoever holds the operator's credentials runs
//! the `rotate_command`, and [`rotate_finish`] records how it went — `secret.rotate`, or the
//! previous value put back with `secret.rotate_failed`. The value is stored before the hook
//! makes it real anywhere, so no failure afterwards can lose the only copy of a new password.
//!
//! While a control plane runs, begin and finish are its API and the CLI runs the hook between
//! them: no hook ever runs in the control plane. Without one, [`rotate`] does all three here.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use wharf_ledger::KnownAction;
use wharf_manifest::model::SecretPolicy;
use wharf_secrets::{Origin, SecretValue, Secrets, VersionInfo};
use wharf_store::{EntryFilter, Store};

use super::check_value;
use super::hook::{HookFailure, run_hook};
use crate::{Actor, OpsError, append, fault};

/// A rotation begun: the new version (current from now on) and the one it replaced.
#[derive(Debug, Clone)]
pub struct Begun {
    pub new: VersionInfo,
    pub previous: Option<VersionInfo>,
}

/// How the rotate_command went, as its runner reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutcome {
    /// The manifest declares no rotate_command: the new version stands on its own.
    NoHook,
    /// The rotate_command succeeded: the new value is in force where it puts it.
    Succeeded,
    /// It failed, could not start or timed out. `reason` is recorded in the ledger, so it is
    /// a summary (an exit status), never the hook's output.
    Failed { reason: String },
}

/// What a finished rotation left in force.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The current version now.
    pub in_force: VersionInfo,
    pub result: FinishedAs,
}

/// How a rotation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishedAs {
    /// `secret.rotate`: the new version is the rotation's result.
    Rotated,
    /// `secret.rotate_failed`: the previous value is current again, as a new version.
    Restored { failed_version: u32 },
    /// `secret.rotate_failed` with `kept: true`: there was no previous value, so the new one
    /// stays stored (it may not be in force where the hook would have put it).
    Kept,
}

/// Stores `value` as a new version of `name` (origin `rotate`) with its
/// `secret.rotate_pending` entry, in one transaction.
pub fn rotate_begin(
    store: &mut Store,
    secrets: &Secrets,
    actor: &Actor,
    name: &str,
    value: &SecretValue,
    reason: Option<&str>,
) -> Result<Begun, OpsError> {
    check_value(name, value)?;
    store.atomically(|store| {
        let previous = wharf_secrets::history(store, name)?.pop();
        let new = secrets.put(store, name, value, &actor.0, reason, Origin::Rotate)?;
        fault::point("secret.rotate:stored");
        let details = json!({
            "version": new.version,
            "fingerprint": new.fingerprint,
            "reason": reason,
            "previous": previous.as_ref().map(|p| p.version),
        });
        append(
            store,
            actor,
            KnownAction::SecretRotatePending,
            name,
            details,
        )?;
        Ok(Begun { new, previous })
    })
}

/// Records how the hook of the rotation that began as `new_version` went, in one transaction.
///
/// Succeeded (or no hook): a `secret.rotate` entry. Failed: the previous value becomes current
/// again as a new version with a `secret.rotate_failed` entry — only while `new_version` is
/// still current (a Conflict otherwise: someone changed the secret meanwhile, and putting the
/// old value back would undo their change); without a previous value the new one is kept.
/// A rotation that was never begun is NotFound; one already finished is a Conflict.
pub fn rotate_finish(
    store: &mut Store,
    secrets: &Secrets,
    actor: &Actor,
    name: &str,
    new_version: u32,
    outcome: HookOutcome,
) -> Result<Finished, OpsError> {
    store.atomically(|store| {
        let previous = pending(store, name, new_version)?;
        let versions = wharf_secrets::history(store, name)?;
        let new = versions
            .iter()
            .find(|v| v.version == new_version)
            .cloned()
            .ok_or_else(|| not_begun(name, new_version))?;
        let current = versions.last().cloned().unwrap_or_else(|| new.clone());
        let reason = match outcome {
            HookOutcome::NoHook | HookOutcome::Succeeded => {
                let details = json!({
                    "version": new.version,
                    "fingerprint": new.fingerprint,
                    "reason": new.reason,
                    "hook": outcome == HookOutcome::Succeeded,
                });
                append(store, actor, KnownAction::SecretRotate, name, details)?;
                return Ok(Finished {
                    in_force: current,
                    result: FinishedAs::Rotated,
                });
            }
            HookOutcome::Failed { reason } => reason,
        };
        if current.version != new_version {
            return Err(OpsError::Conflict(format!(
                "version {} of {name} is current, not {new_version}: it changed after the rotation began, so the previous value was not put back",
                current.version
            )));
        }
        let Some(previous) = previous else {
            let details = json!({"failed_version": new_version, "kept": true, "reason": reason});
            append(store, actor, KnownAction::SecretRotateFailed, name, details)?;
            return Ok(Finished {
                in_force: new,
                result: FinishedAs::Kept,
            });
        };
        let restored = secrets.rollback(
            store,
            name,
            previous,
            &actor.0,
            Some("rotate_command failed"),
        )?;
        let details = json!({
            "version": restored.version,
            "failed_version": new_version,
            "fingerprint": restored.fingerprint,
            "reason": reason,
        });
        append(store, actor, KnownAction::SecretRotateFailed, name, details)?;
        Ok(Finished {
            in_force: restored,
            result: FinishedAs::Restored {
                failed_version: new_version,
            },
        })
    })
}

fn not_begun(name: &str, version: u32) -> OpsError {
    OpsError::NotFound(format!(
        "no rotation of {name} to version {version} was begun"
    ))
}

/// The version the pending rotation to `version` replaced, after checking that it was begun
/// and is not finished yet.
fn pending(store: &Store, name: &str, version: u32) -> Result<Option<u32>, OpsError> {
    let filter = EntryFilter {
        action: None,
        target: Some(name.to_owned()),
    };
    let mut begun = None;
    for entry in store.ledger_entries(&filter)? {
        let details: Value = serde_json::from_str(&entry.details).unwrap_or_default();
        let about = |key: &str| details[key].as_u64() == Some(u64::from(version));
        let action = entry.action.as_str();
        if action == KnownAction::SecretRotatePending.as_str() && about("version") {
            begun = Some(
                details["previous"]
                    .as_u64()
                    .and_then(|p| u32::try_from(p).ok()),
            );
        } else if (action == KnownAction::SecretRotate.as_str() && about("version"))
            || (action == KnownAction::SecretRotateFailed.as_str() && about("failed_version"))
        {
            return Err(OpsError::Conflict(format!(
                "the rotation of {name} to version {version} is already finished"
            )));
        }
    }
    begun.ok_or_else(|| not_begun(name, version))
}

/// How an offline rotation ended.
#[derive(Debug)]
pub enum Rotated {
    /// The new version is in force.
    Done { info: VersionInfo, hook: bool },
    /// The hook failed (or could not start, or timed out): the value in force is unchanged
    /// (`restored` is the version that put it back), or there was none and the new one stays
    /// stored.
    HookFailed {
        failure: HookFailure,
        new: VersionInfo,
        restored: Option<VersionInfo>,
    },
}

/// A rotation where no control plane runs (the caller holds `control.lock`): generates a value
/// with the policy's generator, then without a hook stores it with its `secret.rotate` entry in
/// one transaction; with one, begins, runs the hook in `hook_dir` (killed after `timeout`) and
/// finishes with its outcome. A hook that cannot even start counts as failed, so the pending
/// version never stays current without a `secret.rotate` or `secret.rotate_failed` entry.
#[allow(clippy::too_many_arguments)] // The use case's inputs; a struct would only rename them.
pub fn rotate(
    store: &mut Store,
    secrets: &Secrets,
    actor: &Actor,
    name: &str,
    policy: &SecretPolicy,
    hook_dir: &Path,
    reason: Option<&str>,
    timeout: Duration,
) -> Result<Rotated, OpsError> {
    let new = generate(policy)?;
    let Some(command) = &policy.rotate_command else {
        check_value(name, &new)?;
        let info = store.atomically(|store| {
            let info = secrets.put(store, name, &new, &actor.0, reason, Origin::Rotate)?;
            let details = json!({
                "version": info.version,
                "fingerprint": info.fingerprint,
                "reason": reason,
                "hook": false,
            });
            append(store, actor, KnownAction::SecretRotate, name, details)?;
            Ok::<_, OpsError>(info)
        })?;
        return Ok(Rotated::Done { info, hook: false });
    };
    let old = secrets.current(store, name)?.map(|(_, value)| value);
    let begun = rotate_begin(store, secrets, actor, name, &new, reason)?;
    let ran = run_hook(hook_dir, name, command, &new, old.as_ref(), timeout);
    drop((new, old));
    let outcome = match &ran {
        Ok(()) => HookOutcome::Succeeded,
        Err(failure) => HookOutcome::Failed {
            reason: failure.summary.clone(),
        },
    };
    let finished = rotate_finish(store, secrets, actor, name, begun.new.version, outcome)?;
    Ok(match (ran, finished.result) {
        (Ok(()), _) => Rotated::Done {
            info: begun.new,
            hook: true,
        },
        (Err(failure), result) => Rotated::HookFailed {
            failure,
            new: begun.new,
            restored: matches!(result, FinishedAs::Restored { .. }).then_some(finished.in_force),
        },
    })
}

/// A new value from the policy's generator.
pub fn generate(policy: &SecretPolicy) -> Result<SecretValue, OpsError> {
    let alphabet = policy.generate.characters();
    Ok(wharf_secrets::generate(
        policy.generate.length as usize,
        &alphabet,
    )?)
}
