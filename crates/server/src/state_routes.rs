//! The routes that change a stack's stored state — secrets, config overrides, audit notes,
//! preflight records — so that while a control plane runs it is the only writer: each request
//! runs one `wharf-ops` use case (the change and its ledger entry in one transaction) on the
//! control plane's store-writer thread, then asks the control plane to apply it.
//!
//! Secret values enter in a request body and never leave in an answer: a reveal over the API
//! records the reveal and answers with the version and its fingerprint only; the value is read
//! by the holder of the master key.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use wharf_ops::{Actor, OpsError, OpsErrorKind};
use wharf_secrets::{SecretValue, VersionInfo};

use wharf_api::ErrorCode;

use crate::{ApiError, AppState, authorize, gone};

/// The header the CLI names its user in; trusted on the owner-only unix socket, ignored on TCP
/// (where the token is the identity).
pub const ACTOR_HEADER: &str = "x-wharf-actor";

fn bad_request(message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message)
}

/// An [`OpsError`] by its kind: 400, 404, 409 or 500 (the last with a generic message; the
/// cause goes to the log).
pub(crate) fn ops_error(error: OpsError) -> ApiError {
    let code = match error.kind() {
        OpsErrorKind::Invalid => ErrorCode::InvalidRequest,
        OpsErrorKind::NotFound => ErrorCode::NotFound,
        OpsErrorKind::Conflict => ErrorCode::Rejected,
        OpsErrorKind::Internal => {
            tracing::error!(%error, "use case failed");
            return ApiError::new(
                ErrorCode::Internal,
                format!("the change was not made: {error}"),
            );
        }
    };
    ApiError::new(code, error.to_string())
}

/// Who asks: the CLI's user on the unix socket, the token's holder on TCP.
fn actor(state: &AppState, headers: &HeaderMap) -> Actor {
    if state.token.is_some() {
        return Actor("api-token".to_owned());
    }
    headers
        .get(ACTOR_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .map_or_else(|| Actor("api-socket".to_owned()), |v| Actor(v.to_owned()))
}

/// A JSON body of type `T`; an empty body is `{}`; serde's message names the bad field.
fn body<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(bytes).map_err(|err| bad_request(format!("invalid {what}: {err}")))
}

/// Runs a use case on the writer thread.
async fn run<T: Send + 'static>(
    state: &AppState,
    job: impl FnOnce(&mut wharf_store::Store) -> Result<T, OpsError> + Send + 'static,
) -> Result<T, ApiError> {
    state
        .handle
        .writer()
        .run(job)
        .await
        .ok_or_else(gone)?
        .map_err(ops_error)
}

/// Asks the control plane to apply stored secrets and overrides; its answer rides along.
async fn reload(state: &AppState) -> Value {
    match state.handle.reload(Default::default()).await {
        Ok(answer) => serde_json::to_value(answer).unwrap_or_default(),
        Err(error) => json!({"error": error.message}),
    }
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

fn check_secret_name(name: &str) -> Result<(), ApiError> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if valid {
        Ok(())
    } else {
        Err(bad_request(format!("`{name}` is not a valid secret name")))
    }
}

/// `GET /v1/secrets`: every stored secret's current version (no values).
pub(crate) async fn list_secrets(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let versions = run(&state, |store| Ok(wharf_secrets::list(store)?)).await?;
    let list: Vec<Value> = versions.iter().map(version_json).collect();
    Ok(Json(list).into_response())
}

/// `GET /v1/secrets/{name}`: a secret's versions (no values).
pub(crate) async fn secret_history(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    check_secret_name(&name)?;
    let lookup = name.clone();
    let versions = run(&state, move |store| {
        Ok(wharf_secrets::history(store, &lookup)?)
    })
    .await?;
    if versions.is_empty() {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no secret named `{name}` is stored"),
        ));
    }
    let list: Vec<Value> = versions.iter().map(version_json).collect();
    Ok(Json(list).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetSecret {
    value: String,
    #[serde(default)]
    reason: Option<String>,
    /// The caller generated the value and ran the rotate hook itself.
    #[serde(default)]
    rotated: bool,
}

/// `PUT /v1/secrets/{name}`: a new version of a declared secret.
pub(crate) async fn set_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    check_secret_name(&name)?;
    let request: SetSecret = body(&bytes, "secret")?;
    // Only declared secrets: a typo must not store a value nothing will ever use.
    state.handle.secret_policy(name.clone()).await?;
    let actor = actor(&state, &headers);
    let state_dir = workdir_state(&state);
    let value = SecretValue::new(request.value.into_bytes());
    let (reason, rotated) = (request.reason, request.rotated);
    let key = name.clone();
    let info = run(&state, move |store| {
        let (secrets, _) = wharf_ops::secrets::unlock(store, &state_dir, true)?;
        let store_it = if rotated {
            wharf_ops::secrets::store_rotated
        } else {
            wharf_ops::secrets::set
        };
        store_it(store, &secrets, &actor, &key, &value, reason.as_deref())
    })
    .await?;
    let applied = reload(&state).await;
    Ok(Json(json!({"secret": version_json(&info), "reload": applied})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackSecret {
    to: u32,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /v1/secrets/{name}/rollback`: version `to`'s value becomes current again.
pub(crate) async fn rollback_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    check_secret_name(&name)?;
    let request: RollbackSecret = body(&bytes, "rollback")?;
    let actor = actor(&state, &headers);
    let state_dir = workdir_state(&state);
    let key = name.clone();
    let info = run(&state, move |store| {
        let (secrets, _) = wharf_ops::secrets::unlock(store, &state_dir, false)?;
        wharf_ops::secrets::rollback(
            store,
            &secrets,
            &actor,
            &key,
            request.to,
            request.reason.as_deref(),
        )
    })
    .await?;
    let applied = reload(&state).await;
    Ok(Json(json!({"secret": version_json(&info), "reload": applied})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reason {
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /v1/secrets/{name}/rotate`: a generated value, after the manifest's hook.
pub(crate) async fn rotate_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    check_secret_name(&name)?;
    let request: Reason = body(&bytes, "rotation")?;
    let (policy, workdir) = state.handle.secret_policy(name.clone()).await?;
    let actor = actor(&state, &headers);
    let state_dir = workdir_state(&state);
    let key = name.clone();
    let rotated = run(&state, move |store| {
        let (secrets, _) = wharf_ops::secrets::unlock(store, &state_dir, true)?;
        wharf_ops::secrets::rotate(
            store,
            &secrets,
            &actor,
            &key,
            &policy,
            &workdir,
            request.reason.as_deref(),
        )
    })
    .await?;
    match rotated {
        wharf_ops::secrets::Rotated::Done { info, hook } => {
            let applied = reload(&state).await;
            Ok(
                Json(json!({"secret": version_json(&info), "hook": hook, "reload": applied}))
                    .into_response(),
            )
        }
        wharf_ops::secrets::Rotated::HookFailed {
            failure, restored, ..
        } => {
            tracing::warn!(secret = name, failure, "rotate_command failed");
            Err(ApiError::new(
                ErrorCode::HookFailed,
                match restored {
                    Some(v) => format!(
                        "the rotate_command of {name} failed; the value in force is unchanged (version {})",
                        v.version
                    ),
                    None => format!(
                        "the rotate_command of {name} failed; the new value is stored but may not be in force where the hook would have put it"
                    ),
                },
            ))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reveal {
    #[serde(default)]
    version: Option<u32>,
}

/// `POST /v1/secrets/{name}/reveals`: records that the caller is about to read a value (the
/// CLI, which holds the master key, reads it after this answer). The answer holds the version
/// and its fingerprint, never the value.
pub(crate) async fn record_reveal(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    check_secret_name(&name)?;
    let request: Reveal = body(&bytes, "reveal")?;
    let actor = actor(&state, &headers);
    let state_dir = workdir_state(&state);
    let key = name.clone();
    let info = run(&state, move |store| {
        let (secrets, _) = wharf_ops::secrets::unlock(store, &state_dir, false)?;
        let (info, value) =
            wharf_ops::secrets::reveal(store, &secrets, &actor, &key, request.version)?;
        drop(value);
        Ok(info)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"secret": version_json(&info)})),
    )
        .into_response())
}

/// `GET /v1/config/{service}`: the service's current overrides and its revisions.
pub(crate) async fn get_config(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(service): UrlPath<String>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let (current, revisions) = run(&state, move |store| {
        let current = store.config_at(&service, None)?;
        let revisions = store.config_revisions(Some(&service))?;
        Ok((current, revisions))
    })
    .await?;
    let revisions: Vec<Value> = revisions
        .iter()
        .map(|r| {
            json!({"revision": r.id, "service": r.service, "changes": r.changes,
                   "actor": r.actor, "reason": r.reason, "created_at": r.created_at})
        })
        .collect();
    Ok(Json(json!({"config": current, "revisions": revisions})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeConfig {
    changes: BTreeMap<String, Option<String>>,
    reason: String,
}

/// `PUT /v1/config/{service}`: set (`"KEY": "value"`) or unset (`"KEY": null`) overrides.
pub(crate) async fn change_config(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(service): UrlPath<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let request: ChangeConfig = body(&bytes, "config change")?;
    // A service the stack does not have is refused, like `wharf config set` does.
    state.handle.rollout(service.clone()).await?;
    let actor = actor(&state, &headers);
    let revised = run(&state, move |store| {
        wharf_ops::config::change(store, &actor, &service, request.changes, &request.reason)
    })
    .await?;
    let applied = reload(&state).await;
    Ok(Json(json!({"revised": revised, "reload": applied})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackConfig {
    to: u64,
    reason: String,
}

/// `POST /v1/config/rollback`: a service's overrides as of revision `to`, as a new revision.
pub(crate) async fn rollback_config(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let request: RollbackConfig = body(&bytes, "config rollback")?;
    let actor = actor(&state, &headers);
    let revised = run(&state, move |store| {
        wharf_ops::config::rollback(store, &actor, request.to, &request.reason)
    })
    .await?;
    let applied = reload(&state).await;
    Ok(Json(json!({"revised": revised, "reload": applied})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Note {
    text: String,
}

/// `POST /v1/audit/notes`: an operator's note in the ledger.
pub(crate) async fn add_note(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let request: Note = body(&bytes, "note")?;
    let actor = actor(&state, &headers);
    let entry = run(&state, move |store| {
        wharf_ops::audit::note(store, &actor, &request.text)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"seq": entry.seq, "entry": entry.to_json()})),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PreflightRecord {
    target: String,
    details: Value,
}

/// `POST /v1/preflight`: a preflight's verdict in the ledger.
pub(crate) async fn record_preflight(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let request: PreflightRecord = body(&bytes, "preflight record")?;
    let actor = actor(&state, &headers);
    let entry = run(&state, move |store| {
        wharf_ops::audit::preflight(store, &actor, &request.target, request.details)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(json!({"seq": entry.seq}))).into_response())
}

/// The state directory (where the master key file lives).
fn workdir_state(state: &AppState) -> std::path::PathBuf {
    state.handle.state_dir().to_owned()
}
