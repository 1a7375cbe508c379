//! The controller's HTTP API. Every route but `/health` and `/health/ready` needs
//! `Authorization: Bearer TOKEN`: the break-glass `WHARF_API_TOKEN` (admin, named
//! `api-token` in the ledger), or a token made by `wharf token create` (read from the shared
//! state, so both replicas know the same tokens) — a viewer reads, an operator or admin also
//! deploys and steers. Errors are the API's one shape, `{"error": {"code", "message"}}`.
//!
//! Reads are served by whichever replica is asked, from the shared state and the cluster.
//! A write that reaches a standby is forwarded to the leader at the URL in its lease, with
//! the caller's token, and the leader's answer is returned as it is: either replica behind
//! one Service answers everything.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::json;
use wharf_api::{ErrorCode, Role as TokenRole};
use wharf_ledger::Ledger;
use wharf_rollout::Event;
use wharf_server::ApiError;

use super::{Controller, RequestError, Role, leader_url};

/// The header a standby adds when it forwards a write: a replica that gets one and does not
/// lead answers `no_leader` instead of forwarding again (leadership changed in between).
const FORWARDED: &str = "x-wharf-forwarded-by";

/// The largest request body the controller reads.
const MAX_BODY_BYTES: usize = 64 * 1024;

type Shared = State<Arc<Controller>>;

pub(super) fn routes(controller: Arc<Controller>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/health/ready", get(ready))
        .route("/v1/cluster/status", get(status))
        .route("/v1/cluster/rollouts", post(deploy))
        .route("/v1/cluster/rollouts/{service}", get(rollout))
        .route("/v1/cluster/rollouts/{service}/{command}", post(command))
        .route("/v1/audit/entries", get(entries))
        .route("/v1/audit/verify", get(verify))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such route") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(controller)
}

/// Who this replica is and who leads: public, for the liveness probe and for people.
async fn health(State(controller): Shared) -> Response {
    let (role, leader) = match controller.role() {
        Role::Starting => ("starting", None),
        Role::Standby { leader } => ("standby", leader),
        Role::TakingOver => ("taking-over", Some(controller.holder.clone())),
        Role::Leader => ("leader", Some(controller.holder.clone())),
        Role::Stopping => ("stopping", None),
    };
    Json(json!({
        "status": "ok",
        "role": role,
        "replica": controller.holder,
        "leader": leader,
        "namespace": controller.namespace(),
    }))
    .into_response()
}

/// Ready once the replica knows its role: a standby is ready too (it serves reads and
/// forwards writes).
async fn ready(State(controller): Shared) -> Response {
    match controller.role() {
        Role::Starting => ApiError::new(
            ErrorCode::Stopping,
            "the controller is connecting to its state",
        )
        .into_response(),
        Role::Stopping => {
            ApiError::new(ErrorCode::Stopping, "the controller is stopping").into_response()
        }
        _ => Json(json!({"status": "ready"})).into_response(),
    }
}

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Read,
    Change,
}

/// The caller's name for the ledger, once its token is checked for `need`.
async fn authorize(
    controller: &Arc<Controller>,
    headers: &HeaderMap,
    need: Need,
) -> Result<String, ApiError> {
    let unauthorized =
        || ApiError::new(ErrorCode::Unauthorized, "a valid bearer token is required");
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or_else(unauthorized)?
        .to_owned();
    if let Some(token) = &controller.api_token
        && wharf_ops::tokens::same_secret(&presented, token)
    {
        return Ok("api-token".to_owned());
    }
    if !presented.starts_with(wharf_ops::tokens::PREFIX) {
        return Err(unauthorized());
    }
    let reading = controller.clone();
    let rows = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        Ok(reading
            .read(|store| Ok(store.tokens()?))?
            .unwrap_or_default())
    })
    .await
    .map_err(|_| internal("the token check failed"))?
    .map_err(|error| internal_because("cannot read the tokens", &error))?;
    let holder = wharf_ops::tokens::authenticate(&rows, &presented, jiff::Timestamp::now())
        .map_err(|refusal| ApiError::new(ErrorCode::Unauthorized, refusal.to_string()))?;
    if need == Need::Change && !matches!(holder.role, TokenRole::Operator | TokenRole::Admin) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "`{}` has the {} role: deploying and steering rollouts needs operator or admin",
                holder.name,
                holder.role.as_str()
            ),
        ));
    }
    Ok(holder.name)
}

/// A failure that is not the caller's: the cause goes to the controller's log, the caller
/// gets what failed and where to look (database or cluster details stay out of answers).
fn internal(what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::Internal,
        format!("{what}; the controller's log says why"),
    )
}

/// [`internal`], logging `error` first.
fn internal_because(what: &str, error: &anyhow::Error) -> ApiError {
    tracing::error!(error = %format!("{error:#}"), "{what}");
    eprintln!("error: {what}: {error:#}");
    internal(what)
}

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> Self {
        let code = match &error {
            RequestError::UnknownService(_) => ErrorCode::UnknownService,
            RequestError::NoRollout(_) => ErrorCode::NoRollout,
            RequestError::Rejected(_) => ErrorCode::Rejected,
            RequestError::NotLeader { .. } => ErrorCode::NoLeader,
            RequestError::Internal(cause) => {
                return internal_because("the request could not be carried out", cause);
            }
        };
        ApiError::new(code, error.to_string())
    }
}

/// The services on the cluster, as `wharf cluster status --output json` prints them.
async fn status(State(controller): Shared, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&controller, &headers, Need::Read).await?;
    let reading = controller.clone();
    let saved = tokio::task::spawn_blocking(move || {
        let saved = reading.read(|store| {
            super::super::cluster::saved_rollouts(
                Some(store),
                reading.namespace(),
                reading.stack.services.keys(),
            )
        })?;
        anyhow::Ok(saved.unwrap_or_default())
    })
    .await
    .map_err(|_| internal("the status read failed"))?
    .map_err(|error| internal_because("cannot read the saved rollouts", &error))?;
    let view = super::super::cluster::status_view(&controller.cluster, &controller.stack, &saved)
        .await
        .map_err(|error| internal_because("cannot read the cluster", &error))?;
    Ok(Json(view).into_response())
}

/// The latest rollout of a service, from the saved state.
async fn rollout(
    State(controller): Shared,
    headers: HeaderMap,
    path: Result<UrlPath<String>, PathRejection>,
) -> Result<Response, ApiError> {
    authorize(&controller, &headers, Need::Read).await?;
    let UrlPath(service) = path?;
    if !controller.stack.services.contains_key(&service) {
        return Err(RequestError::UnknownService(service).into());
    }
    let reading = controller.clone();
    let name = service.clone();
    let saved = tokio::task::spawn_blocking(move || reading.saved(&name))
        .await
        .map_err(|_| internal("the rollout read failed"))?
        .map_err(|error| internal_because("cannot read the saved rollout", &error))?;
    match saved {
        Some((id, rollout)) => {
            Ok(Json(super::super::cluster::rollout_view(id, &rollout)).into_response())
        }
        None => Err(ApiError::new(
            ErrorCode::NoRollout,
            format!("`{service}` was never rolled out on the cluster"),
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployBody {
    service: String,
    version: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandBody {
    #[serde(default)]
    reason: Option<String>,
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|error| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("invalid {what} request: {error}"),
        )
    })?;
    if !value.is_object() {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("invalid {what} request: the body must be a JSON object"),
        ));
    }
    serde_json::from_value(value).map_err(|error| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("invalid {what} request: {error}"),
        )
    })
}

/// Starts a rollout: `{"service", "version"}` → 202 with its id (200 when the leader already
/// runs that very rollout).
async fn deploy(
    State(controller): Shared,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = authorize(&controller, &headers, Need::Change).await?;
    if let Some(forwarded) =
        forward_if_standby(&controller, &headers, "/v1/cluster/rollouts", &body).await
    {
        return forwarded;
    }
    let request: DeployBody = decode(&body, "deploy")?;
    if let Err(message) = check_version(&request.version) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("invalid deploy request: version: {message}"),
        ));
    }
    let (id, started) = controller
        .deploy(&request.service, &request.version, wharf_ops::Actor(caller))
        .await?;
    let status = if started {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({
            "service": request.service,
            "version": request.version,
            "rollout": id,
            "started": started,
        })),
    )
        .into_response())
}

/// The commands were checked above; a name that got here anyway is still refused.
fn unreachable_command(command: &str) -> Result<Event, ApiError> {
    Err(ApiError::new(
        ErrorCode::NotFound,
        format!("no command `{command}`: pause, resume, promote or abort"),
    ))
}

/// A version is an image tag: a letter, digit or `_`, then up to 127 of those, `.` and `-`.
fn check_version(version: &str) -> Result<(), String> {
    let mut chars = version.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && version.len() <= 128 {
        Ok(())
    } else {
        Err(format!(
            "`{version}` is not an image tag (a letter, digit or `_`, then up to 127 of those, `.` and `-`)"
        ))
    }
}

/// `pause`, `resume`, `promote` or `abort` (with an optional `{"reason"}`) to a running
/// rollout.
async fn command(
    State(controller): Shared,
    headers: HeaderMap,
    path: Result<UrlPath<(String, String)>, PathRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = authorize(&controller, &headers, Need::Change).await?;
    let UrlPath((service, command)) = path?;
    // Both checked before anything is forwarded: the path sent on is rebuilt from them.
    if !controller.stack.services.contains_key(&service) {
        return Err(RequestError::UnknownService(service).into());
    }
    if !matches!(command.as_str(), "pause" | "resume" | "promote" | "abort") {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no command `{command}`: pause, resume, promote or abort"),
        ));
    }
    let path = format!("/v1/cluster/rollouts/{service}/{command}");
    if let Some(forwarded) = forward_if_standby(&controller, &headers, &path, &body).await {
        return forwarded;
    }
    let request: CommandBody = if body.iter().all(u8::is_ascii_whitespace) {
        CommandBody::default()
    } else {
        decode(&body, "command")?
    };
    let event = match command.as_str() {
        "pause" => Event::Pause,
        "resume" => Event::Resume,
        "promote" => Event::Promote,
        "abort" => Event::Abort {
            reason: request
                .reason
                .unwrap_or_else(|| format!("aborted by {caller}")),
        },
        _ => unreachable_command(&command)?,
    };
    controller.command(&service, event).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"service": service, "command": command, "sent": true})),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    #[serde(default)]
    before: Option<u64>,
    #[serde(default)]
    limit: Option<u32>,
}

/// A page of the ledger, newest first (as the control plane's `GET /v1/audit/entries`).
async fn entries(
    State(controller): Shared,
    headers: HeaderMap,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&controller, &headers, Need::Read).await?;
    let Query(query) = query.map_err(|rejection| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("invalid query: {}", rejection.body_text()),
        )
    })?;
    let limit = wharf_server::audit_routes::page_limit(query.limit)?;
    let reading = controller.clone();
    let page = tokio::task::spawn_blocking(move || {
        reading
            .read(|store| {
                Ok(wharf_server::audit_routes::page(
                    &Ledger::new(store),
                    query.before,
                    limit,
                ))
            })
            .map_err(|error| internal_because("cannot read the state", &error))?
            .ok_or_else(|| internal("there is no state yet"))?
    })
    .await
    .map_err(|_| internal("the ledger read failed"))??;
    Ok(Json(page).into_response())
}

/// The whole ledger verified (as the control plane's `GET /v1/audit/verify`).
async fn verify(State(controller): Shared, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&controller, &headers, Need::Read).await?;
    let reading = controller.clone();
    let answer = tokio::task::spawn_blocking(move || {
        reading
            .read(|store| {
                Ok(wharf_server::audit_routes::verification(
                    &Ledger::new(store),
                    &reading.state_dir,
                ))
            })
            .map_err(|error| internal_because("cannot read the state", &error))?
            .ok_or_else(|| internal("there is no state yet"))?
    })
    .await
    .map_err(|_| internal("the ledger verification failed"))??;
    Ok(Json(answer).into_response())
}

/// On a standby: the write sent on to the leader, its answer returned as it is. `None` on
/// the leader (the caller handles the request).
async fn forward_if_standby(
    controller: &Arc<Controller>,
    headers: &HeaderMap,
    path: &str,
    body: &Bytes,
) -> Option<Result<Response, ApiError>> {
    let leader = match controller.role() {
        Role::Leader => return None,
        // Answered by the controller's own refusal (`no_leader`), never forwarded.
        Role::TakingOver | Role::Stopping => return None,
        Role::Starting => None,
        Role::Standby { leader } => leader,
    };
    let no_leader = |why: String| Some(Err(ApiError::new(ErrorCode::NoLeader, why)));
    if headers.contains_key(FORWARDED) {
        return no_leader(
            "the request was forwarded to a replica that no longer leads; retry".to_owned(),
        );
    }
    let Some(url) = leader.as_deref().and_then(leader_url) else {
        return no_leader(format!(
            "no leader to take the request yet ({}); retry",
            leader.as_deref().unwrap_or("none elected")
        ));
    };
    let uri = format!("{url}{path}");
    let mut request = hyper::Request::post(&uri);
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE] {
        if let Some(value) = headers.get(&name) {
            request = request.header(name, value.clone());
        }
    }
    if let Ok(value) = HeaderValue::from_str(&controller.holder) {
        request = request.header(FORWARDED, value);
    }
    let Ok(request) = request.body(http_body_util::Full::new(body.clone())) else {
        return no_leader(format!("the leader's URL `{url}` is not usable"));
    };
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let answer = tokio::time::timeout(Duration::from_secs(30), async {
        let response = client.request(request).await?;
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await?.to_bytes();
        anyhow::Ok((parts, bytes))
    })
    .await;
    match answer {
        Ok(Ok((parts, bytes))) => {
            let mut response = (parts.status, bytes).into_response();
            if let Some(content_type) = parts.headers.get(header::CONTENT_TYPE) {
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, content_type.clone());
            }
            Some(Ok(response))
        }
        Ok(Err(error)) => no_leader(format!(
            "the leader at {url} did not answer: {error}; retry"
        )),
        Err(_) => no_leader(format!(
            "the leader at {url} did not answer within 30 s; retry"
        )),
    }
}
