//! The `secret_versions` table: one row per version of a secret, its value only as ciphertext
//! under a per-version data key that is itself stored wrapped under the master key.
//!
//! The store never sees a plaintext value or key: encryption and unwrapping live in
//! `wharf-secrets`. Rows are append-only except for [`Store::rewrap_secrets`], which replaces
//! the wrapped data keys (never the ciphertexts) when the master key changes.

use crate::db::{Store, StoreError, UPSERT_META, fail};
use crate::engine::{Db, DbError, Row, Value, vals};

/// One stored version of a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVersionRow {
    pub name: String,
    pub version: u32,
    /// RFC 3339.
    pub created_at: String,
    pub actor: String,
    pub reason: Option<String>,
    /// `set`, `rotate`, `rollback:V`.
    pub origin: String,
    /// Keyed fingerprint of the value (hex).
    pub fingerprint: String,
    /// The data key, encrypted under the master key.
    pub wrapped_key: Vec<u8>,
    /// The nonce of `wrapped_key`.
    pub key_nonce: Vec<u8>,
    /// The nonce of `ciphertext`.
    pub nonce: Vec<u8>,
    /// The value, encrypted under the data key.
    pub ciphertext: Vec<u8>,
}

/// A data key re-wrapped under a new master key (see [`Store::rewrap_secrets`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrappedKey {
    pub name: String,
    pub version: u32,
    pub wrapped_key: Vec<u8>,
    pub key_nonce: Vec<u8>,
}

const COLUMNS: &str = "name, version, created_at, actor, reason, origin, fingerprint, \
                       wrapped_key, key_nonce, nonce, ciphertext";

fn from_row(row: &Row) -> Result<SecretVersionRow, DbError> {
    Ok(SecretVersionRow {
        name: row.get(0)?,
        version: row.get(1)?,
        created_at: row.get(2)?,
        actor: row.get(3)?,
        reason: row.get(4)?,
        origin: row.get(5)?,
        fingerprint: row.get(6)?,
        wrapped_key: row.get(7)?,
        key_nonce: row.get(8)?,
        nonce: row.get(9)?,
        ciphertext: row.get(10)?,
    })
}

impl Store {
    /// Appends a version; fails if `(name, version)` exists already (a concurrent writer took
    /// the number), so a version is never overwritten.
    pub fn insert_secret_version(&mut self, row: &SecretVersionRow) -> Result<(), StoreError> {
        self.db
            .execute(
                &format!(
                    "INSERT INTO secret_versions ({COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                ),
                &vals![
                    &row.name,
                    row.version,
                    &row.created_at,
                    &row.actor,
                    &row.reason,
                    &row.origin,
                    &row.fingerprint,
                    &row.wrapped_key,
                    &row.key_nonce,
                    &row.nonce,
                    &row.ciphertext,
                ],
            )
            .map(drop)
            .map_err(fail(
                &self.path,
                "cannot store the secret version (does it exist already?)",
            ))
    }

    /// The latest version of a secret.
    pub fn latest_secret_version(
        &self,
        name: &str,
    ) -> Result<Option<SecretVersionRow>, StoreError> {
        self.db
            .read_opt(
                &format!(
                    "SELECT {COLUMNS} FROM secret_versions WHERE name = ?1
                     ORDER BY version DESC LIMIT 1"
                ),
                &vals![name],
                from_row,
            )
            .map_err(fail(&self.path, "cannot read the secret"))
    }

    /// One version of a secret.
    pub fn secret_version(
        &self,
        name: &str,
        version: u32,
    ) -> Result<Option<SecretVersionRow>, StoreError> {
        self.db
            .read_opt(
                &format!("SELECT {COLUMNS} FROM secret_versions WHERE name = ?1 AND version = ?2"),
                &vals![name, version],
                from_row,
            )
            .map_err(fail(&self.path, "cannot read the secret"))
    }

    /// Every version of a secret, oldest first.
    pub fn secret_versions(&self, name: &str) -> Result<Vec<SecretVersionRow>, StoreError> {
        self.select_secrets(
            &format!("SELECT {COLUMNS} FROM secret_versions WHERE name = ?1 ORDER BY version"),
            &vals![name],
        )
    }

    /// The latest version of every secret, by name.
    pub fn latest_secret_versions(&self) -> Result<Vec<SecretVersionRow>, StoreError> {
        self.select_secrets(
            &format!(
                "SELECT {COLUMNS} FROM secret_versions AS s
                 WHERE version = (SELECT MAX(version) FROM secret_versions WHERE name = s.name)
                 ORDER BY name"
            ),
            &[],
        )
    }

    /// Every version of every secret (for re-wrapping), by name and version.
    pub fn all_secret_versions(&self) -> Result<Vec<SecretVersionRow>, StoreError> {
        self.select_secrets(
            &format!("SELECT {COLUMNS} FROM secret_versions ORDER BY name, version"),
            &[],
        )
    }

    fn select_secrets(
        &self,
        sql: &str,
        args: &[Value],
    ) -> Result<Vec<SecretVersionRow>, StoreError> {
        self.db
            .read(sql, args, from_row)
            .map_err(fail(&self.path, "cannot read secrets"))
    }

    /// Replaces the wrapped data key of every listed version and the given meta values, all in
    /// one transaction: either everything moves to the new master key or nothing does.
    ///
    /// `rows` must cover every stored version; if the table holds a version that is not
    /// listed (another process added one meanwhile) or a listed one is gone, nothing changes.
    pub fn rewrap_secrets(
        &mut self,
        rows: &[RewrappedKey],
        meta: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let mut tx = self
            .write_tx()
            .map_err(fail(&path, "cannot start the re-wrap"))?;
        let stored: i64 = tx
            .read_one("SELECT COUNT(*) FROM secret_versions", &[], |row| {
                row.get(0)
            })
            .map_err(fail(&path, "cannot count secrets"))?;
        let changed = || fail(&path, "secrets changed during the re-wrap; run it again");
        if stored as usize != rows.len() {
            return Err(changed()(DbError::ChangedRows(stored as u64)));
        }
        for row in rows {
            let n = tx
                .execute(
                    "UPDATE secret_versions SET wrapped_key = ?3, key_nonce = ?4
                     WHERE name = ?1 AND version = ?2",
                    &vals![&row.name, row.version, &row.wrapped_key, &row.key_nonce],
                )
                .map_err(fail(&path, "cannot re-wrap secrets"))?;
            if n != 1 {
                return Err(changed()(DbError::ChangedRows(n)));
            }
        }
        put_meta(&mut tx, meta).map_err(fail(&path, "cannot write meta"))?;
        tx.commit()
            .map_err(fail(&path, "cannot commit the re-wrap"))
    }

    /// Writes several meta values in one transaction (all or none).
    pub fn set_meta_values(&mut self, values: &[(&str, &str)]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let mut tx = self.write_tx().map_err(fail(&path, "cannot write meta"))?;
        put_meta(&mut tx, values).map_err(fail(&path, "cannot write meta"))?;
        tx.commit().map_err(fail(&path, "cannot write meta"))
    }
}

fn put_meta(tx: &mut Db, values: &[(&str, &str)]) -> Result<(), DbError> {
    for (key, value) in values {
        tx.execute(UPSERT_META, &vals![*key, *value])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, version: u32) -> SecretVersionRow {
        SecretVersionRow {
            name: name.into(),
            version,
            created_at: "2025-01-01T00:00:00Z".into(),
            actor: "ops".into(),
            reason: (version == 1).then(|| "first".to_owned()),
            origin: "set".into(),
            fingerprint: format!("fp{version}"),
            wrapped_key: vec![1, version as u8],
            key_nonce: vec![2; 24],
            nonce: vec![3; 24],
            ciphertext: vec![4, version as u8],
        }
    }

    #[test]
    fn versions_are_appended_never_overwritten_and_read_back() {
        crate::testing::on_both(|state| {
            let mut store = state.open();
            for (name, version) in [("db", 1), ("db", 2), ("api", 1)] {
                store.insert_secret_version(&row(name, version)).unwrap();
            }
            assert!(store.insert_secret_version(&row("db", 2)).is_err());
            assert_eq!(
                store.latest_secret_version("db").unwrap(),
                Some(row("db", 2))
            );
            assert_eq!(store.latest_secret_version("nope").unwrap(), None);
            assert_eq!(store.secret_version("db", 1).unwrap(), Some(row("db", 1)));
            assert_eq!(store.secret_version("db", 3).unwrap(), None);
            assert_eq!(
                store.secret_versions("db").unwrap(),
                vec![row("db", 1), row("db", 2)]
            );
            assert_eq!(
                store.latest_secret_versions().unwrap(),
                vec![row("api", 1), row("db", 2)]
            );
            assert_eq!(store.all_secret_versions().unwrap().len(), 3);
        });
    }

    #[test]
    fn a_rewrap_is_all_or_nothing() {
        crate::testing::on_both(|state| {
            let mut store = state.open();
            store.insert_secret_version(&row("db", 1)).unwrap();
            store.insert_secret_version(&row("db", 2)).unwrap();
            let new = |version: u32| RewrappedKey {
                name: "db".into(),
                version,
                wrapped_key: vec![9, version as u8],
                key_nonce: vec![8; 24],
            };
            // Missing a row: refused, nothing changed.
            assert!(store.rewrap_secrets(&[new(1)], &[("k", "v")]).is_err());
            assert_eq!(store.all_secret_versions().unwrap()[0], row("db", 1));
            assert_eq!(store.meta("k").unwrap(), None);
            // A listed row that does not exist: refused, nothing changed.
            let mut ghost = new(3);
            ghost.version = 7;
            assert!(
                store
                    .rewrap_secrets(&[new(1), ghost], &[("k", "v")])
                    .is_err()
            );
            assert_eq!(store.all_secret_versions().unwrap()[0], row("db", 1));

            store
                .rewrap_secrets(&[new(1), new(2)], &[("k", "v")])
                .unwrap();
            let rows = store.all_secret_versions().unwrap();
            assert_eq!(rows[1].wrapped_key, vec![9, 2]);
            assert_eq!(rows[1].ciphertext, row("db", 2).ciphertext);
            assert_eq!(store.meta("k").unwrap().as_deref(), Some("v"));
        });
    }
}
