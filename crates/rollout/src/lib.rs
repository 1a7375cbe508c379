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

mod analysis;
mod machine;
mod plan;
mod sequential;
mod stats;
mod time;

pub use analysis::{Verdict, evaluate};
pub use machine::{Action, Event, Outcome, Phase, Rollout, StepState};
pub use plan::{DeadlineAction, Plan, PlanError, Policy, Step, Strategy, Thresholds};
pub use sequential::{Evidence, MixtureTest};
pub use stats::{StepTotals, VersionCounters, VersionTotals, Window};
pub use time::At;
