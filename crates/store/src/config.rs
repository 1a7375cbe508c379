//! The `config_revisions` table: every change of a service's configuration overrides, kept in
//! order, so the effective overrides at any revision can be recomputed and rolled back to.
//!
//! A revision's `changes` is a JSON object: a key maps to its new value (a string) or to
//! `null`, which unsets it.

use std::collections::BTreeMap;

use crate::db::{Store, StoreError, fail};
use crate::engine::{DbError, Row, vals};

/// One recorded change of a service's configuration overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigRevision {
    pub id: u64,
    pub service: String,
    /// Key → new value, or `None` to unset the key.
    pub changes: BTreeMap<String, Option<String>>,
    pub actor: String,
    pub reason: String,
    /// RFC 3339.
    pub created_at: String,
}

const COLUMNS: &str = "id, service, changes, actor, reason, created_at";

fn from_row(row: &Row) -> Result<ConfigRevision, DbError> {
    let changes: String = row.get(2)?;
    let changes = serde_json::from_str(&changes).map_err(|e| DbError::Decode {
        column: 2,
        detail: e.to_string(),
    })?;
    Ok(ConfigRevision {
        id: row.get::<i64>(0)? as u64,
        service: row.get(1)?,
        changes,
        actor: row.get(3)?,
        reason: row.get(4)?,
        created_at: row.get(5)?,
    })
}

impl Store {
    /// Records a revision of a service's overrides; returns its id (increasing across all
    /// services).
    pub fn add_config_revision(
        &mut self,
        service: &str,
        changes: &BTreeMap<String, Option<String>>,
        actor: &str,
        reason: &str,
    ) -> Result<u64, StoreError> {
        // A map of strings always serializes; the fallback only keeps this free of panics.
        let json = serde_json::to_string(changes).unwrap_or_else(|_| "{}".to_owned());
        self.db
            .insert_returning(
                "INSERT INTO config_revisions (service, changes, actor, reason, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                &vals![
                    service,
                    json,
                    actor,
                    reason,
                    jiff::Timestamp::now().to_string()
                ],
            )
            .map(|id| id as u64)
            .map_err(fail(&self.path, "cannot record the configuration change"))
    }

    /// Revisions of one service, or of all, oldest first.
    pub fn config_revisions(
        &self,
        service: Option<&str>,
    ) -> Result<Vec<ConfigRevision>, StoreError> {
        self.db
            .read(
                &format!(
                    "SELECT {COLUMNS} FROM config_revisions
                     WHERE CAST(?1 AS TEXT) IS NULL OR service = ?1 ORDER BY id"
                ),
                &vals![service],
                from_row,
            )
            .map_err(fail(&self.path, "cannot read configuration revisions"))
    }

    /// One revision by id.
    pub fn config_revision(&self, id: u64) -> Result<Option<ConfigRevision>, StoreError> {
        self.db
            .read_opt(
                &format!("SELECT {COLUMNS} FROM config_revisions WHERE id = ?1"),
                &vals![id as i64],
                from_row,
            )
            .map_err(fail(&self.path, "cannot read the configuration revision"))
    }

    /// The service's effective overrides after its revisions with id `<= upto` (all when
    /// `None`) are applied in order; `null` unsets a key.
    pub fn config_at(
        &self,
        service: &str,
        upto: Option<u64>,
    ) -> Result<BTreeMap<String, String>, StoreError> {
        let mut effective = BTreeMap::new();
        let revisions = self.config_revisions(Some(service))?;
        for revision in revisions
            .into_iter()
            .take_while(|r| upto.is_none_or(|upto| r.id <= upto))
        {
            for (key, value) in revision.changes {
                match value {
                    Some(value) => effective.insert(key, value),
                    None => effective.remove(&key),
                };
            }
        }
        Ok(effective)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_owned)))
            .collect()
    }

    #[test]
    fn revisions_apply_in_order_and_null_unsets() {
        crate::testing::on_both(|state| {
            let mut store = state.open();
            let a = changes(&[("LOG", Some("debug")), ("PORT", Some("80"))]);
            let r1 = store
                .add_config_revision("api", &a, "ops", "start")
                .unwrap();
            let r2 = store
                .add_config_revision("web", &changes(&[("X", Some("1"))]), "ops", "web")
                .unwrap();
            let b = changes(&[("LOG", None), ("PORT", Some("81"))]);
            let r3 = store
                .add_config_revision("api", &b, "dev", "quiet")
                .unwrap();
            assert!(r1 < r2 && r2 < r3);

            let api = store.config_revisions(Some("api")).unwrap();
            assert_eq!(api.iter().map(|r| r.id).collect::<Vec<_>>(), vec![r1, r3]);
            assert_eq!(api[1].changes, b);
            assert_eq!(api[1].actor, "dev");
            assert_eq!(store.config_revisions(None).unwrap().len(), 3);
            assert_eq!(store.config_revision(r2).unwrap().unwrap().service, "web");
            assert_eq!(store.config_revision(99).unwrap(), None);

            let at = |upto| store.config_at("api", upto).unwrap();
            let map = |pairs: &[(&str, &str)]| {
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>()
            };
            assert_eq!(at(Some(r1)), map(&[("LOG", "debug"), ("PORT", "80")]));
            assert_eq!(at(Some(r2)), map(&[("LOG", "debug"), ("PORT", "80")]));
            assert_eq!(at(None), map(&[("PORT", "81")]));
            assert_eq!(at(Some(0)), BTreeMap::new());
            assert_eq!(store.config_at("nope", None).unwrap(), BTreeMap::new());
        });
    }
}
