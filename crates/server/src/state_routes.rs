//! The routes that change a stack's stored state — secrets, config overrides, audit notes,
//! preflight records — so that while a control plane runs it is the only writer: each request
//! runs one `wharf-ops` use case (the change and its ledger entry in one transaction) on the
//! control plane's store-writer thread, then asks the control plane to apply it. Requests and
//! answers are `wharf-api` types.
//!
//! Secret values enter in a request body and never leave in an answer: a reveal over the API
//! records the reveal and answers with the version and its fingerprint only; the value is read
//! by the holder of the master key.
//!
//! Architecture Invariant: no hook runs in the control plane. A rotation is begun and finished
//! here; the `rotate_command` between the two runs in the caller, with the operator's
//! environment, so a hung hook can never block the store-writer thread.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use wharf_api::{
    ApiErrorBody, BeginRotationRequest, ChangeConfigRequest, CheckpointAnswer, ConfigAnswer,
    ConfigChangeAnswer, ConfigRevision, ConfigRollbackRequest, ErrorCode, FinishRotationRequest,
    HookResult, LedgerEntry, NoteAnswer, NoteRequest, PreflightRecordAnswer,
    PreflightRecordRequest, ReloadOutcome, RevealAnswer, RevealRequest, RevisedConfig,
    RollbackSecretRequest, RotationBegun, RotationFinished, RotationResult, SecretChangeAnswer,
    SecretVersion, SetSecretRequest, VerifierAnswer,
};
use wharf_ops::secrets::{FinishedAs, HookOutcome};
use wharf_ops::{Actor, OpsError, OpsErrorKind};
use wharf_secrets::{SecretValue, VersionInfo};

use crate::{
    ApiError, AppState, authorize, decode_body, decode_required_body, decode_secret_request, gone,
};

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
            // The cause names state-directory and key-file paths and SQLite's detail: the
            // operator reads it in the log, a remote token holder gets no map of the host.
            tracing::error!(%error, "use case failed");
            return ApiError::new(
                ErrorCode::Internal,
                "the change was not made; see the control plane's log",
            );
        }
    };
    ApiError::new(code, error.to_string())
}

/// Who asks, as the identity layer established it (`identity.rs`): the OS user on the unix
/// socket, a token's holder on either listener.
pub(crate) fn actor(_state: &AppState, headers: &HeaderMap) -> Actor {
    Actor(
        headers
            .get(crate::identity::CALLER_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("api-socket")
            .to_owned(),
    )
}

/// Runs a use case on the writer thread.
pub(crate) async fn run<T: Send + 'static>(
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
async fn reload(state: &AppState) -> ReloadOutcome {
    match state.handle.reload(Default::default()).await {
        Ok(answer) => ReloadOutcome::Applied(answer),
        Err(error) => ReloadOutcome::Failed {
            error: error.message,
        },
    }
}

/// A stored version on the wire: its metadata and fingerprint, never its value.
fn secret_version(v: VersionInfo) -> SecretVersion {
    SecretVersion {
        name: v.name,
        version: v.version,
        created_at: v.created_at,
        actor: v.actor,
        origin: v.origin,
        reason: v.reason,
        fingerprint: v.fingerprint,
    }
}

fn revised_config(revised: wharf_ops::config::Revised) -> RevisedConfig {
    RevisedConfig {
        service: revised.service,
        revision: revised.revision,
        changes: revised.changes,
    }
}

/// The secret name in the path: letters, digits, `_`, `-`, `.`, at most 128.
fn secret_name(path: Result<UrlPath<String>, PathRejection>) -> Result<String, ApiError> {
    let UrlPath(name) = path?;
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if valid {
        Ok(name)
    } else {
        Err(bad_request(format!("`{name}` is not a valid secret name")))
    }
}

/// Every stored secret's current version (no values).
#[utoipa::path(get, path = "/v1/secrets", tag = "secrets", security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The current version of every stored secret", body = Vec<SecretVersion>),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 500, description = "The store could not be read (`internal`)", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn list_secrets(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let versions = run(&state, |store| Ok(wharf_secrets::list(store)?)).await?;
    let list: Vec<SecretVersion> = versions.into_iter().map(secret_version).collect();
    Ok(Json(list).into_response())
}

/// A secret's versions, oldest first (no values).
#[utoipa::path(get, path = "/v1/secrets/{name}", tag = "secrets", security((), ("bearer" = [])),
    params(("name" = String, Path, description = "The secret", example = "api_key")),
    responses(
        (status = 200, description = "Every version of the secret", body = Vec<SecretVersion>),
        (status = 400, description = "Not a valid secret name, or the path does not decode", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 404, description = "No secret of that name is stored (or no such route: a name of `.` or `..`)", body = ApiErrorBody),
        (status = 500, description = "The store could not be read (`internal`)", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn secret_history(
    State(state): State<AppState>,
    headers: HeaderMap,
    name: Result<UrlPath<String>, PathRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let name = secret_name(name)?;
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
    let list: Vec<SecretVersion> = versions.into_iter().map(secret_version).collect();
    Ok(Json(list).into_response())
}

/// A new version of a secret the manifest declares; the control plane then applies it. The
/// answer never carries the value.
#[utoipa::path(put, path = "/v1/secrets/{name}", tag = "secrets", security((), ("bearer" = [])),
    params(("name" = String, Path, description = "A secret declared under `secrets:` in the manifest", example = "api_key")),
    request_body = SetSecretRequest,
    responses(
        (status = 200, description = "Stored; what the control plane did with it", body = SecretChangeAnswer),
        (status = 400, description = "The body or path does not decode, an empty value, or a secret the manifest does not declare", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 404, description = "No such route (a name of `.` or `..`, which clients resolve away)", body = ApiErrorBody),
        (status = 500, description = "Nothing was stored: storage or the master key failed (`internal`)", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn set_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    name: Result<UrlPath<String>, PathRejection>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let name = secret_name(name)?;
    let request: SetSecretRequest = decode_secret_request(&bytes)?;
    // Only declared secrets: a typo must not store a value nothing will ever use.
    state.handle.secret_policy(name.clone()).await?;
    let actor = actor(&state, &headers);
    let state_dir = workdir_state(&state);
    let value = SecretValue::new(request.value.into_bytes());
    let reason = request.reason;
    let key = name.clone();
    let info = run(&state, move |store| {
        let (secrets, _) = wharf_ops::secrets::unlock(store, &state_dir, true)?;
        wharf_ops::secrets::set(store, &secrets, &actor, &key, &value, reason.as_deref())
    })
    .await?;
    let answer = SecretChangeAnswer {
        secret: secret_version(info),
        reload: reload(&state).await,
    };
    Ok(Json(answer).into_response())
}

/// Version `to`'s value becomes current again, as a new version; the control plane then
/// applies it.
#[utoipa::path(post, path = "/v1/secrets/{name}/rollback", tag = "secrets", security((), ("bearer" = [])),
    params(("name" = String, Path, description = "The secret", example = "api_key")),
    request_body = RollbackSecretRequest,
    responses(
        (status = 200, description = "Rolled back; what the control plane did with it", body = SecretChangeAnswer),
        (status = 400, description = "The body or path does not decode, or not a valid secret name", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 404, description = "No such secret or version (or route: a name of `.` or `..`)", body = ApiErrorBody),
        (status = 500, description = "Nothing was changed: storage or the master key failed (`internal`)", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn rollback_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    name: Result<UrlPath<String>, PathRejection>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let name = secret_name(name)?;
    let request: RollbackSecretRequest = decode_required_body(&bytes, "rollback")?;
    let actor = actor(&state, &headers);
    let state_dir = workdir_state(&state);
    let info = run(&state, move |store| {
        let (secrets, _) = wharf_ops::secrets::unlock(store, &state_dir, false)?;
        wharf_ops::secrets::rollback(
            store,
            &secrets,
            &actor,
            &name,
            request.to,
            request.reason.as_deref(),
        )
    })
    .await?;
    let answer = SecretChangeAnswer {
        secret: secret_version(info),
        reload: reload(&state).await,
    };
    Ok(Json(answer).into_response())
}

/// Begins a rotation: the caller's generated value is stored as a new version with a
/// `secret.rotate_pending` entry. The caller then runs the manifest's `rotate_command` itself
/// (no hook runs in the control plane) and finishes the rotation with its outcome. Nothing is
/// reloaded yet. The answer never carries the value.
#[utoipa::path(post, path = "/v1/secrets/{name}/rotations", tag = "secrets", security((), ("bearer" = [])),
    params(("name" = String, Path, description = "A secret declared under `secrets:` in the manifest", example = "api_key")),
    request_body = BeginRotationRequest,
    responses(
        (status = 201, description = "Stored as the current version, pending its hook", body = RotationBegun),
        (status = 400, description = "The body or path does not decode, an empty value, or a secret the manifest does not declare", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 404, description = "No such route (a name of `.` or `..`, which clients resolve away)", body = ApiErrorBody),
        (status = 500, description = "Nothing was stored: storage or the master key failed (`internal`)", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn begin_rotation(
    State(state): State<AppState>,
    headers: HeaderMap,
    name: Result<UrlPath<String>, PathRejection>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let name = secret_name(name)?;
    let request: BeginRotationRequest = decode_required_body(&bytes, "rotation")?;
    // Only declared secrets, as for a `PUT`.
    state.handle.secret_policy(name.clone()).await?;
    let actor = actor(&state, &headers);
    let state_dir = workdir_state(&state);
    let value = SecretValue::new(request.value.into_bytes());
    let reason = request.reason;
    let begun = run(&state, move |store| {
        let (secrets, _) = wharf_ops::secrets::unlock(store, &state_dir, true)?;
        wharf_ops::secrets::rotate_begin(store, &secrets, &actor, &name, &value, reason.as_deref())
    })
    .await?;
    let answer = RotationBegun {
        secret: secret_version(begun.new),
        previous: begun.previous.map(|p| p.version),
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// Finishes the rotation that began as `version` with the outcome of the caller's hook:
/// `succeeded` records `secret.rotate`; `failed` puts the previous value back as a new version
/// with `secret.rotate_failed` (while `version` is still current), or keeps the new one when
/// there was none. The control plane then applies the version in force.
#[utoipa::path(post, path = "/v1/secrets/{name}/rotations/{version}", tag = "secrets", security((), ("bearer" = [])),
    params(
        ("name" = String, Path, description = "A secret declared under `secrets:` in the manifest", example = "api_key"),
        ("version" = u32, Path, description = "The version the rotation began as", example = 2, minimum = 1),
    ),
    request_body = FinishRotationRequest,
    responses(
        (status = 200, description = "Recorded; the version in force and what the control plane did with it", body = RotationFinished),
        (status = 400, description = "The body or path does not decode, or a secret the manifest does not declare", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 404, description = "No rotation of the secret began as that version (or no route: a name of `.` or `..`)", body = ApiErrorBody),
        (status = 409, description = "The rotation is already finished, or (`failed`) the secret changed since it began, so nothing was put back (`rejected`)", body = ApiErrorBody),
        (status = 500, description = "Nothing was recorded: storage or the master key failed (`internal`)", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn finish_rotation(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<UrlPath<(String, String)>, PathRejection>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let UrlPath((name, version)) = path?;
    let name = secret_name(Ok(UrlPath(name)))?;
    let version: u32 = version
        .parse()
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| bad_request(format!("`{version}` is not a version number")))?;
    let request: FinishRotationRequest = decode_required_body(&bytes, "rotation")?;
    let (policy, _) = state.handle.secret_policy(name.clone()).await?;
    let outcome = match request.outcome {
        HookResult::Succeeded if policy.rotate_command.is_none() => HookOutcome::NoHook,
        HookResult::Succeeded => HookOutcome::Succeeded,
        HookResult::Failed => HookOutcome::Failed {
            reason: request
                .reason
                .unwrap_or_else(|| "rotate_command failed".to_owned()),
        },
    };
    let actor = actor(&state, &headers);
    let state_dir = workdir_state(&state);
    let finished = run(&state, move |store| {
        let (secrets, _) = wharf_ops::secrets::unlock(store, &state_dir, false)?;
        wharf_ops::secrets::rotate_finish(store, &secrets, &actor, &name, version, outcome)
    })
    .await?;
    let (result, reload) = match finished.result {
        FinishedAs::Rotated => (RotationResult::Rotated, Some(reload(&state).await)),
        FinishedAs::Restored { .. } => (RotationResult::Restored, Some(reload(&state).await)),
        FinishedAs::Kept => (RotationResult::Kept, None),
    };
    let answer = RotationFinished {
        secret: secret_version(finished.in_force),
        result,
        reload,
    };
    Ok(Json(answer).into_response())
}

/// Records that the caller is about to read a value (the CLI, which holds the master key,
/// reads it after this answer). The answer holds the version and its fingerprint, never the
/// value.
#[utoipa::path(post, path = "/v1/secrets/{name}/reveals", tag = "secrets", security((), ("bearer" = [])),
    params(("name" = String, Path, description = "The secret", example = "api_key")),
    request_body(content = Option<RevealRequest>, description = "Absent: the current version"),
    responses(
        (status = 201, description = "The reveal is recorded", body = RevealAnswer),
        (status = 400, description = "The body or path does not decode, or not a valid secret name", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 404, description = "No such secret or version (or route: a name of `.` or `..`)", body = ApiErrorBody),
        (status = 500, description = "Storage or the master key failed (`internal`)", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn record_reveal(
    State(state): State<AppState>,
    headers: HeaderMap,
    name: Result<UrlPath<String>, PathRejection>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let name = secret_name(name)?;
    let request: RevealRequest = decode_body(&bytes, "reveal")?;
    let actor = actor(&state, &headers);
    let state_dir = workdir_state(&state);
    let info = run(&state, move |store| {
        let (secrets, _) = wharf_ops::secrets::unlock(store, &state_dir, false)?;
        let (info, value) =
            wharf_ops::secrets::reveal(store, &secrets, &actor, &name, request.version)?;
        drop(value);
        Ok(info)
    })
    .await?;
    let answer = RevealAnswer {
        secret: secret_version(info),
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// The service's current overrides and their revisions.
#[utoipa::path(get, path = "/v1/config/{service}", tag = "config", security((), ("bearer" = [])),
    params(("service" = String, Path, description = "The service", example = "api")),
    responses(
        (status = 200, description = "The overrides in force and every revision (empty for a service without any)", body = ConfigAnswer),
        (status = 400, description = "The path does not decode", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 404, description = "No such service (`unknown_service`), or no route (a service of `.` or `..`, which clients resolve away)", body = ApiErrorBody),
        (status = 500, description = "The store could not be read (`internal`)", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn get_config(
    State(state): State<AppState>,
    headers: HeaderMap,
    service: Result<UrlPath<String>, PathRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let UrlPath(service) = service?;
    // A service the stack does not have is a 404, as for a change.
    state.handle.rollout(service.clone()).await?;
    let (config, revisions) = run(&state, move |store| {
        let current = store.config_at(&service, None)?;
        let revisions = store.config_revisions(Some(&service))?;
        Ok((current, revisions))
    })
    .await?;
    let revisions = revisions
        .into_iter()
        .map(|r| ConfigRevision {
            revision: r.id,
            service: r.service,
            changes: r.changes,
            actor: r.actor,
            reason: r.reason,
            created_at: r.created_at,
        })
        .collect();
    Ok(Json(ConfigAnswer { config, revisions }).into_response())
}

/// Set (`"KEY": "value"`) or unset (`"KEY": null`) overrides; the control plane then applies
/// them.
#[utoipa::path(put, path = "/v1/config/{service}", tag = "config", security((), ("bearer" = [])),
    params(("service" = String, Path, description = "The service", example = "api")),
    request_body = ChangeConfigRequest,
    responses(
        (status = 200, description = "Recorded (`revision` is null when nothing changed); what the control plane did with it", body = ConfigChangeAnswer),
        (status = 400, description = "The body or path does not decode, a key that cannot be an environment variable, no changes, or a blank reason", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 404, description = "No such service (`unknown_service`)", body = ApiErrorBody),
        (status = 500, description = "Nothing was recorded: storage failed (`internal`)", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn change_config(
    State(state): State<AppState>,
    headers: HeaderMap,
    service: Result<UrlPath<String>, PathRejection>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let UrlPath(service) = service?;
    let request: ChangeConfigRequest = decode_required_body(&bytes, "config change")?;
    // A service the stack does not have is refused, like `wharf config set` does.
    state.handle.rollout(service.clone()).await?;
    let actor = actor(&state, &headers);
    let revised = run(&state, move |store| {
        wharf_ops::config::change(store, &actor, &service, request.changes, &request.reason)
    })
    .await?;
    let answer = ConfigChangeAnswer {
        revised: revised_config(revised),
        reload: reload(&state).await,
    };
    Ok(Json(answer).into_response())
}

/// A service's overrides as of revision `to`, as a new revision; the control plane then
/// applies them.
#[utoipa::path(post, path = "/v1/config-rollback", tag = "config", security((), ("bearer" = [])),
    request_body = ConfigRollbackRequest,
    responses(
        (status = 200, description = "Recorded (`revision` is null when the overrides are already as of `to`); what the control plane did with it", body = ConfigChangeAnswer),
        (status = 400, description = "The body does not decode, or a blank reason", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 404, description = "No such revision", body = ApiErrorBody),
        (status = 500, description = "Nothing was recorded: storage failed (`internal`)", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn rollback_config(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let request: ConfigRollbackRequest = decode_required_body(&bytes, "config rollback")?;
    let actor = actor(&state, &headers);
    let revised = run(&state, move |store| {
        wharf_ops::config::rollback(store, &actor, request.to, &request.reason)
    })
    .await?;
    let answer = ConfigChangeAnswer {
        revised: revised_config(revised),
        reload: reload(&state).await,
    };
    Ok(Json(answer).into_response())
}

/// The ledger's verifier key (the signing key is made on first use, by the one writer).
#[utoipa::path(get, path = "/v1/audit/verifier", tag = "audit", security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The verifier key", body = VerifierAnswer),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 500, description = "The key is unusable: lost, swapped or unreadable (`internal`)", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn audit_verifier(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let (state_dir, origin) = signing_context(&state);
    let verifier = run(&state, move |store| {
        wharf_ops::audit::signer(store, &state_dir, || origin).map(|s| s.verifier().to_string())
    })
    .await?;
    Ok(Json(VerifierAnswer {
        verifier_key: verifier,
    })
    .into_response())
}

/// A checkpoint of the whole ledger, signed and stored.
#[utoipa::path(post, path = "/v1/audit/checkpoints", tag = "audit", security((), ("bearer" = [])),
    responses(
        (status = 201, description = "Signed and stored", body = CheckpointAnswer),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 500, description = "The key is unusable or the ledger unreadable (`internal`)", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn audit_checkpoint(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let (state_dir, origin) = signing_context(&state);
    let signed = run(&state, move |store| {
        wharf_ops::audit::checkpoint(store, &state_dir, || origin)
    })
    .await?;
    let answer = CheckpointAnswer {
        size: signed.checkpoint.size,
        note: signed.note,
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// Where the signing key lives and the name it gets on first use.
pub(crate) fn signing_context(state: &AppState) -> (std::path::PathBuf, String) {
    let handle = &state.handle;
    (
        handle.state_dir().to_owned(),
        wharf_ops::audit::origin(handle.workdir()),
    )
}

/// An operator's note in the ledger.
#[utoipa::path(post, path = "/v1/audit/notes", tag = "audit", security((), ("bearer" = [])),
    request_body = NoteRequest,
    responses(
        (status = 201, description = "Appended", body = NoteAnswer),
        (status = 400, description = "The body does not decode, or a blank note", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 500, description = "The ledger could not be appended to (`internal`)", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn add_note(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let request: NoteRequest = decode_required_body(&bytes, "note")?;
    let actor = actor(&state, &headers);
    let entry = run(&state, move |store| {
        wharf_ops::audit::note(store, &actor, &request.text).map(|entry| LedgerEntry {
            action: entry.action.as_str().to_owned(),
            actor: entry.actor,
            details: entry.details,
            seq: entry.seq,
            target: entry.target,
            time: entry.time.to_string(),
        })
    })
    .await?;
    let answer = NoteAnswer {
        seq: entry.seq,
        entry,
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// A preflight's verdict in the ledger.
#[utoipa::path(post, path = "/v1/preflight", tag = "audit", security((), ("bearer" = [])),
    request_body = PreflightRecordRequest,
    responses(
        (status = 201, description = "Appended", body = PreflightRecordAnswer),
        (status = 400, description = "The body does not decode, or `details` is not an object with a string `verdict`", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 500, description = "The ledger could not be appended to (`internal`)", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn record_preflight(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let request: PreflightRecordRequest = decode_required_body(&bytes, "preflight record")?;
    let actor = actor(&state, &headers);
    let entry = run(&state, move |store| {
        wharf_ops::audit::preflight(store, &actor, &request.target, request.details)
    })
    .await?;
    let answer = PreflightRecordAnswer { seq: entry.seq };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// A release gate's verdict in the ledger (`wharf gate check`).
#[utoipa::path(post, path = "/v1/gates/checks", tag = "audit", security((), ("bearer" = [])),
    request_body = wharf_api::GateCheckRecordRequest,
    responses(
        (status = 201, description = "Appended as `gate.check`", body = wharf_api::GateCheckRecordAnswer),
        (status = 400, description = "The body does not decode, or a field is blank, a verdict is not `pass` / `fail`, an input's sha256 is not 64 lowercase hex digits", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 500, description = "The ledger could not be appended to (`internal`)", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn record_gate_check(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let request: wharf_api::GateCheckRecordRequest =
        decode_required_body(&bytes, "gate check record")?;
    let actor = actor(&state, &headers);
    let details = serde_json::to_value(&request)
        .map_err(|e| bad_request(format!("gate check record: {e}")))?;
    let entry = run(&state, move |store| {
        wharf_ops::gates::record(store, &actor, details)
    })
    .await?;
    let answer = wharf_api::GateCheckRecordAnswer { seq: entry.seq };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// A promotion bundle from another environment: verified here (never trusting the client's
/// own check) and recorded as `promotion.import`, which a deploy under
/// `require.promoted_from` reads.
#[utoipa::path(post, path = "/v1/promotions", tag = "audit", security((), ("bearer" = [])),
    request_body = wharf_api::PromotionImportRequest,
    responses(
        (status = 201, description = "Verified and appended as `promotion.import`", body = wharf_api::PromotionImportAnswer),
        (status = 400, description = "The body does not decode, the bundle is unreadable, or it does not verify (tampered, signed by another key, no successful rollout): nothing is recorded", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 500, description = "The ledger could not be appended to (`internal`)", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn import_promotion(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let request: wharf_api::PromotionImportRequest =
        decode_required_body(&bytes, "promotion import")?;
    let actor = actor(&state, &headers);
    let (entry, details) = run(&state, move |store| {
        wharf_ops::promotion::import(
            store,
            &actor,
            request.bundle.as_bytes(),
            request.key.as_deref(),
        )
    })
    .await?;
    let answer = wharf_api::PromotionImportAnswer {
        seq: entry.seq,
        bundle_sha256: details.bundle_sha256,
        env: details.env,
        service: details.service,
        version: details.version,
        key: details.key,
        gates: details.gates,
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// The state directory (where the master key file lives).
fn workdir_state(state: &AppState) -> std::path::PathBuf {
    state.handle.state_dir().to_owned()
}
