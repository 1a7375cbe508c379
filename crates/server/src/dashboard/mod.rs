//! The web dashboard, served by the control plane on a listener that has it (`wharf up
//! --dashboard-listen`, plain HTTP on loopback; and the TLS API listener).
//!
//! Everything is embedded (one HTML shell, one script, one stylesheet: no CDN, works offline).
//! A browser logs in with a token (`POST /ui/login`), which is exchanged for a session cookie
//! (`session.rs`); the page then reads the API's own routes with it — the same routes, roles
//! and answers a program gets — and changes the stack through them with the session's CSRF
//! token in a header. Live state arrives over Server-Sent Events (`GET /ui/events`): the
//! status report, the rollouts under way and the ledger's size, sent when they change — made
//! once per change for all open pages by the control plane's one feed (`feed.rs`).
//!
//! Every answer carries a Content-Security-Policy that allows only the page's own script,
//! style and connections (no inline script or style, no frames, no other origin); the script
//! builds the page with `textContent` and DOM nodes only, so a name from the manifest is text.

mod feed;
pub(crate) mod session;

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use wharf_api::Caller;

use crate::status_page::escape_html;
use crate::{ApiError, AppState};
use session::{Credential, clear_cookie, cookie_values, set_cookie};

pub use session::Sessions;

const INDEX_HTML: &str = include_str!("assets/index.html");
const LOGIN_HTML: &str = include_str!("assets/login.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// The policy every dashboard answer carries.
/// `require-trusted-types-for 'script'` makes the browser refuse any HTML string handed to
/// a DOM sink (`innerHTML` and its kin), so the page's rule — nodes and text only — is
/// enforced, not only followed.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'; require-trusted-types-for 'script'";

/// What every other answer on a listener serving the dashboard carries (the API's JSON read
/// by a browser with the session cookie): nothing may run or frame it.
pub(crate) const API_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// Whether a request to the plain-HTTP (loopback) dashboard listener names a loopback host:
/// a page on another name that resolves here (DNS rebinding) is not the dashboard's origin.
pub(crate) fn loopback_host(headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
    // HTTP/2 carries the host in the URI's authority, HTTP/1.1 in `Host`.
    let Some(host) = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
    else {
        return false;
    };
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    matches!(name, "127.0.0.1" | "localhost" | "[::1]")
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Adds the API answer's headers on a dashboard listener where a handler set none.
pub(crate) fn harden_api_answer(response: &mut Response) {
    let headers = response.headers_mut();
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(API_CONTENT_SECURITY_POLICY),
        );
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// The dashboard's paths that answer without a session: they serve the login page and the
/// assets, or send a browser without a session there.
pub(crate) fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/" | "/ui" | "/ui/" | "/ui/login" | "/ui/assets/app.js" | "/ui/assets/app.css"
    )
}

/// The dashboard's routes, merged into the API's router on a listener that serves it.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(to_dashboard))
        .route("/ui", get(to_dashboard))
        .route("/ui/", get(index))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/events", get(events))
        .route("/ui/assets/app.js", get(app_js))
        .route("/ui/assets/app.css", get(app_css))
}

/// The headers of every dashboard answer.
fn hardened(mut response: Response, cache: &'static str) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // `same-origin`, not `no-referrer`: under `no-referrer` a browser sends `Origin: null`
    // on the login form's post, and the origin check could no longer tell it from a forgery.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

fn see_other(to: &'static str) -> Response {
    hardened(
        (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response(),
        "no-store",
    )
}

async fn to_dashboard() -> Response {
    see_other("/ui/")
}

/// The live session a request's cookie names, if any (checked again against its token).
async fn session_of(state: &AppState, headers: &HeaderMap) -> Option<session::Session> {
    crate::identity::live_session(&state.access, &state.handle, headers)
        .await
        .ok()
}

/// The page, with the session's CSRF token and its holder filled in (escaped), or the login
/// page's address.
async fn index(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(session) = session_of(&state, &headers).await else {
        return see_other("/ui/login");
    };
    let page = INDEX_HTML
        .replace("{{csrf}}", &escape_html(&session.csrf))
        .replace("{{caller}}", &escape_html(&session.caller.name))
        .replace("{{role}}", &escape_html(session.caller.role.as_str()));
    html(StatusCode::OK, page)
}

fn html(status: StatusCode, page: String) -> Response {
    hardened(
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            page,
        )
            .into_response(),
        "no-store",
    )
}

async fn login_page() -> Response {
    html(StatusCode::OK, LOGIN_HTML.replace("{{error}}", ""))
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

/// A token exchanged for a session: `303` to the dashboard with the cookie set, or the login
/// page again with why (the token itself is never echoed).
async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let refuse = |status: StatusCode, why: &str| {
        html(
            status,
            LOGIN_HTML.replace(
                "{{error}}",
                &format!(r#"<p class="error" role="alert">{}</p>"#, escape_html(why)),
            ),
        )
    };
    if !same_origin(&headers) {
        return refuse(
            StatusCode::FORBIDDEN,
            "a login from another site is refused",
        );
    }
    let Some(sessions) = state.access.sessions() else {
        return refuse(StatusCode::NOT_FOUND, "this listener serves no dashboard");
    };
    let Ok(Form(form)) = form else {
        return refuse(StatusCode::BAD_REQUEST, "the login form is malformed");
    };
    let presented = form.token.trim();
    if presented.is_empty() {
        return refuse(StatusCode::UNAUTHORIZED, "enter a token");
    }
    let (caller, credential) =
        match crate::identity::token_caller(&state.access, &state.handle, presented).await {
            Ok(found) => found,
            Err(error) => return refuse(error.status(), error.message()),
        };
    let caller = Caller {
        via: "session".to_owned(),
        ..caller
    };
    let actor = wharf_ops::Actor(caller.name.clone());
    let token = match &credential {
        Credential::Token(id) => Some(*id),
        Credential::BreakGlass => None,
    };
    let recorded = crate::state_routes::run(&state, move |store| {
        wharf_ops::tokens::record_login(store, &actor, token)
    })
    .await;
    if let Err(error) = recorded {
        return refuse(error.status(), error.message());
    }
    // A login replaces whatever session this browser had.
    for cookie in cookie_values(&headers) {
        sessions.end(&cookie);
    }
    let Ok((cookie, _)) = sessions.start(caller, credential) else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many dashboard sessions are open; try again later",
        );
    };
    let mut response = see_other("/ui/");
    if let Ok(value) = HeaderValue::from_str(&set_cookie(&cookie, state.access.tls())) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Whether a form post comes from the dashboard's own pages: browsers say so in
/// `Sec-Fetch-Site`, and in `Origin`, which must then name the host the request went to.
fn same_origin(headers: &HeaderMap) -> bool {
    let site_ok = !crate::identity::from_another_origin(headers);
    let origin_ok = match (headers.get(header::ORIGIN), headers.get(header::HOST)) {
        (None, _) => true,
        (Some(origin), Some(host)) => {
            let origin = origin.to_str().unwrap_or("");
            let host = host.to_str().unwrap_or("");
            origin
                .split_once("://")
                .is_some_and(|(_, authority)| authority == host)
        }
        (Some(_), None) => false,
    };
    site_ok && origin_ok
}

/// Ends the session (the identity layer checked its cookie and CSRF token first).
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let session = session_of(&state, &headers).await;
    if let Some(sessions) = state.access.sessions() {
        for cookie in cookie_values(&headers) {
            sessions.end(&cookie);
        }
    }
    if let Some(session) = session {
        let actor = wharf_ops::Actor(session.caller.name);
        let recorded = crate::state_routes::run(&state, move |store| {
            wharf_ops::tokens::record_logout(store, &actor)
        })
        .await;
        if let Err(error) = recorded {
            return error.into_response();
        }
    }
    let mut response = hardened(StatusCode::NO_CONTENT.into_response(), "no-store");
    if let Ok(value) = HeaderValue::from_str(&clear_cookie(state.access.tls())) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn app_js() -> Response {
    hardened(
        (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            APP_JS,
        )
            .into_response(),
        "no-cache",
    )
}

async fn app_css() -> Response {
    hardened(
        ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], APP_CSS).into_response(),
        "no-cache",
    )
}

/// The live stream: a `snapshot` event whenever the stack, a rollout or the ledger changed,
/// from the control plane's one feed (`feed.rs`: one read and one serialisation per change,
/// whatever the number of pages); each event's id is the feed's number for it. The caller's
/// credentials are checked again every [`feed::PERIOD`]: a logout, a revoked token or an
/// expired session ends the stream, as does the control plane stopping.
async fn events(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    crate::authorize(&state, &headers)?;
    let Some(sessions) = state.access.sessions() else {
        return Err(ApiError::new(
            wharf_api::ErrorCode::NotFound,
            "this listener serves no dashboard",
        ));
    };
    let mut credentials = HeaderMap::new();
    for name in [header::AUTHORIZATION, header::COOKIE] {
        for value in headers.get_all(&name) {
            credentials.append(name.clone(), value.clone());
        }
    }
    let frames = sessions.feed().subscribe(&state);
    let mut recheck = tokio::time::interval(feed::PERIOD);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watch = Watch {
        state,
        credentials,
        frames,
        recheck,
        first: true,
    };
    let stream = futures_util::stream::unfold(watch, |mut watch| async move {
        let frame = watch.next().await?;
        let event = Event::default()
            .event("snapshot")
            .id(frame.seq.to_string())
            .data(&*frame.text);
        Some((Ok::<_, Infallible>(event), watch))
    });
    let response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    Ok(hardened(response, "no-store"))
}

/// One open stream: a receiver of the shared feed and the credentials it keeps checking.
struct Watch {
    state: AppState,
    credentials: HeaderMap,
    frames: tokio::sync::watch::Receiver<Option<feed::Frame>>,
    recheck: tokio::time::Interval,
    first: bool,
}

impl Watch {
    /// The next snapshot to send (the feed's latest, first); `None` ends the stream.
    async fn next(&mut self) -> Option<feed::Frame> {
        if std::mem::take(&mut self.first)
            && let Some(frame) = self.frames.borrow_and_update().clone()
        {
            return Some(frame);
        }
        loop {
            tokio::select! {
                changed = self.frames.changed() => {
                    // The feed ended: the control plane stopped.
                    changed.ok()?;
                    if let Some(frame) = self.frames.borrow_and_update().clone() {
                        return Some(frame);
                    }
                }
                _ = self.recheck.tick() => {
                    crate::identity::identify(
                        &self.state.access,
                        &self.state.handle,
                        &axum::http::Method::GET,
                        &self.credentials,
                        None,
                    )
                    .await
                    .ok()?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            escape_html(r#"<img src=x onerror="alert(1)">&'"#),
            "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn a_post_from_another_site_is_not_same_origin() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&headers));
        headers.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&headers));
        headers.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(!same_origin(&headers));
        headers.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        headers.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(!same_origin(&headers));
    }

    #[test]
    fn only_loopback_names_reach_the_plain_listener() {
        let uri = axum::http::Uri::from_static("/ui/");
        let with = |host: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, host.parse().unwrap());
            loopback_host(&headers, &uri)
        };
        for ok in [
            "127.0.0.1:7480",
            "localhost:7480",
            "[::1]:7480",
            "127.0.0.2",
            "localhost",
        ] {
            assert!(with(ok), "{ok}");
        }
        for refused in [
            "evil.example:7480",
            "10.0.0.1:7480",
            "localhost.evil.example",
        ] {
            assert!(!with(refused), "{refused}");
        }
        assert!(!loopback_host(&HeaderMap::new(), &uri));
    }

    #[test]
    fn the_assets_stay_small() {
        // The issue's budget: first load under 100 KB of script.
        assert!(
            APP_JS.len() < 100 * 1024,
            "app.js is {} bytes",
            APP_JS.len()
        );
    }
}
