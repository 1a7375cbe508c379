//! `gates:` — named release gates, each a list of conditions on CI tool output, checked by
//! `wharf gate check`. A condition is a mapping with `name` and exactly one kind key (`sarif`,
//! `junit`, `k6`, `coverage`), so an unknown kind gets its own did-you-mean error instead of
//! being ignored; a condition that sets no limit is refused, since it would check nothing.
//! `require.gates` (checked in `validate.rs` to name gates declared here) makes a deploy wait
//! for a passing verdict of each.

use indexmap::IndexMap;

use crate::decode::{Decoder, list, suggestion};
use crate::diagnostic::Diagnostic;
use crate::model::{
    CoverageLimits, GateCheck, GateCondition, JunitLimits, K6Limits, SarifLevel, SarifLimits,
};
use crate::values::{DurationRule, Percent};
use crate::yaml::{Node, NodeKind};

/// The kinds of condition, by their key.
pub const CONDITION_KINDS: &[&str] = &["sarif", "junit", "k6", "coverage"];

pub(crate) fn gates(decoder: &mut Decoder, node: &Node) -> IndexMap<String, Vec<GateCondition>> {
    let mut gates = IndexMap::new();
    for (name, key, value) in decoder.named_entries(node, "`gates`") {
        if !crate::schema::is_identifier(&name) {
            decoder.push(
                Diagnostic::error(key.span, format!("gate name `{name}` is not a valid name"))
                    .with_hint("use letters, digits, `-` and `_`"),
            );
            continue;
        }
        let what = format!("gate `{name}`");
        let items = decoder.items(value, &what);
        if items.is_empty() && matches!(value.kind, NodeKind::Seq(_) | NodeKind::Null) {
            decoder.push(
                Diagnostic::error(value.span, format!("{what} has no conditions"))
                    .with_label("empty")
                    .with_hint("a gate with no condition would pass without checking anything"),
            );
            continue;
        }
        let mut conditions: Vec<GateCondition> = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let Some(condition) = condition(decoder, &what, index + 1, item) else {
                continue;
            };
            if conditions.iter().any(|c| c.name == condition.name) {
                decoder.push(Diagnostic::error(
                    item.span,
                    format!("{what}: condition `{}` is declared twice", condition.name),
                ));
                continue;
            }
            conditions.push(condition);
        }
        gates.insert(name, conditions);
    }
    gates
}

fn condition(
    decoder: &mut Decoder,
    gate: &str,
    number: usize,
    node: &Node,
) -> Option<GateCondition> {
    let what = format!("{gate} condition {number}");
    let NodeKind::Map(entries) = &node.kind else {
        decoder.expected(
            node,
            "a mapping with `name` and one of `sarif`, `junit`, `k6`, `coverage`",
            &what,
        );
        return None;
    };
    let mut name = None;
    let mut kind: Option<(&str, &Node, &Node)> = None;
    let mut ok = true;
    for (key, value) in entries {
        let Some(text) = key.as_str() else {
            decoder.expected(key, "a plain key", &what);
            ok = false;
            continue;
        };
        match text {
            "name" => {
                name = decoder.name(value, &format!("{what} name"));
                ok &= name.is_some();
            }
            _ if text.starts_with("x-") => {}
            _ if CONDITION_KINDS.contains(&text) => {
                if let Some((first, _, _)) = kind {
                    decoder.push(
                        Diagnostic::error(
                            key.span,
                            format!("{what} has two kinds, `{first}` and `{text}`"),
                        )
                        .with_label("a second kind")
                        .with_hint(
                            "a condition reads one kind of report: split it into two conditions",
                        ),
                    );
                    ok = false;
                } else {
                    kind = Some((text, key, value));
                }
            }
            _ => {
                let hint = suggestion(text, CONDITION_KINDS).unwrap_or_else(|| {
                    format!(
                        "a condition takes one of {}, plus `name`",
                        list(CONDITION_KINDS)
                    )
                });
                decoder.push(
                    Diagnostic::error(
                        key.span,
                        format!("unknown condition kind `{text}` in {what}"),
                    )
                    .with_label("unknown kind")
                    .with_hint(hint),
                );
                ok = false;
            }
        }
    }
    if name.is_none() && ok {
        decoder.push(
            Diagnostic::error(node.span, format!("{what} has no `name`"))
                .with_label("no name")
                .with_hint("name it: the verdict and the ledger report conditions by name"),
        );
        ok = false;
    }
    let Some((kind_text, _, value)) = kind else {
        if ok {
            decoder.push(
                Diagnostic::error(node.span, format!("{what} has no kind"))
                    .with_label("no kind")
                    .with_hint(format!("give one of {}", list(CONDITION_KINDS))),
            );
        }
        return None;
    };
    let what = format!(
        "{gate} condition `{}` `{kind_text}`",
        name.as_deref().unwrap_or("?")
    );
    let check = match kind_text {
        "sarif" => sarif(decoder, &what, value).map(GateCheck::Sarif),
        "junit" => junit(decoder, &what, value).map(GateCheck::Junit),
        "k6" => k6(decoder, &what, value).map(GateCheck::K6),
        _ => coverage(decoder, &what, value).map(GateCheck::Coverage),
    };
    let check = check?;
    if check.is_empty() {
        // Limits that failed to parse have their own diagnostics; an empty mapping has none.
        if matches!(&value.kind, NodeKind::Map(e) if e.is_empty()) || value.kind == NodeKind::Null {
            decoder.push(
                Diagnostic::error(value.span, format!("{what} sets no limit"))
                    .with_label("no limit")
                    .with_hint("a condition with no limit would check nothing"),
            );
        }
        return None;
    }
    ok.then_some(GateCondition { name: name?, check })
}

fn sarif(decoder: &mut Decoder, what: &str, node: &Node) -> Option<SarifLimits> {
    let fields = decoder.fields(
        node,
        what,
        &["max_level", "max_security_severity", "max_results"],
    )?;
    let max_level = fields.get("max_level").and_then(|n| {
        decoder.choice(
            n,
            &format!("{what} max_level"),
            &[
                ("none", SarifLevel::None),
                ("note", SarifLevel::Note),
                ("warning", SarifLevel::Warning),
                ("error", SarifLevel::Error),
            ],
        )
    });
    let max_security_severity = match fields.get("max_security_severity") {
        None => None,
        Some(n) => {
            let parsed = n.as_str().and_then(|t| t.trim().parse::<f64>().ok());
            match parsed {
                Some(v) if (0.0..=10.0).contains(&v) => Some(v),
                _ => {
                    decoder.push(
                        Diagnostic::error(
                            n.span,
                            format!("{what} max_security_severity is not a score"),
                        )
                        .with_label("expected a number from 0 to 10")
                        .with_hint(
                            "CVSS-style: 6.9 lets medium through and stops high (7.0) and critical",
                        ),
                    );
                    return None;
                }
            }
        }
    };
    Some(SarifLimits {
        max_level,
        max_security_severity,
        max_results: fields
            .get("max_results")
            .and_then(|n| decoder.integer(n, &format!("{what} max_results"), 0, i64::MAX)),
    })
}

fn junit(decoder: &mut Decoder, what: &str, node: &Node) -> Option<JunitLimits> {
    let fields = decoder.fields(node, what, &["max_failures", "min_tests"])?;
    Some(JunitLimits {
        max_failures: fields
            .get("max_failures")
            .and_then(|n| decoder.integer(n, &format!("{what} max_failures"), 0, i64::MAX)),
        min_tests: fields
            .get("min_tests")
            .and_then(|n| decoder.integer(n, &format!("{what} min_tests"), 1, i64::MAX)),
    })
}

fn k6(decoder: &mut Decoder, what: &str, node: &Node) -> Option<K6Limits> {
    let fields = decoder.fields(node, what, &["p95", "max_error_rate", "thresholds"])?;
    Some(K6Limits {
        p95: fields
            .get("p95")
            .and_then(|n| decoder.duration(n, &format!("{what} p95"), DurationRule::Period)),
        max_error_rate: fields.get("max_error_rate").and_then(|n| {
            decoder.parsed::<Percent>(n, &format!("{what} max_error_rate"), "percentage")
        }),
        thresholds_pass: fields
            .get("thresholds")
            .and_then(|n| decoder.choice(n, &format!("{what} thresholds"), &[("pass", true)]))
            .unwrap_or(false),
    })
}

fn coverage(decoder: &mut Decoder, what: &str, node: &Node) -> Option<CoverageLimits> {
    let fields = decoder.fields(node, what, &["min_lines", "min_branches"])?;
    let percent = |decoder: &mut Decoder, key: &str| {
        fields
            .get(key)
            .and_then(|n| decoder.parsed::<Percent>(n, &format!("{what} {key}"), "percentage"))
    };
    Some(CoverageLimits {
        min_lines: percent(decoder, "min_lines"),
        min_branches: percent(decoder, "min_branches"),
    })
}
