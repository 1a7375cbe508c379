//! wharf-rollout: the state machine of one rollout and the analysis of its live traffic.
//!
//! The crate is pure (STYLE rule 1): no IO, no clock, no sockets. The control plane feeds
//! [`Event`]s into a [`Rollout`] and carries out the [`Action`]s it returns, in order. The whole
//! [`Rollout`] derives `Serialize + Deserialize` so the control plane persists it after every
//! transition and calls [`Rollout::resume`] after a crash.
//!
//! ```text
//! canary:     WaitingReady → Step(0) → … → Step(n) → Draining → Succeeded
//! blue-green: WaitingReady → Preview → (promote) Switch → Draining → Succeeded
//! recreate:   StoppingOld → WaitingReady → Draining(nothing left) → Succeeded
//! any active state ── abort / failed verdict / deadline ──▶ Aborting → RolledBack
//! ```
//!
//! ```
//! use std::time::Duration;
//! use wharf_rollout::{Action, At, Event, Plan, Policy, Rollout, Step, Strategy, Thresholds};
//!
//! let steps = vec![Step { weight: 10, pause: Duration::from_secs(30) }];
//! let thresholds = Thresholds { min_requests: 50, ..Thresholds::default() };
//! let plan = Plan::new(Strategy::Canary, steps, 2, thresholds, Policy::default()).unwrap();
//! let (mut rollout, actions) = Rollout::start(plan, At(0));
//! assert!(actions.contains(&Action::StartNewInstances { count: 2 }));
//!
//! let actions = rollout.handle(Event::NewInstancesReady);
//! assert!(actions.contains(&Action::SetWeights { stable: 90, new: 10 }));
//!
//! // Persist after every call; after a crash, load and resume.
//! let saved = serde_json::to_string(&rollout).unwrap();
//! let mut restored: Rollout = serde_json::from_str(&saved).unwrap();
//! let actions = restored.resume(At(5_000));
//! assert!(actions.contains(&Action::SetWeights { stable: 90, new: 10 }));
//! ```

mod analysis;
mod machine;
mod milestone;
mod plan;
mod sequential;
mod stats;
mod text_duration;
mod time;

pub use analysis::{Verdict, evaluate};
pub use machine::{Action, Event, Outcome, Phase, Rollout, StepState};
pub use milestone::Milestone;
pub use plan::{DeadlineAction, Plan, PlanError, Policy, Step, Strategy, Thresholds};
pub use sequential::{Evidence, MixtureTest};
pub use stats::{StepTotals, VersionCounters, VersionTotals, Window};
pub use time::At;
