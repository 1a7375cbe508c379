//! Error codes and the one error body the API answers with: `{"error": {"code", "message"}}`,
//! a stable code for programs and a message safe to show people. The control plane returns
//! [`ControlError`]s carrying a code, so the server picks the HTTP status by code, never by
//! the message's words.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A stable, machine-readable error code (snake_case on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The service named in the path or body is not in the stack.
    UnknownService,
    /// The request was understood but conflicts with the stack's state (a rollout under way,
    /// an external service, a version already deployed, …).
    Rejected,
    /// The body or a path parameter could not be decoded.
    InvalidRequest,
    /// A bearer token is required (TCP) and was missing or wrong.
    Unauthorized,
    /// The control plane is shutting down and cannot answer.
    Stopping,
    /// The service was never deployed, so it has no rollout to show.
    NoRollout,
    /// No route matches the path.
    NotFound,
    /// The route exists, but not for this method.
    MethodNotAllowed,
    /// The request body is larger than the API takes.
    PayloadTooLarge,
    /// The change could not be made for a reason that is not the caller's (storage, keys);
    /// nothing was changed.
    Internal,
    /// The runbook, or the run, named in the path is not known.
    UnknownRunbook,
    /// A runbook's rate limit or blast-radius cap refuses the run; nothing was started.
    LimitExceeded,
    /// The caller is known, but its role does not allow this route (a viewer asking to
    /// deploy, an operator approving).
    Forbidden,
    /// A write reached a standby replica of wharf's cluster controller and no leader could
    /// take it (none elected yet, or the leader did not answer); nothing was changed.
    NoLeader,
}

impl ErrorCode {
    /// The HTTP status the API answers this code with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::UnknownService
            | ErrorCode::NoRollout
            | ErrorCode::NotFound
            | ErrorCode::UnknownRunbook => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::Rejected => 409,
            ErrorCode::LimitExceeded => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Stopping | ErrorCode::NoLeader => 503,
        }
    }

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::UnknownService => "unknown_service",
            ErrorCode::Rejected => "rejected",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Stopping => "stopping",
            ErrorCode::NoRollout => "no_rollout",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Internal => "internal",
            ErrorCode::UnknownRunbook => "unknown_runbook",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NoLeader => "no_leader",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every 4xx and 5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
            },
        }
    }
}

/// A control plane's refusal of a command: the code says what kind, the message says why in
/// words an operator can act on (never a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ControlError {
    pub code: ErrorCode,
    pub message: String,
}

impl ControlError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ControlError {
            code,
            message: message.into(),
        }
    }

    /// The request conflicts with the stack's state.
    pub fn rejected(message: impl Into<String>) -> Self {
        ControlError::new(ErrorCode::Rejected, message)
    }

    /// The control plane's loop has ended: nobody is left to answer.
    pub fn stopping() -> Self {
        ControlError::new(ErrorCode::Stopping, "the control plane stopped")
    }
}

impl From<ControlError> for ApiErrorBody {
    fn from(error: ControlError) -> Self {
        ApiErrorBody::new(error.code, error.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_keep_their_wire_names_and_statuses() {
        for (code, wire, status) in [
            (ErrorCode::UnknownService, "unknown_service", 404),
            (ErrorCode::Rejected, "rejected", 409),
            (ErrorCode::InvalidRequest, "invalid_request", 400),
            (ErrorCode::Unauthorized, "unauthorized", 401),
            (ErrorCode::Forbidden, "forbidden", 403),
            (ErrorCode::Stopping, "stopping", 503),
            (ErrorCode::NoRollout, "no_rollout", 404),
            (ErrorCode::NotFound, "not_found", 404),
            (ErrorCode::MethodNotAllowed, "method_not_allowed", 405),
            (ErrorCode::PayloadTooLarge, "payload_too_large", 413),
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), wire);
            assert_eq!(code.as_str(), wire);
            assert_eq!(code.http_status(), status);
        }
    }

    #[test]
    fn error_body_shape() {
        let body = ApiErrorBody::new(ErrorCode::Rejected, "no");
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"error":{"code":"rejected","message":"no"}}"#
        );
    }
}
