//! PagerDuty Events API v2 bodies: alert events (`trigger` / `resolve` on `/v2/enqueue`) and
//! change events (`/v2/change/enqueue`). Pure.
//!
//! PagerDuty limits `summary` to 1024 characters and `dedup_key` to 255; both are cut on a
//! character boundary, the same way for a trigger and its resolve, so they still match.

use serde_json::{Map, Value, json};

use crate::text::{time, truncate};
use crate::{Change, Notice, Status};

/// PagerDuty's alert-event endpoint, the default for a `pagerduty` receiver.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// PagerDuty's change-event endpoint; [`change_url`] of [`PAGERDUTY_EVENTS_URL`].
pub const PAGERDUTY_CHANGE_URL: &str = "https://events.pagerduty.com/v2/change/enqueue";

const SUMMARY_MAX: usize = 1024;
const DEDUP_KEY_MAX: usize = 255;

/// The change-event URL for a receiver whose alert events go to `events_url`: the path's last
/// segment `S` becomes `change/S` (`/v2/enqueue` → `/v2/change/enqueue`), the query kept.
/// So a receiver URL in the manifest (a proxy, a regional endpoint, a test's fake) carries its
/// change events beside its alert events without a second setting.
pub fn change_url(events_url: &str) -> String {
    let (before_query, query) = match events_url.find(['?', '#']) {
        Some(i) => events_url.split_at(i),
        None => (events_url, ""),
    };
    // The path starts after "scheme://authority".
    let path_start = before_query
        .find("://")
        .map(|i| i + 3)
        .and_then(|i| before_query[i..].find('/').map(|j| i + j))
        .unwrap_or(before_query.len());
    let (origin, path) = before_query.split_at(path_start);
    let (dir, last) = match path.rfind('/') {
        Some(i) => path.split_at(i + 1),
        None => ("/", ""),
    };
    format!("{origin}{dir}change/{last}{query}")
}

/// An alert event: a `trigger` with the full payload, or a `resolve` with only the key.
pub(crate) fn event(notice: &Notice, routing_key: Option<&str>) -> Value {
    let mut body = Map::new();
    if let Some(key) = routing_key {
        body.insert("routing_key".into(), key.into());
    }
    let dedup_key = truncate(&notice.dedup_key, DEDUP_KEY_MAX);
    match notice.status {
        Status::Firing => {
            body.insert("event_action".into(), "trigger".into());
            body.insert("dedup_key".into(), dedup_key.into());
            body.insert("client".into(), "wharf".into());
            body.insert("payload".into(), payload(notice));
        }
        // PagerDuty needs only the key to acknowledge or resolve; anything more is ignored.
        Status::Acknowledged => {
            body.insert("event_action".into(), "acknowledge".into());
            body.insert("dedup_key".into(), dedup_key.into());
        }
        Status::Resolved => {
            body.insert("event_action".into(), "resolve".into());
            body.insert("dedup_key".into(), dedup_key.into());
        }
    }
    Value::Object(body)
}

fn payload(notice: &Notice) -> Value {
    json!({
        "summary": truncate(&notice.summary, SUMMARY_MAX),
        "source": format!("{}/{}", notice.stack, notice.root_cause),
        "severity": notice.severity.as_str(),
        "timestamp": time(notice.started_at),
        "component": notice.root_cause,
        "group": notice.stack,
        "class": notice.rule,
        "custom_details": {
            "root_cause": notice.root_cause,
            "affected": notice.affected,
            "labels": notice.labels,
            "stack": notice.stack,
        },
    })
}

/// A change event: summary, time, source and the details as PagerDuty shows them.
pub(crate) fn change(change: &Change, routing_key: Option<&str>) -> Value {
    let mut details = Map::new();
    details.insert("stack".into(), change.stack.clone().into());
    if let Some(service) = &change.service {
        details.insert("service".into(), service.clone().into());
    }
    for (k, v) in &change.details {
        details.entry(k.clone()).or_insert_with(|| v.clone().into());
    }
    let source = match &change.service {
        Some(service) => format!("{}/{service}", change.stack),
        None => change.stack.clone(),
    };
    let mut body = Map::new();
    if let Some(key) = routing_key {
        body.insert("routing_key".into(), key.into());
    }
    body.insert(
        "payload".into(),
        json!({
            "summary": truncate(&change.summary, SUMMARY_MAX),
            "timestamp": time(change.at),
            "source": source,
            "custom_details": details,
        }),
    );
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_url_puts_change_before_the_last_segment() {
        assert_eq!(change_url(PAGERDUTY_EVENTS_URL), PAGERDUTY_CHANGE_URL);
        assert_eq!(
            change_url("http://127.0.0.1:4000/pd/enqueue?x=1"),
            "http://127.0.0.1:4000/pd/change/enqueue?x=1"
        );
        assert_eq!(
            change_url("http://127.0.0.1:4000"),
            "http://127.0.0.1:4000/change/"
        );
        assert_eq!(
            change_url("http://127.0.0.1:4000/"),
            "http://127.0.0.1:4000/change/"
        );
    }
}
