//! The control lease for replicas that share a PostgreSQL state: a candidate's own connection
//! (never fenced) to take, renew and give up the lease, so the CLI can run a replica without
//! naming the store.
//!
//! Leadership is the lease, not `control.lock`: a leader paused by SIGSTOP would hold the
//! flock forever, while its lease runs out on the database's clock and its fencing token
//! stops its writes (see `wharf_store::Store::fence`). SQLite needs no lease — one machine,
//! one `control.lock` — and a candidate on it is refused with a clear error.

use std::path::Path;
use std::time::Duration;

use wharf_store::Store;
pub use wharf_store::{CONTROL_LEASE, FencedWrite, Lease, STATE_DSN_ENV};

use crate::OpsError;

/// The lease the controllers of one namespace (`wharf cluster serve`) contend for: a
/// database may hold the state of several namespaces' controllers, and of a `wharf up`
/// stack beside them, each electing its own leader.
pub fn cluster_lease(namespace: &str) -> String {
    format!("cluster/{namespace}")
}

/// A replica contending for a lease: [`CONTROL_LEASE`] (`wharf up`) or a namespace's
/// [`cluster_lease`].
#[derive(Debug)]
pub struct Candidate {
    store: Store,
    name: String,
    holder: String,
    ttl: Duration,
}

impl Candidate {
    /// Connects to the state `WHARF_STATE_DSN` names as `holder`, whose lease lasts `ttl`
    /// past each take or renewal. Without a DSN there is nothing to contend for: an
    /// [`OpsError::Invalid`] that says so.
    pub fn connect(state_dir: &Path, holder: String, ttl: Duration) -> Result<Self, OpsError> {
        Self::connect_for(state_dir, CONTROL_LEASE, holder, ttl)
    }

    /// As [`Candidate::connect`], for the lease `name`.
    pub fn connect_for(
        state_dir: &Path,
        name: &str,
        holder: String,
        ttl: Duration,
    ) -> Result<Self, OpsError> {
        let location = crate::read::location(state_dir)?;
        if !location.is_postgres() {
            return Err(OpsError::Invalid(format!(
                "replicas need the state in PostgreSQL (set {STATE_DSN_ENV}); a state directory \
                 on SQLite has one control plane, chosen by {}",
                crate::LOCK_FILE
            )));
        }
        let mut store = Store::open_location(&location)?;
        store.end_idle_transactions();
        Ok(Candidate {
            store,
            name: name.to_owned(),
            holder,
            ttl,
        })
    }

    /// Who this candidate is.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The lease's length.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Takes the lease when it is free or has run out; `None` while another holder's runs.
    /// Once taken, this connection is fenced by it, so a renewal after a take-over is a
    /// refused write, recorded in `fenced_writes` with the others.
    pub fn try_take(&mut self) -> Result<Option<Lease>, OpsError> {
        let lease = self.store.try_acquire(&self.name, &self.holder, self.ttl)?;
        if let Some(lease) = &lease {
            self.store.fence(lease);
        }
        Ok(lease)
    }

    /// Extends `lease` by the TTL; `false` once another replica has taken it over.
    pub fn renew(&mut self, lease: &Lease) -> Result<bool, OpsError> {
        Ok(self.store.renew(lease, self.ttl)?)
    }

    /// Gives `lease` up (a clean shutdown), so a standby need not wait for it to run out.
    pub fn release(&mut self, lease: &Lease) -> Result<(), OpsError> {
        Ok(self.store.release(lease)?)
    }

    /// The ledger's size now: a standby notes it when it starts waiting (see
    /// [`Candidate::stopped_since`]).
    pub fn ledger_size(&self) -> Result<u64, OpsError> {
        let last = self.store.ledger_page(None, 1)?;
        Ok(last.first().map_or(0, |entry| entry.seq as u64 + 1))
    }

    /// Whether the stack was stopped (`stack.down`) at or after ledger position `since`: a
    /// standby that then gets the lease must not start again what `wharf down` stopped.
    pub fn stopped_since(&self, since: u64) -> Result<bool, OpsError> {
        let filter = wharf_store::EntryFilter {
            action: Some(wharf_ledger::KnownAction::StackDown.as_str().to_owned()),
            target: None,
        };
        let downs = self.store.ledger_entries(&filter)?;
        Ok(downs.iter().any(|entry| entry.seq as u64 >= since))
    }

    /// The current holder and its token, if the lease was ever taken (for a standby's log).
    pub fn current_holder(&self) -> Result<Option<(String, u64)>, OpsError> {
        Ok(self
            .store
            .lease_holder_of(&self.name)?
            .map(|(holder, token)| (holder, token.value())))
    }
}

/// The new leader's first entry, through its own fenced store: which replica took the lease,
/// under which token, and how long the lease had been free (the failover time as the
/// database saw it). wharf's cluster controller writes it; `wharf up`'s replicas write the
/// same entry through the control plane's journal.
pub fn record_leadership(
    store: &mut Store,
    actor: &crate::Actor,
    lease: &Lease,
) -> Result<wharf_ledger::Entry, OpsError> {
    crate::append(
        store,
        actor,
        wharf_ledger::KnownAction::ControlLeader,
        &lease.name,
        serde_json::json!({
            "holder": lease.holder,
            "token": lease.token.value(),
            "free_for_ms": lease.free_for.map(|d| d.as_millis() as u64),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_candidate_on_sqlite_is_refused_with_what_to_do() {
        // The test runs without WHARF_STATE_DSN: the state directory's SQLite.
        let dir = tempfile::tempdir().unwrap();
        let error = Candidate::connect(dir.path(), "a".into(), Duration::from_secs(5))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("PostgreSQL") && error.contains(STATE_DSN_ENV),
            "{error}"
        );
        assert!(!dir.path().join(wharf_store::DB_FILE).exists());
    }
}
