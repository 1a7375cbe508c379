//! Diagnostics: what is wrong, where (file:line:column), and how to fix it.
//!
//! Rendered in rustc's style (annotate-snippets, rustc's own renderer) for people and as flat
//! JSON records for tools.

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use serde::Serialize;

/// A byte range of the source plus the 1-based line and column of its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub line: usize,
    pub column: usize,
}

impl Span {
    /// The span from the start of `self` to the end of `other`.
    pub fn to(self, other: Span) -> Span {
        Span {
            end: other.end.max(self.start),
            ..self
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    pub span: Span,
    /// A short label printed under the caret.
    pub label: Option<String>,
    /// What to do about it ("did you mean `ports`?").
    pub hint: Option<String>,
    /// On the last diagnostic of a capped report: the problems it stands for.
    pub omitted: Option<Box<Omitted>>,
}

/// How many problems a capped report left out (see `MAX_DIAGNOSTICS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Omitted {
    pub errors: usize,
    pub warnings: usize,
}

/// Errors and warnings in a report, counting those a capped report left out: what the summary
/// line after the diagnostics says.
pub fn count(diagnostics: &[Diagnostic]) -> (usize, usize) {
    diagnostics
        .iter()
        .fold((0, 0), |(errors, warnings), d| match &d.omitted {
            Some(o) => (errors + o.errors, warnings + o.warnings),
            None if d.is_error() => (errors + 1, warnings),
            None => (errors, warnings + 1),
        })
}

impl Diagnostic {
    pub fn error(span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            span,
            label: None,
            hint: None,
            omitted: None,
        }
    }

    pub fn warning(span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(span, message)
        }
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The flat record `--output json` prints.
    pub fn record<'a>(&'a self, file: &'a str) -> DiagnosticRecord<'a> {
        DiagnosticRecord {
            severity: self.severity,
            message: &self.message,
            file,
            line: self.span.line,
            column: self.span.column,
            hint: self.hint.as_deref(),
        }
    }
}

/// `{severity, message, file, line, column, hint}`: the JSON shape of a diagnostic.
#[derive(Debug, Serialize)]
pub struct DiagnosticRecord<'a> {
    pub severity: Severity,
    pub message: &'a str,
    pub file: &'a str,
    pub line: usize,
    pub column: usize,
    pub hint: Option<&'a str>,
}

/// Renders diagnostics for a terminal: a header, the source line with a caret under the spot,
/// and the hint. `color` turns on ANSI styling.
pub fn render(diagnostics: &[Diagnostic], file: &str, source: &str, color: bool) -> String {
    let renderer = if color {
        Renderer::styled()
    } else {
        Renderer::plain()
    };
    let mut out = String::new();
    for diagnostic in diagnostics {
        out.push_str(&renderer.render(&report(diagnostic, file, source)));
        out.push_str("\n\n");
    }
    out
}

fn report<'a>(diagnostic: &'a Diagnostic, file: &'a str, source: &'a str) -> Vec<Group<'a>> {
    let level = match diagnostic.severity {
        Severity::Error => Level::ERROR,
        Severity::Warning => Level::WARNING,
    };
    let span = clamp(diagnostic.span, source);
    // Only the line the caret is on is handed to the renderer, which would otherwise scan the
    // whole file for each diagnostic: thousands of problems would cost thousands of files.
    let line_start = source[..span.start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = source[span.start..]
        .find('\n')
        .map_or(source.len(), |i| span.start + i);
    // A CRLF file's `\r` is left out, as the renderer leaves it out of a whole file.
    let line = source[line_start..line_end]
        .strip_suffix('\r')
        .unwrap_or(&source[line_start..line_end]);
    let start = (span.start - line_start).min(line.len());
    let end = (span.end - line_start).clamp(start, line.len());
    let mut annotation = AnnotationKind::Primary.span(start..end);
    if let Some(label) = &diagnostic.label {
        annotation = annotation.label(label.as_str());
    }
    let snippet = Snippet::source(line)
        .line_start(diagnostic.span.line.max(1))
        .path(file)
        .fold(true)
        .annotation(annotation);
    let mut groups = vec![
        level
            .primary_title(diagnostic.message.as_str())
            .element(snippet),
    ];
    if let Some(hint) = &diagnostic.hint {
        groups.push(Group::with_title(
            Level::HELP.secondary_title(hint.as_str()),
        ));
    }
    groups
}

/// Keeps the caret on one line: a span over a whole block would underline the block.
fn clamp(span: Span, source: &str) -> std::ops::Range<usize> {
    let mut start = span.start.min(source.len());
    while !source.is_char_boundary(start) {
        start -= 1;
    }
    let line_end = source[start..]
        .find('\n')
        .map_or(source.len(), |i| start + i);
    let end = span.end.clamp(start, line_end);
    start..end
}
