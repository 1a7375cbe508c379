//! The corpus: files in the shapes the tools really emit (Semgrep, Gitleaks, Trivy, CodeQL
//! SARIF; Surefire, pytest xunit1/xunit2, jest-junit, PHPUnit-style nested suites; k6's
//! handleSummary and legacy `--summary-export`; coverage.py's Cobertura and LCOV), each read
//! and judged against the conditions a user would write, with the verdict the tool's output
//! deserves.

use std::path::Path;
use std::time::Duration;

use wharf_gates::{
    Condition, CoverageCondition, Format, GateError, Input, JunitCondition, K6Condition, K6Shape,
    Level, NamedCondition, Report, SarifCondition, Verdict, evaluate, parse,
};

fn read(rel: &str) -> (Format, Report) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(rel);
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse(rel, file).unwrap_or_else(|e| panic!("{e}"))
}

fn input(rel: &str) -> Input {
    Input {
        path: rel.to_owned(),
        report: read(rel).1,
    }
}

/// Judges one condition over the given corpus files; answers the verdict and its reason.
fn judge(condition: Condition, files: &[&str]) -> (Verdict, String, String) {
    let inputs: Vec<Input> = files.iter().map(|f| input(f)).collect();
    let named = NamedCondition {
        name: "c".into(),
        condition,
    };
    let v = evaluate(&[named], &inputs);
    let c = &v.conditions[0];
    assert_eq!(c.verdict, v.verdict);
    (c.verdict, c.measured.clone(), c.reason.clone())
}

fn sarif(max_level: Option<Level>, max_sev: Option<f64>, max_results: Option<u64>) -> Condition {
    Condition::Sarif(SarifCondition {
        max_level,
        max_security_severity: max_sev,
        max_results,
    })
}

fn sarif_summary(rel: &str) -> wharf_gates::SarifSummary {
    match read(rel) {
        (Format::Sarif, Report::Sarif(s)) => s,
        other => panic!("{rel}: {other:?}"),
    }
}

#[test]
fn semgrep_without_any_level_is_warning_and_fails_max_level_note() {
    let s = sarif_summary("sarif/semgrep.sarif");
    assert_eq!(s.findings, 2);
    assert_eq!(s.max_level, Some(Level::Warning));
    assert_eq!(s.tools, ["Semgrep OSS"]);
    let (v, measured, reason) = judge(
        sarif(Some(Level::Note), None, None),
        &["sarif/semgrep.sarif"],
    );
    assert_eq!(v, Verdict::Fail, "{reason}");
    assert_eq!(measured, "2 findings (warning 2)");
    assert!(
        reason.contains("2 findings above max_level note"),
        "{reason}"
    );
    let (v, _, _) = judge(
        sarif(Some(Level::Warning), None, None),
        &["sarif/semgrep.sarif"],
    );
    assert_eq!(v, Verdict::Pass);
}

#[test]
fn gitleaks_fails_max_results_zero() {
    let (v, measured, reason) = judge(sarif(None, None, Some(0)), &["sarif/gitleaks.sarif"]);
    assert_eq!(v, Verdict::Fail);
    assert_eq!(measured, "1 findings (warning 1)");
    assert!(reason.contains("more than max_results 0"), "{reason}");
}

#[test]
fn trivy_security_severity_from_the_rule() {
    let s = sarif_summary("sarif/trivy.sarif");
    assert_eq!(s.max_security_severity, Some(7.5));
    assert_eq!(s.by_level, [0, 0, 1, 1]);
    let (v, _, reason) = judge(
        sarif(Some(Level::Warning), Some(6.9), None),
        &["sarif/trivy.sarif"],
    );
    assert_eq!(v, Verdict::Fail);
    assert!(
        reason.contains("1 findings above max_level warning (highest: error)"),
        "{reason}"
    );
    assert!(
        reason.contains("security-severity 7.5 above max_security_severity 6.9"),
        "{reason}"
    );
    let (v, _, _) = judge(
        sarif(Some(Level::Error), Some(7.5), None),
        &["sarif/trivy.sarif"],
    );
    assert_eq!(v, Verdict::Pass);
}

#[test]
fn codeql_rule_found_in_an_extension_through_tool_component() {
    let s = sarif_summary("sarif/codeql.sarif");
    // No level on the result: the extension rule's defaultConfiguration says error.
    assert_eq!(s.max_level, Some(Level::Error));
    assert_eq!(s.max_security_severity, Some(6.1));
    let (v, _, _) = judge(
        sarif(Some(Level::Warning), None, None),
        &["sarif/codeql.sarif"],
    );
    assert_eq!(v, Verdict::Fail);
    let (v, _, _) = judge(sarif(None, Some(6.9), None), &["sarif/codeql.sarif"]);
    assert_eq!(v, Verdict::Pass);
}

#[test]
fn suppressed_and_absent_errors_pass() {
    let s = sarif_summary("sarif/suppressed.sarif");
    assert_eq!(
        (s.results, s.findings, s.suppressed, s.absent),
        (3, 0, 2, 1)
    );
    let (v, measured, _) = judge(
        sarif(Some(Level::Note), None, Some(0)),
        &["sarif/suppressed.sarif"],
    );
    assert_eq!(v, Verdict::Pass);
    assert_eq!(measured, "0 findings, 2 suppressed");
}

#[test]
fn rejected_or_under_review_suppression_still_a_finding() {
    let (v, _, _) = judge(
        sarif(Some(Level::Warning), None, None),
        &["sarif/suppression-rejected.sarif"],
    );
    assert_eq!(v, Verdict::Fail);
}

#[test]
fn kind_pass_is_not_a_finding() {
    let s = sarif_summary("sarif/kind-pass.sarif");
    assert_eq!((s.results, s.findings, s.not_failures), (3, 0, 3));
    let (v, _, _) = judge(sarif(None, None, Some(0)), &["sarif/kind-pass.sarif"]);
    assert_eq!(v, Verdict::Pass);
}

#[test]
fn sarif_without_runs_or_results_evaluated_nothing() {
    for (text, expected) in [
        (
            r#"{"version": "2.1.0", "runs": []}"#,
            "no SARIF run: the condition evaluated nothing",
        ),
        (
            r#"{"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "gitleaks"}}}]}"#,
            "1 runs without `results`: the tool did not analyse (SARIF §3.14.23)",
        ),
    ] {
        let (_, report) = parse("x.sarif", text.as_bytes()).unwrap();
        let named = NamedCondition {
            name: "c".into(),
            condition: sarif(None, None, Some(0)),
        };
        let v = evaluate(
            &[named],
            &[Input {
                path: "x.sarif".into(),
                report,
            }],
        );
        assert_eq!(v.verdict, Verdict::Fail);
        assert_eq!(v.conditions[0].reason, expected);
    }
    // An empty `results` array: the tool ran and found nothing.
    let text = r#"{"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "gitleaks"}}, "results": []}]}"#;
    let (_, report) = parse("x.sarif", text.as_bytes()).unwrap();
    let named = NamedCondition {
        name: "c".into(),
        condition: sarif(None, None, Some(0)),
    };
    assert_eq!(
        evaluate(
            &[named],
            &[Input {
                path: "x.sarif".into(),
                report
            }]
        )
        .verdict,
        Verdict::Pass
    );
}

#[test]
fn sarif_findings_add_up_over_inputs() {
    let (v, measured, _) = judge(
        sarif(None, None, Some(3)),
        &["sarif/semgrep.sarif", "sarif/gitleaks.sarif"],
    );
    assert_eq!(measured, "3 findings (warning 3)");
    assert_eq!(v, Verdict::Pass);
}

fn junit_summary(rel: &str) -> wharf_gates::JunitSummary {
    match read(rel) {
        (Format::Junit, Report::Junit(s)) => s,
        other => panic!("{rel}: {other:?}"),
    }
}

fn junit(max_failures: Option<u64>, min_tests: Option<u64>) -> Condition {
    Condition::Junit(JunitCondition {
        max_failures,
        min_tests,
    })
}

#[test]
fn surefire_flaky_and_rerun_elements() {
    let s = junit_summary("junit/surefire.xml");
    // tests="5" failures="1" on the root; six cases in fact. A failure with reruns is a
    // failure; flakyFailure and a lone rerunError are flaky passes.
    assert_eq!(
        (s.suites, s.tests, s.failures, s.errors, s.skipped, s.flaky),
        (1, 6, 1, 0, 1, 2)
    );
    let (v, measured, reason) = judge(junit(Some(0), None), &["junit/surefire.xml"]);
    assert_eq!(v, Verdict::Fail);
    assert_eq!(measured, "6 tests, 1 failed, 1 skipped, 2 flaky");
    assert_eq!(reason, "1 failed, more than max_failures 0");
}

#[test]
fn pytest_xunit1_duplicate_names_are_distinct_cases() {
    let s = junit_summary("junit/pytest-xunit1.xml");
    assert_eq!((s.tests, s.failures, s.skipped), (5, 1, 1));
}

#[test]
fn pytest_xunit2_error_counts_as_failed() {
    let s = junit_summary("junit/pytest-xunit2.xml");
    assert_eq!((s.tests, s.failed(), s.errors), (4, 1, 1));
    let (v, _, _) = judge(junit(Some(0), None), &["junit/pytest-xunit2.xml"]);
    assert_eq!(v, Verdict::Fail);
}

#[test]
fn jest_junit_passes() {
    let s = junit_summary("junit/jest-junit.xml");
    assert_eq!((s.suites, s.tests, s.failed(), s.skipped), (2, 4, 0, 1));
    let (v, _, _) = judge(junit(Some(0), Some(4)), &["junit/jest-junit.xml"]);
    assert_eq!(v, Verdict::Pass);
    let (v, _, reason) = judge(junit(Some(0), Some(100)), &["junit/jest-junit.xml"]);
    assert_eq!(v, Verdict::Fail);
    assert_eq!(reason, "4 tests, fewer than min_tests 100");
}

#[test]
fn nested_suites_counted_from_the_cases() {
    let s = junit_summary("junit/nested.xml");
    assert_eq!((s.suites, s.tests, s.failures), (4, 3, 1));
}

#[test]
fn zero_tests_fail_whatever_the_attributes_say() {
    let s = junit_summary("junit/zero-tests.xml");
    assert_eq!(s.tests, 0);
    let (v, _, reason) = judge(junit(Some(0), None), &["junit/zero-tests.xml"]);
    assert_eq!(v, Verdict::Fail);
    assert!(reason.contains("zero tests"), "{reason}");
}

#[test]
fn attribute_counts_are_not_trusted() {
    let s = junit_summary("junit/lying-counts.xml");
    assert_eq!((s.tests, s.failures), (3, 1));
}

fn k6_summary(rel: &str) -> wharf_gates::K6Summary {
    match read(rel) {
        (Format::K6, Report::K6(s)) => s,
        other => panic!("{rel}: {other:?}"),
    }
}

#[test]
fn k6_handle_summary() {
    let s = k6_summary("k6/handle-summary.json");
    assert_eq!(s.shape, K6Shape::HandleSummary);
    assert_eq!(s.p95_ms, Some(1843.6));
    assert!((s.error_rate.unwrap() - 0.003_666).abs() < 1e-5);
    let c = Condition::K6(K6Condition {
        p95: Some(Duration::from_secs(3)),
        max_error_rate: Some(1.0),
        thresholds_pass: false,
    });
    let (v, measured, _) = judge(c, &["k6/handle-summary.json"]);
    assert_eq!(v, Verdict::Pass);
    assert_eq!(
        measured,
        "p95 1.84s, error rate 0.37%, thresholds 2/3 passed"
    );
    let c = Condition::K6(K6Condition {
        thresholds_pass: true,
        ..K6Condition::default()
    });
    let (v, _, reason) = judge(c, &["k6/handle-summary.json"]);
    assert_eq!(v, Verdict::Fail);
    assert_eq!(reason, "thresholds failed: checks: rate>0.999");
}

#[test]
fn k6_legacy_export_true_means_failed() {
    let s = k6_summary("k6/legacy-export.json");
    assert_eq!(s.shape, K6Shape::LegacyExport);
    assert_eq!(s.p95_ms, Some(3520.1));
    let failed: Vec<&str> = s
        .thresholds
        .iter()
        .filter(|t| !t.passed)
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(failed, ["http_req_duration: p(95)<3000"]);
    let passed: Vec<&str> = s
        .thresholds
        .iter()
        .filter(|t| t.passed)
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(passed, ["http_req_failed: rate<0.05"]);
    let c = Condition::K6(K6Condition {
        p95: Some(Duration::from_secs(3)),
        max_error_rate: Some(2.0),
        thresholds_pass: true,
    });
    let (v, _, reason) = judge(c, &["k6/legacy-export.json"]);
    assert_eq!(v, Verdict::Fail);
    assert_eq!(
        reason,
        "p95 3.52s above 3.00s; thresholds failed: http_req_duration: p(95)<3000"
    );
}

fn coverage(min_lines: Option<f64>, min_branches: Option<f64>) -> Condition {
    Condition::Coverage(CoverageCondition {
        min_lines,
        min_branches,
    })
}

#[test]
fn cobertura_root_counts() {
    let (f, r) = read("coverage/cobertura.xml");
    assert_eq!(f, Format::Cobertura);
    let Report::Coverage(c) = r else { panic!() };
    assert_eq!(c.lines.unwrap().covered, Some(1093));
    let (v, measured, _) = judge(coverage(Some(85.0), None), &["coverage/cobertura.xml"]);
    assert_eq!(v, Verdict::Pass);
    assert_eq!(measured, "lines 86.7%, branches 74.9%");
    let (v, _, reason) = judge(
        coverage(Some(85.0), Some(80.0)),
        &["coverage/cobertura.xml"],
    );
    assert_eq!(v, Verdict::Fail);
    assert_eq!(reason, "branches 74.9% below 80%");
}

#[test]
fn lcov_records_summed() {
    let (f, r) = read("coverage/lcov.info");
    assert_eq!(f, Format::Lcov);
    let Report::Coverage(c) = r else { panic!() };
    assert_eq!(
        (c.lines.unwrap().covered, c.lines.unwrap().total),
        (Some(87), Some(100))
    );
    assert_eq!(
        (c.branches.unwrap().covered, c.branches.unwrap().total),
        (Some(8), Some(10))
    );
    let (v, _, _) = judge(coverage(Some(85.0), Some(80.0)), &["coverage/lcov.info"]);
    assert_eq!(v, Verdict::Pass);
    // Two reports: the worst one counts.
    let (v, _, reason) = judge(
        coverage(Some(87.0), None),
        &["coverage/lcov.info", "coverage/cobertura.xml"],
    );
    assert_eq!(v, Verdict::Fail);
    assert_eq!(reason, "lines 86.7% below 87%");
}

#[test]
fn the_issue_release_gate_over_the_corpus() {
    let gate = vec![
        NamedCondition {
            name: "no serious findings".into(),
            condition: sarif(Some(Level::Warning), Some(6.9), None),
        },
        NamedCondition {
            name: "no secrets".into(),
            condition: sarif(None, None, Some(0)),
        },
        NamedCondition {
            name: "tests pass".into(),
            condition: junit(Some(0), Some(4)),
        },
        NamedCondition {
            name: "load".into(),
            condition: Condition::K6(K6Condition {
                p95: Some(Duration::from_secs(3)),
                max_error_rate: Some(1.0),
                thresholds_pass: false,
            }),
        },
        NamedCondition {
            name: "coverage".into(),
            condition: coverage(Some(85.0), None),
        },
    ];
    let inputs: Vec<Input> = [
        "sarif/kind-pass.sarif",
        "junit/jest-junit.xml",
        "k6/handle-summary.json",
        "coverage/lcov.info",
    ]
    .iter()
    .map(|f| input(f))
    .collect();
    let v = evaluate(&gate, &inputs);
    assert_eq!(v.verdict, Verdict::Pass, "{v:#?}");
    assert_eq!(v.conditions[0].inputs, ["sarif/kind-pass.sarif"]);
    // Without the coverage report, the coverage condition evaluated nothing: fail.
    let v = evaluate(&gate, &inputs[..3]);
    assert_eq!(v.verdict, Verdict::Fail);
    let c = &v.conditions[4];
    assert_eq!((c.verdict, c.measured.as_str()), (Verdict::Fail, "nothing"));
    assert_eq!(
        c.reason,
        "no coverage input: the condition evaluated nothing"
    );
    // A gate with no conditions checks nothing: fail.
    assert_eq!(evaluate(&[], &inputs).verdict, Verdict::Fail);
}

#[test]
fn a_condition_with_no_limit_fails() {
    let (v, _, reason) = judge(sarif(None, None, None), &["sarif/kind-pass.sarif"]);
    assert_eq!(v, Verdict::Fail);
    assert!(reason.contains("sets no limit"), "{reason}");
}

#[test]
fn detection_reads_content_not_names() {
    let semgrep = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/sarif/semgrep.sarif"),
    )
    .unwrap();
    let (f, _) = parse("report.xml", semgrep.as_slice()).unwrap();
    assert_eq!(f, Format::Sarif);
    let e = parse("notes.txt", &b"hello world\n"[..]).unwrap_err();
    assert!(matches!(e, GateError::UnknownFormat { .. }), "{e}");
    assert!(
        e.to_string().starts_with("notes.txt: unknown format"),
        "{e}"
    );
    let e = parse("pom.xml", &b"<project><x/></project>"[..]).unwrap_err();
    assert!(e.to_string().contains("root is <project>"), "{e}");
    let e = parse("empty", &b""[..]).unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
}

#[test]
fn errors_name_file_and_position() {
    let e = parse("scan.sarif", &b"{\"runs\": [\n  {\"tool\": {\"driver\": {}}, \"results\": [{\"level\": \"fatal\"}]}]}"[..]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "scan.sarif: line 2, column 56: unknown variant `fatal`, expected one of `none`, `note`, `warning`, `error`"
    );
    let e = parse(
        "t.xml",
        &b"<testsuite><testcase name=\"a\"></testsuite>"[..],
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("t.xml: byte "), "{e}");
    let e = parse("lcov.info", &b"TN:\nSF:a.c\nLF:ten\n"[..]).unwrap_err();
    assert_eq!(e.to_string(), "lcov.info: line 3: LF:ten: not a count");
    let e = parse(
        "k6.json",
        &br#"{"metrics": {"http_req_duration": {"values": {"p(95)": "fast"}}}}"#[..],
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "k6.json: at metrics.http_req_duration.p(95): not a non-negative number"
    );
    let e = parse("t.xml", &b"<testsuite><testcase/>"[..]).unwrap_err();
    assert!(e.position().is_some(), "{e}");
}
