//! Alerting's pure core: which services are in trouble, for how long, and which of them is the
//! root cause — one page per root cause, its dependents listed on it rather than paged.
//!
//! The control plane observes its services (health state, error rate, latency) and feeds
//! [`Engine::evaluate`] a snapshot with the time; the engine answers with the pages to open
//! and to resolve. It keeps no clock and does no IO, so every rule of paging is a unit test:
//! a child is never paged while a critical dependency of it is in trouble (its *creation* is
//! suppressed), every page opened gets its resolve, and a service under maintenance (a
//! rollout) opens no page while it lasts.

mod engine;
mod rule;

pub use engine::{Engine, Health, Page, PageChange, ServiceView, Trouble};
pub use rule::{Rule, Severity};

/// The name of a datastore's backups as an alerting root of their own (`db:backups`): a
/// service name never holds a `:`, so it is never a service's.
pub const BACKUPS_SUFFIX: &str = ":backups";

/// The name of a secret as an alerting root of its own (`secret:DB_PASSWORD`): its rotation
/// overdue is nobody's outage.
pub const SECRET_PREFIX: &str = "secret:";
