//! wharf's use cases: every change to a stack's state — a secret version, a config revision,
//! an audit note, a preflight verdict, stopping what a dead control plane left running — as one
//! function that writes the change and its ledger entry in **one transaction**.
//!
//! Architecture Invariant: one writer. While a control plane runs it is the only process that
//! writes the state directory, and it runs these functions on its store-writer thread for its
//! API; when none runs, the CLI takes `control.lock` ([`ControlLock`]) and runs the *same*
//! functions in-process. No other code path writes the store.

pub mod audit;
pub mod cluster;
pub mod config;
mod error;
pub mod fault;
pub mod gates;
pub mod incidents;
pub mod lease;
mod lock;
pub mod promotion;
pub mod read;
pub mod secrets;
pub mod silences;
pub mod stop;
pub mod tokens;

pub use error::{OpsError, OpsErrorKind};
pub use lock::{ControlLock, LOCK_FILE, PID_FILE};
/// The state directory made private (0700), for commands that create it before taking the lock.
pub use wharf_store::private_dir;

use wharf_ledger::{Entry, KnownAction, Ledger, NewEntry};
use wharf_store::Store;

/// Who acts: the name every ledger entry of a use case carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

impl Actor {
    /// The person running this process: `$WHARF_ACTOR`, else `user@host`, else `operator`.
    pub fn from_environment() -> Actor {
        let non_empty = |s: String| {
            let s = s.trim().to_owned();
            (!s.is_empty()).then_some(s)
        };
        if let Some(actor) = std::env::var("WHARF_ACTOR").ok().and_then(non_empty) {
            return Actor(actor);
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .ok()
            .and_then(non_empty);
        Actor(
            match (std::env::var("USER").ok().and_then(non_empty), host) {
                (Some(user), Some(host)) => format!("{user}@{host}"),
                (Some(user), None) => user,
                _ => "operator".to_owned(),
            },
        )
    }
}

/// Appends one entry through a store that may be inside [`Store::atomically`].
pub(crate) fn append(
    store: &mut Store,
    actor: &Actor,
    action: KnownAction,
    target: &str,
    details: serde_json::Value,
) -> Result<Entry, OpsError> {
    let now = jiff::Timestamp::now();
    let entry = NewEntry::new(now, &actor.0, action.into(), target, details)?;
    Ok(Ledger::new(store).append(entry)?)
}
