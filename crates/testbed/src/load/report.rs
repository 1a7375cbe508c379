//! What a load run observed: one sample per request and the summaries tests assert on. Pure:
//! nothing here reads a clock or a socket.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

/// One answered (or failed) request of a load run.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// When the request was due, from the start of the run. The schedule is fixed in advance
    /// (open loop), so this is also when it was sent unless the generator fell behind.
    pub sent_at: Duration,
    /// How late the request actually left: waiting for the in-flight cap or a busy runtime.
    pub lag: Duration,
    /// From `sent_at` (the due time, so `lag` is included and a stalled generator cannot hide
    /// latency) until the whole response body arrived.
    pub latency: Duration,
    /// The response, or why there was none (connect error, reset, timeout).
    pub result: Result<Reply, String>,
}

/// A response as the load generator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// The `x-version` header, which wharf-testbed sets to its version.
    pub version: Option<String>,
}

impl Sample {
    /// A transport error or a status of 500 and above.
    pub fn is_failure(&self) -> bool {
        match &self.result {
            Ok(reply) => reply.status >= 500,
            Err(_) => true,
        }
    }

    /// The `x-version` of the response, if there was one and it carried the header.
    pub fn version(&self) -> Option<&str> {
        self.result.as_ref().ok()?.version.as_deref()
    }

    /// When the answer (or the error) arrived, from the start of the run.
    pub fn answered_at(&self) -> Duration {
        self.sent_at + self.latency
    }
}

/// Every request outcome of a run so far, ordered by `sent_at`.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Wall-clock start of the run, to relate samples to timestamps recorded elsewhere (the
    /// ledger, logs): a sample happened at `started_at + sent_at`.
    pub started_at: SystemTime,
    /// Monotonic start of the run, for the same purpose within this process.
    pub started: Instant,
    /// From the start until this report was taken (for a finished run: until the last answer).
    pub elapsed: Duration,
    /// Requests sent so far, including those still in flight (not yet in `samples`).
    pub sent: u64,
    /// Whether the run had ended when this report was taken.
    pub finished: bool,
    pub samples: Vec<Sample>,
}

impl LoadReport {
    /// Answered or failed requests (in-flight ones are not counted).
    pub fn total(&self) -> u64 {
        self.samples.len() as u64
    }

    /// Requests that did not fail (see [`Sample::is_failure`]).
    pub fn ok(&self) -> u64 {
        self.total() - self.failures()
    }

    /// Transport errors and responses with status 500 or above.
    pub fn failures(&self) -> u64 {
        self.samples.iter().filter(|s| s.is_failure()).count() as u64
    }

    /// Failures among requests sent at or after `offset` from the start.
    pub fn failures_after(&self, offset: Duration) -> u64 {
        self.samples
            .iter()
            .filter(|s| s.sent_at >= offset && s.is_failure())
            .count() as u64
    }

    /// The earliest-sent failed request.
    pub fn first_failure(&self) -> Option<&Sample> {
        self.samples.iter().find(|s| s.is_failure())
    }

    /// The latest-sent failed request.
    pub fn last_failure(&self) -> Option<&Sample> {
        self.samples.iter().rev().find(|s| s.is_failure())
    }

    /// The offset from the start of the run of a wall-clock time (zero if it is earlier).
    pub fn offset_of(&self, at: SystemTime) -> Duration {
        at.duration_since(self.started_at).unwrap_or_default()
    }

    /// Responses per `x-version` value; transport errors and responses without the header
    /// are not counted.
    pub fn by_version(&self) -> BTreeMap<String, u64> {
        count(self.samples.iter().filter_map(Sample::version))
    }

    /// Failed responses per `x-version` value (a 5xx from a bad version names it).
    pub fn failures_by_version(&self) -> BTreeMap<String, u64> {
        let failed = self.samples.iter().filter(|s| s.is_failure());
        count(failed.filter_map(Sample::version))
    }

    /// Responses per status code.
    pub fn by_status(&self) -> BTreeMap<u16, u64> {
        let mut counts = BTreeMap::new();
        for sample in &self.samples {
            if let Ok(reply) = &sample.result {
                *counts.entry(reply.status).or_default() += 1;
            }
        }
        counts
    }

    /// Transport errors per message.
    pub fn errors(&self) -> BTreeMap<String, u64> {
        count(
            self.samples
                .iter()
                .filter_map(|s| s.result.as_ref().err().map(String::as_str)),
        )
    }

    /// The latency at quantile `q` (0.0 to 1.0, nearest rank), over every sample.
    pub fn latency_quantile(&self, q: f64) -> Option<Duration> {
        quantile(self.samples.iter().map(|s| s.latency).collect(), q)
    }

    pub fn p50(&self) -> Option<Duration> {
        self.latency_quantile(0.50)
    }

    pub fn p95(&self) -> Option<Duration> {
        self.latency_quantile(0.95)
    }

    pub fn p99(&self) -> Option<Duration> {
        self.latency_quantile(0.99)
    }

    /// The send lag at quantile `q`: how well the generator held its schedule.
    pub fn lag_quantile(&self, q: f64) -> Option<Duration> {
        quantile(self.samples.iter().map(|s| s.lag).collect(), q)
    }

    /// Requests per second actually sent: intervals between the first and last real send
    /// times (`sent_at + lag`) over that span. `None` with fewer than two samples.
    pub fn achieved_rate(&self) -> Option<f64> {
        let sends = self.samples.iter().map(|s| s.sent_at + s.lag);
        let (first, last) = (sends.clone().min()?, sends.max()?);
        let span = (last - first).as_secs_f64();
        (self.samples.len() >= 2 && span > 0.0).then(|| (self.samples.len() - 1) as f64 / span)
    }

    /// The summary `wharf-load` prints: counts, per-version and per-status tallies, latency
    /// quantiles and failure offsets in milliseconds, the achieved rate.
    pub fn as_json(&self) -> serde_json::Value {
        // Milliseconds to the microsecond: finer digits are timer noise.
        let ms = |d: Option<Duration>| d.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3);
        let by_status: BTreeMap<String, u64> = self
            .by_status()
            .into_iter()
            .map(|(status, n)| (status.to_string(), n))
            .collect();
        let started_ms = self
            .started_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        serde_json::json!({
            "started_at_unix_ms": started_ms,
            "elapsed_ms": self.elapsed.as_millis(),
            "finished": self.finished,
            "sent": self.sent,
            "total": self.total(),
            "ok": self.ok(),
            "failures": self.failures(),
            "by_version": self.by_version(),
            "failures_by_version": self.failures_by_version(),
            "by_status": by_status,
            "errors": self.errors(),
            "latency_ms": {
                "p50": ms(self.p50()),
                "p95": ms(self.p95()),
                "p99": ms(self.p99()),
                "max": ms(self.latency_quantile(1.0)),
            },
            "lag_ms": { "p99": ms(self.lag_quantile(0.99)), "max": ms(self.lag_quantile(1.0)) },
            "first_failure_ms": ms(self.first_failure().map(|s| s.sent_at)),
            "last_failure_ms": ms(self.last_failure().map(|s| s.sent_at)),
            "achieved_rate": self.achieved_rate(),
        })
    }
}

fn count<'a>(keys: impl Iterator<Item = &'a str>) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for key in keys {
        *counts.entry(key.to_owned()).or_default() += 1;
    }
    counts
}

/// Nearest-rank quantile: the smallest value with at least `q` of the values at or below it.
fn quantile(mut values: Vec<Duration>, q: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = (q.clamp(0.0, 1.0) * values.len() as f64).ceil() as usize;
    Some(values[rank.saturating_sub(1).min(values.len() - 1)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn sample(sent: u64, latency: u64, result: Result<(u16, &str), &str>) -> Sample {
        Sample {
            sent_at: ms(sent),
            lag: Duration::ZERO,
            latency: ms(latency),
            result: result
                .map(|(status, version)| Reply {
                    status,
                    version: Some(version.to_owned()),
                })
                .map_err(str::to_owned),
        }
    }

    fn report(samples: Vec<Sample>) -> LoadReport {
        LoadReport {
            started_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1000),
            started: Instant::now(),
            elapsed: ms(1000),
            sent: samples.len() as u64,
            finished: true,
            samples,
        }
    }

    #[test]
    fn failures_are_errors_and_5xx_only() {
        let report = report(vec![
            sample(0, 10, Ok((200, "v1"))),
            sample(10, 10, Ok((404, "v1"))),
            sample(20, 10, Ok((500, "v2"))),
            sample(30, 10, Err("connection refused")),
            sample(40, 10, Ok((503, "v2"))),
        ]);
        assert_eq!((report.total(), report.ok(), report.failures()), (5, 2, 3));
        assert_eq!(report.first_failure().unwrap().sent_at, ms(20));
        assert_eq!(report.last_failure().unwrap().sent_at, ms(40));
        assert_eq!(report.failures_after(ms(30)), 2);
        assert_eq!(report.failures_after(ms(41)), 0);
        let versions = BTreeMap::from([("v1".to_owned(), 2), ("v2".to_owned(), 2)]);
        assert_eq!(report.by_version(), versions);
        assert_eq!(
            report.failures_by_version(),
            BTreeMap::from([("v2".to_owned(), 2)])
        );
        assert_eq!(
            report.by_status(),
            BTreeMap::from([(200, 1), (404, 1), (500, 1), (503, 1)])
        );
        assert_eq!(
            report.errors(),
            BTreeMap::from([("connection refused".to_owned(), 1)])
        );
        let later = report.started_at + ms(2500);
        assert_eq!(report.offset_of(later), ms(2500));
        assert_eq!(report.offset_of(SystemTime::UNIX_EPOCH), Duration::ZERO);
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let samples = (1..=100)
            .map(|i| sample(i * 10, i, Ok((200, "v1"))))
            .collect();
        let report = report(samples);
        assert_eq!(report.p50(), Some(ms(50)));
        assert_eq!(report.p95(), Some(ms(95)));
        assert_eq!(report.p99(), Some(ms(99)));
        assert_eq!(report.latency_quantile(1.0), Some(ms(100)));
        assert_eq!(report.latency_quantile(0.0), Some(ms(1)));
        // 100 sends 10 ms apart: 99 intervals over 990 ms.
        let rate = report.achieved_rate().unwrap();
        assert!((rate - 100.0).abs() < 1e-9, "{rate}");
    }

    #[test]
    fn an_empty_report_has_no_quantiles_or_rate() {
        let report = report(Vec::new());
        assert_eq!(report.p50(), None);
        assert_eq!(report.achieved_rate(), None);
        assert!(report.as_json()["latency_ms"]["p50"].is_null());
        assert_eq!(report.as_json()["total"], 0);
    }
}
