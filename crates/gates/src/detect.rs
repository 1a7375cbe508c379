//! Format detection from content: the first bytes of the input, never its name.

use std::io::{Cursor, Read};

use crate::error::GateError;
use crate::{Report, coverage, junit, k6, sarif};

/// How much of the input detection looks at. A k6 summary may open with a large `root_group`,
/// so JSON detection reads this far for its markers.
const PREFIX: usize = 64 * 1024;

/// An input's format, as detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Sarif,
    Junit,
    K6,
    Cobertura,
    Lcov,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Sarif => "sarif",
            Format::Junit => "junit",
            Format::K6 => "k6",
            Format::Cobertura => "cobertura",
            Format::Lcov => "lcov",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Detects the format of `reader`'s content and parses it. `file` names the input in errors.
pub fn parse(file: &str, mut reader: impl Read) -> Result<(Format, Report), GateError> {
    let mut prefix = Vec::with_capacity(PREFIX);
    (&mut reader)
        .take(PREFIX as u64)
        .read_to_end(&mut prefix)
        .map_err(|source| GateError::Io {
            file: file.to_owned(),
            source,
        })?;
    let whole = Cursor::new(prefix.clone()).chain(reader);
    let text = prefix.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&prefix);
    let first = text.iter().position(|b| !b.is_ascii_whitespace());
    let unknown = |why: &str| GateError::UnknownFormat {
        file: file.to_owned(),
        why: why.to_owned(),
    };
    let Some(first) = first else {
        return Err(unknown("the file is empty"));
    };
    match text[first] {
        b'<' => match junit::parse_xml(file, whole)? {
            junit::Xml::Junit(s) => Ok((Format::Junit, Report::Junit(s))),
            junit::Xml::Cobertura(c) => Ok((Format::Cobertura, Report::Coverage(c))),
        },
        b'{' => {
            let has = |needle: &[u8]| text.windows(needle.len()).any(|w| w == needle);
            if has(b"\"runs\"") || has(b"sarif-schema") || has(b"sarif-2.1.0") {
                Ok((Format::Sarif, Report::Sarif(sarif::parse(file, whole)?)))
            } else if has(b"\"metrics\"") || has(b"\"root_group\"") {
                Ok((Format::K6, Report::K6(k6::parse(file, whole)?)))
            } else {
                Err(unknown(
                    "a JSON object with neither SARIF `runs` nor k6 `metrics`",
                ))
            }
        }
        _ if coverage::looks_like_lcov(&text[first..]) => Ok((
            Format::Lcov,
            Report::Coverage(coverage::parse_lcov(file, whole)?),
        )),
        _ => Err(unknown("neither JSON, XML nor LCOV records")),
    }
}
