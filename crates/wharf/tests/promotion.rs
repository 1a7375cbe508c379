//! Promotion evidence between two environments, each with its own state directory, ledger and
//! signing key, both real stacks (the `wharf` binary, its control plane and proxy, testbed
//! instances): staging rolls api 2.0 out and exports a bundle; prod, whose environment requires
//! `promoted_from: {env: staging, key: <staging's key>}`, refuses the deploy until the bundle
//! is imported, refuses a tampered bundle (recording nothing), then deploys. The independent
//! Python verifier checks the same bundles.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Output};
use std::time::Duration;

use common::*;
use serde_json::Value;

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// api behind the proxy (a one-step canary, so a deploy is quick), a release gate, and the
/// environment `env` with its `require` block (YAML flow mapping).
fn manifest(port: u16, env: &str, require: &str) -> String {
    format!(
        r#"
name: shop
environments:
  {env}:
    require: {require}
    services: {{api: {{replicas: 1}}}}
services:
  api:
    version: "1.0"
    command: [TESTBED, --port, "${{PORT}}", --version, "${{VERSION}}"]
    port: {port}
    probes:
      ready: {{http: {{path: /ready}}, interval: 200ms}}
    rollout:
      strategy: canary
      steps: [{{weight: 100}}]
      analysis: {{min_requests: 0}}
      deadlines: {{drain: 1s}}
gates:
  release:
    - {{name: tests pass, junit: {{max_failures: 0, min_tests: 1}}}}
"#
    )
}

fn up(stack: &Stack, env: &str) {
    let up = stack.wharf(&["up", "-d", "--env", env, "--wait-timeout", "60s"]);
    assert!(up.status.success(), "{}", text(&up));
}

fn key(stack: &Stack) -> String {
    let out = stack.wharf(&["audit", "key"]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn promotion_imports(stack: &Stack) -> Vec<Value> {
    actions(&stack.ledger(), "promotion.import")
}

fn python(args: &[&str]) -> (Option<i32>, String) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/verify_ledger.py");
    let probe = Process::new("python3")
        .args(["-c", "import cryptography"])
        .output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "python3 with the `cryptography` package is required (scripts/test installs it)"
    );
    let out = Process::new("python3")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    (out.status.code(), text(&out))
}

/// The bundle with one change made to its JSON.
fn tamper(bundle: &Path, to: &Path, change: impl FnOnce(&mut Value)) {
    let mut value: Value = serde_json::from_slice(&std::fs::read(bundle).unwrap()).unwrap();
    change(&mut value);
    std::fs::write(to, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
}

#[test]
fn a_version_promoted_from_staging_deploys_in_prod_only_with_a_verified_bundle() {
    // ── staging: deploy 2.0, pass the release gate, export the evidence ──────────────────
    let staging_port = free_port();
    let staging = Stack::new(&manifest(staging_port, "staging", "{}"));
    up(&staging, "staging");
    let poller = Poller::start(staging_port);
    let deploy = staging.wharf(&["deploy", "api", "--version", "2.0", "--watch"]);
    assert_eq!(deploy.status.code(), Some(0), "{}", text(&deploy));
    drop(poller);
    let junit = staging.path().join("junit.xml");
    std::fs::write(
        &junit,
        r#"<testsuite name="t" tests="1" failures="0"><testcase name="a" classname="c"/></testsuite>"#,
    )
    .unwrap();
    let gate = staging.wharf(&[
        "gate",
        "check",
        "release",
        "--service",
        "api",
        "--version",
        "2.0",
        "--input",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(gate.status.code(), Some(0), "{}", text(&gate));

    // A version staging never rolled out has no evidence: refused, exit 1.
    let none = staging.wharf(&["promote", "export", "api", "3.0", "--env", "staging"]);
    assert_eq!(none.status.code(), Some(1), "{}", text(&none));
    assert!(
        text(&none).contains("no successful rollout of api@3.0"),
        "{}",
        text(&none)
    );

    let bundle = staging.path().join("api-2.0.promotion.json");
    let export = staging.wharf(&[
        "promote",
        "export",
        "api",
        "2.0",
        "--env",
        "staging",
        "--out",
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(export.status.code(), Some(0), "{}", text(&export));
    let written: Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    assert_eq!(written["format"], "wharf-promotion/1");
    assert_eq!(written["env"], "staging");
    assert_eq!(written["stack"], "shop");
    let actions_in_bundle: Vec<String> = written["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let leaf: Value = serde_json::from_str(e["leaf"].as_str().unwrap()).unwrap();
            leaf["action"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        actions_in_bundle,
        ["deploy.start", "deploy.succeeded", "gate.check"]
    );
    let staging_key = key(&staging);
    assert_eq!(written["verifier_key"], staging_key.as_str());

    // Verified on its own, with staging's key; a tampered copy is not, and says what failed.
    let verify = staging.wharf(&[
        "promote",
        "verify",
        bundle.to_str().unwrap(),
        "--key",
        &staging_key,
    ]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    assert!(
        text(&verify).contains("api@2.0 rolled out successfully in `staging`"),
        "{}",
        text(&verify)
    );
    let tampered = staging.path().join("tampered.json");
    tamper(&bundle, &tampered, |b| {
        let leaf = b["entries"][1]["leaf"].as_str().unwrap();
        let forged = leaf.replace("\"version\":\"2.0\"", "\"version\":\"2.0.1\"");
        assert_ne!(leaf, forged, "the tamper changes the entry");
        b["entries"][1]["leaf"] = Value::String(forged);
    });
    let verify = staging.wharf(&[
        "promote",
        "verify",
        tampered.to_str().unwrap(),
        "--key",
        &staging_key,
    ]);
    assert_eq!(verify.status.code(), Some(1), "{}", text(&verify));
    assert!(
        text(&verify).contains("leaf hash") && text(&verify).contains("altered"),
        "{}",
        text(&verify)
    );
    let garbage = staging.path().join("garbage.json");
    std::fs::write(
        &garbage,
        "{\n  \"format\": \"wharf-promotion/1\",\n  nope\n}\n",
    )
    .unwrap();
    let verify = staging.wharf(&["promote", "verify", garbage.to_str().unwrap()]);
    assert_eq!(verify.status.code(), Some(2), "{}", text(&verify));
    assert!(
        text(&verify).contains(&format!("{}:3:3", garbage.display())),
        "{}",
        text(&verify)
    );

    // Without a key: the bundle's own, and it says that proves only self-consistency.
    let own = staging.wharf(&["promote", "verify", bundle.to_str().unwrap()]);
    assert_eq!(own.status.code(), Some(0), "{}", text(&own));
    assert!(
        text(&own).contains("bundle's own verifier key"),
        "{}",
        text(&own)
    );
    let (code, out) = python(&["--bundle", bundle.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("bundle's own key"), "{out}");

    // The independent verifier agrees on both.
    let (code, out) = python(&["--bundle", bundle.to_str().unwrap(), "--key", &staging_key]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("api@2.0 rolled out in staging"), "{out}");
    let (code, out) = python(&[
        "--bundle",
        tampered.to_str().unwrap(),
        "--key",
        &staging_key,
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("altered"), "{out}");
    let claims_other = staging.path().join("claims-3.0.json");
    tamper(&bundle, &claims_other, |b| b["version"] = "3.0".into());
    let (code, out) = python(&[
        "--bundle",
        claims_other.to_str().unwrap(),
        "--key",
        &staging_key,
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("not api@3.0"), "{out}");
    let resized = staging.path().join("resized.json");
    tamper(&bundle, &resized, |b| {
        let note = b["checkpoint"].as_str().unwrap();
        let mut lines: Vec<String> = note.split('\n').map(str::to_owned).collect();
        lines[1] = (lines[1].parse::<u64>().unwrap() + 1).to_string();
        b["checkpoint"] = Value::String(lines.join("\n"));
    });
    let (code, out) = python(&["--bundle", resized.to_str().unwrap(), "--key", &staging_key]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("signature does not verify"), "{out}");
    let verify = staging.wharf(&[
        "promote",
        "verify",
        resized.to_str().unwrap(),
        "--key",
        &staging_key,
    ]);
    assert_eq!(verify.status.code(), Some(1), "{}", text(&verify));
    assert!(
        text(&verify).contains("checkpoint does not verify"),
        "{}",
        text(&verify)
    );
    // Another well-formed key (not staging's): refused by both.
    let another = "wharf/staging+f22fd127+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4";
    let (code, out) = python(&["--bundle", bundle.to_str().unwrap(), "--key", another]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("another key"), "{out}");
    let verify = staging.wharf(&[
        "promote",
        "verify",
        bundle.to_str().unwrap(),
        "--key",
        another,
    ]);
    assert_eq!(verify.status.code(), Some(1), "{}", text(&verify));

    // ── prod: its own state and ledger; promotion from staging required ──────────────────
    let prod_port = free_port();
    let require = format!("{{promoted_from: {{env: staging, key: \"{staging_key}\"}}}}");
    let prod = Stack::new(&manifest(prod_port, "prod", &require));
    up(&prod, "prod");
    let prod_key = key(&prod);
    assert_ne!(
        prod_key, staging_key,
        "each environment signs with its own key"
    );

    let refused = prod.wharf(&["deploy", "api", "--version", "2.0"]);
    assert_ne!(refused.status.code(), Some(0), "{}", text(&refused));
    assert!(
        text(&refused).contains(
            "environment `prod` requires promotion from `staging`: no verified promotion bundle for api@2.0 from `staging` was imported"
        ),
        "{}",
        text(&refused)
    );
    assert!(actions(&prod.ledger(), "deploy.start").is_empty());

    // A tampered bundle, or the good one checked against another key: refused, nothing kept.
    let import = prod.wharf(&[
        "promote",
        "import",
        tampered.to_str().unwrap(),
        "--env",
        "prod",
    ]);
    assert_eq!(import.status.code(), Some(1), "{}", text(&import));
    let import = prod.wharf(&[
        "promote",
        "import",
        bundle.to_str().unwrap(),
        "--key",
        &prod_key,
    ]);
    assert_eq!(import.status.code(), Some(1), "{}", text(&import));
    assert!(text(&import).contains("signed by key"), "{}", text(&import));
    assert!(promotion_imports(&prod).is_empty());
    let still = prod.wharf(&["deploy", "api", "--version", "2.0"]);
    assert_ne!(still.status.code(), Some(0), "{}", text(&still));

    // The good bundle: verified with the key prod's manifest names, recorded through the
    // running control plane's API.
    let import = prod.wharf(&[
        "promote",
        "import",
        bundle.to_str().unwrap(),
        "--env",
        "prod",
    ]);
    assert_eq!(import.status.code(), Some(0), "{}", text(&import));
    let recorded = promotion_imports(&prod);
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["target"], "api@2.0");
    assert_eq!(recorded[0]["details"]["env"], "staging");
    assert_eq!(recorded[0]["details"]["key"], staging_key.as_str());
    assert_eq!(
        recorded[0]["details"]["gates"],
        serde_json::json!(["release"])
    );
    let sha = recorded[0]["details"]["bundle_sha256"].as_str().unwrap();
    assert_eq!(sha.len(), 64);

    // Still not 3.0, which no bundle vouches for; 2.0 deploys and succeeds.
    let other = prod.wharf(&["deploy", "api", "--version", "3.0"]);
    assert_ne!(other.status.code(), Some(0), "{}", text(&other));
    assert!(text(&other).contains("api@3.0"), "{}", text(&other));
    let poller = Poller::start(prod_port);
    let deploy = prod.wharf(&["deploy", "api", "--version", "2.0", "--watch"]);
    assert_eq!(deploy.status.code(), Some(0), "{}", text(&deploy));
    drop(poller);
    eventually("prod runs 2.0", Duration::from_secs(30), || {
        (prod.service("api")["version"] == "2.0").then_some(())
    });
}

/// Without a control plane, `promote import` takes `control.lock` and records in-process; the
/// state directory needs no manifest when a key is given.
#[test]
fn import_without_a_control_plane_records_under_the_lock() {
    let port = free_port();
    let staging = Stack::new(&manifest(port, "staging", "{}"));
    up(&staging, "staging");
    let poller = Poller::start(port);
    let deploy = staging.wharf(&["deploy", "api", "--version", "2.0", "--watch"]);
    assert_eq!(deploy.status.code(), Some(0), "{}", text(&deploy));
    drop(poller);
    let down = staging.wharf(&["down"]);
    assert!(down.status.success(), "{}", text(&down));
    // Exported with no control plane running: the checkpoint is signed under the lock.
    let bundle = staging.path().join("bundle.json");
    let export = staging.wharf(&[
        "promote",
        "export",
        "api",
        "2.0",
        "--env",
        "staging",
        "-o",
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(export.status.code(), Some(0), "{}", text(&export));
    let staging_key = key(&staging);

    let elsewhere = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Process::new(wharf_bin())
            .args(args)
            .current_dir(elsewhere.path())
            .env("WHARF_ACTOR", "tester")
            .output()
            .unwrap()
    };
    let import = run(&[
        "promote",
        "import",
        bundle.to_str().unwrap(),
        "--key",
        &staging_key,
    ]);
    assert_eq!(import.status.code(), Some(0), "{}", text(&import));
    let log = run(&[
        "audit",
        "log",
        "--output",
        "json",
        "--action",
        "promotion.import",
    ]);
    let entries: Vec<Value> = serde_json::from_slice(&log.stdout).unwrap();
    assert_eq!(entries.len(), 1, "{}", text(&log));
    assert_eq!(entries[0]["actor"], "tester");
    assert_eq!(entries[0]["details"]["service"], "api");
    assert_eq!(entries[0]["details"]["version"], "2.0");
}
