//! The progressive-delivery routes: start a deploy or a rollback, read a service's rollout,
//! and pause / resume / promote / abort it. The wire types are `wharf-api`'s (`DeployRequest`,
//! `RolloutView`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use wharf_api::{
    ApiErrorBody, DecideDeployRequest, DeployAnswer, DeployRequest, ErrorCode, PendingDeploy,
    PendingDeployList, RolloutCommand, RolloutView,
};

use crate::state_routes::actor;
use crate::{ApiError, AppState, authorize, decode_required_body, gone};

/// The commands `POST /v1/services/{name}/rollout/{command}` accepts, in the order shown.
const COMMANDS: [RolloutCommand; 4] = [
    RolloutCommand::Pause,
    RolloutCommand::Resume,
    RolloutCommand::Promote,
    RolloutCommand::Abort,
];

fn bad_request(message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message)
}

/// Decodes a deploy request; serde's message names the offending field (an unknown one, a
/// missing `version`, a `command` that is not a list of strings).
pub(crate) fn parse_deploy_request(body: &[u8]) -> Result<DeployRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad_request(
            "a deploy needs a JSON body: {\"version\": …, \"command\": […], \"strategy\": …}"
                .to_owned(),
        ));
    }
    serde_json::from_slice(body)
        .map_err(|err| bad_request(format!("invalid deploy request: {err}")))
}

/// `pause`, `resume`, `promote` or `abort`; anything else is refused naming the four.
pub(crate) fn parse_command(name: &str) -> Result<RolloutCommand, ApiError> {
    COMMANDS
        .into_iter()
        .find(|command| command.name() == name)
        .ok_or_else(|| {
            let allowed: Vec<&str> = COMMANDS.iter().map(|c| c.name()).collect();
            bad_request(format!(
                "unknown rollout command `{name}`; expected one of: {}",
                allowed.join(", ")
            ))
        })
}

/// Start a rollout of a new version of a service.
#[utoipa::path(post, path = "/v1/services/{name}/deploy", tag = "rollouts", security((), ("bearer" = [])),
    params(("name" = String, Path, description = "The service", example = "api")),
    request_body = DeployRequest,
    responses(
        (status = 202, description = "The rollout has begun", body = RolloutView),
        (status = 201, description = "The environment requires approvals: a deploy request waits for them (`wharf approve`)", body = PendingDeploy),
        (status = 400, description = "The body or path does not decode", body = ApiErrorBody),
        (status = 401, description = "Missing, wrong, revoked or expired bearer token", body = ApiErrorBody),
        (status = 403, description = "The caller's role does not allow deploys", body = ApiErrorBody),
        (status = 404, description = "No such service", body = ApiErrorBody),
        (status = 409, description = "Refused (a gate without a passing verdict for the version, an old backup, a rollout under way, the same version, no proxied port, …), with every reason", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn deploy(
    State(state): State<AppState>,
    headers: HeaderMap,
    name: Result<UrlPath<String>, PathRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let UrlPath(name) = name?;
    let request = parse_deploy_request(&body)?;
    let actor = actor(&state, &headers).0;
    match state.handle.deploy(name, request, actor).await? {
        DeployAnswer::Started(view) => Ok((StatusCode::ACCEPTED, Json(view)).into_response()),
        DeployAnswer::Pending(pending) => Ok((StatusCode::CREATED, Json(pending)).into_response()),
    }
}

/// Changes waiting for approval (deploys, live restores) first, then the last 100 closed ones.
#[utoipa::path(get, path = "/v1/approvals", tag = "approvals", security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The requests waiting for approval, then recent ones", body = PendingDeployList),
        (status = 401, description = "Missing, wrong, revoked or expired bearer token", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn list_requests(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let list = state.handle.deploy_requests().await.ok_or_else(gone)?;
    Ok(Json(list).into_response())
}

/// One request for approval.
#[utoipa::path(get, path = "/v1/approvals/{id}", tag = "approvals", security((), ("bearer" = [])),
    params(("id" = String, Path, description = "The request (`r-3` or `3`)", example = "r-1")),
    responses(
        (status = 200, description = "The request", body = PendingDeploy),
        (status = 401, description = "Missing, wrong, revoked or expired bearer token", body = ApiErrorBody),
        (status = 404, description = "No such request among the open and recent ones", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn request(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<UrlPath<String>, PathRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let UrlPath(id) = id?;
    let wanted = wharf_api::approvals::request_number(&id);
    let list = state.handle.deploy_requests().await.ok_or_else(gone)?;
    let found = list
        .deploys
        .into_iter()
        .find(|r| wanted.is_some() && wharf_api::approvals::request_number(&r.id) == wanted)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no deploy request `{id}`")))?;
    Ok(Json(found).into_response())
}

/// Approve a request (four-eyes: never the requester's own, never twice by one person); the
/// last approval it needs starts the deploy or restore, checked again first.
#[utoipa::path(post, path = "/v1/approvals/{id}/approve", tag = "approvals", security((), ("bearer" = [])),
    params(("id" = String, Path, description = "The request (`r-3` or `3`)", example = "r-1")),
    request_body = DecideDeployRequest,
    responses(
        (status = 200, description = "Approved: still pending, started, or failed to start (its `reason` says why)", body = PendingDeploy),
        (status = 400, description = "No reason, or the body does not decode", body = ApiErrorBody),
        (status = 401, description = "Missing, wrong, revoked or expired bearer token", body = ApiErrorBody),
        (status = 403, description = "The caller is not an approver", body = ApiErrorBody),
        (status = 404, description = "No such request", body = ApiErrorBody),
        (status = 409, description = "The requester's own approval, a second one by the same person, or a closed request", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn approve(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Option<axum::Extension<wharf_api::Caller>>,
    id: Result<UrlPath<String>, PathRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    decide(state, headers, caller, id, body, true).await
}

/// Reject a request (an approver), or withdraw it (its requester): it will not start.
#[utoipa::path(post, path = "/v1/approvals/{id}/reject", tag = "approvals", security((), ("bearer" = [])),
    params(("id" = String, Path, description = "The request (`r-3` or `3`)", example = "r-1")),
    request_body = DecideDeployRequest,
    responses(
        (status = 200, description = "Rejected", body = PendingDeploy),
        (status = 400, description = "No reason, or the body does not decode", body = ApiErrorBody),
        (status = 401, description = "Missing, wrong, revoked or expired bearer token", body = ApiErrorBody),
        (status = 403, description = "Neither an approver nor the requester withdrawing it", body = ApiErrorBody),
        (status = 404, description = "No such request", body = ApiErrorBody),
        (status = 409, description = "A closed or expired request", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn reject(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Option<axum::Extension<wharf_api::Caller>>,
    id: Result<UrlPath<String>, PathRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    decide(state, headers, caller, id, body, false).await
}

async fn decide(
    state: AppState,
    headers: HeaderMap,
    caller: Option<axum::Extension<wharf_api::Caller>>,
    id: Result<UrlPath<String>, PathRejection>,
    body: Bytes,
    approve: bool,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let UrlPath(id) = id?;
    let request: DecideDeployRequest = decode_required_body(&body, "approval")?;
    let caller = crate::identity::established(caller)?;
    let answer = state
        .handle
        .decide_deploy(id, approve, caller, request.reason)
        .await?;
    Ok(Json(answer).into_response())
}

/// The service's current or latest rollout.
#[utoipa::path(get, path = "/v1/services/{name}/rollout", tag = "rollouts", security((), ("bearer" = [])),
    params(("name" = String, Path, description = "The service", example = "api")),
    responses(
        (status = 200, description = "The rollout", body = RolloutView),
        (status = 400, description = "The path does not decode", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 404, description = "No such service (`unknown_service`), or never deployed (`no_rollout`)", body = ApiErrorBody),
        (status = 409, description = "Refused", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn rollout(
    State(state): State<AppState>,
    headers: HeaderMap,
    name: Result<UrlPath<String>, PathRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let UrlPath(name) = name?;
    match state.handle.rollout(name.clone()).await? {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(ApiError::new(
            ErrorCode::NoRollout,
            format!("service `{name}` has never been deployed"),
        )),
    }
}

/// Pause, resume, promote or abort the rollout under way.
#[utoipa::path(post, path = "/v1/services/{name}/rollout/{command}", tag = "rollouts", security((), ("bearer" = [])),
    params(
        ("name" = String, Path, description = "The service", example = "api"),
        ("command" = RolloutCommand, Path, description = "`pause`, `resume`, `promote` or `abort`"),
    ),
    responses(
        (status = 200, description = "The rollout after the command", body = RolloutView),
        (status = 400, description = "Not one of the four commands, or the path does not decode", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 404, description = "No such service", body = ApiErrorBody),
        (status = 409, description = "No rollout of the service is under way", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn rollout_command(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<UrlPath<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let UrlPath((name, command)) = path?;
    let command = parse_command(&command)?;
    let view = crate::caller_handle(&state, &headers)
        .rollout_command(name, command)
        .await?;
    Ok(Json(view).into_response())
}

/// Abort the rollout under way, or roll the previous version out again.
#[utoipa::path(post, path = "/v1/services/{name}/rollback", tag = "rollouts", security((), ("bearer" = [])),
    params(("name" = String, Path, description = "The service", example = "api")),
    responses(
        (status = 202, description = "The rollback has begun", body = RolloutView),
        (status = 400, description = "The path does not decode", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 404, description = "No such service", body = ApiErrorBody),
        (status = 409, description = "No previous version to roll back to", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn rollback(
    State(state): State<AppState>,
    headers: HeaderMap,
    name: Result<UrlPath<String>, PathRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let UrlPath(name) = name?;
    let view = crate::caller_handle(&state, &headers)
        .rollback(name)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_request_with_every_field() {
        let request = parse_deploy_request(
            br#"{"version":"v2","command":["./api","--fast"],"strategy":"canary"}"#,
        )
        .unwrap();
        assert_eq!(request.version, "v2");
        assert_eq!(request.command.unwrap(), ["./api", "--fast"]);
        assert_eq!(request.strategy.as_deref(), Some("canary"));
    }

    #[test]
    fn malformed_deploy_requests_name_the_field() {
        let cases: [(&[u8], &str); 4] = [
            (br#"{"version":"v2","strategey":"canary"}"#, "`strategey`"),
            (br#"{"command":["x"]}"#, "`version`"),
            (
                br#"{"version":"v2","command":"./api --fast"}"#,
                "invalid type",
            ),
            (b"", "needs a JSON body"),
        ];
        for (body, expected) in cases {
            let err = parse_deploy_request(body).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST);
            assert!(err.message().contains(expected), "{}", err.message());
        }
    }

    #[test]
    fn rollout_commands() {
        assert_eq!(parse_command("promote").unwrap(), RolloutCommand::Promote);
        let err = parse_command("restart").unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(
            err.message().contains("pause, resume, promote, abort"),
            "{}",
            err.message()
        );
    }
}
