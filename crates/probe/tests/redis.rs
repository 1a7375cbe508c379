//! The Redis check against real servers the tests start themselves.

mod support;

use std::time::Duration;

use support::redis::{Auth, Redis};
use wharf_probe::{Check, Outcome, Prober, Status};

const TIMEOUT: Duration = Duration::from_secs(10);

async fn probe(url: &str) -> Outcome {
    let check = Check::Redis {
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
async fn passes_without_a_password_and_selects_the_database() {
    let server = Redis::start(Auth::default());
    let outcome = probe(&server.url(None)).await;
    assert_eq!(outcome.status, Status::Pass, "{outcome:?}");
    assert_eq!(outcome.reason, None);

    let outcome = probe(&format!("{}/3", server.url(None))).await;
    assert_eq!(outcome.status, Status::Pass, "{outcome:?}");
    let outcome = probe(&format!("{}/99", server.url(None))).await;
    assert_eq!(
        reason(&outcome),
        "selecting database 99: ERR DB index is out of range"
    );
}

#[tokio::test]
async fn requirepass_needs_the_right_password_which_is_never_shown() {
    let server = Redis::start(Auth {
        password: Some("open-sesame"),
        user: None,
    });
    let outcome = probe(&server.url(Some(":open-sesame"))).await;
    assert_eq!(outcome.status, Status::Pass, "{outcome:?}");
    let outcome = probe(&format!("{}/2", server.url(Some(":open-sesame")))).await;
    assert_eq!(outcome.status, Status::Pass, "{outcome:?}");

    let outcome = probe(&server.url(None)).await;
    assert_eq!(reason(&outcome), "NOAUTH Authentication required.");

    let wrong = "Wr0ng-Pa55word-zebra";
    let url = server.url(Some(&format!(":{wrong}")));
    let outcome = probe(&url).await;
    let reason = reason(&outcome);
    assert!(reason.starts_with("WRONGPASS "), "{reason}");
    assert!(!reason.contains(wrong), "{reason}");
    assert!(!reason.contains(&url), "{reason}");
    let json = serde_json::to_string(&outcome).unwrap();
    assert!(!json.contains(wrong), "{json}");
}

#[tokio::test]
async fn an_acl_user_logs_in_with_name_and_password() {
    let server = Redis::start(Auth {
        password: None,
        user: Some(("alice", "alice-secret")),
    });
    let outcome = probe(&server.url(Some("alice:alice-secret"))).await;
    assert_eq!(outcome.status, Status::Pass, "{outcome:?}");

    let outcome = probe(&server.url(Some("alice:not-hers"))).await;
    let reason = reason(&outcome);
    assert!(reason.starts_with("WRONGPASS "), "{reason}");
    assert!(!reason.contains("not-hers"), "{reason}");
}

#[tokio::test]
async fn a_stopped_server_is_connection_refused() {
    let mut server = Redis::start(Auth::default());
    let url = server.url(None);
    assert_eq!(probe(&url).await.status, Status::Pass);
    server.stop();
    assert_eq!(reason(&probe(&url).await), "connection refused");
}

#[tokio::test]
async fn an_invalid_url_fails_with_a_reason() {
    let outcome = probe("redis://:s3cr3t-value@127.0.0.1:port").await;
    let reason = reason(&outcome);
    assert_eq!(
        reason,
        "invalid Redis URL: port \"port\" is not a number from 1 to 65535"
    );
    let outcome = probe("127.0.0.1:6379").await;
    assert!(
        outcome
            .reason
            .unwrap()
            .starts_with("invalid Redis URL: expected redis://")
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    // Accepts the connection (the kernel does) but never replies to PING.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let outcome = Prober::default()
        .run(&Check::Redis { url }, Duration::from_millis(300))
        .await;
    assert_eq!(reason(&outcome), "timed out after 300ms");
}
