//! The admin API the control plane speaks, over a unix socket (mode 0600): `PUT /v1/routes`,
//! `GET /v1/routes`, `GET /v1/stats`, `GET /metrics`. Errors are JSON with a stable code:
//! `{"error": {"code": "...", "message": "..."}}`, plus `"service"` when one service's listen
//! port could not be bound (`bind_failed`).
//!
//! In a cluster the proxy runs in a pod that no unix socket of the deployer reaches, so the same
//! API can also listen on TCP ([`serve_tcp`]). There the file mode that guards the socket is
//! gone, so every request must carry a bearer token ([`AdminToken`]), compared in constant time.
//! The token is accepted in `Authorization: Bearer …` and in [`TOKEN_HEADER`]: the Kubernetes
//! API server's pod proxy — the way `wharf cluster deploy` reaches router pods — authenticates
//! its own caller with `Authorization` and removes that header before forwarding.

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};

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
        tokio::spawn(serve_connection(proxy.clone(), stream, None));
    }
}

/// The environment variable the TCP admin listener's token is read from (never a flag: argv
/// is readable by every user of the machine, and by `kubectl describe pod`).
pub const TOKEN_ENV: &str = "WHARF_PROXY_ADMIN_TOKEN";
/// The header that carries the token where `Authorization` cannot (see the module docs).
pub const TOKEN_HEADER: &str = "x-wharf-proxy-token";
/// The shortest token accepted: 16 characters, so a guessable word is refused at start.
pub const MIN_TOKEN_LEN: usize = 16;

/// Why the TCP admin listener cannot start. None of them holds the token's value.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// No token in the environment.
    #[error(
        "--admin-listen needs a bearer token: set {TOKEN_ENV} (at least {MIN_TOKEN_LEN} characters) in the proxy's environment"
    )]
    Missing,
    /// Too short to resist guessing.
    #[error("{TOKEN_ENV} is {len} characters long; it needs at least {MIN_TOKEN_LEN}")]
    TooShort {
        /// Its length (not its value).
        len: usize,
    },
    /// Not sendable in a header: whitespace, control or non-ASCII characters.
    #[error(
        "{TOKEN_ENV} holds whitespace, control or non-ASCII characters; use printable ASCII (hex or base64)"
    )]
    NotPrintable,
}

/// The bearer token of the TCP admin listener. Its value has no `Debug` or `Display`: it is
/// never logged, and only [`AdminToken::accepts`] reads it.
#[derive(Clone)]
pub struct AdminToken(Arc<[u8]>);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken([redacted])")
    }
}

impl AdminToken {
    /// Checks `value` is usable as a token.
    pub fn new(value: &str) -> Result<AdminToken, TokenError> {
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::NotPrintable);
        }
        if value.len() < MIN_TOKEN_LEN {
            return Err(TokenError::TooShort { len: value.len() });
        }
        Ok(AdminToken(value.as_bytes().into()))
    }

    /// The token from [`TOKEN_ENV`]; an unset or empty variable is [`TokenError::Missing`].
    pub fn from_env() -> Result<AdminToken, TokenError> {
        match std::env::var(TOKEN_ENV) {
            Ok(value) if !value.is_empty() => AdminToken::new(&value),
            _ => Err(TokenError::Missing),
        }
    }

    /// Whether the request carries this token, as `Authorization: Bearer TOKEN` or in
    /// [`TOKEN_HEADER`].
    pub fn accepts(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        let header = headers.get(TOKEN_HEADER).map(HeaderValue::as_bytes);
        // Both checked, whichever is present, so the time taken does not say which one was.
        let by_bearer = bearer.is_some_and(|offered| constant_time_eq(offered, &self.0));
        let by_header = header.is_some_and(|offered| constant_time_eq(offered, &self.0));
        by_bearer | by_header
    }
}

/// Equal without an early exit: the time taken depends on the lengths, never on where the
/// first differing byte is (a token's length is no secret worth a timing channel).
fn constant_time_eq(offered: &[u8], expected: &[u8]) -> bool {
    if offered.len() != expected.len() {
        return false;
    }
    let difference = offered
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(difference) == 0
}

/// Bind the TCP admin listener.
pub async fn bind_tcp(address: std::net::SocketAddr) -> Result<TcpListener, AdminError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| AdminError::Io {
            path: address.to_string(),
            source,
        })
}

/// Serve the admin API on TCP until the listener fails: the same endpoints as the socket, each
/// request refused with 401 unless it carries `token`.
pub async fn serve_tcp(proxy: Proxy, listener: TcpListener, token: AdminToken) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!(error = %err, "admin accept failed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(proxy.clone(), stream, Some(token.clone())));
    }
}

async fn serve_connection<S>(proxy: Proxy, stream: S, token: Option<AdminToken>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let proxy = proxy.clone();
        let token = token.clone();
        async move {
            if let Some(token) = &token
                && !token.accepts(request.headers())
            {
                // Which path was asked is worth a line; what was offered is not.
                tracing::warn!(path = %request.uri().path(), "admin request without the token refused");
                return Ok::<_, Infallible>(unauthorized());
            }
            Ok::<_, Infallible>(handle(&proxy, request).await)
        }
    });
    let connection = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(err) = connection {
        tracing::debug!(error = %err, "admin connection ended with an error");
    }
}

fn unauthorized() -> Response<Full<Bytes>> {
    let mut response = problem(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        format!(
            "the admin API on TCP needs the token of {TOKEN_ENV}, as `Authorization: Bearer TOKEN` or `{TOKEN_HEADER}: TOKEN`"
        ),
    );
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
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
