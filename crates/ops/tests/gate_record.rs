//! `gates::record`: a well-formed verdict is appended as `gate.check` with its target; a record
//! that is not (an unknown field, a bad hash, a verdict that is neither pass nor fail, no
//! conditions) is refused and appends nothing.

use serde_json::json;
use wharf_ops::{Actor, OpsErrorKind};
use wharf_store::Store;

fn good() -> serde_json::Value {
    json!({
        "gate": "release", "service": "api", "version": "1.5.0", "verdict": "fail",
        "conditions": [{"name": "no secrets", "verdict": "fail", "measured": "1 findings"}],
        "inputs": [{"path": "gitleaks.sarif", "sha256": "a".repeat(64), "format": "sarif"}],
    })
}

#[test]
fn a_verdict_is_appended_and_a_malformed_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let actor = Actor("ci".to_owned());
    let entry = wharf_ops::gates::record(&mut store, &actor, good()).unwrap();
    assert_eq!(entry.action.as_str(), "gate.check");
    assert_eq!(entry.target, "release/api@1.5.0");
    assert_eq!(entry.details["inputs"][0]["format"], "sarif");

    let mut bad_hash = good();
    bad_hash["inputs"][0]["sha256"] = json!("ABC");
    let mut bad_verdict = good();
    bad_verdict["verdict"] = json!("maybe");
    let mut extra = good();
    extra["secret"] = json!("x");
    let mut no_conditions = good();
    no_conditions["conditions"] = json!([]);
    let mut blank_version = good();
    blank_version["version"] = json!(" ");
    for bad in [bad_hash, bad_verdict, extra, no_conditions, blank_version] {
        let err = wharf_ops::gates::record(&mut store, &actor, bad.clone()).unwrap_err();
        assert_eq!(err.kind(), OpsErrorKind::Invalid, "{bad}");
    }
    assert_eq!(wharf_ledger::Ledger::new(store).size().unwrap(), 1);
}
