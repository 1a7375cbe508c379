//! The PostgreSQL check against real servers the tests start themselves.

mod support;

use std::time::Duration;

use support::postgres::{PASSWORD, Postgres, USER};
use wharf_probe::{Check, Outcome, Prober, Status};

const TIMEOUT: Duration = Duration::from_secs(10);

async fn probe(url: &str) -> Outcome {
    let check = Check::Postgres {
        url: url.to_owned(),
    };
    Prober::default().run(&check, TIMEOUT).await
}

fn reason(outcome: &Outcome) -> &str {
    assert_eq!(
        outcome.status,
        Status::Fail,
        "expected a failure: {outcome:?}"
    );
    outcome.reason.as_deref().unwrap_or_default()
}

#[tokio::test]
async fn passes_with_the_url_and_the_key_value_forms() {
    let server = Postgres::start();
    let url = server.url(USER, PASSWORD, "postgres");
    let outcome = probe(&url).await;
    assert_eq!(outcome.status, Status::Pass, "{outcome:?}");
    assert_eq!(outcome.reason, None);

    let key_value = format!(
        "host=127.0.0.1 port={} user={USER} password={PASSWORD} dbname=postgres",
        server.port
    );
    let outcome = probe(&key_value).await;
    assert_eq!(outcome.status, Status::Pass, "{outcome:?}");
}

#[tokio::test]
async fn a_wrong_password_is_named_and_never_shown() {
    let server = Postgres::start();
    let wrong = "Wr0ng-Pa55word-zebra";
    let url = server.url(USER, wrong, "postgres");
    let outcome = probe(&url).await;
    let reason = reason(&outcome);
    assert_eq!(
        reason,
        format!("password authentication failed for user \"{USER}\"")
    );
    assert!(!reason.contains(wrong), "{reason}");
    assert!(!reason.contains(&url), "{reason}");
    // Nor anywhere else in what the outcome carries (the control plane logs and serves it).
    let json = serde_json::to_string(&outcome).unwrap();
    assert!(!json.contains(wrong), "{json}");

    let key_value = format!(
        "host=127.0.0.1 port={} user={USER} password={wrong} dbname=postgres",
        server.port
    );
    let reason = probe(&key_value).await.reason.unwrap_or_default();
    assert!(
        reason.starts_with("password authentication failed"),
        "{reason}"
    );
    assert!(!reason.contains(wrong), "{reason}");
}

#[tokio::test]
async fn a_missing_database_is_named() {
    let server = Postgres::start();
    let outcome = probe(&server.url(USER, PASSWORD, "shop")).await;
    assert_eq!(reason(&outcome), "database \"shop\" does not exist");
}

#[tokio::test]
async fn a_stopped_server_is_connection_refused() {
    let mut server = Postgres::start();
    let url = server.url(USER, PASSWORD, "postgres");
    assert_eq!(probe(&url).await.status, Status::Pass);
    server.stop();
    let outcome = probe(&url).await;
    assert_eq!(reason(&outcome), "connection refused");
}

#[tokio::test]
async fn an_invalid_url_fails_with_a_reason_and_hides_the_password() {
    let cases = [
        "postgres://app:s3cr3t-value@127.0.0.1:notaport/shop",
        "host=127.0.0.1 password='s3cr3t-value",
        "host=127.0.0.1 user=app password=s3cr3t-value colour=blue",
    ];
    for url in cases {
        let outcome = probe(url).await;
        let reason = reason(&outcome);
        assert!(reason.starts_with("invalid PostgreSQL URL: "), "{reason}");
        assert!(!reason.contains("s3cr3t-value"), "{reason}");
    }
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    // Accepts the connection (the kernel does) but never speaks: the startup hangs.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/postgres",
        silent.local_addr().unwrap().port()
    );
    let check = Check::Postgres { url };
    let outcome = Prober::default()
        .run(&check, Duration::from_millis(300))
        .await;
    assert_eq!(reason(&outcome), "timed out after 300ms");
}
