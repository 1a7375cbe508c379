//! The use cases' error: what went wrong, and which kind of wrong (the API's status and the
//! CLI's exit code follow the kind, never the message text).

use wharf_ledger::{EntryError, LedgerError};
use wharf_secrets::SecretsError;
use wharf_store::StoreError;

/// Which kind of failure: the caller's fault, a missing thing, a conflict with the current
/// state, or the machine's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpsErrorKind {
    /// The request is malformed or breaks a rule (an empty value, an undeclared secret).
    Invalid,
    /// What the request names does not exist (a secret, a revision, an instance).
    NotFound,
    /// The request is well formed but the state refuses it now (a control plane holds the lock).
    Conflict,
    /// Storage, keys, a failed hook: not the caller's fault.
    Internal,
}

/// Why a use case did nothing (each one is a transaction: an error means no change).
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error("cannot append to the ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("invalid ledger entry: {0}")]
    Entry(#[from] EntryError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// A hook (a rotate_command) failed; the message holds its stderr and exit status.
    #[error("{0}")]
    Hook(String),
}

impl OpsError {
    /// The kind, for the API's status code and the CLI's exit code.
    pub fn kind(&self) -> OpsErrorKind {
        match self {
            OpsError::Invalid(_) => OpsErrorKind::Invalid,
            OpsError::NotFound(_) => OpsErrorKind::NotFound,
            OpsError::Conflict(_) => OpsErrorKind::Conflict,
            OpsError::Secrets(SecretsError::Invalid(_)) => OpsErrorKind::Invalid,
            OpsError::Secrets(SecretsError::Unknown(_) | SecretsError::UnknownVersion { .. }) => {
                OpsErrorKind::NotFound
            }
            _ => OpsErrorKind::Internal,
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> OpsError {
        let context = context.into();
        move |source| OpsError::Io { context, source }
    }
}
