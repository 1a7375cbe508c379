//! Identity routes: who the caller is (`GET /v1/whoami`) and the per-person API tokens
//! (`GET/POST /v1/tokens`, `POST /v1/tokens/{name}/revoke`; admin only). Each change runs its
//! `wharf-ops` use case on the store-writer thread (row and ledger entry in one transaction),
//! then the token table the listeners check is read again, so a revoked token is refused from
//! the next request on.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use wharf_api::{ApiErrorBody, Caller, CreateTokenRequest, CreatedToken, TokenInfo, TokenList};

use crate::state_routes::{actor, run};
use crate::{ApiError, AppState, authorize, decode_required_body};

/// The caller as the server established it: name, role and how.
#[utoipa::path(get, path = "/v1/whoami", tag = "identity", security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = Caller),
        (status = 401, description = "Missing, wrong, revoked or expired bearer token", body = ApiErrorBody),
    ))]
pub(crate) async fn whoami(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Option<axum::Extension<Caller>>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let caller = crate::identity::established(caller)?;
    Ok(Json(caller).into_response())
}

/// Every token (revoked and expired ones too), never a secret.
#[utoipa::path(get, path = "/v1/tokens", tag = "identity", security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The token register", body = TokenList),
        (status = 401, description = "Missing, wrong, revoked or expired bearer token", body = ApiErrorBody),
        (status = 403, description = "Not an admin", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn list_tokens(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let tokens = run(&state, |store| wharf_ops::tokens::list(store)).await?;
    Ok(Json(TokenList { tokens }).into_response())
}

/// Make a token for one person with a role; the answer holds it, once.
#[utoipa::path(post, path = "/v1/tokens", tag = "identity", security((), ("bearer" = [])),
    request_body = CreateTokenRequest,
    responses(
        (status = 201, description = "Made; `token` is shown this once", body = CreatedToken),
        (status = 400, description = "A bad name, role or lifetime", body = ApiErrorBody),
        (status = 401, description = "Missing, wrong, revoked or expired bearer token", body = ApiErrorBody),
        (status = 403, description = "Not an admin", body = ApiErrorBody),
        (status = 409, description = "That person already holds a token in force", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn create_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let request: CreateTokenRequest = decode_required_body(&bytes, "token")?;
    let actor = actor(&state, &headers);
    let (info, token) = run(&state, move |store| {
        wharf_ops::tokens::create(
            store,
            &actor,
            &request.name,
            request.role,
            request.expires_in.as_deref(),
            jiff::Timestamp::now(),
        )
    })
    .await?;
    state.access.tokens().changed().await;
    Ok((StatusCode::CREATED, Json(CreatedToken { info, token })).into_response())
}

/// Revoke the token in force of a person (by name or `t-N`); it is refused from now on.
#[utoipa::path(post, path = "/v1/tokens/{name}/revoke", tag = "identity", security((), ("bearer" = [])),
    params(("name" = String, Path, description = "The holder's name, or the token's id `t-N`", example = "alice")),
    responses(
        (status = 200, description = "Revoked", body = TokenInfo),
        (status = 401, description = "Missing, wrong, revoked or expired bearer token", body = ApiErrorBody),
        (status = 403, description = "Not an admin", body = ApiErrorBody),
        (status = 404, description = "No token in force by that name", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<UrlPath<String>, PathRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let UrlPath(who) = path?;
    let actor = actor(&state, &headers);
    let info = run(&state, move |store| {
        wharf_ops::tokens::revoke(store, &actor, &who, jiff::Timestamp::now())
    })
    .await?;
    state.access.tokens().changed().await;
    Ok(Json(info).into_response())
}
