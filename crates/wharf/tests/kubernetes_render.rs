//! `wharf render --target kubernetes` through the real binary, each rendering checked against
//! the published schemas: Kubernetes' own (strict: an unknown field is an error) through
//! `kubernetes-validate` from PyPI, and the Gateway API's HTTPRoute through the
//! `@kubernetes-models/gateway-api` package from npm — both installed by `scripts/test`.
//! No cluster is involved: these check what is rendered, not how a cluster runs it.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use assert_cmd::Command;
use common::kubernetes_validate;
use serde_json::Value;

fn wharf(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("wharf").expect("wharf binary is built");
    cmd.current_dir(dir)
        .env_remove("WHARF_STATE_DIR")
        .env("NO_COLOR", "1");
    cmd
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/shop/wharf.yaml")
}

/// Where `scripts/test` installs the npm packages the tests use.
fn npm_dir() -> PathBuf {
    std::env::var_os("WHARF_TEST_NPM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/wharf-test-npm")
        })
}

fn render(args: &[&str]) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let output = wharf(dir.path())
        .args(["render", "--target", "kubernetes", "-f"])
        .arg(example())
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    (String::from_utf8(output.stdout).unwrap(), stderr)
}

/// Validates each HTTPRoute in `routes` with the Gateway API's JSON schema.
fn gateway_validate(routes: &[Value]) -> (bool, String) {
    let script = r#"
import { HTTPRoute } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute";
import fs from "fs";
let bad = 0;
for (const doc of JSON.parse(fs.readFileSync(0, "utf8"))) {
  try { new HTTPRoute(doc).validate(); console.log("valid", doc.metadata.name); }
  catch (e) { bad++; console.log("invalid", doc.metadata.name, e.message); }
}
process.exit(bad ? 1 : 0);
"#;
    let dir = npm_dir();
    assert!(
        dir.join("node_modules/@kubernetes-models/gateway-api")
            .is_dir(),
        "{} has no @kubernetes-models/gateway-api: scripts/test installs it",
        dir.display()
    );
    let script_path = dir.join("validate-httproute.mjs");
    std::fs::write(&script_path, script).unwrap();
    let mut child = Process::new("node")
        .arg(&script_path)
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(routes).unwrap().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn the_example_stack_renders_objects_that_pass_the_strict_kubernetes_schemas() {
    let (yaml, notes) = render(&["--env", "cluster"]);
    for expected in [
        "kind: Deployment\n",
        "name: api-1-4-0\n",
        "kind: PodDisruptionBudget\n",
        "kind: Job\n",
        "kind: Service\n",
        "kind: Secret\n",
    ] {
        assert!(yaml.contains(expected), "missing {expected:?} in:\n{yaml}");
    }
    // What a cluster does differently is said on stderr, never in the YAML.
    assert!(notes.contains("note: service `cache`"), "{notes}");
    assert!(!yaml.contains("note:"));

    let (valid, report) = kubernetes_validate(&yaml);
    assert!(valid, "{report}\n{yaml}");

    // The validator is strict: one unknown field in one object fails the file.
    let broken = yaml.replacen("  replicas: 3\n", "  replicas: 3\n  replicaz: 3\n", 1);
    assert_ne!(broken, yaml);
    let (valid, report) = kubernetes_validate(&broken);
    assert!(!valid && report.contains("replicaz"), "{report}");
}

#[test]
fn with_a_gateway_the_routes_pass_the_gateway_api_schema() {
    let (text, _) = render(&[
        "--env",
        "cluster",
        "--gateway",
        "infra/edge",
        "--namespace",
        "shop",
        "--output",
        "json",
    ]);
    let list: Value = serde_json::from_str(&text).unwrap();
    let items = list["items"].as_array().unwrap();
    let (routes, core): (Vec<Value>, Vec<Value>) = items
        .iter()
        .cloned()
        .partition(|item| item["kind"] == "HTTPRoute");
    let names: Vec<&str> = routes
        .iter()
        .map(|r| r["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["db", "api"]);
    assert_eq!(
        routes[1]["spec"]["rules"][0]["backendRefs"][0]["name"],
        "api-1-4-0"
    );

    let (valid, report) = gateway_validate(&routes);
    assert!(valid, "{report}");
    // The schema holds the Gateway API's bounds: a weight past 1,000,000 is refused.
    let mut heavy = routes[1].clone();
    heavy["spec"]["rules"][0]["backendRefs"][0]["weight"] = Value::from(1_000_001);
    let (valid, report) = gateway_validate(&[heavy]);
    assert!(!valid && report.contains("weight"), "{report}");

    // Every other object, the per-version Services included, passes the strict schemas.
    // JSON is YAML: one document per object.
    let documents: Vec<String> = core.iter().map(|o| o.to_string()).collect();
    let (valid, report) = kubernetes_validate(&documents.join("\n---\n"));
    assert!(valid, "{report}");
    assert!(core.iter().all(|o| o["metadata"]["namespace"] == "shop"));
}

#[test]
fn what_a_cluster_cannot_run_is_refused_with_exit_2_and_nothing_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    // The base stack runs local commands: no image for a cluster.
    let output = wharf(dir.path())
        .args(["render", "--target", "kubernetes", "-f"])
        .arg(example())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    for service in ["db", "api", "worker"] {
        assert!(
            stderr.contains(&format!("service `{service}` runs a local command")),
            "{stderr}"
        );
    }
    // Flags for Kubernetes without the target, and names Kubernetes refuses, are usage errors.
    let output = wharf(dir.path())
        .args(["render", "--gateway", "edge", "-f"])
        .arg(example())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("need `--target kubernetes`"));
    let output = wharf(dir.path())
        .args([
            "render",
            "--target",
            "kubernetes",
            "--namespace",
            "Shop_Prod",
            "-f",
        ])
        .arg(example())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not a Kubernetes name"));
}

#[test]
fn with_wharfs_router_the_objects_pass_the_strict_kubernetes_schemas() {
    let (yaml, notes) = render(&[
        "--env",
        "cluster",
        "--router",
        "wharf",
        "--router-image",
        "registry.example.com/wharf-proxy:0.1",
        "--namespace",
        "shop",
    ]);
    for expected in [
        "name: api-router\n",
        "kind: ConfigMap\n",
        "app.kubernetes.io/component: router\n",
        "name: shop-router\n",
        "- \"--admin-listen\"\n",
    ] {
        assert!(yaml.contains(expected), "missing {expected:?} in:\n{yaml}");
    }
    assert!(!yaml.contains("kind: HTTPRoute"), "{yaml}");
    assert!(
        notes.contains("its router's table (ConfigMap `api-router`)"),
        "{notes}"
    );
    let (valid, report) = kubernetes_validate(&yaml);
    assert!(valid, "{report}\n{yaml}");
    // Strict on the router's objects too: an unknown field in its Deployment fails the file.
    let broken = yaml.replacen(
        "          env:\n            - name: WHARF_PROXY_ADMIN_TOKEN\n",
        "          adminListen: x\n          env:\n            - name: WHARF_PROXY_ADMIN_TOKEN\n",
        1,
    );
    assert_ne!(broken, yaml);
    let (valid, report) = kubernetes_validate(&broken);
    assert!(!valid && report.contains("adminListen"), "{report}");
}
