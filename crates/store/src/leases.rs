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
use crate::engine::{Db, DbError, Engine, Fence, vals};

/// The lease the control plane's replicas contend for.
pub const CONTROL_LEASE: &str = "control";

/// How long a fenced store's (or a lease candidate's) transaction may sit idle before
/// PostgreSQL ends its session: wharf's transactions last milliseconds, so only a paused or
/// hung process reaches it.
pub const IDLE_TRANSACTION_LIMIT: Duration = Duration::from_secs(2);

/// Proof of holding a lease: increases each time the lease changes hands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FencingToken(u64);

impl FencingToken {
    /// The token's number.
    pub fn value(self) -> u64 {
        self.0
    }
}

/// The database's clock in milliseconds since the Unix epoch, as an SQL expression.
pub(crate) fn now_expr(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
        Engine::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
    }
}

/// A lease this process holds: which, as whom, under which token, and how long the lease
/// had been free when it was taken (`None` for a renewal or the first holder ever).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub holder: String,
    pub token: FencingToken,
    /// From the old holder's expiry to this take-over, by the database's clock.
    pub free_for: Option<Duration>,
}

/// One write a fenced store refused (table `fenced_writes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FencedWrite {
    pub lease: String,
    /// The stale token the refused writer held.
    pub token: u64,
    pub holder: String,
    /// The token the lease carried at the refusal.
    pub held: u64,
    /// When, in ms since the Unix epoch by the database's clock.
    pub at_ms: i64,
    /// What the write was (`ledger append`, `INSERT INTO rollouts`, a ledger action).
    pub what: String,
}

impl Store {
    /// Takes the lease `name` for `holder` for `ttl` when it is free or has run out (by the
    /// database's clock), with a token one greater than the last; renews it when `holder`
    /// already has it; `None` while another holder's lease runs. Never fenced itself, and
    /// serialised with every write by the writer lock, so a take-over waits for the writes
    /// in flight under the old token.
    pub fn try_acquire(
        &mut self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let path = self.path.clone();
        let taken = acquire(&mut self.db, name, holder, ttl);
        taken.map_err(fail(&path, "cannot take the lease"))
    }

    /// Extends `lease` by `ttl` from now if it still carries its token (nobody took it over,
    /// so no write under it was refused): `false` when it was taken, and the holder must stop.
    /// On a store fenced by `lease` the renewal is itself a fenced write: a holder deposed
    /// while paused has its renewal refused and recorded in `fenced_writes` like any other.
    pub fn renew(&mut self, lease: &Lease, ttl: Duration) -> Result<bool, StoreError> {
        let path = self.path.clone();
        let engine = self.db.engine();
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let renewed = (|| {
            let mut tx = self.db.write_tx_for("lease renewal")?;
            let changed = tx.execute(
                &format!(
                    "UPDATE leases SET expires_ms = ({}) + ?1
                     WHERE name = ?2 AND holder = ?3 AND token = ?4",
                    now_expr(engine)
                ),
                &vals![ttl_ms, &lease.name, &lease.holder, lease.token.0 as i64],
            )?;
            tx.commit()?;
            Ok(changed == 1)
        })();
        match renewed {
            Err(DbError::Fenced { .. }) => Ok(false),
            other => other.map_err(fail(&path, "cannot renew the lease")),
        }
    }

    /// Gives `lease` up now (a clean shutdown), so a follower need not wait for it to run
    /// out; its token stays, so the next holder's is greater. It expires at the database's
    /// now (not at 0), so the next holder's `free_for` is the real gap.
    pub fn release(&mut self, lease: &Lease) -> Result<(), StoreError> {
        let path = self.path.clone();
        let now = now_expr(self.db.engine());
        let released = self.db.unfenced(|db| {
            db.execute(
                &format!(
                    "UPDATE leases SET expires_ms = {now}
                     WHERE name = ?1 AND holder = ?2 AND token = ?3 AND expires_ms > {now}"
                ),
                &vals![&lease.name, &lease.holder, lease.token.0 as i64],
            )
        });
        released
            .map(drop)
            .map_err(fail(&path, "cannot release the lease"))
    }

    /// Fences every later write transaction of this store by `lease`: each checks, inside
    /// the transaction, that the lease still carries its token, and otherwise is refused with
    /// [`StoreError::Fenced`], writes nothing, and is recorded in [`Store::fenced_writes`].
    ///
    /// On PostgreSQL the session also ends any transaction it leaves idle for
    /// [`IDLE_TRANSACTION_LIMIT`]: a leader paused inside one (SIGSTOP) would otherwise hold
    /// the writer lock, and with it every other writer and the take-over, for as long as it
    /// stays paused.
    pub fn fence(&mut self, lease: &Lease) {
        self.end_idle_transactions();
        self.db.set_fence(Some(Fence {
            lease: lease.name.clone(),
            token: lease.token.0 as i64,
            holder: lease.holder.clone(),
        }));
    }

    /// See [`Store::fence`]: a transaction left idle past [`IDLE_TRANSACTION_LIMIT`] ends
    /// the session (PostgreSQL only; a failure is logged, the store still works).
    pub fn end_idle_transactions(&mut self) {
        if self.db.engine() != Engine::Postgres {
            return;
        }
        let sql = format!(
            "SET idle_in_transaction_session_timeout = {}",
            IDLE_TRANSACTION_LIMIT.as_millis()
        );
        if let Err(error) = self.db.batch(&sql) {
            tracing::warn!(%error, "cannot bound idle transactions");
        }
    }

    /// Every write a fenced store refused, oldest first.
    pub fn fenced_writes(&self) -> Result<Vec<FencedWrite>, StoreError> {
        self.db
            .read(
                "SELECT lease, token, holder, held, at_ms, what FROM fenced_writes ORDER BY id",
                &[],
                |row| {
                    Ok(FencedWrite {
                        lease: row.get(0)?,
                        token: row.get(1)?,
                        holder: row.get(2)?,
                        held: row.get(3)?,
                        at_ms: row.get(4)?,
                        what: row.get(5)?,
                    })
                },
            )
            .map_err(fail(&self.path, "cannot read the fenced writes"))
    }

    /// The database server's clock, ms since the Unix epoch (what leases expire by).
    pub fn database_now_ms(&self) -> Result<i64, StoreError> {
        let sql = format!("SELECT {}", now_expr(self.db.engine()));
        self.db
            .read_one(&sql, &[], |row| row.get(0))
            .map_err(fail(&self.path, "cannot read the database's clock"))
    }

    /// Takes the lease [`CONTROL_LEASE`] for `holder` for `ttl`, or renews it if `holder`
    /// has it: `Some(token)` then (a new token when the lease changes hands, the same on a
    /// renewal), `None` while another holder's lease runs. Never fenced itself: a leader that
    /// lost the lease learns it here as `None`.
    pub fn acquire_lease(
        &mut self,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<FencingToken>, StoreError> {
        let lease = self.try_acquire(CONTROL_LEASE, holder, ttl)?;
        Ok(lease.map(|lease| lease.token))
    }

    /// Gives the lease up now if `holder` has it (a clean shutdown), so a follower need not
    /// wait for it to run out; its token stays, so the next holder's is greater.
    pub fn release_lease(&mut self, holder: &str) -> Result<(), StoreError> {
        let path = self.path.clone();
        let now = now_expr(self.db.engine());
        let released = self.db.unfenced(|db| {
            db.execute(
                &format!(
                    "UPDATE leases SET expires_ms = {now}
                     WHERE name = ?1 AND holder = ?2 AND expires_ms > {now}"
                ),
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
        self.db.set_fence(token.map(|t| Fence {
            lease: CONTROL_LEASE.to_owned(),
            token: t.0 as i64,
            holder: String::new(),
        }));
    }

    /// The lease's holder and token, if it was ever taken.
    pub fn lease_holder(&self) -> Result<Option<(String, FencingToken)>, StoreError> {
        self.lease_holder_of(CONTROL_LEASE)
    }

    /// The holder and token of the lease `name`, if it was ever taken.
    pub fn lease_holder_of(
        &self,
        name: &str,
    ) -> Result<Option<(String, FencingToken)>, StoreError> {
        self.db
            .read_opt(
                "SELECT holder, token FROM leases WHERE name = ?1",
                &vals![name],
                |row| Ok((row.get(0)?, FencingToken(row.get(1)?))),
            )
            .map_err(fail(&self.path, "cannot read the lease"))
    }
}

fn acquire(db: &mut Db, name: &str, holder: &str, ttl: Duration) -> Result<Option<Lease>, DbError> {
    let engine = db.engine();
    db.unfenced(|db| {
        let mut tx = db.write_tx()?;
        let now: i64 = tx.read_one(&format!("SELECT {}", now_expr(engine)), &[], |row| {
            row.get(0)
        })?;
        let current: Option<(String, i64, i64)> = tx.read_opt(
            "SELECT holder, token, expires_ms FROM leases WHERE name = ?1",
            &vals![name],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )?;
        let (token, free_for) = match current {
            Some((other, _, expires)) if other != holder && expires > now => return Ok(None),
            // A renewal keeps the token, as long as the lease has not run out: once it has,
            // a write fenced by the old token may already have been refused, so the next
            // term is a new one even for the same holder.
            Some((_, token, expires)) if expires > now => (token, None),
            Some((_, token, expires)) => {
                let free = Duration::from_millis(u64::try_from(now - expires).unwrap_or(0));
                (token + 1, Some(free))
            }
            None => (1, None),
        };
        let expires = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        tx.execute(
            "INSERT INTO leases (name, holder, token, expires_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, token = excluded.token,
             expires_ms = excluded.expires_ms",
            &vals![name, holder, token, expires],
        )?;
        tx.commit()?;
        Ok(Some(Lease {
            name: name.to_owned(),
            holder: holder.to_owned(),
            token: FencingToken(token as u64),
            free_for,
        }))
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

    /// The replicas' protocol end to end on PostgreSQL: a second holder takes the lease only
    /// once the first's has run out (by the database's clock), with a greater token; the
    /// first holder's renewal then fails, and its ledger append, rollout save and instance
    /// row are refused — nothing of them written — and each is recorded in `fenced_writes`
    /// under its stale token.
    #[test]
    fn a_takeover_after_expiry_refuses_and_records_the_old_leaders_writes() {
        let server = std::sync::Arc::new(crate::testing::PgServer::start());
        let state = crate::testing::TestState::postgres(&server);
        let mut a = state.open();
        let mut b = state.open();
        let ttl = Duration::from_millis(400);
        let first = a.try_acquire("control", "a", ttl).unwrap().unwrap();
        assert_eq!(first.free_for, None);
        a.fence(&first);
        a.set_meta("k", "a's").unwrap();
        assert!(a.renew(&first, ttl).unwrap());
        assert_eq!(b.try_acquire("control", "b", ttl).unwrap(), None);

        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let second = loop {
            if let Some(lease) = b
                .try_acquire("control", "b", Duration::from_secs(60))
                .unwrap()
            {
                break lease;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "b never took the lease"
            );
            std::thread::yield_now();
        };
        assert!(second.token > first.token);
        assert!(second.free_for.is_some());
        b.fence(&second);
        assert!(!a.renew(&first, ttl).unwrap(), "renewal after a take-over");
        assert_eq!(a.try_acquire("control", "a", ttl).unwrap(), None);

        let entry = wharf_ledger::NewEntry::new(
            jiff::Timestamp::from_second(1_700_000_000).unwrap(),
            "a",
            "deploy.step".parse().unwrap(),
            "api",
            serde_json::json!({}),
        )
        .unwrap();
        assert!(wharf_ledger::Ledger::new(&mut a).append(entry).is_err());
        let rollout = crate::RolloutRow {
            service: "api".into(),
            id: 1,
            state: "{}".into(),
        };
        let refused = a.save_rollout(&rollout).unwrap_err();
        assert!(
            matches!(refused, StoreError::Fenced { ours, held, .. }
                if ours == first.token.value() && held == second.token.value()),
            "{refused}"
        );
        let instance = crate::InstanceRow {
            service: "api".into(),
            index: 1,
            version: "v1".into(),
            handle: "{}".into(),
            port: None,
            started_at: "2026-01-01T00:00:00Z".into(),
            restarts: 0,
            spec_hash: "x".into(),
        };
        let refused = a
            .atomically_as("instance.started", |s| s.save_instance(&instance))
            .unwrap_err();
        assert!(matches!(refused, StoreError::Fenced { .. }), "{refused}");

        assert_eq!(b.ledger_entries(&Default::default()).unwrap(), []);
        assert_eq!(b.rollouts().unwrap(), []);
        assert_eq!(b.instances().unwrap(), []);
        let fenced = b.fenced_writes().unwrap();
        let whats: Vec<&str> = fenced.iter().map(|f| f.what.as_str()).collect();
        assert_eq!(
            whats,
            [
                "lease renewal",
                "ledger append",
                "INSERT INTO rollouts",
                "instance.started"
            ]
        );
        for write in &fenced {
            assert_eq!(
                (
                    write.lease.as_str(),
                    write.holder.as_str(),
                    write.token,
                    write.held
                ),
                ("control", "a", first.token.value(), second.token.value())
            );
        }
        // The new leader writes; a release lets the old holder back in under a third token.
        b.set_meta("k", "b's").unwrap();
        b.release(&second).unwrap();
        let third = a.try_acquire("control", "a", ttl).unwrap().unwrap();
        assert!(third.token > second.token);
        // Free from the release on, not since the epoch.
        assert!(
            third.free_for.unwrap() < Duration::from_secs(10),
            "{third:?}"
        );
        assert!(b.set_meta("k", "late").is_err());
        assert_eq!(a.meta("k").unwrap().as_deref(), Some("b's"));
    }
}
