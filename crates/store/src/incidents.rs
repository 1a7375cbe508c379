//! The `silences` and `incidents` tables: each row a JSON document (wharf-api's `Silence` and
//! `Incident`, which wharf-ops writes), beside the columns the queries select on. Ids are the
//! rows' own, given here; the history of each is in the ledger.

use crate::db::{Store, StoreError, fail};
use crate::engine::vals;

impl Store {
    /// A new silence's id (the row holds a placeholder until [`Store::save_silence`]).
    pub fn new_silence_id(&mut self, ends_at: &str) -> Result<u64, StoreError> {
        self.db
            .insert_returning(
                "INSERT INTO silences (ends_at, silence) VALUES (?1, '{}') RETURNING id",
                &vals![ends_at],
            )
            .map(|id| id as u64)
            .map_err(fail(&self.path, "cannot add the silence"))
    }

    /// Writes a silence's document and columns.
    pub fn save_silence(
        &mut self,
        id: u64,
        ends_at: &str,
        expired_at: Option<&str>,
        silence: &str,
    ) -> Result<(), StoreError> {
        self.db
            .execute(
                "UPDATE silences SET ends_at = ?2, expired_at = ?3, silence = ?4 WHERE id = ?1",
                &vals![id as i64, ends_at, expired_at, silence],
            )
            .map(drop)
            .map_err(fail(&self.path, "cannot save the silence"))
    }

    /// One silence's document.
    pub fn silence(&self, id: u64) -> Result<Option<String>, StoreError> {
        self.db
            .read_opt(
                "SELECT silence FROM silences WHERE id = ?1",
                &vals![id as i64],
                |row| row.get(0),
            )
            .map_err(fail(&self.path, "cannot read the silence"))
    }

    /// Silences not marked expired (some may have run out: their `ends_at` says), oldest
    /// first; with `all`, the last `limit` of every silence, newest first.
    pub fn silences(&self, all: bool, limit: u32) -> Result<Vec<String>, StoreError> {
        let sql = if all {
            "SELECT silence FROM silences ORDER BY id DESC LIMIT ?1"
        } else {
            "SELECT silence FROM silences WHERE expired_at IS NULL ORDER BY id LIMIT ?1"
        };
        self.db
            .read(sql, &vals![limit], |row| row.get(0))
            .map_err(fail(&self.path, "cannot read silences"))
    }

    /// A new incident's id (the row holds a placeholder until [`Store::save_incident`]).
    pub fn new_incident_id(&mut self, declared_at: &str) -> Result<u64, StoreError> {
        self.db
            .insert_returning(
                "INSERT INTO incidents (status, declared_at, incident) VALUES ('investigating', ?1, '{}') RETURNING id",
                &vals![declared_at],
            )
            .map(|id| id as u64)
            .map_err(fail(&self.path, "cannot add the incident"))
    }

    /// Writes an incident's document and status.
    pub fn save_incident(
        &mut self,
        id: u64,
        status: &str,
        incident: &str,
    ) -> Result<(), StoreError> {
        self.db
            .execute(
                "UPDATE incidents SET status = ?2, incident = ?3 WHERE id = ?1",
                &vals![id as i64, status, incident],
            )
            .map(drop)
            .map_err(fail(&self.path, "cannot save the incident"))
    }

    /// One incident's document.
    pub fn incident(&self, id: u64) -> Result<Option<String>, StoreError> {
        self.db
            .read_opt(
                "SELECT incident FROM incidents WHERE id = ?1",
                &vals![id as i64],
                |row| row.get(0),
            )
            .map_err(fail(&self.path, "cannot read the incident"))
    }

    /// Incidents newest first: the unresolved ones, or with `all` the last `limit` of every one.
    pub fn incidents(&self, all: bool, limit: u32) -> Result<Vec<String>, StoreError> {
        let sql = if all {
            "SELECT incident FROM incidents ORDER BY id DESC LIMIT ?1"
        } else {
            "SELECT incident FROM incidents WHERE status != 'resolved' ORDER BY id DESC LIMIT ?1"
        };
        self.db
            .read(sql, &vals![limit], |row| row.get(0))
            .map_err(fail(&self.path, "cannot read incidents"))
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn silences_and_incidents_keep_their_documents_and_filter_by_state() {
        crate::testing::on_both(|state| {
            let mut store = state.open();
            let a = store.new_silence_id("2026-01-01T01:00:00Z").unwrap();
            let b = store.new_silence_id("2026-01-01T02:00:00Z").unwrap();
            store
                .save_silence(a, "2026-01-01T01:00:00Z", None, "{\"a\":1}")
                .unwrap();
            store
                .save_silence(
                    b,
                    "2026-01-01T02:00:00Z",
                    Some("2026-01-01T00:30:00Z"),
                    "{\"b\":1}",
                )
                .unwrap();
            assert_eq!(store.silences(false, 10).unwrap(), ["{\"a\":1}"]);
            assert_eq!(
                store.silences(true, 10).unwrap(),
                ["{\"b\":1}", "{\"a\":1}"]
            );
            assert_eq!(store.silence(b).unwrap().as_deref(), Some("{\"b\":1}"));
            let one = store.new_incident_id("2026-01-01T00:00:00Z").unwrap();
            let two = store.new_incident_id("2026-01-01T00:01:00Z").unwrap();
            assert!(two > one);
            store.save_incident(one, "resolved", "{\"i\":1}").unwrap();
            store.save_incident(two, "monitoring", "{\"i\":2}").unwrap();
            assert_eq!(store.incidents(false, 10).unwrap(), ["{\"i\":2}"]);
            assert_eq!(
                store.incidents(true, 10).unwrap(),
                ["{\"i\":2}", "{\"i\":1}"]
            );
            assert_eq!(store.incident(3).unwrap(), None);
        });
    }
}
