//! Who calls, and whether their role allows the route: run on every request before a handler
//! reads anything.
//!
//! On the unix socket (0600, the state directory's owner and root only) the caller is the OS
//! user the kernel names through `SO_PEERCRED`, with the admin role — unless the request
//! presents a token, which narrows it to that token's holder and role (so people sharing a
//! machine account still act as themselves, and four-eyes can tell them apart). On TCP the
//! caller is always a token's holder: one of the per-person tokens in the store, or the
//! break-glass `WHARF_API_TOKEN` the listener was started with (admin, named `api-token`).
//!
//! The established name reaches handlers in [`CALLER_HEADER`], which this layer sets after
//! removing whatever a client sent under that name: a handler never trusts a client's claim.

use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use tokio::sync::Mutex;
use wharf_api::{Caller, ErrorCode, Permission, Role};
use wharf_control::Handle;
use wharf_store::TokenRow;

use crate::ApiError;
use crate::dashboard::session::{self, CSRF_HEADER, Credential, Sessions};

/// The header carrying the established caller's name to handlers (set by this layer only).
pub(crate) const CALLER_HEADER: &str = "x-wharf-caller";

/// The token table as the server checks it: read from the store on first use and again after
/// every change through the API (tokens change only through it while a control plane runs).
#[derive(Clone, Default)]
pub struct TokenBook {
    rows: Arc<Mutex<Option<Arc<Vec<TokenRow>>>>>,
}

impl TokenBook {
    pub fn new() -> TokenBook {
        TokenBook::default()
    }

    /// The rows, read through the store writer's connection when not cached.
    pub(crate) async fn rows(&self, handle: &Handle) -> Result<Arc<Vec<TokenRow>>, ApiError> {
        let mut cached = self.rows.lock().await;
        if let Some(rows) = cached.as_ref() {
            return Ok(rows.clone());
        }
        let rows = handle
            .writer()
            .run(|store| store.tokens())
            .await
            .ok_or_else(crate::gone)?
            .map_err(|error| {
                tracing::error!(%error, "cannot read the API tokens");
                ApiError::new(ErrorCode::Internal, "cannot read the API tokens")
            })?;
        let rows = Arc::new(rows);
        *cached = Some(rows.clone());
        Ok(rows)
    }

    /// Forgets the cached rows: the next request reads them again.
    pub(crate) async fn changed(&self) {
        *self.rows.lock().await = None;
    }
}

/// The peer's credentials on the unix socket, as the kernel gives them at accept.
#[derive(Clone, Debug)]
pub struct PeerCredentials {
    pub uid: Option<u32>,
}

impl
    axum::extract::connect_info::Connected<
        axum::serve::IncomingStream<'_, tokio::net::UnixListener>,
    > for PeerCredentials
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::UnixListener>) -> Self {
        PeerCredentials {
            uid: stream.io().peer_cred().ok().map(|cred| cred.uid()),
        }
    }
}

/// Which listener a router serves, and what it accepts as identity.
#[derive(Clone)]
pub struct Access {
    tcp: bool,
    tokens: TokenBook,
    /// TCP only: the break-glass token the listener was started with.
    break_glass: Option<Arc<str>>,
    /// TCP only: the dashboard's sessions, when this listener serves the dashboard.
    sessions: Option<Sessions>,
    /// Whether the listener speaks TLS (the session cookie is then `Secure`).
    tls: bool,
}

impl Access {
    /// The owner-only unix socket.
    pub fn socket(tokens: TokenBook) -> Access {
        Access {
            tcp: false,
            tokens,
            break_glass: None,
            sessions: None,
            tls: false,
        }
    }

    /// The TCP listener: a token on every request.
    pub fn tcp(tokens: TokenBook, break_glass: Option<String>) -> Access {
        Access {
            tcp: true,
            tokens,
            break_glass: break_glass.map(Arc::from),
            sessions: None,
            tls: true,
        }
    }

    /// A TCP listener that also serves the web dashboard: a browser logs in with a token
    /// and then presents a session cookie, and a CSRF token on every change. `tls` says
    /// whether the listener speaks TLS (the dashboard's own plain-HTTP listener is loopback
    /// only).
    pub fn with_dashboard(mut self, sessions: Sessions, tls: bool) -> Access {
        self.sessions = Some(sessions);
        self.tls = tls;
        self
    }

    pub(crate) fn tokens(&self) -> &TokenBook {
        &self.tokens
    }

    pub(crate) fn sessions(&self) -> Option<&Sessions> {
        self.sessions.as_ref()
    }

    pub(crate) fn tls(&self) -> bool {
        self.tls
    }
}

/// The OS user `uid` names, from the password database; `uid:N` when it names none.
fn user_name(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let id = fields.nth(1)?.parse::<u32>().ok()?;
            (id == uid).then(|| name.to_owned())
        })
        .next()
        .unwrap_or_else(|| format!("uid:{uid}"))
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// `user@host` for a socket peer.
fn socket_caller(credentials: Option<&PeerCredentials>) -> Caller {
    let name = match credentials.and_then(|c| c.uid) {
        Some(uid) => {
            let user = user_name(uid);
            match host_name() {
                Some(host) => format!("{user}@{host}"),
                None => user,
            }
        }
        // A router called without a listener (tests): the socket's owner, unnamed.
        None => "api-socket".to_owned(),
    };
    Caller {
        name,
        role: Role::Admin,
        via: "peer_credentials".to_owned(),
        vouched_by: None,
    }
}

/// The caller the layer established, for a handler that needs more than its name (its role,
/// who vouched for its token); absent only on a route mounted without the layer.
pub(crate) fn established(caller: Option<axum::Extension<Caller>>) -> Result<Caller, ApiError> {
    caller
        .map(|c| c.0)
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "no caller established"))
}

/// The live session one of the request's session cookies names, checked again against its
/// credential (a revoked or expired token ends it). Every `wharf_session` value is tried, so a
/// cookie planted by another page on the same host cannot shadow the real one.
pub(crate) async fn live_session(
    access: &Access,
    handle: &Handle,
    headers: &HeaderMap,
) -> Result<session::Session, ApiError> {
    let ended = || {
        ApiError::new(
            ErrorCode::Unauthorized,
            "no session: log in to the dashboard again",
        )
    };
    let sessions = access.sessions.as_ref().ok_or_else(ended)?;
    let Some((cookie, session)) = session::cookie_values(headers)
        .into_iter()
        .find_map(|cookie| sessions.find(&cookie).map(|s| (cookie, s)))
    else {
        return Err(ended());
    };
    match session.credential {
        Credential::Token(id) => {
            let rows = access.tokens.rows(handle).await?;
            if let Err(refusal) = wharf_ops::tokens::holder_by_id(&rows, id, jiff::Timestamp::now())
            {
                sessions.end(&cookie);
                return Err(ApiError::new(
                    ErrorCode::Unauthorized,
                    format!("the session's token no longer holds: {refusal}"),
                ));
            }
        }
        Credential::BreakGlass if access.break_glass.is_none() => return Err(ended()),
        Credential::BreakGlass => {}
    }
    Ok(session)
}

/// Whether a browser says the request comes from another origin (`Sec-Fetch-Site`:
/// `same-site` — another port of the same host — or `cross-site`). Absent (not a browser, or
/// an old one) counts as the same origin; the CSRF token still guards every change.
pub(crate) fn from_another_origin(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|v| v != "same-origin" && v != "none")
}

/// Who a dashboard session's cookie names. Any request authenticated by the cookie must come
/// from the dashboard's own origin (so no other page of the host — another port is the same
/// *site* — can read through it, even with a GET), and a change (any method but GET and
/// HEAD) must carry the session's CSRF token.
async fn session_caller(
    access: &Access,
    handle: &Handle,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    let session = live_session(access, handle, headers).await?;
    if from_another_origin(headers) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "a request from another origin with the dashboard's session is refused",
        ));
    }
    if method != Method::GET && method != Method::HEAD {
        let given = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !wharf_ops::tokens::same_secret(given, &session.csrf) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "missing or wrong CSRF token: reload the dashboard",
            ));
        }
    }
    Ok(session.caller)
}

/// Who a presented token names on this listener: the break-glass token, or a person's
/// token in force; with how the holder was identified (a dashboard session keeps it).
pub(crate) async fn token_caller(
    access: &Access,
    handle: &Handle,
    presented: &str,
) -> Result<(Caller, Credential), ApiError> {
    if let Some(break_glass) = &access.break_glass
        && wharf_ops::tokens::same_secret(presented, break_glass)
    {
        let caller = Caller {
            name: "api-token".to_owned(),
            role: Role::Admin,
            via: "token".to_owned(),
            vouched_by: None,
        };
        return Ok((caller, Credential::BreakGlass));
    }
    let rows = access.tokens.rows(handle).await?;
    match wharf_ops::tokens::authenticate(&rows, presented, jiff::Timestamp::now()) {
        Ok(holder) => {
            let id = holder.id;
            let caller = Caller {
                name: holder.name,
                role: holder.role,
                via: "token".to_owned(),
                vouched_by: Some(holder.created_by),
            };
            Ok((caller, Credential::Token(id)))
        }
        Err(refusal) => Err(ApiError::new(ErrorCode::Unauthorized, refusal.to_string())),
    }
}

/// Who the request comes from, or why it is refused (401, or 403 for a session's change
/// without its CSRF token).
pub(crate) async fn identify(
    access: &Access,
    handle: &Handle,
    method: &Method,
    headers: &HeaderMap,
    peer: Option<&PeerCredentials>,
) -> Result<Caller, ApiError> {
    let header = headers.get(axum::http::header::AUTHORIZATION);
    if header.is_none() && access.sessions.is_some() && !session::cookie_values(headers).is_empty()
    {
        return session_caller(access, handle, method, headers).await;
    }
    let presented = match header {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::Unauthorized,
                        "the Authorization header must be `Bearer <token>`",
                    )
                })?,
        ),
    };
    let Some(presented) = presented else {
        if access.tcp {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "a valid bearer token is required",
            ));
        }
        return Ok(socket_caller(peer));
    };
    Ok(token_caller(access, handle, presented).await?.0)
}

/// What a route needs of its caller. Reads need `Read`; approving needs `Approve` (a reject
/// is left to the control plane: it takes one from an approver, or from the requester
/// withdrawing their own request); tokens and secret reveals need `Admin`; every other change
/// needs `Operate`.
/// An unknown route (answered 404 later) needs `Read`.
pub(crate) fn permission(method: &Method, route: Option<&str>) -> Permission {
    let Some(route) = route else {
        return Permission::Read;
    };
    if route.starts_with("/v1/tokens") || route == "/v1/secrets/{name}/reveals" {
        return Permission::Admin;
    }
    if method == Method::GET || method == Method::HEAD {
        return Permission::Read;
    }
    match route {
        "/v1/approvals/{id}/approve" | "/v1/runbooks/runs/{id}/approve" => Permission::Approve,
        // An approver rejects, or the request's own requester (an operator) withdraws it: the
        // control plane, which knows the requester, decides which (403 for anyone else).
        "/v1/approvals/{id}/reject" => Permission::Read,
        // Anyone may end their own dashboard session.
        "/ui/logout" => Permission::Read,
        _ => Permission::Operate,
    }
}

/// The layer: establish the caller, check the role, hand the name on. On a listener that
/// serves the dashboard it also refuses host names it does not answer for (plain HTTP:
/// loopback only) and hardens every answer.
pub(crate) async fn gate(
    access: &Access,
    handle: &Handle,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    request.headers_mut().remove(CALLER_HEADER);
    if access.sessions.is_some() {
        if !access.tls && !crate::dashboard::loopback_host(request.headers(), request.uri()) {
            return (
                axum::http::StatusCode::MISDIRECTED_REQUEST,
                axum::Json(wharf_api::ApiErrorBody::new(
                    ErrorCode::InvalidRequest,
                    "this listener answers loopback host names only (127.0.0.1, [::1], localhost)",
                )),
            )
                .into_response();
        }
        let mut response = Box::pin(gate_inner(access, handle, request, next)).await;
        crate::dashboard::harden_api_answer(&mut response);
        return response;
    }
    gate_inner(access, handle, request, next).await
}

/// The layer's work on every listener: public paths pass; anything else gets its caller
/// established and its role checked.
async fn gate_inner(
    access: &Access,
    handle: &Handle,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    let public = matches!(path, "/health" | "/v1/openapi.json")
        || (access.sessions.is_some() && crate::dashboard::is_public(path));
    if public {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<PeerCredentials>>()
        .map(|c| c.0.clone());
    let identified = identify(
        access,
        handle,
        request.method(),
        request.headers(),
        peer.as_ref(),
    )
    .await;
    let caller = match identified {
        Ok(caller) => caller,
        Err(error) => return error.into_response(),
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let needs = permission(request.method(), route.as_deref());
    if !caller.role.allows(needs) {
        let what = match needs {
            Permission::Read => "reading",
            Permission::Operate => "changing the stack (operator or admin)",
            Permission::Approve => "approving (approver or admin)",
            Permission::Admin => "this (admin only)",
        };
        return ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "`{}` has the role {}, which does not allow {what}",
                caller.name, caller.role
            ),
        )
        .into_response();
    }
    if let Ok(value) = HeaderValue::from_str(&caller.name) {
        request.headers_mut().insert(CALLER_HEADER, value);
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_the_permission_its_kind_needs() {
        for (method, path) in crate::ROUTES {
            let method: Method = method.to_uppercase().parse().unwrap();
            let needs = permission(&method, Some(path));
            let expected = if path.starts_with("/v1/tokens") || path.ends_with("/reveals") {
                Permission::Admin
            } else if method == Method::GET {
                Permission::Read
            } else if path.ends_with("/approve") {
                Permission::Approve
            } else if path.ends_with("/reject") {
                Permission::Read
            } else {
                Permission::Operate
            };
            assert_eq!(needs, expected, "{method} {path}");
        }
        assert_eq!(
            permission(&Method::POST, Some("/v1/services/{name}/deploy")),
            Permission::Operate
        );
    }

    #[test]
    fn a_uid_names_its_user() {
        assert_eq!(user_name(0), "root");
        assert_eq!(user_name(4_000_000_000), "uid:4000000000");
    }
}
