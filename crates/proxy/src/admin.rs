//! The admin API the control plane speaks, over a unix socket (mode 0600): `PUT /v1/routes`,
//! `GET /v1/routes`, `GET /v1/stats`, `GET /metrics`. Errors are JSON with a stable code:
//! `{"error": {"code": "...", "message": "..."}}`, plus `"service"` when one service's listen
//! port could not be bound (`bind_failed`).

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::UnixListener;

use crate::server::{ApplyError, Proxy};
use crate::table::TableError;

/// The largest route table accepted.
const MAX_TABLE_BYTES: usize = 16 * 1024 * 1024;

/// Why the admin socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Another process answers on the socket.
    #[error("the admin socket {0} is in use by another process")]
    InUse(String),
    /// Binding or setting the mode failed.
    #[error("cannot open the admin socket {path}: {source}")]
    Io {
        /// The socket path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Bind the admin socket at `path` with mode 0600, replacing a stale socket file.
pub fn bind(path: &Path) -> Result<UnixListener, AdminError> {
    let io = |source| AdminError::Io {
        path: path.display().to_string(),
        source,
    };
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(AdminError::InUse(path.display().to_string()));
        }
        std::fs::remove_file(path).map_err(io)?;
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(listener)
}

/// Serve the admin API until the listener fails.
pub async fn serve(proxy: Proxy, listener: UnixListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!(error = %err, "admin accept failed");
                continue;
            }
        };
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let proxy = proxy.clone();
                async move { Ok::<_, Infallible>(handle(&proxy, request).await) }
            });
            let connection = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(err) = connection {
                tracing::debug!(error = %err, "admin connection ended with an error");
            }
        });
    }
}

/// Answer one admin request.
pub async fn handle(proxy: &Proxy, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    match (&method, path.as_str()) {
        (&Method::PUT, "/v1/routes") => put_routes(proxy, request).await,
        (&Method::GET, "/v1/routes") => match proxy.table() {
            Some(table) => json(StatusCode::OK, &table),
            None => json(
                StatusCode::OK,
                &serde_json::json!({"revision": 0, "services": {}}),
            ),
        },
        (&Method::GET, "/v1/stats") => json(StatusCode::OK, &proxy.stats()),
        (&Method::GET, "/metrics") => {
            let mut response = Response::new(Full::new(Bytes::from(proxy.metrics())));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        (_, "/v1/routes" | "/v1/stats" | "/metrics") => problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed on {path}"),
        ),
        _ => problem(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no endpoint at {path}"),
        ),
    }
}

async fn put_routes(proxy: &Proxy, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let body = match Limited::new(request.into_body(), MAX_TABLE_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(err) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("cannot read the table: {err}"),
            );
        }
    };
    match proxy.apply_json(&body) {
        Ok(revision) => json(StatusCode::OK, &serde_json::json!({"revision": revision})),
        Err(err) => {
            tracing::warn!(error = %err, "route table refused");
            let status = match &err {
                ApplyError::Table(TableError::Json(_)) => StatusCode::BAD_REQUEST,
                ApplyError::Table(TableError::StaleRevision { .. }) => StatusCode::CONFLICT,
                ApplyError::Table(_) => StatusCode::UNPROCESSABLE_ENTITY,
                ApplyError::Persist { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let code = match &err {
                ApplyError::Table(table) => table.code(),
                ApplyError::Persist { .. } => "persist_failed",
            };
            let mut response = serde_json::json!({"code": code, "message": err.to_string()});
            // A port that cannot be bound is one service's problem: name it so the control
            // plane can mark just that service failed.
            if let ApplyError::Table(TableError::Bind { service, .. }) = &err {
                response["service"] = serde_json::Value::from(service.as_str());
            }
            json(status, &serde_json::json!({ "error": response }))
        }
    }
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn problem(status: StatusCode, code: &str, message: String) -> Response<Full<Bytes>> {
    json(
        status,
        &serde_json::json!({"error": {"code": code, "message": message}}),
    )
}
