//! Dashboard sessions: a token exchanged once at login for an HttpOnly, SameSite=Strict cookie,
//! and a CSRF token bound to the session that every change must carry in a header.
//!
//! Sessions live in memory only (a restarted control plane asks people to log in again) and
//! hold no token: a session made with a person's token keeps the token's row id and looks the
//! row up on every request, so revoking or expiring the token ends its sessions at once. The
//! cookie's value is 32 random bytes; the table is keyed by its SHA-256, so the table alone
//! does not let anyone present a session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::{Digest, Sha256};
use wharf_api::Caller;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "wharf_session";
/// The header a change carries its session's CSRF token in.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts from login, whatever its use.
pub(crate) const LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// The most sessions kept in all; past it a login is refused.
const MAX_SESSIONS: usize = 1024;
/// The most sessions one holder keeps; past it their own oldest is ended.
const MAX_PER_HOLDER: usize = 16;

/// Every session slot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

/// How a session's holder was identified at login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Credential {
    /// A person's token: its row, looked up again on every request.
    Token(u64),
    /// The listener's break-glass token.
    BreakGlass,
}

/// One logged-in browser.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub caller: Caller,
    pub credential: Credential,
    pub csrf: String,
    created: Instant,
}

/// The sessions of one control plane, shared by its listeners, and the one live feed
/// (`feed.rs`) their pages read, whichever listener serves them.
#[derive(Clone, Default)]
pub struct Sessions {
    table: Arc<Mutex<HashMap<String, Session>>>,
    feed: super::feed::Feed,
}

impl Sessions {
    pub fn new() -> Sessions {
        Sessions::default()
    }

    /// The control plane's live feed.
    pub(crate) fn feed(&self) -> &super::feed::Feed {
        &self.feed
    }

    /// Starts a session; answers the cookie value (shown to the browser once) and the session.
    /// A holder keeps at most [`MAX_PER_HOLDER`] sessions (a new login ends their own oldest);
    /// past [`MAX_SESSIONS`] in all a login is refused rather than ending someone else's.
    pub(crate) fn start(
        &self,
        caller: Caller,
        credential: Credential,
    ) -> Result<(String, Session), Full> {
        let cookie = random_hex();
        let session = Session {
            caller,
            credential,
            csrf: random_hex(),
            created: Instant::now(),
        };
        let mut table = self.lock();
        table.retain(|_, s| s.created.elapsed() < LIFETIME);
        let holder = |s: &Session| {
            s.credential == session.credential && s.caller.name == session.caller.name
        };
        if table.values().filter(|s| holder(s)).count() >= MAX_PER_HOLDER
            && let Some(oldest) = table
                .iter()
                .filter(|(_, s)| holder(s))
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone())
        {
            table.remove(&oldest);
        }
        if table.len() >= MAX_SESSIONS {
            return Err(Full);
        }
        table.insert(key(&cookie), session.clone());
        Ok((cookie, session))
    }

    /// The session a cookie value names, if it is live.
    pub(crate) fn find(&self, cookie: &str) -> Option<Session> {
        let mut table = self.lock();
        let key = key(cookie);
        let session = table.get(&key)?;
        if session.created.elapsed() >= LIFETIME {
            table.remove(&key);
            return None;
        }
        Some(session.clone())
    }

    /// Ends the session a cookie value names.
    pub(crate) fn end(&self, cookie: &str) -> Option<Session> {
        self.lock().remove(&key(cookie))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex(&bytes)
}

fn key(cookie: &str) -> String {
    hex(&Sha256::digest(cookie.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every session cookie value among a request's `Cookie` headers (another page of the same
/// host can set one beside ours: each is tried).
pub(crate) fn cookie_values(headers: &axum::http::HeaderMap) -> Vec<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| !value.is_empty())
        .take(8)
        .collect()
}

/// The `Set-Cookie` value that starts a session (`Secure` when served over TLS).
pub(crate) fn set_cookie(value: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        LIFETIME.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends one.
pub(crate) fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_api::Role;

    fn caller() -> Caller {
        Caller {
            name: "alice".into(),
            role: Role::Operator,
            via: "session".into(),
            vouched_by: None,
        }
    }

    #[test]
    fn a_session_is_found_by_its_cookie_only_and_ends() {
        let sessions = Sessions::new();
        let (cookie, session) = sessions.start(caller(), Credential::Token(3)).unwrap();
        assert_eq!(cookie.len(), 64);
        assert_ne!(cookie, session.csrf);
        assert_eq!(sessions.find(&cookie).unwrap().caller.name, "alice");
        assert!(sessions.find(&session.csrf).is_none());
        assert!(sessions.find("").is_none());
        assert!(sessions.end(&cookie).is_some());
        assert!(sessions.find(&cookie).is_none());
    }

    #[test]
    fn a_holder_keeps_sixteen_sessions_and_ends_only_their_own() {
        let sessions = Sessions::new();
        let (other, _) = sessions.start(caller(), Credential::Token(9)).unwrap();
        let first = sessions.start(caller(), Credential::Token(3)).unwrap().0;
        for _ in 0..MAX_PER_HOLDER {
            sessions.start(caller(), Credential::Token(3)).unwrap();
        }
        assert!(sessions.find(&first).is_none(), "the holder's oldest ended");
        assert!(
            sessions.find(&other).is_some(),
            "another credential's session stays"
        );
    }

    #[test]
    fn the_cookie_is_read_among_others_and_set_strict() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            "a=1; wharf_session=abc ; b=2".parse().unwrap(),
        );
        assert_eq!(cookie_values(&headers), ["abc"]);
        headers.append(
            axum::http::header::COOKIE,
            "wharf_session=planted".parse().unwrap(),
        );
        assert_eq!(cookie_values(&headers), ["abc", "planted"]);
        let set = set_cookie("abc", true);
        for part in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
            assert!(set.contains(part), "{set}");
        }
        assert!(!set_cookie("abc", false).contains("Secure"));
    }
}
