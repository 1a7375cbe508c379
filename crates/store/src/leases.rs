//! The leader lease and its fencing token: the primitive two control-plane replicas sharing a
//! PostgreSQL state elect a leader with.
//!
//! One row per lease in `leases` (migration 12): who holds it, until when (the database
//! server's clock, so replicas on different machines agree), and a token that grows each time
//! the lease changes hands. A leader passes its token to [`Store::fence_writes`]; from then on
//! every write transaction of that store first checks, under the writer lock, that the lease
//! still carries that token — so a leader that was paused past its lease (a SIGSTOP, a long GC,
//! a partition) and wakes up has its writes refused with [`StoreError::Fenced`] instead of
//! overwriting its successor's.

use std::time::Duration;

use crate::db::{Store, StoreError, fail};
use crate::engine::{Db, DbError, Engine, vals};

/// The lease the control plane's replicas contend for.
pub const CONTROL_LEASE: &str = "control";

/// Proof of holding a lease: increases each time the lease changes hands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FencingToken(u64);

impl FencingToken {
    /// The token's number.
    pub fn value(self) -> u64 {
        self.0
    }
}

/// The database's clock in milliseconds since the Unix epoch.
fn now_sql(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => "SELECT CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
        Engine::Postgres => "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
    }
}

impl Store {
    /// Takes the lease [`CONTROL_LEASE`] for `holder` for `ttl`, or renews it if `holder`
    /// has it: `Some(token)` then (a new token when the lease changes hands, the same on a
    /// renewal), `None` while another holder's lease runs. Never fenced itself: a leader that
    /// lost the lease learns it here as `None`.
    pub fn acquire_lease(
        &mut self,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<FencingToken>, StoreError> {
        let path = self.path.clone();
        let taken = acquire(&mut self.db, holder, ttl);
        taken.map_err(fail(&path, "cannot take the lease"))
    }

    /// Gives the lease up now if `holder` has it (a clean shutdown), so a follower need not
    /// wait for it to run out; its token stays, so the next holder's is greater.
    pub fn release_lease(&mut self, holder: &str) -> Result<(), StoreError> {
        let path = self.path.clone();
        let released = self.db.unfenced(|db| {
            db.execute(
                "UPDATE leases SET expires_ms = 0 WHERE name = ?1 AND holder = ?2",
                &vals![CONTROL_LEASE, holder],
            )
        });
        released
            .map(drop)
            .map_err(fail(&path, "cannot release the lease"))
    }

    /// Every later write transaction of this store checks, under the writer lock, that
    /// [`CONTROL_LEASE`] still carries `token`, and fails with [`StoreError::Fenced`]
    /// (writing nothing) once it does not; `None` stops checking.
    pub fn fence_writes(&mut self, token: Option<FencingToken>) {
        self.db.set_fence(token.map(|t| t.0 as i64));
    }

    /// The lease's holder and token, if it was ever taken.
    pub fn lease_holder(&self) -> Result<Option<(String, FencingToken)>, StoreError> {
        self.db
            .read_opt(
                "SELECT holder, token FROM leases WHERE name = ?1",
                &vals![CONTROL_LEASE],
                |row| Ok((row.get(0)?, FencingToken(row.get(1)?))),
            )
            .map_err(fail(&self.path, "cannot read the lease"))
    }
}

fn acquire(db: &mut Db, holder: &str, ttl: Duration) -> Result<Option<FencingToken>, DbError> {
    let engine = db.engine();
    db.unfenced(|db| {
        let mut tx = db.write_tx()?;
        let now: i64 = tx.read_one(now_sql(engine), &[], |row| row.get(0))?;
        let current: Option<(String, i64, i64)> = tx.read_opt(
            "SELECT holder, token, expires_ms FROM leases WHERE name = ?1",
            &vals![CONTROL_LEASE],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )?;
        let token = match current {
            Some((other, _, expires)) if other != holder && expires > now => return Ok(None),
            // A renewal keeps the token, as long as the lease has not run out: once it has,
            // a write fenced by the old token may already have been refused, so the next
            // term is a new one even for the same holder.
            Some((_, token, expires)) if expires > now => token,
            Some((_, token, _)) => token + 1,
            None => 1,
        };
        let expires = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        tx.execute(
            "INSERT INTO leases (name, holder, token, expires_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, token = excluded.token,
             expires_ms = excluded.expires_ms",
            &vals![CONTROL_LEASE, holder, token, expires],
        )?;
        tx.commit()?;
        Ok(Some(FencingToken(token as u64)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two replicas on one database: the first leads; once its lease has run out the second
    /// takes over with a greater token, and the first — still fenced by its old token — has
    /// every write refused, in the transaction and alone, writing nothing.
    #[test]
    fn a_leader_that_lost_its_lease_has_its_writes_refused_by_the_fencing_token() {
        crate::testing::on_both(|state| {
            let mut old = state.open();
            let mut new = state.open();
            // A lease of zero length has run out as soon as it is taken: the pause of a
            // leader past its lease, without waiting for it.
            let first = old
                .acquire_lease("replica-a", Duration::ZERO)
                .unwrap()
                .unwrap();
            old.fence_writes(Some(first));
            let second = new
                .acquire_lease("replica-b", Duration::from_secs(60))
                .unwrap()
                .unwrap();
            new.fence_writes(Some(second));
            assert!(second > first);
            assert_eq!(
                old.acquire_lease("replica-a", Duration::from_secs(60))
                    .unwrap(),
                None
            );

            let refused = old.set_meta("k", "stale").unwrap_err();
            assert!(
                matches!(refused, StoreError::Fenced { ours, held, .. }
                    if ours == first.value() && held == second.value()),
                "{refused}"
            );
            let refused = old
                .atomically(|store| store.set_meta("k", "stale"))
                .unwrap_err();
            assert!(matches!(refused, StoreError::Fenced { .. }), "{refused}");
            let mut ledger = wharf_ledger::Ledger::new(&mut old);
            let entry = wharf_ledger::NewEntry::new(
                jiff::Timestamp::from_second(1_700_000_000).unwrap(),
                "replica-a",
                "deploy.step".parse().unwrap(),
                "api",
                serde_json::json!({}),
            )
            .unwrap();
            assert!(ledger.append(entry).is_err());
            assert_eq!(new.meta("k").unwrap(), None);
            assert_eq!(new.ledger_entries(&Default::default()).unwrap(), []);

            new.set_meta("k", "fresh").unwrap();
            assert_eq!(
                new.acquire_lease("replica-b", Duration::from_secs(60))
                    .unwrap(),
                Some(second)
            );
            assert_eq!(
                new.lease_holder().unwrap(),
                Some(("replica-b".to_owned(), second))
            );
            new.release_lease("replica-b").unwrap();
            let third = old
                .acquire_lease("replica-a", Duration::from_secs(60))
                .unwrap()
                .unwrap();
            assert!(third > second);
            old.fence_writes(Some(third));
            old.set_meta("k", "again").unwrap();
            assert!(new.set_meta("k", "late").is_err());
            assert_eq!(old.meta("k").unwrap().as_deref(), Some("again"));
        });
    }
}
