//! One receiver's delivery queue: items go out in the order pushed, each retried with
//! exponential backoff until delivered or refused for good, so a resolve never overtakes its
//! trigger; a Slack receiver gets at most one message a second. Every item ends in one
//! [`Outcome`] on the channel the control plane reads to update its outbox and ledger.
//!
//! Time comes from a [`Clock`], so backoff and pacing are tested without waiting: the tests
//! use a virtual clock whose sleeps return at once and move its time forward.
//! Dropping the [`Courier`] stops its task; what was not delivered stays in the caller's
//! outbox and is pushed again by the next courier (delivery is at least once: PagerDuty
//! de-duplicates by `dedup_key`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::send::{Endpoint, send_to};
use crate::{Client, Format, Receiver, SendError};

/// A source of time for backoff and pacing.
pub trait Clock: Send + Sync + 'static {
    /// Time elapsed since the clock's origin.
    fn now(&self) -> Duration;
    /// A future that completes after `duration` of this clock's time.
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
}

/// tokio's clock (so a test that pauses tokio's time pauses the courier's too).
#[derive(Clone, Debug)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl TokioClock {
    pub fn new() -> TokioClock {
        TokioClock {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// How a courier retries and paces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The wait after the first failure; it doubles after each further one.
    pub first_backoff: Duration,
    /// The longest wait between two attempts from backoff alone.
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured (a receiver asking for a day gets this).
    pub max_retry_after: Duration,
    /// The shortest time between the starts of two requests (Slack: 1 s).
    pub min_interval: Duration,
    /// Attempts per item before giving up on retryable failures; `None`: until delivered or
    /// refused for good, since a lost resolve leaves an incident open forever.
    pub max_attempts: Option<u32>,
}

impl Policy {
    /// 1 s, 2 s, 4 s … capped at 60 s, `Retry-After` honoured up to 10 min, no attempt limit;
    /// Slack's one message a second per webhook.
    pub fn for_format(format: Format) -> Policy {
        Policy {
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(600),
            min_interval: match format {
                Format::Slack => Duration::from_secs(1),
                Format::PagerDuty | Format::Generic => Duration::ZERO,
            },
            max_attempts: None,
        }
    }

    /// The wait after `failures` failed attempts, at least what the receiver asked for.
    pub fn delay(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        let backoff = self
            .first_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff);
        match retry_after {
            Some(asked) => asked.min(self.max_retry_after).max(backoff),
            None => backoff,
        }
    }
}

/// What became of one pushed item, or of one attempt at it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver accepted it (2xx) at the `attempts`-th try.
    Delivered {
        receiver: String,
        id: u64,
        attempts: u32,
    },
    /// An attempt failed and will be retried after `next_in` (for status and logs; the item
    /// still ends in `Delivered` or `GaveUp`).
    Retrying {
        receiver: String,
        id: u64,
        attempts: u32,
        error: SendError,
        next_in: Duration,
    },
    /// Refused for good, or retryable failures reached `Policy::max_attempts`.
    GaveUp {
        receiver: String,
        id: u64,
        attempts: u32,
        reason: SendError,
    },
}

impl Outcome {
    /// The id of the item this outcome is about.
    pub fn id(&self) -> u64 {
        match self {
            Outcome::Delivered { id, .. }
            | Outcome::Retrying { id, .. }
            | Outcome::GaveUp { id, .. } => *id,
        }
    }

    /// Whether the item is finished (delivered or given up), i.e. its outbox row can be closed.
    pub fn is_final(&self) -> bool {
        !matches!(self, Outcome::Retrying { .. })
    }
}

struct Item {
    id: u64,
    endpoint: Endpoint,
    body: serde_json::Value,
}

/// The queue of one receiver, served by its own task. See the module's documentation.
pub struct Courier {
    receiver: String,
    queue: mpsc::UnboundedSender<Item>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Courier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Courier")
            .field("receiver", &self.receiver)
            .finish_non_exhaustive()
    }
}

impl Courier {
    /// A courier for `receiver` with its format's [`Policy`] on tokio's clock. Must be called
    /// inside a tokio runtime.
    pub fn spawn(
        client: Client,
        receiver: Receiver,
        outcomes: mpsc::UnboundedSender<Outcome>,
    ) -> Courier {
        let policy = Policy::for_format(receiver.format);
        Courier::spawn_with(
            client,
            receiver,
            policy,
            Arc::new(TokioClock::new()),
            outcomes,
        )
    }

    /// A courier with an explicit policy and clock.
    pub fn spawn_with(
        client: Client,
        receiver: Receiver,
        policy: Policy,
        clock: Arc<dyn Clock>,
        outcomes: mpsc::UnboundedSender<Outcome>,
    ) -> Courier {
        let (queue, items) = mpsc::unbounded_channel();
        let name = receiver.name.clone();
        let worker = Worker {
            client,
            receiver,
            policy,
            clock,
            outcomes,
            last_start: None,
        };
        Courier {
            receiver: name,
            queue,
            task: tokio::spawn(worker.run(items)),
        }
    }

    /// Queues a notice body (from [`crate::body`]) under the caller's `id`.
    pub fn push(&self, id: u64, body: serde_json::Value) {
        self.enqueue(id, Endpoint::Events, body);
    }

    /// Queues a change body (from [`crate::change_body`]), in the same order as notices.
    pub fn push_change(&self, id: u64, body: serde_json::Value) {
        self.enqueue(id, Endpoint::Changes, body);
    }

    /// The receiver's name.
    pub fn receiver(&self) -> &str {
        &self.receiver
    }

    fn enqueue(&self, id: u64, endpoint: Endpoint, body: serde_json::Value) {
        // The task only ends when this handle drops (or panics, already logged): nothing to do.
        let _ = self.queue.send(Item { id, endpoint, body });
    }
}

impl Drop for Courier {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Worker {
    client: Client,
    receiver: Receiver,
    policy: Policy,
    clock: Arc<dyn Clock>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    /// When the last request started, for `min_interval`.
    last_start: Option<Duration>,
}

impl Worker {
    async fn run(mut self, mut items: mpsc::UnboundedReceiver<Item>) {
        while let Some(item) = items.recv().await {
            let outcome = self.deliver(&item).await;
            self.report(outcome);
        }
    }

    /// Tries `item` until it is delivered or given up; the final outcome.
    async fn deliver(&mut self, item: &Item) -> Outcome {
        let mut attempts = 0;
        loop {
            self.wait_turn().await;
            attempts += 1;
            self.last_start = Some(self.clock.now());
            let result = send_to(&self.client, &self.receiver, item.endpoint, &item.body).await;
            let receiver = self.receiver.name.clone();
            let error = match result {
                Ok(()) => {
                    tracing::debug!(receiver = %receiver, id = item.id, attempts, "notification delivered");
                    return Outcome::Delivered {
                        receiver,
                        id: item.id,
                        attempts,
                    };
                }
                Err(error) => error,
            };
            let out_of_attempts = self.policy.max_attempts.is_some_and(|max| attempts >= max);
            if !error.is_retryable() || out_of_attempts {
                tracing::warn!(receiver = %receiver, id = item.id, attempts, %error, "notification given up");
                return Outcome::GaveUp {
                    receiver,
                    id: item.id,
                    attempts,
                    reason: error,
                };
            }
            let next_in = self.policy.delay(attempts, error.retry_after());
            tracing::info!(receiver = %receiver, id = item.id, attempts, %error, next_in_ms = next_in.as_millis() as u64, "notification will be retried");
            self.report(Outcome::Retrying {
                receiver,
                id: item.id,
                attempts,
                error,
                next_in,
            });
            self.clock.sleep(next_in).await;
        }
    }

    /// Waits until `min_interval` has passed since the last request started.
    async fn wait_turn(&self) {
        let Some(last) = self.last_start else { return };
        let ready_at = last + self.policy.min_interval;
        let now = self.clock.now();
        if ready_at > now {
            self.clock.sleep(ready_at - now).await;
        }
    }

    fn report(&self, outcome: Outcome) {
        // Nobody listening (the control plane is stopping) is no reason to stop delivering.
        let _ = self.outcomes.send(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_honours_retry_after() {
        let p = Policy::for_format(Format::PagerDuty);
        let secs = |f, ra: Option<u64>| p.delay(f, ra.map(Duration::from_secs)).as_secs();
        assert_eq!(
            (1..=8).map(|f| secs(f, None)).collect::<Vec<_>>(),
            [1, 2, 4, 8, 16, 32, 60, 60]
        );
        assert_eq!(secs(100, None), 60);
        // Retry-After lengthens the wait, never shortens it, and is bounded.
        assert_eq!(secs(1, Some(7)), 7);
        assert_eq!(secs(4, Some(0)), 8);
        assert_eq!(secs(1, Some(86_400)), 600);
    }

    #[test]
    fn only_slack_is_paced() {
        assert_eq!(
            Policy::for_format(Format::Slack).min_interval,
            Duration::from_secs(1)
        );
        assert_eq!(
            Policy::for_format(Format::Generic).min_interval,
            Duration::ZERO
        );
    }
}
