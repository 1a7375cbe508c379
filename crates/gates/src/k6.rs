//! k6 end-of-test summaries, in both shapes k6 writes:
//!
//! - `handleSummary`'s JSON (and `--summary-export` since k6 0.30's new summary): each metric
//!   has `values` (`"p(95)"`, `rate`, …) and `thresholds: {"p(95)<500": {"ok": false}}`;
//! - the legacy `--summary-export`: values sit on the metric itself (`"p(95)"`, `value` for a
//!   rate) and `thresholds: {"p(95)<500": true}`, where **`true` means the threshold FAILED**
//!   (k6#1498). Reading it the obvious way turns every failure into a pass.
//!
//! The shape is detected per file. Summaries are small (one object per metric), so this parser
//! reads the whole document.

use std::io::{BufReader, Read};

use serde_json::{Map, Value};

use crate::error::{GateError, Position};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum K6Shape {
    HandleSummary,
    LegacyExport,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// `metric: expression`, e.g. `http_req_duration: p(95)<500`.
    pub name: String,
    pub passed: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct K6Summary {
    pub shape: K6Shape,
    /// `http_req_duration`'s p(95), in milliseconds.
    pub p95_ms: Option<f64>,
    /// `http_req_failed`'s rate, in [0, 1].
    pub error_rate: Option<f64>,
    pub thresholds: Vec<Threshold>,
}

pub(crate) fn parse(file: &str, reader: impl Read) -> Result<K6Summary, GateError> {
    let root: Value =
        serde_json::from_reader(BufReader::new(reader)).map_err(|e| GateError::json(file, e))?;
    let err = |path: &str, msg: &str| GateError::parse(file, Position::Path(path.to_owned()), msg);
    let metrics = root
        .get("metrics")
        .ok_or_else(|| err("metrics", "no `metrics` object: not a k6 summary"))?
        .as_object()
        .ok_or_else(|| err("metrics", "not an object"))?;
    let mut metric_objects: Vec<(&String, &Map<String, Value>)> = Vec::new();
    for (name, metric) in metrics {
        let metric = metric
            .as_object()
            .ok_or_else(|| err(&format!("metrics.{name}"), "not an object"))?;
        metric_objects.push((name, metric));
    }
    let shape = if metric_objects.iter().any(|(_, m)| m.contains_key("values")) {
        K6Shape::HandleSummary
    } else {
        K6Shape::LegacyExport
    };
    let values = |name: &str| -> Option<&Map<String, Value>> {
        let m = metrics.get(name)?.as_object()?;
        match shape {
            K6Shape::HandleSummary => m.get("values")?.as_object(),
            K6Shape::LegacyExport => Some(m),
        }
    };
    let number = |path: String, v: Option<&Value>| -> Result<Option<f64>, GateError> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .map(Some)
                .ok_or_else(|| err(&path, "not a non-negative number")),
        }
    };
    let p95_ms = number(
        "metrics.http_req_duration.p(95)".into(),
        values("http_req_duration").and_then(|v| v.get("p(95)")),
    )?;
    let rate_key = match shape {
        K6Shape::HandleSummary => "rate",
        K6Shape::LegacyExport => "value",
    };
    let error_rate = number(
        format!("metrics.http_req_failed.{rate_key}"),
        values("http_req_failed").and_then(|v| v.get(rate_key)),
    )?;
    if error_rate.is_some_and(|r| r > 1.0) {
        return Err(err("metrics.http_req_failed", "a rate is between 0 and 1"));
    }
    let mut thresholds = Vec::new();
    for (name, metric) in &metric_objects {
        let Some(ts) = metric.get("thresholds") else {
            continue;
        };
        let path = format!("metrics.{name}.thresholds");
        let ts = ts.as_object().ok_or_else(|| err(&path, "not an object"))?;
        for (expr, t) in ts {
            let passed = match (shape, t) {
                // k6#1498: in the legacy export `true` means the threshold was crossed.
                (K6Shape::LegacyExport, Value::Bool(failed)) => !failed,
                (K6Shape::HandleSummary, Value::Object(o)) => o
                    .get("ok")
                    .and_then(Value::as_bool)
                    .ok_or_else(|| err(&format!("{path}.{expr}"), "no boolean `ok`"))?,
                (K6Shape::LegacyExport, _) => {
                    return Err(err(
                        &format!("{path}.{expr}"),
                        "a legacy threshold is true (failed) or false (passed)",
                    ));
                }
                (K6Shape::HandleSummary, _) => {
                    return Err(err(
                        &format!("{path}.{expr}"),
                        "a threshold is an object with `ok`",
                    ));
                }
            };
            thresholds.push(Threshold {
                name: format!("{name}: {expr}"),
                passed,
            });
        }
    }
    Ok(K6Summary {
        shape,
        p95_ms,
        error_rate,
        thresholds,
    })
}
