//! API tokens, one per person: made with a role and an expiry, shown once, kept only as the
//! SHA-256 of their secret, revocable. Each change is its row and its ledger entry in one
//! transaction; the entry names the holder, the role and the expiry, never the token.
//! [`authenticate`] is the pure check the server runs on every request that presents one.

use jiff::Timestamp;
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};
use wharf_api::{Role, TokenInfo};
use wharf_ledger::KnownAction;
use wharf_store::{Store, TokenRow};

use crate::{Actor, OpsError, append};

/// A token's default life, and the longest one may have.
pub const DEFAULT_LIFETIME: std::time::Duration = std::time::Duration::from_secs(90 * 24 * 3600);
pub const MAX_LIFETIME: std::time::Duration = std::time::Duration::from_secs(400 * 24 * 3600);

/// What every token starts with, so a leaked one is recognisable (secret scanners match it).
pub const PREFIX: &str = "wharf_t";

/// The ledger target of a token holder.
pub fn target(name: &str) -> String {
    format!("token/{name}")
}

fn info(row: &TokenRow) -> TokenInfo {
    TokenInfo {
        id: format!("t-{}", row.id),
        name: row.name.clone(),
        role: row.role.parse().unwrap_or(Role::Viewer),
        created_by: row.created_by.clone(),
        created_at: row.created_at.clone(),
        expires_at: row.expires_at.clone(),
        revoked_at: row.revoked_at.clone(),
        revoked_by: row.revoked_by.clone(),
    }
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A token name: the identity the ledger names, so it must not pass for an OS user
/// (`root@host`) or another kind of actor.
pub fn check_name(name: &str) -> Result<(), OpsError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if matches!(name, "api-token" | "api-socket") {
        return Err(OpsError::Invalid(format!(
            "`{name}` names wharf's own callers (the break-glass token, an unnamed socket peer); pick a person's name"
        )));
    }
    if ok {
        Ok(())
    } else {
        Err(OpsError::Invalid(format!(
            "`{name}` is not a token name: a person's name in lowercase letters, digits, `.`, `_` and `-`, starting with a letter, at most 64 characters"
        )))
    }
}

fn in_force(row: &TokenRow, now: Timestamp) -> bool {
    row.revoked_at.is_none()
        && row
            .expires_at
            .parse::<Timestamp>()
            .is_ok_and(|expires| expires > now)
}

/// Makes a token for `name` with `role`, valid for `lifetime` (default 90 days, at most 400).
/// Answers its description and the token, which is not kept anywhere.
pub fn create(
    store: &mut Store,
    actor: &Actor,
    name: &str,
    role: Role,
    lifetime: Option<&str>,
    now: Timestamp,
) -> Result<(TokenInfo, String), OpsError> {
    check_name(name)?;
    let lifetime = match lifetime {
        None => DEFAULT_LIFETIME,
        Some(text) => {
            let duration: wharf_manifest::values::Duration =
                text.parse()
                    .map_err(|e: wharf_manifest::values::ValueError| {
                        OpsError::Invalid(format!(
                            "`{text}` is not a duration (like `30d`, `12h`): {}",
                            e.0
                        ))
                    })?;
            let duration = duration.as_std();
            if duration.is_zero() || duration > MAX_LIFETIME {
                return Err(OpsError::Invalid(format!(
                    "a token lives more than 0 and at most 400d, not `{text}`"
                )));
            }
            duration
        }
    };
    let expires_at = now
        .checked_add(jiff::SignedDuration::try_from(lifetime).unwrap_or_default())
        .map_err(|_| OpsError::Invalid("the token would expire past year 9999".to_owned()))?;
    let mut secret_bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret_bytes);
    let secret: String = secret_bytes.iter().map(|b| format!("{b:02x}")).collect();
    store.atomically(|store| {
        if let Some(existing) = store
            .tokens()?
            .into_iter()
            .find(|row| row.name == name && in_force(row, now))
        {
            return Err(OpsError::Conflict(format!(
                "`{name}` already holds token t-{} ({}, until {}); revoke it first (`wharf token revoke {name}`)",
                existing.id, existing.role, existing.expires_at
            )));
        }
        let mut row = TokenRow {
            id: 0,
            name: name.to_owned(),
            role: role.as_str().to_owned(),
            secret_sha256: sha256_hex(&secret),
            created_by: actor.0.clone(),
            created_at: now.to_string(),
            expires_at: expires_at.to_string(),
            revoked_at: None,
            revoked_by: None,
        };
        row.id = store.add_token(&row)?;
        append(
            store,
            actor,
            KnownAction::TokenCreate,
            &target(name),
            json!({
                "id": format!("t-{}", row.id),
                "name": name,
                "role": role.as_str(),
                "expires_at": row.expires_at,
            }),
        )?;
        Ok((info(&row), format!("{PREFIX}{}_{secret}", row.id)))
    })
}

/// A dashboard login by `actor` (a token's holder), recorded: how they were identified
/// (`token` and its id, or the break-glass `api-token`). Never the token or the cookie.
pub fn record_login(store: &mut Store, actor: &Actor, token: Option<u64>) -> Result<(), OpsError> {
    let credential = match token {
        Some(id) => json!({"credential": "token", "token": format!("t-{id}")}),
        None => json!({"credential": "api-token"}),
    };
    store.atomically(|store| {
        append(
            store,
            actor,
            KnownAction::SessionLogin,
            &format!("session/{}", actor.0),
            credential,
        )
        .map(|_| ())
    })
}

/// A dashboard logout by `actor`, recorded.
pub fn record_logout(store: &mut Store, actor: &Actor) -> Result<(), OpsError> {
    store.atomically(|store| {
        append(
            store,
            actor,
            KnownAction::SessionLogout,
            &format!("session/{}", actor.0),
            json!({}),
        )
        .map(|_| ())
    })
}

/// Every token, newest last (revoked and expired ones too: the list is the register).
pub fn list(store: &Store) -> Result<Vec<TokenInfo>, OpsError> {
    Ok(store.tokens()?.iter().map(info).collect())
}

/// Revokes the token in force of `who` (a name or `t-N`).
pub fn revoke(
    store: &mut Store,
    actor: &Actor,
    who: &str,
    now: Timestamp,
) -> Result<TokenInfo, OpsError> {
    store.atomically(|store| {
        let rows = store.tokens()?;
        let by_id = who.strip_prefix("t-").and_then(|n| n.parse::<u64>().ok());
        let row = rows
            .iter()
            .filter(|row| match by_id {
                Some(id) => row.id == id,
                None => row.name == who,
            })
            .rfind(|row| row.revoked_at.is_none())
            .ok_or_else(|| {
                OpsError::NotFound(format!("no token in force is `{who}` (`wharf token list`)"))
            })?
            .clone();
        store.revoke_token(row.id, &now.to_string(), &actor.0)?;
        append(
            store,
            actor,
            KnownAction::TokenRevoke,
            &target(&row.name),
            json!({"id": format!("t-{}", row.id), "name": row.name, "role": row.role}),
        )?;
        let mut revoked = row;
        revoked.revoked_at = Some(now.to_string());
        revoked.revoked_by = Some(actor.0.clone());
        Ok(info(&revoked))
    })
}

/// Whether two secrets are equal, in time that depends on their lengths only (the API's
/// break-glass token and a token's hash are both compared through it).
pub fn same_secret(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Why a presented token is refused. The message never holds the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("a valid bearer token is required")]
    Unknown,
    #[error("this token was revoked")]
    Revoked,
    #[error("this token has expired")]
    Expired,
}

/// Who a token names: its holder, their role, and who made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The token's row (`t-N`), what a dashboard session keeps to look it up again.
    pub id: u64,
    pub name: String,
    pub role: Role,
    pub created_by: String,
}

/// Who holds `presented` (`wharf_tN_<64 hex>`), if it is a token in force among `rows`.
/// The secret is compared by its SHA-256 in constant time.
pub fn authenticate(
    rows: &[TokenRow],
    presented: &str,
    now: Timestamp,
) -> Result<Holder, TokenRefusal> {
    let rest = presented
        .strip_prefix(PREFIX)
        .ok_or(TokenRefusal::Unknown)?;
    let (id, secret) = rest.split_once('_').ok_or(TokenRefusal::Unknown)?;
    let id: u64 = id.parse().map_err(|_| TokenRefusal::Unknown)?;
    let row = rows
        .iter()
        .find(|r| r.id == id)
        .ok_or(TokenRefusal::Unknown)?;
    let given = sha256_hex(secret);
    if !same_secret(&given, &row.secret_sha256) {
        return Err(TokenRefusal::Unknown);
    }
    holder_of(row, now)
}

/// Who holds the token of row `id`, if it is still in force: a session made with a token
/// ends when its token is revoked or expires.
pub fn holder_by_id(rows: &[TokenRow], id: u64, now: Timestamp) -> Result<Holder, TokenRefusal> {
    let row = rows
        .iter()
        .find(|r| r.id == id)
        .ok_or(TokenRefusal::Unknown)?;
    holder_of(row, now)
}

fn holder_of(row: &TokenRow, now: Timestamp) -> Result<Holder, TokenRefusal> {
    if row.revoked_at.is_some() {
        return Err(TokenRefusal::Revoked);
    }
    if !in_force(row, now) {
        return Err(TokenRefusal::Expired);
    }
    let role = row.role.parse().map_err(|_| TokenRefusal::Unknown)?;
    Ok(Holder {
        id: row.id,
        name: row.name.clone(),
        role,
        created_by: row.created_by.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_for_writing(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn a_token_authenticates_its_holder_until_revoked_and_never_reaches_the_ledger() {
        let (_dir, mut store) = store();
        let admin = Actor("root@host".into());
        let now = Timestamp::now();
        let (info, token) = create(&mut store, &admin, "alice", Role::Operator, None, now).unwrap();
        assert_eq!(info.name, "alice");
        let rows = store.tokens().unwrap();
        assert_eq!(
            authenticate(&rows, &token, now),
            Ok(Holder {
                id: info.id.trim_start_matches("t-").parse().unwrap(),
                name: "alice".into(),
                role: Role::Operator,
                created_by: "root@host".into()
            })
        );
        // A wrong secret with the right id, a mangled token, another id: unknown.
        let wrong = format!("{}0", &token[..token.len() - 1]);
        let wrong = if wrong == token {
            format!("{}1", &token[..token.len() - 1])
        } else {
            wrong
        };
        assert_eq!(authenticate(&rows, &wrong, now), Err(TokenRefusal::Unknown));
        assert_eq!(
            authenticate(&rows, "Bearer x", now),
            Err(TokenRefusal::Unknown)
        );
        // Two tokens in force for one person are refused.
        let again = create(&mut store, &admin, "alice", Role::Admin, None, now).unwrap_err();
        assert!(again.to_string().contains("already holds"), "{again}");
        revoke(&mut store, &admin, "alice", now).unwrap();
        let rows = store.tokens().unwrap();
        assert_eq!(authenticate(&rows, &token, now), Err(TokenRefusal::Revoked));
        let ledger = store.ledger_entries(&Default::default()).unwrap();
        let text = format!("{ledger:?}");
        let secret = token.rsplit('_').next().unwrap();
        assert!(!text.contains(secret), "the token reached the ledger");
        assert!(text.contains("token.create") && text.contains("token.revoke"));
        // After revocation a new one may be made.
        create(&mut store, &admin, "alice", Role::Viewer, Some("1d"), now).unwrap();
    }

    #[test]
    fn expired_tokens_and_bad_requests_are_refused() {
        let (_dir, mut store) = store();
        let admin = Actor("root@host".into());
        let now = Timestamp::now();
        let (_, token) =
            create(&mut store, &admin, "bob", Role::Approver, Some("1h"), now).unwrap();
        let later = now + jiff::SignedDuration::from_hours(2);
        let rows = store.tokens().unwrap();
        assert_eq!(
            authenticate(&rows, &token, later),
            Err(TokenRefusal::Expired)
        );
        for (name, lifetime) in [
            ("Bob", None),
            ("root@host", None),
            ("api-token", None),
            ("carol", Some("500d")),
            ("carol", Some("soon")),
        ] {
            let err = create(&mut store, &admin, name, Role::Viewer, lifetime, now).unwrap_err();
            assert_eq!(
                err.kind(),
                crate::OpsErrorKind::Invalid,
                "{name} {lifetime:?}: {err}"
            );
        }
        assert_eq!(
            revoke(&mut store, &admin, "nobody", now)
                .unwrap_err()
                .kind(),
            crate::OpsErrorKind::NotFound
        );
    }
}
