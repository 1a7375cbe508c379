//! Release gates on real tool output: pure parsers for the reports CI tools write (SARIF 2.1.0,
//! JUnit XML, k6 end-of-test summaries, Cobertura and LCOV coverage) and the evaluation of a
//! gate's conditions over them.
//!
//! The crate does no IO but reading from the `impl Read` it is given, so every parser can be
//! fed garbage in tests. Formats are detected from content, never from a file name: CI
//! artefacts are routinely renamed. Every error names the file and a position in it.
//!
//! The traps this crate exists to avoid (issue 16): a SARIF result without `level` is a
//! `warning` (or its rule's default level), not "no level"; k6's legacy `--summary-export`
//! writes `true` for a *failed* threshold; JUnit attribute counts lie, so counts are
//! recomputed from the test cases; and a condition that evaluated nothing fails.

mod coverage;
mod detect;
mod error;
mod eval;
mod junit;
mod k6;
mod sarif;

pub use coverage::{CoverageSummary, Measure};
pub use detect::{Format, parse};
pub use error::{GateError, Position};
pub use eval::{
    Condition, ConditionKind, ConditionVerdict, CoverageCondition, GateVerdict, Input,
    JunitCondition, K6Condition, NamedCondition, SarifCondition, Verdict, evaluate,
};
pub use junit::JunitSummary;
pub use k6::{K6Shape, K6Summary, Threshold};
pub use sarif::{Level, SarifSummary};

/// What one input file says, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    Sarif(SarifSummary),
    Junit(JunitSummary),
    K6(K6Summary),
    Coverage(CoverageSummary),
}

impl Report {
    /// The kind of condition that reads this report.
    pub fn kind(&self) -> ConditionKind {
        match self {
            Report::Sarif(_) => ConditionKind::Sarif,
            Report::Junit(_) => ConditionKind::Junit,
            Report::K6(_) => ConditionKind::K6,
            Report::Coverage(_) => ConditionKind::Coverage,
        }
    }
}
