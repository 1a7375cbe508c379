//! A bounded fuzz run of the manifest parser as `scripts/test` runs it (issue 20): 2,000 cases
//! each of arbitrary bytes, YAML built to be hostile (anchors, aliases, merge keys, flow
//! collections, nesting, long lines) and damaged copies of the full manifest. No case may
//! panic or take over 1 s — a bound that catches hangs and quadratic paths, not a performance
//! test (`scripts/bench/validate.sh` has the figures).

mod common;

use std::time::{Duration, Instant};

use proptest::prelude::*;
use wharf_manifest::{EnvironmentChoice, MAX_DIAGNOSTICS, check_all, load, render, text};

const CASE_LIMIT: Duration = Duration::from_secs(1);
const FULL: &str = include_str!("valid/full.yaml");

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2_000,
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    }
}

/// What `wharf validate`, `render` and `up` do with a file's bytes.
fn exercise(bytes: &[u8]) {
    let started = Instant::now();
    let source = match text(bytes) {
        Ok(source) => source,
        Err(diagnostic) => {
            assert!(diagnostic.span.line >= 1 && diagnostic.span.column >= 1);
            return;
        }
    };
    let diagnostics = check_all(source, &common::variables);
    assert!(diagnostics.len() <= MAX_DIAGNOSTICS + 1);
    for d in &diagnostics {
        assert!(
            d.span.start <= d.span.end && d.span.end <= source.len(),
            "{d:?}"
        );
        assert!(d.span.line >= 1 && d.span.column >= 1, "{d:?}");
    }
    let _ = wharf_manifest::diagnostic::render(&diagnostics, "wharf.yaml", source, false);
    let loaded = load(source, EnvironmentChoice::Default, &common::variables);
    if let Some(stack) = loaded.stack {
        // What validates renders to a manifest that validates again.
        let rendered = render(&stack);
        let again = load(&rendered, EnvironmentChoice::Base, &common::variables);
        assert!(!again.has_errors(), "{rendered}\n{:#?}", again.diagnostics);
    }
    assert!(
        started.elapsed() < CASE_LIMIT,
        "one case took {:?}",
        started.elapsed()
    );
}

/// One piece of hostile YAML.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        (0..50u32).prop_map(|i| format!("&a{i} ")),
        (0..50u32).prop_map(|i| format!("*a{i}")),
        Just("<<: ".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(", ".to_owned()),
        Just(": ".to_owned()),
        Just("\n".to_owned()),
        Just("\n  ".to_owned()),
        Just("\n- ".to_owned()),
        Just("? ".to_owned()),
        Just("!!str ".to_owned()),
        Just("--- ".to_owned()),
        Just("\"é\\u00e9\" ".to_owned()),
        Just("services".to_owned()),
        Just("interval: 0s".to_owned()),
        Just("pause: 18446744073709551s".to_owned()),
        "[a-z_]{1,8}",
        "[0-9]{1,20}(ms|s|m|h|d)",
    ]
}

fn hostile_yaml() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(piece(), 0..60),
        0..200usize,
        prop::sample::select(vec!["x", "k: v, ", "&z z, ", "*a1, "]),
    )
        .prop_map(|(pieces, repeat, unit)| {
            // A long run of one unit on one line: the shape that once made columns quadratic.
            let mut text = String::from("name: shop\nservices: {api: {command: [x]}}\nx-run: [");
            text.push_str(&unit.repeat(repeat));
            text.push_str("]\n");
            text.push_str(&pieces.concat());
            text.into_bytes()
        })
}

/// The full manifest with bytes replaced, inserted or removed.
fn damaged_full() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((any::<usize>(), any::<u8>(), 0..3u8), 1..8).prop_map(|edits| {
        let mut bytes = FULL.as_bytes().to_vec();
        for (at, byte, how) in edits {
            let at = at % (bytes.len() + 1);
            match how {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => {}
            }
        }
        bytes
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic_or_hang(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        exercise(&bytes);
    }

    #[test]
    fn hostile_yaml_never_panics_or_hangs(bytes in hostile_yaml()) {
        exercise(&bytes);
    }

    #[test]
    fn damaged_full_manifests_never_panic_or_hang(bytes in damaged_full()) {
        exercise(&bytes);
    }
}
