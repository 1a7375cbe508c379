//! `/metrics`' text for a fixed snapshot, and the properties Prometheus relies on.

use std::collections::BTreeMap;

use serde_json::json;
use wharf_control::metrics::{LedgerFigures, SecretAge, VersionTotals};
use wharf_control::proxy_link::Classes;

use super::*;

fn snapshot() -> MetricsSnapshot {
    let at: jiff::Timestamp = "2026-12-05T12:00:00Z".parse().unwrap();
    let instance = |ordinal: u32, version: &str, phase: &str, probe: Option<&str>| {
        json!({
            "ordinal": ordinal, "version": version, "pid": 100 + ordinal, "port": 9000 + ordinal,
            "phase": phase, "live": true, "ready": probe == Some("pass"), "restarts": 1,
            "crash_looping": false, "started_at": null, "uptime_secs": 10, "last_exit": null,
            "error": null, "probe": probe, "probe_latency_ms": 12, "probe_reason": null
        })
    };
    let status = json!({
        "stack": "shop", "control_pid": 1, "started_at": "2026-12-05T11:00:00Z",
        "status": "ok", "settled": true, "healthy": true,
        "services": [
            {"name": "web", "version": "v1", "state": "running", "health": "pass",
             "external": false, "desired": 2, "running": 2, "ready": 2, "restarts": 3,
             "reason": null, "blocked_by": null, "probe_latency_ms": null, "dependencies": [],
             "instances": [instance(0, "v1", "running", Some("pass")),
                           instance(1, "v2", "running", Some("fail"))],
             "public_port": 8080},
            {"name": "db", "version": "16", "state": "external", "health": "pass",
             "external": true, "desired": 0, "running": 0, "ready": 0, "restarts": 0,
             "reason": null, "blocked_by": null, "probe_latency_ms": 3, "dependencies": [],
             "instances": [],
             "backups": {"service": "db", "kind": "postgres", "schedule": "0 3 * * *",
                         "health": "ok", "last_success": "2026-12-05T09:00:00Z"}}
        ],
        "pages": [{"alert": "oncall", "root_cause": "db", "summary": "db down",
                   "affected": [], "since": "2026-12-05T11:59:00Z"}]
    });
    let rollout = json!({
        "service": "web", "id": 2, "strategy": "canary", "phase": "step",
        "stable_version": "v1", "new_version": "v2", "step": 0, "steps": 3,
        "weight_stable": 75, "weight_new": 25, "traffic": {},
        "started_at": "2026-12-05T11:58:00Z",
        "history": [
            {"at": "t", "action": "deploy.start", "details": {}},
            {"at": "t", "action": "deploy.verdict", "details": {"verdict": "continue"}},
            {"at": "t", "action": "deploy.verdict", "details": {"verdict": "fail"}}
        ]
    });
    MetricsSnapshot {
        at,
        status: serde_json::from_value(status).unwrap(),
        rollouts: vec![serde_json::from_value(rollout).unwrap()],
        traffic: vec![
            VersionTotals {
                service: "web".into(),
                version: "v1".into(),
                responses: Classes {
                    c2xx: 90,
                    c3xx: 0,
                    c4xx: 2,
                    c5xx: 0,
                },
                // 0.9 ms, 2.2 ms, 30 ms (fine proxy bounds).
                latency_buckets: BTreeMap::from([(900, 60), (2_200, 30), (30_000, 2)]),
                latency_sum_us: 150_000.0,
            },
            VersionTotals {
                service: "web".into(),
                version: "v2".into(),
                responses: Classes {
                    c2xx: 20,
                    c3xx: 0,
                    c4xx: 0,
                    c5xx: 10,
                },
                latency_buckets: BTreeMap::from([(1_000, 20), (20_000_000, 10)]),
                latency_sum_us: 200_020_000.0,
            },
        ],
        secrets: vec![
            SecretAge {
                name: "db_password".into(),
                age_seconds: Some(86_400.0),
                max_age_seconds: Some(7_776_000.0),
            },
            SecretAge {
                name: "never_set".into(),
                age_seconds: None,
                max_age_seconds: None,
            },
        ],
        ledger: Some(LedgerFigures {
            entries: 42,
            checkpoints: 2,
            checkpointed_entries: 40,
        }),
    }
}

#[test]
fn metrics_text_of_a_fixed_snapshot() {
    insta::assert_snapshot!(render(&snapshot()));
}

#[test]
fn histogram_buckets_are_cumulative_and_end_at_inf_with_the_count() {
    let text = render(&snapshot());
    let v2: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("wharf_http_request_duration_seconds_bucket{")
                && l.contains("version=\"v2\"")
        })
        .collect();
    assert_eq!(v2.len(), LATENCY_BOUNDS_SECONDS.len() + 1);
    // 20 requests at ≤ 1 ms; 10 at 20 s, past the last bound: only in +Inf.
    assert!(v2[0].ends_with(" 20"), "{}", v2[0]);
    assert!(v2[LATENCY_BOUNDS_SECONDS.len() - 1].ends_with(" 20"));
    assert!(v2.last().unwrap().contains("le=\"+Inf\""));
    assert!(v2.last().unwrap().ends_with(" 30"));
    assert!(
        text.contains("wharf_http_requests_total{service=\"web\",version=\"v2\",class=\"5xx\"} 10")
    );
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn a_count_at_a_bound_is_not_counted_faster() {
    // The proxy's bucket ending at 2.2 ms lands in the 2.5 ms bucket, not the 1 ms one.
    let text = render(&snapshot());
    let line = |le: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("wharf_http_request_duration_seconds_bucket{")
                    && l.contains("version=\"v1\"")
                    && l.contains(&format!("le=\"{le}\""))
            })
            .unwrap()
            .to_owned()
    };
    assert!(line("0.001").ends_with(" 60"), "{}", line("0.001"));
    assert!(line("0.0025").ends_with(" 90"), "{}", line("0.0025"));
    assert!(line("0.05").ends_with(" 92"), "{}", line("0.05"));
}

#[test]
fn the_classic_text_names_counters_with_total_and_drops_unit_and_eof() {
    let text = to_prometheus_text(&render(&snapshot()));
    assert!(text.contains("# HELP wharf_http_requests_total Responses"));
    assert!(text.contains("# TYPE wharf_http_requests_total counter\n"));
    assert!(text.contains("# TYPE wharf_service_restarts_total counter\n"));
    assert!(text.contains("# TYPE wharf_http_request_duration_seconds histogram\n"));
    assert!(!text.contains("# UNIT"));
    assert!(!text.contains("# EOF"));
    assert!(text.contains("wharf_ledger_entries 42.0\n"), "{text}");
}

#[test]
fn openmetrics_is_served_to_whom_asks_for_it() {
    let mut headers = axum::http::HeaderMap::new();
    assert!(!wants_openmetrics(&headers));
    headers.insert(
        axum::http::header::ACCEPT,
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            .parse()
            .unwrap(),
    );
    assert!(wants_openmetrics(&headers));
}
