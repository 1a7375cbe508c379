//! The PostgreSQL check: connect (no TLS) and run `SELECT 1`.
//!
//! Reasons are the server's own words where it gave some ("password authentication failed for
//! user \"app\"", "database \"shop\" does not exist") and never carry the password: the URL is
//! not echoed, and any password found in it is masked in whatever text does come back.

use std::time::Instant;

use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

use crate::{Outcome, io_reason};

/// Connects to `url` (`postgres://user:pass@host:port/db?…` or `host=… user=… dbname=…`) and
/// runs `SELECT 1`. The caller bounds the whole check with its timeout.
pub(crate) async fn check(url: &str, started: Instant) -> Outcome {
    match select_one(url).await {
        Ok(()) => Outcome::pass(started.elapsed()),
        Err(reason) => Outcome::fail(started.elapsed(), mask(reason, url)),
    }
}

async fn select_one(url: &str) -> Result<(), String> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|err| format!("invalid PostgreSQL URL: {}", reason(&err)))?;
    let (client, connection) = config.connect(NoTls).await.map_err(|err| reason(&err))?;
    // The connection drives the socket; it ends once the client is dropped. The guard aborts it
    // if this future is dropped first (the probe timed out), so no task outlives the probe.
    let mut connection = AbortOnDrop(tokio::spawn(connection));
    let result = client.simple_query("SELECT 1").await;
    drop(client);
    // Let the connection say goodbye (Terminate) rather than vanish mid-session.
    let _ = (&mut connection.0).await;
    result.map(drop).map_err(|err| reason(&err))
}

struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The most useful words in a driver error: the server's message, the socket's error, or the
/// driver's own description with its cause.
fn reason(err: &tokio_postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        return db.message().to_owned();
    }
    let mut source = std::error::Error::source(err);
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return io_reason(io);
        }
        source = current.source();
    }
    match std::error::Error::source(err) {
        Some(cause) => format!("{err}: {cause}"),
        None => err.to_string(),
    }
}

/// Replaces the URL's password, if one can be found, wherever it appears in `reason`.
fn mask(reason: String, url: &str) -> String {
    let mut reason = reason;
    for secret in passwords(url) {
        if !secret.is_empty() {
            reason = reason.replace(&secret, "***");
        }
    }
    reason
}

/// The password in `url`, as written and as the driver decoded it (best effort: also for a URL
/// the driver rejects, so its error text cannot leak it either).
fn passwords(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(config) = url.parse::<tokio_postgres::Config>()
        && let Some(password) = config.get_password()
    {
        found.push(String::from_utf8_lossy(password).into_owned());
    }
    if let Some(rest) = url.split_once("://").map(|(_, rest)| rest) {
        let authority = rest.split(['/', '?']).next().unwrap_or(rest);
        if let Some((userinfo, _)) = authority.rsplit_once('@')
            && let Some((_, password)) = userinfo.split_once(':')
        {
            found.push(password.to_owned());
        }
    }
    for word in url.split_whitespace() {
        if let Some(value) = word.strip_prefix("password=") {
            found.push(value.trim_matches('\'').to_owned());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_found_in_both_url_forms() {
        let url = "postgres://app:s3cret@db:5432/shop?sslmode=disable";
        assert!(passwords(url).contains(&"s3cret".to_owned()));
        let kv = "host=db user=app password=s3cret dbname=shop";
        assert!(passwords(kv).contains(&"s3cret".to_owned()));
        let quoted = "host=db password='s3cret' dbname=shop";
        assert!(passwords(quoted).contains(&"s3cret".to_owned()));
    }

    #[test]
    fn mask_hides_the_password_wherever_it_appears() {
        let url = "postgres://app:s3cret@db:notaport/shop";
        assert_eq!(
            mask("cannot use s3cret here".to_owned(), url),
            "cannot use *** here"
        );
    }
}
