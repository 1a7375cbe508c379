//! Generic webhook bodies in Alertmanager's webhook payload, version "4", so a receiver that
//! already reads Alertmanager (a chat bridge, an incident tool, a script) reads wharf. One page
//! is one group with one alert. Change events have no Alertmanager shape: they are a small
//! body of their own marked `"kind": "change"`. Pure.
//!
//! Mapping: `groupKey` is the page's dedup key (stable from trigger to resolve); `receiver` is
//! the rule's name (in the manifest the alert names its webhook); labels are the notice's
//! labels plus `alertname`, `stack`, `service` (the root cause) and `severity`; annotations are
//! `summary`, `root_cause` and `affected` (comma-separated); `endsAt` is Alertmanager's zero
//! time while firing; `fingerprint` is a 64-bit FNV-1a of the dedup key in 16 hex digits, like
//! Alertmanager's own. wharf has no external URL to give: `externalURL` and `generatorURL` are
//! empty strings.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::text::time;
use crate::{Change, Notice, Status};

/// What Alertmanager writes in `endsAt` for an alert that has not ended.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

pub(crate) fn notice(n: &Notice) -> Value {
    let mut labels = n.labels.clone();
    labels.insert("alertname".into(), n.rule.clone());
    labels.insert("stack".into(), n.stack.clone());
    labels.insert("service".into(), n.root_cause.clone());
    labels.insert("severity".into(), n.severity.as_str().into());
    let mut annotations = BTreeMap::from([
        ("summary".to_owned(), n.summary.clone()),
        ("root_cause".to_owned(), n.root_cause.clone()),
        ("affected".to_owned(), n.affected.join(", ")),
    ]);
    if let Some(by) = &n.acknowledged_by {
        annotations.insert("acknowledged_by".to_owned(), by.clone());
    }
    let group_labels = BTreeMap::from([
        ("alertname".to_owned(), n.rule.clone()),
        ("stack".to_owned(), n.stack.clone()),
        ("service".to_owned(), n.root_cause.clone()),
    ]);
    let ends_at = match (n.status, n.resolved_at) {
        (Status::Resolved, Some(at)) => time(at),
        _ => ZERO_TIME.to_owned(),
    };
    json!({
        "version": "4",
        "groupKey": n.dedup_key,
        "truncatedAlerts": 0,
        "status": n.status.as_str(),
        "receiver": n.rule,
        "groupLabels": group_labels,
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "",
        "alerts": [{
            "status": n.status.as_str(),
            "labels": labels,
            "annotations": annotations,
            "startsAt": time(n.started_at),
            "endsAt": ends_at,
            "generatorURL": "",
            "fingerprint": fingerprint(&n.dedup_key),
        }],
    })
}

pub(crate) fn change(c: &Change) -> Value {
    json!({
        "kind": "change",
        "stack": c.stack,
        "service": c.service,
        "summary": c.summary,
        "at": time(c.at),
        "details": c.details,
    })
}

/// 64-bit FNV-1a in 16 lowercase hex digits: stable across builds and platforms.
fn fingerprint(key: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_fnv1a_64() {
        // Reference values of FNV-1a 64 (the empty string is the offset basis).
        assert_eq!(fingerprint(""), "cbf29ce484222325");
        assert_eq!(fingerprint("a"), "af63dc4c8601ec8c");
    }
}
