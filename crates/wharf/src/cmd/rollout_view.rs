//! How a rollout looks on the terminal, in one place for `deploy --watch`, `rollback --watch`
//! and `rollout status`: pure functions of a [`RolloutView`] (and the time now, for the
//! deadline), so every rendering is testable from a hand-made view.

use std::fmt::Write;

use serde_json::Value;
use wharf_api::{RolloutOutcome, RolloutView, VersionTraffic};

/// `rollout #3 of api: canary, v1 → v2`.
pub fn summary(view: &RolloutView) -> String {
    format!(
        "rollout #{} of {}: {}, {} → {}",
        view.id, view.service, view.strategy, view.stable_version, view.new_version
    )
}

/// `step 2/5` while a canary is in a step (the view counts steps from 0, people from 1).
pub fn step_text(view: &RolloutView) -> Option<String> {
    view.step
        .map(|step| format!("step {}/{}", step + 1, view.steps))
}

/// `v1 80% / v2 20%`.
pub fn weights_text(view: &RolloutView) -> String {
    format!(
        "{} {}% / {} {}%",
        view.stable_version, view.weight_stable, view.new_version, view.weight_new
    )
}

/// The latest verdict in words: its `verdict` and `reason` fields when it has them, else the
/// value as compact JSON.
pub fn verdict_text(verdict: &Value) -> String {
    match (verdict.get("verdict"), verdict.get("reason")) {
        (Some(word), reason) => {
            let word = plain(word);
            match reason {
                Some(reason) => format!("{word} ({})", plain(reason)),
                None => word,
            }
        }
        (None, _) => plain(verdict),
    }
}

/// A string as itself, anything else as compact JSON.
fn plain(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// One line for a log or a pipe: `phase step, step 2/5, v1 80% / v2 20%, verdict: …`.
/// `deploy --watch` prints it each time it changes when stdout is not a terminal.
pub fn state_line(view: &RolloutView) -> String {
    let mut line = format!("phase {}", view.phase);
    if let Some(step) = step_text(view) {
        let _ = write!(line, ", {step}");
    }
    if view.extended {
        line.push_str(" (extended: waiting for traffic)");
    }
    let _ = write!(line, ", {}", weights_text(view));
    if let Some(verdict) = &view.verdict {
        let _ = write!(line, ", verdict: {}", verdict_text(verdict));
    }
    line
}

/// The versions in the order shown: stable, new, then any other the proxy reported.
fn traffic_rows(view: &RolloutView) -> Vec<(&str, &'static str, VersionTraffic)> {
    let mut rows = vec![(view.stable_version.as_str(), "stable")];
    if view.new_version != view.stable_version {
        rows.push((view.new_version.as_str(), "new"));
    }
    for name in view.traffic.keys() {
        if !rows.iter().any(|(known, _)| known == name) {
            rows.push((name.as_str(), ""));
        }
    }
    rows.into_iter()
        .map(|(name, role)| {
            let traffic = view.traffic.get(name).copied().unwrap_or_default();
            (name, role, traffic)
        })
        .collect()
}

/// Requests, errors (with their rate) and p95 per version during the current step, aligned.
pub fn traffic_table(view: &RolloutView) -> Vec<String> {
    let rows = traffic_rows(view);
    let width = rows
        .iter()
        .map(|(name, _, _)| name.chars().count())
        .max()
        .unwrap_or(0)
        .max("version".len());
    let mut lines = vec![format!(
        "{:<width$}  {:<6}  {:>9}  {:>14}  {:>9}",
        "version", "", "requests", "errors", "p95"
    )];
    for (name, role, traffic) in rows {
        let rate = if traffic.requests == 0 {
            "-".to_owned()
        } else {
            format!(
                "{:.2}%",
                traffic.errors as f64 * 100.0 / traffic.requests as f64
            )
        };
        let p95 = traffic
            .p95_ms
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1} ms"));
        lines.push(format!(
            "{name:<width$}  {role:<6}  {:>9}  {:>14}  {p95:>9}",
            traffic.requests,
            format!("{} ({rate})", traffic.errors),
        ));
    }
    lines
}

/// `deadline in 42s` (or `deadline passed`) when the phase has one that parses.
fn deadline_text(view: &RolloutView, now: jiff::Timestamp) -> Option<String> {
    let deadline: jiff::Timestamp = view.deadline.as_deref()?.parse().ok()?;
    let left = deadline.as_second() - now.as_second();
    Some(if left >= 0 {
        format!("deadline in {}", seconds_text(left))
    } else {
        "deadline passed".to_owned()
    })
}

fn seconds_text(seconds: i64) -> String {
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
    }
}

/// The live view's body: summary, phase / step / weights / deadline, traffic, verdict.
pub fn live(view: &RolloutView, now: jiff::Timestamp) -> String {
    let mut text = summary(view);
    let _ = write!(text, "\nphase    {}", view.phase);
    if let Some(step) = step_text(view) {
        let _ = write!(text, ", {step}");
    }
    if view.extended {
        text.push_str(" (extended: the step lacks traffic, it runs on until its deadline)");
    }
    if let Some(deadline) = deadline_text(view, now) {
        let _ = write!(text, ", {deadline}");
    }
    let _ = write!(text, "\nweights  {}", weights_text(view));
    let _ = write!(
        text,
        "\nverdict  {}",
        view.verdict
            .as_ref()
            .map_or_else(|| "none yet".to_owned(), verdict_text)
    );
    for line in traffic_table(view) {
        let _ = write!(text, "\n  {line}");
    }
    text
}

/// How it ended, once it has: `succeeded: api runs v2` or `rolled back to v1: <reason>`.
pub fn outcome_line(view: &RolloutView) -> Option<String> {
    Some(match view.outcome? {
        RolloutOutcome::Succeeded => format!(
            "succeeded: {} runs {} (rollout #{})",
            view.service, view.new_version, view.id
        ),
        RolloutOutcome::RolledBack => format!(
            "rolled back to {}: {}",
            view.stable_version,
            view.reason.as_deref().unwrap_or("no reason given")
        ),
    })
}

/// `wharf rollout status`: the live view, the times and outcome, and the last `history`
/// transitions.
pub fn status(view: &RolloutView, now: jiff::Timestamp, history: usize) -> String {
    let mut text = live(view, now);
    let _ = write!(text, "\nstarted  {}", view.started_at);
    if let Some(finished) = &view.finished_at {
        let _ = write!(text, "\nfinished {finished}");
    }
    if let Some(outcome) = outcome_line(view) {
        let _ = write!(text, "\noutcome  {outcome}");
    }
    if !view.history.is_empty() {
        let skipped = view.history.len().saturating_sub(history);
        text.push_str("\nhistory");
        if skipped > 0 {
            let _ = write!(text, " (last {history} of {})", view.history.len());
        }
        for entry in &view.history[skipped..] {
            let _ = write!(text, "\n  {}", history_line(entry));
        }
    }
    text
}

/// One `{at, action, details}` transition on a line; details as compact JSON, shortened.
fn history_line(entry: &Value) -> String {
    let (Some(at), Some(action)) = (entry.get("at"), entry.get("action")) else {
        return shorten(&entry.to_string(), 160);
    };
    let mut line = format!("{}  {}", plain(at), plain(action));
    match entry.get("details") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) if map.is_empty() => {}
        Some(details) => {
            let _ = write!(line, "  {}", shorten(&plain(details), 120));
        }
    }
    line
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(max - 1).collect();
    short.push('…');
    short
}

/// Where the progress bar stands: (position, length). A canary counts its steps, the
/// current one included; the other strategies fill the bar when the rollout is over.
pub fn progress(view: &RolloutView) -> (u64, u64) {
    let len = view.steps.max(1) as u64;
    let pos = match (view.outcome, view.step) {
        (Some(RolloutOutcome::Succeeded), _) => len,
        (_, Some(step)) => (step as u64 + 1).min(len),
        _ => 0,
    };
    (pos, len)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn canary() -> RolloutView {
        let mut traffic = BTreeMap::new();
        traffic.insert(
            "v1".to_owned(),
            VersionTraffic {
                requests: 800,
                errors: 2,
                p95_ms: Some(41.5),
            },
        );
        traffic.insert(
            "v2".to_owned(),
            VersionTraffic {
                requests: 200,
                errors: 9,
                p95_ms: None,
            },
        );
        RolloutView {
            service: "api".to_owned(),
            id: 3,
            strategy: wharf_api::RolloutStrategy::Canary,
            phase: wharf_api::RolloutPhase::Step,
            stable_version: "v1".to_owned(),
            new_version: "v2".to_owned(),
            step: Some(1),
            steps: 4,
            weight_stable: 80,
            weight_new: 20,
            extended: false,
            traffic,
            verdict: Some(
                json!({"verdict": "continue", "reason": "not enough evidence", "n": 200}),
            ),
            outcome: None,
            reason: None,
            started_at: "2025-06-01T12:00:00Z".to_owned(),
            finished_at: None,
            deadline: Some("2025-06-01T12:01:30Z".to_owned()),
            history: vec![
                json!({"at": "2025-06-01T12:00:00Z", "action": "rollout.start", "details": {"strategy": "canary"}}),
                json!({"at": "2025-06-01T12:00:30Z", "action": "rollout.step", "details": {"step": 1, "weight": 20}}),
            ],
        }
    }

    fn noon() -> jiff::Timestamp {
        "2025-06-01T12:00:48Z".parse().unwrap()
    }

    #[test]
    fn summary_names_id_strategy_and_versions() {
        assert_eq!(summary(&canary()), "rollout #3 of api: canary, v1 → v2");
    }

    #[test]
    fn live_view_of_a_canary_step() {
        let expected = "\
rollout #3 of api: canary, v1 → v2
phase    step, step 2/4, deadline in 42s
weights  v1 80% / v2 20%
verdict  continue (not enough evidence)
  version           requests          errors        p95
  v1       stable        800       2 (0.25%)    41.5 ms
  v2       new           200       9 (4.50%)          -";
        assert_eq!(live(&canary(), noon()), expected);
    }

    #[test]
    fn verdicts_without_the_usual_fields_print_as_json() {
        assert_eq!(verdict_text(&json!({"verdict": "abort"})), "abort");
        assert_eq!(verdict_text(&json!("promote")), "promote");
        assert_eq!(
            verdict_text(&json!({"ratio": 1.5, "n": 10})),
            r#"{"ratio":1.5,"n":10}"#
        );
    }

    #[test]
    fn state_line_for_pipes() {
        let mut view = canary();
        view.extended = true;
        assert_eq!(
            state_line(&view),
            "phase step, step 2/4 (extended: waiting for traffic), v1 80% / v2 20%, \
             verdict: continue (not enough evidence)"
        );
        view.step = None;
        view.verdict = None;
        view.phase = wharf_api::RolloutPhase::Draining;
        view.extended = false;
        assert_eq!(state_line(&view), "phase draining, v1 80% / v2 20%");
    }

    #[test]
    fn status_of_a_rolled_back_rollout_with_long_history() {
        let mut view = canary();
        view.phase = wharf_api::RolloutPhase::RolledBack;
        view.outcome = Some(RolloutOutcome::RolledBack);
        view.reason = Some("error rate of v2 above v1's (e-value 31 ≥ 20)".to_owned());
        view.finished_at = Some("2025-06-01T12:00:47Z".to_owned());
        view.deadline = None;
        view.traffic.clear();
        view.history = (0..12)
            .map(|i| json!({"at": format!("t{i}"), "action": "rollout.step", "details": {}}))
            .collect();
        let text = status(&view, noon(), 10);
        assert!(
            text.contains("\nphase    rolled-back, step 2/4\n"),
            "{text}"
        );
        assert!(
            text.contains("outcome  rolled back to v1: error rate of v2 above v1's"),
            "{text}"
        );
        assert!(text.contains("finished 2025-06-01T12:00:47Z"), "{text}");
        assert!(
            text.contains("history (last 10 of 12)\n  t2  rollout.step\n"),
            "{text}"
        );
        assert!(text.ends_with("  t11  rollout.step"), "{text}");
        // Versions without traffic yet still get a row each.
        assert!(
            text.contains("  v2       new             0           0 (-)"),
            "{text}"
        );
    }

    #[test]
    fn outcome_lines() {
        let mut view = canary();
        assert_eq!(outcome_line(&view), None);
        view.outcome = Some(RolloutOutcome::Succeeded);
        assert_eq!(
            outcome_line(&view).unwrap(),
            "succeeded: api runs v2 (rollout #3)"
        );
        view.outcome = Some(RolloutOutcome::RolledBack);
        assert_eq!(
            outcome_line(&view).unwrap(),
            "rolled back to v1: no reason given"
        );
    }

    #[test]
    fn progress_counts_steps() {
        let mut view = canary();
        assert_eq!(progress(&view), (2, 4));
        view.outcome = Some(RolloutOutcome::Succeeded);
        assert_eq!(progress(&view), (4, 4));
        let mut blue_green = canary();
        blue_green.strategy = wharf_api::RolloutStrategy::BlueGreen;
        blue_green.step = None;
        blue_green.steps = 0;
        assert_eq!(progress(&blue_green), (0, 1));
    }

    #[test]
    fn long_history_details_are_shortened() {
        let entry = json!({"at": "t", "action": "a", "details": {"x": "y".repeat(300)}});
        let line = history_line(&entry);
        assert!(line.ends_with('…') && line.chars().count() < 140, "{line}");
    }
}
