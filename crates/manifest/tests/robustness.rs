//! Parsing and validation never panic: arbitrary text, and valid manifests damaged the way
//! hurried edits damage YAML (a lost `:`, a stray `-`, an unclosed `{`, a shifted line).

mod common;

use proptest::prelude::*;
use wharf_manifest::{EnvironmentChoice, check_all, diagnostic, load, render};

const BASES: &[&str] = &[
    include_str!("valid/full.yaml"),
    include_str!("broken/many_problems_in_overlays.yaml"),
];

/// Everything a `wharf validate` or `wharf render` run does with a manifest.
fn exercise(source: &str) {
    let diagnostics = check_all(source, &common::variables);
    assert!(
        !source.trim().is_empty() || !diagnostics.is_empty(),
        "an empty manifest is an error"
    );
    let lines: Vec<&str> = source.split('\n').collect();
    for d in &diagnostics {
        let span = d.span;
        assert!(span.start <= span.end && span.end <= source.len(), "{d:?}");
        assert!(
            source.is_char_boundary(span.start) && source.is_char_boundary(span.end),
            "{d:?}"
        );
        let line = lines
            .get(span.line.wrapping_sub(1))
            .unwrap_or_else(|| panic!("line of {d:?}"));
        assert!(
            (1..=line.chars().count() + 1).contains(&span.column),
            "{d:?}"
        );
    }
    let _ = diagnostic::render(&diagnostics, "wharf.yaml", source, false);
    let _ = diagnostic::render(&diagnostics, "wharf.yaml", source, true);
    for d in &diagnostics {
        let _ = serde_json::to_string(&d.record("wharf.yaml"));
    }
    let loaded = load(source, EnvironmentChoice::Named("prod"), &common::variables);
    let _ = diagnostic::render(&loaded.diagnostics, "wharf.yaml", source, false);
    if let Some(stack) = loaded.stack {
        let _ = check_all(&render(&stack), &common::variables);
    }
}

/// One edit of a manifest, positions taken modulo its length.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize),
    Insert(usize, char),
    /// Adds (or, when negative, removes) leading spaces on one line.
    Indent(usize, i8),
    /// Inserts a copy of one line before another.
    DuplicateLine(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let significant = prop::sample::select(vec![
        ':', '-', '{', '}', '[', ']', '"', '\'', '$', '\n', ' ', '\t', '#', '&', '*', '!', '|',
        '>', ',', '?', '%', '@', '`', '<', 'é', '\u{feff}', '\r',
    ]);
    prop_oneof![
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), significant).prop_map(|(at, c)| Edit::Insert(at, c)),
        (any::<usize>(), -4i8..=4).prop_map(|(line, by)| Edit::Indent(line, by)),
        (any::<usize>(), any::<usize>()).prop_map(|(from, to)| Edit::DuplicateLine(from, to)),
    ]
}

fn apply(source: &str, edit: &Edit) -> String {
    let mut chars: Vec<char> = source.chars().collect();
    match *edit {
        Edit::Delete(at) if !chars.is_empty() => {
            chars.remove(at % chars.len());
        }
        Edit::Delete(_) => {}
        Edit::Insert(at, c) => chars.insert(at % (chars.len() + 1), c),
        Edit::Indent(line, by) => {
            let mut lines: Vec<String> = source.split('\n').map(str::to_owned).collect();
            let index = line % lines.len();
            let text = &mut lines[index];
            if by >= 0 {
                text.insert_str(0, &" ".repeat(by.unsigned_abs().into()));
            } else {
                let spaces = text.len() - text.trim_start_matches(' ').len();
                text.drain(..spaces.min(by.unsigned_abs().into()));
            }
            return lines.join("\n");
        }
        Edit::DuplicateLine(from, to) => {
            let mut lines: Vec<&str> = source.split('\n').collect();
            let line = lines[from % lines.len()];
            let at = to % (lines.len() + 1);
            lines.insert(at, line);
            return lines.join("\n");
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(source in any::<String>()) {
        exercise(&source);
    }

    #[test]
    fn yaml_like_text_never_panics(source in "([a-z_]{1,8}|[:\\-{}\\[\\]\"'$&*!|>#,? \t\n]|\\$\\{[a-z:?+\\-]{0,6}\\}?|  |\n  - ){0,60}") {
        exercise(&source);
    }

    #[test]
    fn damaged_manifests_never_panic(base in prop::sample::select(BASES), edits in prop::collection::vec(edit(), 1..8)) {
        let source = edits.iter().fold(base.to_owned(), |text, e| apply(&text, e));
        exercise(&source);
    }
}

#[test]
fn deeply_nested_input_does_not_overflow_the_stack() {
    for open in ["[", "{a: ", "- "] {
        let source = format!("name: shop\nservices: {}", open.repeat(20_000));
        exercise(&source);
    }
}

#[test]
fn alias_bombs_are_rejected() {
    let mut source = String::from("name: shop\nx-0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..10 {
        let aliases = vec![format!("*a{}", level - 1); 10].join(", ");
        source.push_str(&format!("x-{level}: &a{level} [{aliases}]\n"));
    }
    source.push_str("services: {api: {command: [shop-api]}}\n");
    let diagnostics = check_all(&source, &common::variables);
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
    assert!(
        diagnostics[0]
            .message
            .starts_with("aliases expand to more than"),
        "{diagnostics:#?}"
    );
    exercise(&source);
}
