//! The control plane's HTTP API, served on a unix socket in the state directory (mode 0600:
//! only the owner may drive the stack) and optionally on TCP behind a bearer token.
//!
//! `app(handle)` builds the router, so tests can call it directly; errors become a JSON body
//! `{"error": {"code", "message"}}` with a stable code and a message safe to show.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

mod deploy;
mod health;
pub mod tls;
use serde::Deserialize;
use serde_json::json;
use wharf_control::Handle;

/// One API error: a stable code for programs, a message for people.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        (self.status, body).into_response()
    }
}

fn gone() -> ApiError {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "stopping",
        message: "the control plane is stopping".to_owned(),
    }
}

pub(crate) fn rejected(message: String) -> ApiError {
    let code = if message.starts_with("unknown service") {
        "unknown_service"
    } else {
        "rejected"
    };
    let status = if code == "unknown_service" {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::CONFLICT
    };
    ApiError {
        status,
        code,
        message,
    }
}

#[derive(Clone)]
pub(crate) struct AppState {
    handle: Handle,
    /// Required as `Authorization: Bearer …` on TCP; `None` on the unix socket.
    token: Option<String>,
}

/// The API's routes over a control plane handle.
pub fn app(handle: Handle, token: Option<String>) -> Router {
    Router::new()
        .route(
            "/health",
            get(|| async { health::respond(StatusCode::OK, json!({"status": "pass"})) }),
        )
        .route("/health/ready", get(health_ready))
        .route("/health/detailed", get(health_detailed))
        .route("/v1/status", get(status))
        .route("/v1/services/{name}/restart", post(restart))
        .route("/v1/down", post(down))
        .route("/v1/reload", post(reload))
        .route("/v1/services/{name}/deploy", post(deploy::deploy))
        .route("/v1/services/{name}/rollout", get(deploy::rollout))
        .route(
            "/v1/services/{name}/rollout/{command}",
            post(deploy::rollout_command),
        )
        .route("/v1/services/{name}/rollback", post(deploy::rollback))
        .with_state(AppState { handle, token })
}

pub(crate) fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.token else {
        return Ok(());
    };
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Constant-time enough for a local token: compare full lengths and every byte.
    let matches = given.is_some_and(|g| {
        g.len() == token.len()
            && g.bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if matches {
        Ok(())
    } else {
        Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: "a valid bearer token is required".to_owned(),
        })
    }
}

async fn health_ready(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let report = state.handle.status().await.ok_or_else(gone)?;
    Ok(health::ready(&report))
}

async fn health_detailed(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let report = state.handle.status().await.ok_or_else(gone)?;
    Ok(health::detailed(&report))
}

async fn status(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let report = state.handle.status().await.ok_or_else(gone)?;
    Ok(Json(report).into_response())
}

async fn restart(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    state.handle.restart(name.clone()).await.map_err(rejected)?;
    Ok((StatusCode::ACCEPTED, Json(json!({"restarting": name}))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DownRequest {
    service: Option<String>,
}

async fn down(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Option<Json<DownRequest>>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let service = body.and_then(|Json(b)| b.service);
    state.handle.down(service.clone()).await.map_err(rejected)?;
    Ok(Json(json!({"stopped": service.unwrap_or_else(|| "stack".to_owned())})).into_response())
}

/// Secrets or config overrides changed (the CLI wrote them to the store): the control plane
/// restarts (rolling) or signals the instances whose identity moved.
async fn reload(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let request = if body.is_empty() {
        wharf_control::ReloadRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|err| ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_request",
            message: format!("invalid reload request: {err}"),
        })?
    };
    let applied = state.handle.reload(request).await.map_err(rejected)?;
    Ok(Json(applied).into_response())
}

/// Serves the API on a unix socket at `path` (replacing a stale socket file) until
/// `shutdown` resolves.
pub async fn serve_unix(
    path: &Path,
    handle: Handle,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    axum::serve(listener, app(handle, None))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves the API on TCP over TLS with `tls`'s certificate, every request needing
/// `Authorization: Bearer <token>`, until `shutdown` resolves (connections in progress finish).
pub async fn serve_tcp(
    listener: tokio::net::TcpListener,
    tls: &tls::ApiTls,
    handle: Handle,
    token: String,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tls::TlsListener::new(listener, tls);
    axum::serve(listener, app(handle, Some(token)))
        .with_graceful_shutdown(shutdown)
        .await
}
