//! The one error type: a file name, a position in it, and what is wrong there.

use std::fmt;

/// Where in a file a problem is. Each format has its natural unit: JSON parsers count lines
/// and columns, the XML reader byte offsets, LCOV lines; k6's small summaries are checked
/// after parsing, so their problems are named by the path of keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    LineColumn { line: usize, column: usize },
    Byte(u64),
    Line(usize),
    Path(String),
    Start,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::LineColumn { line, column } => write!(f, "line {line}, column {column}"),
            Position::Byte(b) => write!(f, "byte {b}"),
            Position::Line(l) => write!(f, "line {l}"),
            Position::Path(p) => write!(f, "at {p}"),
            Position::Start => write!(f, "start of file"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("{file}: {position}: {message}")]
    Parse {
        file: String,
        position: Position,
        message: String,
    },
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{file}: unknown format: not SARIF, JUnit XML, a k6 summary, Cobertura XML or LCOV ({why})"
    )]
    UnknownFormat { file: String, why: String },
}

impl GateError {
    pub(crate) fn parse(file: &str, position: Position, message: impl Into<String>) -> Self {
        GateError::Parse {
            file: file.to_owned(),
            position,
            message: message.into(),
        }
    }

    /// The position of a parse error, if this is one.
    pub fn position(&self) -> Option<&Position> {
        match self {
            GateError::Parse { position, .. } => Some(position),
            _ => None,
        }
    }

    /// From serde_json: its line and column, or a read error.
    pub(crate) fn json(file: &str, e: serde_json::Error) -> Self {
        if e.is_io() {
            return GateError::Io {
                file: file.to_owned(),
                source: e.into(),
            };
        }
        let position = Position::LineColumn {
            line: e.line(),
            column: e.column(),
        };
        // serde_json's message ends with " at line L column C"; the position says it already.
        let message = e.to_string();
        let message = match message.rfind(" at line ") {
            Some(i) => message[..i].to_owned(),
            None => message,
        };
        GateError::parse(file, position, message)
    }
}
