//! SARIF 2.1.0, streamed: serde reads `runs[].results[]` straight from the reader into small
//! records holding only what a gate needs (level, kind, rule reference, suppressions, baseline
//! state); messages, locations, code flows and everything else are skipped as they are read,
//! never held. A 50 MB file is evaluated without a tree of it in memory.
//!
//! The effective level follows §3.27.10: the result's `level`, else its rule's
//! `defaultConfiguration.level` (the rule found through `rule.toolComponent` / `rule.index` /
//! `ruleIndex` / `rule.id` / `ruleId` in `tool.driver.rules` or `tool.extensions[].rules`),
//! else `warning`. Semgrep and Gitleaks set no level anywhere: their findings are warnings.

use std::io::{BufReader, Read};

use serde::Deserialize;

use crate::error::GateError;

/// A SARIF level, ordered by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    None,
    Note,
    Warning,
    Error,
}

impl Level {
    pub const ALL: [Level; 4] = [Level::None, Level::Note, Level::Warning, Level::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "none",
            Level::Note => "note",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a SARIF file holds, as far as gates go.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SarifSummary {
    pub runs: usize,
    /// Runs without a `results` array: the tool did not analyse (§3.14.23 — an empty array
    /// means it did and found nothing).
    pub runs_without_results: usize,
    /// Every result in the file, findings or not.
    pub results: u64,
    /// Results that are findings: `kind` fail (or absent), not suppressed, not `absent`.
    pub findings: u64,
    /// Findings by effective level, indexed as [`Level::ALL`].
    pub by_level: [u64; 4],
    /// The highest effective level among the findings.
    pub max_level: Option<Level>,
    /// The highest rule `security-severity` among the findings.
    pub max_security_severity: Option<f64>,
    pub suppressed: u64,
    /// Results whose `kind` is not `fail` (pass, notApplicable, informational, review, open).
    pub not_failures: u64,
    /// Results whose `baselineState` is `absent` (fixed since the baseline).
    pub absent: u64,
    /// Tool names, driver first, as the file names them.
    pub tools: Vec<String>,
}

#[derive(Deserialize)]
struct Log {
    #[serde(default)]
    runs: Vec<Run>,
}

#[derive(Deserialize)]
struct Run {
    tool: Tool,
    #[serde(default)]
    results: Option<Vec<ResultRec>>,
}

#[derive(Deserialize)]
struct Tool {
    driver: Component,
    #[serde(default)]
    extensions: Vec<Component>,
}

#[derive(Deserialize)]
struct Component {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    default_configuration: Option<Configuration>,
    #[serde(default)]
    properties: Option<RuleProperties>,
}

#[derive(Deserialize)]
struct Configuration {
    #[serde(default)]
    level: Option<Level>,
}

#[derive(Deserialize)]
struct RuleProperties {
    #[serde(default, rename = "security-severity")]
    security_severity: Option<NumberOrText>,
}

/// CodeQL and Trivy write `security-severity` as a string ("7.5"); some tools as a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(f64),
    Text(String),
}

impl NumberOrText {
    fn value(&self) -> Option<f64> {
        match self {
            NumberOrText::Number(n) => Some(*n),
            NumberOrText::Text(t) => t.trim().parse().ok().filter(|n: &f64| n.is_finite()),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResultRec {
    #[serde(default)]
    level: Option<Level>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    rule_id: Option<String>,
    #[serde(default)]
    rule_index: Option<i64>,
    #[serde(default)]
    rule: Option<RuleReference>,
    #[serde(default)]
    suppressions: Option<Vec<Suppression>>,
    #[serde(default)]
    baseline_state: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuleReference {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    index: Option<i64>,
    #[serde(default)]
    tool_component: Option<ToolComponentReference>,
}

#[derive(Deserialize)]
struct ToolComponentReference {
    #[serde(default)]
    index: Option<i64>,
}

#[derive(Deserialize)]
struct Suppression {
    #[serde(default)]
    status: Option<String>,
}

/// Parses a SARIF log from `reader`; `file` names it in errors.
pub fn parse(file: &str, reader: impl Read) -> Result<SarifSummary, GateError> {
    let mut de = serde_json::Deserializer::from_reader(BufReader::with_capacity(64 * 1024, reader));
    let log = Log::deserialize(&mut de).map_err(|e| GateError::json(file, e))?;
    de.end().map_err(|e| GateError::json(file, e))?;
    let mut summary = SarifSummary {
        runs: log.runs.len(),
        ..SarifSummary::default()
    };
    for run in &log.runs {
        summary.tools.extend(run.tool.driver.name.clone());
        if run.results.is_none() {
            summary.runs_without_results += 1;
        }
        for result in run.results.iter().flatten() {
            summary.results += 1;
            tally(&mut summary, &run.tool, result);
        }
    }
    Ok(summary)
}

fn tally(summary: &mut SarifSummary, tool: &Tool, result: &ResultRec) {
    if result.kind.as_deref().is_some_and(|k| k != "fail") {
        summary.not_failures += 1;
        return;
    }
    if let Some(suppressions) = &result.suppressions {
        // §3.27.23: a suppression with no status, or status accepted, suppresses; one under
        // review or rejected does not.
        if suppressions
            .iter()
            .any(|s| matches!(s.status.as_deref(), None | Some("accepted")))
        {
            summary.suppressed += 1;
            return;
        }
    }
    if result.baseline_state.as_deref() == Some("absent") {
        summary.absent += 1;
        return;
    }
    let rule = find_rule(tool, result);
    let level = result
        .level
        .or_else(|| rule.and_then(|r| r.default_configuration.as_ref()?.level))
        .unwrap_or(Level::Warning);
    summary.findings += 1;
    summary.by_level[level as usize] += 1;
    summary.max_level = summary.max_level.max(Some(level));
    if let Some(sev) = rule
        .and_then(|r| r.properties.as_ref()?.security_severity.as_ref())
        .and_then(NumberOrText::value)
    {
        summary.max_security_severity =
            Some(summary.max_security_severity.map_or(sev, |m| m.max(sev)));
    }
}

/// The rule a result refers to (§3.27.5–7, §3.52): the component named by
/// `rule.toolComponent.index` (an extension) or the driver, then by index, then by id.
fn find_rule<'t>(tool: &'t Tool, result: &ResultRec) -> Option<&'t Rule> {
    let reference = result.rule.as_ref();
    let component = match reference.and_then(|r| r.tool_component.as_ref()?.index) {
        Some(i) => tool.extensions.get(usize::try_from(i).ok()?)?,
        None => &tool.driver,
    };
    let index = reference.and_then(|r| r.index).or(result.rule_index);
    if let Some(i) = index.and_then(|i| usize::try_from(i).ok())
        && let Some(rule) = component.rules.get(i)
    {
        return Some(rule);
    }
    let id = reference
        .and_then(|r| r.id.as_deref())
        .or(result.rule_id.as_deref())?;
    std::iter::once(component)
        .chain(std::iter::once(&tool.driver))
        .chain(tool.extensions.iter())
        .flat_map(|c| c.rules.iter())
        .find(|r| r.id.as_deref() == Some(id))
}
