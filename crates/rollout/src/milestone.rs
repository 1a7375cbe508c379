//! The milestones a rollout records: what [`Action::Record`](crate::Action::Record) asks the
//! control plane to write to the ledger, as a closed set.
//!
//! This crate stays pure and independent of the ledger; the control plane maps each milestone
//! to its ledger action with an exhaustive `match`, so a milestone without a ledger action does
//! not compile. The texts are the ledger's (`deploy.step`…), for logs and the rollout history.

use std::fmt;

use serde::{Serialize, Serializer};

/// Declares [`Milestone`], its texts and [`Milestone::ALL`] from one table, so `ALL` cannot
/// miss a variant.
macro_rules! milestones {
    ($( $(#[$doc:meta])* $variant:ident = $text:literal, )*) => {
        /// A step of a rollout worth a ledger entry; its details carry the numbers behind it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Milestone {
            $( $(#[$doc])* $variant, )*
        }

        impl Milestone {
            /// Every milestone, in declaration order.
            pub const ALL: &[Milestone] = &[ $( Milestone::$variant, )* ];

            /// The dotted name the ledger stores it under (`deploy.step`).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( Milestone::$variant => $text, )*
                }
            }
        }
    };
}

milestones! {
    /// The rollout started, with its plan.
    Start = "deploy.start",
    /// The new version's instances are ready.
    Ready = "deploy.ready",
    /// A canary step began, with its weight.
    Step = "deploy.step",
    /// The analysis of a step decided (pass, fail, or continue past the pause).
    Verdict = "deploy.verdict",
    /// A phase (or a step lacking traffic) reached its deadline; the policy's answer follows.
    Deadline = "deploy.deadline",
    /// Blue-green: the new version is on the preview route.
    Preview = "deploy.preview",
    /// All live traffic moved to the new version.
    Switch = "deploy.switch",
    /// The rollout was promoted.
    Promote = "deploy.promote",
    /// The rollout was paused.
    Pause = "deploy.pause",
    /// The rollout resumed (after a pause, or in a restarted control plane).
    Resume = "deploy.resume",
    /// Recreate: the old version's instances stopped.
    OldStopped = "deploy.old_stopped",
    /// The rollout is rolling back, with why.
    Rollback = "deploy.rollback",
    /// The rollback finished: traffic is on the stable version.
    RolledBack = "deploy.rolled_back",
    /// The rollout finished: the new version is deployed.
    Succeeded = "deploy.succeeded",
    /// An event that does not apply to the current phase was ignored.
    Ignored = "deploy.ignored",
}

impl fmt::Display for Milestone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Serialized as its ledger text, like the `&'static str` it replaces.
impl Serialize for Milestone {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milestone_texts_are_unique_deploy_names() {
        let mut seen = std::collections::HashSet::new();
        for milestone in Milestone::ALL {
            assert!(milestone.as_str().starts_with("deploy."), "{milestone}");
            assert!(seen.insert(milestone.as_str()), "{milestone} is used twice");
        }
    }
}
