//! Secret use cases: set, roll back, rotate (with its hook), reveal, re-key. Each stores the
//! change and its ledger entry — a keyed fingerprint, never the value — in one transaction.

use std::path::{Path, PathBuf};

use serde_json::json;
use wharf_ledger::KnownAction;
use wharf_manifest::model::SecretPolicy;
use wharf_secrets::{
    KeySource, MASTER_KEY_ENV, MasterKey, Origin, SecretValue, Secrets, VersionInfo,
};
use wharf_store::Store;

use crate::{Actor, ControlLock, OpsError, append, fault};

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
    put(store, secrets, actor, name, value, reason, Origin::Set)
}

/// Stores a value its caller generated and made real with the rotate hook it ran itself (the
/// CLI, which has the operator's environment, while a control plane runs): `secret.rotate`.
pub fn store_rotated(
    store: &mut Store,
    secrets: &Secrets,
    actor: &Actor,
    name: &str,
    value: &SecretValue,
    reason: Option<&str>,
) -> Result<VersionInfo, OpsError> {
    put(store, secrets, actor, name, value, reason, Origin::Rotate)
}

fn put(
    store: &mut Store,
    secrets: &Secrets,
    actor: &Actor,
    name: &str,
    value: &SecretValue,
    reason: Option<&str>,
    origin: Origin,
) -> Result<VersionInfo, OpsError> {
    check_value(name, value)?;
    let action = match origin {
        Origin::Rotate => KnownAction::SecretRotate,
        _ => KnownAction::SecretSet,
    };
    store.atomically(|store| {
        let info = secrets.put(store, name, value, &actor.0, reason, origin)?;
        fault::point("secret.set:stored");
        let details = json!({
            "version": info.version,
            "fingerprint": info.fingerprint,
            "reason": reason,
            "origin": info.origin,
        });
        append(store, actor, action, name, details)?;
        Ok(info)
    })
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

/// How a rotation ended.
#[derive(Debug)]
pub enum Rotated {
    /// The new version is in force.
    Done { info: VersionInfo, hook: bool },
    /// The hook failed: the value in force is unchanged (`restored` is the version that put
    /// it back), or there was none and the new one stays stored.
    HookFailed {
        failure: String,
        new: VersionInfo,
        restored: Option<VersionInfo>,
    },
}

/// Generates a new value with the policy's generator and runs its `rotate_command` (in
/// `hook_dir`, with the values in its environment, never argv).
///
/// Without a hook, the new version and its `secret.rotate` entry are one transaction. With one,
/// the new version commits with a `secret.rotate_pending` entry before the hook runs (if the
/// hook changes a database password and anything failed afterwards, the only copy of the new
/// value must not be lost); the hook's success is then `secret.rotate`, its failure puts the
/// previous value back as a version of its own with a `secret.rotate_failed` entry.
pub fn rotate(
    store: &mut Store,
    secrets: &Secrets,
    actor: &Actor,
    name: &str,
    policy: &SecretPolicy,
    hook_dir: &Path,
    reason: Option<&str>,
) -> Result<Rotated, OpsError> {
    let alphabet = policy.generate.characters();
    let new = wharf_secrets::generate(policy.generate.length as usize, &alphabet)?;
    let previous = secrets.current(store, name)?;
    let hook = policy.rotate_command.is_some();
    let info = store.atomically(|store| {
        let info = secrets.put(store, name, &new, &actor.0, reason, Origin::Rotate)?;
        let details = json!({
            "version": info.version,
            "fingerprint": info.fingerprint,
            "reason": reason,
            "hook": hook,
        });
        let action = if hook {
            KnownAction::SecretRotatePending
        } else {
            KnownAction::SecretRotate
        };
        append(store, actor, action, name, details)?;
        Ok::<_, OpsError>(info)
    })?;
    let Some(command) = &policy.rotate_command else {
        return Ok(Rotated::Done { info, hook });
    };
    let old = previous.as_ref().map(|(_, value)| value);
    let Err(failure) = run_hook(hook_dir, name, command, &new, old)? else {
        let details = json!({
            "version": info.version,
            "fingerprint": info.fingerprint,
            "reason": reason,
            "hook": hook,
        });
        append(store, actor, KnownAction::SecretRotate, name, details)?;
        return Ok(Rotated::Done { info, hook });
    };
    let restored = match &previous {
        Some((old_info, _)) => Some(store.atomically(|store| {
            let restored = secrets.rollback(
                store,
                name,
                old_info.version,
                &actor.0,
                Some("rotate_command failed"),
            )?;
            let details = json!({
                "version": restored.version,
                "failed_version": info.version,
                "fingerprint": restored.fingerprint,
            });
            append(store, actor, KnownAction::SecretRotateFailed, name, details)?;
            Ok::<_, OpsError>(restored)
        })?),
        None => {
            let details = json!({"failed_version": info.version, "kept": true});
            store.atomically(|store| {
                append(store, actor, KnownAction::SecretRotateFailed, name, details)
            })?;
            None
        }
    };
    Ok(Rotated::HookFailed {
        failure,
        new: info,
        restored,
    })
}

/// Runs a rotate_command in `dir` with the values in its environment (never argv); `Err`
/// holds its stderr and exit status when it fails.
pub fn run_hook(
    dir: &Path,
    name: &str,
    command: &[String],
    new: &SecretValue,
    old: Option<&SecretValue>,
) -> Result<Result<(), String>, OpsError> {
    let (program, rest) = command
        .split_first()
        .ok_or_else(|| OpsError::Invalid(format!("the rotate_command of {name} is empty")))?;
    // A relative path such as `./rotate.sh` means the manifest's directory, like its cwd.
    let program = if program.contains('/') {
        dir.join(program)
    } else {
        PathBuf::from(program)
    };
    let mut child = std::process::Command::new(&program);
    child
        .args(rest)
        .current_dir(dir)
        // The hook gets the two values it needs, not the key that opens every secret.
        .env_remove(MASTER_KEY_ENV)
        .env("WHARF_SECRET_NAME", name)
        .env("WHARF_SECRET_NEW", new.expose_str()?)
        .env_remove("WHARF_SECRET_OLD")
        .stdin(std::process::Stdio::null());
    if let Some(old) = old {
        child.env("WHARF_SECRET_OLD", old.expose_str()?);
    }
    let output = child.output().map_err(OpsError::io(format!(
        "cannot run the rotate_command of {name} ({})",
        program.display()
    )))?;
    if output.status.success() {
        return Ok(Ok(()));
    }
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!("rotate_command: {}\n", output.status));
    Ok(Err(text))
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
