//! The `api_tokens` and `deploy_requests` tables. A token row keeps the SHA-256 of its secret,
//! never the secret; a deploy request row is wharf-api's `PendingDeploy` as JSON beside its
//! state. Their history is in the ledger.

use crate::db::{Store, StoreError, fail};
use crate::engine::{DbError, Engine, Row, vals};

/// One API token as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: u64,
    pub name: String,
    pub role: String,
    /// Lowercase hex SHA-256 of the token's secret part.
    pub secret_sha256: String,
    pub created_by: String,
    pub created_at: String,
    pub expires_at: String,
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
}

const TOKEN_COLUMNS: &str =
    "id, name, role, secret_sha256, created_by, created_at, expires_at, revoked_at, revoked_by";

fn token_row(row: &Row) -> Result<TokenRow, DbError> {
    Ok(TokenRow {
        id: row.get::<i64>(0)? as u64,
        name: row.get(1)?,
        role: row.get(2)?,
        secret_sha256: row.get(3)?,
        created_by: row.get(4)?,
        created_at: row.get(5)?,
        expires_at: row.get(6)?,
        revoked_at: row.get(7)?,
        revoked_by: row.get(8)?,
    })
}

impl Store {
    /// Adds a token; its id is the row's.
    pub fn add_token(&mut self, token: &TokenRow) -> Result<u64, StoreError> {
        self.db
            .insert_returning(
                "INSERT INTO api_tokens (name, role, secret_sha256, created_by, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                &vals![
                    &token.name,
                    &token.role,
                    &token.secret_sha256,
                    &token.created_by,
                    &token.created_at,
                    &token.expires_at
                ],
            )
            .map(|id| id as u64)
            .map_err(fail(&self.path, "cannot add the token"))
    }

    /// Every token, revoked and expired ones too, oldest first.
    pub fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        self.db
            .read(
                &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY id"),
                &[],
                token_row,
            )
            .map_err(fail(&self.path, "cannot read tokens"))
    }

    /// Marks a token revoked (a revoked one stays revoked: its first revocation is kept).
    pub fn revoke_token(&mut self, id: u64, at: &str, by: &str) -> Result<(), StoreError> {
        self.db
            .execute(
                "UPDATE api_tokens SET revoked_at = ?2, revoked_by = ?3 WHERE id = ?1 AND revoked_at IS NULL",
                &vals![id as i64, at, by],
            )
            .map(drop)
            .map_err(fail(&self.path, "cannot revoke the token"))
    }

    /// Writes a deploy request's document and state (its id is the control plane's).
    pub fn save_deploy_request(
        &mut self,
        id: u64,
        service: &str,
        state: &str,
        request: &str,
    ) -> Result<(), StoreError> {
        self.db
            .execute(
                "INSERT INTO deploy_requests (id, service, state, request) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state, request = excluded.request",
                &vals![id as i64, service, state, request],
            )
            .map(drop)
            .map_err(fail(&self.path, "cannot save the deploy request"))
    }

    /// The highest deploy request id given so far (0: none).
    pub fn last_deploy_request_id(&self) -> Result<u64, StoreError> {
        self.db
            .read_one(
                "SELECT COALESCE(MAX(id), 0) FROM deploy_requests",
                &[],
                |row| row.get::<i64>(0),
            )
            .map(|id| id as u64)
            .map_err(fail(&self.path, "cannot read deploy requests"))
    }

    /// One deploy request's document.
    pub fn deploy_request(&self, id: u64) -> Result<Option<String>, StoreError> {
        self.db
            .read_opt(
                "SELECT request FROM deploy_requests WHERE id = ?1",
                &vals![id as i64],
                |row| row.get(0),
            )
            .map_err(fail(&self.path, "cannot read the deploy request"))
    }

    /// Open deploy requests, oldest first, then the last `limit` closed ones, newest first.
    pub fn deploy_requests(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        let read = |sql: &str, limit: u32| -> Result<Vec<String>, StoreError> {
            self.db
                .read(sql, &vals![limit], |row| row.get(0))
                .map_err(fail(&self.path, "cannot read deploy requests"))
        };
        let mut all = read(
            "SELECT request FROM deploy_requests WHERE state = 'pending_approval' ORDER BY id LIMIT ?1",
            10_000,
        )?;
        all.extend(read(
            "SELECT request FROM deploy_requests WHERE state != 'pending_approval' ORDER BY id DESC LIMIT ?1",
            limit,
        )?);
        Ok(all)
    }

    /// The last passing and the last verdict of a gate for a target (`GATE/SERVICE@VERSION`):
    /// the `verdict` of the newest `gate.check` entry on it, with its seq.
    pub fn last_gate_verdict(&self, target: &str) -> Result<Option<(u64, String)>, StoreError> {
        // The one query that reads inside a JSON column: each engine's own function.
        let sql = match self.db.engine() {
            Engine::Sqlite => {
                "SELECT seq, json_extract(details, '$.verdict') FROM ledger_entries
                 WHERE action = 'gate.check' AND target = ?1 ORDER BY seq DESC LIMIT 1"
            }
            Engine::Postgres => {
                "SELECT seq, CAST(details AS JSONB) ->> 'verdict' FROM ledger_entries
                 WHERE action = 'gate.check' AND target = ?1 ORDER BY seq DESC LIMIT 1"
            }
        };
        self.db
            .read_opt(sql, &vals![target], |row| {
                Ok((row.get::<i64>(0)? as u64, row.get(1)?))
            })
            .map_err(fail(&self.path, "cannot read gate verdicts"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_their_hash_and_revocation_once() {
        crate::testing::on_both(|state| {
            let mut store = Store::open_location_for_writing(&state.location).unwrap();
            let id = store
                .add_token(&TokenRow {
                    id: 0,
                    name: "alice".into(),
                    role: "operator".into(),
                    secret_sha256: "ab".repeat(32),
                    created_by: "root@host".into(),
                    created_at: "2026-12-05T00:00:00Z".into(),
                    expires_at: "2027-03-05T00:00:00Z".into(),
                    revoked_at: None,
                    revoked_by: None,
                })
                .unwrap();
            store
                .revoke_token(id, "2026-12-06T00:00:00Z", "bob")
                .unwrap();
            store
                .revoke_token(id, "2026-12-07T00:00:00Z", "carol")
                .unwrap();
            let tokens = store.tokens().unwrap();
            assert_eq!(tokens.len(), 1);
            assert_eq!(tokens[0].revoked_by.as_deref(), Some("bob"));
            assert_eq!(tokens[0].secret_sha256, "ab".repeat(32));
        });
    }
}
