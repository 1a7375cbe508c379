//! wharf-store: the state database — SQLite in the state directory, or PostgreSQL named by a
//! DSN ([`StateLocation`]) — and the ledger's key file.
//!
//! Architecture Invariant: this is the only crate that speaks SQL. Other crates see typed
//! methods, the same on both engines; the ledger sees the [`wharf_ledger::Storage`] trait
//! implemented here. The table modules write one SQL dialect through `engine::Db`; the few
//! statements that differ (migrations, a JSON read, the ledger's bulk insert) say so.
//!
//! Architecture Invariant: one writer. A [`Store`] owns its connection (`&mut self` for every
//! write), a process opens one `Store`, and every write transaction excludes every other
//! writer of the same database — SQLite's `BEGIN IMMEDIATE`, or on PostgreSQL `BEGIN` plus a
//! transaction-scoped advisory lock — and every append re-checks the tree size inside it, so a
//! second process can never interleave entries.

mod alerts;
mod backups;
mod config;
mod db;
mod engine;
mod identity;
mod incidents;
mod instances;
mod keys;
mod leases;
mod ledger;
mod location;
mod migrations;
mod rollouts;
mod runbooks;
mod secrets;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use alerts::PendingNotice;
pub use backups::BackupJobRow;
pub use config::ConfigRevision;

/// The `instances` row of the proxy, recorded beside the instances (a name no service can
/// have: manifest service names do not start with a dot).
pub const PROXY_ROW: &str = ".proxy";

/// The proxy's saved route table in the state directory (it names instances, so whoever stops
/// them all removes it).
pub const PROXY_ROUTES_FILE: &str = "proxy-routes.json";
pub use db::{DB_FILE, Store, StoreError, private_dir};
pub use identity::TokenRow;
pub use instances::{HEALTH_HISTORY_LIMIT, HealthEvent, InstanceRow};
pub use keys::{KEY_FILE, load_or_create_signer};
pub use leases::{CONTROL_LEASE, FencedWrite, FencingToken, Lease};
pub use ledger::EntryFilter;
pub use location::{PgDsn, STATE_DSN_ENV, StateLocation};
pub use migrations::SCHEMA_VERSION;
pub use rollouts::RolloutRow;
pub use runbooks::RunbookRunRow;
pub use secrets::{RewrappedKey, SecretVersionRow};
