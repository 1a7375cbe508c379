//! Silences: an operator's audited promise that pages matching some labels are not sent until
//! a set time. Every silence expires (the time is mandatory); its creation and its end are
//! ledger entries, and its end is announced to the receivers, so none outlives its reason
//! unnoticed. A page that opens under a silence is recorded but not sent; if it is still open
//! when the silence ends, it is sent then. A resolve is always sent for a page that was sent.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How a matcher compares a page's label with its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MatchOp {
    /// `label=value`
    Equal,
    /// `label!=value`
    NotEqual,
}

/// One condition on a page: `service=api`, `alert=oncall`, `severity=critical`, or any label
/// the alert rule sets (`team=payments`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    pub label: String,
    pub op: MatchOp,
    pub value: String,
}

impl Matcher {
    /// Reads `label=value` or `label!=value`.
    pub fn parse(text: &str) -> Result<Matcher, String> {
        let (label, op, value) = if let Some((label, value)) = text.split_once("!=") {
            (label, MatchOp::NotEqual, value)
        } else if let Some((label, value)) = text.split_once('=') {
            (label, MatchOp::Equal, value)
        } else {
            return Err(format!(
                "`{text}` is not a matcher: write `label=value` or `label!=value` (labels: service, alert, severity, or one an alert sets)"
            ));
        };
        let matcher = Matcher {
            label: label.trim().to_owned(),
            op,
            value: value.trim().to_owned(),
        };
        matcher.check()?;
        Ok(matcher)
    }

    /// A label is a name (letters, digits, `_`, `-`, `.`), the value is not empty; both short.
    pub fn check(&self) -> Result<(), String> {
        let label_ok = !self.label.is_empty()
            && self.label.len() <= 64
            && self
                .label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if !label_ok {
            return Err(format!(
                "`{}` is not a label name (letters, digits, `_`, `-`, `.`; at most 64)",
                self.label
            ));
        }
        if self.value.is_empty() || self.value.len() > 256 {
            return Err(format!(
                "the matcher on `{}` needs a value of 1 to 256 characters",
                self.label
            ));
        }
        Ok(())
    }

    /// Whether a page with these labels matches.
    pub fn matches(&self, label: impl Fn(&str) -> Option<String>) -> bool {
        let actual = label(&self.label);
        match self.op {
            MatchOp::Equal => actual.as_deref() == Some(self.value.as_str()),
            MatchOp::NotEqual => actual.as_deref() != Some(self.value.as_str()),
        }
    }
}

/// The labels every page has; a rule's `labels:` add more.
pub const PAGE_LABELS: [&str; 5] = ["service", "root", "alert", "severity", "secret"];

/// Why a silence would match nothing in this stack, if it would: a label no page has, a
/// `service=`, `alert=` or `severity=` naming nothing there is (a typo silences nothing, and
/// says so, rather than being accepted and doing nothing).
pub fn check_against(
    matchers: &[Matcher],
    services: &[&str],
    alerts: &[&str],
    rule_labels: &[&str],
) -> Result<(), String> {
    for matcher in matchers {
        let label = matcher.label.as_str();
        if !PAGE_LABELS.contains(&label) && !rule_labels.contains(&label) {
            let mut known: Vec<&str> = PAGE_LABELS.to_vec();
            known.extend(rule_labels.iter().copied());
            return Err(format!(
                "no page has the label `{label}` (labels: {})",
                known.join(", ")
            ));
        }
        if matcher.op != MatchOp::Equal {
            continue;
        }
        let (what, known): (&str, Vec<&str>) = match label {
            "service" => ("service", services.to_vec()),
            "alert" => ("alert", alerts.to_vec()),
            "severity" => ("severity", vec!["critical", "error", "warning", "info"]),
            _ => continue,
        };
        if !known.contains(&matcher.value.as_str()) {
            return Err(format!(
                "the stack has no {what} `{}` (it has: {})",
                matcher.value,
                known.join(", ")
            ));
        }
    }
    Ok(())
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match self.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
        };
        write!(f, "{}{op}{}", self.label, self.value)
    }
}

/// A silence as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Silence {
    /// `s-` and a number.
    pub id: String,
    /// Every one must match for a page to be silenced.
    pub matchers: Vec<Matcher>,
    /// Who it is for (the person to ask about it).
    pub owner: String,
    pub reason: String,
    /// Declared maintenance: its window is left out of the status page's uptime.
    #[serde(default)]
    pub maintenance: bool,
    /// Who created it.
    pub created_by: String,
    /// RFC 3339.
    pub starts_at: String,
    /// RFC 3339; always set.
    pub ends_at: String,
    /// When it ended early or was seen to have expired (RFC 3339); `None` while active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_at: Option<String>,
    /// Who ended it early (`None` when it ran out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_by: Option<String>,
}

/// `POST /v1/silences`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSilenceRequest {
    /// At least one.
    pub matchers: Vec<Matcher>,
    /// Defaults to the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub reason: String,
    /// How long it lasts, in wharf's duration notation (`2h`, `30m`, `1d`); at most 30 days.
    pub duration: String,
    #[serde(default)]
    pub maintenance: bool,
}

/// `GET /v1/silences`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SilenceList {
    pub silences: Vec<Silence>,
}
