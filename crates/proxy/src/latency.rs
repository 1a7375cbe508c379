//! A fixed set of latency buckets that any two snapshots share, so readers can subtract and
//! merge them bucket by bucket and compute quantiles for any interval they choose.
//!
//! # The bucket scheme
//!
//! Bucket `i` (for `i` in `0..=324`) counts samples `v` (in microseconds) with
//! `upper(i - 1) < v <= upper(i)`, where `upper(i) = ceil(50 · 2^(i/16))` µs and `upper(-1) = 0`:
//! 50, 53, 55, 57, 60, … 57 174 012, 59 705 322, 62 348 702 µs. Neighbouring bounds differ by
//! a factor of 2^(1/16) ≈ 1.044, so a quantile read from the buckets is within 4.4 % of the
//! truth (better with the interpolation [`quantile_from_buckets`] does); the range covers
//! 50 µs to a little over 60 s. Everything above the last bound lands in the overflow bucket,
//! whose upper bound is [`OVERFLOW_BOUND`] (`u64::MAX`).
//!
//! On the wire a histogram is sparse: `[[upper_bound_us, count], ...]`, only non-zero buckets,
//! in increasing order of bound. Counts only grow while the proxy runs, so for two snapshots
//! of the same proxy [`bucket_delta`] gives the histogram of exactly the requests in between.
//! The bounds are part of the wire format: they never change, only bucket indices are derived
//! from them.

use std::sync::atomic::{AtomicU64, Ordering};

/// Finite buckets; the overflow bucket comes after them.
pub const FINITE_BUCKETS: usize = 325;

/// The upper bound reported for the overflow bucket.
pub const OVERFLOW_BOUND: u64 = u64::MAX;

/// Every bucket, the overflow bucket last.
pub const BUCKETS: usize = FINITE_BUCKETS + 1;

/// 2^(j/16) · 2^32, rounded, for j in 0..16: the bounds are computed from these in integers,
/// so they are the same on every platform.
const FRACTIONS: [u128; 16] = [
    4294967296, 4485121744, 4683695048, 4891059943, 5107605667, 5333738689, 5569883475, 5816483285,
    6074001000, 6342919999, 6623745059, 6917003306, 7223245206, 7543045592, 7877004752, 8225749546,
];

const fn bounds() -> [u64; FINITE_BUCKETS] {
    let mut bounds = [0u64; FINITE_BUCKETS];
    let mut i = 0;
    while i < FINITE_BUCKETS {
        let scaled = (50u128 << (i / 16)) * FRACTIONS[i % 16];
        // Ceiling division by 2^32.
        bounds[i] = ((scaled + (1u128 << 32) - 1) >> 32) as u64;
        i += 1;
    }
    bounds
}

/// The upper bounds of the finite buckets, in microseconds.
pub const BOUNDS: [u64; FINITE_BUCKETS] = bounds();

/// The upper bound of bucket `index` ([`OVERFLOW_BOUND`] for the overflow bucket).
pub fn upper_bound(index: usize) -> u64 {
    BOUNDS.get(index).copied().unwrap_or(OVERFLOW_BOUND)
}

/// The bucket a sample of `micros` falls in.
pub fn bucket_index(micros: u64) -> usize {
    BOUNDS.partition_point(|&bound| bound < micros)
}

/// A histogram over the fixed buckets that the request path updates with one relaxed atomic
/// increment; no lock.
#[derive(Debug)]
pub struct AtomicBuckets {
    counts: [AtomicU64; BUCKETS],
}

impl Default for AtomicBuckets {
    fn default() -> Self {
        AtomicBuckets {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl AtomicBuckets {
    /// Count one sample.
    pub fn record(&self, micros: u64) {
        self.counts[bucket_index(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// Add every count to `into`, bucket by bucket.
    pub fn add_to(&self, into: &mut [u64; BUCKETS]) {
        for (sum, count) in into.iter_mut().zip(&self.counts) {
            *sum += count.load(Ordering::Relaxed);
        }
    }
}

/// The sparse wire form of dense counts: `(upper_bound_us, count)` for each non-zero bucket.
pub fn sparse(counts: &[u64; BUCKETS]) -> Vec<(u64, u64)> {
    counts
        .iter()
        .enumerate()
        .filter(|(_, count)| **count > 0)
        .map(|(index, count)| (upper_bound(index), *count))
        .collect()
}

/// The lower bound of the bucket whose upper bound is `upper`: the previous bound in the
/// scheme, or `previous` (the bound of the entry before it) for a bound the scheme lacks.
fn lower_bound(upper: u64, previous: u64) -> u64 {
    if upper == OVERFLOW_BOUND {
        return BOUNDS[FINITE_BUCKETS - 1];
    }
    match BOUNDS.binary_search(&upper) {
        Ok(0) => 0,
        Ok(index) => BOUNDS[index - 1],
        Err(_) => previous,
    }
}

/// The `q` quantile (0.0 to 1.0) of a sparse histogram, in milliseconds, interpolating
/// linearly inside the bucket it falls in; `None` when the histogram is empty. A quantile in
/// the overflow bucket is reported as the last finite bound (about 62.3 s): at least that.
/// `buckets` must be in increasing order of bound, as `/v1/stats` gives them.
pub fn quantile_from_buckets(buckets: &[(u64, u64)], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().map(|(_, count)| count).sum();
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    let mut previous = 0u64;
    for &(upper, count) in buckets {
        if count == 0 {
            continue;
        }
        let lower = lower_bound(upper, previous);
        if (below + count) as f64 >= rank {
            let micros = if upper == OVERFLOW_BOUND {
                lower as f64
            } else {
                let within = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
                lower as f64 + (upper - lower) as f64 * within
            };
            return Some(micros / 1000.0);
        }
        below += count;
        previous = upper;
    }
    // Unreachable with a non-zero total; the largest bound is the honest answer anyway.
    buckets.last().map(|(upper, _)| *upper as f64 / 1000.0)
}

/// The histogram of the samples counted between two snapshots of the same proxy: `newer`
/// minus `older`, bucket by bucket, sparse. A bucket that shrank (the proxy restarted in
/// between; its `uptime_ms` went down) counts 0.
pub fn bucket_delta(newer: &[(u64, u64)], older: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut older = older.iter().peekable();
    let mut delta = Vec::with_capacity(newer.len());
    for &(bound, count) in newer {
        while older.next_if(|(b, _)| *b < bound).is_some() {}
        let before = older.next_if(|(b, _)| *b == bound).map_or(0, |(_, c)| *c);
        let count = count.saturating_sub(before);
        if count > 0 {
            delta.push((bound, count));
        }
    }
    delta
}

/// Two sparse histograms added bucket by bucket (for instance the same version on two
/// proxies), sparse and in order of bound.
pub fn merge_buckets(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut merged = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let next = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.0 == y.0 => {
                i += 1;
                j += 1;
                (x.0, x.1 + y.1)
            }
            (Some(x), Some(y)) if x.0 < y.0 => {
                i += 1;
                *x
            }
            (Some(x), None) => {
                i += 1;
                *x
            }
            (_, Some(y)) => {
                j += 1;
                *y
            }
            (None, None) => break,
        };
        if next.1 > 0 {
            merged.push(next);
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_follow_the_documented_formula() {
        assert_eq!(&BOUNDS[..8], &[50, 53, 55, 57, 60, 63, 65, 68]);
        assert_eq!(BOUNDS[16], 100);
        assert_eq!(BOUNDS[160], 51_200);
        assert_eq!(
            &BOUNDS[FINITE_BUCKETS - 3..],
            &[57_174_012, 59_705_322, 62_348_702]
        );
        for (i, pair) in BOUNDS.windows(2).enumerate() {
            let ratio = pair[1] as f64 / pair[0] as f64;
            assert!(pair[1] > pair[0], "bound {i}");
            assert!(ratio < 1.07, "bound {i}: ratio {ratio}");
            let exact = 50.0 * 2f64.powf((i + 1) as f64 / 16.0);
            assert!((pair[1] as f64 - exact.ceil()).abs() <= 1.0, "bound {i}");
        }
    }

    #[test]
    fn samples_land_in_the_bucket_whose_range_holds_them() {
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(50), 0);
        assert_eq!(bucket_index(51), 1);
        assert_eq!(bucket_index(53), 1);
        assert_eq!(bucket_index(54), 2);
        assert_eq!(bucket_index(60_000_000), FINITE_BUCKETS - 1);
        assert_eq!(bucket_index(62_348_703), FINITE_BUCKETS);
        assert_eq!(bucket_index(u64::MAX), FINITE_BUCKETS);
        assert_eq!(upper_bound(FINITE_BUCKETS), OVERFLOW_BOUND);
    }

    fn histogram(samples: impl IntoIterator<Item = u64>) -> Vec<(u64, u64)> {
        let buckets = AtomicBuckets::default();
        for sample in samples {
            buckets.record(sample);
        }
        let mut dense = [0; BUCKETS];
        buckets.add_to(&mut dense);
        sparse(&dense)
    }

    #[test]
    fn quantiles_are_within_a_bucket_of_the_exact_ones() {
        // 1 ms to 100 ms in steps of 10 µs: p50 ≈ 50.5 ms, p95 ≈ 95 ms, p99 ≈ 99 ms; each read
        // from the buckets is off by less than the width of one (4.4 %).
        let buckets = histogram((100..=10_000).map(|i| i * 10));
        for (q, exact) in [(0.5, 50.5), (0.95, 95.05), (0.99, 99.01)] {
            let got = quantile_from_buckets(&buckets, q).unwrap();
            assert!(
                (got - exact).abs() / exact < 0.045,
                "q {q}: {got} vs {exact}"
            );
        }
        assert_eq!(quantile_from_buckets(&[], 0.99), None);
        assert_eq!(quantile_from_buckets(&[(100, 0)], 0.5), None);
    }

    #[test]
    fn quantile_of_a_single_bucket_interpolates_inside_it() {
        // Bucket (96, 100]: p50 is halfway.
        assert_eq!(quantile_from_buckets(&[(100, 10)], 0.5), Some(0.098));
        assert_eq!(quantile_from_buckets(&[(100, 10)], 1.0), Some(0.1));
        // Bucket (0, 50].
        assert_eq!(quantile_from_buckets(&[(50, 4)], 0.5), Some(0.025));
        // Overflow: at least the last finite bound.
        let overflow = quantile_from_buckets(&[(100, 1), (OVERFLOW_BOUND, 99)], 0.99);
        assert_eq!(overflow, Some(62_348.702));
    }

    #[test]
    fn a_delta_holds_only_the_interval_and_its_quantiles_are_the_intervals() {
        // Before: 1000 fast requests (~1 ms). Then 100 slow ones (~200 ms) and 100 fast.
        let older = histogram(std::iter::repeat_n(1_000, 1_000));
        let newer =
            histogram(std::iter::repeat_n(1_000, 1_100).chain(std::iter::repeat_n(200_000, 100)));
        let delta = bucket_delta(&newer, &older);
        let count: u64 = delta.iter().map(|(_, c)| c).sum();
        assert_eq!(count, 200);
        let p99 = quantile_from_buckets(&delta, 0.99).unwrap();
        assert!((190.0..=210.0).contains(&p99), "{p99}");
        // Over the whole life the slow ones are under 9 %: p90 is still fast.
        let p90 = quantile_from_buckets(&newer, 0.90).unwrap();
        assert!(p90 < 1.1, "{p90}");
        // Same snapshot: nothing happened.
        assert!(bucket_delta(&newer, &newer).is_empty());
        // A restart in between (counts went down) never yields negative counts.
        assert_eq!(bucket_delta(&[(100, 1)], &[(100, 5), (200, 1)]), vec![]);
        assert_eq!(bucket_delta(&[(100, 3)], &[(50, 5)]), vec![(100, 3)]);
    }

    #[test]
    fn merging_adds_bucket_by_bucket() {
        let a = [(50, 1), (100, 2), (OVERFLOW_BOUND, 1)];
        let b = [(53, 4), (100, 3)];
        assert_eq!(
            merge_buckets(&a, &b),
            vec![(50, 1), (53, 4), (100, 5), (OVERFLOW_BOUND, 1)]
        );
        assert_eq!(merge_buckets(&[], &b), b.to_vec());
    }
}
