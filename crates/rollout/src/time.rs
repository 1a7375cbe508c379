//! Instants as plain numbers, so the state machine never reads a clock and persists cleanly.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// An instant in milliseconds since the Unix epoch, supplied by the caller with each timed event.
///
/// A plain number rather than `Instant` because the state is persisted and resumed by another
/// process, where an `Instant` means nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct At(pub u64);

impl At {
    /// This instant plus a duration, saturating rather than wrapping on absurd inputs.
    pub fn plus(self, duration: Duration) -> At {
        let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        At(self.0.saturating_add(millis))
    }

    /// Time elapsed since `earlier`; zero if `earlier` is in the future (clocks may step back).
    pub fn since(self, earlier: At) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}
