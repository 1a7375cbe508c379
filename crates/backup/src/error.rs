//! The crate's one error type: every variant names what failed (which tool, which datastore,
//! which snapshot) and never carries a credential.

use std::path::PathBuf;

use wharf_manifest::model::DatastoreKind;

/// What went wrong while backing up, restoring or checking.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The datastore's address cannot be used (bad URL, missing path, wrong scheme).
    #[error("datastore address: {0}")]
    Address(String),
    /// An engine tool (pg_dump, mariadb-dump, redis-server, …) is not installed.
    #[error("`{tool}` was not found on PATH (needed to {purpose}); install {package}")]
    ToolMissing {
        tool: &'static str,
        purpose: &'static str,
        package: &'static str,
    },
    /// An engine tool ran and failed; `detail` is its stderr with any credential removed.
    #[error("`{tool}` failed ({status}): {detail}")]
    ToolFailed {
        tool: &'static str,
        status: String,
        detail: String,
    },
    /// Talking to the datastore failed (connect, query).
    #[error("{} datastore: {detail}", crate::kind_name(*.kind))]
    Datastore { kind: DatastoreKind, detail: String },
    /// A repository location that cannot be used: bad syntax, a scheme wharf does not build,
    /// missing or empty S3 keys. Never repeats a credential.
    #[error("repository location: {0}")]
    Location(String),
    /// The storage refused the request's credentials (S3 403: wrong access key id or secret
    /// access key, or a key without permission on the bucket).
    #[error(
        "repository {location}: the S3 server refused the credentials (wrong access key id or \
         secret access key, or no permission on the bucket): {detail}"
    )]
    AccessDenied { location: String, detail: String },
    /// The storage could not be reached (connection refused, name lookup, TLS, timeout),
    /// after the retries the location allows.
    #[error("repository {location}: could not reach the storage: {detail}")]
    Unreachable { location: String, detail: String },
    /// The S3 bucket named in the location does not exist (wharf does not create buckets).
    #[error("repository {location}: bucket `{bucket}` does not exist; create it first")]
    NoSuchBucket { location: String, bucket: String },
    /// The repository password does not open any key of the repository.
    #[error("repository {location}: wrong password (no key of the repository opens with it)")]
    WrongPassword { location: String },
    /// The repository (or one of its files) is damaged or unreadable.
    #[error("repository {location}: {detail}")]
    Repository { location: String, detail: String },
    /// A snapshot that was asked for does not exist or is not a wharf backup.
    #[error("snapshot {0}: not found in the repository")]
    NoSuchSnapshot(String),
    /// A snapshot lacks what a wharf backup holds (its data or its record).
    #[error("snapshot {id}: {detail}")]
    BadSnapshot { id: String, detail: String },
    /// The restore target does not suit the backup (another kind, say).
    #[error("restore: {0}")]
    Restore(String),
    /// A sandbox server for a drill did not start.
    #[error("{} sandbox: {detail}", crate::kind_name(*.kind))]
    Sandbox { kind: DatastoreKind, detail: String },
    /// Local file IO (temp files, directory datastores).
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A retention policy that keeps nothing is refused (restic refuses it too).
    #[error("retention: {0}")]
    Retention(String),
}

impl BackupError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> BackupError {
        BackupError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn store(kind: DatastoreKind, detail: impl Into<String>) -> BackupError {
        BackupError::Datastore {
            kind,
            detail: detail.into(),
        }
    }
}

/// Result with [`BackupError`].
pub type Result<T, E = BackupError> = std::result::Result<T, E>;
