//! Coverage reports: Cobertura XML (the rates and counts on the root `<coverage>` element, as
//! coverage.py, JaCoCo converters, Istanbul and gcovr write them) and LCOV tracefiles (`LF` /
//! `LH` lines and `BRF` / `BRH` branches summed over every record).

use std::io::{BufRead, BufReader, Read};

use quick_xml::events::BytesStart;

use crate::error::{GateError, Position};

/// One measure: a rate in [0, 1] and, when the report gives them, the counts behind it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measure {
    pub rate: f64,
    pub covered: Option<u64>,
    pub total: Option<u64>,
}

impl Measure {
    fn counted(covered: u64, total: u64) -> Option<Measure> {
        (total > 0).then(|| Measure {
            rate: covered as f64 / total as f64,
            covered: Some(covered),
            total: Some(total),
        })
    }

    pub fn percent(&self) -> f64 {
        self.rate * 100.0
    }
}

/// Line and branch coverage; `None` when the report measured none (no lines, branch coverage
/// off).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CoverageSummary {
    pub lines: Option<Measure>,
    pub branches: Option<Measure>,
}

pub(crate) fn cobertura_root(
    file: &str,
    position: u64,
    start: &BytesStart<'_>,
) -> Result<CoverageSummary, GateError> {
    let mut attrs = std::collections::HashMap::new();
    for attribute in start.attributes() {
        let attribute = attribute
            .map_err(|e| GateError::parse(file, Position::Byte(position), e.to_string()))?;
        let value = attribute
            .normalized_value(quick_xml::XmlVersion::default())
            .map_err(|e| GateError::parse(file, Position::Byte(position), e.to_string()))?;
        attrs.insert(
            attribute.key.as_ref().as_bytes().to_vec(),
            value.into_owned(),
        );
    }
    let number = |key: &str| -> Result<Option<f64>, GateError> {
        match attrs.get(key.as_bytes()) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .map(Some)
                .ok_or_else(|| {
                    GateError::parse(
                        file,
                        Position::Byte(position),
                        format!("<coverage {key}=\"{v}\">: not a non-negative number"),
                    )
                }),
        }
    };
    let measure = |rate: &str,
                   covered_key: &str,
                   valid_key: &str|
     -> Result<Option<Measure>, GateError> {
        let (covered, valid) = (number(covered_key)?, number(valid_key)?);
        if let (Some(c), Some(v)) = (covered, valid) {
            if c > v {
                return Err(GateError::parse(
                    file,
                    Position::Byte(position),
                    format!("<coverage {covered_key}=\"{c}\"> is more than {valid_key}=\"{v}\""),
                ));
            }
            // Counts win: `valid="0"` means this measure was not taken (branch coverage off),
            // whatever the rate attribute says.
            return Ok(Measure::counted(c as u64, v as u64));
        }
        match number(rate)? {
            Some(r) if r <= 1.0 => Ok(Some(Measure {
                rate: r,
                covered: None,
                total: None,
            })),
            Some(r) => Err(GateError::parse(
                file,
                Position::Byte(position),
                format!("<coverage {rate}=\"{r}\">: a rate is between 0 and 1"),
            )),
            None => Ok(None),
        }
    };
    Ok(CoverageSummary {
        lines: measure("line-rate", "lines-covered", "lines-valid")?,
        branches: measure("branch-rate", "branches-covered", "branches-valid")?,
    })
}

/// LCOV's records open with `TN:` or `SF:` (a comment line may come first).
pub(crate) fn looks_like_lcov(text: &[u8]) -> bool {
    text.split(|b| *b == b'\n')
        .map(|l| l.trim_ascii())
        .find(|l| !l.is_empty() && !l.starts_with(b"#"))
        .is_some_and(|l| l.starts_with(b"TN:") || l.starts_with(b"SF:"))
}

pub(crate) fn parse_lcov(file: &str, reader: impl Read) -> Result<CoverageSummary, GateError> {
    let (mut lf, mut lh, mut brf, mut brh) = (0u64, 0u64, 0u64, 0u64);
    let mut line = String::new();
    let mut reader = BufReader::new(reader);
    let mut number = 0usize;
    loop {
        line.clear();
        number += 1;
        let n = reader.read_line(&mut line).map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidData {
                GateError::parse(file, Position::Line(number), "not UTF-8 text")
            } else {
                GateError::Io {
                    file: file.to_owned(),
                    source: e,
                }
            }
        })?;
        if n == 0 {
            break;
        }
        let text = line.trim();
        if text.is_empty() || text.starts_with('#') || text == "end_of_record" {
            continue;
        }
        let Some((key, value)) = text.split_once(':') else {
            return Err(GateError::parse(
                file,
                Position::Line(number),
                format!("`{}`: not an LCOV record (KEY:VALUE)", truncate(text)),
            ));
        };
        let slot = match key {
            "LF" => &mut lf,
            "LH" => &mut lh,
            "BRF" => &mut brf,
            "BRH" => &mut brh,
            _ => continue,
        };
        let value: u64 = value.trim().parse().map_err(|_| {
            GateError::parse(
                file,
                Position::Line(number),
                format!("{key}:{}: not a count", truncate(value)),
            )
        })?;
        *slot = slot.checked_add(value).ok_or_else(|| {
            GateError::parse(
                file,
                Position::Line(number),
                format!("{key}: the sum overflows"),
            )
        })?;
    }
    if lh > lf || brh > brf {
        return Err(GateError::parse(
            file,
            Position::Line(number),
            format!(
                "more lines or branches hit than found (LH {lh} / LF {lf}, BRH {brh} / BRF {brf})"
            ),
        ));
    }
    Ok(CoverageSummary {
        lines: Measure::counted(lh, lf),
        branches: Measure::counted(brh, brf),
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}
