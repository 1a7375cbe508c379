//! Notifiers: the IO edge that turns a page (one root cause) or a change event into the HTTP
//! request a receiver expects — PagerDuty's Events API v2, a Slack incoming webhook, or a
//! generic webhook in Alertmanager's version 4 shape — and delivers it reliably.
//!
//! Three layers, so each can be tested alone:
//! - [`body`] and [`change_body`] are pure: a [`Notice`] or [`Change`] in, JSON out.
//! - [`send`] sends one body once over [`Client`] and says whether a failure is worth retrying
//!   ([`SendError::is_retryable`]), with the receiver's `Retry-After` if it gave one.
//! - [`Courier`] owns one receiver's queue: in order, with exponential backoff and Slack's
//!   one message a second, reporting each item's [`Outcome`] on a channel the control plane reads.
//!
//! Receiver URLs and routing keys are secrets: [`Receiver`]'s `Debug` redacts them, no error's
//! `Display` or `Debug` contains them, and bodies meant to be persisted are built without the
//! routing key ([`send`] adds it from the receiver at the last moment).

mod courier;
mod generic;
mod pagerduty;
mod send;
mod slack;
mod text;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use courier::{Clock, Courier, Outcome, Policy, TokioClock};
pub use pagerduty::{PAGERDUTY_CHANGE_URL, PAGERDUTY_EVENTS_URL, change_url};
pub use send::{Client, REQUEST_TIMEOUT, SendError, send, send_change};

/// The payload shape a receiver speaks (the manifest's `webhook.format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// PagerDuty Events API v2 (`/v2/enqueue`, change events on `/v2/change/enqueue`).
    #[serde(rename = "pagerduty")]
    PagerDuty,
    /// A Slack incoming webhook: Block Kit with a `text` fallback.
    Slack,
    /// Alertmanager's webhook payload, version "4", which most receivers already read.
    Generic,
}

/// Whether a notice opens or closes its page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    /// Someone took it on (PagerDuty's `acknowledge`); still firing.
    Acknowledged,
    Resolved,
}

impl Status {
    /// The word Alertmanager uses (`firing` / `resolved`).
    pub fn as_str(self) -> &'static str {
        match self {
            // Alertmanager knows no acknowledgement: still firing.
            Status::Firing | Status::Acknowledged => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// PagerDuty's four severities; the other formats carry the same words as a label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Error,
    Warning,
    Info,
}

impl Severity {
    /// The word PagerDuty expects in `payload.severity`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// One notification about one page (one root cause). No secret in it: it is persisted as is.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Notice {
    /// Stable per page, e.g. `wharf/shop/oncall/db`: a resolve carries its trigger's key.
    pub dedup_key: String,
    pub status: Status,
    /// The alert's name.
    pub rule: String,
    pub stack: String,
    /// The service at the root of the failure.
    pub root_cause: String,
    /// One line for humans, e.g. "db is down (ready probe failing for 1m)".
    pub summary: String,
    pub severity: Severity,
    /// Dependents affected through the root cause.
    pub affected: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub started_at: jiff::Timestamp,
    pub resolved_at: Option<jiff::Timestamp>,
    /// Who acknowledged it (an acknowledgement's notice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
}

/// A change event (a deploy, a rollback, a rotation): PagerDuty's Change Events API, a Slack
/// message, or a generic webhook body with `"kind": "change"`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Change {
    pub summary: String,
    pub stack: String,
    pub service: Option<String>,
    pub at: jiff::Timestamp,
    pub details: BTreeMap<String, String>,
}

/// Where notices go. The URL and routing key come from wharf's secrets: `Debug` prints them
/// redacted, and no error message ever contains them.
#[derive(Clone, PartialEq, Eq)]
pub struct Receiver {
    /// The receiver's (alert's) name in the manifest; not a secret, it names the receiver in errors.
    pub name: String,
    pub format: Format,
    /// For PagerDuty, the Events API URL ([`PAGERDUTY_EVENTS_URL`] unless the manifest gives one).
    pub url: String,
    /// PagerDuty's integration key; unused by the other formats.
    pub routing_key: Option<String>,
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("url", &"[redacted]")
            .field(
                "routing_key",
                &self.routing_key.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// The JSON body that tells a receiver of `format` about `notice`. Pure.
///
/// `routing_key` is only used by PagerDuty. Pass `None` for a body that will be persisted
/// (an outbox row): [`send`] and [`Courier`] add the receiver's key when the body has none, so
/// the key never reaches the disk.
pub fn body(format: Format, notice: &Notice, routing_key: Option<&str>) -> serde_json::Value {
    match format {
        Format::PagerDuty => pagerduty::event(notice, routing_key),
        Format::Slack => slack::notice(notice),
        Format::Generic => generic::notice(notice),
    }
}

/// The JSON body that tells a receiver of `format` about a change. Pure; `routing_key` as in
/// [`body`]. Send it with [`send_change`] or [`Courier::push_change`]: PagerDuty takes change
/// events on another URL ([`change_url`]).
pub fn change_body(
    format: Format,
    change: &Change,
    routing_key: Option<&str>,
) -> serde_json::Value {
    match format {
        Format::PagerDuty => pagerduty::change(change, routing_key),
        Format::Slack => slack::change(change),
        Format::Generic => generic::change(change),
    }
}
