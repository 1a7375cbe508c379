//! Delivery through a Courier to a fake of the SaaS receiver on a loopback socket: retries with
//! backoff on 429 / 5xx / timeouts, none on 400, Retry-After honoured, Slack paced at one
//! message a second, order kept across retries, and no secret in any error. Backoff runs on a
//! virtual clock (its sleeps return at once and move its time), so waits of seconds are proved
//! in milliseconds; one test runs tokio's clock for real with a short policy.

mod fake_receiver;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fake_receiver::{FakeReceiver, Reply, VirtualClock};
use serde_json::json;
use tokio::sync::mpsc;
use wharf_notify::{
    Client, Clock, Courier, Format, Notice, Outcome, Policy, Receiver, SendError, Severity, Status,
    body, send,
};

const ROUTING_KEY: &str = "R0UT1NG-KEY-0123456789abcdef0123";
const SECRET_PATH: &str = "/services/T0SECRET/B0SECRET/xoxSECRETTOKEN";

fn notice(n: u32, status: Status) -> Notice {
    Notice {
        dedup_key: format!("wharf/shop/oncall/svc{n}"),
        status,
        rule: "oncall".into(),
        stack: "shop".into(),
        root_cause: format!("svc{n}"),
        summary: format!("svc{n} is down"),
        severity: Severity::Error,
        affected: vec![],
        labels: BTreeMap::new(),
        started_at: "2026-12-05T10:00:00Z".parse().unwrap(),
        resolved_at: None,
        acknowledged_by: None,
    }
}

fn receiver(format: Format, url: String) -> Receiver {
    Receiver {
        name: "oncall".into(),
        format,
        url,
        routing_key: Some(ROUTING_KEY.into()),
    }
}

struct Setup {
    fake: FakeReceiver,
    clock: Arc<VirtualClock>,
    courier: Courier,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
}

async fn setup(format: Format, script: Vec<Reply>, client: Client) -> Setup {
    let clock = VirtualClock::new();
    let fake = FakeReceiver::start(script, Some(clock.clone())).await;
    let (tx, outcomes) = mpsc::unbounded_channel();
    let courier = Courier::spawn_with(
        client,
        receiver(format, fake.url(SECRET_PATH)),
        Policy::for_format(format),
        clock.clone(),
        tx,
    );
    Setup {
        fake,
        clock,
        courier,
        outcomes,
    }
}

/// The outcomes until `n` final ones (delivered or given up) have come, bounded.
async fn finals(outcomes: &mut mpsc::UnboundedReceiver<Outcome>, n: usize) -> Vec<Outcome> {
    let mut all = vec![];
    while all.iter().filter(|o: &&Outcome| o.is_final()).count() < n {
        let next = tokio::time::timeout(Duration::from_secs(10), outcomes.recv())
            .await
            .expect("an outcome within 10 s")
            .expect("the courier is running");
        all.push(next);
    }
    all
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[tokio::test]
async fn pagerduty_fake_receiver_answering_429_twice_then_202_gets_it_once_after_backoff() {
    let mut s = setup(
        Format::PagerDuty,
        vec![Reply::status(429), Reply::status(429)],
        Client::new(),
    )
    .await;
    let trigger = body(Format::PagerDuty, &notice(1, Status::Firing), None);
    s.courier.push(7, trigger.clone());
    let outcomes = finals(&mut s.outcomes, 1).await;
    let kinds: Vec<(u64, u32, bool)> = outcomes
        .iter()
        .map(|o| match o {
            Outcome::Retrying { id, attempts, .. } => (*id, *attempts, false),
            Outcome::Delivered { id, attempts, .. } => (*id, *attempts, true),
            Outcome::GaveUp { .. } => panic!("gave up: {o:?}"),
        })
        .collect();
    assert_eq!(kinds, [(7, 1, false), (7, 2, false), (7, 3, true)]);
    // Accepted once (the third request); every request carried the same event.
    let got = s.fake.recorded();
    assert_eq!(got.len(), 3);
    assert!(
        got.iter()
            .all(|r| r.body["dedup_key"] == "wharf/shop/oncall/svc1")
    );
    assert!(got.iter().all(|r| r.body["routing_key"] == ROUTING_KEY));
    // Backoff: 1 s after the first 429, 2 s after the second.
    assert_eq!(s.clock.sleeps(), [secs(1), secs(2)]);
    let arrivals: Vec<Duration> = got.iter().map(|r| r.at).collect();
    assert_eq!(arrivals, [secs(0), secs(1), secs(3)]);
}

#[tokio::test]
async fn fake_receiver_answering_400_is_not_retried_and_the_reason_says_why() {
    let mut s = setup(
        Format::PagerDuty,
        vec![Reply::with_body(
            400,
            r#"{"status":"invalid event","message":"Event object is invalid","errors":["'severity' is missing"]}"#,
        )],
        Client::new(),
    )
    .await;
    s.courier
        .push(1, body(Format::PagerDuty, &notice(1, Status::Firing), None));
    let outcomes = finals(&mut s.outcomes, 1).await;
    let [
        Outcome::GaveUp {
            id: 1,
            attempts: 1,
            reason,
            ..
        },
    ] = &outcomes[..]
    else {
        panic!("one GaveUp expected: {outcomes:?}");
    };
    assert_eq!(reason.status(), Some(400));
    assert!(!reason.is_retryable());
    assert_eq!(
        reason.to_string(),
        r#"receiver oncall: answered 400, not retried: {"status":"invalid event","message":"Event object is invalid","errors":["'severity' is missing"]}"#
    );
    assert_eq!(s.fake.recorded().len(), 1, "not retried");
    assert!(s.clock.sleeps().is_empty());
}

#[tokio::test]
async fn fake_receiver_answering_500_is_retried() {
    let mut s = setup(
        Format::Generic,
        vec![Reply::status(500), Reply::status(503)],
        Client::new(),
    )
    .await;
    s.courier
        .push(3, body(Format::Generic, &notice(1, Status::Firing), None));
    let outcomes = finals(&mut s.outcomes, 1).await;
    assert!(matches!(
        outcomes.last(),
        Some(Outcome::Delivered {
            id: 3,
            attempts: 3,
            ..
        })
    ));
    let statuses: Vec<Option<u16>> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Retrying { error, .. } => Some(error.status()),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, [Some(500), Some(503)]);
    assert_eq!(s.fake.recorded().len(), 3);
}

#[tokio::test]
async fn fake_receiver_retry_after_is_honoured() {
    let mut s = setup(
        Format::PagerDuty,
        vec![Reply::retry_after(429, 7)],
        Client::new(),
    )
    .await;
    s.courier
        .push(1, body(Format::PagerDuty, &notice(1, Status::Firing), None));
    let outcomes = finals(&mut s.outcomes, 1).await;
    assert!(matches!(
        &outcomes[0],
        Outcome::Retrying { next_in, error, .. }
            if *next_in == secs(7) && error.retry_after() == Some(secs(7))
    ));
    assert!(matches!(
        outcomes.last(),
        Some(Outcome::Delivered { attempts: 2, .. })
    ));
    // The second request came 7 s (of virtual time) after the first, not backoff's 1 s.
    let arrivals: Vec<Duration> = s.fake.recorded().iter().map(|r| r.at).collect();
    assert_eq!(arrivals, [secs(0), secs(7)]);
}

#[tokio::test]
async fn slack_fake_receiver_gets_at_most_one_message_a_second() {
    let mut s = setup(Format::Slack, vec![], Client::new()).await;
    for id in 1..=3 {
        s.courier.push(
            id,
            body(Format::Slack, &notice(id as u32, Status::Firing), None),
        );
    }
    finals(&mut s.outcomes, 3).await;
    let arrivals: Vec<Duration> = s.fake.recorded().iter().map(|r| r.at).collect();
    assert_eq!(arrivals, [secs(0), secs(1), secs(2)]);
    assert!(s.clock.now() >= secs(2), "three messages take at least 2 s");
}

#[tokio::test]
async fn pagerduty_is_not_paced() {
    let mut s = setup(Format::PagerDuty, vec![], Client::new()).await;
    for id in 1..=3 {
        s.courier.push(
            id,
            body(Format::PagerDuty, &notice(id as u32, Status::Firing), None),
        );
    }
    finals(&mut s.outcomes, 3).await;
    assert_eq!(s.fake.recorded().len(), 3);
    assert!(s.clock.sleeps().is_empty());
}

#[tokio::test]
async fn fake_receiver_gets_notice_2_only_after_notice_1_is_delivered_or_given_up() {
    let mut s = setup(
        Format::PagerDuty,
        // Item 1: 503, 503, then 202. Item 2: 400 (given up). Item 3: 202.
        vec![
            Reply::status(503),
            Reply::status(503),
            Reply::status(202),
            Reply::status(400),
        ],
        Client::new(),
    )
    .await;
    let trigger = body(Format::PagerDuty, &notice(1, Status::Firing), None);
    let bad = json!({"event_action": "trigger", "dedup_key": "broken"});
    let resolve = body(Format::PagerDuty, &notice(1, Status::Resolved), None);
    s.courier.push(1, trigger);
    s.courier.push(2, bad);
    s.courier.push(3, resolve);
    let outcomes = finals(&mut s.outcomes, 3).await;
    let finals: Vec<(u64, &str)> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Delivered { id, .. } => Some((*id, "delivered")),
            Outcome::GaveUp { id, .. } => Some((*id, "gave up")),
            Outcome::Retrying { .. } => None,
        })
        .collect();
    assert_eq!(finals, [(1, "delivered"), (2, "gave up"), (3, "delivered")]);
    let sent: Vec<String> = s
        .fake
        .recorded()
        .iter()
        .map(|r| format!("{} {}", r.body["event_action"], r.body["dedup_key"]))
        .collect();
    assert_eq!(
        sent,
        [
            r#""trigger" "wharf/shop/oncall/svc1""#,
            r#""trigger" "wharf/shop/oncall/svc1""#,
            r#""trigger" "wharf/shop/oncall/svc1""#,
            r#""trigger" "broken""#,
            r#""resolve" "wharf/shop/oncall/svc1""#,
        ],
        "the resolve never overtakes its trigger"
    );
}

#[tokio::test]
async fn fake_receiver_that_never_answers_times_out_and_is_retried() {
    let client = Client::with_timeout(Duration::from_millis(200));
    let mut s = setup(Format::Generic, vec![Reply::Hang], client).await;
    s.courier
        .push(1, body(Format::Generic, &notice(1, Status::Firing), None));
    let outcomes = finals(&mut s.outcomes, 1).await;
    assert!(matches!(
        &outcomes[0],
        Outcome::Retrying {
            error: SendError::Timeout { .. },
            ..
        }
    ));
    assert!(matches!(
        outcomes.last(),
        Some(Outcome::Delivered { attempts: 2, .. })
    ));
}

#[tokio::test]
async fn max_attempts_gives_up_on_retryable_failures() {
    let clock = VirtualClock::new();
    let fake = FakeReceiver::start(vec![Reply::status(503); 5], Some(clock.clone())).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let policy = Policy {
        max_attempts: Some(3),
        ..Policy::for_format(Format::Generic)
    };
    let courier = Courier::spawn_with(
        Client::new(),
        receiver(Format::Generic, fake.url("/hook")),
        policy,
        clock.clone(),
        tx,
    );
    courier.push(9, body(Format::Generic, &notice(1, Status::Firing), None));
    let outcomes = finals(&mut rx, 1).await;
    assert!(matches!(
        outcomes.last(),
        Some(Outcome::GaveUp { id: 9, attempts: 3, reason, .. }) if reason.status() == Some(503)
    ));
    assert_eq!(fake.recorded().len(), 3);
}

#[tokio::test]
async fn courier_on_tokios_clock_backs_off_in_real_time() {
    let fake = FakeReceiver::start(vec![Reply::status(503)], None).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let policy = Policy {
        first_backoff: Duration::from_millis(50),
        ..Policy::for_format(Format::Generic)
    };
    let courier = Courier::spawn_with(
        Client::new(),
        receiver(Format::Generic, fake.url("/hook")),
        policy,
        Arc::new(wharf_notify::TokioClock::new()),
        tx,
    );
    let started = tokio::time::Instant::now();
    courier.push(1, body(Format::Generic, &notice(1, Status::Firing), None));
    let outcomes = finals(&mut rx, 1).await;
    assert!(matches!(
        outcomes.last(),
        Some(Outcome::Delivered { attempts: 2, .. })
    ));
    assert!(started.elapsed() >= Duration::from_millis(50));
}

/// Every error a send can end in, produced for real, with its Display and Debug checked for
/// the URL, its secret path and the routing key.
#[tokio::test]
async fn no_url_or_routing_key_in_any_error_display_or_debug() {
    let secret_host_url = format!("http://hooks.secret-host.example{SECRET_PATH}");
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // A careless receiver echoing the request (with its path and routing key) back.
    let echo = FakeReceiver::start(
        vec![Reply::Echo { status: 400 }, Reply::Echo { status: 500 }],
        None,
    )
    .await;
    let hang = FakeReceiver::start(vec![Reply::Hang], None).await;
    let pd = |url: String| receiver(Format::PagerDuty, url);
    let trigger = body(Format::PagerDuty, &notice(1, Status::Firing), None);
    let fast = Client::with_timeout(Duration::from_millis(200));
    let mut errors: Vec<SendError> = vec![];
    let cases = [
        pd(echo.url(SECRET_PATH)),
        pd(echo.url(SECRET_PATH)),
        pd(hang.url(SECRET_PATH)),
        pd(format!("http://127.0.0.1:{closed_port}{SECRET_PATH}")),
        pd(secret_host_url.clone()),
        pd(format!("https://[not a url{SECRET_PATH}{ROUTING_KEY}")),
        Receiver {
            routing_key: None,
            ..pd(echo.url(SECRET_PATH))
        },
    ];
    for r in &cases {
        errors.push(send(&fast, r, &trigger).await.expect_err("fails"));
    }
    let kinds: Vec<&str> = errors
        .iter()
        .map(|e| match e {
            SendError::Rejected { .. } => "rejected",
            SendError::Unavailable { .. } => "unavailable",
            SendError::Timeout { .. } => "timeout",
            SendError::Unreachable { .. } => "unreachable",
            SendError::Insecure { .. } => "insecure",
            SendError::BadUrl { .. } => "bad url",
            SendError::NoRoutingKey { .. } => "no routing key",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "rejected",
            "unavailable",
            "timeout",
            "unreachable",
            "insecure",
            "bad url",
            "no routing key"
        ]
    );
    // The echo really carried the secrets back: they were cut out, not absent.
    let rejected = errors[0].to_string();
    assert!(rejected.contains("[redacted]"), "{rejected}");
    let mut texts: Vec<String> = vec![];
    for (e, r) in errors.iter().zip(&cases) {
        texts.push(e.to_string());
        texts.push(format!("{e:?}"));
        texts.push(format!("{r:?}"));
        let outcome = Outcome::GaveUp {
            receiver: r.name.clone(),
            id: 1,
            attempts: 1,
            reason: e.clone(),
        };
        texts.push(format!("{outcome:?}"));
    }
    for text in &texts {
        for secret in [
            ROUTING_KEY,
            SECRET_PATH,
            "T0SECRET",
            "xoxSECRETTOKEN",
            "secret-host",
        ] {
            assert!(!text.contains(secret), "{secret:?} leaked in: {text}");
        }
        assert!(text.contains("oncall"), "errors name the receiver: {text}");
    }
}

/// Under tokio's paused clock (as the control plane's loop tests run) the default clock's
/// backoff is virtual too, while the HTTP exchange is real.
#[tokio::test(start_paused = true)]
async fn courier_on_tokios_paused_clock_backs_off_in_virtual_time() {
    let fake = FakeReceiver::start(vec![Reply::status(429), Reply::status(429)], None).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let courier = Courier::spawn(
        Client::new(),
        receiver(Format::PagerDuty, fake.url("/v2/enqueue")),
        tx,
    );
    let started = tokio::time::Instant::now();
    courier.push(1, body(Format::PagerDuty, &notice(1, Status::Firing), None));
    let outcomes = finals(&mut rx, 1).await;
    assert!(matches!(
        outcomes.last(),
        Some(Outcome::Delivered { attempts: 3, .. })
    ));
    assert!(started.elapsed() >= secs(3), "1 s then 2 s of backoff");
    assert_eq!(fake.recorded().len(), 3);
}
