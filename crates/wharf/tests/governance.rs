//! Governance through the real binary and the TLS API: per-person tokens with roles (a viewer
//! gets 403 on deploy, a revoked token 401, no token 401), a deploy into `prod` refused without
//! a passing gate verdict for its version, then waiting for two approvals by two other
//! identities (the requester's own refused, a second one by the same person refused), started
//! by the last one; every step in the ledger with the identities, and no token in the ledger
//! or the control plane's log. A restore in place in that environment waits for approval too,
//! and a sandbox restore does not.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use serde_json::Value;

const MANIFEST: &str = r#"name: shop
services:
  web:
    command: [TESTBED, --port, "${PORT}", --version, "${VERSION}"]
    version: "1"
    port: WEB_PORT
gates:
  release:
    - {name: tests pass, junit: {max_failures: 0, min_tests: 3}}
environments:
  prod:
    require: {approvals: 2, gates: [release]}
"#;

const JUNIT_PASS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites><testsuite name="api" tests="3" failures="0" errors="0">
<testcase classname="api" name="a"/><testcase classname="api" name="b"/><testcase classname="api" name="c"/>
</testsuite></testsuites>
"#;

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `wharf ARGS` as the holder of `token` (on the unix socket).
fn wharf_as(stack: &Path, token: &str, args: &[&str]) -> Output {
    Command::new(wharf_bin())
        .args(args)
        .current_dir(stack)
        .env("NO_COLOR", "1")
        .env("WHARF_TOKEN", token)
        .output()
        .unwrap()
}

fn create_token(stack: &Stack, name: &str, role: &str) -> String {
    let made = stack.wharf(&["token", "create", name, "--role", role]);
    assert!(made.status.success(), "{}", text(&made));
    let token = String::from_utf8_lossy(&made.stdout).trim().to_owned();
    assert!(token.starts_with("wharf_t"), "{token}");
    token
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn a_prod_deploy_needs_a_passing_gate_and_two_approvals_by_others_and_roles_are_enforced() {
    let stack = Stack::new(&MANIFEST.replace("WEB_PORT", &free_port().to_string()));
    let listen = format!("127.0.0.1:{}", free_port());
    let addr = listen.parse().unwrap();
    // No WHARF_API_TOKEN: the TCP listener takes the people's tokens only.
    let up = Command::new(wharf_bin())
        .args(["up", "-d", "--env", "prod", "--api-listen", &listen])
        .args(["--wait-timeout", "60s"])
        .current_dir(stack.path())
        .env_remove("WHARF_API_TOKEN")
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", text(&up));
    let cert = api_cert(stack.path());

    // On the socket the caller is the OS user, an admin.
    let me = stack.wharf(&["whoami", "--output", "json"]);
    let me = json(&String::from_utf8_lossy(&me.stdout));
    assert_eq!(me["role"], "admin");
    assert_eq!(me["via"], "peer_credentials");
    assert!(me["name"].as_str().unwrap().starts_with("root"), "{me}");

    let alice = create_token(&stack, "alice", "admin");
    let bob = create_token(&stack, "bob", "approver");
    let carol = create_token(&stack, "carol", "approver");
    let olga = create_token(&stack, "olga", "operator");
    let vic = create_token(&stack, "vic", "viewer");

    let https = |method: &str, path: &str, token: Option<&str>, body: Option<&str>| {
        https_request(&cert, addr, method, path, token, body)
    };
    let deploy = r#"{"version": "2"}"#;
    // No token, a made-up one: 401. A viewer reads but may not deploy: 403.
    assert_eq!(https("GET", "/v1/status", None, None).0, 401);
    assert_eq!(https("GET", "/v1/status", Some("wharf_t1_00"), None).0, 401);
    assert_eq!(https("GET", "/v1/status", Some(&vic), None).0, 200);
    let (status, body) = https("POST", "/v1/services/web/deploy", Some(&vic), Some(deploy));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("viewer"), "{body}");
    let who = json(&https("GET", "/v1/whoami", Some(&olga), None).1);
    assert_eq!(
        (who["name"].as_str(), who["role"].as_str()),
        (Some("olga"), Some("operator"))
    );

    // What the control plane records while handling a command names its caller.
    let restart = wharf_as(stack.path(), &olga, &["restart", "web"]);
    assert!(restart.status.success(), "{}", text(&restart));
    assert_eq!(
        actions(&stack.ledger(), "service.restart")[0]["actor"],
        "olga"
    );

    // Without a passing verdict of `release` for web@2 the deploy is refused, saying why.
    let (status, body) = https(
        "POST",
        "/v1/services/web/deploy",
        Some(&alice),
        Some(deploy),
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("gate `release` has no verdict for web@2"),
        "{body}"
    );

    std::fs::write(stack.path().join("junit.xml"), JUNIT_PASS).unwrap();
    let gate = wharf_as(
        stack.path(),
        &alice,
        &[
            "gate",
            "check",
            "release",
            "--service",
            "web",
            "--version",
            "2",
            "--input",
            "junit.xml",
        ],
    );
    assert!(gate.status.success(), "{}", text(&gate));

    // Now it waits for two approvals.
    let (status, body) = https(
        "POST",
        "/v1/services/web/deploy",
        Some(&alice),
        Some(deploy),
    );
    assert_eq!(status, 201, "{body}");
    let pending = json(&body);
    assert_eq!(pending["state"], "pending_approval");
    assert_eq!(pending["requested_by"], "alice");
    assert_eq!(pending["approvals_required"], 2);
    let id = pending["id"].as_str().unwrap().to_owned();
    // A second request for the same service while one waits is refused.
    let (status, _) = https(
        "POST",
        "/v1/services/web/deploy",
        Some(&alice),
        Some(deploy),
    );
    assert_eq!(status, 409);
    assert!(
        actions(&stack.ledger(), "deploy.start").is_empty(),
        "nothing started before approvals"
    );

    let approve = format!("/v1/approvals/{id}/approve");
    let reason = r#"{"reason": "change CHG-1 reviewed"}"#;
    // The requester's own approval never counts, admin or not; an operator may not approve.
    let (status, body) = https("POST", &approve, Some(&alice), Some(reason));
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("four-eyes"), "{body}");
    assert_eq!(https("POST", &approve, Some(&olga), Some(reason)).0, 403);
    // Bob approves through the CLI (his token on the socket), then again: refused.
    let first = wharf_as(
        stack.path(),
        &bob,
        &["approve", &id, "--reason", "looks right"],
    );
    assert!(first.status.success(), "{}", text(&first));
    assert!(text(&first).contains("1/2 approvals"), "{}", text(&first));
    let again = wharf_as(stack.path(), &bob, &["approve", &id, "--reason", "twice"]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(
        text(&again).contains("already approved"),
        "{}",
        text(&again)
    );
    assert!(actions(&stack.ledger(), "deploy.start").is_empty());
    // A token alice made herself is alice approving: refused.
    let made = wharf_as(
        stack.path(),
        &alice,
        &["token", "create", "puppet", "--role", "approver"],
    );
    assert!(made.status.success(), "{}", text(&made));
    let puppet = String::from_utf8_lossy(&made.stdout).trim().to_owned();
    let (status, body) = https("POST", &approve, Some(&puppet), Some(reason));
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("made by `alice`"), "{body}");
    // Carol's is the second: the deploy starts.
    let (status, body) = https("POST", &approve, Some(&carol), Some(reason));
    assert_eq!(status, 200, "{body}");
    let started = json(&body);
    assert_eq!(started["state"], "started", "{started}");

    // The ledger names every identity.
    let ledger = stack.ledger();
    let request = &actions(&ledger, "approval.request")[0];
    assert_eq!(request["actor"], "alice");
    let approvals: Vec<String> = actions(&ledger, "approval.approve")
        .iter()
        .map(|e| e["actor"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(approvals, ["bob", "carol"]);
    let start = &actions(&ledger, "deploy.start")[0];
    assert_eq!(start["actor"], "alice");
    assert_eq!(
        start["details"]["approved_by"],
        serde_json::json!(["bob", "carol"])
    );
    assert_eq!(start["details"]["deploy_request"], id.as_str());
    assert_eq!(actions(&ledger, "gate.check")[0]["actor"], "alice");
    let creates = actions(&ledger, "token.create");
    assert_eq!(creates.len(), 6);
    assert_eq!(creates[5]["actor"], "alice");
    assert_eq!(actions(&ledger, "approval.started")[0]["actor"], "alice");
    assert!(creates[0]["actor"].as_str().unwrap().starts_with("root"));

    // A revoked token is refused from the next request on.
    let revoked = stack.wharf(&["token", "revoke", "vic"]);
    assert!(revoked.status.success(), "{}", text(&revoked));
    let (status, body) = https("GET", "/v1/status", Some(&vic), None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("revoked"), "{body}");
    assert_eq!(
        actions(&stack.ledger(), "token.revoke")[0]["details"]["name"],
        "vic"
    );

    // No token reaches the ledger, the state database or the control plane's log.
    let log = std::fs::read_to_string(stack.path().join(".wharf/control.log")).unwrap_or_default();
    let ledger_text = serde_json::to_string(&stack.ledger()).unwrap();
    let db = std::fs::read(stack.path().join(".wharf/state.db")).unwrap_or_default();
    for token in [&alice, &bob, &carol, &olga, &vic, &puppet] {
        let secret = token.rsplit('_').next().unwrap();
        assert!(!ledger_text.contains(secret), "a token in the ledger");
        assert!(!log.contains(secret), "a token in the log");
        assert!(
            !db.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "a token in the state database"
        );
    }
}

#[test]
fn a_rejected_deploy_request_never_starts_and_bad_words_are_refused() {
    let stack = Stack::new(&MANIFEST.replace("WEB_PORT", &free_port().to_string()));
    let up = stack.wharf(&["up", "-d", "--env", "prod", "--wait-timeout", "60s"]);
    assert!(up.status.success(), "{}", text(&up));
    let olga = create_token(&stack, "olga", "operator");
    let bob = create_token(&stack, "bob", "approver");
    std::fs::write(stack.path().join("junit.xml"), JUNIT_PASS).unwrap();
    let gate = stack.wharf(&[
        "gate",
        "check",
        "release",
        "--service",
        "web",
        "--version",
        "2",
        "--input",
        "junit.xml",
    ]);
    assert!(gate.status.success(), "{}", text(&gate));
    let asked = wharf_as(stack.path(), &olga, &["deploy", "web", "--version", "2"]);
    assert!(asked.status.success(), "{}", text(&asked));
    assert!(
        text(&asked).contains("wharf approve r-1"),
        "{}",
        text(&asked)
    );
    let rejected = wharf_as(
        stack.path(),
        &bob,
        &["reject", "r-1", "--reason", "not in the window"],
    );
    assert!(rejected.status.success(), "{}", text(&rejected));
    let late = wharf_as(
        stack.path(),
        &bob,
        &["approve", "r-1", "--reason", "changed my mind"],
    );
    assert_eq!(late.status.code(), Some(2), "{}", text(&late));
    assert!(text(&late).contains("rejected"), "{}", text(&late));
    let listed = stack.wharf(&["approvals", "--output", "json"]);
    let listed = json(&String::from_utf8_lossy(&listed.stdout));
    assert_eq!(listed["deploys"][0]["state"], "rejected");
    assert_eq!(listed["deploys"][0]["rejected_by"]["by"], "bob");
    let ledger = stack.ledger();
    assert_eq!(actions(&ledger, "approval.reject")[0]["actor"], "bob");
    assert!(actions(&ledger, "deploy.start").is_empty());
    // Its requester may withdraw a request (an operator cannot approve or reject others').
    let asked = wharf_as(stack.path(), &olga, &["deploy", "web", "--version", "2"]);
    assert!(asked.status.success(), "{}", text(&asked));
    let withdrawn = wharf_as(
        stack.path(),
        &olga,
        &["reject", "r-2", "--reason", "wrong build"],
    );
    assert!(withdrawn.status.success(), "{}", text(&withdrawn));
    let rejects = actions(&stack.ledger(), "approval.reject");
    assert_eq!(rejects[1]["actor"], "olga");
    assert_eq!(rejects[1]["details"]["withdrawn"], true);
    // A bad reason and an unknown request are refused with what is wrong.
    let blank = wharf_as(stack.path(), &bob, &["approve", "r-1", "--reason", " "]);
    assert_eq!(blank.status.code(), Some(2), "{}", text(&blank));
    let unknown = wharf_as(stack.path(), &bob, &["approve", "r-9", "--reason", "x"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));
    assert!(
        text(&unknown).contains("no request `r-9`"),
        "{}",
        text(&unknown)
    );
}

const SQLITE_STACK: &str = r#"name: shop
services:
  db:
    kind: sqlite
    path: ./app.db
    backup: {schedule: "0 3 * * *", retain: {last: 3}}
environments:
  prod:
    require: {approvals: 1}
"#;

fn item_count(path: &Path) -> i64 {
    let db = rusqlite::Connection::open(path).unwrap();
    db.query_row("SELECT count(*) FROM items", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_restore_over_live_data_waits_for_an_approval_and_a_sandbox_restore_does_not() {
    let stack = Stack::new(SQLITE_STACK);
    let path = stack.path().join("app.db");
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(
            "CREATE TABLE items (id INTEGER PRIMARY KEY); INSERT INTO items DEFAULT VALUES;",
        )
        .unwrap();
    }
    let up = stack.wharf(&["up", "-d", "--env", "prod", "--wait-timeout", "60s"]);
    assert!(up.status.success(), "{}", text(&up));
    let backup = stack.wharf(&["backup", "run"]);
    assert!(backup.status.success(), "{}", text(&backup));
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("INSERT INTO items DEFAULT VALUES; INSERT INTO items DEFAULT VALUES;")
        .unwrap();
    assert_eq!(item_count(&path), 3);

    // A sandbox restore touches nothing live: it runs at once.
    let sandbox = stack.wharf(&["restore", "db", "--sandbox"]);
    assert!(sandbox.status.success(), "{}", text(&sandbox));
    assert!(actions(&stack.ledger(), "approval.request").is_empty());

    let olga = create_token(&stack, "olga", "operator");
    let bob = create_token(&stack, "bob", "approver");
    let asked = wharf_as(stack.path(), &olga, &["restore", "db", "--confirm"]);
    assert!(asked.status.success(), "{}", text(&asked));
    assert!(
        text(&asked).contains("restore db (latest) in place"),
        "{}",
        text(&asked)
    );
    assert_eq!(item_count(&path), 3, "nothing restored before the approval");
    let approved = wharf_as(
        stack.path(),
        &bob,
        &["approve", "r-1", "--reason", "INC-7 data loss"],
    );
    assert!(approved.status.success(), "{}", text(&approved));
    assert!(
        text(&approved).contains("started job"),
        "{}",
        text(&approved)
    );
    eventually(
        "the restore in place",
        std::time::Duration::from_secs(60),
        || (item_count(&path) == 1).then_some(()),
    );
    let ledger = stack.ledger();
    assert_eq!(actions(&ledger, "approval.request")[0]["actor"], "olga");
    assert_eq!(
        actions(&ledger, "approval.request")[0]["details"]["action"],
        "restore"
    );
    assert_eq!(actions(&ledger, "approval.approve")[0]["actor"], "bob");
}

#[test]
fn a_request_not_approved_within_its_window_expires_and_can_no_longer_be_approved() {
    let manifest = MANIFEST
        .replace("WEB_PORT", &free_port().to_string())
        .replace(
            "require: {approvals: 2, gates: [release]}",
            "require: {approvals: {count: 1, within: 2s}}",
        );
    let stack = Stack::new(&manifest);
    let up = stack.wharf(&["up", "-d", "--env", "prod", "--wait-timeout", "60s"]);
    assert!(up.status.success(), "{}", text(&up));
    let bob = create_token(&stack, "bob", "approver");
    let asked = stack.wharf(&["deploy", "web", "--version", "2"]);
    assert!(asked.status.success(), "{}", text(&asked));
    eventually(
        "the request to expire",
        std::time::Duration::from_secs(30),
        || {
            let listed = stack.wharf(&["approvals", "--output", "json"]);
            let listed = json(&String::from_utf8_lossy(&listed.stdout));
            (listed["deploys"][0]["state"] == "expired").then_some(())
        },
    );
    let late = wharf_as(
        stack.path(),
        &bob,
        &["approve", "r-1", "--reason", "too late"],
    );
    assert_eq!(late.status.code(), Some(2), "{}", text(&late));
    assert!(text(&late).contains("expired"), "{}", text(&late));
    let ledger = stack.ledger();
    assert_eq!(actions(&ledger, "approval.expire").len(), 1);
    assert!(actions(&ledger, "deploy.start").is_empty());
    // A new request may be made once the old one is closed.
    let again = stack.wharf(&["deploy", "web", "--version", "2"]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("r-2"), "{}", text(&again));
}

#[test]
fn in_a_governed_environment_a_runbook_step_needs_n_approvers_other_than_its_starter_and_cannot_deploy()
 {
    let manifest = MANIFEST
        .replace("WEB_PORT", &free_port().to_string())
        .replace(
            "environments:",
            r#"runbooks:
  ship:
    steps:
      - approve: {prompt: "ship it?"}
      - deploy: {service: web, version: "3"}
environments:"#,
        )
        .replace(
            "require: {approvals: 2, gates: [release]}",
            "require: {approvals: 2}",
        );
    let stack = Stack::new(&manifest);
    let up = stack.wharf(&["up", "-d", "--env", "prod", "--wait-timeout", "60s"]);
    assert!(up.status.success(), "{}", text(&up));
    let alice = create_token(&stack, "alice", "admin");
    let bob = create_token(&stack, "bob", "approver");
    let carol = create_token(&stack, "carol", "approver");
    let started = wharf_as(stack.path(), &alice, &["runbook", "run", "ship"]);
    assert!(started.status.success(), "{}", text(&started));
    eventually(
        "the run to wait for approval",
        std::time::Duration::from_secs(30),
        || {
            let runs = stack.wharf(&["runbook", "runs", "--output", "json"]);
            String::from_utf8_lossy(&runs.stdout)
                .contains("waiting_approval")
                .then_some(())
        },
    );
    // Its starter may not approve it here, even as an admin.
    let own = wharf_as(
        stack.path(),
        &alice,
        &["runbook", "approve", "1", "--reason", "mine"],
    );
    assert_eq!(own.status.code(), Some(2), "{}", text(&own));
    assert!(text(&own).contains("four-eyes"), "{}", text(&own));
    // The step needs two approvers, as a deploy here does: bob's is one, and only one.
    let first = wharf_as(
        stack.path(),
        &bob,
        &[
            "runbook", "approve", "1", "--reason", "ok", "--output", "json",
        ],
    );
    assert!(first.status.success(), "{}", text(&first));
    let run = json(&String::from_utf8_lossy(&first.stdout));
    assert_eq!(run["state"], "waiting_approval", "{run}");
    assert_eq!(run["steps"][0]["approvals"][0]["actor"], "bob", "{run}");
    let twice = wharf_as(
        stack.path(),
        &bob,
        &["runbook", "approve", "1", "--reason", "again"],
    );
    assert_eq!(twice.status.code(), Some(2), "{}", text(&twice));
    assert!(
        text(&twice).contains("already approved"),
        "{}",
        text(&twice)
    );
    let other = wharf_as(
        stack.path(),
        &carol,
        &["runbook", "approve", "1", "--reason", "ok"],
    );
    // Carol's is the second (the command then reports the run, which fails at once: exit 1).
    assert_ne!(other.status.code(), Some(2), "{}", text(&other));
    assert!(
        text(&other).contains("approved by carol"),
        "{}",
        text(&other)
    );
    // Its deploy step is refused: a runbook is no way around the deploy's own approvals.
    eventually(
        "the run to fail at its deploy",
        std::time::Duration::from_secs(30),
        || {
            let runs = stack.wharf(&["runbook", "runs", "--output", "json"]);
            let text = String::from_utf8_lossy(&runs.stdout).into_owned();
            (text.contains("\"failed\"") && text.contains("needs 2 approval")).then_some(())
        },
    );
    assert!(actions(&stack.ledger(), "deploy.start").is_empty());
}

#[test]
fn a_manifest_reload_can_neither_ship_a_version_nor_loosen_require_in_a_governed_environment() {
    let manifest = MANIFEST.replace("WEB_PORT", &free_port().to_string());
    let stack = Stack::new(&manifest);
    let up = stack.wharf(&["up", "-d", "--env", "prod", "--wait-timeout", "60s"]);
    assert!(up.status.success(), "{}", text(&up));
    let file = stack.path().join("wharf.yaml");
    let original = std::fs::read_to_string(&file).unwrap();

    std::fs::write(&file, original.replace("version: \"1\"", "version: \"2\"")).unwrap();
    let shipped = stack.wharf(&["up", "-d", "--env", "prod"]);
    assert!(!shipped.status.success(), "{}", text(&shipped));
    assert!(text(&shipped).contains("`web` 1 → 2"), "{}", text(&shipped));

    std::fs::write(
        &file,
        original.replace(
            "require: {approvals: 2, gates: [release]}",
            "require: {gates: [release]}",
        ),
    )
    .unwrap();
    let loosened = stack.wharf(&["up", "-d", "--env", "prod"]);
    assert!(!loosened.status.success(), "{}", text(&loosened));
    assert!(
        text(&loosened).contains("approvals 2 → 0"),
        "{}",
        text(&loosened)
    );

    // Nothing changed: still version 1, no deploy, no reload recorded.
    let ledger = stack.ledger();
    assert!(actions(&ledger, "deploy.start").is_empty());
    assert!(actions(&ledger, "stack.reload").is_empty());
    assert_eq!(stack.service("web")["version"], "1");
}

#[test]
fn a_restart_with_a_manifest_naming_an_undeployed_version_runs_the_deployed_one() {
    let port = free_port();
    let manifest = format!(
        r#"name: shop
services:
  web:
    command: [TESTBED, --port, "${{PORT}}", --version, "${{VERSION}}"]
    version: "1"
    port: {port}
    probes:
      ready: {{http: {{path: /ready}}, interval: 200ms}}
    rollout:
      strategy: canary
      steps: [{{weight: 100}}]
      analysis: {{min_requests: 0}}
      deadlines: {{drain: 1s}}
environments:
  prod:
    require: {{approvals: 1}}
"#
    );
    let stack = Stack::new(&manifest);
    let up = stack.wharf(&["up", "-d", "--env", "prod", "--wait-timeout", "60s"]);
    assert!(up.status.success(), "{}", text(&up));
    let bob = create_token(&stack, "bob", "approver");
    let olga = create_token(&stack, "olga", "operator");
    let asked = wharf_as(stack.path(), &olga, &["deploy", "web", "--version", "2"]);
    assert!(asked.status.success(), "{}", text(&asked));
    let approved = wharf_as(stack.path(), &bob, &["approve", "r-1", "--reason", "ok"]);
    assert!(approved.status.success(), "{}", text(&approved));
    eventually(
        "the deploy to succeed",
        std::time::Duration::from_secs(60),
        || {
            // The analysis wants a request on the new version before it judges.
            let _ = get(port, "/");
            (!actions(&stack.ledger(), "deploy.succeeded").is_empty()).then_some(())
        },
    );
    let down = stack.wharf(&["down"]);
    assert!(down.status.success(), "{}", text(&down));
    eventually(
        "the control plane to exit",
        std::time::Duration::from_secs(30),
        || stack.control_pid().is_none().then_some(()),
    );
    // Someone edits the manifest to a version nobody deployed, and starts the stack again.
    let file = stack.path().join("wharf.yaml");
    let text_now = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text_now.replace("version: \"1\"", "version: \"3\"")).unwrap();
    let again = stack.wharf(&["up", "-d", "--env", "prod", "--wait-timeout", "60s"]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(
        stack.service("web")["version"],
        "2",
        "the deployed version runs"
    );
    let held = actions(&stack.ledger(), "deploy.held");
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["details"]["manifest"], "3");
    assert_eq!(held[0]["details"]["running"], "2");
}
