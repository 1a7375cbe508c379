//! `wharf secret …`: set, list, reveal, rotate, roll back and re-key the stack's secrets.
//!
//! Values enter through stdin or a file, never argv; they leave only through
//! `get --reveal`, which the ledger records. Every change goes into the ledger with the
//! value's keyed fingerprint, never the value, and a running control plane is asked to
//! reload so the services pick it up.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde_json::{Value, json};
use wharf_api::{
    BeginRotationRequest, FinishRotationRequest, HookResult, ReloadAnswer, ReloadOutcome,
    RevealAnswer, RevealRequest, RollbackSecretRequest, RotationBegun, RotationFinished,
    RotationResult, SecretChangeAnswer, SecretVersion, SetSecretRequest,
};
use wharf_manifest::ValidStack;
use wharf_manifest::model::{SecretPolicy, Stack};
use wharf_ops::read::StateDb;
use wharf_ops::secrets::{HOOK_TIMEOUT, HookFailure, Rekeyed, Rotated};
use wharf_ops::{Actor, ControlLock};
use wharf_secrets::{
    KeySource, MASTER_KEY_ENV, MasterKey, Rotation, SecretValue, Secrets, VersionInfo,
};

use crate::cli::{Global, Output};
use crate::exit::ExitStatus;
use crate::manifest_file::ManifestFile;
use crate::writer::{self, Route};

#[derive(Debug, clap::Subcommand)]
pub enum SecretCommand {
    /// Store a new version of a declared secret, read from stdin (or --from-file); one
    /// trailing newline is dropped. There is no flag for the value: argv is visible to others.
    Set(SetArgs),
    /// Every secret declared or stored: version, age, rotation status (no values).
    List,
    /// Print a secret's value; needs --reveal, and the reveal is recorded in the ledger.
    #[command(disable_version_flag = true)]
    Get(GetArgs),
    /// A secret's versions: when, who, how, why, fingerprint (no values).
    History {
        /// The secret's name.
        name: String,
    },
    /// Make version V's value current again (as a new version).
    Rollback(RollbackArgs),
    /// Generate a new value with the manifest's generator, store it, then run its rotate_command
    /// here (a failing one puts the previous value back).
    Rotate(RotateArgs),
    /// Re-wrap every secret under a new master key; the old key stops working.
    Rekey,
}

#[derive(Debug, clap::Args)]
pub struct SetArgs {
    /// The secret's name, as declared under `secrets:` in the manifest.
    pub name: String,
    /// Read the value from this file instead of stdin (one trailing newline is dropped).
    #[arg(long, value_name = "PATH")]
    pub from_file: Option<PathBuf>,
    /// Why, for the ledger.
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// The secret's name.
    pub name: String,
    /// Really print the value (the reveal is recorded in the ledger).
    #[arg(long)]
    pub reveal: bool,
    /// This version instead of the current one.
    #[arg(long, value_name = "V")]
    pub version: Option<u32>,
}

#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The secret's name.
    pub name: String,
    /// The version whose value becomes current again.
    #[arg(long, value_name = "V")]
    pub to: u32,
    /// Why, for the ledger.
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    /// The secret's name, as declared under `secrets:` in the manifest.
    pub name: String,
    /// Why, for the ledger.
    #[arg(long)]
    pub reason: Option<String>,
}

pub fn run(global: &Global, command: SecretCommand) -> anyhow::Result<ExitStatus> {
    match command {
        SecretCommand::Set(args) => set(global, &args),
        SecretCommand::List => list(global),
        SecretCommand::Get(args) => get(global, &args),
        SecretCommand::History { name } => history(global, &name),
        SecretCommand::Rollback(args) => rollback(global, &args),
        SecretCommand::Rotate(args) => rotate(global, &args),
        SecretCommand::Rekey => rekey(global),
    }
}

/// The validated manifest, or the exit status after its diagnostics were printed.
pub(crate) fn load_stack(global: &Global) -> anyhow::Result<Result<ValidStack, ExitStatus>> {
    let manifest = ManifestFile::read(global)?;
    let loaded = manifest.load(None);
    match loaded.stack {
        Some(stack) => Ok(Ok(stack)),
        None => {
            manifest.print_diagnostics(&loaded.diagnostics, global.output)?;
            eprintln!("error: {} is not valid", manifest.display);
            Ok(Err(ExitStatus::Invalid))
        }
    }
}

/// The manifest when there is one: commands that read stored secrets work without it.
fn optional_stack(global: &Global) -> anyhow::Result<Result<Option<ValidStack>, ExitStatus>> {
    if !global.file.exists() {
        return Ok(Ok(None));
    }
    Ok(load_stack(global)?.map(Some))
}

/// The directory holding the manifest (hooks run there).
pub(crate) fn manifest_dir(global: &Global) -> PathBuf {
    global
        .file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The secret's policy when the manifest declares it; else a usage error naming the declared.
fn declared<'a>(stack: &'a Stack, name: &str) -> Result<&'a SecretPolicy, ExitStatus> {
    if let Some(policy) = stack.secrets.get(name) {
        return Ok(policy);
    }
    // The backup repository's password is declared by the datastores' `backup:` (it can be
    // set, e.g. to open an existing repository on a new machine, or rotated).
    static BACKUP_PASSWORD: std::sync::LazyLock<SecretPolicy> =
        std::sync::LazyLock::new(|| SecretPolicy {
            description: Some("the backup repository's password".to_owned()),
            ..SecretPolicy::default()
        });
    if name == wharf_control::BACKUP_PASSWORD_SECRET
        && stack.services.values().any(|s| s.backup.is_some())
    {
        return Ok(&BACKUP_PASSWORD);
    }
    let names: Vec<&str> = stack.secrets.keys().map(String::as_str).collect();
    let known = if names.is_empty() {
        "the manifest declares no secrets; add it under `secrets:` first".to_owned()
    } else {
        format!("declared: {}", names.join(", "))
    };
    eprintln!("error: `{name}` is not declared under `secrets:` in the manifest ({known})");
    Err(ExitStatus::Invalid)
}

/// The services that receive a secret: by their `secrets` / `secret_files` lists or a
/// `${secret:NAME}` anywhere in their definition (env values, url, command, probes).
pub(crate) fn users(stack: &Stack, name: &str) -> Vec<String> {
    let needle = format!("${{secret:{name}}}");
    stack
        .services
        .iter()
        .filter(|(_, service)| {
            service.secrets.iter().any(|s| s == name)
                || service.secret_files.iter().any(|s| s == name)
                || serde_json::to_string(service).is_ok_and(|text| text.contains(&needle))
        })
        .map(|(service, _)| service.clone())
        .collect()
}

/// Whether anything in the stack needs the secret's value: a service, a smoke check, an alert.
pub(crate) fn stack_uses(stack: &Stack, name: &str) -> bool {
    let needle = format!("${{secret:{name}}}");
    let mentioned =
        |value: Result<String, serde_json::Error>| value.is_ok_and(|text| text.contains(&needle));
    !users(stack, name).is_empty()
        || mentioned(serde_json::to_string(&stack.smoke))
        || mentioned(serde_json::to_string(&stack.alerts))
}

/// The master key, loaded (or with `create`, made on first use, with a notice to back it up).
pub(crate) fn master_key(state_dir: &Path, create: bool) -> anyhow::Result<(MasterKey, KeySource)> {
    let env = std::env::var(MASTER_KEY_ENV).ok();
    let (key, source) = MasterKey::load(state_dir, env.as_deref(), create)?;
    if let KeySource::Created(path) = &source {
        eprintln!(
            "notice: a new master key was written to {}.\n        Back it up now, somewhere \
             other than this machine: without it the secrets stored here cannot be read.",
            path.display()
        );
    }
    Ok((key, source))
}

/// Opens the state database under the lock and unlocks its secrets (a wrong key is refused
/// before any write); with `create`, the master key is made on first use, with a notice.
fn unlock(lock: &ControlLock, create: bool) -> anyhow::Result<(StateDb, Secrets)> {
    let state_dir = lock.state_dir();
    if !create && !wharf_ops::read::state_exists(state_dir)? {
        bail!(
            "no secrets are stored yet (no state in {})",
            state_dir.display()
        );
    }
    let (key, _) = master_key(state_dir, create)?;
    let mut store = wharf_ops::read::open(lock)?;
    let secrets = Secrets::unlock(&mut store, key)?;
    Ok((store, secrets))
}

/// A version as the API sends it.
fn version_from_api(v: SecretVersion) -> VersionInfo {
    VersionInfo {
        name: v.name,
        version: v.version,
        created_at: v.created_at,
        actor: v.actor,
        reason: v.reason,
        origin: v.origin,
        fingerprint: v.fingerprint,
    }
}

/// `PUT /v1/secrets/{name}`: a new version stored by the control plane, and its reload.
fn put_through_api(
    state_dir: &Path,
    name: &str,
    value: SecretValue,
    reason: Option<&str>,
) -> anyhow::Result<(VersionInfo, ReloadOutcome)> {
    let request = SetSecretRequest {
        value: value.expose_str()?.to_owned(),
        reason: reason.map(str::to_owned),
    };
    drop(value);
    let answer: SecretChangeAnswer =
        writer::call(state_dir, "PUT", &secret_path(name, ""), &request)?;
    Ok((version_from_api(answer.secret), answer.reload))
}

fn secret_path(name: &str, rest: &str) -> String {
    format!("/v1/secrets/{}{rest}", writer::segment(name))
}

/// Reads the value: the file, or stdin; one trailing newline (`\n` or `\r\n`) is dropped.
fn read_value(name: &str, from_file: Option<&Path>) -> anyhow::Result<SecretValue> {
    let mut bytes = match from_file {
        Some(path) => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        None => {
            let mut stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("enter the value of {name}, then press Ctrl-D:");
            }
            let mut bytes = Vec::new();
            stdin.read_to_end(&mut bytes).context("cannot read stdin")?;
            bytes
        }
    };
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    Ok(SecretValue::new(bytes))
}

fn set(global: &Global, args: &SetArgs) -> anyhow::Result<ExitStatus> {
    let stack = match load_stack(global)? {
        Ok(stack) => stack,
        Err(status) => return Ok(status),
    };
    if let Err(status) = declared(&stack, &args.name) {
        return Ok(status);
    }
    let value = read_value(&args.name, args.from_file.as_deref())?;
    if value.expose().is_empty() {
        eprintln!(
            "error: the value of {} is empty; nothing was stored",
            args.name
        );
        return Ok(ExitStatus::Invalid);
    }
    let state_dir = global.state_dir();
    match writer::route(&state_dir)? {
        Route::Api => {
            let (info, reload) =
                put_through_api(&state_dir, &args.name, value, args.reason.as_deref())?;
            changed(global, Some(&stack), &info, "stored", Some(&reload))?;
        }
        Route::Local(lock) => {
            let (mut store, secrets) = unlock(&lock, true)?;
            let info = wharf_ops::secrets::set(
                &mut store,
                &secrets,
                &Actor::from_environment(),
                &args.name,
                &value,
                args.reason.as_deref(),
            )?;
            drop(value);
            changed(global, Some(&stack), &info, "stored", None)?;
        }
    }
    Ok(ExitStatus::Ok)
}

/// After a new version: say so, name the services that use it, and ask the control plane to
/// apply it.
fn changed(
    global: &Global,
    stack: Option<&Stack>,
    info: &VersionInfo,
    verb: &str,
    reload: Option<&ReloadOutcome>,
) -> anyhow::Result<()> {
    let services = stack.map(|s| users(s, &info.name)).unwrap_or_default();
    match global.output {
        Output::Json => print_json(&json!({
            "name": info.name,
            "version": info.version,
            "fingerprint": info.fingerprint,
            "origin": info.origin,
            "services": services,
        }))?,
        Output::Human => {
            eprintln!(
                "{verb} {} version {} (fingerprint {})",
                info.name, info.version, info.fingerprint
            );
            if services.is_empty() {
                eprintln!("no service uses {}", info.name);
            } else {
                eprintln!("used by: {}", services.join(", "));
            }
        }
    }
    applied_by_control_plane(reload);
    Ok(())
}

/// What the control plane did with a change it made (its reload answer), or that none runs.
pub(crate) fn applied_by_control_plane(reload: Option<&ReloadOutcome>) {
    match reload {
        Some(ReloadOutcome::Failed { error }) => {
            eprintln!("warning: the control plane did not reload: {error}")
        }
        Some(ReloadOutcome::Applied(applied)) => eprintln!("{}", reload_summary(applied)),
        None => {
            eprintln!("no control plane is running; the services get it at the next `wharf up`")
        }
    }
}

/// The control plane's answer to a reload in words: what restarts, what got SIGHUP.
fn reload_summary(applied: &ReloadAnswer) -> String {
    let (restarting, reloaded) = (&applied.restarting, &applied.reloaded);
    let mut parts = Vec::new();
    if !restarting.is_empty() {
        parts.push(format!("restarting {} (rolling)", restarting.join(", ")));
    }
    if !reloaded.is_empty() {
        parts.push(format!("signalled {} to reload", reloaded.join(", ")));
    }
    if parts.is_empty() {
        "the control plane applied it: no running instance needed a change".to_owned()
    } else {
        format!("the control plane applied it: {}", parts.join("; "))
    }
}

pub(crate) fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// One row of `secret list`.
struct Listed {
    name: String,
    current: Option<VersionInfo>,
    policy: Option<SecretPolicy>,
    rotation: Rotation,
}

/// Every secret declared or stored, declared ones first in manifest order.
fn listing(stack: Option<&Stack>, stored: Vec<VersionInfo>) -> Vec<Listed> {
    let now = jiff::Timestamp::now();
    let mut rows: Vec<Listed> = Vec::new();
    let declared = stack.map(|s| s.secrets.clone()).unwrap_or_default();
    for (name, policy) in declared {
        let current = stored.iter().find(|v| v.name == name).cloned();
        rows.push(Listed {
            name,
            current,
            policy: Some(policy),
            rotation: Rotation::Missing,
        });
    }
    for info in stored {
        if !rows.iter().any(|r| r.name == info.name) {
            rows.push(Listed {
                name: info.name.clone(),
                current: Some(info),
                policy: None,
                rotation: Rotation::NoPolicy,
            });
        }
    }
    for row in &mut rows {
        let max_age = row
            .policy
            .as_ref()
            .and_then(|p| p.max_age)
            .map(|d| d.as_std());
        row.rotation = match (&row.current, max_age) {
            (None, Some(_)) => Rotation::Missing,
            (None, None) => Rotation::NoPolicy,
            (Some(info), max_age) => match created(info) {
                Some(at) => wharf_secrets::rotation(at, max_age, now),
                None => Rotation::NoPolicy,
            },
        };
    }
    rows
}

fn created(info: &VersionInfo) -> Option<jiff::Timestamp> {
    info.created_at.parse().ok()
}

/// `12d`, `5h`, `3m`, `40s`.
fn age(info: &VersionInfo) -> String {
    let Some(at) = created(info) else {
        return "?".to_owned();
    };
    let secs = (jiff::Timestamp::now().as_second() - at.as_second()).max(0);
    match secs {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn days(n: i64) -> String {
    if n < 1 {
        "<1d".to_owned()
    } else {
        format!("{n}d")
    }
}

/// The rotation column in words.
pub(crate) fn rotation_text(rotation: &Rotation) -> String {
    match rotation {
        Rotation::NoPolicy => "no policy".to_owned(),
        Rotation::Ok { due_in_days } => format!("ok, due in {}", days(*due_in_days)),
        Rotation::DueSoon { due_in_days } => format!("due in {}", days(*due_in_days)),
        Rotation::Overdue { by_days } => format!("OVERDUE by {}", days(*by_days)),
        Rotation::Missing => "never set".to_owned(),
    }
}

/// The rotation status as JSON: `{status, due_in_days | overdue_by_days}`.
fn rotation_json(rotation: &Rotation) -> Value {
    match rotation {
        Rotation::NoPolicy => json!({"status": "no_policy"}),
        Rotation::Ok { due_in_days } => json!({"status": "ok", "due_in_days": due_in_days}),
        Rotation::DueSoon { due_in_days } => {
            json!({"status": "due_soon", "due_in_days": due_in_days})
        }
        Rotation::Overdue { by_days } => json!({"status": "overdue", "overdue_by_days": by_days}),
        Rotation::Missing => json!({"status": "never_set"}),
    }
}

/// The versions stored, without a key; an absent database means none (and stays absent).
pub(crate) fn stored(state_dir: &Path) -> anyhow::Result<Vec<VersionInfo>> {
    if !wharf_ops::read::state_exists(state_dir)? {
        return Ok(Vec::new());
    }
    let Some(store) = wharf_ops::read::open_existing(state_dir)? else {
        return Ok(Vec::new());
    };
    Ok(wharf_secrets::list(&store)?)
}

fn list(global: &Global) -> anyhow::Result<ExitStatus> {
    let stack = match optional_stack(global)? {
        Ok(stack) => stack,
        Err(status) => return Ok(status),
    };
    let rows = listing(stack.as_deref(), stored(&global.state_dir())?);
    if global.output == Output::Json {
        let records: Vec<Value> = rows.iter().map(listed_json).collect();
        print_json(&Value::Array(records))?;
        return Ok(ExitStatus::Ok);
    }
    if rows.is_empty() {
        println!("no secrets declared or stored");
        return Ok(ExitStatus::Ok);
    }
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header(["NAME", "VERSION", "AGE", "ROTATION", "DESCRIPTION"]);
    for row in &rows {
        let description = match &row.policy {
            Some(policy) => policy.description.clone().unwrap_or_default(),
            None => "(not declared in the manifest)".to_owned(),
        };
        table.add_row([
            row.name.clone(),
            row.current
                .as_ref()
                .map_or_else(|| "-".to_owned(), |v| v.version.to_string()),
            row.current.as_ref().map_or_else(|| "-".to_owned(), age),
            rotation_text(&row.rotation),
            description,
        ]);
    }
    println!("{table}");
    Ok(ExitStatus::Ok)
}

fn listed_json(row: &Listed) -> Value {
    json!({
        "name": row.name,
        "declared": row.policy.is_some(),
        "version": row.current.as_ref().map(|v| v.version),
        "created_at": row.current.as_ref().map(|v| v.created_at.clone()),
        "age": row.current.as_ref().map(age),
        "fingerprint": row.current.as_ref().map(|v| v.fingerprint.clone()),
        "rotation": rotation_json(&row.rotation),
        "max_age": row.policy.as_ref().and_then(|p| p.max_age).map(|d| d.as_std().as_secs()),
        "description": row.policy.as_ref().and_then(|p| p.description.clone()),
    })
}

fn get(global: &Global, args: &GetArgs) -> anyhow::Result<ExitStatus> {
    if !args.reveal {
        eprintln!("error: add --reveal to print the value; the reveal is recorded");
        return Ok(ExitStatus::Invalid);
    }
    let state_dir = global.state_dir();
    // Recorded before it is shown: a reveal that is not in the ledger does not happen. With a
    // control plane running, it records the reveal and this process, which holds the master
    // key, reads the value (an API answer never carries one).
    let (info, value) = match writer::route(&state_dir)? {
        Route::Api => {
            let request = RevealRequest {
                version: args.version,
            };
            let path = secret_path(&args.name, "/reveals");
            let answer: RevealAnswer = writer::call(&state_dir, "POST", &path, &request)?;
            let info = version_from_api(answer.secret);
            let mut store = wharf_ops::read::open_existing(&state_dir)?
                .context("the state database vanished")?;
            let (key, _) = master_key(&state_dir, false)?;
            let secrets = Secrets::unlock(&mut store, key)?;
            let value = secrets.value(&store, &args.name, info.version)?;
            (info, value)
        }
        Route::Local(lock) => {
            let (mut store, secrets) = unlock(&lock, false)?;
            wharf_ops::secrets::reveal(
                &mut store,
                &secrets,
                &Actor::from_environment(),
                &args.name,
                args.version,
            )?
        }
    };
    match global.output {
        Output::Json => print_json(&json!({
            "name": info.name,
            "version": info.version,
            "value": value.expose_str()?,
        }))?,
        Output::Human => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(value.expose())?;
            stdout.write_all(b"\n")?;
            stdout.flush()?;
        }
    }
    Ok(ExitStatus::Ok)
}

fn history(global: &Global, name: &str) -> anyhow::Result<ExitStatus> {
    let versions = {
        let state_dir = global.state_dir();
        match wharf_ops::read::open_existing(&state_dir)? {
            Some(store) => wharf_secrets::history(&store, name)?,
            None => Vec::new(),
        }
    };
    if versions.is_empty() {
        eprintln!("error: no secret named `{name}` is stored");
        return Ok(ExitStatus::Invalid);
    }
    if global.output == Output::Json {
        let records: Vec<Value> = versions.iter().map(version_json).collect();
        print_json(&Value::Array(records))?;
        return Ok(ExitStatus::Ok);
    }
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header([
        "VERSION",
        "CREATED",
        "ACTOR",
        "ORIGIN",
        "REASON",
        "FINGERPRINT",
    ]);
    for v in &versions {
        table.add_row([
            v.version.to_string(),
            v.created_at.clone(),
            v.actor.clone(),
            v.origin.clone(),
            v.reason.clone().unwrap_or_default(),
            v.fingerprint.clone(),
        ]);
    }
    println!("{table}");
    Ok(ExitStatus::Ok)
}

fn version_json(v: &VersionInfo) -> Value {
    json!({
        "name": v.name,
        "version": v.version,
        "created_at": v.created_at,
        "actor": v.actor,
        "origin": v.origin,
        "reason": v.reason,
        "fingerprint": v.fingerprint,
    })
}

fn rollback(global: &Global, args: &RollbackArgs) -> anyhow::Result<ExitStatus> {
    let stack = match optional_stack(global)? {
        Ok(stack) => stack,
        Err(status) => return Ok(status),
    };
    let state_dir = global.state_dir();
    let verb = format!("rolled back to version {}:", args.to);
    match writer::route(&state_dir)? {
        Route::Api => {
            let request = RollbackSecretRequest {
                to: args.to,
                reason: args.reason.clone(),
            };
            let path = secret_path(&args.name, "/rollback");
            let answer: SecretChangeAnswer = writer::call(&state_dir, "POST", &path, &request)?;
            let info = version_from_api(answer.secret);
            changed(global, stack.as_deref(), &info, &verb, Some(&answer.reload))?;
        }
        Route::Local(lock) => {
            let (mut store, secrets) = unlock(&lock, false)?;
            let info = wharf_ops::secrets::rollback(
                &mut store,
                &secrets,
                &Actor::from_environment(),
                &args.name,
                args.to,
                args.reason.as_deref(),
            )?;
            changed(global, stack.as_deref(), &info, &verb, None)?;
        }
    }
    Ok(ExitStatus::Ok)
}

fn rotate(global: &Global, args: &RotateArgs) -> anyhow::Result<ExitStatus> {
    let stack = match load_stack(global)? {
        Ok(stack) => stack,
        Err(status) => return Ok(status),
    };
    let policy = match declared(&stack, &args.name) {
        Ok(policy) => policy.clone(),
        Err(status) => return Ok(status),
    };
    let state_dir = global.state_dir();
    let lock = match writer::route(&state_dir)? {
        Route::Local(lock) => lock,
        Route::Api => return rotate_through_api(global, &stack, &policy, args),
    };
    let (mut store, secrets) = unlock(&lock, true)?;
    let rotated = wharf_ops::secrets::rotate(
        &mut store,
        &secrets,
        &Actor::from_environment(),
        &args.name,
        &policy,
        &manifest_dir(global),
        args.reason.as_deref(),
        HOOK_TIMEOUT,
    )?;
    match rotated {
        Rotated::Done { info, .. } => {
            changed(global, Some(&stack), &info, "rotated", None)?;
            Ok(ExitStatus::Ok)
        }
        Rotated::HookFailed {
            failure,
            new,
            restored,
        } => {
            hook_failed(&args.name, &failure, new.version, restored.is_some());
            Ok(ExitStatus::Failed)
        }
    }
}

/// A failed rotate_command in words: its stderr (the operator's terminal only: it may echo
/// the value), then what is in force.
fn hook_failed(name: &str, failure: &HookFailure, new_version: u32, restored: bool) {
    eprint!("{}", failure.report());
    if restored {
        eprintln!("error: the rotate_command of {name} failed; the value in force is unchanged");
    } else {
        eprintln!(
            "error: the rotate_command of {name} failed; the new value is stored (version {new_version}) but may not be in force where the hook would have put it"
        );
    }
}

fn rekey(global: &Global) -> anyhow::Result<ExitStatus> {
    let state_dir = global.state_dir();
    // A running control plane holds the current key and would fail every start that needs a
    // secret afterwards: re-keying needs its lock, which it holds while it runs.
    let lock = match ControlLock::acquire_or_refuse(&state_dir, "re-keying") {
        Ok(lock) => lock,
        Err(err) => {
            eprintln!("error: {err}");
            return Ok(ExitStatus::Failed);
        }
    };
    if !wharf_ops::read::state_exists(&state_dir)? {
        bail!(
            "no secrets are stored yet (no state in {})",
            state_dir.display()
        );
    }
    let mut store = wharf_ops::read::open(&lock)?;
    let shown = |key: &SecretValue| -> Result<(), wharf_ops::OpsError> {
        // Shown before the switch: whatever fails afterwards, the key is not lost.
        println!("{}", key.expose_str()?);
        Ok(())
    };
    let actor = Actor::from_environment();
    let rekeyed = match wharf_ops::secrets::rekey(&lock, &mut store, &actor, shown) {
        Ok(rekeyed) => rekeyed,
        Err(err) => {
            if std::env::var(MASTER_KEY_ENV).is_ok() {
                eprintln!("the key above was NOT put in force; the old key still works");
            }
            return Err(err.into());
        }
    };
    match rekeyed {
        Rekeyed::Env { count, .. } => eprintln!(
            "re-keyed {count} secret(s). The line above is the new master key, shown once: \
             put it in {MASTER_KEY_ENV} now; the old key no longer works."
        ),
        Rekeyed::File { path, count } => eprintln!(
            "re-keyed {count} secret(s); the new master key is in {}. The old key no longer \
             works: replace every backup of it with this file.",
            path.display()
        ),
    }
    Ok(ExitStatus::Ok)
}

/// A rotation while a control plane runs: begun over the API (the generated value is stored
/// before anything makes it real), the hook run here — this process has the operator's
/// environment and credentials; no hook runs in the control plane — and finished over the API
/// with the hook's outcome (`secret.rotate`, or the previous value put back).
fn rotate_through_api(
    global: &Global,
    stack: &Stack,
    policy: &SecretPolicy,
    args: &RotateArgs,
) -> anyhow::Result<ExitStatus> {
    let state_dir = global.state_dir();
    let name = args.name.as_str();
    let new = wharf_ops::secrets::generate(policy)?;
    let request = BeginRotationRequest {
        value: new.expose_str()?.to_owned(),
        reason: args.reason.clone(),
    };
    let path = secret_path(name, "/rotations");
    let begun: RotationBegun = writer::call(&state_dir, "POST", &path, &request)?;
    drop(request);
    let version = begun.secret.version;
    let ran = match &policy.rotate_command {
        Some(command) => {
            let old = match begun.previous {
                Some(previous) => Some(stored_value(&state_dir, name, previous)?),
                None => None,
            };
            let dir = manifest_dir(global);
            wharf_ops::secrets::run_hook(&dir, name, command, &new, old.as_ref(), HOOK_TIMEOUT)
        }
        None => Ok(()),
    };
    drop(new);
    let request = FinishRotationRequest {
        outcome: match &ran {
            Ok(()) => HookResult::Succeeded,
            Err(_) => HookResult::Failed,
        },
        reason: ran.as_ref().err().map(|failure| failure.summary.clone()),
    };
    let path = secret_path(name, &format!("/rotations/{version}"));
    let finished: anyhow::Result<RotationFinished> =
        writer::call(&state_dir, "POST", &path, &request);
    match (ran, finished) {
        (Ok(()), Ok(finished)) => {
            let info = version_from_api(finished.secret);
            changed(
                global,
                Some(stack),
                &info,
                "rotated",
                finished.reload.as_ref(),
            )?;
            Ok(ExitStatus::Ok)
        }
        (Ok(()), Err(err)) => {
            eprintln!(
                "error: the rotation of {name} succeeded and version {version} is stored and in force in the store, but the control plane did not record the confirmation: {err:#}"
            );
            Ok(ExitStatus::Failed)
        }
        (Err(failure), Ok(finished)) => {
            let restored = finished.result == RotationResult::Restored;
            hook_failed(name, &failure, version, restored);
            if restored {
                applied_by_control_plane(finished.reload.as_ref());
            }
            Ok(ExitStatus::Failed)
        }
        (Err(failure), Err(err)) => {
            eprint!("{}", failure.report());
            eprintln!(
                "error: the rotate_command of {name} failed and the control plane could not put the previous value back: {err:#}\n       version {version} (the new value) is current in the store{}",
                begun
                    .previous
                    .map(|p| format!(
                        "; `wharf secret rollback {name} --to {p}` restores the old one"
                    ))
                    .unwrap_or_default()
            );
            Ok(ExitStatus::Failed)
        }
    }
}

/// A stored version's value, read with the master key this process holds (the control plane
/// never sends one).
fn stored_value(state_dir: &Path, name: &str, version: u32) -> anyhow::Result<SecretValue> {
    let mut store =
        wharf_ops::read::open_existing(state_dir)?.context("the state database vanished")?;
    let (key, _) = master_key(state_dir, false)?;
    let secrets = Secrets::unlock(&mut store, key)?;
    Ok(secrets.value(&store, name, version)?)
}
