//! Per-service, per-version counters and latency histograms, kept since the proxy started,
//! read as JSON by `/v1/stats` and as OpenMetrics text by `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use serde::Serialize;

use crate::latency::{AtomicBuckets, BUCKETS, sparse};

/// Shards per version: each thread counts into one (threads take them in turn), so the
/// worker threads do not write to the same cache lines on every request; reads add them up.
pub(crate) const SHARDS: usize = 4;

/// One thread's share of a version's counters, on its own cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard {
    requests: AtomicU64,
    classes: [AtomicU64; 4],
    upstream_errors: AtomicU64,
    retries: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    latency_sum_us: AtomicU64,
    latency_max_us: AtomicU64,
    buckets: AtomicBuckets,
}

thread_local! {
    /// The shard this thread counts into.
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
    };
}

/// The shard (below [`SHARDS`]) the calling thread counts into.
pub(crate) fn shard_index() -> usize {
    SHARD.with(|shard| *shard)
}

/// Counters of one version of one service. The request path only does relaxed atomic adds
/// on its thread's shard: no lock.
#[derive(Debug)]
pub struct VersionStats {
    shards: Box<[Shard; SHARDS]>,
}

impl VersionStats {
    fn new() -> VersionStats {
        VersionStats {
            shards: Box::default(),
        }
    }

    fn shard(&self) -> &Shard {
        &self.shards[shard_index()]
    }

    /// A request was routed to this version.
    pub fn request(&self) {
        self.shard().requests.fetch_add(1, Ordering::Relaxed);
    }

    /// An answer (from the upstream, or the proxy's own 5xx) with the time to its headers.
    pub fn response(&self, status: u16, elapsed: Duration) {
        let class = match status {
            // The only final 1xx is 101, a protocol switch carried out: a success.
            100..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            _ => 3,
        };
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let shard = self.shard();
        shard.classes[class].fetch_add(1, Ordering::Relaxed);
        shard.buckets.record(micros);
        shard.latency_sum_us.fetch_add(micros, Ordering::Relaxed);
        // Read first: a new maximum is rare, so the common case writes nothing more.
        if micros > shard.latency_max_us.load(Ordering::Relaxed) {
            shard.latency_max_us.fetch_max(micros, Ordering::Relaxed);
        }
    }

    /// A connection to an upstream failed or it did not answer.
    pub fn upstream_error(&self) {
        self.shard().upstream_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A request was retried on another instance.
    pub fn retry(&self) {
        self.shard().retries.fetch_add(1, Ordering::Relaxed);
    }

    /// A TCP pass-through connection ended, having carried `up` bytes from the client to the
    /// upstream and `down` back.
    pub fn bytes(&self, up: u64, down: u64) {
        let shard = self.shard();
        shard.bytes_in.fetch_add(up, Ordering::Relaxed);
        shard.bytes_out.fetch_add(down, Ordering::Relaxed);
    }

    fn report(&self) -> VersionReport {
        let sum = |counter: fn(&Shard) -> &AtomicU64| -> u64 {
            self.shards
                .iter()
                .map(|shard| counter(shard).load(Ordering::Relaxed))
                .sum()
        };
        let mut dense = [0; BUCKETS];
        for shard in self.shards.iter() {
            shard.buckets.add_to(&mut dense);
        }
        let buckets = sparse(&dense);
        let max = self
            .shards
            .iter()
            .map(|shard| shard.latency_max_us.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        let latency = LatencyReport::from_buckets(&buckets, sum(|s| &s.latency_sum_us), max);
        VersionReport {
            requests: sum(|s| &s.requests),
            responses: Classes {
                c2xx: sum(|s| &s.classes[0]),
                c3xx: sum(|s| &s.classes[1]),
                c4xx: sum(|s| &s.classes[2]),
                c5xx: sum(|s| &s.classes[3]),
            },
            upstream_errors: sum(|s| &s.upstream_errors),
            retries: sum(|s| &s.retries),
            bytes_in: sum(|s| &s.bytes_in),
            bytes_out: sum(|s| &s.bytes_out),
            latency_us: latency,
            latency_buckets: buckets,
        }
    }
}

/// Every version's counters, by service then version; entries live as long as the process so
/// counters only grow and readers can take differences.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    versions: Mutex<BTreeMap<(String, String), Arc<VersionStats>>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            versions: Mutex::default(),
        }
    }
}

impl Stats {
    /// The counters of one version, created on first use.
    pub fn version(&self, service: &str, version: &str) -> Arc<VersionStats> {
        let mut versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        versions
            .entry((service.to_owned(), version.to_owned()))
            .or_insert_with(|| Arc::new(VersionStats::new()))
            .clone()
    }

    /// A snapshot for `/v1/stats`.
    pub fn report(&self) -> StatsReport {
        let versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        let mut services: BTreeMap<String, ServiceReport> = BTreeMap::new();
        for ((service, version), stats) in versions.iter() {
            services
                .entry(service.clone())
                .or_default()
                .versions
                .insert(version.clone(), stats.report());
        }
        StatsReport {
            uptime_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            services,
        }
    }

    fn all(&self) -> Vec<((String, String), VersionReport)> {
        let versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        versions
            .iter()
            .map(|(key, stats)| (key.clone(), stats.report()))
            .collect()
    }
}

/// `/v1/stats`.
#[derive(Debug, Serialize)]
pub struct StatsReport {
    /// Milliseconds since the proxy started; counters count from then.
    pub uptime_ms: u64,
    /// By service name.
    pub services: BTreeMap<String, ServiceReport>,
}

/// One service in `/v1/stats`.
#[derive(Debug, Default, Serialize)]
pub struct ServiceReport {
    /// By version name.
    pub versions: BTreeMap<String, VersionReport>,
}

/// One version in `/v1/stats`.
#[derive(Debug, Serialize)]
pub struct VersionReport {
    /// Requests routed to the version.
    pub requests: u64,
    /// Responses by status class.
    pub responses: Classes,
    /// Connection failures and timeouts talking to its instances.
    pub upstream_errors: u64,
    /// Retries on another instance after a refused connection.
    pub retries: u64,
    /// On a TCP pass-through port: bytes from clients to the version's instances, counted
    /// when each connection ends (absent while 0, and on HTTP ports).
    #[serde(skip_serializing_if = "is_zero")]
    pub bytes_in: u64,
    /// On a TCP pass-through port: bytes from the instances back to clients.
    #[serde(skip_serializing_if = "is_zero")]
    pub bytes_out: u64,
    /// Time to response headers, in microseconds.
    pub latency_us: LatencyReport,
    /// Time to response headers as `[upper_bound_us, count]` pairs over the fixed buckets of
    /// [`crate::latency`], non-zero buckets only, counted since the proxy started. Subtract two
    /// snapshots with [`crate::latency::bucket_delta`] for the requests in between.
    pub latency_buckets: Vec<(u64, u64)>,
}

fn is_zero(count: &u64) -> bool {
    *count == 0
}

/// Responses by status class.
#[derive(Debug, Serialize)]
pub struct Classes {
    /// 2xx, and 101 (a protocol switch the proxy carried).
    #[serde(rename = "2xx")]
    pub c2xx: u64,
    /// 3xx.
    #[serde(rename = "3xx")]
    pub c3xx: u64,
    /// 4xx.
    #[serde(rename = "4xx")]
    pub c4xx: u64,
    /// 5xx, including the proxy's own 502/503/504.
    #[serde(rename = "5xx")]
    pub c5xx: u64,
}

/// A latency summary, in microseconds. Quantiles come from the fixed buckets of
/// [`crate::latency`]: each is the upper bound of the bucket it falls in (at most 4.4 % above
/// the exact value), or the maximum when that is lower; `max` and `mean` are exact.
#[derive(Debug, Default, Serialize)]
pub struct LatencyReport {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl LatencyReport {
    fn from_buckets(buckets: &[(u64, u64)], sum: u64, max: u64) -> LatencyReport {
        let count: u64 = buckets.iter().map(|(_, count)| count).sum();
        let quantile = |q: f64| -> u64 {
            let rank = (q * count as f64).ceil() as u64;
            let mut below = 0;
            for &(bound, n) in buckets {
                below += n;
                if below >= rank {
                    return bound.min(max);
                }
            }
            max
        };
        if count == 0 {
            return LatencyReport::default();
        }
        LatencyReport {
            count,
            p50: quantile(0.50),
            p95: quantile(0.95),
            p99: quantile(0.99),
            max,
            mean: sum as f64 / count as f64,
        }
    }
}

/// Encodes the counters at scrape time, so the request path updates only one set of atomics.
#[derive(Debug)]
pub struct StatsCollector(pub Arc<Stats>);

impl Collector for StatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let all = self.0.all();
        let labels =
            |key: &(String, String)| vec![("service", key.0.clone()), ("version", key.1.clone())];
        let requests = all.iter().map(|(key, r)| (labels(key), r.requests));
        encode_counters(
            &mut encoder,
            "wharf_proxy_requests",
            "Requests routed to a version",
            requests,
        )?;
        let responses = all.iter().flat_map(|(key, report)| {
            let r = &report.responses;
            [
                ("2xx", r.c2xx),
                ("3xx", r.c3xx),
                ("4xx", r.c4xx),
                ("5xx", r.c5xx),
            ]
            .map(|(class, value)| {
                let mut set = labels(key);
                set.push(("class", class.to_owned()));
                (set, value)
            })
        });
        encode_counters(
            &mut encoder,
            "wharf_proxy_responses",
            "Responses by status class",
            responses,
        )?;
        let errors = all.iter().map(|(key, r)| (labels(key), r.upstream_errors));
        encode_counters(
            &mut encoder,
            "wharf_proxy_upstream_errors",
            "Connection failures and timeouts talking to a version's instances",
            errors,
        )?;
        let mut family = encoder.encode_descriptor(
            "wharf_proxy_latency_microseconds",
            "Time to response headers (quantiles from log-spaced buckets since start)",
            None,
            MetricType::Gauge,
        )?;
        for (key, report) in &all {
            let l = &report.latency_us;
            for (quantile, value) in [
                ("0.5", l.p50),
                ("0.95", l.p95),
                ("0.99", l.p99),
                ("1", l.max),
            ] {
                let mut set = labels(key);
                set.push(("quantile", quantile.to_owned()));
                let value = i64::try_from(value).unwrap_or(i64::MAX);
                family.encode_family(&set)?.encode_gauge(&value)?;
            }
        }
        Ok(())
    }
}

/// One counter family: a descriptor, then one sample per label set.
fn encode_counters(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl Iterator<Item = (Vec<(&'static str, String)>, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in samples {
        family
            .encode_family(&labels)?
            .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&value, None)?;
    }
    Ok(())
}
