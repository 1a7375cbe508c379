//! The decoding toolkit: typed reads from [`Node`]s that report every problem and keep going.
//!
//! Unlike serde, which stops at the first error, each read here records a diagnostic and
//! returns `None`, so one run of `wharf validate` lists everything wrong in the file.

use std::str::FromStr;

use indexmap::IndexMap;

use crate::diagnostic::{Diagnostic, Span};
use crate::values::{Duration, DurationRule, ValueError};
use crate::yaml::{Node, NodeKind};

/// Collects diagnostics while a tree is decoded.
#[derive(Default)]
pub(crate) struct Decoder {
    pub diagnostics: Vec<Diagnostic>,
}

/// The entries of a mapping whose keys were checked against the known set.
pub(crate) struct Fields<'n> {
    pub span: Span,
    entries: Vec<(&'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    /// The value of `key`. An explicit empty value (`backup:`) is returned too, so the
    /// decoder reports what it lacks instead of silently treating the key as absent.
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| *v)
    }

    /// The value of `key`, or an error at the mapping saying it is missing.
    pub fn require(&self, decoder: &mut Decoder, key: &str, what: &str) -> Option<&'n Node> {
        let value = self.get(key);
        if value.is_none() {
            decoder.push(
                Diagnostic::error(self.span, format!("{what} is missing `{key}`"))
                    .with_label(format!("`{key}` is required here")),
            );
        }
        value
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The span of `key` itself, for errors about its whole value: a block mapping's own span
    /// starts at its first inner key, which would put the caret on the wrong line.
    pub fn key_span(&self, key: &str) -> Option<Span> {
        self.entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(k, _)| k.span)
    }

    /// `(key text, key node, value node)` for every entry, in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&'n str, &'n Node, &'n Node)> + '_ {
        self.entries
            .iter()
            .filter_map(|(k, v)| k.as_str().map(|name| (name, *k, *v)))
    }
}

impl Decoder {
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    pub fn expected(&mut self, node: &Node, expected: &str, what: &str) {
        self.push(
            Diagnostic::error(
                node.span,
                format!("{what}: expected {expected}, found {}", node.type_name()),
            )
            .with_label(format!("expected {expected}")),
        );
    }

    /// Reads a mapping, reporting unknown keys (with "did you mean") and non-string keys.
    /// `null` reads as an empty mapping. Keys starting with `x-` are extension fields
    /// (compose's convention for anchors) and are accepted anywhere.
    pub fn fields<'n>(&mut self, node: &'n Node, what: &str, known: &[&str]) -> Option<Fields<'n>> {
        let entries = match &node.kind {
            NodeKind::Map(entries) => entries,
            NodeKind::Null => {
                return Some(Fields {
                    span: node.span,
                    entries: Vec::new(),
                });
            }
            _ => {
                self.expected(node, "a mapping", what);
                return None;
            }
        };
        let mut kept = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let Some(name) = self.key_name(key, what) else {
                continue;
            };
            if known.is_empty() || known.contains(&name) {
                kept.push((key, value));
            } else if !name.starts_with("x-") {
                self.push(unknown_key(key.span, name, what, known));
            }
        }
        Some(Fields {
            span: node.span,
            entries: kept,
        })
    }

    /// A mapping whose keys are names chosen by the user (services, env variables).
    pub fn named_entries<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
    ) -> Vec<(String, &'n Node, &'n Node)> {
        let Some(fields) = self.fields(node, what, &[]) else {
            return Vec::new();
        };
        fields
            .iter()
            .map(|(name, key, value)| (name.to_owned(), key, value))
            .collect()
    }

    fn key_name<'n>(&mut self, key: &'n Node, what: &str) -> Option<&'n str> {
        match &key.kind {
            NodeKind::Scalar { value, .. } => Some(value),
            _ => {
                self.expected(key, "a plain key", what);
                None
            }
        }
    }

    /// Any scalar as text (`version: 1.4` is the string "1.4").
    pub fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.kind {
            NodeKind::Scalar { value, .. } => Some(value.clone()),
            _ => {
                self.expected(node, "a string", what);
                None
            }
        }
    }

    /// A non-empty string.
    pub fn name(&mut self, node: &Node, what: &str) -> Option<String> {
        let text = self.string(node, what)?;
        if text.trim().is_empty() {
            self.push(Diagnostic::error(
                node.span,
                format!("{what} must not be empty"),
            ));
            return None;
        }
        Some(text)
    }

    /// An integer within `min..=max`.
    pub fn integer<T: TryFrom<i64>>(
        &mut self,
        node: &Node,
        what: &str,
        min: i64,
        max: i64,
    ) -> Option<T> {
        let parsed = node
            .as_str()
            .and_then(|text| text.trim().parse::<i64>().ok());
        let Some(value) = parsed else {
            self.expected(node, "an integer", what);
            return None;
        };
        if !(min..=max).contains(&value) {
            self.push(
                Diagnostic::error(node.span, format!("{what}: {value} is out of range"))
                    .with_label(format!("expected {min} to {max}")),
            );
            return None;
        }
        T::try_from(value).ok()
    }

    pub fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.as_str() {
            Some("true" | "True" | "TRUE") => Some(true),
            Some("false" | "False" | "FALSE") => Some(false),
            _ => {
                self.expected(node, "`true` or `false`", what);
                None
            }
        }
    }

    /// A value with its own syntax: durations, percentages, cron schedules.
    pub fn parsed<T: FromStr<Err = ValueError>>(
        &mut self,
        node: &Node,
        what: &str,
        kind: &str,
    ) -> Option<T> {
        let text = self.string(node, what)?;
        match text.parse() {
            Ok(value) => Some(value),
            Err(ValueError(hint)) => {
                self.push(
                    Diagnostic::error(node.span, format!("{what}: `{text}` is not a valid {kind}"))
                        .with_label(format!("expected {kind}"))
                        .with_hint(hint),
                );
                None
            }
        }
    }

    /// A duration within the bounds of its kind of field (see [`DurationRule`]).
    pub fn duration(&mut self, node: &Node, what: &str, rule: DurationRule) -> Option<Duration> {
        let value: Duration = self.parsed(node, what, "duration")?;
        if let Some((problem, hint)) = rule.check(value) {
            self.push(
                Diagnostic::error(node.span, format!("{what} {problem}"))
                    .with_label("out of range")
                    .with_hint(hint),
            );
            return None;
        }
        Some(value)
    }

    /// One of a fixed set of words, with "did you mean" for near misses.
    pub fn choice<T: Copy>(&mut self, node: &Node, what: &str, options: &[(&str, T)]) -> Option<T> {
        let text = self.string(node, what)?;
        if let Some((_, value)) = options.iter().find(|(name, _)| *name == text) {
            return Some(*value);
        }
        let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
        self.push(
            Diagnostic::error(node.span, format!("{what}: unknown value `{text}`"))
                .with_label(format!("expected one of {}", list(&names)))
                .with_hint(
                    suggestion(&text, &names)
                        .unwrap_or_else(|| format!("expected one of {}", list(&names))),
                ),
        );
        None
    }

    /// A list of strings; a single scalar is accepted as a one-item list.
    pub fn string_list(&mut self, node: &Node, what: &str) -> Option<Vec<String>> {
        match &node.kind {
            NodeKind::Seq(items) => items.iter().map(|item| self.string(item, what)).collect(),
            NodeKind::Scalar { value, .. } => Some(vec![value.clone()]),
            NodeKind::Null => Some(Vec::new()),
            NodeKind::Map(_) => {
                self.expected(node, "a list of strings", what);
                None
            }
        }
    }

    /// A command: a list of arguments, or one string split like a POSIX shell would.
    pub fn command(&mut self, node: &Node, what: &str) -> Option<Vec<String>> {
        let words = match &node.kind {
            NodeKind::Scalar { value, .. } => match shlex::split(value) {
                Some(words) => words,
                None => {
                    self.push(
                        Diagnostic::error(node.span, format!("{what}: unbalanced quotes"))
                            .with_hint("close the quote, or write the command as a list"),
                    );
                    return None;
                }
            },
            _ => self.string_list(node, what)?,
        };
        if words.is_empty() {
            self.push(Diagnostic::error(
                node.span,
                format!("{what} must not be empty"),
            ));
            return None;
        }
        Some(words)
    }

    /// `KEY: value` pairs, or compose's list form `["KEY=value"]`.
    pub fn string_map(&mut self, node: &Node, what: &str) -> IndexMap<String, String> {
        let mut map = IndexMap::new();
        if let NodeKind::Seq(items) = &node.kind {
            for item in items {
                let Some(text) = self.string(item, what) else {
                    continue;
                };
                match text.split_once('=') {
                    Some((key, value)) => map.insert(key.to_owned(), value.to_owned()),
                    None => map.insert(text, String::new()),
                };
            }
            return map;
        }
        for (name, _key, value) in self.named_entries(node, what) {
            let text = match &value.kind {
                NodeKind::Null => Some(String::new()),
                _ => self.string(value, &format!("{what} `{name}`")),
            };
            if let Some(text) = text {
                map.insert(name, text);
            }
        }
        map
    }

    /// Items of a list, or an error when the node is something else.
    pub fn items<'n>(&mut self, node: &'n Node, what: &str) -> &'n [Node] {
        match &node.kind {
            NodeKind::Seq(items) => items,
            NodeKind::Null => &[],
            _ => {
                self.expected(node, "a list", what);
                &[]
            }
        }
    }
}

/// "unknown key" with the closest known key as a suggestion.
fn unknown_key(span: Span, name: &str, what: &str, known: &[&str]) -> Diagnostic {
    let hint = suggestion(name, known).unwrap_or_else(|| format!("{what} takes {}", list(known)));
    Diagnostic::error(span, format!("unknown key `{name}` in {what}"))
        .with_label("unknown key")
        .with_hint(hint)
}

/// Past this many candidates no suggestion is looked for: each is a string comparison, and a
/// manifest with thousands of names and as many typos would make validation quadratic.
const MAX_SUGGESTION_CANDIDATES: usize = 256;

/// "did you mean `x`?" when a candidate is close enough to be a typo.
pub(crate) fn suggestion(word: &str, candidates: &[&str]) -> Option<String> {
    if candidates.len() > MAX_SUGGESTION_CANDIDATES {
        return None;
    }
    candidates
        .iter()
        .map(|candidate| (strsim::jaro_winkler(word, candidate), *candidate))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| format!("did you mean `{candidate}`?"))
}

/// The names as a readable list, the first [`MAX_LISTED`] of them: a hint that listed
/// thousands of names would be unreadable, and building it for each of thousands of problems
/// would make validation quadratic.
pub(crate) fn list(names: &[&str]) -> String {
    let mut text = names
        .iter()
        .take(MAX_LISTED)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > MAX_LISTED {
        text.push_str(&format!(" and {} more", names.len() - MAX_LISTED));
    }
    text
}

const MAX_LISTED: usize = 20;
