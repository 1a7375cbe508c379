//! A gate's conditions evaluated over parsed inputs: each condition reads the inputs of its
//! kind and answers what it measured and a verdict with the reason. A condition that evaluated
//! nothing — no input of its kind, a JUnit report with zero tests, a measure no input carries,
//! a condition setting no limit — fails: a gate that silently tests nothing is the trap
//! conftest#181 fell into.

use std::time::Duration;

use crate::{CoverageSummary, JunitSummary, K6Summary, Level, Report, SarifSummary};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConditionKind {
    Sarif,
    Junit,
    K6,
    Coverage,
}

impl ConditionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionKind::Sarif => "sarif",
            ConditionKind::Junit => "junit",
            ConditionKind::K6 => "k6",
            ConditionKind::Coverage => "coverage",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SarifCondition {
    pub max_level: Option<Level>,
    pub max_security_severity: Option<f64>,
    pub max_results: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct JunitCondition {
    pub max_failures: Option<u64>,
    pub min_tests: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct K6Condition {
    pub p95: Option<Duration>,
    /// A percentage, 0–100.
    pub max_error_rate: Option<f64>,
    /// `thresholds: pass`: every k6 threshold passed.
    pub thresholds_pass: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CoverageCondition {
    /// Percentages, 0–100.
    pub min_lines: Option<f64>,
    pub min_branches: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Sarif(SarifCondition),
    Junit(JunitCondition),
    K6(K6Condition),
    Coverage(CoverageCondition),
}

impl Condition {
    pub fn kind(&self) -> ConditionKind {
        match self {
            Condition::Sarif(_) => ConditionKind::Sarif,
            Condition::Junit(_) => ConditionKind::Junit,
            Condition::K6(_) => ConditionKind::K6,
            Condition::Coverage(_) => ConditionKind::Coverage,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NamedCondition {
    pub name: String,
    pub condition: Condition,
}

/// One parsed input file.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub path: String,
    pub report: Report,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConditionVerdict {
    pub name: String,
    pub kind: ConditionKind,
    /// The paths of the inputs this condition read.
    pub inputs: Vec<String>,
    /// What was measured, in words ("3 findings, max level warning").
    pub measured: String,
    pub verdict: Verdict,
    /// Why it failed (every broken limit), or why it passed.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GateVerdict {
    pub verdict: Verdict,
    pub conditions: Vec<ConditionVerdict>,
}

/// Evaluates every condition over the inputs of its kind. The gate passes when every condition
/// passes; a gate with no conditions fails (it checked nothing).
pub fn evaluate(conditions: &[NamedCondition], inputs: &[Input]) -> GateVerdict {
    let conditions: Vec<ConditionVerdict> = conditions.iter().map(|c| one(c, inputs)).collect();
    let verdict = if !conditions.is_empty() && conditions.iter().all(|c| c.verdict == Verdict::Pass)
    {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    GateVerdict {
        verdict,
        conditions,
    }
}

fn one(named: &NamedCondition, inputs: &[Input]) -> ConditionVerdict {
    let kind = named.condition.kind();
    let mine: Vec<&Input> = inputs.iter().filter(|i| i.report.kind() == kind).collect();
    let paths = mine.iter().map(|i| i.path.clone()).collect();
    let (measured, failures) = if mine.is_empty() {
        (
            "nothing".to_owned(),
            vec![format!(
                "no {} input: the condition evaluated nothing",
                kind.as_str()
            )],
        )
    } else {
        let reports = mine.iter().map(|i| &i.report);
        match &named.condition {
            Condition::Sarif(c) => sarif(
                c,
                reports.filter_map(|r| match r {
                    Report::Sarif(s) => Some(s),
                    _ => None,
                }),
            ),
            Condition::Junit(c) => junit(
                c,
                reports.filter_map(|r| match r {
                    Report::Junit(s) => Some(s),
                    _ => None,
                }),
            ),
            Condition::K6(c) => k6(
                c,
                reports.filter_map(|r| match r {
                    Report::K6(s) => Some(s),
                    _ => None,
                }),
            ),
            Condition::Coverage(c) => coverage(
                c,
                reports.filter_map(|r| match r {
                    Report::Coverage(s) => Some(s),
                    _ => None,
                }),
            ),
        }
    };
    let (verdict, reason) = if failures.is_empty() {
        (Verdict::Pass, "every limit holds".to_owned())
    } else {
        (Verdict::Fail, failures.join("; "))
    };
    ConditionVerdict {
        name: named.name.clone(),
        kind,
        inputs: paths,
        measured,
        verdict,
        reason,
    }
}

const NO_LIMIT: &str = "the condition sets no limit: it would check nothing";

fn sarif<'a>(
    c: &SarifCondition,
    reports: impl Iterator<Item = &'a SarifSummary>,
) -> (String, Vec<String>) {
    let mut findings = 0u64;
    let mut by_level = [0u64; 4];
    let mut max_level = None;
    let mut max_sev: Option<f64> = None;
    let mut suppressed = 0u64;
    let mut runs = 0usize;
    let mut runs_without_results = 0usize;
    for r in reports {
        runs += r.runs;
        runs_without_results += r.runs_without_results;
        findings += r.findings;
        for (total, n) in by_level.iter_mut().zip(r.by_level) {
            *total += n;
        }
        max_level = max_level.max(r.max_level);
        if let Some(s) = r.max_security_severity {
            max_sev = Some(max_sev.map_or(s, |m| m.max(s)));
        }
        suppressed += r.suppressed;
    }
    let levels: Vec<String> = Level::ALL
        .iter()
        .rev()
        .zip(by_level.iter().rev())
        .filter(|(_, n)| **n > 0)
        .map(|(l, n)| format!("{l} {n}"))
        .collect();
    let mut measured = format!("{findings} findings");
    if !levels.is_empty() {
        measured.push_str(&format!(" ({})", levels.join(", ")));
    }
    if let Some(s) = max_sev {
        measured.push_str(&format!(", max security-severity {s}"));
    }
    if suppressed > 0 {
        measured.push_str(&format!(", {suppressed} suppressed"));
    }
    let mut failures = Vec::new();
    if runs == 0 {
        failures.push("no SARIF run: the condition evaluated nothing".to_owned());
    }
    if runs_without_results > 0 {
        failures.push(format!(
            "{runs_without_results} runs without `results`: the tool did not analyse (SARIF §3.14.23)"
        ));
    }
    if c.max_level.is_none() && c.max_security_severity.is_none() && c.max_results.is_none() {
        failures.push(NO_LIMIT.to_owned());
    }
    if let (Some(limit), Some(level)) = (c.max_level, max_level)
        && level > limit
    {
        let over: u64 = Level::ALL
            .iter()
            .zip(by_level)
            .filter(|(l, _)| **l > limit)
            .map(|(_, n)| n)
            .sum();
        failures.push(format!(
            "{over} findings above max_level {limit} (highest: {level})"
        ));
    }
    if let (Some(limit), Some(sev)) = (c.max_security_severity, max_sev)
        && sev > limit
    {
        failures.push(format!(
            "security-severity {sev} above max_security_severity {limit}"
        ));
    }
    if let Some(limit) = c.max_results
        && findings > limit
    {
        failures.push(format!(
            "{findings} findings, more than max_results {limit}"
        ));
    }
    (measured, failures)
}

fn junit<'a>(
    c: &JunitCondition,
    reports: impl Iterator<Item = &'a JunitSummary>,
) -> (String, Vec<String>) {
    let mut t = JunitSummary::default();
    for r in reports {
        t.suites += r.suites;
        t.tests += r.tests;
        t.failures += r.failures;
        t.errors += r.errors;
        t.skipped += r.skipped;
        t.flaky += r.flaky;
    }
    let mut measured = format!("{} tests, {} failed", t.tests, t.failed());
    if t.skipped > 0 {
        measured.push_str(&format!(", {} skipped", t.skipped));
    }
    if t.flaky > 0 {
        measured.push_str(&format!(", {} flaky", t.flaky));
    }
    let mut failures = Vec::new();
    if t.tests == 0 {
        failures.push("zero tests: the condition evaluated nothing".to_owned());
    }
    if c.max_failures.is_none() && c.min_tests.is_none() {
        failures.push(NO_LIMIT.to_owned());
    }
    if let Some(limit) = c.max_failures
        && t.failed() > limit
    {
        failures.push(format!(
            "{} failed, more than max_failures {limit}",
            t.failed()
        ));
    }
    if let Some(limit) = c.min_tests
        && t.tests < limit
    {
        failures.push(format!("{} tests, fewer than min_tests {limit}", t.tests));
    }
    (measured, failures)
}

fn k6<'a>(c: &K6Condition, reports: impl Iterator<Item = &'a K6Summary>) -> (String, Vec<String>) {
    // Several summaries (several scenarios or runs): the worst of each measure counts.
    let mut p95: Option<f64> = None;
    let mut rate: Option<f64> = None;
    let mut p95_missing = false;
    let mut rate_missing = false;
    let mut thresholds = Vec::new();
    for r in reports {
        match r.p95_ms {
            Some(v) => p95 = Some(p95.map_or(v, |m| m.max(v))),
            None => p95_missing = true,
        }
        match r.error_rate {
            Some(v) => rate = Some(rate.map_or(v, |m| m.max(v))),
            None => rate_missing = true,
        }
        thresholds.extend(r.thresholds.iter());
    }
    let mut parts = Vec::new();
    if let Some(p) = p95 {
        parts.push(format!("p95 {}", ms(p)));
    }
    if let Some(r) = rate {
        parts.push(format!("error rate {:.2}%", r * 100.0));
    }
    let passed = thresholds.iter().filter(|t| t.passed).count();
    if !thresholds.is_empty() {
        parts.push(format!("thresholds {passed}/{} passed", thresholds.len()));
    }
    let measured = if parts.is_empty() {
        "nothing".to_owned()
    } else {
        parts.join(", ")
    };
    let mut failures = Vec::new();
    if c.p95.is_none() && c.max_error_rate.is_none() && !c.thresholds_pass {
        failures.push(NO_LIMIT.to_owned());
    }
    if let Some(limit) = c.p95 {
        let limit_ms = limit.as_secs_f64() * 1000.0;
        if p95_missing {
            failures.push("a summary has no http_req_duration p(95)".to_owned());
        }
        if let Some(p) = p95.filter(|p| *p > limit_ms) {
            failures.push(format!("p95 {} above {}", ms(p), ms(limit_ms)));
        }
    }
    if let Some(limit) = c.max_error_rate {
        if rate_missing {
            failures.push("a summary has no http_req_failed rate".to_owned());
        }
        if let Some(r) = rate.filter(|r| r * 100.0 > limit) {
            failures.push(format!("error rate {:.2}% above {limit}%", r * 100.0));
        }
    }
    if c.thresholds_pass {
        if thresholds.is_empty() {
            failures.push("no k6 thresholds: the condition evaluated nothing".to_owned());
        }
        let failed: Vec<&str> = thresholds
            .iter()
            .filter(|t| !t.passed)
            .map(|t| t.name.as_str())
            .collect();
        if !failed.is_empty() {
            failures.push(format!("thresholds failed: {}", failed.join(", ")));
        }
    }
    (measured, failures)
}

fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2}s", v / 1000.0)
    } else {
        format!("{v:.1}ms")
    }
}

fn coverage<'a>(
    c: &CoverageCondition,
    reports: impl Iterator<Item = &'a CoverageSummary>,
) -> (String, Vec<String>) {
    // Several reports (several modules): each must hold, so the lowest counts; a report
    // without the measure cannot be said to hold it.
    let mut lines: Option<f64> = None;
    let mut branches: Option<f64> = None;
    let mut lines_missing = false;
    let mut branches_missing = false;
    for r in reports {
        match r.lines {
            Some(m) => lines = Some(lines.map_or(m.percent(), |l| l.min(m.percent()))),
            None => lines_missing = true,
        }
        match r.branches {
            Some(m) => branches = Some(branches.map_or(m.percent(), |b| b.min(m.percent()))),
            None => branches_missing = true,
        }
    }
    let mut parts = Vec::new();
    if let Some(l) = lines {
        parts.push(format!("lines {l:.1}%"));
    }
    if let Some(b) = branches {
        parts.push(format!("branches {b:.1}%"));
    }
    let measured = if parts.is_empty() {
        "nothing".to_owned()
    } else {
        parts.join(", ")
    };
    let mut failures = Vec::new();
    if c.min_lines.is_none() && c.min_branches.is_none() {
        failures.push(NO_LIMIT.to_owned());
    }
    if let Some(limit) = c.min_lines {
        if lines_missing {
            failures.push("a report measured no lines".to_owned());
        }
        if let Some(l) = lines.filter(|l| *l < limit) {
            failures.push(format!("lines {l:.1}% below {limit}%"));
        }
    }
    if let Some(limit) = c.min_branches {
        if branches_missing {
            failures.push("a report measured no branches".to_owned());
        }
        if let Some(b) = branches.filter(|b| *b < limit) {
            failures.push(format!("branches {b:.1}% below {limit}%"));
        }
    }
    (measured, failures)
}
