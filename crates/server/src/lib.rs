//! The control plane's HTTP API, served on a unix socket in the state directory (mode 0600:
//! only the owner may drive the stack) and optionally on TCP behind a bearer token.
//!
//! `app(handle)` builds the router, so tests can call it directly; errors become a JSON body
//! `{"error": {"code", "message"}}` (`wharf_api::ApiErrorBody`) with a stable code and a message
//! safe to show — malformed bodies and paths too, and unknown routes. The wire types are
//! `wharf-api`'s; the OpenAPI 3.1 document describing every route is `GET /v1/openapi.json`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::json;
use wharf_api::{
    ApiErrorBody, ControlError, DownAnswer, DownRequest, ErrorCode, ReloadAnswer, ReloadRequest,
    RestartAnswer, SetSecretRequest, StatusReport,
};
use wharf_control::Handle;

pub mod audit_routes;
mod backups;
pub mod dashboard;
mod deploy;
mod health;
mod identity;
mod identity_routes;
pub mod metrics;
mod oncall;
mod openapi;
mod runbooks;
mod state_routes;
pub mod status_page;
mod tcp;
pub mod tls;

pub use dashboard::Sessions;
pub use identity::{Access, PeerCredentials, TokenBook};
pub use tcp::ApiLimits;

pub use openapi::{ROUTES, openapi};

/// One API error: a stable code for programs (which also picks the HTTP status), a message for
/// people.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status of this error's code.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        (status, Json(ApiErrorBody::new(self.code, self.message))).into_response()
    }
}

/// The control plane's refusals keep their code: the status follows from it, never from the
/// message's words.
impl From<ControlError> for ApiError {
    fn from(error: ControlError) -> Self {
        ApiError::new(error.code, error.message)
    }
}

/// A path parameter that does not decode (invalid percent-encoding, not UTF-8) is the
/// client's mistake, answered in the API's error shape rather than axum's plain text.
impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("invalid path: {}", rejection.body_text()),
        )
    }
}

pub(crate) fn gone() -> ApiError {
    ApiError::new(ErrorCode::Stopping, "the control plane is stopping")
}

/// Decodes a JSON request body, which must be an object; an empty (or blank) body, or JSON
/// `null` (what the document allows for an optional body), is `T::default()`. serde's message
/// names the offending field.
pub(crate) fn decode_body<T: DeserializeOwned + Default>(
    body: &[u8],
    what: &str,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null" {
        return Ok(T::default());
    }
    decode_required_body(body, what)
}

/// Decodes a JSON request body that must be there, as an object (its type has required
/// fields). serde's message names the offending field.
pub(crate) fn decode_required_body<T: DeserializeOwned>(
    body: &[u8],
    what: &str,
) -> Result<T, ApiError> {
    let value = decode_object(body, what)?;
    serde_json::from_value(value).map_err(|err| invalid_request(what, &err))
}

/// Decodes `PUT /v1/secrets/{name}`'s body. serde's message quotes what it refuses (`invalid
/// type: integer `12345``), which here is the secret the client meant to set: it would land in
/// the answer and in any proxy's or access log. So `value`'s type is checked first, by a
/// message that names the field and the type only; once `value` is a string no message of
/// serde's can hold it (a string is all it accepts).
pub(crate) fn decode_secret_request(body: &[u8]) -> Result<SetSecretRequest, ApiError> {
    const WHAT: &str = "secret";
    let value = decode_object(body, WHAT)?;
    if value.get("value").is_some_and(|v| !v.is_string()) {
        return Err(invalid_request(WHAT, &"the field `value` must be a string"));
    }
    serde_json::from_value(value).map_err(|err| invalid_request(WHAT, &err))
}

/// A body that must be there, parsed as a JSON object. serde_json's syntax errors give a
/// line and column, never the text.
fn decode_object(body: &[u8], what: &str) -> Result<serde_json::Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid_request(what, &"a JSON object body is required"));
    }
    // serde accepts a struct as a JSON array too; the API takes objects only.
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|err| invalid_request(what, &err))?;
    if !value.is_object() {
        return Err(invalid_request(what, &"the body must be a JSON object"));
    }
    Ok(value)
}

fn invalid_request(what: &str, err: &dyn std::fmt::Display) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidRequest,
        format!("invalid {what} request: {err}"),
    )
}

#[derive(Clone)]
pub(crate) struct AppState {
    handle: Handle,
    /// Which listener, and the identities it accepts (`identity.rs`).
    access: Access,
    /// The ledger routes' read-only connection (`audit_routes.rs`).
    ledger_reader: audit_routes::LedgerReader,
}

/// The API's routes over a control plane handle. [`ROUTES`] lists them for the OpenAPI
/// document's test.
pub fn app(handle: Handle, access: Access) -> Router {
    let state = AppState {
        handle,
        access,
        ledger_reader: Default::default(),
    };
    let dashboard = if state.access.sessions().is_some() {
        dashboard::routes()
    } else {
        Router::new()
    };
    Router::new()
        .merge(dashboard)
        .route("/health", get(health_live))
        .route("/health/ready", get(health_ready))
        .route("/health/detailed", get(health_detailed))
        .route("/v1/openapi.json", get(openapi_json))
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics::metrics_route))
        .route("/v1/services/{name}/restart", post(restart))
        .route(
            "/v1/services/{name}/health-history",
            get(audit_routes::health_history),
        )
        .route("/v1/down", post(down))
        .route("/v1/reload", post(reload))
        .route("/v1/services/{name}/deploy", post(deploy::deploy))
        .route("/v1/services/{name}/rollout", get(deploy::rollout))
        .route(
            "/v1/services/{name}/rollout/{command}",
            post(deploy::rollout_command),
        )
        .route("/v1/services/{name}/rollback", post(deploy::rollback))
        .route("/v1/approvals", get(deploy::list_requests))
        .route("/v1/approvals/{id}", get(deploy::request))
        .route("/v1/approvals/{id}/approve", post(deploy::approve))
        .route("/v1/approvals/{id}/reject", post(deploy::reject))
        .route("/v1/secrets", get(state_routes::list_secrets))
        .route(
            "/v1/secrets/{name}",
            get(state_routes::secret_history).put(state_routes::set_secret),
        )
        .route(
            "/v1/secrets/{name}/rollback",
            post(state_routes::rollback_secret),
        )
        .route(
            "/v1/secrets/{name}/rotations",
            post(state_routes::begin_rotation),
        )
        .route(
            "/v1/secrets/{name}/rotations/{version}",
            post(state_routes::finish_rotation),
        )
        .route(
            "/v1/secrets/{name}/reveals",
            post(state_routes::record_reveal),
        )
        .route(
            "/v1/config/{service}",
            get(state_routes::get_config).put(state_routes::change_config),
        )
        .route("/v1/config-rollback", post(state_routes::rollback_config))
        .route("/v1/audit/notes", post(state_routes::add_note))
        .route("/v1/audit/verifier", get(state_routes::audit_verifier))
        .route("/v1/audit/entries", get(audit_routes::entries))
        .route("/v1/audit/entries/{seq}/proof", get(audit_routes::proof))
        .route("/v1/audit/verify", get(audit_routes::verify))
        .route(
            "/v1/audit/checkpoints",
            post(state_routes::audit_checkpoint),
        )
        .route("/v1/preflight", post(state_routes::record_preflight))
        .route("/v1/gates/checks", post(state_routes::record_gate_check))
        .route("/v1/promotions", post(state_routes::import_promotion))
        .route("/v1/backups", get(backups::overview).post(backups::backup))
        .route("/v1/backups/jobs/{id}", get(backups::job))
        .route("/v1/backups/snapshots", get(backups::snapshots))
        .route("/v1/backups/prune", post(backups::prune))
        .route("/v1/backups/verify", post(backups::verify))
        .route("/v1/drills", post(backups::drill))
        .route("/v1/restores", post(backups::restore))
        .route(
            "/v1/silences",
            get(oncall::list_silences).post(oncall::create_silence),
        )
        .route("/v1/silences/{id}/expire", post(oncall::expire_silence))
        .route(
            "/v1/incidents",
            get(oncall::list_incidents).post(oncall::declare_incident),
        )
        .route("/v1/incidents/{id}", get(oncall::incident))
        .route("/v1/incidents/{id}/timeline", get(oncall::timeline))
        .route("/v1/incidents/{id}/postmortem", get(oncall::postmortem))
        .route("/v1/incidents/{id}/updates", post(oncall::update))
        .route("/v1/incidents/{id}/ack", post(oncall::ack))
        .route("/v1/incidents/{id}/roles", post(oncall::assign))
        .route("/v1/incidents/{id}/resolve", post(oncall::resolve))
        .route("/v1/runbooks", get(runbooks::list))
        .route("/v1/runbooks/{name}/runs", post(runbooks::start))
        .route("/v1/runbooks/runs", get(runbooks::runs))
        .route("/v1/runbooks/runs/{id}", get(runbooks::run))
        .route("/v1/runbooks/runs/{id}/resume", post(runbooks::resume))
        .route("/v1/runbooks/runs/{id}/approve", post(runbooks::approve))
        .route("/v1/runbooks/runs/{id}/cancel", post(runbooks::cancel))
        .route("/v1/whoami", get(identity_routes::whoami))
        .route(
            "/v1/tokens",
            get(identity_routes::list_tokens).post(identity_routes::create_token),
        )
        .route(
            "/v1/tokens/{name}/revoke",
            post(identity_routes::revoke_token),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Outermost first: errors from any layer get the JSON shape, and the token is checked
        // before a handler's extractors read the body.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            identify_first,
        ))
        .layer(middleware::from_fn(json_errors))
        .with_state(state)
}

/// The largest request body the API reads (2 MiB, axum's default made explicit): a larger
/// one is answered 413 in the API's error shape.
pub const MAX_BODY_BYTES: usize = 2 << 20;

/// Every route but the public ones (`/health`, `/v1/openapi.json`) establishes its caller and
/// checks the caller's role before anything of the request is read: an unauthenticated or
/// unauthorised client learns nothing from the parser (before, `POST /v1/down` with bad JSON
/// got 422 with the parser's detail ahead of the 401) and cannot make the server buffer its body.
async fn identify_first(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    identity::gate(&state.access, &state.handle, request, next).await
}

/// Answers axum's own refusals (a body over the limit, a rejected extractor) in the API's
/// error shape `{"error": {"code", "message"}}`, keeping their status: every 4xx and 5xx is
/// JSON, whichever layer made it.
async fn json_errors(request: axum::extract::Request, next: Next) -> Response {
    // A refusal may leave the request's body unread (the token is checked first, an unknown
    // route reads nothing), and hyper then closes the connection after the answer: saying so
    // (`Connection: close`, HTTP/1 only) keeps a client from sending its next request on it.
    let headers = request.headers();
    let has_body = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .is_some_and(|v| v != "0")
        || headers.contains_key(axum::http::header::TRANSFER_ENCODING);
    let may_leave_body = request.version() < axum::http::Version::HTTP_2 && has_body;
    let mut response = json_error_shape(request, next).await;
    let status = response.status();
    if may_leave_body && (status.is_client_error() || status.is_server_error()) {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

async fn json_error_shape(request: axum::extract::Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.starts_with("application/json") || v.starts_with("application/health+json")
        });
    // The dashboard's pages answer their refusals as pages (the login form with why).
    let page = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if json || page {
        return response;
    }
    let code = match status.as_u16() {
        401 => ErrorCode::Unauthorized,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        413 => ErrorCode::PayloadTooLarge,
        500.. => ErrorCode::Internal,
        _ => ErrorCode::InvalidRequest,
    };
    // axum's rejection texts name the problem, never the body's content ("length limit
    // exceeded"); a server error's text is not passed on.
    let message = if code == ErrorCode::Internal {
        "internal error".to_owned()
    } else {
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body).trim().to_owned();
        if text.is_empty() {
            status
                .canonical_reason()
                .unwrap_or("refused")
                .to_lowercase()
        } else {
            text
        }
    };
    (status, Json(ApiErrorBody::new(code, message))).into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not take that method",
    )
}

/// The control plane's handle, asking as the caller the identity layer established: what the
/// control plane records while handling the request names them.
pub(crate) fn caller_handle(state: &AppState, headers: &HeaderMap) -> Handle {
    state
        .handle
        .as_caller(&state_routes::actor(state, headers).0)
}

/// A handler's own check that the identity layer established its caller (it always does on
/// a non-public route; this keeps a route mounted without the layer from serving anyone).
pub(crate) fn authorize(_state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if headers.contains_key(identity::CALLER_HEADER) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Unauthorized,
            "a valid bearer token is required",
        ))
    }
}

/// The OpenAPI document. Public on both listeners: it describes the API's shape, nothing of
/// the stack.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)))]
async fn openapi_json() -> Response {
    Json(openapi()).into_response()
}

/// The process runs (no authentication: a liveness check).
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "The control plane runs", body = Object, content_type = "application/health+json")))]
async fn health_live() -> Response {
    health::respond(StatusCode::OK, json!({"status": "pass"}))
}

/// Whether the stack serves; when not, one failure per root cause.
#[utoipa::path(get, path = "/health/ready", tag = "health", security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The stack serves", body = Object, content_type = "application/health+json"),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 503, description = "Not ready: the root causes, or the control plane is stopping", content((Object = "application/health+json"), (ApiErrorBody = "application/json"))),
    ))]
async fn health_ready(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let report = state.handle.status().await.ok_or_else(gone)?;
    Ok(health::ready(&report))
}

/// Every service, instance and dependency with status, latency and last error.
#[utoipa::path(get, path = "/health/detailed", tag = "health", security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The stack passes or warns", body = Object, content_type = "application/health+json"),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 503, description = "The stack fails, or the control plane is stopping", content((Object = "application/health+json"), (ApiErrorBody = "application/json"))),
    ))]
async fn health_detailed(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let report = state.handle.status().await.ok_or_else(gone)?;
    Ok(health::detailed(&report))
}

/// The stack's status: every service with its state, health, instances and dependencies.
#[utoipa::path(get, path = "/v1/status", tag = "stack", security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The status report", body = StatusReport),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
async fn status(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let report = state.handle.status().await.ok_or_else(gone)?;
    Ok(Json(report).into_response())
}

/// Rolling restart of one service.
#[utoipa::path(post, path = "/v1/services/{name}/restart", tag = "services", security((), ("bearer" = [])),
    params(("name" = String, Path, description = "The service", example = "api")),
    responses(
        (status = 202, description = "The restart has begun", body = RestartAnswer),
        (status = 400, description = "The path does not decode", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 404, description = "No such service", body = ApiErrorBody),
        (status = 409, description = "Refused: external, or a rollout is under way", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
async fn restart(
    State(state): State<AppState>,
    headers: HeaderMap,
    name: Result<UrlPath<String>, PathRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let UrlPath(name) = name?;
    caller_handle(&state, &headers)
        .restart(name.clone())
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RestartAnswer { restarting: name }),
    )
        .into_response())
}

/// Stop one service, or the whole stack (the control plane then exits).
#[utoipa::path(post, path = "/v1/down", tag = "stack", security((), ("bearer" = [])),
    request_body(content = Option<DownRequest>, description = "Absent or without `service`: the whole stack"),
    responses(
        (status = 200, description = "Stopped", body = DownAnswer),
        (status = 400, description = "The body does not decode", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 404, description = "No such service", body = ApiErrorBody),
        (status = 409, description = "Refused", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
async fn down(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let request: DownRequest = decode_body(&body, "down")?;
    let service = request.service;
    caller_handle(&state, &headers)
        .down(service.clone())
        .await?;
    let stopped = service.unwrap_or_else(|| "stack".to_owned());
    Ok(Json(DownAnswer { stopped }).into_response())
}

/// Secrets or config overrides changed (the CLI wrote them to the store): the control plane
/// restarts (rolling) or signals the instances whose identity moved; with `manifest: true` it
/// also re-reads the manifest.
#[utoipa::path(post, path = "/v1/reload", tag = "stack", security((), ("bearer" = [])),
    request_body(content = Option<ReloadRequest>, description = "Absent: secrets and config overrides only"),
    responses(
        (status = 200, description = "What was applied", body = ReloadAnswer),
        (status = 400, description = "The body does not decode", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 409, description = "Refused (another environment, a manifest that does not load)", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
async fn reload(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let request: ReloadRequest = decode_body(&body, "reload")?;
    let applied = caller_handle(&state, &headers).reload(request).await?;
    Ok(Json(applied).into_response())
}

/// Serves the API on a unix socket at `path` (replacing a stale socket file) until
/// `shutdown` resolves.
pub async fn serve_unix(
    path: &Path,
    handle: Handle,
    tokens: TokenBook,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    axum::serve(
        listener,
        app(handle, Access::socket(tokens))
            .into_make_service_with_connect_info::<identity::PeerCredentials>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Serves the API on TCP over TLS with `tls`'s certificate, every request but `/health` and
/// `/v1/openapi.json` needing `Authorization: Bearer <token>`, within `limits` (connections
/// per client and in total, handshake and request-head deadlines: `tcp.rs`), until `shutdown`
/// resolves (connections in progress finish).
pub async fn serve_tcp(
    listener: tokio::net::TcpListener,
    tls: &tls::ApiTls,
    handle: Handle,
    access: Access,
    limits: ApiLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tcp::serve(listener, Some(tls), app(handle, access), limits, shutdown).await
}

/// Serves the web dashboard (and the API beside it, with the same identities) on plain HTTP:
/// the binary binds only loopback addresses for it. Connections are bounded by `limits`.
pub async fn serve_dashboard(
    listener: tokio::net::TcpListener,
    handle: Handle,
    access: Access,
    limits: ApiLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tcp::serve(listener, None, app(handle, access), limits, shutdown).await
}
