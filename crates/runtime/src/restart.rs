//! When to restart an instance that exited, and how long to wait first.
//!
//! Pure policy: exponential backoff that resets after a healthy run, and crash-loop detection,
//! so a service that dies on start is reported as crash-looping instead of being restarted
//! forever at full speed.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::spec::ExitStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    Always,
    /// After a failed exit; with `max_retries`, at most that many restarts of the instance
    /// (compose's `on-failure:N`), after which it stays exited.
    OnFailure {
        max_retries: Option<u32>,
    },
    Never,
}

/// Backoff and crash-loop thresholds.
#[derive(Debug, Clone, Copy)]
pub struct RestartLimits {
    /// Delay before the first restart after a short run.
    pub base: Duration,
    /// The delay never grows past this.
    pub max: Duration,
    /// A run at least this long counts as healthy and resets the backoff.
    pub healthy_run: Duration,
    /// This many short runs in a row make the instance crash-looping.
    pub crash_loop_after: u32,
}

impl Default for RestartLimits {
    fn default() -> Self {
        RestartLimits {
            base: Duration::from_millis(500),
            max: Duration::from_secs(30),
            healthy_run: Duration::from_secs(10),
            crash_loop_after: 3,
        }
    }
}

/// What to do about an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start it again after this delay.
    Restart {
        after: Duration,
        crash_looping: bool,
    },
    /// Leave it stopped (policy says so).
    Stay,
}

/// The restart history of one instance slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestartHistory {
    /// Short runs in a row (reset by a healthy run).
    pub short_runs: u32,
    /// Restarts so far, for `wharf status`.
    pub restarts: u32,
}

impl RestartHistory {
    /// Decides about an exit after the instance ran for `ran_for`, and records it.
    pub fn on_exit(
        &mut self,
        policy: RestartPolicy,
        exit: &ExitStatus,
        ran_for: Duration,
        limits: &RestartLimits,
    ) -> Decision {
        let wanted = match policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure { max_retries } => {
                !exit.success() && max_retries.is_none_or(|max| self.restarts < max)
            }
            RestartPolicy::Never => false,
        };
        if !wanted {
            return Decision::Stay;
        }
        if ran_for >= limits.healthy_run {
            self.short_runs = 0;
        }
        self.short_runs += 1;
        self.restarts += 1;
        let exponent = self.short_runs.saturating_sub(1).min(16);
        let after = limits.base.saturating_mul(1 << exponent).min(limits.max);
        Decision::Restart {
            after,
            crash_looping: self.short_runs >= limits.crash_loop_after,
        }
    }

    pub fn is_crash_looping(&self, limits: &RestartLimits) -> bool {
        self.short_runs >= limits.crash_loop_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: i32) -> ExitStatus {
        ExitStatus {
            code: Some(code),
            signal: None,
            at: String::new(),
        }
    }

    #[test]
    fn short_runs_back_off_exponentially_and_flag_a_crash_loop() {
        let limits = RestartLimits::default();
        let mut history = RestartHistory::default();
        let delays: Vec<_> = (0..8)
            .map(|_| {
                history.on_exit(
                    RestartPolicy::Always,
                    &exit(1),
                    Duration::from_millis(100),
                    &limits,
                )
            })
            .collect();
        let millis: Vec<u128> = delays
            .iter()
            .map(|d| match d {
                Decision::Restart { after, .. } => after.as_millis(),
                Decision::Stay => 0,
            })
            .collect();
        assert_eq!(millis, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        assert!(matches!(
            delays[1],
            Decision::Restart {
                crash_looping: false,
                ..
            }
        ));
        assert!(matches!(
            delays[2],
            Decision::Restart {
                crash_looping: true,
                ..
            }
        ));
        assert_eq!(history.restarts, 8);
    }

    #[test]
    fn a_healthy_run_resets_the_backoff() {
        let limits = RestartLimits::default();
        let mut history = RestartHistory::default();
        for _ in 0..4 {
            history.on_exit(RestartPolicy::Always, &exit(1), Duration::ZERO, &limits);
        }
        let decision = history.on_exit(
            RestartPolicy::Always,
            &exit(1),
            Duration::from_secs(60),
            &limits,
        );
        assert_eq!(
            decision,
            Decision::Restart {
                after: limits.base,
                crash_looping: false
            }
        );
    }

    const ON_FAILURE: RestartPolicy = RestartPolicy::OnFailure { max_retries: None };

    #[test]
    fn on_failure_with_a_limit_stops_restarting_after_that_many_retries() {
        let limits = RestartLimits::default();
        let mut history = RestartHistory::default();
        let policy = RestartPolicy::OnFailure {
            max_retries: Some(2),
        };
        let mut decide = || history.on_exit(policy, &exit(1), Duration::from_secs(60), &limits);
        assert!(matches!(decide(), Decision::Restart { .. }));
        assert!(matches!(decide(), Decision::Restart { .. }));
        assert_eq!(
            decide(),
            Decision::Stay,
            "two retries, then it stays exited"
        );
        assert_eq!(history.restarts, 2);
    }

    #[test]
    fn policies_decide_which_exits_restart() {
        let limits = RestartLimits::default();
        let mut history = RestartHistory::default();
        assert_eq!(
            history.on_exit(RestartPolicy::Never, &exit(1), Duration::ZERO, &limits),
            Decision::Stay
        );
        assert_eq!(
            history.on_exit(ON_FAILURE, &exit(0), Duration::ZERO, &limits),
            Decision::Stay
        );
        assert!(matches!(
            history.on_exit(ON_FAILURE, &exit(3), Duration::ZERO, &limits),
            Decision::Restart { .. }
        ));
    }
}
