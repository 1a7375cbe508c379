//! Backups of a stack's datastores and the drills that prove they restore.
//!
//! Each kind is backed up by its engine's own tool, streamed into a restic repository through
//! `rustic_core` (`repo`), with a record of row counts and content digests taken from the same
//! consistent state (`record`) stored beside the data. `drill` restores a backup into a fresh
//! sandbox server (`sandbox`) and compares. `retention` decides restic `forget` policies.
//! The control plane calls this crate from blocking tasks: every call does IO and may take
//! minutes.

mod capture;
pub(crate) mod chunker;
mod datastore;
mod drill;
mod drivers;
mod error;
mod location;
mod record;
mod repo;
mod retention;
mod retree;
mod sandbox;
mod secret;
mod tools;

pub use datastore::{Datastore, MariadbConn, PgConn, RedisConn};
pub use drill::{DrillReport, drill, drill_with, record_like, record_of, record_of_format};
pub use error::{BackupError, Result};
pub use location::{
    DEFAULT_S3_REGION, DEFAULT_S3_RETRIES, RepoLocation, S3Credentials, S3Location,
};
pub use record::{CheckOutcome, Part, Record, compare};
pub use repo::{Backup, KeyCheck, Repo};
pub use retention::{Retention, keep};
pub use sandbox::Sandbox;
pub use secret::Secret;
pub use tools::{Tool, Tools};
pub use wharf_manifest::model::DatastoreKind;

/// The manifest's word for a kind (`postgres`, `mariadb`, …), as tags and messages use it.
pub fn kind_name(kind: DatastoreKind) -> &'static str {
    match kind {
        DatastoreKind::Postgres => "postgres",
        DatastoreKind::Mariadb => "mariadb",
        DatastoreKind::Redis => "redis",
        DatastoreKind::Sqlite => "sqlite",
        DatastoreKind::Directory => "directory",
    }
}
