//! The broken-manifest corpus: every file under `tests/broken/` has a snapshot of the
//! diagnostics `wharf validate` prints for it, and every diagnostic points inside its file.
//!
//! A file whose first line is `# env: NAME` is loaded for that environment (as
//! `wharf validate --env NAME` would); every other file is checked as a whole with `check_all`.

mod common;

use std::path::Path;

use wharf_manifest::{Diagnostic, EnvironmentChoice, check_all, diagnostic, load};

/// The diagnostics for one corpus file, as `wharf validate` would compute them.
fn validate(source: &str) -> Vec<Diagnostic> {
    let environment = source
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("# env: "))
        .map(str::trim);
    match environment {
        Some(name) => load(source, EnvironmentChoice::Named(name), &common::variables).diagnostics,
        None => check_all(source, &common::variables),
    }
}

fn file_name(path: &Path) -> String {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    format!("broken/{name}")
}

#[test]
fn diagnostics() {
    insta::glob!("broken/*.yaml", |path| {
        let source = std::fs::read_to_string(path).expect("corpus file is readable");
        let rendered = diagnostic::render(&validate(&source), &file_name(path), &source, false);
        insta::assert_snapshot!(rendered);
    });
}

#[test]
fn every_diagnostic_points_inside_its_file() {
    insta::glob!("broken/*.yaml", |path| {
        let source = std::fs::read_to_string(path).expect("corpus file is readable");
        let name = file_name(path);
        let found = validate(&source);
        assert!(
            found.iter().any(Diagnostic::is_error),
            "{name}: no error reported"
        );
        let lines: Vec<&str> = source.split('\n').collect();
        // A trailing newline does not start another line.
        let line_count = if source.ends_with('\n') {
            lines.len() - 1
        } else {
            lines.len()
        }
        .max(1);
        for d in &found {
            let (line, column) = (d.span.line, d.span.column);
            assert!(
                (1..=line_count).contains(&line),
                "{name}: line {line} of {line_count}: {d:?}"
            );
            let length = lines[line - 1].chars().count();
            assert!(
                (1..=length + 1).contains(&column),
                "{name}:{line}: column {column} past {length}: {d:?}"
            );
            assert!(
                d.span.start <= d.span.end
                    && d.span.end <= source.len()
                    && source.is_char_boundary(d.span.start)
                    && source.is_char_boundary(d.span.end),
                "{name}: span {d:?}"
            );
        }
    });
}
