//! The runbook routes: list the manifest's runbooks, start a run (or plan one, `dry_run`),
//! list runs, show one, resume a failed one, approve the step one waits at, cancel one. The
//! wire types are `wharf-api`'s; the control plane does the work in its loop.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use wharf_api::{
    ApiErrorBody, ApproveRequest, CancelRequest, Run, RunList, RunStarted, RunbookList,
    StartRunRequest,
};

use crate::state_routes::actor;
use crate::{ApiError, AppState, authorize, decode_body, decode_required_body, gone};

/// The manifest's runbooks: parameters, steps, limits.
#[utoipa::path(get, path = "/v1/runbooks", tag = "runbooks", security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The runbooks", body = RunbookList),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let list = state.handle.runbooks().await.ok_or_else(gone)?;
    Ok(Json(list).into_response())
}

/// Start a run of a runbook, or only plan it (`dry_run`: nothing stored, recorded or done).
/// Refused whole when a parameter is wrong or a limit (blast radius, rate) is exceeded.
#[utoipa::path(post, path = "/v1/runbooks/{name}/runs", tag = "runbooks", security((), ("bearer" = [])),
    params(("name" = String, Path, description = "The runbook", example = "recover")),
    request_body(content = Option<StartRunRequest>, description = "Parameters, and whether only to plan"),
    responses(
        (status = 200, description = "The plan of a dry run (no run)", body = RunStarted),
        (status = 202, description = "The run started, with its plan", body = RunStarted),
        (status = 400, description = "The body does not decode, or a parameter is unknown, missing or of the wrong type", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 404, description = "No such runbook, or a step names a service not in the stack", body = ApiErrorBody),
        (status = 429, description = "The blast-radius cap or the rate limit refuses the run", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn start(
    State(state): State<AppState>,
    headers: HeaderMap,
    name: Result<UrlPath<String>, PathRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let UrlPath(name) = name?;
    let request: StartRunRequest = decode_body(&body, "run request")?;
    let dry_run = request.dry_run;
    let who = actor(&state, &headers).0;
    let started = state.handle.start_run(name, request, who).await?;
    let status = if dry_run {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(started)).into_response())
}

/// The runs, newest first (the recent ones the control plane keeps).
#[utoipa::path(get, path = "/v1/runbooks/runs", tag = "runbooks", security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The runs", body = RunList),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn runs(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let runs = state.handle.runs().await.ok_or_else(gone)?;
    Ok(Json(runs).into_response())
}

/// One run: its state and each step's start, end, result and output.
#[utoipa::path(get, path = "/v1/runbooks/runs/{id}", tag = "runbooks", security((), ("bearer" = [])),
    params(("id" = u64, Path, description = "The run", example = 1)),
    responses(
        (status = 200, description = "The run", body = Run),
        (status = 400, description = "The path does not decode", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 404, description = "No such run", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn run(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<UrlPath<u64>, PathRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let UrlPath(id) = id?;
    Ok(Json(state.handle.run(id).await?).into_response())
}

/// Resume a failed run from its failed step.
#[utoipa::path(post, path = "/v1/runbooks/runs/{id}/resume", tag = "runbooks", security((), ("bearer" = [])),
    params(("id" = u64, Path, description = "The run", example = 1)),
    responses(
        (status = 202, description = "The run goes on", body = Run),
        (status = 400, description = "The path does not decode", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 404, description = "No such run", body = ApiErrorBody),
        (status = 409, description = "The run has not failed, or its runbook changed", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn resume(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<UrlPath<u64>, PathRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let UrlPath(id) = id?;
    let run = state
        .handle
        .resume_run(id, actor(&state, &headers).0)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(run)).into_response())
}

/// Approve the step a run waits at; who approved and why go to the ledger.
#[utoipa::path(post, path = "/v1/runbooks/runs/{id}/approve", tag = "runbooks", security((), ("bearer" = [])),
    params(("id" = u64, Path, description = "The run", example = 1)),
    request_body = ApproveRequest,
    responses(
        (status = 202, description = "Approved; the run goes on", body = Run),
        (status = 400, description = "The body or path does not decode, or the reason is empty", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 404, description = "No such run", body = ApiErrorBody),
        (status = 409, description = "The run waits for no approval", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn approve(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<UrlPath<u64>, PathRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let UrlPath(id) = id?;
    let request: ApproveRequest = decode_required_body(&body, "approval")?;
    let who = actor(&state, &headers).0;
    let run = state.handle.approve_run(id, request, who).await?;
    Ok((StatusCode::ACCEPTED, Json(run)).into_response())
}

/// Cancel a run that is under way, waiting or failed; it does not resume.
#[utoipa::path(post, path = "/v1/runbooks/runs/{id}/cancel", tag = "runbooks", security((), ("bearer" = [])),
    params(("id" = u64, Path, description = "The run", example = 1)),
    request_body(content = Option<CancelRequest>, description = "Why"),
    responses(
        (status = 200, description = "Cancelled", body = Run),
        (status = 400, description = "The body or path does not decode", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 404, description = "No such run", body = ApiErrorBody),
        (status = 409, description = "The run is over", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<UrlPath<u64>, PathRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let UrlPath(id) = id?;
    let request: CancelRequest = decode_body(&body, "cancel request")?;
    let who = actor(&state, &headers).0;
    Ok(Json(state.handle.cancel_run(id, request, who).await?).into_response())
}
