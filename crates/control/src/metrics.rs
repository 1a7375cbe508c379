//! What `/metrics` shows, as plain data: [`MetricsSnapshot`] is built by the loop in one go
//! (no IO but the state database's read connection) and rendered to text by the server.
//!
//! The proxy's counters are monotonic since *it* started; a restarted proxy starts again at
//! zero. [`TrafficTotals`] folds its snapshots into running totals the control plane keeps for
//! its own lifetime, so the counters `/metrics` exposes never go backwards while the control
//! plane runs (Prometheus' `rate()` treats a drop as a reset, which is what a control plane
//! restart is).

use std::collections::BTreeMap;

use crate::deploy::RolloutView;
use crate::proxy_link::{Classes, Snapshot, VersionSnapshot};
use crate::report::StatusReport;

/// Everything `/metrics` renders, taken at one moment.
#[derive(Debug, Clone)]
pub struct MetricsSnapshot {
    /// When it was taken: ages are measured from here.
    pub at: jiff::Timestamp,
    /// Services, instances (states, restarts, probes), open pages, backups.
    pub status: StatusReport,
    /// Each service's current or latest rollout.
    pub rollouts: Vec<RolloutView>,
    /// Requests through the proxy per service and version, since the control plane started.
    pub traffic: Vec<VersionTotals>,
    /// Each declared secret's age against its policy.
    pub secrets: Vec<SecretAge>,
    /// The ledger's size and checkpoints (`None`: the store could not be read).
    pub ledger: Option<LedgerFigures>,
}

/// One version's traffic since the control plane started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VersionTotals {
    pub service: String,
    pub version: String,
    pub responses: Classes,
    /// `(upper bound in µs, count)`, the proxy's fine log-spaced buckets, non-cumulative.
    pub latency_buckets: BTreeMap<u64, u64>,
    /// Sum of the latencies, in µs.
    pub latency_sum_us: f64,
}

/// A declared secret's age.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretAge {
    pub name: String,
    /// Since its latest version was set (`None`: never set).
    pub age_seconds: Option<f64>,
    /// The policy's `max_age` (`None`: no limit).
    pub max_age_seconds: Option<f64>,
}

/// The ledger's size and how much of it the latest checkpoint covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerFigures {
    pub entries: u64,
    pub checkpoints: u64,
    /// The size the latest checkpoint signed (0: none yet).
    pub checkpointed_entries: u64,
}

/// Running totals of the proxy's per-version counters.
#[derive(Debug, Default)]
pub struct TrafficTotals {
    totals: BTreeMap<(String, String), VersionTotals>,
    last: BTreeMap<(String, String), VersionSnapshot>,
    last_uptime_ms: u64,
}

impl TrafficTotals {
    /// Adds what happened since the previous snapshot. A proxy whose uptime went backwards
    /// restarted: its counters count from zero again, so all of them are new.
    pub fn fold(&mut self, snapshot: &Snapshot) {
        if snapshot.uptime_ms < self.last_uptime_ms {
            self.last.clear();
        }
        self.last_uptime_ms = snapshot.uptime_ms;
        for (service, counters) in &snapshot.services {
            for (version, now) in &counters.versions {
                let key = (service.clone(), version.clone());
                let before = self.last.get(&key).cloned().unwrap_or_default();
                let total = self
                    .totals
                    .entry(key.clone())
                    .or_insert_with(|| VersionTotals {
                        service: service.clone(),
                        version: version.clone(),
                        ..VersionTotals::default()
                    });
                add_delta(total, &before, now);
                self.last.insert(key, now.clone());
            }
        }
    }

    /// Every version seen so far, by service then version.
    pub fn rows(&self) -> Vec<VersionTotals> {
        self.totals.values().cloned().collect()
    }
}

/// Adds `now - before` to `total`; a counter that went down (the proxy's entry was reset)
/// counts from zero.
fn add_delta(total: &mut VersionTotals, before: &VersionSnapshot, now: &VersionSnapshot) {
    let delta = |now: u64, before: u64| now.checked_sub(before).unwrap_or(now);
    let (b, n) = (before.responses, now.responses);
    total.responses.c2xx += delta(n.c2xx, b.c2xx);
    total.responses.c3xx += delta(n.c3xx, b.c3xx);
    total.responses.c4xx += delta(n.c4xx, b.c4xx);
    total.responses.c5xx += delta(n.c5xx, b.c5xx);
    let earlier: BTreeMap<u64, u64> = before.latency_buckets.iter().copied().collect();
    for &(bound, count) in &now.latency_buckets {
        let added = delta(count, earlier.get(&bound).copied().unwrap_or(0));
        *total.latency_buckets.entry(bound).or_insert(0) += added;
    }
    let sum = |s: &VersionSnapshot| s.latency_us.mean * s.latency_us.count as f64;
    let (sum_now, sum_before) = (sum(now), sum(before));
    total.latency_sum_us += if sum_now >= sum_before {
        sum_now - sum_before
    } else {
        sum_now
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy_link::{LatencySummary, ServiceCounters};

    fn snapshot(uptime_ms: u64, ok: u64, errors: u64, buckets: Vec<(u64, u64)>) -> Snapshot {
        let count = buckets.iter().map(|(_, n)| n).sum();
        let version = VersionSnapshot {
            responses: Classes {
                c2xx: ok,
                c5xx: errors,
                ..Classes::default()
            },
            latency_buckets: buckets,
            latency_us: LatencySummary { count, mean: 100.0 },
        };
        Snapshot {
            uptime_ms,
            services: BTreeMap::from([(
                "web".to_owned(),
                ServiceCounters {
                    versions: BTreeMap::from([("v2".to_owned(), version)]),
                },
            )]),
            ..Snapshot::default()
        }
    }

    #[test]
    fn totals_add_differences_between_snapshots() {
        let mut totals = TrafficTotals::default();
        totals.fold(&snapshot(1_000, 10, 1, vec![(100, 11)]));
        totals.fold(&snapshot(2_000, 15, 3, vec![(100, 14), (200, 4)]));
        let rows = totals.rows();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].responses.c2xx, 15);
        assert_eq!(rows[0].responses.c5xx, 3);
        assert_eq!(
            rows[0].latency_buckets,
            BTreeMap::from([(100, 14), (200, 4)])
        );
        assert_eq!(rows[0].latency_sum_us, 1_800.0);
    }

    #[test]
    fn a_restarted_proxy_does_not_make_totals_go_backwards() {
        let mut totals = TrafficTotals::default();
        totals.fold(&snapshot(5_000, 100, 10, vec![(100, 110)]));
        // The proxy restarted: its counters start again from zero.
        totals.fold(&snapshot(500, 4, 1, vec![(100, 5)]));
        let rows = totals.rows();
        assert_eq!(rows[0].responses.c2xx, 104);
        assert_eq!(rows[0].responses.c5xx, 11);
        assert_eq!(rows[0].latency_buckets, BTreeMap::from([(100, 115)]));
    }
}
