//! The bodies each format sends, checked field by field as a fake of the SaaS receiver got
//! them over a real loopback socket: PagerDuty Events API v2 (trigger, resolve with the
//! trigger's dedup key, change events on the change path), Slack Block Kit with its text
//! fallback, and Alertmanager's version 4 webhook payload.

mod fake_receiver;

use std::collections::BTreeMap;

use fake_receiver::FakeReceiver;
use serde_json::json;
use wharf_notify::{
    Change, Client, Format, Notice, Receiver, Severity, Status, body, change_body, send,
    send_change,
};

const ROUTING_KEY: &str = "R0UT1NG-KEY-0123456789abcdef0123";

fn notice(status: Status) -> Notice {
    Notice {
        dedup_key: "wharf/shop/oncall/db".into(),
        status,
        rule: "oncall".into(),
        stack: "shop".into(),
        root_cause: "db".into(),
        summary: "db is down (ready probe failing for 1m)".into(),
        severity: Severity::Critical,
        affected: vec!["api".into(), "web".into(), "worker".into()],
        labels: BTreeMap::from([("team".into(), "payments".into())]),
        started_at: "2026-12-05T10:00:00Z".parse().unwrap(),
        resolved_at: match status {
            Status::Firing | Status::Acknowledged => None,
            Status::Resolved => Some("2026-12-05T10:07:30Z".parse().unwrap()),
        },
        acknowledged_by: (status == Status::Acknowledged).then(|| "ana".to_owned()),
    }
}

#[test]
fn an_acknowledgement_is_pagerdutys_acknowledge_a_slack_line_and_a_firing_webhook_naming_who() {
    let pd = body(
        Format::PagerDuty,
        &notice(Status::Acknowledged),
        Some(ROUTING_KEY),
    );
    assert_eq!(pd["event_action"], "acknowledge");
    assert_eq!(pd["dedup_key"], "wharf/shop/oncall/db");
    assert!(pd.get("payload").is_none());
    let slack = body(Format::Slack, &notice(Status::Acknowledged), None);
    assert_eq!(
        slack["text"],
        "[ACKNOWLEDGED] shop: db taken on by ana (db is down (ready probe failing for 1m))"
    );
    let generic = body(Format::Generic, &notice(Status::Acknowledged), None);
    assert_eq!(generic["status"], "firing");
    assert_eq!(
        generic["alerts"][0]["annotations"]["acknowledged_by"],
        "ana"
    );
}

fn change() -> Change {
    Change {
        summary: "api deployed 1.5.0 (canary, 3 steps)".into(),
        stack: "shop".into(),
        service: Some("api".into()),
        at: "2026-12-05T09:00:00Z".parse().unwrap(),
        details: BTreeMap::from([("version".into(), "1.5.0".into())]),
    }
}

fn receiver(format: Format, url: String) -> Receiver {
    Receiver {
        name: "oncall".into(),
        format,
        url,
        routing_key: (format == Format::PagerDuty).then(|| ROUTING_KEY.to_owned()),
    }
}

#[tokio::test]
async fn pagerduty_fake_receiver_gets_a_trigger_then_a_resolve_with_the_same_dedup_key() {
    let fake = FakeReceiver::start(vec![], None).await;
    let pd = receiver(Format::PagerDuty, fake.url("/v2/enqueue"));
    let client = Client::new();
    // Bodies built without the key, as the outbox stores them; send adds the receiver's.
    for status in [Status::Firing, Status::Resolved] {
        let b = body(Format::PagerDuty, &notice(status), None);
        assert!(
            b.get("routing_key").is_none(),
            "a persistable body holds no key"
        );
        send(&client, &pd, &b).await.expect("delivered");
    }
    let got = fake.recorded();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|r| r.path == "/v2/enqueue"));
    assert_eq!(got[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(
        got[0].body,
        json!({
            "routing_key": ROUTING_KEY,
            "event_action": "trigger",
            "dedup_key": "wharf/shop/oncall/db",
            "client": "wharf",
            "payload": {
                "summary": "db is down (ready probe failing for 1m)",
                "source": "shop/db",
                "severity": "critical",
                "timestamp": "2026-12-05T10:00:00Z",
                "component": "db",
                "group": "shop",
                "class": "oncall",
                "custom_details": {
                    "root_cause": "db",
                    "affected": ["api", "web", "worker"],
                    "labels": {"team": "payments"},
                    "stack": "shop",
                },
            },
        })
    );
    assert_eq!(
        got[1].body,
        json!({"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": "wharf/shop/oncall/db"})
    );
}

#[tokio::test]
async fn pagerduty_fake_receiver_gets_change_events_on_the_change_path() {
    let fake = FakeReceiver::start(vec![], None).await;
    let pd = receiver(Format::PagerDuty, fake.url("/v2/enqueue"));
    let b = change_body(Format::PagerDuty, &change(), None);
    send_change(&Client::new(), &pd, &b)
        .await
        .expect("delivered");
    let got = fake.recorded();
    assert_eq!(got[0].path, "/v2/change/enqueue");
    assert_eq!(
        got[0].body,
        json!({
            "routing_key": ROUTING_KEY,
            "payload": {
                "summary": "api deployed 1.5.0 (canary, 3 steps)",
                "timestamp": "2026-12-05T09:00:00Z",
                "source": "shop/api",
                "custom_details": {"stack": "shop", "service": "api", "version": "1.5.0"},
            },
        })
    );
}

#[test]
fn pagerduty_summary_is_cut_to_1024_characters_and_an_explicit_key_is_kept() {
    let mut n = notice(Status::Firing);
    n.summary = "é".repeat(2000);
    let b = body(Format::PagerDuty, &n, Some("explicit"));
    let summary = b["payload"]["summary"].as_str().unwrap();
    assert_eq!(summary.chars().count(), 1024);
    assert!(summary.ends_with('…'));
    assert_eq!(b["routing_key"], "explicit");
}

#[tokio::test]
async fn slack_fake_receiver_gets_block_kit_with_a_text_fallback_and_a_separate_resolve() {
    let fake = FakeReceiver::start(vec![], None).await;
    let slack = receiver(Format::Slack, fake.url("/services/T0/B0/secret"));
    let client = Client::new();
    for status in [Status::Firing, Status::Resolved] {
        send(&client, &slack, &body(Format::Slack, &notice(status), None))
            .await
            .expect("delivered");
    }
    let got = fake.recorded();
    assert_eq!(got.len(), 2, "a resolve is a message of its own");
    let firing = &got[0].body;
    assert_eq!(
        firing["text"],
        "[FIRING] shop: db is down (ready probe failing for 1m) (root cause: db; affected: api, web, worker)"
    );
    let blocks = firing["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert_eq!(blocks[0]["text"]["text"], "Firing: db in shop");
    assert_eq!(
        blocks[1]["text"]["text"],
        ":red_circle: db is down (ready probe failing for 1m)"
    );
    let fields: Vec<&str> = blocks[2]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "*Root cause*\ndb",
            "*Status*\nFiring",
            "*Severity*\ncritical",
            "*Rule*\noncall"
        ]
    );
    assert_eq!(blocks[3]["text"]["text"], "*Affected*\napi, web, worker");
    assert_eq!(
        blocks[4]["elements"][0]["text"],
        "started 2026-12-05T10:00:00Z · key `wharf/shop/oncall/db`"
    );
    let resolved = &got[1].body;
    assert_eq!(
        resolved["text"],
        "[RESOLVED] shop: db recovered (was: db is down (ready probe failing for 1m))"
    );
    assert_eq!(
        resolved["blocks"][0]["text"]["text"],
        "Resolved: db in shop"
    );
    assert_eq!(
        resolved["blocks"][2]["fields"][1]["text"],
        "*Status*\nResolved"
    );
    assert_eq!(
        resolved["blocks"][4]["elements"][0]["text"],
        "started 2026-12-05T10:00:00Z · resolved 2026-12-05T10:07:30Z · key `wharf/shop/oncall/db`"
    );
}

#[test]
fn slack_escapes_mentions_and_links_in_what_it_quotes() {
    let mut n = notice(Status::Firing);
    n.summary = "<!channel> a & b <http://x|y>".into();
    let b = body(Format::Slack, &n, None);
    let text = b["blocks"][1]["text"]["text"].as_str().unwrap();
    assert_eq!(
        text,
        ":red_circle: &lt;!channel&gt; a &amp; b &lt;http://x|y&gt;"
    );
    assert!(!b["text"].as_str().unwrap().contains('<'));
}

#[tokio::test]
async fn slack_fake_receiver_gets_change_messages() {
    let fake = FakeReceiver::start(vec![], None).await;
    let slack = receiver(Format::Slack, fake.url("/services/T0/B0/secret"));
    let b = change_body(Format::Slack, &change(), None);
    send_change(&Client::new(), &slack, &b)
        .await
        .expect("delivered");
    let got = fake.recorded();
    assert_eq!(
        got[0].path, "/services/T0/B0/secret",
        "Slack changes use the same webhook"
    );
    assert_eq!(
        got[0].body["text"],
        "[CHANGE] shop: api deployed 1.5.0 (canary, 3 steps)"
    );
    assert_eq!(
        got[0].body["blocks"][1]["elements"][0]["text"],
        "stack shop · service api · 2026-12-05T09:00:00Z · version: 1.5.0"
    );
}

#[tokio::test]
async fn generic_fake_receiver_gets_alertmanager_version_4_payloads() {
    let fake = FakeReceiver::start(vec![], None).await;
    let hook = receiver(Format::Generic, fake.url("/alerts"));
    let client = Client::new();
    for status in [Status::Firing, Status::Resolved] {
        send(
            &client,
            &hook,
            &body(Format::Generic, &notice(status), None),
        )
        .await
        .expect("delivered");
    }
    let got = fake.recorded();
    let labels = json!({
        "alertname": "oncall", "service": "db", "severity": "critical", "stack": "shop", "team": "payments",
    });
    let annotations = json!({
        "affected": "api, web, worker", "root_cause": "db", "summary": "db is down (ready probe failing for 1m)",
    });
    let firing = &got[0].body;
    assert_eq!(
        *firing,
        json!({
            "version": "4",
            "groupKey": "wharf/shop/oncall/db",
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "oncall",
            "groupLabels": {"alertname": "oncall", "service": "db", "stack": "shop"},
            "commonLabels": labels,
            "commonAnnotations": annotations,
            "externalURL": "",
            "alerts": [{
                "status": "firing",
                "labels": labels,
                "annotations": annotations,
                "startsAt": "2026-12-05T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": firing["alerts"][0]["fingerprint"],
            }],
        })
    );
    let fingerprint = firing["alerts"][0]["fingerprint"].as_str().unwrap();
    assert_eq!(fingerprint.len(), 16);
    assert!(fingerprint.chars().all(|c| c.is_ascii_hexdigit()));
    let resolved = &got[1].body;
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(
        resolved["groupKey"], firing["groupKey"],
        "the resolve names its page"
    );
    assert_eq!(resolved["alerts"][0]["status"], "resolved");
    assert_eq!(resolved["alerts"][0]["endsAt"], "2026-12-05T10:07:30Z");
    assert_eq!(resolved["alerts"][0]["fingerprint"], fingerprint);
}

#[tokio::test]
async fn generic_fake_receiver_gets_change_bodies_marked_as_changes() {
    let fake = FakeReceiver::start(vec![], None).await;
    let hook = receiver(Format::Generic, fake.url("/alerts"));
    let b = change_body(Format::Generic, &change(), None);
    send_change(&Client::new(), &hook, &b)
        .await
        .expect("delivered");
    let got = fake.recorded();
    assert_eq!(got[0].path, "/alerts");
    assert_eq!(
        got[0].body,
        json!({
            "kind": "change",
            "stack": "shop",
            "service": "api",
            "summary": "api deployed 1.5.0 (canary, 3 steps)",
            "at": "2026-12-05T09:00:00Z",
            "details": {"version": "1.5.0"},
        })
    );
}

#[test]
fn notices_and_formats_round_trip_through_json_for_the_outbox() {
    let n = notice(Status::Resolved);
    let text = serde_json::to_string(&n).unwrap();
    assert_eq!(serde_json::from_str::<Notice>(&text).unwrap(), n);
    assert_eq!(
        serde_json::to_value(Format::PagerDuty).unwrap(),
        "pagerduty"
    );
    assert_eq!(serde_json::to_value(Severity::Warning).unwrap(), "warning");
}
