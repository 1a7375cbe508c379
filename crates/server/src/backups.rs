//! The backup routes: back up, drill, restore, prune and verify (each starts jobs and answers
//! 202 with them), a job's progress, every datastore's backups, the repository's snapshots.
//! The wire types are `wharf-api`'s; no answer carries a password or a datastore URL.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use wharf_api::{
    ApiErrorBody, BackupOverview, BackupRequest, DrillRequest, ErrorCode, Job, JobsStarted,
    PendingDeploy, PruneRequest, RestoreAnswer, RestoreRequest, SnapshotList, VerifyRequest,
};
use wharf_control::BackupCommand;

use crate::{ApiError, AppState, authorize, decode_body, decode_required_body, gone};

async fn start(
    state: &AppState,
    headers: &HeaderMap,
    command: BackupCommand,
) -> Result<Response, ApiError> {
    let started = crate::caller_handle(state, headers).backup(command).await?;
    Ok((StatusCode::ACCEPTED, Json(started)).into_response())
}

/// Every datastore's backups (health, last success, next time) and the recent jobs.
#[utoipa::path(get, path = "/v1/backups", tag = "backups", security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The datastores' backups and recent jobs", body = BackupOverview),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn overview(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let overview = state.handle.backup_overview().await.ok_or_else(gone)?;
    Ok(Json(overview).into_response())
}

/// Back up one datastore now, or every datastore with `backup:` (then retention applies).
#[utoipa::path(post, path = "/v1/backups", tag = "backups", security((), ("bearer" = [])),
    request_body(content = Option<BackupRequest>, description = "Which datastore (all when absent)"),
    responses(
        (status = 202, description = "The jobs started", body = JobsStarted),
        (status = 400, description = "The body does not decode, or the service has no `backup:`", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 409, description = "The datastore is busy with another job", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn backup(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let request: BackupRequest = decode_body(&body, "backup request")?;
    start(&state, &headers, BackupCommand::Backup(request)).await
}

/// Restore a datastore's latest backup (or the one named) into a sandbox and compare it with
/// what was recorded at backup time: row counts and content per table, RTO and RPO.
#[utoipa::path(post, path = "/v1/drills", tag = "backups", security((), ("bearer" = [])),
    request_body = DrillRequest,
    responses(
        (status = 202, description = "The drill started", body = JobsStarted),
        (status = 400, description = "The body does not decode, or the service has no `backup:`", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 409, description = "The datastore is busy with another job", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn drill(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let request: DrillRequest = decode_required_body(&body, "drill request")?;
    start(&state, &headers, BackupCommand::Drill(request)).await
}

/// Restore a backup into a sandbox (checked like a drill) or into the running datastore
/// (`in-place`, which needs `confirm: true`; its dependents are stopped around it).
#[utoipa::path(post, path = "/v1/restores", tag = "backups", security((), ("bearer" = [])),
    request_body = RestoreRequest,
    responses(
        (status = 202, description = "The restore started (in place: once its dependents stop)", body = JobsStarted),
        (status = 201, description = "A restore over live data where the environment requires approvals: a request that waits for them (`wharf approve`)", body = PendingDeploy),
        (status = 400, description = "The body does not decode, or the service has no `backup:`", body = ApiErrorBody),
        (status = 404, description = "Not a datastore with `backup:` (when approvals are required)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 409, description = "Not confirmed, or the datastore is busy", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn restore(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let request: RestoreRequest = decode_required_body(&body, "restore request")?;
    match crate::caller_handle(&state, &headers)
        .restore(request)
        .await?
    {
        RestoreAnswer::Started(jobs) => Ok((StatusCode::ACCEPTED, Json(jobs)).into_response()),
        RestoreAnswer::Pending(pending) => Ok((StatusCode::CREATED, Json(pending)).into_response()),
    }
}

/// Apply the manifest's retention now (or say what it would forget, `dry_run`).
#[utoipa::path(post, path = "/v1/backups/prune", tag = "backups", security((), ("bearer" = [])),
    request_body(content = Option<PruneRequest>, description = "Which datastore (all when absent), dry run"),
    responses(
        (status = 202, description = "The jobs started", body = JobsStarted),
        (status = 400, description = "The body does not decode, or the service has no `backup:`", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 409, description = "The datastore is busy with another job", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn prune(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let request: PruneRequest = decode_body(&body, "prune request")?;
    start(&state, &headers, BackupCommand::Prune(request)).await
}

/// Check the repository's structure (and every pack with `read_data`) and that the stored
/// password decrypts the newest backup.
#[utoipa::path(post, path = "/v1/backups/verify", tag = "backups", security((), ("bearer" = [])),
    request_body(content = Option<VerifyRequest>, description = "Whether to read every pack"),
    responses(
        (status = 202, description = "The verify job started", body = JobsStarted),
        (status = 400, description = "The body does not decode", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn verify(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let request: VerifyRequest = decode_body(&body, "verify request")?;
    start(&state, &headers, BackupCommand::Verify(request)).await
}

/// One job, running or finished.
#[utoipa::path(get, path = "/v1/backups/jobs/{id}", tag = "backups", security((), ("bearer" = [])),
    params(("id" = u64, Path, description = "The job", example = 1)),
    responses(
        (status = 200, description = "The job", body = Job),
        (status = 400, description = "The path does not decode", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 404, description = "No such job among the running and recent ones", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn job(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<UrlPath<u64>, PathRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let UrlPath(id) = id?;
    match state.handle.backup_job(id).await.ok_or_else(gone)? {
        Some(job) => Ok(Json(job).into_response()),
        None => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no job {id} among the running and recent ones"),
        )),
    }
}

/// The repository's snapshots of this stack, newest first.
#[utoipa::path(get, path = "/v1/backups/snapshots", tag = "backups", security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The snapshots", body = SnapshotList),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 409, description = "The repository's password is not available", body = ApiErrorBody),
        (status = 500, description = "The repository cannot be read", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn snapshots(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let list = state.handle.snapshots(None).await?;
    Ok(Json(list).into_response())
}
