//! Where the state lives: a state directory (SQLite, `state.db` inside it) or a PostgreSQL
//! database named by a DSN. A DSN's password never leaves [`PgDsn`]: its `Debug` and
//! `Display`, and every error about it, show `postgres://user@host:port/db` only.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use postgres::config::{Host, SslMode};

use crate::db::StoreError;

/// The state database's location.
#[derive(Debug, Clone)]
pub enum StateLocation {
    /// A state directory: SQLite in `state.db` (the key file, logs and sockets beside it).
    Dir(PathBuf),
    /// A PostgreSQL database.
    Postgres(PgDsn),
}

impl StateLocation {
    /// `postgres://…` or `postgresql://…` is a DSN (validated here); anything else a
    /// directory.
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            PgDsn::parse(text).map(StateLocation::Postgres)
        } else {
            Ok(StateLocation::Dir(PathBuf::from(text)))
        }
    }
}

/// The environment variable naming a PostgreSQL state (`postgres://user:password@host:port/db`):
/// when set, every state this process opens is that database, and the state directory keeps
/// only the files (logs, sockets, shims, the proxy's files, the key file).
pub const STATE_DSN_ENV: &str = "WHARF_STATE_DSN";

impl StateLocation {
    /// Where the state of `state_dir` lives for this process: the database named by
    /// [`STATE_DSN_ENV`] when it is set (and not empty), else `state.db` in `state_dir`. A DSN
    /// that does not parse is an error that names the variable, never its value.
    pub fn for_state_dir(state_dir: &std::path::Path) -> Result<Self, StoreError> {
        match std::env::var(STATE_DSN_ENV) {
            Ok(dsn) if !dsn.trim().is_empty() => PgDsn::parse(dsn.trim())
                .map(StateLocation::Postgres)
                .map_err(|error| match error {
                    StoreError::BadDsn { reason } => StoreError::BadDsn {
                        reason: format!("{STATE_DSN_ENV}: {reason}"),
                    },
                    other => other,
                }),
            _ => Ok(StateLocation::Dir(state_dir.to_owned())),
        }
    }

    /// Whether the state exists without creating it: a database file in the directory; a
    /// PostgreSQL database always (it was created by its administrator).
    pub fn exists(&self) -> bool {
        match self {
            StateLocation::Dir(dir) => dir.join(crate::DB_FILE).exists(),
            StateLocation::Postgres(_) => true,
        }
    }

    /// Whether this is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self, StateLocation::Postgres(_))
    }
}

impl fmt::Display for StateLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateLocation::Dir(dir) => write!(f, "{}", dir.display()),
            StateLocation::Postgres(dsn) => dsn.fmt(f),
        }
    }
}

/// A validated PostgreSQL connection string (URL or `key=value` form). Cheap to clone: the
/// settings are shared.
#[derive(Clone)]
pub struct PgDsn {
    config: std::sync::Arc<postgres::Config>,
    shown: String,
}

impl PgDsn {
    /// Parses and checks a DSN: it must name a host and a user, and must not require TLS,
    /// which this store does not speak yet. The error never repeats the DSN (it may hold a
    /// password).
    pub fn parse(dsn: &str) -> Result<Self, StoreError> {
        let bad = |reason: String| StoreError::BadDsn { reason };
        let mut config: postgres::Config = dsn.parse().map_err(|e: postgres::Error| {
            // The parser's message may quote one character of the input: keep what precedes.
            let text = crate::db::pg_chain(&e);
            bad(text
                .split(": expected")
                .next()
                .unwrap_or_default()
                .to_owned())
        })?;
        if config.get_hosts().is_empty() {
            return Err(bad(
                "it names no host (postgres://user:password@host:port/database)".into(),
            ));
        }
        let Some(user) = config.get_user().map(str::to_owned) else {
            return Err(bad(
                "it names no user (postgres://user:password@host:port/database)".into(),
            ));
        };
        if config.get_ssl_mode() == SslMode::Require {
            return Err(bad(
                "it requires TLS (sslmode=require), which wharf's PostgreSQL store does not speak yet; \
                 use a local or private address with sslmode=disable"
                    .into(),
            ));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("wharf");
        }
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let port = config.get_ports().get(i).or(config.get_ports().first());
                let port = port.copied().unwrap_or(5432);
                match host {
                    Host::Tcp(name) => format!("{name}:{port}"),
                    Host::Unix(path) => format!("{}:{port}", path.display()),
                }
            })
            .collect();
        let db = config.get_dbname().unwrap_or(&user);
        let shown = format!("postgres://{user}@{}/{db}", hosts.join(","));
        Ok(PgDsn {
            config: std::sync::Arc::new(config),
            shown,
        })
    }

    /// The connection settings (with the password).
    pub(crate) fn config(&self) -> &postgres::Config {
        &self.config
    }

    /// `postgres://user@host:port/db`, without the password.
    pub fn redacted(&self) -> &str {
        &self.shown
    }
}

impl fmt::Debug for PgDsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PgDsn").field(&self.shown).finish()
    }
}

impl fmt::Display for PgDsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dsn_shows_no_password_and_a_bad_one_says_why_without_it() {
        let dsn = PgDsn::parse("postgres://wharf:hunter2secret@db.internal:6543/state").unwrap();
        assert_eq!(dsn.redacted(), "postgres://wharf@db.internal:6543/state");
        assert!(!format!("{dsn:?} {dsn}").contains("hunter2"));
        let kv = PgDsn::parse("host=127.0.0.1 user=ops password=hunter2secret").unwrap();
        assert_eq!(kv.to_string(), "postgres://ops@127.0.0.1:5432/ops");

        for (text, why) in [
            ("postgres://wharf:hunter2secret@h:notaport/db", "invalid"),
            ("host=h port=notaport user=u password=hunter2secret", "port"),
            ("host=h user=u password='hunter2secret", "unterminated"),
            ("postgres://wharf:hunter2secret@h/db?sslmode=require", "TLS"),
            ("host=h password=hunter2secret", "no user"),
            ("postgres://wharf:hunter2secret@h/db?nonsense=1", "nonsense"),
        ] {
            let error = PgDsn::parse(text).unwrap_err().to_string();
            assert!(error.contains(why), "{text}: {error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
        assert!(matches!(
            StateLocation::parse(".wharf").unwrap(),
            StateLocation::Dir(_)
        ));
    }
}
