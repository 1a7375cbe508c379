//! The status page's refusals, in process through its router: a control plane that is gone is
//! a clean 503 (no detail of why), a write method is 405 and an unknown path 404, all in the
//! API's JSON error shape, every one with the headers that keep the page self-contained.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use wharf_api::{ApiErrorBody, ErrorCode};
use wharf_control::Handle;
use wharf_server::status_page::{Setup, StatusPage, status_app};

async fn call(method: Method, path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    let (_keep, setup) = tokio::sync::watch::channel(Setup::default());
    let app = status_app(StatusPage::new(Handle::disconnected(), setup));
    let response = app
        .oneshot(
            Request::builder()
                .method(method)
                .uri(path)
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn refusals_are_clean_json_with_the_page_headers() {
    for (method, path, code) in [
        (Method::GET, "/", ErrorCode::Stopping),
        (Method::GET, "/api/v2/summary.json", ErrorCode::Stopping),
        (Method::POST, "/", ErrorCode::MethodNotAllowed),
        (
            Method::DELETE,
            "/api/v2/components.json",
            ErrorCode::MethodNotAllowed,
        ),
        (
            Method::PUT,
            "/api/v2/status.json",
            ErrorCode::MethodNotAllowed,
        ),
        (Method::GET, "/v1/status", ErrorCode::NotFound),
        (Method::GET, "/api/v2/incidents.json", ErrorCode::NotFound),
    ] {
        let (status, headers, body) = call(method.clone(), path).await;
        let what = format!("{method} {path}");
        assert_eq!(status.as_u16(), code.http_status(), "{what}: {body}");
        let error: ApiErrorBody =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"));
        assert_eq!(error.error.code, code, "{what}");
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .starts_with("default-src 'none'"),
            "{what}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
        for internal in ["stopped", "channel", "closed", "Store", "/"] {
            assert!(
                !error.error.message.contains(internal),
                "{what}: {}",
                error.error.message
            );
        }
    }
}
