//! An independent implementation checks wharf's output: `scripts/verify_ledger.py` (Python,
//! hashlib + `cryptography` Ed25519) verifies an export's checkpoint and an inclusion proof.

use std::path::PathBuf;
use std::process::Command as Process;

use assert_cmd::Command;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Fails loudly (never skips) when the verifier's runtime is missing.
fn require_python() {
    let probe = Process::new("python3")
        .args(["-c", "import cryptography"])
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        _ => panic!(
            "python3 with the `cryptography` package is required for this test: \
             run `pip install cryptography` (see scripts/test)"
        ),
    }
}

fn wharf(dir: &std::path::Path, args: &[&str]) -> Vec<u8> {
    let out = Command::cargo_bin("wharf")
        .unwrap()
        .current_dir(dir)
        .env("WHARF_ACTOR", "py-test")
        .args(args)
        .assert()
        .success();
    out.get_output().stdout.clone()
}

fn python(args: &[&str]) -> (bool, String) {
    let script = repo_root().join("scripts/verify_ledger.py");
    let out = Process::new("python3")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn python_verifies_an_exported_checkpoint_and_inclusion_proof() {
    require_python();
    let dir = tempfile::tempdir().unwrap();
    for i in 0..11 {
        wharf(
            dir.path(),
            &["audit", "note", &format!("note {i} ünïcödé \"quoted\"")],
        );
    }
    let export = dir.path().join("export");
    wharf(dir.path(), &["audit", "export", export.to_str().unwrap()]);
    let proof = wharf(dir.path(), &["--output", "json", "audit", "prove", "6"]);
    let proof_file = dir.path().join("proof.json");
    std::fs::write(&proof_file, proof).unwrap();

    let (ok, out) = python(&[
        export.to_str().unwrap(),
        "--proof",
        proof_file.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("size 11 signed") && out.contains("proof for seq 6 verifies"),
        "{out}"
    );

    // The same script must reject a forged export, or the test above proves nothing.
    let entries = export.join("entries.jsonl");
    let forged = std::fs::read_to_string(&entries)
        .unwrap()
        .replacen("note 3", "note X", 2);
    std::fs::write(&entries, forged).unwrap();
    let (ok, out) = python(&[export.to_str().unwrap()]);
    assert!(
        !ok && out.contains("do not hash to the checkpoint root"),
        "{out}"
    );
}
