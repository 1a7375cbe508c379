//! Slack incoming-webhook bodies: Block Kit blocks with a top-level `text`, which Slack shows
//! in notifications and screen readers instead of the blocks. A resolve is a message of its
//! own (an incoming webhook cannot edit the trigger's). Pure.
//!
//! Slack's limits, kept here: a header's text ≤ 150 characters, a section's text ≤ 3000, a
//! field's ≤ 2000. `&`, `<` and `>` are escaped in mrkdwn and `text`, as Slack asks, so a
//! service name or summary cannot become a link or a mention.

use serde_json::{Value, json};

use crate::text::{list, time, truncate};
use crate::{Change, Notice, Status};

const HEADER_MAX: usize = 150;
const SECTION_MAX: usize = 3000;
const FIELD_MAX: usize = 2000;

/// One message about a page: header, summary, root cause / status / severity / rule, the
/// affected dependents, and the times and dedup key as context.
pub(crate) fn notice(n: &Notice) -> Value {
    let (icon, word) = match n.status {
        Status::Firing => (":red_circle:", "Firing"),
        Status::Acknowledged => (":eyes:", "Acknowledged"),
        Status::Resolved => (":white_check_mark:", "Resolved"),
    };
    let header = format!("{word}: {} in {}", n.root_cause, n.stack);
    let text = match n.status {
        Status::Firing => format!(
            "[FIRING] {}: {} (root cause: {}; affected: {})",
            n.stack,
            n.summary,
            n.root_cause,
            list(&n.affected)
        ),
        Status::Acknowledged => format!(
            "[ACKNOWLEDGED] {}: {} taken on by {} ({})",
            n.stack,
            n.root_cause,
            n.acknowledged_by.as_deref().unwrap_or("someone"),
            n.summary
        ),
        Status::Resolved => format!(
            "[RESOLVED] {}: {} recovered (was: {})",
            n.stack, n.root_cause, n.summary
        ),
    };
    let mut context = format!("started {}", time(n.started_at));
    if let Some(at) = n.resolved_at {
        context.push_str(&format!(" · resolved {}", time(at)));
    }
    context.push_str(&format!(" · key `{}`", n.dedup_key));
    json!({
        "text": escape(&truncate(&text, SECTION_MAX)),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": truncate(&header, HEADER_MAX), "emoji": true}},
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("{icon} {}", escape(&truncate(&n.summary, SECTION_MAX - 20)))}},
            {"type": "section", "fields": [
                field("Root cause", &n.root_cause),
                field("Status", word),
                field("Severity", n.severity.as_str()),
                field("Rule", &n.rule),
            ]},
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("*Affected*\n{}", escape(&truncate(&list(&n.affected), SECTION_MAX - 20)))}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": escape(&context)}]},
        ],
    })
}

/// A change (deploy, rollback, rotation) as a short message.
pub(crate) fn change(c: &Change) -> Value {
    let mut context = format!("stack {}", c.stack);
    if let Some(service) = &c.service {
        context.push_str(&format!(" · service {service}"));
    }
    context.push_str(&format!(" · {}", time(c.at)));
    for (k, v) in &c.details {
        context.push_str(&format!(" · {k}: {v}"));
    }
    json!({
        "text": escape(&truncate(&format!("[CHANGE] {}: {}", c.stack, c.summary), SECTION_MAX)),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": format!(":arrows_counterclockwise: {}", escape(&truncate(&c.summary, SECTION_MAX - 40)))}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": escape(&truncate(&context, SECTION_MAX))}]},
        ],
    })
}

fn field(name: &str, value: &str) -> Value {
    json!({"type": "mrkdwn", "text": format!("*{name}*\n{}", escape(&truncate(value, FIELD_MAX - 40)))})
}

/// Slack's three control characters as entities.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_turns_control_characters_into_entities() {
        assert_eq!(escape("<!here> a&b"), "&lt;!here&gt; a&amp;b");
    }
}
