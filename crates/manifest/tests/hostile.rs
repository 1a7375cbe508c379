//! Hostile manifests (issue 20): values that validated yet crashed the control plane, and
//! inputs that made validation quadratic. Each test is named after what was found.

mod common;

use wharf_manifest::{
    Diagnostic, EnvironmentChoice, MAX_DIAGNOSTICS, MAX_MANIFEST_BYTES, check_all, load, text,
};

fn errors(source: &str) -> Vec<Diagnostic> {
    check_all(source, &common::variables)
        .into_iter()
        .filter(Diagnostic::is_error)
        .collect()
}

fn with_probe(probe: &str) -> String {
    format!(
        "name: shop\nservices:\n  api:\n    command: [shop-api]\n    probes:\n      ready: {probe}\n"
    )
}

// Before: `interval: 0s` was a warning only, and the control plane's probe task panicked
// ("'period' must be non-zero").
#[test]
fn zero_probe_interval_is_refused_by_validate() {
    let source = with_probe("{tcp: {port: 80}, interval: 0s}");
    let errors = errors(&source);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(
        errors[0].message,
        "`services.api.probes.ready.interval` must be more than zero"
    );
    assert_eq!((errors[0].span.line, errors[0].span.column), (6, 42));
    assert!(
        load(&source, EnvironmentChoice::Default, &common::variables)
            .stack
            .is_none()
    );
}

#[test]
fn zero_probe_timeout_is_refused_by_validate() {
    let errors = errors(&with_probe("{tcp: {port: 80}, timeout: 0ms}"));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0]
            .message
            .ends_with("timeout` must be more than zero"),
        "{errors:#?}"
    );
}

// Before: `pause: 18446744073709551s` (about u64::MAX milliseconds) was accepted.
#[test]
fn overflowing_pause_is_refused_by_validate() {
    for pause in [
        "18446744073709551s",
        "1844674407370955161s1844674407370955161s",
        "31d",
    ] {
        let source = format!(
            "name: shop\nservices:\n  api:\n    command: [shop-api]\n    rollout:\n      strategy: canary\n      steps: [{{weight: 50, pause: {pause}}}, {{weight: 100}}]\n"
        );
        let errors = errors(&source);
        assert_eq!(errors.len(), 1, "{pause}: {errors:#?}");
        assert_eq!(errors[0].span.line, 7, "{pause}");
        assert!(errors[0].message.contains("pause"), "{errors:#?}");
    }
}

#[test]
fn durations_within_bounds_are_accepted() {
    let source = with_probe("{tcp: {port: 80}, interval: 30d, timeout: 1ms, start_period: 0s}");
    assert_eq!(errors(&source), vec![]);
}

// Before: 8k unknown keys took 2 s and 50k took 101 s, every one rendered against the whole
// file. Now the report stops at MAX_DIAGNOSTICS and counts the rest (the timing itself is
// scripts/bench/validate.sh's).
#[test]
fn diagnostics_are_capped_with_a_count_of_the_rest() {
    let mut source = String::from("name: shop\nservices: {api: {command: [x]}}\n");
    for i in 0..10_000 {
        source.push_str(&format!("unknown_{i}: 1\n"));
    }
    let diagnostics = check_all(&source, &common::variables);
    assert_eq!(diagnostics.len(), MAX_DIAGNOSTICS + 1);
    let last = diagnostics.last().unwrap();
    assert!(last.is_error());
    assert_eq!(
        last.message,
        "and 9900 more problem(s) not shown (9900 error(s), 0 warning(s))"
    );
    // It points at the first problem not shown: key 100, on line 103.
    assert_eq!((last.span.line, last.span.column), (103, 1));
    let loaded = load(&source, EnvironmentChoice::Default, &common::variables);
    assert_eq!(loaded.diagnostics.len(), MAX_DIAGNOSTICS + 1);
    // The summary line counts every problem, shown or not.
    assert_eq!(wharf_manifest::diagnostic::count(&diagnostics), (10_000, 0));
    let rendered = wharf_manifest::diagnostic::render(&diagnostics, "wharf.yaml", &source, false);
    assert!(rendered.contains("wharf.yaml:103:1"), "{rendered}");
}

#[test]
fn a_duplicate_key_among_many_is_found_with_its_first_line() {
    let mut source = String::from("name: shop\nservices: {api: {command: [x]}}\n");
    for i in 0..20_000 {
        source.push_str(&format!("x-{i}: 1\n"));
    }
    source.push_str("x-7: 2\n");
    let errors = errors(&source);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].message, "duplicate key `x-7`");
    assert_eq!(errors[0].span.line, 20_003);
    assert_eq!(
        errors[0].hint.as_deref(),
        Some("`x-7` is already set on line 10")
    );
}

#[test]
fn columns_on_a_long_flow_line_are_counted_in_characters() {
    let mut source = String::from("name: shop\nservices: {api: {command: [x]}}\nx-a: [");
    for i in 0..5_000 {
        source.push_str(&format!("&a{i} é{i}, "));
    }
    source.push_str("*nope]\n");
    let errors = errors(&source);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let line = source.lines().nth(2).unwrap();
    let at = line.find("*nope").unwrap();
    assert_eq!(errors[0].span.line, 3);
    assert_eq!(errors[0].span.column, line[..at].chars().count() + 1);
}

#[test]
fn a_manifest_over_the_size_limit_is_refused_at_once() {
    let mut source = String::from("name: shop\nservices: {api: {command: [x]}}\n");
    source.push_str(&"# padding\n".repeat(MAX_MANIFEST_BYTES / 10 + 1));
    for diagnostics in [
        check_all(&source, &common::variables),
        load(&source, EnvironmentChoice::Default, &common::variables).diagnostics,
    ] {
        assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
        assert!(
            diagnostics[0].message.contains("at most 8 MiB"),
            "{diagnostics:#?}"
        );
        assert_eq!(
            (diagnostics[0].span.line, diagnostics[0].span.column),
            (1, 1)
        );
    }
    assert!(text(source.as_bytes()).is_err());
}

// Before: a manifest with a byte that is not UTF-8 got an error without file:line:column.
#[test]
fn non_utf8_manifest_gets_line_and_column() {
    let bytes = b"name: shop\nservices:\n  api:\n    command: [caf\xe9]\n";
    let error = text(bytes).unwrap_err();
    assert_eq!((error.span.line, error.span.column), (4, 18));
    assert_eq!(error.span.start, 45);
    assert!(error.message.contains("not UTF-8"), "{error:?}");
    assert!(error.message.contains("0xe9"), "{error:?}");
    assert_eq!(text(b"name: shop\n").unwrap(), "name: shop\n");
}

#[test]
fn more_environments_than_the_limit_are_refused() {
    let mut source = String::from("name: shop\nservices: {api: {command: [x]}}\nenvironments:\n");
    for i in 0..100 {
        source.push_str(&format!("  e{i}: {{}}\n"));
    }
    let errors = errors(&source);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].message, "more than 64 environments");
    assert_eq!(errors[0].span.line, 4 + 64);
}
