//! The dashboard's live feed: one producer per control plane reads the stack (the status
//! report, the rollouts it follows, the ledger's size) once a period, serialises it once, and
//! hands the same text to every open page's stream.
//!
//! Why one producer: before it, every open page had its own loop asking the control loop for
//! the status, each rollout and the ledger's size every second, and serialising a report that
//! on a 200-instance stack is tens of kilobytes — the control plane's cost grew with each tab
//! anyone left open. Now a page costs a channel receiver and a copy of a shared string.
//!
//! The producer starts with the first stream and stops when the last one ends (checked each
//! period), so a control plane with no page open does no dashboard work at all. When the
//! control plane stops, the producer drops its sender and every stream ends.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;
use wharf_api::{RolloutView, StatusReport};

use crate::AppState;

/// How often the feed looks for a change.
pub(crate) const PERIOD: Duration = Duration::from_secs(1);

/// How long a page keeps being sent a rollout's final view after it ended.
const KEEP_ENDED: Duration = Duration::from_secs(60);

/// One serialised snapshot. `seq` numbers the feed's snapshots in the order it made them
/// (the stream's event id), so every page sent the same change sees the same number.
#[derive(Clone, Debug)]
pub(crate) struct Frame {
    pub seq: u64,
    pub text: Arc<str>,
}

type Sender = Arc<watch::Sender<Option<Frame>>>;

/// The control plane's one feed, shared by every listener that serves the dashboard.
#[derive(Clone, Default)]
pub(crate) struct Feed {
    /// The running producer's sender; `None` while no page is open.
    running: Arc<Mutex<Option<Sender>>>,
}

impl Feed {
    /// A receiver of the feed's snapshots, starting the producer if none runs. Its current
    /// value is the latest snapshot (`None` until the producer made its first one).
    pub(crate) fn subscribe(&self, state: &AppState) -> watch::Receiver<Option<Frame>> {
        let mut running = self.lock();
        if let Some(sender) = running.as_ref() {
            return sender.subscribe();
        }
        let (sender, receiver) = watch::channel(None);
        let sender = Arc::new(sender);
        *running = Some(sender.clone());
        tokio::spawn(produce(self.clone(), state.clone(), sender));
        receiver
    }

    /// Whether the producer may stop: no page holds a receiver. Checked and cleared under the
    /// lock `subscribe` takes, so a page never receives from a producer that is leaving.
    fn leave_if_unwatched(&self, sender: &Sender) -> bool {
        let mut running = self.lock();
        if sender.receiver_count() > 0 {
            return false;
        }
        *running = None;
        true
    }

    fn leave(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Sender>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What a page is sent on every change.
#[derive(Serialize)]
struct Snapshot {
    status: StatusReport,
    /// The rollouts under way, and each one's final view for [`KEEP_ENDED`] after it ended.
    rollouts: Vec<RolloutView>,
    ledger_size: u64,
}

/// The producer's memory between periods.
struct Producer {
    state: AppState,
    /// Services whose rollout the feed follows, with when it was seen to have ended.
    following: BTreeMap<String, Option<Instant>>,
    ledger_size: u64,
    first: bool,
}

async fn produce(feed: Feed, state: AppState, sender: Sender) {
    let mut producer = Producer {
        state,
        following: BTreeMap::new(),
        ledger_size: 0,
        first: true,
    };
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = String::new();
    let mut seq = 0;
    loop {
        tick.tick().await;
        if feed.leave_if_unwatched(&sender) {
            return;
        }
        let Some(snapshot) = producer.snapshot().await else {
            // The control plane stopped: dropping the sender ends every page's stream.
            feed.leave();
            return;
        };
        let text = match serde_json::to_string(&snapshot) {
            Ok(text) => text,
            Err(error) => {
                tracing::error!(%error, "cannot serialise the dashboard's snapshot");
                continue;
            }
        };
        if text != last {
            seq += 1;
            sender.send_replace(Some(Frame {
                seq,
                text: Arc::from(text.as_str()),
            }));
            last = text;
        }
    }
}

impl Producer {
    /// The stack as the page shows it; `None` once the control plane stops. The first one
    /// asks for every service's rollout, so a page opened just after one ended still sees it.
    async fn snapshot(&mut self) -> Option<Snapshot> {
        let state = &self.state;
        let status = state.handle.status().await?;
        for service in &status.services {
            if self.first || service.rollout.is_some() {
                self.following.entry(service.name.clone()).or_insert(None);
            }
        }
        self.first = false;
        let now = Instant::now();
        let long_ago = now.checked_sub(KEEP_ENDED).unwrap_or(now);
        let mut rollouts = Vec::new();
        for (name, ended) in &mut self.following {
            let Ok(Some(view)) = state.handle.rollout(name.clone()).await else {
                *ended = Some(long_ago);
                continue;
            };
            if view.is_done() {
                let since = *ended.get_or_insert(now);
                let recent = view
                    .finished_at
                    .as_deref()
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                    .is_none_or(|t| {
                        jiff::Timestamp::now().duration_since(t)
                            < jiff::SignedDuration::try_from(KEEP_ENDED).unwrap_or_default()
                    });
                if !recent {
                    // Ended long before the feed started: not followed.
                    *ended = Some(long_ago);
                    continue;
                }
                if now.duration_since(since) >= KEEP_ENDED {
                    continue;
                }
            } else {
                *ended = None;
            }
            rollouts.push(view);
        }
        self.following
            .retain(|_, ended| ended.is_none_or(|at| now.duration_since(at) < KEEP_ENDED));
        // A failed read keeps the last size, so the pages do not reload their audit log for it.
        match state.ledger_reader.size(state).await {
            Ok(size) => self.ledger_size = size,
            Err(error) => tracing::warn!(error = error.message(), "cannot read the ledger's size"),
        }
        Some(Snapshot {
            status,
            rollouts,
            ledger_size: self.ledger_size,
        })
    }
}
