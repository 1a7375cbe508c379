//! `wharf cluster …` as a user runs it, against a fake API server (no Kubernetes API server can
//! run on these machines: `wharf-fake-apiserver` stores objects and answers apply, patch and
//! watch over real HTTP) and a fake Prometheus (a loopback server answering the query API with
//! counters the test sets — the Gateway implementation whose metrics it stands for cannot run
//! here either). The wharf process is real, and so is its kill -9.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use wharf_fake_apiserver::prometheus::FakePrometheus;
use wharf_fake_apiserver::{FakeApiServer, route_patches};

const NS: &str = "shop";
const SECRET_VALUE: &str = "s3cr3t-db-passw0rd";

fn wharf_bin() -> &'static str {
    env!("CARGO_BIN_EXE_wharf")
}

fn manifest(pause: &str) -> String {
    format!(
        r#"
name: shop
secrets:
  DB_PASSWORD: {{}}
services:
  api:
    image: registry.example.com/api:1.0
    port: 8080
    env:
      DATABASE_URL: "postgres://app:${{secret:DB_PASSWORD}}@db:5432/app"
    rollout:
      strategy: canary
      steps:
        - {{weight: 10, pause: {pause}}}
        - {{weight: 25, pause: {pause}}}
        - {{weight: 50, pause: {pause}}}
        - {{weight: 100}}
      analysis: {{max_error_rate: 5%, min_requests: 20}}
"#
    )
}

struct Setup {
    dir: tempfile::TempDir,
    fake: FakeApiServer,
    prometheus: FakePrometheus,
}

impl Setup {
    async fn new(pause: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("wharf.yaml"), manifest(pause)).unwrap();
        let fake = FakeApiServer::start().await;
        fake.auto_available(true);
        std::fs::write(dir.path().join("kubeconfig"), fake.kubeconfig(NS)).unwrap();
        let prometheus = FakePrometheus::start().await;
        Setup {
            dir,
            fake,
            prometheus,
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(wharf_bin());
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .env("WHARF_ACTOR", "tester")
            .env_remove("WHARF_MASTER_KEY")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    async fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self.command(args).spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        let _ = input.write_all(stdin.as_bytes()).await;
        drop(input);
        child.wait_with_output().await.unwrap()
    }

    fn deploy_args(&self) -> Vec<String> {
        [
            "cluster",
            "deploy",
            "api",
            "--version",
            "2.0",
            "--kubeconfig",
            "kubeconfig",
            "--prometheus",
            &self.prometheus.url,
            "--requests-query",
            "requests{b=\"{workload}\"}",
            "--errors-query",
            "errors{b=\"{workload}\"}",
            "--interval",
            "100ms",
            "--drain-grace",
            "0s",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    }

    async fn apply(&self) {
        let set = self
            .run(&["secret", "set", "DB_PASSWORD"], SECRET_VALUE)
            .await;
        assert!(set.status.success(), "{}", text(&set));
        let apply = self
            .run(
                &[
                    "cluster",
                    "apply",
                    "--kubeconfig",
                    "kubeconfig",
                    "--gateway",
                    "infra/edge",
                ],
                "",
            )
            .await;
        assert!(apply.status.success(), "{}", text(&apply));
        assert!(!text(&apply).contains(SECRET_VALUE));
    }

    fn patches(&self) -> Vec<Vec<(String, u64)>> {
        route_patches(&self.fake.log(), "api")
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn weights(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    pairs.iter().map(|(n, w)| ((*n).to_owned(), *w)).collect()
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ledger_actions(dir: &Path) -> Vec<Value> {
    let output = std::process::Command::new(wharf_bin())
        .args(["--output", "json", "audit", "log"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let value: Value = serde_json::from_slice(&output.stdout).unwrap();
    value
        .as_array()
        .or_else(|| value["entries"].as_array())
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_fills_the_secret_from_the_store_and_records_fingerprints_only_against_fake_apiserver()
 {
    let setup = Setup::new("1s").await;
    // Without a stored value: refused, nothing sent.
    let refused = setup
        .run(
            &[
                "cluster",
                "apply",
                "--kubeconfig",
                "kubeconfig",
                "--gateway",
                "infra/edge",
            ],
            "",
        )
        .await;
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains("no value stored for DB_PASSWORD"),
        "{}",
        text(&refused)
    );
    assert!(setup.fake.log().is_empty(), "nothing applied");

    setup.apply().await;
    let secret = setup
        .fake
        .get("api/v1", NS, "secrets", "shop-secrets")
        .unwrap();
    use base64::Engine as _;
    let sent = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["DB_PASSWORD"].as_str().unwrap())
        .unwrap();
    assert_eq!(sent, SECRET_VALUE.as_bytes());
    for record in setup.fake.log() {
        assert_eq!(record.kind, "apply");
        assert_eq!(record.field_manager.as_deref(), Some("wharf"));
    }
    let entries = ledger_actions(setup.dir.path());
    let apply = entries
        .iter()
        .find(|e| e["action"] == "cluster.apply")
        .expect("a cluster.apply entry");
    assert_eq!(apply["target"], NS);
    assert!(apply["details"]["secrets"]["DB_PASSWORD"].is_string());
    let everything = serde_json::to_string(&entries).unwrap();
    assert!(!everything.contains(SECRET_VALUE), "no value in the ledger");
    // Nothing under the state directory holds the value in clear.
    for entry in walk(setup.dir.path()) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !bytes
                .windows(SECRET_VALUE.len())
                .any(|w| w == SECRET_VALUE.as_bytes()),
            "{} holds the value",
            entry.display()
        );
    }

    let status = setup
        .run(
            &[
                "--output",
                "json",
                "cluster",
                "status",
                "--kubeconfig",
                "kubeconfig",
            ],
            "",
        )
        .await;
    assert!(status.status.success(), "{}", text(&status));
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    let api = &status["services"][0];
    assert_eq!(api["service"], "api");
    assert_eq!(api["versions"][0]["version"], "1.0");
    assert_eq!(api["versions"][0]["complete"], true);
    assert_eq!(
        api["route"][0],
        json!({"backend": "api-1-0", "weight": 100})
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.is_file() {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_cluster_deploy_mid_rollout_resumes_from_the_persisted_step_without_an_extra_patch_against_fake_apiserver()
 {
    let setup = Setup::new("1500ms").await;
    setup.apply().await;
    let args = setup.deploy_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut first = setup.command(&args).spawn().unwrap();
    until("the 25 % step", || setup.patches().len() == 2).await;
    let pid = first.id().unwrap() as i32;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let _ = first.wait().await;
    assert_eq!(setup.patches().len(), 2);

    let resumed = setup.run(&args, "").await;
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert!(
        text(&resumed).contains("resuming the rollout of api to 2.0"),
        "{}",
        text(&resumed)
    );
    assert_eq!(
        setup.patches(),
        vec![
            weights(&[("api-1-0", 90), ("api-2-0", 10)]),
            weights(&[("api-1-0", 75), ("api-2-0", 25)]),
            // Resumed at 25 %, found in place: no second 25 % patch.
            weights(&[("api-1-0", 50), ("api-2-0", 50)]),
            weights(&[("api-1-0", 0), ("api-2-0", 100)]),
            weights(&[("api-2-0", 100)]),
        ]
    );
    assert_eq!(
        setup.fake.names(NS, "deployments"),
        vec!["api-2-0".to_owned()]
    );
    let actions: Vec<String> = ledger_actions(setup.dir.path())
        .iter()
        .map(|e| e["action"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(actions.contains(&"deploy.resume".to_owned()), "{actions:?}");
    assert_eq!(actions.last().map(String::as_str), Some("deploy.succeeded"));
    let verify = setup.run(&["audit", "verify"], "").await;
    assert!(verify.status.success(), "{}", text(&verify));
    // Running it again finds the version in place.
    let again = setup.run(&args, "").await;
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(
        text(&again).contains("already runs version 2.0"),
        "{}",
        text(&again)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_abort_mid_pause_puts_stable_at_100_in_one_patch_against_fake_apiserver() {
    let setup = Setup::new("10m").await;
    setup.apply().await;
    let args = setup.deploy_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let deploy = setup.command(&args).spawn().unwrap();
    until("the 10 % step", || setup.patches().len() == 1).await;
    let abort = setup
        .run(
            &[
                "cluster",
                "abort",
                "api",
                "--namespace",
                NS,
                "--reason",
                "p99 regression",
            ],
            "",
        )
        .await;
    assert!(abort.status.success(), "{}", text(&abort));
    let output = deploy.wait_with_output().await.unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("rolled back (p99 regression)"),
        "{}",
        text(&output)
    );
    assert_eq!(
        setup.patches(),
        vec![
            weights(&[("api-1-0", 90), ("api-2-0", 10)]),
            weights(&[("api-1-0", 100), ("api-2-0", 0)]),
            weights(&[("api-1-0", 100)]),
        ]
    );
    assert_eq!(
        setup.fake.names(NS, "deployments"),
        vec!["api-1-0".to_owned()]
    );
    // No rollout is running any more: a second abort says so.
    let late = setup
        .run(&["cluster", "abort", "api", "--namespace", NS], "")
        .await;
    assert_eq!(late.status.code(), Some(1), "{}", text(&late));
    assert!(
        text(&late).contains("no `wharf cluster deploy api` is running"),
        "{}",
        text(&late)
    );
}

/// A workspace binary (the proxy, the testbed), built for this run so it is never stale.
fn sibling(name: &str) -> std::path::PathBuf {
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        let status = std::process::Command::new(env!("CARGO"))
            .args([
                "build",
                "-q",
                "-p",
                "wharf-proxy",
                "-p",
                "wharf-testbed",
                "--bins",
            ])
            .status()
            .unwrap();
        assert!(status.success(), "building the proxy and the testbed");
    });
    let path = Path::new(wharf_bin()).with_file_name(name);
    assert!(path.exists(), "{} missing", path.display());
    path
}

/// A child process killed when dropped.
struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a process; what follows `prefix` on the first line it prints that has it.
fn start_process(mut command: std::process::Command, prefix: &str) -> (Proc, String) {
    use std::io::BufRead;
    let mut child = Proc(
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut stdout = std::io::BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "no `{prefix}` line"
        );
        if let Some(rest) = line.trim().strip_prefix(prefix) {
            let rest = rest.to_owned();
            std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
            return (child, rest);
        }
    }
}

/// The stack behind wharf's router on the fake: `wharf cluster apply --router wharf` run, the
/// router pod a real `wharf-proxy` (a Pod on the fake with `podIP` 127.0.0.1 and its admin
/// port, the token from the Secret apply made, the table from the ConfigMap apply filled), the
/// versions two real testbeds at their Services' cluster IPs (127.0.0.2 and .3, reserved).
struct RouterSetup {
    dir: tempfile::TempDir,
    fake: FakeApiServer,
    port: u16,
    _processes: Vec<Proc>,
}

const ROUTER_IMAGE: &str = "registry.example.com/wharf-proxy:test";

impl RouterSetup {
    async fn new(pause: &str, canary: &[&str]) -> RouterSetup {
        let testbed = |host: &str, port: u16, version: &str, extra: &[&str]| {
            let mut command = std::process::Command::new(sibling("wharf-testbed"));
            command
                .args([
                    "--host",
                    host,
                    "--port",
                    &port.to_string(),
                    "--version",
                    version,
                ])
                .args(extra)
                .env("WHARF_LOG", "warn");
            let (proc, address) = start_process(command, "listening on ");
            (proc, address.parse::<std::net::SocketAddr>().unwrap())
        };
        let (stable, address) = testbed("127.0.0.2", 0, "1.0", &[]);
        let container_port = address.port();
        let (new, _) = testbed("127.0.0.3", container_port, "2.0", canary);
        let port = std::net::TcpListener::bind("0.0.0.0:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("wharf.yaml"),
            format!(
                r#"
name: shop
services:
  api:
    image: registry.example.com/api:1.0
    port: {port}
    container_port: {container_port}
    rollout:
      strategy: canary
      steps:
        - {{weight: 10, pause: {pause}}}
        - {{weight: 25, pause: {pause}}}
        - {{weight: 50, pause: {pause}}}
        - {{weight: 100}}
      analysis: {{max_error_rate: 5%, min_requests: 20}}
"#
            ),
        )
        .unwrap();
        let fake = FakeApiServer::start().await;
        fake.auto_available(true);
        fake.reserve_cluster_ip(NS, "api-1-0", "127.0.0.2");
        fake.reserve_cluster_ip(NS, "api-2-0", "127.0.0.3");
        std::fs::write(dir.path().join("kubeconfig"), fake.kubeconfig(NS)).unwrap();
        let mut setup = RouterSetup {
            dir,
            fake,
            port,
            _processes: vec![stable, new],
        };
        let apply = setup
            .run(&[
                "cluster",
                "apply",
                "--kubeconfig",
                "kubeconfig",
                "--router",
                "wharf",
                "--router-image",
                ROUTER_IMAGE,
            ])
            .await;
        assert!(apply.status.success(), "{}", text(&apply));
        // The router Deployment comes after its table.
        let applied: Vec<String> = setup
            .fake
            .log()
            .iter()
            .filter(|r| r.kind == "apply")
            .map(|r| r.resource.clone())
            .collect();
        let table_at = applied
            .iter()
            .rposition(|r| r == "configmaps/api-router")
            .unwrap();
        let router_at = applied
            .iter()
            .position(|r| r == "deployments/api-router")
            .unwrap();
        assert!(table_at < router_at, "{applied:?}");

        let token = {
            use base64::Engine as _;
            let secret = setup
                .fake
                .get("api/v1", NS, "secrets", "shop-router")
                .unwrap();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(secret["data"]["admin-token"].as_str().unwrap())
                .unwrap();
            String::from_utf8(bytes).unwrap()
        };
        assert!(token.len() >= 32);
        assert!(!text(&apply).contains(&token), "the token is never printed");
        let table = setup
            .fake
            .get("api/v1", NS, "configmaps", "api-router")
            .unwrap()["data"]["table.json"]
            .as_str()
            .unwrap()
            .to_owned();
        let seed = setup.dir.path().join("router-seed.json");
        std::fs::write(&seed, table).unwrap();
        let mut command = std::process::Command::new(sibling("wharf-proxy"));
        command
            .arg("--admin-socket")
            .arg(setup.dir.path().join("router.sock"))
            .arg("--state")
            .arg(setup.dir.path().join("router-state.json"))
            .arg("--seed")
            .arg(&seed)
            .args(["--admin-listen", "127.0.0.1:0"])
            .env("WHARF_PROXY_ADMIN_TOKEN", &token)
            .env("WHARF_LOG", "warn");
        let (proxy, admin) = start_process(command, "admin listen ");
        setup._processes.push(proxy);
        let admin: std::net::SocketAddr = admin.parse().unwrap();
        let labels = setup
            .fake
            .get("apis/apps/v1", NS, "deployments", "api-router")
            .unwrap()["spec"]["template"]["metadata"]["labels"]
            .clone();
        setup.fake.put(
            "api/v1",
            "pods",
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "api-router-6c7b8-q9z2m", "namespace": NS, "labels": labels},
                "spec": {"containers": [{"name": "router", "ports": [
                    {"name": "http", "containerPort": port},
                    {"name": "admin", "containerPort": admin.port()},
                ]}]},
                "status": {"phase": "Running", "podIP": "127.0.0.1"},
            }),
        );
        setup
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(wharf_bin());
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .env("WHARF_ACTOR", "tester")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    async fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().await.unwrap()
    }

    fn deploy_args() -> Vec<&'static str> {
        vec![
            "cluster",
            "deploy",
            "api",
            "--version",
            "2.0",
            "--kubeconfig",
            "kubeconfig",
            "--interval",
            "100ms",
            "--drain-grace",
            "0s",
        ]
    }

    /// The weights of every table PUT to the router pod, in order, each answered 200.
    fn tables(&self) -> Vec<Vec<(String, u64)>> {
        self.fake
            .proxied()
            .iter()
            .filter(|p| p.method == "PUT" && p.path == "/v1/routes")
            .map(|p| {
                assert_eq!(p.status, 200, "{p:?}");
                let table: Value = serde_json::from_str(&p.body).unwrap();
                table["services"]["api"]["versions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| {
                        (
                            v["name"].as_str().unwrap().to_owned(),
                            v["weight"].as_u64().unwrap(),
                        )
                    })
                    .collect()
            })
            .collect()
    }

    fn load(&self) -> wharf_testbed::load::LoadRun {
        wharf_testbed::load::start(wharf_testbed::load::LoadPlan {
            max_duration: Duration::from_secs(120),
            ..wharf_testbed::load::LoadPlan::new(format!("http://127.0.0.1:{}/", self.port), 250.0)
        })
        .unwrap()
    }
}

async fn stop_load(run: wharf_testbed::load::LoadRun) -> wharf_testbed::load::LoadReport {
    tokio::task::spawn_blocking(move || run.stop())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_deploy_through_wharfs_router_moves_its_tables_10_25_50_100_under_load_with_no_failed_request_against_fake_apiserver()
 {
    let setup = RouterSetup::new("1500ms", &[]).await;
    let traffic = setup.load();
    let deploy = setup.run(&RouterSetup::deploy_args()).await;
    let report = stop_load(traffic).await;
    assert!(deploy.status.success(), "{}", text(&deploy));
    assert!(
        text(&deploy).contains("api 2.0: succeeded"),
        "{}",
        text(&deploy)
    );
    assert_eq!(
        setup.tables(),
        vec![
            weights(&[("1.0", 90), ("2.0", 10)]),
            weights(&[("1.0", 75), ("2.0", 25)]),
            weights(&[("1.0", 50), ("2.0", 50)]),
            weights(&[("1.0", 0), ("2.0", 100)]),
            weights(&[("2.0", 100)]),
        ]
    );
    assert_eq!(report.failures(), 0, "{:?}", report.errors());
    let by_version = report.by_version();
    assert!(
        by_version.get("2.0").copied().unwrap_or(0) > 0,
        "{by_version:?}"
    );
    let entries = ledger_actions(setup.dir.path());
    // The verdicts that judged (a `continue` extends a step that has too few requests yet,
    // which depends on how fast this machine is).
    let verdicts: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "deploy.verdict" && e["details"]["verdict"] != "continue")
        .collect();
    assert!(!verdicts.is_empty());
    for verdict in verdicts {
        // Judged on the router's counters: the canary's requests, counted by the proxy.
        assert!(
            verdict["details"]["numbers"]["new"]["requests"]
                .as_u64()
                .unwrap()
                >= 20,
            "{verdict}"
        );
    }
    let status = setup
        .run(&[
            "--output",
            "json",
            "cluster",
            "status",
            "--kubeconfig",
            "kubeconfig",
        ])
        .await;
    assert!(status.status.success(), "{}", text(&status));
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    let api = &status["services"][0];
    assert_eq!(api["versions"].as_array().unwrap().len(), 1, "{api}");
    assert_eq!(api["versions"][0]["version"], "2.0");
    assert_eq!(
        api["route"][0],
        json!({"backend": "api-2-0", "weight": 100})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_canary_behind_wharfs_router_is_rolled_back_with_stable_100_in_one_table_against_fake_apiserver()
 {
    let setup = RouterSetup::new("10s", &["--error-rate", "0.5"]).await;
    let traffic = setup.load();
    let deploy = setup.run(&RouterSetup::deploy_args()).await;
    let report = stop_load(traffic).await;
    assert_eq!(deploy.status.code(), Some(1), "{}", text(&deploy));
    assert!(text(&deploy).contains("rolled back"), "{}", text(&deploy));
    assert_eq!(
        setup.tables(),
        vec![
            weights(&[("1.0", 90), ("2.0", 10)]),
            weights(&[("1.0", 100), ("2.0", 0)]),
            weights(&[("1.0", 100)]),
        ]
    );
    let failures = report.failures_by_version();
    assert_eq!(failures.get("1.0").copied().unwrap_or(0), 0, "{failures:?}");
    assert_eq!(
        setup.fake.names(NS, "deployments"),
        ["api-1-0", "api-router"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_flags_that_do_not_go_together_are_refused_and_change_nothing_against_fake_apiserver()
 {
    let setup = RouterSetup::new("1s", &[]).await;
    let changes = setup.fake.log().len();
    for (args, expected) in [
        (
            &[
                "cluster",
                "apply",
                "--kubeconfig",
                "kubeconfig",
                "--router",
                "wharf",
                "--router-image",
                ROUTER_IMAGE,
                "--gateway",
                "infra/edge",
            ][..],
            "both split the traffic",
        ),
        (
            &[
                "cluster",
                "apply",
                "--kubeconfig",
                "kubeconfig",
                "--router",
                "wharf",
            ][..],
            "needs `--router-image IMAGE`",
        ),
        (
            &[
                "cluster",
                "apply",
                "--kubeconfig",
                "kubeconfig",
                "--router-image",
                ROUTER_IMAGE,
            ][..],
            "`--router-image` goes with `--router wharf`",
        ),
        (
            &[
                "render",
                "--router",
                "wharf",
                "--router-image",
                ROUTER_IMAGE,
            ][..],
            "need `--target kubernetes`",
        ),
        (
            &[
                "render",
                "--target",
                "kubernetes",
                "--router",
                "wharf",
                "--gateway",
                "edge",
            ][..],
            "both split the traffic",
        ),
        (
            &[
                "cluster",
                "deploy",
                "api",
                "--version",
                "2.0",
                "--kubeconfig",
                "kubeconfig",
                "--prometheus",
                "http://127.0.0.1:9",
            ][..],
            "routed by wharf's proxy on the cluster",
        ),
    ] {
        let output = setup.run(args).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", text(&output));
        assert!(
            text(&output).contains(expected),
            "{args:?}: {}",
            text(&output)
        );
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    let wrong = setup
        .run(&[
            "cluster",
            "apply",
            "--kubeconfig",
            "kubeconfig",
            "--router",
            "envoy",
        ])
        .await;
    assert_eq!(wrong.status.code(), Some(2), "{}", text(&wrong));
    assert_eq!(
        setup.fake.log().len(),
        changes,
        "nothing changed on the cluster"
    );
    assert!(setup.fake.proxied().is_empty(), "no table sent");
}
