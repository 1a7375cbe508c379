//! The progressive-delivery routes: start a deploy or a rollback, read a service's rollout,
//! and pause / resume / promote / abort it. The wire types are the control plane's
//! (`DeployRequest`, `RolloutView`), an IPC boundary on purpose.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use wharf_control::{DeployRequest, RolloutCommand};

use crate::{ApiError, AppState, authorize, rejected};

/// The commands `POST /v1/services/{name}/rollout/{command}` accepts, in the order shown.
const COMMANDS: [RolloutCommand; 4] = [
    RolloutCommand::Pause,
    RolloutCommand::Resume,
    RolloutCommand::Promote,
    RolloutCommand::Abort,
];

fn bad_request(message: String) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        code: "invalid_request",
        message,
    }
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

pub(crate) async fn deploy(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let request = parse_deploy_request(&body)?;
    let view = state.handle.deploy(name, request).await.map_err(rejected)?;
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}

pub(crate) async fn rollout(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    match state.handle.rollout(name.clone()).await.map_err(rejected)? {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            code: "no_rollout",
            message: format!("service `{name}` has never been deployed"),
        }),
    }
}

pub(crate) async fn rollout_command(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath((name, command)): UrlPath<(String, String)>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let command = parse_command(&command)?;
    let view = state
        .handle
        .rollout_command(name, command)
        .await
        .map_err(rejected)?;
    Ok(Json(view).into_response())
}

pub(crate) async fn rollback(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let view = state.handle.rollback(name).await.map_err(rejected)?;
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
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
            assert!(err.message.contains(expected), "{}", err.message);
        }
    }

    #[test]
    fn rollout_commands() {
        assert_eq!(parse_command("promote").unwrap(), RolloutCommand::Promote);
        let err = parse_command("restart").unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(
            err.message.contains("pause, resume, promote, abort"),
            "{}",
            err.message
        );
    }
}
