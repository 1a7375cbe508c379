//! Per-version traffic counters as the proxy reports them, and their totals over one step.

use serde::{Deserialize, Serialize};

/// One version's traffic over one sampling interval.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct VersionCounters {
    /// Requests completed in the interval.
    pub requests: u64,
    /// Of those, 5xx responses plus upstream errors (connect failures, resets, timeouts).
    pub errors: u64,
    /// p95 latency over the interval in milliseconds, from the proxy's histogram.
    pub p95_ms: Option<f64>,
    /// p99 latency over the interval in milliseconds.
    pub p99_ms: Option<f64>,
}

/// Both versions' counters over the **same** interval since the previous sample.
///
/// Counters are increments, not running totals: the sequential tests treat each window as a new
/// batch of evidence, so a window counted twice would inflate it. The control plane differences
/// the proxy's monotonic counters (and skips a window across a proxy restart).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Window {
    pub stable: VersionCounters,
    pub new: VersionCounters,
}

/// Running sums for one version within one step.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct VersionTotals {
    pub requests: u64,
    pub errors: u64,
    /// Requests whose windows carried a p95; the weight of the pooled quantiles.
    pub latency_requests: u64,
    p95_weighted: f64,
    p99_weighted: f64,
    p99_requests: u64,
}

impl VersionTotals {
    fn add(&mut self, counters: &VersionCounters) {
        self.requests += counters.requests;
        self.errors += counters.errors;
        let weight = counters.requests as f64;
        if let Some(p95) = counters.p95_ms {
            self.latency_requests += counters.requests;
            self.p95_weighted += p95 * weight;
        }
        if let Some(p99) = counters.p99_ms {
            self.p99_requests += counters.requests;
            self.p99_weighted += p99 * weight;
        }
    }

    /// Observed error fraction, `None` before the first request.
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }

    /// The request-weighted mean of the windows' p95s.
    ///
    /// Quantiles do not average exactly; with windows of similar latency distribution this is
    /// close to the step's p95, and it needs only what the proxy already reports. Merging the
    /// histograms themselves would be exact and is the upgrade path.
    pub fn p95_ms(&self) -> Option<f64> {
        (self.latency_requests > 0).then(|| self.p95_weighted / self.latency_requests as f64)
    }

    /// The request-weighted mean of the windows' p99s (see [`VersionTotals::p95_ms`]).
    pub fn p99_ms(&self) -> Option<f64> {
        (self.p99_requests > 0).then(|| self.p99_weighted / self.p99_requests as f64)
    }
}

/// Both versions' sums within the current step; reset when a step begins.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct StepTotals {
    pub stable: VersionTotals,
    pub new: VersionTotals,
}

impl StepTotals {
    pub fn add(&mut self, window: &Window) {
        self.stable.add(&window.stable);
        self.new.add(&window.new);
    }
}
