//! An alert rule as the engine reads it, built from the manifest's `alerts:` entry.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wharf_manifest::model::{Alert, AlertSeverity};

/// How a receiver ranks a page (PagerDuty's four levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Error,
    Warning,
    Info,
}

/// When a service's trouble becomes a page.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    /// The services it watches; empty: all.
    pub services: Vec<String>,
    /// How long the trouble must last before it pages (`for:`).
    pub after: Duration,
    /// Page when the share of 5xx answers over the window is above this (0..1).
    pub error_rate: Option<f64>,
    /// Page when the p95 latency over the window is above this.
    pub latency_p95: Option<Duration>,
    /// Page when the p99 latency over the window is above this.
    pub latency_p99: Option<Duration>,
    /// Page when a service is degraded (serving with fewer instances ready than wanted).
    pub degraded: bool,
    pub severity: Severity,
    pub labels: BTreeMap<String, String>,
}

/// `down_for` when the manifest gives none: long enough to ride out a restart.
pub const DEFAULT_AFTER: Duration = Duration::from_secs(60);

impl Rule {
    pub fn from_manifest(alert: &Alert) -> Rule {
        Rule {
            name: alert.name.clone(),
            services: alert.services.clone(),
            after: alert
                .thresholds
                .down_for
                .map_or(DEFAULT_AFTER, |d| d.as_std()),
            error_rate: alert.thresholds.error_rate.map(|p| p.fraction()),
            latency_p95: alert.thresholds.latency_p95.map(|d| d.as_std()),
            latency_p99: alert.thresholds.latency_p99.map(|d| d.as_std()),
            degraded: alert.thresholds.degraded.unwrap_or(false),
            severity: match alert.severity {
                AlertSeverity::Critical => Severity::Critical,
                AlertSeverity::Error => Severity::Error,
                AlertSeverity::Warning => Severity::Warning,
                AlertSeverity::Info => Severity::Info,
            },
            // The runbook its pages offer travels as a label: receivers show it, and
            // silences can match it.
            labels: alert
                .labels
                .clone()
                .into_iter()
                .chain(
                    alert
                        .runbook
                        .as_ref()
                        .map(|r| ("runbook".to_owned(), r.name.clone())),
                )
                .collect(),
        }
    }

    /// Whether the rule watches this service.
    /// A datastore's backups (`db:backups`) are watched with the datastore; a secret
    /// (`secret:NAME`) by rules that watch every service.
    pub fn watches(&self, service: &str) -> bool {
        let service = service.trim_end_matches(crate::BACKUPS_SUFFIX);
        self.services.is_empty() || self.services.iter().any(|s| s == service)
    }
}
