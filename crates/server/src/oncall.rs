//! The on-call routes: silences (create, end early, list) and incidents (declare, update,
//! acknowledge, assign a role, resolve, list, show, timeline, postmortem draft). Each change
//! runs its `wharf-ops` use case on the control plane's store-writer thread (the row and its
//! ledger entry in one transaction); a silence change then tells the control plane, whose
//! alerting holds pages back by them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use wharf_api::{
    ApiErrorBody, AssignRoleRequest, CreateSilenceRequest, DeclareIncidentRequest, ErrorCode,
    Incident, IncidentList, IncidentStepRequest, IncidentUpdateRequest, LedgerEntry, Silence,
    SilenceList,
};

use crate::state_routes::{actor, run};
use crate::{ApiError, AppState, authorize, decode_body, decode_required_body, gone};

/// Runs a read on a connection of its own on a blocking thread: a long read (an incident's
/// timeline over a large ledger) never holds the writer thread every change waits for.
async fn read<T: Send + 'static>(
    state: &AppState,
    job: impl FnOnce(&wharf_ops::read::StateDb) -> Result<T, wharf_ops::OpsError> + Send + 'static,
) -> Result<T, ApiError> {
    let state_dir = state.handle.state_dir().to_owned();
    tokio::task::spawn_blocking(move || {
        // A running control plane always has its database; missing, it is the machine's fault.
        let store =
            wharf_ops::read::open_existing(&state_dir)?.ok_or_else(|| wharf_ops::OpsError::Io {
                context: format!("no state database in {}", state_dir.display()),
                source: std::io::ErrorKind::NotFound.into(),
            })?;
        job(&store)
    })
    .await
    .map_err(|_| {
        ApiError::new(
            ErrorCode::Internal,
            "the read failed; see the control plane's log",
        )
    })?
    .map_err(crate::state_routes::ops_error)
}

fn silence_id(path: Result<UrlPath<String>, PathRejection>) -> Result<u64, ApiError> {
    let UrlPath(text) = path?;
    wharf_ops::silences::parse_id(&text).map_err(crate::state_routes::ops_error)
}

fn incident_id(path: Result<UrlPath<String>, PathRejection>) -> Result<u64, ApiError> {
    let UrlPath(text) = path?;
    wharf_ops::incidents::parse_id(&text).map_err(crate::state_routes::ops_error)
}

/// The last 100 silences, newest first (in force, ended and run out).
#[utoipa::path(get, path = "/v1/silences", tag = "oncall", security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The silences", body = SilenceList),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn list_silences(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let silences = read(&state, |store| wharf_ops::silences::recent(store, 100)).await?;
    Ok(Json(SilenceList { silences }).into_response())
}

/// Silence pages matching every matcher until the duration has passed (at most 30 days).
#[utoipa::path(post, path = "/v1/silences", tag = "oncall", security((), ("bearer" = [])),
    request_body = CreateSilenceRequest,
    responses(
        (status = 201, description = "Created", body = Silence),
        (status = 400, description = "No matcher, a bad matcher, no reason, a duration that is not one or is over 30 days", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 500, description = "The ledger could not be appended to (`internal`)", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn create_silence(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let request: CreateSilenceRequest = decode_required_body(&bytes, "silence")?;
    for matcher in &request.matchers {
        matcher
            .check()
            .map_err(|message| ApiError::new(ErrorCode::InvalidRequest, message))?;
    }
    state
        .handle
        .check_matchers(request.matchers.clone())
        .await
        .ok_or_else(gone)?
        .map_err(|message| ApiError::new(ErrorCode::InvalidRequest, message))?;
    let actor = actor(&state, &headers);
    let silence = run(&state, move |store| {
        wharf_ops::silences::create(store, &actor, &request, jiff::Timestamp::now())
    })
    .await?;
    state.handle.silences_changed().await.ok_or_else(gone)?;
    Ok((StatusCode::CREATED, Json(silence)).into_response())
}

/// End a silence now; pages it held that are still open are sent.
#[utoipa::path(post, path = "/v1/silences/{id}/expire", tag = "oncall", security((), ("bearer" = [])),
    params(("id" = String, Path, description = "The silence (`s-3` or `3`)", example = "s-1")),
    responses(
        (status = 200, description = "Ended", body = Silence),
        (status = 400, description = "Not a silence id", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 404, description = "No such silence", body = ApiErrorBody),
        (status = 409, description = "It already ended", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn expire_silence(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<UrlPath<String>, PathRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let id = silence_id(path)?;
    let actor = actor(&state, &headers);
    let silence = run(&state, move |store| {
        wharf_ops::silences::expire(store, &actor, id, jiff::Timestamp::now())
    })
    .await?;
    state.handle.silences_changed().await.ok_or_else(gone)?;
    Ok(Json(silence).into_response())
}

/// The last 200 incidents, newest first.
#[utoipa::path(get, path = "/v1/incidents", tag = "oncall", security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The incidents", body = IncidentList),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn list_incidents(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let incidents = read(&state, |store| wharf_ops::incidents::list(store, true)).await?;
    Ok(Json(IncidentList { incidents }).into_response())
}

/// Declare an incident (its commander is the caller unless named).
#[utoipa::path(post, path = "/v1/incidents", tag = "oncall", security((), ("bearer" = [])),
    request_body = DeclareIncidentRequest,
    responses(
        (status = 201, description = "Declared", body = Incident),
        (status = 400, description = "No title, a service the stack does not have, a bad name", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 500, description = "The ledger could not be appended to (`internal`)", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn declare_incident(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let request: DeclareIncidentRequest = decode_required_body(&bytes, "incident")?;
    if !request.services.is_empty() {
        let report = state.handle.status().await.ok_or_else(gone)?;
        if let Some(unknown) = request
            .services
            .iter()
            .find(|name| !report.services.iter().any(|s| &s.name == *name))
        {
            let known: Vec<&str> = report.services.iter().map(|s| s.name.as_str()).collect();
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "the stack has no service `{unknown}` (it has: {})",
                    known.join(", ")
                ),
            ));
        }
    }
    let actor = actor(&state, &headers);
    let incident = run(&state, move |store| {
        wharf_ops::incidents::declare(store, &actor, &request, None, jiff::Timestamp::now())
    })
    .await?;
    Ok((StatusCode::CREATED, Json(incident)).into_response())
}

/// One incident.
#[utoipa::path(get, path = "/v1/incidents/{id}", tag = "oncall", security((), ("bearer" = [])),
    params(("id" = String, Path, description = "The incident (`INC-3` or `3`)", example = "INC-1")),
    responses(
        (status = 200, description = "The incident", body = Incident),
        (status = 400, description = "Not an incident id", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 404, description = "No such incident", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn incident(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<UrlPath<String>, PathRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let id = incident_id(path)?;
    let incident = read(&state, move |store| wharf_ops::incidents::get(store, id)).await?;
    Ok(Json(incident).into_response())
}

/// The incident's timeline: its own entries and, within its window, those about its services.
#[utoipa::path(get, path = "/v1/incidents/{id}/timeline", tag = "oncall", security((), ("bearer" = [])),
    params(("id" = String, Path, description = "The incident (`INC-3` or `3`)", example = "INC-1")),
    responses(
        (status = 200, description = "Ledger entries, oldest first", body = Vec<LedgerEntry>),
        (status = 400, description = "Not an incident id", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 404, description = "No such incident", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn timeline(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<UrlPath<String>, PathRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let id = incident_id(path)?;
    let entries = read(&state, move |store| {
        let incident = wharf_ops::incidents::get(store, id)?;
        wharf_ops::incidents::timeline(store, &incident)
    })
    .await?;
    let entries: Vec<LedgerEntry> = entries
        .into_iter()
        .map(|entry| LedgerEntry {
            action: entry.action.as_str().to_owned(),
            actor: entry.actor,
            details: entry.details,
            seq: entry.seq,
            target: entry.target,
            time: entry.time.to_string(),
        })
        .collect();
    Ok(Json(entries).into_response())
}

/// The postmortem draft (Markdown) written from the incident and its timeline.
#[utoipa::path(get, path = "/v1/incidents/{id}/postmortem", tag = "oncall", security((), ("bearer" = [])),
    params(("id" = String, Path, description = "The incident (`INC-3` or `3`)", example = "INC-1")),
    responses(
        (status = 200, description = "The draft", body = String, content_type = "text/markdown"),
        (status = 400, description = "Not an incident id", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 404, description = "No such incident", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn postmortem(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<UrlPath<String>, PathRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let id = incident_id(path)?;
    let draft = read(&state, move |store| {
        let incident = wharf_ops::incidents::get(store, id)?;
        let timeline = wharf_ops::incidents::timeline(store, &incident)?;
        Ok(wharf_ops::incidents::postmortem(&incident, &timeline))
    })
    .await?;
    Ok((
        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
        draft,
    )
        .into_response())
}

/// A status update (an update to `resolved` resolves it).
#[utoipa::path(post, path = "/v1/incidents/{id}/updates", tag = "oncall", security((), ("bearer" = [])),
    params(("id" = String, Path, description = "The incident (`INC-3` or `3`)", example = "INC-1")),
    request_body = IncidentUpdateRequest,
    responses(
        (status = 200, description = "Updated", body = Incident),
        (status = 400, description = "The body does not decode, or an empty message", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 404, description = "No such incident", body = ApiErrorBody),
        (status = 409, description = "It is resolved", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn update(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<UrlPath<String>, PathRejection>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let id = incident_id(path)?;
    let request: IncidentUpdateRequest = decode_required_body(&bytes, "incident update")?;
    let actor = actor(&state, &headers);
    let incident = run(&state, move |store| {
        wharf_ops::incidents::update(store, &actor, id, &request, jiff::Timestamp::now())
    })
    .await?;
    Ok(Json(incident).into_response())
}

/// Acknowledge: the caller takes it on.
#[utoipa::path(post, path = "/v1/incidents/{id}/ack", tag = "oncall", security((), ("bearer" = [])),
    params(("id" = String, Path, description = "The incident (`INC-3` or `3`)", example = "INC-1")),
    request_body(content = Option<IncidentStepRequest>, description = "An optional message"),
    responses(
        (status = 200, description = "Acknowledged", body = Incident),
        (status = 400, description = "The body does not decode", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 404, description = "No such incident", body = ApiErrorBody),
        (status = 409, description = "Already acknowledged, or resolved", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn ack(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<UrlPath<String>, PathRejection>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let id = incident_id(path)?;
    let request: IncidentStepRequest = decode_body(&bytes, "acknowledgement")?;
    let actor = actor(&state, &headers);
    let by = actor.0.clone();
    let incident = run(&state, move |store| {
        wharf_ops::incidents::ack(store, &actor, id, &request, jiff::Timestamp::now())
    })
    .await?;
    // The page that opened it is acknowledged at its receiver too (PagerDuty stops escalating).
    // The acknowledgement is recorded already: a stopping control plane only misses telling.
    if let Some(key) = &incident.alert
        && state
            .handle
            .acknowledge_page(key.clone(), by)
            .await
            .is_none()
    {
        tracing::warn!(
            page = key,
            "the control plane stopped before the page's receiver was told of the acknowledgement"
        );
    }
    Ok(Json(incident).into_response())
}

/// Give a role (commander, comms, scribe…) to a person.
#[utoipa::path(post, path = "/v1/incidents/{id}/roles", tag = "oncall", security((), ("bearer" = [])),
    params(("id" = String, Path, description = "The incident (`INC-3` or `3`)", example = "INC-1")),
    request_body = AssignRoleRequest,
    responses(
        (status = 200, description = "Assigned", body = Incident),
        (status = 400, description = "The body does not decode, or a bad role or person name", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 404, description = "No such incident", body = ApiErrorBody),
        (status = 409, description = "It is resolved", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn assign(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<UrlPath<String>, PathRejection>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let id = incident_id(path)?;
    let request: AssignRoleRequest = decode_required_body(&bytes, "role assignment")?;
    let actor = actor(&state, &headers);
    let incident = run(&state, move |store| {
        wharf_ops::incidents::assign(store, &actor, id, &request.role, &request.person)
    })
    .await?;
    Ok(Json(incident).into_response())
}

/// Resolve the incident.
#[utoipa::path(post, path = "/v1/incidents/{id}/resolve", tag = "oncall", security((), ("bearer" = [])),
    params(("id" = String, Path, description = "The incident (`INC-3` or `3`)", example = "INC-1")),
    request_body(content = Option<IncidentStepRequest>, description = "An optional message"),
    responses(
        (status = 200, description = "Resolved", body = Incident),
        (status = 400, description = "The body does not decode", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 404, description = "No such incident", body = ApiErrorBody),
        (status = 409, description = "Already resolved", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn resolve(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<UrlPath<String>, PathRejection>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let id = incident_id(path)?;
    let request: IncidentStepRequest = decode_body(&bytes, "resolution")?;
    let actor = actor(&state, &headers);
    let incident = run(&state, move |store| {
        wharf_ops::incidents::resolve(store, &actor, id, &request, jiff::Timestamp::now())
    })
    .await?;
    Ok(Json(incident).into_response())
}
