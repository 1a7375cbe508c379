//! compose `healthcheck` → wharf's exec readiness probe, with compose's timing defaults made
//! explicit (wharf's differ) and compose durations (`1m30s`, `500ms`, `250us`) translated.

use serde_json::{Map, Value, json};
use wharf_manifest::values::Duration;
use wharf_manifest::yaml::{Node, NodeKind};

use crate::Importer;
use crate::service::{Service, key_span, scalar};

/// Keys of a compose healthcheck this module carries over.
const HANDLED: &[&str] = &[
    "test",
    "interval",
    "timeout",
    "retries",
    "start_period",
    "disable",
];

/// The `probes.ready` value for a service's healthcheck, or `None` when it has none (or it is
/// disabled). A docker healthcheck only marks a container unhealthy and never restarts it, so
/// it becomes a readiness probe, not a liveness one.
pub(crate) fn convert(imp: &mut Importer<'_>, service: &Service<'_>) -> Option<Value> {
    let node = service.node.get("healthcheck")?;
    let path = service.path("healthcheck");
    if node.get("disable").and_then(Node::as_str) == Some("true") {
        return None;
    }
    other_keys(imp, &path, node);
    let Some(test) = node.get("test") else {
        let span = key_span(service.node, "healthcheck", node);
        let message = format!(
            "`{path}` without `test` is not carried over: it tunes the image's own HEALTHCHECK, which wharf cannot see"
        );
        let hint = "add `probes.ready.exec.command` with the image's check";
        imp.warn(path, span, message, Some(hint));
        return None;
    };
    let command = test_command(imp, &path, test)?;
    let mut probe = Map::new();
    probe.insert("exec".to_owned(), json!({ "command": command }));
    let interval = duration(imp, &path, node, "interval").unwrap_or_else(|| "30s".to_owned());
    let timeout =
        duration(imp, &path, node, "timeout").unwrap_or_else(|| default_timeout(&interval));
    probe.insert("interval".to_owned(), json!(interval));
    probe.insert("timeout".to_owned(), json!(timeout));
    probe.insert(
        "failure_threshold".to_owned(),
        json!(retries(imp, &path, node)),
    );
    if let Some(start) = duration(imp, &path, node, "start_period") {
        probe.insert("start_period".to_owned(), json!(start));
    }
    Some(Value::Object(probe))
}

/// compose's default timeout is 30s; docker runs checks back to back, but wharf probes on a
/// timer, so an unwritten timeout is capped at the interval to keep probes from overlapping.
fn default_timeout(interval: &str) -> String {
    let interval_nanos = parse_duration(interval).filter(|_| !interval.contains('$'));
    match interval_nanos {
        Some(nanos) if nanos < 30_000_000_000 => interval.to_owned(),
        _ => "30s".to_owned(),
    }
}

/// `["CMD", args…]` → args; `["CMD-SHELL", "text"]` and a plain string → `[sh, -c, text]`;
/// `["NONE"]` → no probe.
fn test_command(imp: &mut Importer<'_>, path: &str, test: &Node) -> Option<Vec<String>> {
    let what = format!("{path}.test");
    let items = match &test.kind {
        NodeKind::Scalar { value, .. } => return Some(shell(value)),
        NodeKind::Seq(items) => items
            .iter()
            .map(|item| scalar(imp, item, &what))
            .collect::<Option<Vec<String>>>()?,
        _ => {
            imp.error(test.span, format!("`{what}` must be a string or a list"));
            return None;
        }
    };
    match items.split_first() {
        Some((first, rest)) if first == "CMD" && !rest.is_empty() => Some(rest.to_vec()),
        Some((first, rest)) if first == "CMD-SHELL" && !rest.is_empty() => {
            Some(shell(&rest.join(" ")))
        }
        Some((first, _)) if first == "NONE" => None,
        _ => {
            imp.error(
                test.span,
                format!(
                    "`{what}` must start with `CMD`, `CMD-SHELL` or `NONE`, followed by the command"
                ),
            );
            None
        }
    }
}

fn shell(text: &str) -> Vec<String> {
    vec!["sh".to_owned(), "-c".to_owned(), text.to_owned()]
}

/// A compose duration as wharf text; `None` when absent or unreadable (the error is recorded).
fn duration(imp: &mut Importer<'_>, path: &str, node: &Node, key: &str) -> Option<String> {
    let value = node.get(key)?;
    let text = scalar(imp, value, &format!("{path}.{key}"))?;
    if text.contains('$') {
        return Some(text);
    }
    let Some(nanos) = parse_duration(&text) else {
        imp.error(
            value.span,
            format!("`{path}.{key}`: `{text}` is not a duration (e.g. `30s`, `1m30s`, `500ms`)"),
        );
        return None;
    };
    let (wharf, exact) = to_wharf(nanos);
    if !exact {
        let message = format!(
            "`{path}.{key}`: `{text}` is rounded to `{wharf}`: wharf durations count whole milliseconds"
        );
        imp.changed(format!("{path}.{key}"), value.span, message, None);
    }
    Some(wharf)
}

/// `retries` → `failure_threshold` (compose's default is 3, as is wharf's).
fn retries(imp: &mut Importer<'_>, path: &str, node: &Node) -> u32 {
    let Some(value) = node.get("retries") else {
        return 3;
    };
    match value.as_str().and_then(|t| t.parse::<u32>().ok()) {
        Some(0) => {
            let message =
                format!("`{path}.retries: 0` becomes `failure_threshold: 1`, wharf's smallest");
            imp.changed(format!("{path}.retries"), value.span, message, None);
            1
        }
        Some(count) => count.min(1000),
        None => {
            imp.error(
                value.span,
                format!("`{path}.retries`: expected a whole number"),
            );
            3
        }
    }
}

fn other_keys(imp: &mut Importer<'_>, path: &str, node: &Node) {
    for (key, _) in crate::map_entries(node) {
        let Some(name) = key.as_str() else { continue };
        if !HANDLED.contains(&name) {
            let message =
                format!("`{path}.{name}` is not carried over: wharf probes have no equivalent");
            imp.warn(format!("{path}.{name}"), key.span, message, None);
        }
    }
}

/// Parses a Go duration as compose writes them (`1m30s`, `1.5s`, `500ms`, `250us`, `10ns`) into
/// nanoseconds.
pub(crate) fn parse_duration(text: &str) -> Option<u128> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(0);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let number: f64 = rest[..digits].parse().ok()?;
        let unit_len = rest[digits..]
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len() - digits);
        let nanos_per_unit = match &rest[digits..digits + unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += number * nanos_per_unit;
        rest = &rest[digits + unit_len..];
    }
    Some(total.round() as u128)
}

/// Nanoseconds as wharf duration text, rounded to the nearest millisecond (at least 1 ms when
/// not zero); `exact` is false when rounding changed the value.
pub(crate) fn to_wharf(nanos: u128) -> (String, bool) {
    let mut millis = (nanos + 500_000) / 1_000_000;
    if millis == 0 && nanos > 0 {
        millis = 1;
    }
    let exact = millis * 1_000_000 == nanos;
    let millis = u64::try_from(millis).unwrap_or(u64::MAX);
    (Duration::from_millis(millis).to_string(), exact)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_durations_become_wharf_durations() {
        let cases = [
            ("30s", "30s", true),
            ("1m30s", "1m30s", true),
            ("90s", "1m30s", true),
            ("500ms", "500ms", true),
            ("1.5s", "1s500ms", true),
            ("1h", "1h", true),
            ("0s", "0s", true),
            ("250us", "1ms", false),
            ("1500us", "2ms", false),
            ("2000000ns", "2ms", true),
        ];
        for (compose, wharf, exact) in cases {
            let nanos = parse_duration(compose).unwrap_or_else(|| panic!("{compose}"));
            assert_eq!(to_wharf(nanos), (wharf.to_owned(), exact), "{compose}");
        }
    }

    #[test]
    fn durations_without_units_or_with_unknown_units_are_rejected() {
        for text in ["30", "10 s", "1d", "", "s"] {
            assert_eq!(parse_duration(text), None, "{text}");
        }
    }
}
