//! Property tests: the parsers never panic on garbage, and a refusal always says where — a
//! parse error carries a position, and a truncated or corrupted corpus file is refused rather
//! than read as a smaller, passing report.

use std::path::Path;

use proptest::prelude::*;
use wharf_gates::{GateError, parse};

const CORPUS: &[&str] = &[
    "sarif/semgrep.sarif",
    "sarif/codeql.sarif",
    "sarif/trivy.sarif",
    "junit/surefire.xml",
    "junit/nested.xml",
    "junit/pytest-xunit1.xml",
    "k6/handle-summary.json",
    "k6/legacy-export.json",
    "coverage/cobertura.xml",
    "coverage/lcov.info",
];

fn corpus(i: usize) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(CORPUS[i]);
    std::fs::read(path).unwrap()
}

/// Anything but a parse error with a position or an unknown format is a bug here: the input is
/// in memory, so there is no IO error to have.
fn check(
    result: Result<(wharf_gates::Format, wharf_gates::Report), GateError>,
) -> Result<(), TestCaseError> {
    match result {
        Ok(_) | Err(GateError::UnknownFormat { .. }) => Ok(()),
        Err(e @ GateError::Parse { .. }) => {
            prop_assert!(e.to_string().starts_with("input: "), "{e}");
            prop_assert!(e.position().is_some());
            Ok(())
        }
        Err(e) => Err(TestCaseError::fail(format!("unexpected error: {e}"))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check(parse("input", bytes.as_slice()))?;
    }

    #[test]
    fn random_bytes_behind_each_format_opening(
        opening in prop::sample::select(vec!["{\"runs\": [", "{\"metrics\": {", "<testsuites>", "<coverage ", "TN:\nSF:x\n", "<?xml version=\"1.0\"?><testsuite>"]),
        bytes in proptest::collection::vec(any::<u8>(), 0..1024),
    ) {
        let mut input = opening.as_bytes().to_vec();
        input.extend(bytes);
        check(parse("input", input.as_slice()))?;
    }

    #[test]
    fn corrupted_corpus_files(i in 0..CORPUS.len(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = corpus(i);
        let at = at.index(bytes.len());
        bytes[at] = byte;
        check(parse("input", bytes.as_slice()))?;
    }

    #[test]
    fn truncated_structured_files_are_refused(i in 0..CORPUS.len() - 1, cut in any::<prop::sample::Index>()) {
        // Every corpus file but LCOV (line records: any prefix is a valid tracefile) is one
        // JSON or XML document; cut anywhere before its last closing bracket it is refused.
        let bytes = corpus(i);
        let last = bytes.iter().rposition(|b| *b == b'}' || *b == b'>').unwrap();
        let cut = cut.index(last);
        let result = parse("input", &bytes[..cut]);
        if CORPUS[i] == "coverage/cobertura.xml" && cut > 60 {
            // Cobertura is judged by its root element alone.
            prop_assume!(false);
        }
        prop_assert!(result.is_err(), "{} cut at {cut} was read", CORPUS[i]);
        check(result)?;
    }
}
