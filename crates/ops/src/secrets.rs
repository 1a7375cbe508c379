//! Secret use cases: set, roll back, rotate (begin, hook, finish: `rotate.rs`, `hook.rs`),
//! reveal, re-key. Each stores the change and its ledger entry — a keyed fingerprint, never
//! the value — in one transaction.

use std::path::{Path, PathBuf};

use serde_json::json;
use wharf_ledger::KnownAction;
use wharf_secrets::{
    KeySource, MASTER_KEY_ENV, MasterKey, Origin, SecretValue, Secrets, VersionInfo,
};
use wharf_store::Store;

use crate::{Actor, ControlLock, OpsError, append, fault};

mod hook;
mod rotate;

pub use hook::{HOOK_TIMEOUT, HookFailure, run_hook};
pub use rotate::{
    Begun, Finished, FinishedAs, HookOutcome, Rotated, generate, rotate, rotate_begin,
    rotate_finish,
};

/// Opens this state's secrets with the master key (`WHARF_MASTER_KEY`, else the key file;
/// with `create`, made on first use). A wrong key is refused before any write.
pub fn unlock(
    store: &mut Store,
    state_dir: &Path,
    create: bool,
) -> Result<(Secrets, KeySource), OpsError> {
    let env = std::env::var(MASTER_KEY_ENV).ok();
    let (key, source) = MasterKey::load(state_dir, env.as_deref(), create)?;
    let secrets = Secrets::unlock(store, key)?;
    Ok((secrets, source))
}

/// A value may not be empty: an empty secret is almost always a mistake in a pipe.
fn check_value(name: &str, value: &SecretValue) -> Result<(), OpsError> {
    if value.expose().is_empty() {
        return Err(OpsError::Invalid(format!(
            "the value of {name} is empty; nothing was stored"
        )));
    }
    Ok(())
}

/// Stores a new version of `name` and its `secret.set` entry.
pub fn set(
    store: &mut Store,
    secrets: &Secrets,
    actor: &Actor,
    name: &str,
    value: &SecretValue,
    reason: Option<&str>,
) -> Result<VersionInfo, OpsError> {
    check_value(name, value)?;
    store.atomically(|store| {
        let info = secrets.put(store, name, value, &actor.0, reason, Origin::Set)?;
        fault::point("secret.set:stored");
        let details = json!({
            "version": info.version,
            "fingerprint": info.fingerprint,
            "reason": reason,
            "origin": info.origin,
        });
        append(store, actor, KnownAction::SecretSet, name, details)?;
        Ok(info)
    })
}

/// Stores a generated value for `name` (48 alphanumerics) with its `secret.set` entry, unless
/// a version is stored already. Returns whether it generated one. For secrets wharf itself
/// needs, such as the backup repository's password, made at the first `wharf up` that needs
/// them.
pub fn ensure_generated(
    store: &mut Store,
    secrets: &Secrets,
    actor: &Actor,
    name: &str,
    reason: &str,
) -> Result<bool, OpsError> {
    if secrets.current(store, name)?.is_some() {
        return Ok(false);
    }
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let value = wharf_secrets::generate(48, alphabet)?;
    set(store, secrets, actor, name, &value, Some(reason))?;
    Ok(true)
}

/// Makes version `to`'s value current again, as a new version.
pub fn rollback(
    store: &mut Store,
    secrets: &Secrets,
    actor: &Actor,
    name: &str,
    to: u32,
    reason: Option<&str>,
) -> Result<VersionInfo, OpsError> {
    store.atomically(|store| {
        let info = secrets.rollback(store, name, to, &actor.0, reason)?;
        let details = json!({
            "version": info.version,
            "to": to,
            "fingerprint": info.fingerprint,
            "reason": reason,
        });
        append(store, actor, KnownAction::SecretRollback, name, details)?;
        Ok(info)
    })
}

/// Reads a version's value, recording the reveal first: a reveal that is not in the ledger
/// does not happen.
pub fn reveal(
    store: &mut Store,
    secrets: &Secrets,
    actor: &Actor,
    name: &str,
    version: Option<u32>,
) -> Result<(VersionInfo, SecretValue), OpsError> {
    store.atomically(|store| {
        let (info, value) = match version {
            Some(version) => {
                let value = secrets.value(store, name, version)?;
                let info = wharf_secrets::history(store, name)?
                    .into_iter()
                    .find(|v| v.version == version)
                    .ok_or_else(|| OpsError::NotFound(format!("no secret named `{name}`")))?;
                (info, value)
            }
            None => secrets
                .current(store, name)?
                .ok_or_else(|| OpsError::NotFound(format!("no secret named `{name}` is stored")))?,
        };
        let details = json!({"version": info.version, "fingerprint": info.fingerprint});
        append(store, actor, KnownAction::SecretReveal, name, details)?;
        Ok((info, value))
    })
}

/// Where the new master key went.
#[derive(Debug)]
pub enum Rekeyed {
    /// The key came from `WHARF_MASTER_KEY`: the new one is shown once, here.
    Env { new_key: SecretValue, count: usize },
    /// The key file was replaced.
    File { path: PathBuf, count: usize },
}

/// Re-wraps every secret under a new master key, with its `secret.rekey` entry, in one
/// transaction. Needs the lock: a running control plane holds the old key in memory and would
/// fail every instance start afterwards. With an environment key, `show_new_key` receives the
/// new key *before* the switch, so no failure can lose it.
pub fn rekey(
    lock: &ControlLock,
    store: &mut Store,
    actor: &Actor,
    show_new_key: impl FnOnce(&SecretValue) -> Result<(), OpsError>,
) -> Result<Rekeyed, OpsError> {
    let state_dir = lock.state_dir();
    let (secrets, source) = unlock(store, state_dir, false)?;
    let count = wharf_secrets::list(store)?.len();
    let new = MasterKey::generate();
    let swap = |store: &mut Store, secrets: Secrets, new: MasterKey| {
        store.atomically(|store| {
            secrets.rekey(store, new)?;
            append(
                store,
                actor,
                KnownAction::SecretRekey,
                "",
                json!({"secrets": count}),
            )?;
            Ok::<_, OpsError>(())
        })
    };
    match source {
        KeySource::Env => {
            let hex = new.to_hex();
            show_new_key(&hex)?;
            swap(store, secrets, new)?;
            Ok(Rekeyed::Env {
                new_key: hex,
                count,
            })
        }
        KeySource::File(path) | KeySource::Created(path) => {
            // The new key is on disk before the database switches to it, so no crash in
            // between can leave secrets under a key that exists nowhere.
            let staging = state_dir.join("rekey.tmp");
            std::fs::create_dir_all(&staging)
                .map_err(OpsError::io(format!("cannot create {}", staging.display())))?;
            let staged = new.write_file(&staging)?;
            if let Err(err) = swap(store, secrets, new) {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(err);
            }
            std::fs::rename(&staged, &path).map_err(OpsError::io(format!(
                "the secrets are re-keyed but the new key could not replace {}: it is in {}",
                path.display(),
                staged.display()
            )))?;
            let _ = std::fs::remove_dir(&staging);
            Ok(Rekeyed::File { path, count })
        }
    }
}
