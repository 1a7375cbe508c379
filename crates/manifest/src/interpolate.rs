//! Variable interpolation with docker compose's semantics, applied to every scalar value.
//!
//! `${VAR}`, `$VAR`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`, `${VAR?message}`,
//! `${VAR:+alt}`, `${VAR+alt}`, `$$` for a literal `$`. Two kinds of reference stay symbolic:
//! `${secret:NAME}` (resolved only inside the control plane at instance start, so a secret never
//! reaches rendered output), and the instance variables `${PORT}`, `${INSTANCE}`, `${VERSION}`,
//! `${SERVICE}` inside a service's `command`, `env` and `probes`, which the runtime fills per
//! instance. A third, `${param:NAME}`, belongs to runbooks: it is filled with the run's typed
//! parameter when the run starts, and validation checks each names a declared parameter.

use crate::diagnostic::{Diagnostic, Span};
use crate::yaml::{Node, NodeKind, Positions};

/// Variables wharf itself sets for each instance.
pub const INSTANCE_VARIABLES: &[&str] = &["PORT", "INSTANCE", "VERSION", "SERVICE"];

/// A `${secret:NAME}` found in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretReference {
    pub name: String,
    pub span: Span,
}

/// A `${param:NAME}` found in the manifest, with the runbook it appears in (`None`: outside
/// any runbook, which validation refuses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamReference {
    pub name: String,
    pub span: Span,
    pub runbook: Option<String>,
}

/// Where variable values come from: the process environment, a `.env` file, a test's map.
pub trait Variables {
    fn get(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Variables for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

pub(crate) struct Interpolator<'a> {
    pub variables: &'a dyn Variables,
    pub positions: &'a Positions,
    pub source: &'a str,
    pub diagnostics: Vec<Diagnostic>,
    pub secrets: Vec<SecretReference>,
    pub params: Vec<ParamReference>,
}

impl Interpolator<'_> {
    /// Interpolates every scalar value under `node`; `path` is the chain of keys above it.
    pub fn walk(&mut self, node: &mut Node, path: &mut Vec<String>) {
        match &mut node.kind {
            NodeKind::Scalar { value, .. } => {
                if value.contains('$') {
                    let keep_instance_vars = in_instance_scope(path);
                    let runbook =
                        (path.len() >= 2 && path[0] == "runbooks").then(|| path[1].clone());
                    if let Some(expanded) =
                        self.expand_scalar(value, node.span, keep_instance_vars, runbook)
                    {
                        *value = expanded;
                    }
                }
            }
            NodeKind::Seq(items) => {
                for item in items {
                    self.walk(item, path);
                }
            }
            NodeKind::Map(entries) => {
                for (key, value) in entries {
                    path.push(key.as_str().unwrap_or_default().to_owned());
                    self.walk(value, path);
                    path.pop();
                }
            }
            NodeKind::Null => {}
        }
    }

    fn expand_scalar(
        &mut self,
        text: &str,
        span: Span,
        keep_instance_vars: bool,
        runbook: Option<String>,
    ) -> Option<String> {
        let mut expansion = Expansion {
            variables: self.variables,
            keep_instance_vars,
            problems: Vec::new(),
            secrets: Vec::new(),
            params: Vec::new(),
        };
        let result = expansion.expand(text, 0);
        for (offset, len, problem) in expansion.problems {
            let at = self.locate(span, text, offset, len);
            self.diagnostics.push(problem.into_diagnostic(at));
        }
        for (offset, len, name) in expansion.secrets {
            let at = self.locate(span, text, offset, len);
            self.secrets.push(SecretReference { name, span: at });
        }
        for (offset, len, name) in expansion.params {
            let at = self.locate(span, text, offset, len);
            self.params.push(ParamReference {
                name,
                span: at,
                runbook: runbook.clone(),
            });
        }
        result
    }

    /// The span of `text[offset..offset+len]` in the file when the scalar's source shows the
    /// same characters (plain and simple quoted scalars), else the whole scalar.
    fn locate(&self, scalar: Span, text: &str, offset: usize, len: usize) -> Span {
        let piece = &text[offset..(offset + len).min(text.len())];
        let source =
            &self.source[scalar.start.min(self.source.len())..scalar.end.min(self.source.len())];
        match source.find(piece) {
            Some(found) if !piece.is_empty() => {
                let start = scalar.start + found;
                self.positions.span_bytes(start, start + piece.len())
            }
            _ => scalar,
        }
    }
}

/// `services.<name>.command|env|probes…`: where `${PORT}` and friends belong to the runtime.
fn in_instance_scope(path: &[String]) -> bool {
    path.len() >= 3
        && path[0] == "services"
        && matches!(path[2].as_str(), "command" | "env" | "probes")
}

enum Problem {
    Required {
        name: String,
        message: String,
    },
    Unset {
        name: String,
    },
    Syntax(String),
    /// `${secret:…}` with a name wharf cannot use; `$$` would not help here.
    SecretName(String),
}

impl Problem {
    fn into_diagnostic(self, span: Span) -> Diagnostic {
        match self {
            Problem::Required { name, message } => {
                let message = if message.is_empty() {
                    format!("required variable `{name}` is not set")
                } else {
                    format!("`{name}`: {message}")
                };
                Diagnostic::error(span, message).with_hint(format!(
                    "set `{name}` in the environment or in a `.env` file beside the manifest"
                ))
            }
            Problem::Unset { name } => Diagnostic::warning(
                span,
                format!("variable `{name}` is not set; using an empty string"),
            )
            .with_hint(format!(
                "set `{name}`, or give a default: `${{{name}:-value}}`"
            )),
            Problem::Syntax(message) => {
                Diagnostic::error(span, message).with_hint("write `$$` for a literal `$`")
            }
            Problem::SecretName(message) => Diagnostic::error(span, message)
                .with_hint("name the secret with letters, digits and `_`, e.g. `${secret:PG_URL}`"),
        }
    }
}

struct Expansion<'a> {
    variables: &'a dyn Variables,
    keep_instance_vars: bool,
    /// (byte offset in the scalar, length, problem)
    problems: Vec<(usize, usize, Problem)>,
    secrets: Vec<(usize, usize, String)>,
    params: Vec<(usize, usize, String)>,
}

impl Expansion<'_> {
    /// Expands `text`; `base` is its offset within the scalar (for nested defaults).
    fn expand(&mut self, text: &str, base: usize) -> Option<String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        let mut offset = base;
        while let Some(dollar) = rest.find('$') {
            out.push_str(&rest[..dollar]);
            offset += dollar;
            rest = &rest[dollar..];
            let consumed = self.reference(rest, offset, &mut out)?;
            rest = &rest[consumed..];
            offset += consumed;
        }
        out.push_str(rest);
        Some(out)
    }

    /// Expands the reference at the start of `text` (which starts with `$`) into `out` and
    /// returns how many bytes it used.
    fn reference(&mut self, text: &str, offset: usize, out: &mut String) -> Option<usize> {
        let after = &text[1..];
        if after.starts_with('$') {
            out.push('$');
            return Some(2);
        }
        if let Some(braced) = after.strip_prefix('{') {
            let Some(close) = matching_brace(braced) else {
                self.problems.push((
                    offset,
                    text.len(),
                    Problem::Syntax("unclosed `${`".to_owned()),
                ));
                return None;
            };
            let inner = &braced[..close];
            let used = close + 3;
            self.braced(inner, &text[..used], offset, out)?;
            return Some(used);
        }
        let name_len = variable_name_len(after);
        if name_len == 0 {
            // A lone `$` (e.g. `cost: 5$`) stays as written, as compose does.
            out.push('$');
            return Some(1);
        }
        let name = &after[..name_len];
        self.variable(name, &text[..=name_len], offset, out);
        Some(name_len + 1)
    }

    fn braced(&mut self, inner: &str, whole: &str, offset: usize, out: &mut String) -> Option<()> {
        if let Some(secret) = inner.strip_prefix("secret:") {
            if secret.is_empty() || variable_name_len(secret) != secret.len() {
                let message = format!("`{whole}` is not a valid secret reference");
                self.problems
                    .push((offset, whole.len(), Problem::SecretName(message)));
                return None;
            }
            self.secrets.push((offset, whole.len(), secret.to_owned()));
            out.push_str(whole);
            return Some(());
        }
        if let Some(param) = inner.strip_prefix("param:") {
            if param.is_empty() || variable_name_len(param) != param.len() {
                let message = format!("`{whole}` is not a valid parameter reference");
                self.problems
                    .push((offset, whole.len(), Problem::Syntax(message)));
                return None;
            }
            self.params.push((offset, whole.len(), param.to_owned()));
            out.push_str(whole);
            return Some(());
        }
        let name_len = variable_name_len(inner);
        let (name, modifier) = inner.split_at(name_len);
        if name.is_empty() {
            let message = format!("`{whole}` is not a valid variable reference");
            self.problems
                .push((offset, whole.len(), Problem::Syntax(message)));
            return None;
        }
        if modifier.is_empty() {
            self.variable(name, whole, offset, out);
            return Some(());
        }
        let value = self.variables.get(name);
        let (operator, argument) = split_operator(modifier).or_else(|| {
            let message = format!("`{whole}`: unknown modifier `{modifier}`; expected `:-`, `-`, `:?`, `?`, `:+` or `+`");
            self.problems.push((offset, whole.len(), Problem::Syntax(message)));
            None
        })?;
        let argument_offset = offset + 2 + name.len() + operator.len();
        let set = value.is_some();
        let set_and_non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
        let present = if operator.starts_with(':') {
            set_and_non_empty
        } else {
            set
        };
        match operator.trim_start_matches(':') {
            "-" if present => out.push_str(&value.unwrap_or_default()),
            "-" => out.push_str(&self.expand(argument, argument_offset)?),
            "?" if present => out.push_str(&value.unwrap_or_default()),
            "?" => {
                let message = argument.to_owned();
                self.problems.push((
                    offset,
                    whole.len(),
                    Problem::Required {
                        name: name.to_owned(),
                        message,
                    },
                ));
                return None;
            }
            _ if present => out.push_str(&self.expand(argument, argument_offset)?),
            _ => {}
        }
        Some(())
    }

    fn variable(&mut self, name: &str, whole: &str, offset: usize, out: &mut String) {
        if self.keep_instance_vars && INSTANCE_VARIABLES.contains(&name) {
            out.push_str(whole);
            return;
        }
        match self.variables.get(name) {
            Some(value) => out.push_str(&value),
            None => self.problems.push((
                offset,
                whole.len(),
                Problem::Unset {
                    name: name.to_owned(),
                },
            )),
        }
    }
}

/// Writes `text`, a value after interpolation, so that interpolating it again gives `text`:
/// every `$` becomes `$$` except those starting a `${secret:NAME}` or an instance variable
/// (`${PORT}`, `$PORT`), which interpolation leaves as they are.
pub(crate) fn escape_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        rest = &rest[dollar..];
        let symbolic = symbolic_reference_len(rest);
        if symbolic == 0 {
            out.push_str("$$");
            rest = &rest[1..];
        } else {
            out.push_str(&rest[..symbolic]);
            rest = &rest[symbolic..];
        }
    }
    out.push_str(rest);
    out
}

/// The length of the symbolic reference at the start of `text` (which starts with `$`), or 0.
fn symbolic_reference_len(text: &str) -> usize {
    let after = &text[1..];
    if let Some(braced) = after.strip_prefix('{') {
        let Some(close) = braced.find('}') else {
            return 0;
        };
        let inner = &braced[..close];
        let name = inner
            .strip_prefix("secret:")
            .or_else(|| inner.strip_prefix("param:"))
            .unwrap_or(inner);
        let secret =
            name.len() < inner.len() && !name.is_empty() && variable_name_len(name) == name.len();
        return if secret || INSTANCE_VARIABLES.contains(&inner) {
            close + 3
        } else {
            0
        };
    }
    let name_len = variable_name_len(after);
    if INSTANCE_VARIABLES.contains(&&after[..name_len]) {
        name_len + 1
    } else {
        0
    }
}

fn split_operator(modifier: &str) -> Option<(&str, &str)> {
    [":-", ":?", ":+", "-", "?", "+"]
        .into_iter()
        .find(|op| modifier.starts_with(op))
        .map(|op| (op, &modifier[op.len()..]))
}

/// Index of the `}` closing a `${`, allowing nested `${…}` in defaults.
fn matching_brace(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'{' if i > 0 && bytes[i - 1] == b'$' => depth += 1,
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn variable_name_len(text: &str) -> usize {
    let mut len = 0;
    for (i, c) in text.char_indices() {
        let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        len = i + c.len_utf8();
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(text: &str, keep: bool) -> (Option<String>, usize, Vec<String>) {
        let vars = |name: &str| match name {
            "HOME" => Some("/root".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let mut e = Expansion {
            variables: &vars,
            keep_instance_vars: keep,
            problems: Vec::new(),
            secrets: Vec::new(),
            params: Vec::new(),
        };
        let out = e.expand(text, 0);
        (
            out,
            e.problems.len(),
            e.secrets.into_iter().map(|s| s.2).collect(),
        )
    }

    #[test]
    fn compose_semantics() {
        let cases = [
            ("${HOME}/x", "/root/x"),
            ("$HOME/x", "/root/x"),
            ("$$HOME", "$HOME"),
            ("${NOPE:-dflt}", "dflt"),
            ("${EMPTY:-dflt}", "dflt"),
            ("${EMPTY-dflt}", ""),
            ("${NOPE-${HOME}}", "/root"),
            ("${HOME:+set}", "set"),
            ("${NOPE:+set}", ""),
            ("5$", "5$"),
        ];
        for (input, expected) in cases {
            assert_eq!(expand(input, false).0.as_deref(), Some(expected), "{input}");
        }
    }

    #[test]
    fn required_and_unset_variables_are_reported() {
        assert_eq!(expand("${NOPE:?needed}", false), (None, 1, vec![]));
        assert_eq!(expand("${EMPTY:?needed}", false).1, 1);
        assert_eq!(
            expand("${EMPTY?needed}", false),
            (Some(String::new()), 0, vec![])
        );
        assert_eq!(expand("${NOPE}", false), (Some(String::new()), 1, vec![]));
        assert_eq!(expand("${HOME", false).1, 1);
    }

    #[test]
    fn escaped_literals_expand_back_to_themselves() {
        for text in [
            "$HOME",
            "5$",
            "${secret:PG} and $$",
            "--port=${PORT}",
            "$PORT/$PORTS",
            "${secret:}",
            "${X",
        ] {
            let escaped = escape_literal(text);
            assert_eq!(
                expand(&escaped, true).0.as_deref(),
                Some(text),
                "{text} → {escaped}"
            );
        }
        assert_eq!(escape_literal("${secret:PG} $HOME"), "${secret:PG} $$HOME");
    }

    #[test]
    fn secrets_and_instance_variables_stay_symbolic() {
        let (out, problems, secrets) = expand("postgres://u:${secret:PG_PASS}@h/db", false);
        assert_eq!(out.as_deref(), Some("postgres://u:${secret:PG_PASS}@h/db"));
        assert_eq!((problems, secrets), (0, vec!["PG_PASS".to_owned()]));
        assert_eq!(
            expand("--port=${PORT}", true).0.as_deref(),
            Some("--port=${PORT}")
        );
        assert_eq!(expand("--port=${PORT}", false).1, 1);
    }

    #[test]
    fn runbook_parameters_stay_symbolic() {
        let (out, problems, _) = expand("${param:svc}-x", false);
        assert_eq!((out.as_deref(), problems), (Some("${param:svc}-x"), 0));
        assert_eq!(expand("${param:}", false).1, 1);
        assert_eq!(escape_literal("${param:svc} $HOME"), "${param:svc} $$HOME");
    }
}
