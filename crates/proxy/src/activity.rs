//! When something last made progress, for timeouts on silence rather than on total time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The last moment of progress, markable through a shared reference. Atomics only because the
/// futures that share it must be `Send`; the markers run in one task (a tunnel's two
/// directions) or one connection (an upload and the wait for its answer).
#[derive(Debug)]
pub(crate) struct Activity {
    start: Instant,
    since_start_ms: AtomicU64,
    finished: AtomicBool,
}

impl Activity {
    pub(crate) fn new() -> Activity {
        Activity {
            start: Instant::now(),
            since_start_ms: AtomicU64::new(0),
            finished: AtomicBool::new(false),
        }
    }

    /// Progress now.
    pub(crate) fn mark(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.since_start_ms.store(ms, Ordering::Relaxed);
    }

    /// Progress now, and the last of it: the work is done.
    pub(crate) fn finish(&self) {
        self.mark();
        self.finished.store(true, Ordering::Relaxed);
    }

    /// Whether [`Activity::finish`] was called.
    pub(crate) fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Relaxed)
    }

    /// The last progress (to the millisecond), or the start when there was none.
    pub(crate) fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.since_start_ms.load(Ordering::Relaxed))
    }
}
