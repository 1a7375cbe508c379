//! `WHARF_LOG_FORMAT=json`: the control plane and the proxy it starts log one JSON object a
//! line on stderr (timestamp, level, target, fields with the message), through the real binaries; a
//! value other than `human` or `json` is refused before anything starts.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

fn assert_shape(line: &Value) {
    for field in ["timestamp", "level", "target", "fields"] {
        assert!(line.get(field).is_some(), "no `{field}` in {line}");
    }
    assert!(
        line["fields"]["message"].is_string(),
        "no message in {line}"
    );
}

#[test]
fn the_control_plane_and_its_proxy_log_json_lines() {
    let stack = Stack::new(&format!(
        "name: logs\nservices:\n  web:\n    command: [TESTBED, --port, \"${{PORT}}\"]\n    port: {}\n",
        free_port()
    ));
    let up = Command::new(wharf_bin())
        .args(["up", "-d", "--wait-timeout", "60s"])
        .current_dir(stack.path())
        .env("WHARF_LOG_FORMAT", "json")
        .env("WHARF_LOG", "info")
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );

    let control = stack.path().join(".wharf/control.log");
    let lines = eventually("the control plane's log", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&control).ok()?;
        let lines = json_lines(&text);
        (!lines.is_empty()).then_some(lines)
    });
    for line in &lines {
        assert_shape(line);
    }
    assert!(
        lines.iter().any(|l| l["level"] == "INFO"),
        "WHARF_LOG=info shows info lines: {lines:?}"
    );

    // The proxy's log is CRI-formatted (`TIME STREAM TAG MESSAGE`); each message is JSON.
    let proxy = stack.path().join(".wharf/logs/.proxy/0.log");
    let messages = eventually("the proxy's log", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&proxy).ok()?;
        // Logs are its stderr (stdout carries its one readiness line for scripts).
        let messages: Vec<Value> = text
            .lines()
            .map(|l| l.splitn(4, ' ').collect::<Vec<_>>())
            .filter(|parts| parts.len() == 4 && parts[1] == "stderr")
            .map(|parts| parts[3])
            .map(|m| serde_json::from_str(m).unwrap_or_else(|e| panic!("not JSON ({e}): {m}")))
            .collect();
        (!messages.is_empty()).then_some(messages)
    });
    for message in &messages {
        assert_shape(message);
    }
    let down = stack.wharf(&["down"]);
    assert!(down.status.success());
}

#[test]
fn an_unknown_log_format_is_refused_before_anything_starts() {
    let stack =
        Stack::new("name: logs\nservices:\n  web:\n    command: [TESTBED, --port, \"${PORT}\"]\n");
    let up = Command::new(wharf_bin())
        .args(["up", "-d"])
        .current_dir(stack.path())
        .env("WHARF_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert_eq!(up.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&up.stderr);
    assert!(
        stderr.contains("WHARF_LOG_FORMAT") && stderr.contains("json"),
        "{stderr}"
    );
    assert!(!stack.path().join(".wharf").exists(), "nothing was created");
}
