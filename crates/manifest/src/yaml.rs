//! A YAML document as a tree of nodes that remember where they came from.
//!
//! Every diagnostic wharf prints names file:line:column, so the tree keeps a [`Span`] on every
//! node, key and scalar — something serde-based YAML loaders drop after the first syntax error.
//! Anchors, aliases and merge keys (`<<`) are resolved here so the decoder sees plain trees.

use std::collections::{HashMap, HashSet};

use saphyr_parser::{Event, Parser, ScalarStyle, Span as ParserSpan};

use crate::diagnostic::{Diagnostic, Span};

/// One node of a parsed YAML document.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub span: Span,
    /// On a key a merge key (`<<: *template`) brought into a mapping: the span of that `<<`,
    /// the place in the merging mapping where the key takes effect (its own `span` stays in
    /// the template). A compose import warns there, once per service that uses the template.
    pub merged_at: Option<Span>,
}

/// What a node holds. Scalars keep their text and whether they were quoted, so the decoder can
/// tell `port: 8080` (a number) from `port: "8080"` (a string someone quoted on purpose).
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Null,
    Scalar { value: String, quoted: bool },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    fn new(kind: NodeKind, span: Span) -> Self {
        Node {
            kind,
            span,
            merged_at: None,
        }
    }

    /// A short human name for the node's type, used in "expected X, found Y" messages.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Null => "nothing",
            NodeKind::Scalar { value, quoted } => scalar_type_name(value, *quoted),
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }

    /// The scalar text, if this is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// Looks a key up in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

fn scalar_type_name(value: &str, quoted: bool) -> &'static str {
    if quoted {
        return "a string";
    }
    match value {
        "true" | "false" | "True" | "False" | "TRUE" | "FALSE" => "a boolean",
        "~" | "null" | "Null" | "NULL" | "" => "nothing",
        _ if value.parse::<i64>().is_ok() => "an integer",
        _ if value.parse::<f64>().is_ok() => "a number",
        _ => "a string",
    }
}

/// Parses `source` into one document. Syntax errors, duplicate keys, unknown aliases and
/// multiple documents come back as diagnostics; the tree is `None` only when nothing usable
/// could be read.
pub fn parse(source: &str) -> (Option<Node>, Vec<Diagnostic>) {
    let mut builder = Builder::new(source);
    for event in Parser::new_from_str(source) {
        match event {
            Ok((event, span)) => builder.event(event, span),
            Err(err) => {
                let at = builder.positions.span_at_char(err.marker().index());
                builder.diagnostics.push(
                    Diagnostic::error(at, format!("invalid YAML: {}", err.info()))
                        .with_label("the YAML parser stopped here"),
                );
                return (None, builder.diagnostics);
            }
        }
    }
    let root = builder.documents.into_iter().next();
    (root, builder.diagnostics)
}

/// Aliases copy their anchor's nodes, so nested aliases grow exponentially ("billion laughs");
/// past this many copied nodes the rest of the aliases read as null, with one error.
const MAX_ALIAS_NODES: usize = 100_000;

fn node_count(node: &Node) -> usize {
    match &node.kind {
        NodeKind::Null | NodeKind::Scalar { .. } => 1,
        NodeKind::Seq(items) => 1 + items.iter().map(node_count).sum::<usize>(),
        NodeKind::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| node_count(k) + node_count(v))
                .sum::<usize>()
        }
    }
}

/// Builds the node tree from the parser's event stream.
struct Builder {
    positions: Positions,
    /// Containers being built, innermost last.
    stack: Vec<Partial>,
    /// Anchored nodes with their node counts.
    anchors: HashMap<usize, (Node, usize)>,
    /// Nodes copied by aliases so far, bounded by [`MAX_ALIAS_NODES`].
    alias_nodes: usize,
    documents: Vec<Node>,
    diagnostics: Vec<Diagnostic>,
}

struct Partial {
    node: Node,
    anchor: usize,
    /// For mappings: a key waiting for its value.
    pending_key: Option<Node>,
    /// For mappings: the line of every plain key so far, so a duplicate is found by one hash
    /// lookup (a scan of the entries would make a mapping of n keys cost n²).
    keys: HashMap<String, usize>,
}

impl Builder {
    fn new(source: &str) -> Self {
        Builder {
            positions: Positions::new(source),
            stack: Vec::new(),
            anchors: HashMap::new(),
            alias_nodes: 0,
            documents: Vec::new(),
            diagnostics: Vec::new(),
        }
    }

    fn event(&mut self, event: Event<'_>, span: ParserSpan) {
        let span = self.positions.span(span);
        match event {
            Event::Scalar(value, style, anchor, _tag) => {
                let quoted = !matches!(style, ScalarStyle::Plain);
                let kind = if !quoted && matches!(&*value, "~" | "null" | "Null" | "NULL" | "") {
                    NodeKind::Null
                } else {
                    NodeKind::Scalar {
                        value: value.into_owned(),
                        quoted,
                    }
                };
                self.finish(Node::new(kind, span), anchor);
            }
            Event::SequenceStart(anchor, _) => self.open(NodeKind::Seq(Vec::new()), span, anchor),
            Event::MappingStart(anchor, _) => self.open(NodeKind::Map(Vec::new()), span, anchor),
            Event::SequenceEnd | Event::MappingEnd => self.close(span),
            Event::Alias(id) => match self.anchors.get(&id) {
                Some((_, count)) if self.alias_nodes + count > MAX_ALIAS_NODES => {
                    if self.alias_nodes <= MAX_ALIAS_NODES {
                        let message =
                            format!("aliases expand to more than {MAX_ALIAS_NODES} nodes");
                        let hint = "an anchor is copied at every alias; nest fewer aliases";
                        self.diagnostics
                            .push(Diagnostic::error(span, message).with_hint(hint));
                    }
                    self.alias_nodes = MAX_ALIAS_NODES + 1;
                    self.finish(Node::new(NodeKind::Null, span), 0);
                }
                Some((node, count)) => {
                    self.alias_nodes += count;
                    let node = Node::new(node.kind.clone(), span);
                    self.finish(node, 0);
                }
                None => {
                    let diagnostic = Diagnostic::error(span, "alias to an unknown anchor");
                    self.diagnostics.push(diagnostic);
                    self.finish(Node::new(NodeKind::Null, span), 0);
                }
            },
            Event::DocumentStart(_) if !self.documents.is_empty() => {
                let message = "a manifest holds one YAML document; found a second one";
                self.diagnostics
                    .push(Diagnostic::error(span, message).with_hint("remove the `---` separator"));
            }
            _ => {}
        }
    }

    fn open(&mut self, kind: NodeKind, span: Span, anchor: usize) {
        self.stack.push(Partial {
            node: Node::new(kind, span),
            anchor,
            pending_key: None,
            keys: HashMap::new(),
        });
    }

    fn close(&mut self, end: Span) {
        let Some(mut partial) = self.stack.pop() else {
            return;
        };
        partial.node.span = partial.node.span.to(end);
        if let NodeKind::Map(entries) = &mut partial.node.kind {
            apply_merge_keys(entries, &mut self.diagnostics);
        }
        self.finish(partial.node, partial.anchor);
    }

    /// Places a completed node into its parent (or makes it the document root).
    fn finish(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors
                .insert(anchor, (node.clone(), node_count(&node)));
        }
        let Some(parent) = self.stack.last_mut() else {
            if self.documents.is_empty() {
                self.documents.push(node);
            }
            return;
        };
        match &mut parent.node.kind {
            NodeKind::Seq(items) => items.push(node),
            NodeKind::Map(entries) => match parent.pending_key.take() {
                None => parent.pending_key = Some(node),
                Some(key) => {
                    let name = key.as_str().filter(|_| !is_merge_key(&key));
                    let first = name.and_then(|name| parent.keys.get(name).copied());
                    if let (Some(name), Some(line)) = (name, first) {
                        self.diagnostics.push(
                            Diagnostic::error(key.span, format!("duplicate key `{name}`"))
                                .with_hint(format!("`{name}` is already set on line {line}")),
                        );
                    } else {
                        if let Some(name) = name {
                            parent.keys.insert(name.to_owned(), key.span.line);
                        }
                        entries.push((key, node));
                    }
                }
            },
            NodeKind::Null | NodeKind::Scalar { .. } => {}
        }
    }
}

/// Resolves YAML merge keys (`<<: *defaults` or `<<: [*a, *b]`): keys from the merged mappings
/// are added unless the mapping sets them itself, as docker compose files rely on.
fn apply_merge_keys(entries: &mut Vec<(Node, Node)>, diagnostics: &mut Vec<Diagnostic>) {
    let Some(position) = entries.iter().position(|(k, _)| is_merge_key(k)) else {
        return;
    };
    let (merge_key, merged) = entries.remove(position);
    let sources = match merged.kind {
        NodeKind::Map(_) => vec![merged],
        NodeKind::Seq(items) => items,
        _ => {
            diagnostics.push(Diagnostic::error(
                merged.span,
                "a merge key `<<` takes a mapping or a list of mappings",
            ));
            return;
        }
    };
    // The mapping's own keys win, then earlier merged mappings': a set keeps this linear.
    let mut present: HashSet<String> = entries
        .iter()
        .filter_map(|(k, _)| k.as_str().map(str::to_owned))
        .collect();
    for source in sources {
        let NodeKind::Map(source_entries) = source.kind else {
            diagnostics.push(Diagnostic::error(
                source.span,
                "only mappings can be merged with `<<`",
            ));
            continue;
        };
        for (mut key, value) in source_entries {
            let Some(name) = key.as_str() else {
                continue;
            };
            if present.insert(name.to_owned()) {
                // The outermost merge wins: a template merged into another template and then
                // into a service takes effect at the service's `<<`.
                key.merged_at = Some(merge_key.span);
                entries.push((key, value));
            }
        }
    }
}

/// Converts the parser's character positions into byte offsets, 1-based lines and columns.
pub(crate) struct Positions {
    /// Byte offset of every character, plus one past the end.
    char_to_byte: Vec<usize>,
    line_starts: Vec<usize>,
    /// The character index of every line's start, so a column is a subtraction rather than a
    /// count over the line (which made a one-line flow mapping of n nodes cost n²).
    line_start_chars: Vec<usize>,
}

impl Positions {
    pub(crate) fn new(source: &str) -> Self {
        let mut char_to_byte: Vec<usize> = source.char_indices().map(|(i, _)| i).collect();
        char_to_byte.push(source.len());
        let line_starts: Vec<usize> = std::iter::once(0)
            .chain(source.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let line_start_chars = line_starts
            .iter()
            .map(|&byte| char_to_byte.partition_point(|&b| b < byte))
            .collect();
        Positions {
            char_to_byte,
            line_starts,
            line_start_chars,
        }
    }

    fn byte(&self, char_index: usize) -> usize {
        let last = self.char_to_byte.len() - 1;
        self.char_to_byte[char_index.min(last)]
    }

    pub(crate) fn span_at_char(&self, char_index: usize) -> Span {
        let start = self.byte(char_index);
        self.span_bytes(start, start)
    }

    fn span(&self, span: ParserSpan) -> Span {
        let start = self.byte(span.start.index());
        let end = self.byte(span.end.index()).max(start);
        self.span_bytes(start, end)
    }

    /// A span over bytes `start..end`, with the line and column of `start`.
    pub(crate) fn span_bytes(&self, start: usize, end: usize) -> Span {
        let line_index = self.line_starts.partition_point(|&s| s <= start) - 1;
        // `start` is a character boundary (every caller derives it from one), so its
        // character index is found by a binary search of the byte offsets.
        let char_index = self.char_to_byte.partition_point(|&b| b < start);
        let column = char_index - self.line_start_chars[line_index] + 1;
        Span {
            start,
            end,
            line: line_index + 1,
            column,
        }
    }
}

/// Writes a JSON-like value as block-style YAML that wharf (and any YAML 1.2 parser) reads back
/// to the same value. Strings are quoted whenever plain style would change their meaning.
pub fn emit(value: &serde_json::Value) -> String {
    let mut out = String::new();
    match value {
        serde_json::Value::Object(map) if !map.is_empty() => emit_map(map, 0, &mut out),
        serde_json::Value::Array(items) if !items.is_empty() => emit_seq(items, 0, &mut out),
        other => {
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
    out
}

fn emit_map(map: &serde_json::Map<String, serde_json::Value>, indent: usize, out: &mut String) {
    for (key, value) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&quote_if_needed(key));
        out.push(':');
        emit_child(value, indent, out);
    }
}

fn emit_seq(items: &[serde_json::Value], indent: usize, out: &mut String) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match item {
            serde_json::Value::Object(map) if !map.is_empty() => {
                // The first key shares the dash's line; the rest align under it.
                let mut nested = String::new();
                emit_map(map, indent + 2, &mut nested);
                out.push(' ');
                out.push_str(&nested[indent + 2..]);
            }
            other => emit_child(other, indent, out),
        }
    }
}

fn emit_child(value: &serde_json::Value, indent: usize, out: &mut String) {
    match value {
        serde_json::Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            emit_map(map, indent + 2, out);
        }
        serde_json::Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            emit_seq(items, indent + 2, out);
        }
        other => {
            out.push(' ');
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
}

fn inline(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "null".to_owned(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => quote_if_needed(s),
        serde_json::Value::Array(_) => "[]".to_owned(),
        serde_json::Value::Object(_) => "{}".to_owned(),
    }
}

/// Plain style when the text reads back as the same string, double quotes otherwise.
pub fn quote_if_needed(text: &str) -> String {
    if needs_quotes(text) {
        serde_json::to_string(text).unwrap_or_else(|_| format!("{text:?}"))
    } else {
        text.to_owned()
    }
}

fn needs_quotes(text: &str) -> bool {
    const INDICATORS: &[char] = &[
        '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%', '@',
        '`',
    ];
    let Some(first) = text.chars().next() else {
        return true;
    };
    scalar_type_name(text, false) != "a string"
        || text.parse::<f64>().is_ok()
        || INDICATORS.contains(&first)
        || text.contains(": ")
        || text.contains(" #")
        || text.ends_with(':')
        || text.starts_with(' ')
        || text.ends_with(' ')
        || text.chars().any(|c| c.is_control())
        || matches!(
            text,
            "yes"
                | "no"
                | "on"
                | "off"
                | "y"
                | "n"
                | "Yes"
                | "No"
                | "On"
                | "Off"
                | "YES"
                | "NO"
                | "<<"
        )
        || looks_like_yaml_number(text)
}

/// A plain `<<` key; a quoted `"<<"` is an ordinary key.
fn is_merge_key(key: &Node) -> bool {
    matches!(&key.kind, NodeKind::Scalar { value, quoted: false } if value == "<<")
}

/// Numbers YAML 1.2's core schema reads that Rust's parsers do not: hex, octal, `.inf`, `.nan`.
fn looks_like_yaml_number(text: &str) -> bool {
    let unsigned = text.trim_start_matches(['+', '-']);
    let lower = unsigned.to_ascii_lowercase();
    lower.starts_with("0x") || lower.starts_with("0o") || lower == ".inf" || lower == ".nan"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_point_at_keys_and_values() {
        let (root, diagnostics) = parse("name: shop\nservices:\n  api:\n    port: 80\n");
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let root = root.unwrap();
        let port = root
            .get("services")
            .unwrap()
            .get("api")
            .unwrap()
            .get("port")
            .unwrap();
        assert_eq!((port.span.line, port.span.column), (4, 11));
        assert_eq!(port.as_str(), Some("80"));
    }

    #[test]
    fn duplicate_keys_are_reported_with_the_first_line() {
        let (_, diagnostics) = parse("a: 1\nb: 2\na: 3\n");
        assert_eq!(diagnostics.len(), 1);
        assert_eq!(diagnostics[0].span.line, 3);
        assert!(diagnostics[0].hint.as_deref().unwrap().contains("line 1"));
    }

    #[test]
    fn a_quoted_merge_key_is_an_ordinary_key() {
        let (root, diagnostics) = parse("a:\n  \"<<\": 1\n");
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        assert_eq!(
            root.unwrap().get("a").unwrap().get("<<").unwrap().as_str(),
            Some("1")
        );
    }

    #[test]
    fn merge_keys_fill_in_missing_keys_only() {
        let text = "base: &b {x: 1, y: 2}\nchild:\n  <<: *b\n  y: 3\n";
        let (root, diagnostics) = parse(text);
        assert!(diagnostics.is_empty());
        let child = root.unwrap().get("child").cloned().unwrap();
        assert_eq!(child.get("x").unwrap().as_str(), Some("1"));
        assert_eq!(child.get("y").unwrap().as_str(), Some("3"));
    }

    #[test]
    fn merged_keys_remember_the_merge_that_brought_them() {
        let text = "a: &a {x: 1}\nb: &b\n  <<: *a\n  y: 2\nc:\n  <<: *b\n  z: 3\n";
        let (root, diagnostics) = parse(text);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let c = root.unwrap().get("c").cloned().unwrap();
        let lines: Vec<(Option<&str>, usize, Option<usize>)> = map_keys(&c)
            .map(|k| (k.as_str(), k.span.line, k.merged_at.map(|s| s.line)))
            .collect();
        assert_eq!(
            lines,
            [
                (Some("z"), 7, None),
                (Some("y"), 4, Some(6)),
                (Some("x"), 1, Some(6)),
            ],
            "each key keeps its own line and points at the outermost `<<`"
        );
    }

    fn map_keys(node: &Node) -> impl Iterator<Item = &Node> {
        match &node.kind {
            NodeKind::Map(entries) => entries.iter().map(|(k, _)| k),
            _ => unreachable!("a mapping"),
        }
    }

    #[test]
    fn emitted_yaml_reads_back_as_the_same_strings() {
        let value = serde_json::json!({
            "name": "shop",
            "list": ["true", "8080", "- dash", "a: b", "", "plain text", "1.5", "null", "yes", "0x1F", "0o17", ".inf", "<<"],
            "nested": [{"a": 1, "b": {"c": "d"}}, []],
            "empty": {}
        });
        let text = emit(&value);
        let (root, diagnostics) = parse(&text);
        assert!(diagnostics.is_empty(), "{text}\n{diagnostics:?}");
        let root = root.unwrap();
        let list = match &root.get("list").unwrap().kind {
            NodeKind::Seq(items) => items.clone(),
            other => panic!("{other:?}"),
        };
        let strings: Vec<_> = list.iter().map(|n| (n.as_str(), n.type_name())).collect();
        assert!(strings.iter().all(|(_, t)| *t == "a string"), "{text}");
        assert_eq!(strings[3].0, Some("a: b"));
        let c = root.get("nested").map(|n| match &n.kind {
            NodeKind::Seq(items) => items[0]
                .get("b")
                .unwrap()
                .get("c")
                .unwrap()
                .as_str()
                .map(str::to_owned),
            _ => None,
        });
        assert_eq!(c.flatten().as_deref(), Some("d"));
    }
}
