//! JUnit XML (and the XML root dispatch: a `<coverage>` root is Cobertura), streamed with
//! quick-xml. Every dialect seen in the wild reads the same way here: Maven Surefire (with
//! `<flakyFailure>` / `<rerunFailure>` from reruns), pytest's xunit1 and xunit2 (duplicate test
//! names are distinct cases), jest-junit, suites nested in suites, and a bare `<testsuite>`
//! root. The `tests` / `failures` attributes are ignored: counts are recomputed from the
//! `<testcase>` elements, because tools get them wrong and a gate must not trust them.

use std::io::{BufReader, Read};

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use crate::coverage::{self, CoverageSummary};
use crate::error::{GateError, Position};

/// Counts recomputed from the test cases.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JunitSummary {
    pub suites: u64,
    pub tests: u64,
    /// Cases with a `<failure>`.
    pub failures: u64,
    /// Cases with an `<error>` (and no `<failure>`).
    pub errors: u64,
    pub skipped: u64,
    /// Cases that passed after failing: `<flakyFailure>`, `<flakyError>`, `<rerunFailure>` or
    /// `<rerunError>` without a final `<failure>` / `<error>`.
    pub flaky: u64,
}

impl JunitSummary {
    /// Failed cases: failures and errors.
    pub fn failed(&self) -> u64 {
        self.failures + self.errors
    }
}

pub(crate) enum Xml {
    Junit(JunitSummary),
    Cobertura(CoverageSummary),
}

#[derive(Default)]
struct Case {
    failure: bool,
    error: bool,
    skipped: bool,
    flaky: bool,
}

fn xml_error(
    file: &str,
    reader: &Reader<impl std::io::BufRead>,
    e: impl std::fmt::Display,
) -> GateError {
    GateError::parse(file, Position::Byte(reader.error_position()), e.to_string())
}

/// Reads an XML report: JUnit when the root is `<testsuites>` / `<testsuite>`, Cobertura when
/// it is `<coverage>`.
pub(crate) fn parse_xml(file: &str, reader: impl Read) -> Result<Xml, GateError> {
    let mut reader = Reader::from_reader(BufReader::with_capacity(64 * 1024, reader));
    reader.config_mut().check_end_names = true;
    let mut buf = Vec::new();
    let mut summary = JunitSummary::default();
    let mut depth: usize = 0;
    let mut root_seen = false;
    let mut case: Option<(usize, Case)> = None;
    loop {
        let position = reader.buffer_position();
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| xml_error(file, &reader, e))?;
        let (start, empty) = match &event {
            Event::Start(s) => (Some(s), false),
            Event::Empty(s) => (Some(s), true),
            _ => (None, false),
        };
        if let Some(start) = start {
            let name = start.local_name();
            let name: &[u8] = name.as_ref().as_bytes();
            if !root_seen {
                root_seen = true;
                match name {
                    b"testsuites" | b"testsuite" => {}
                    b"coverage" => {
                        return Ok(Xml::Cobertura(coverage::cobertura_root(
                            file, position, start,
                        )?));
                    }
                    other => {
                        return Err(GateError::UnknownFormat {
                            file: file.to_owned(),
                            why: format!(
                                "XML whose root is <{}>, not <testsuites>, <testsuite> or <coverage>",
                                String::from_utf8_lossy(other)
                            ),
                        });
                    }
                }
            } else if depth == 0 {
                return Err(GateError::parse(
                    file,
                    Position::Byte(position),
                    "a second root element",
                ));
            }
            match (name, &mut case) {
                (b"testsuite", None) => summary.suites += 1,
                (b"testcase", None) => {
                    if empty {
                        summary.tests += 1;
                    } else {
                        case = Some((depth, Case::default()));
                    }
                }
                (b"testcase", Some(_)) => {
                    return Err(GateError::parse(
                        file,
                        Position::Byte(position),
                        "a <testcase> inside a <testcase>",
                    ));
                }
                (_, Some((_, c))) => mark(c, name),
                _ => {}
            }
            if !empty {
                depth += 1;
            }
            check_attributes(file, position, start)?;
        } else {
            match event {
                Event::End(_) => {
                    depth = depth.saturating_sub(1);
                    if let Some((d, _)) = &case
                        && *d == depth
                    {
                        let (_, c) = case.take().expect("checked above");
                        tally(&mut summary, &c);
                    }
                }
                Event::Text(t)
                    if depth == 0 && root_seen && !AsRef::<str>::as_ref(&t).trim().is_empty() =>
                {
                    return Err(GateError::parse(
                        file,
                        Position::Byte(position),
                        "text after the root element",
                    ));
                }
                Event::Eof => break,
                _ => {}
            }
        }
        buf.clear();
    }
    if !root_seen {
        return Err(GateError::parse(file, Position::Start, "no root element"));
    }
    if depth != 0 {
        return Err(GateError::parse(
            file,
            Position::Byte(reader.buffer_position()),
            "the file ends inside an element (truncated?)",
        ));
    }
    Ok(Xml::Junit(summary))
}

/// Malformed attributes are an error, not silently skipped.
fn check_attributes(file: &str, position: u64, start: &BytesStart<'_>) -> Result<(), GateError> {
    for attribute in start.attributes() {
        attribute.map_err(|e| GateError::parse(file, Position::Byte(position), e.to_string()))?;
    }
    Ok(())
}

fn mark(case: &mut Case, child: &[u8]) {
    match child {
        b"failure" => case.failure = true,
        b"error" => case.error = true,
        b"skipped" => case.skipped = true,
        b"flakyFailure" | b"flakyError" | b"rerunFailure" | b"rerunError" => case.flaky = true,
        _ => {}
    }
}

fn tally(summary: &mut JunitSummary, case: &Case) {
    summary.tests += 1;
    if case.failure {
        summary.failures += 1;
    } else if case.error {
        summary.errors += 1;
    } else if case.skipped {
        summary.skipped += 1;
    } else if case.flaky {
        summary.flaky += 1;
    }
}
