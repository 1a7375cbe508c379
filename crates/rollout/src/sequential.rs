//! Anytime-valid sequential tests on error counts: checked after every sample, still bounded.
//!
//! # The statistic
//!
//! Both tests are **mixture likelihood ratios** (Robbins' method of mixtures, the family that
//! Lindon, Sanden and Shirikian use for Netflix's canaries: "Rapid Regression Detection in
//! Software Deployments through Sequential Testing", KDD 2022, arXiv 2205.14762). For each
//! alternative θ on a fixed grid we keep the log likelihood ratio `ℓ_θ` of all windows seen so
//! far against the null; the statistic is the prior-weighted mixture
//! `M = Σ_θ w_θ · exp(ℓ_θ)` with uniform weights `w_θ = 1/|grid|`, and the test rejects the
//! first time `M ≥ 1/α`.
//!
//! # Why it is anytime-valid
//!
//! Under the null each `exp(ℓ_θ)` is a non-negative supermartingale with initial value 1 (see
//! each test for the one-line argument), so the mixture is one too, because the weights do not
//! depend on the data. Ville's inequality then gives `P(∃ t: M_t ≥ 1/α) ≤ α`: the false-abort
//! probability stays below α however many times the statistic is looked at, including after
//! every sample, across steps whose weights differ, and across a crash (the `ℓ_θ` are persisted).
//! A fixed threshold on the observed rate checked every few seconds has no such bound.
//!
//! A discrete grid instead of the conjugate Beta/Dirichlet mixture of the paper keeps the
//! update exact when the traffic split changes from one window to the next (each canary step
//! has its own weight), at the cost of a log(|grid|) term in the evidence needed.

use serde::{Deserialize, Serialize};

use crate::stats::Window;

/// Rate ratios `λ_new / λ_stable` that the comparison test mixes over. Spread geometrically so
/// both a 1.5× and a 200× regression find a close alternative.
const RATIO_GRID: [f64; 12] = [
    1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0,
];

/// Multiples of `max_error_rate` that the absolute test mixes over.
const BOUND_GRID: [f64; 8] = [1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0];

/// One mixture test: the log likelihood ratio of the data under each grid alternative.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MixtureTest {
    log_ratios: Vec<f64>,
}

impl MixtureTest {
    fn new(alternatives: usize) -> Self {
        MixtureTest {
            log_ratios: vec![0.0; alternatives],
        }
    }

    /// `ln M`: the log of the uniform mixture of the likelihood ratios (log-sum-exp, stable).
    pub fn log_statistic(&self) -> f64 {
        let Some(max) = self.log_ratios.iter().copied().reduce(f64::max) else {
            return 0.0;
        };
        let sum: f64 = self.log_ratios.iter().map(|l| (l - max).exp()).sum();
        max + (sum / self.log_ratios.len() as f64).ln()
    }

    /// Whether the evidence against the null reached `1/alpha`.
    pub fn rejects(&self, alpha: f64) -> bool {
        self.log_statistic() >= (1.0 / alpha).ln()
    }

    fn update(&mut self, increments: impl Iterator<Item = f64>) {
        for (total, increment) in self.log_ratios.iter_mut().zip(increments) {
            *total += increment;
        }
    }
}

/// The evidence gathered over the whole rollout; it is not reset between steps because the new
/// version is the same at every step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// New error rate above stable's, over the same windows.
    pub comparison: MixtureTest,
    /// New error rate above the manifest's `max_error_rate`.
    pub absolute: MixtureTest,
    /// The bound the absolute test was started with (`None`: no bound, or a zero bound that
    /// any error breaks, see [`Evidence::observe`]).
    pub bound: Option<f64>,
    /// Errors seen on the new version while the bound is zero.
    pub errors_over_zero_bound: u64,
}

impl Evidence {
    pub fn new(max_error_rate: Option<f64>) -> Self {
        Evidence {
            comparison: MixtureTest::new(RATIO_GRID.len()),
            absolute: MixtureTest::new(BOUND_GRID.len()),
            bound: max_error_rate.filter(|b| *b < 1.0),
            errors_over_zero_bound: 0,
        }
    }

    /// Adds one window of counts to both tests.
    pub fn observe(&mut self, window: &Window) {
        self.observe_comparison(window);
        match self.bound {
            Some(bound) if bound <= 0.0 => self.errors_over_zero_bound += window.new.errors,
            Some(bound) => self.observe_absolute(bound, window),
            None => {}
        }
    }

    /// **Comparison with stable.** Null: the new version's per-request error probability is at
    /// most stable's. Given a window's request counts `n_new`, `n_stable` and its total errors
    /// `E`, the new version's share `X` of the errors is, under equal probabilities,
    /// hypergeometric, which Hoeffding (1963, Thm. 4) shows is dominated in convex order by
    /// `Binomial(E, q)` with `q = n_new / (n_new + n_stable)`. Under a rate ratio θ the share is
    /// `π_θ = θq / (θq + 1 − q)`; the window's ratio is
    /// `(π_θ/q)^X · ((1−π_θ)/(1−q))^(E−X)`, convex in `X`, whose binomial mean is
    /// `(π_0 π_θ/q + (1−π_0)(1−π_θ)/(1−q))^E ≤ 1` for every true share `π_0 ≤ q` (linear in
    /// `π_0`, equal to 1 at `q`). So each factor has conditional mean ≤ 1: a supermartingale.
    /// Windows where one version served nothing carry no comparison and are skipped.
    fn observe_comparison(&mut self, window: &Window) {
        let (n_new, n_stable) = (window.new.requests, window.stable.requests);
        let (x, y) = (window.new.errors as f64, window.stable.errors as f64);
        if n_new == 0 || n_stable == 0 || x + y == 0.0 {
            return;
        }
        let q = n_new as f64 / (n_new + n_stable) as f64;
        self.comparison.update(RATIO_GRID.iter().map(|theta| {
            let pi = theta * q / (theta * q + 1.0 - q);
            x * (pi / q).ln() + y * ((1.0 - pi) / (1.0 - q)).ln()
        }));
    }

    /// **Absolute bound.** Null: the new version's error probability is at most `p0 =
    /// max_error_rate`. Each request is Bernoulli; against `p_a = r · p0` (capped below 1) a
    /// window with `x` errors in `n` requests has ratio `(p_a/p0)^x ((1−p_a)/(1−p0))^(n−x)`,
    /// whose mean `(p · p_a/p0 + (1−p)(1−p_a)/(1−p0))^n` is ≤ 1 for every `p ≤ p0` by the same
    /// linearity argument.
    fn observe_absolute(&mut self, p0: f64, window: &Window) {
        let n = window.new.requests as f64;
        let x = window.new.errors.min(window.new.requests) as f64;
        if n == 0.0 {
            return;
        }
        self.absolute.update(BOUND_GRID.iter().map(|r| {
            let pa = (r * p0).min(0.5 * (1.0 + p0));
            x * (pa / p0).ln() + (n - x) * ((1.0 - pa) / (1.0 - p0)).ln()
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::VersionCounters;

    fn window(new: (u64, u64), stable: (u64, u64)) -> Window {
        let counters = |(requests, errors)| VersionCounters {
            requests,
            errors,
            ..VersionCounters::default()
        };
        Window {
            new: counters(new),
            stable: counters(stable),
        }
    }

    #[test]
    fn the_statistic_starts_at_one_and_is_the_mean_of_the_ratios() {
        let mut test = MixtureTest::new(2);
        assert_eq!(test.log_statistic(), 0.0);
        test.update([2.0_f64.ln(), 4.0_f64.ln()].into_iter());
        assert!((test.log_statistic() - 3.0_f64.ln()).abs() < 1e-12);
        assert!(test.rejects(1.0 / 2.9) && !test.rejects(1.0 / 3.1));
    }

    #[test]
    fn errors_only_on_the_new_version_raise_the_comparison() {
        let mut evidence = Evidence::new(None);
        evidence.observe(&window((20, 5), (180, 0)));
        assert!(evidence.comparison.log_statistic() > 0.0);
        let mut fair = Evidence::new(None);
        fair.observe(&window((20, 1), (180, 9)));
        assert!(
            fair.comparison.log_statistic() < 0.0,
            "errors in proportion are evidence for H0"
        );
    }

    #[test]
    fn windows_without_both_versions_or_errors_carry_no_comparison() {
        let mut evidence = Evidence::new(None);
        for w in [
            window((0, 0), (100, 5)),
            window((100, 50), (0, 0)),
            window((20, 0), (180, 0)),
        ] {
            evidence.observe(&w);
        }
        assert_eq!(evidence.comparison.log_statistic(), 0.0);
    }

    #[test]
    fn a_zero_bound_counts_every_error() {
        let mut evidence = Evidence::new(Some(0.0));
        evidence.observe(&window((10, 1), (10, 0)));
        assert_eq!(evidence.errors_over_zero_bound, 1);
    }

    #[test]
    fn the_absolute_test_rejects_a_rate_far_above_its_bound() {
        let mut evidence = Evidence::new(Some(0.01));
        evidence.observe(&window((100, 20), (0, 0)));
        assert!(evidence.absolute.rejects(0.005));
        let mut within = Evidence::new(Some(0.01));
        within.observe(&window((100, 1), (0, 0)));
        assert!(!within.absolute.rejects(0.005));
    }
}
