//! The `alert_pages` and `alert_outbox` tables: the pages alerting has open, and the notices
//! it owes its receivers. Opaque JSON, like the rollouts: the control plane owns their shape.
//! Receivers' URLs and keys are never stored here — they stay secrets, resolved at delivery.

use crate::db::{Store, StoreError, fail};
use crate::engine::vals;

/// A notice not yet delivered nor given up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingNotice {
    pub id: u64,
    /// The alert (rule) whose receiver it goes to.
    pub receiver: String,
    /// JSON.
    pub notice: String,
}

impl Store {
    /// Records a page as open (or replaces it).
    pub fn save_alert_page(
        &mut self,
        dedup_key: &str,
        rule: &str,
        page: &str,
        opened_at: &str,
    ) -> Result<(), StoreError> {
        self.db
            .execute(
                "INSERT INTO alert_pages (dedup_key, rule, page, opened_at, resolved_at)
                 VALUES (?1, ?2, ?3, ?4, NULL)
                 ON CONFLICT (dedup_key) DO UPDATE SET rule = excluded.rule, page = excluded.page,
                 opened_at = excluded.opened_at, resolved_at = NULL",
                &vals![dedup_key, rule, page, opened_at],
            )
            .map(drop)
            .map_err(fail(&self.path, "cannot save the alert page"))
    }

    /// Marks a page resolved, with its final document.
    pub fn resolve_alert_page(
        &mut self,
        dedup_key: &str,
        page: &str,
        resolved_at: &str,
    ) -> Result<(), StoreError> {
        self.db
            .execute(
                "UPDATE alert_pages SET page = ?2, resolved_at = ?3 WHERE dedup_key = ?1",
                &vals![dedup_key, page, resolved_at],
            )
            .map(drop)
            .map_err(fail(&self.path, "cannot resolve the alert page"))
    }

    /// The pages still open (JSON), oldest first.
    pub fn open_alert_pages(&self) -> Result<Vec<String>, StoreError> {
        self.db
            .read(
                "SELECT page FROM alert_pages WHERE resolved_at IS NULL ORDER BY opened_at",
                &[],
                |row| row.get(0),
            )
            .map_err(fail(&self.path, "cannot read alert pages"))
    }

    /// Queues a notice for a receiver under the id the control plane gave it.
    pub fn add_alert_notice(
        &mut self,
        id: u64,
        receiver: &str,
        notice: &str,
    ) -> Result<(), StoreError> {
        self.db
            .execute(
                "INSERT INTO alert_outbox (id, receiver, notice, created_at) VALUES (?1, ?2, ?3, ?4)",
                &vals![id as i64, receiver, notice, jiff::Timestamp::now().to_string()],
            )
            .map(drop)
            .map_err(fail(&self.path, "cannot queue the alert notice"))
    }

    /// A notice reached its receiver (`gave_up: None`) or will never (`Some(reason)`).
    pub fn finish_alert_notice(
        &mut self,
        id: u64,
        attempts: u32,
        gave_up: Option<&str>,
    ) -> Result<(), StoreError> {
        self.db
            .execute(
                "UPDATE alert_outbox SET attempts = ?2,
                 delivered_at = CASE WHEN CAST(?3 AS TEXT) IS NULL THEN CAST(?4 AS TEXT) END,
                 gave_up = ?3 WHERE id = ?1",
                &vals![
                    id as i64,
                    attempts,
                    gave_up,
                    jiff::Timestamp::now().to_string()
                ],
            )
            .map(drop)
            .map_err(fail(&self.path, "cannot record the notice's delivery"))
    }

    /// Notices neither delivered nor given up on, in the order they were queued.
    pub fn pending_alert_notices(&self) -> Result<Vec<PendingNotice>, StoreError> {
        self.db
            .read(
                "SELECT id, receiver, notice FROM alert_outbox
                 WHERE delivered_at IS NULL AND gave_up IS NULL ORDER BY id",
                &[],
                |row| {
                    Ok(PendingNotice {
                        id: row.get::<i64>(0)? as u64,
                        receiver: row.get(1)?,
                        notice: row.get(2)?,
                    })
                },
            )
            .map_err(fail(&self.path, "cannot read the alert outbox"))
    }

    /// The highest notice id given so far (0 when none).
    pub fn last_alert_notice_id(&self) -> Result<u64, StoreError> {
        self.db
            .read_opt("SELECT MAX(id) FROM alert_outbox", &[], |row| {
                row.get::<Option<i64>>(0)
            })
            .map(|id| id.flatten().unwrap_or(0) as u64)
            .map_err(fail(&self.path, "cannot read the alert outbox"))
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn pages_and_notices_survive_reopening_until_resolved_and_delivered() {
        crate::testing::on_both(|state| {
            {
                let mut store = state.open();
                store
                    .save_alert_page("k1", "oncall", "{\"a\":1}", "2026-01-01T00:00:00Z")
                    .unwrap();
                store
                    .save_alert_page("k2", "oncall", "{\"b\":1}", "2026-01-01T00:00:01Z")
                    .unwrap();
                store
                    .resolve_alert_page("k2", "{\"b\":2}", "2026-01-01T00:00:02Z")
                    .unwrap();
                store.add_alert_notice(1, "oncall", "{\"n\":1}").unwrap();
                store.add_alert_notice(2, "oncall", "{\"n\":2}").unwrap();
                store.add_alert_notice(3, "oncall", "{\"n\":3}").unwrap();
                store.finish_alert_notice(1, 1, None).unwrap();
                store.finish_alert_notice(3, 4, Some("HTTP 400")).unwrap();
            }
            let store = state.open();
            assert_eq!(store.open_alert_pages().unwrap(), ["{\"a\":1}"]);
            let pending = store.pending_alert_notices().unwrap();
            assert_eq!(pending.len(), 1);
            assert_eq!(
                (pending[0].id, pending[0].notice.as_str()),
                (2, "{\"n\":2}")
            );
            assert_eq!(store.last_alert_notice_id().unwrap(), 3);
        });
    }
}
