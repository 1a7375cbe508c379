//! `wharf cluster serve`, the controller wharf's Helm chart runs, as real processes against
//! a fake API server (no Kubernetes API server can run here: `wharf-fake-apiserver` answers
//! apply, patch and watch over real HTTP), a fake Prometheus (the Gateway implementation's
//! metrics cannot run here either), and a real PostgreSQL per test for the shared state.
//!
//! Two replicas elect a leader on the lease; a deploy sent to the standby is forwarded to the
//! leader; the leader killed with SIGKILL mid-rollout is replaced by the standby, which
//! resumes the rollout from its saved step — the HTTPRoute gets exactly 10/25/50/100, no step
//! twice — while the client that started it follows it to the end through the survivor. A
//! standby serves the reads (status, the rollout, the audit log and its verification).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{eventually, free_port, wharf_bin};
use serde_json::{Value, json};
use wharf_fake_apiserver::prometheus::FakePrometheus;
use wharf_fake_apiserver::{FakeApiServer, route_patches};
use wharf_store::testing::PgServer;

const NS: &str = "shop";
const TOKEN: &str = "test-api-token-0123456789";

fn manifest(pause: &str) -> String {
    format!(
        r#"
name: shop
services:
  api:
    image: registry.example.com/api:1.0
    port: 8080
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

/// A replica of the controller; killed when dropped.
struct Replica {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Replica {
    fn pid(&self) -> i64 {
        i64::from(self.child.id())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /health`'s answer, once the replica answers.
    fn health(&self) -> Option<Value> {
        let (status, body) = request(self.port, "GET", "/health", None, None)?;
        (status == 200).then_some(body)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Setup {
    dir: tempfile::TempDir,
    fake: FakeApiServer,
    prometheus: FakePrometheus,
    /// `WHARF_STATE_DSN`, when the state is in PostgreSQL.
    dsn: Option<String>,
    _postgres: Option<PgServer>,
}

impl Setup {
    async fn new(pause: &str, postgres: bool) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("wharf.yaml"), manifest(pause)).unwrap();
        let fake = FakeApiServer::start().await;
        fake.auto_available(true);
        std::fs::write(dir.path().join("kubeconfig"), fake.kubeconfig(NS)).unwrap();
        let prometheus = FakePrometheus::start().await;
        let (dsn, server) = if postgres {
            // The server's setup uses a blocking client, which must not run on the runtime.
            let (server, dsn) = tokio::task::spawn_blocking(common::postgres_database)
                .await
                .unwrap();
            (Some(dsn), Some(server))
        } else {
            (None, None)
        };
        Setup {
            dir,
            fake,
            prometheus,
            dsn,
            _postgres: server,
        }
    }

    fn command(&self, state: &str) -> Command {
        let mut command = Command::new(wharf_bin());
        command
            .current_dir(self.dir.path())
            .args(["--state-dir", state])
            .env("NO_COLOR", "1")
            .env("WHARF_ACTOR", "tester")
            .env_remove("WHARF_MASTER_KEY")
            .env_remove("WHARF_TOKEN")
            .env_remove("WHARF_CONTROLLER")
            .env_remove("KUBECONFIG")
            .env_remove("POD_IP")
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE");
        if let Some(dsn) = &self.dsn {
            command.env("WHARF_STATE_DSN", dsn);
        }
        command
    }

    /// Runs a one-shot `wharf` command against the first replica's state directory.
    fn wharf(&self, args: &[&str]) -> std::process::Output {
        self.command("state-a")
            .args(args)
            .env("WHARF_API_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn apply(&self) {
        let apply = self.wharf(&[
            "cluster",
            "apply",
            "--kubeconfig",
            "kubeconfig",
            "--gateway",
            "infra/edge",
        ]);
        assert!(apply.status.success(), "{}", text(&apply));
    }

    /// Starts a replica with its own state directory (as a pod has its own emptyDir).
    fn replica(&self, state: &str) -> Replica {
        self.replica_with(state, &[])
    }

    fn replica_with(&self, state: &str, extra: &[&str]) -> Replica {
        let port = free_port();
        let log = self.dir.path().join(format!("{state}.log"));
        let listen = format!("127.0.0.1:{port}");
        let child = self
            .command(state)
            .args([
                "cluster",
                "serve",
                "--kubeconfig",
                "kubeconfig",
                "--listen",
                &listen,
                "--lease-ttl",
                "2s",
                "--interval",
                "100ms",
                "--drain-grace",
                "0s",
                "--prometheus",
                &self.prometheus.url,
                "--requests-query",
                "requests{b=\"{workload}\"}",
                "--errors-query",
                "errors{b=\"{workload}\"}",
            ])
            .args(extra)
            .env("WHARF_API_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Replica { child, port, log }
    }

    /// A one-shot CLI command as a client of the controller (its own state directory).
    fn client(&self, args: &[&str]) -> std::process::Output {
        self.command("state-client")
            .args(args)
            .env("WHARF_API_TOKEN", TOKEN)
            .output()
            .unwrap()
    }

    /// `wharf cluster deploy api --version V` through the controller named by
    /// `$WHARF_CONTROLLER`, following the rollout until it ends.
    fn deploy_through(&self, controller: &str, version: &str) -> Child {
        self.command("state-client")
            .args(["cluster", "deploy", "api", "--version", version])
            .env("WHARF_CONTROLLER", controller)
            .env("WHARF_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn patches(&self) -> Vec<Vec<(String, u64)>> {
        route_patches(&self.fake.log(), "api")
    }
}

fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn weights(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    pairs.iter().map(|(n, w)| ((*n).to_owned(), *w)).collect()
}

/// One HTTP/1.1 request on a fresh connection: the status and the JSON body (`Null` when
/// the body is not JSON); `None` when nothing answers.
fn request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Option<(u16, Value)> {
    request_with(port, method, path, token, body, "")
}

/// [`request`] with `extra` header lines (each ending in `\r\n`).
fn request_with(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    extra: &str,
) -> Option<(u16, Value)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{auth}{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    let status = raw.split(' ').nth(1)?.parse().ok()?;
    let body = raw.split_once("\r\n\r\n")?.1;
    Some((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

fn wait_for_role(replica: &Replica, role: &str) -> Value {
    eventually(
        &format!("a replica with role {role}"),
        Duration::from_secs(60),
        || {
            let health = replica.health()?;
            (health["role"] == role).then_some(health)
        },
    )
}

fn ledger(dir: &Path, setup: &Setup) -> Vec<Value> {
    let output = setup
        .command("state-a")
        .current_dir(dir)
        .args(["--output", "json", "audit", "log"])
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
async fn a_killed_leader_controller_is_replaced_and_its_rollout_resumes_with_no_extra_patch_against_fake_apiserver()
 {
    let setup = Setup::new("1500ms", true).await;
    setup.apply();
    // The ledger's key made and pinned once, so any replica can verify the ledger.
    let verify = setup.wharf(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", text(&verify));

    let first = setup.replica("state-a");
    let leader = wait_for_role(&first, "leader");
    let second = setup.replica("state-b");
    let standby = wait_for_role(&second, "standby");
    assert_eq!(standby["leader"], leader["replica"], "{standby}");
    // Another namespace's controller on the same database elects its own leader.
    let elsewhere = setup.replica_with("state-x", &["--namespace", "staging"]);
    let other = wait_for_role(&elsewhere, "leader");
    assert_eq!(other["namespace"], "staging");
    assert_eq!(
        wait_for_role(&first, "leader")["replica"],
        leader["replica"]
    );
    drop(elsewhere);
    let dsn = setup.dsn.clone().unwrap();
    let password = dsn.split(':').nth(2).unwrap().split('@').next().unwrap();

    // The deploy goes to the standby, which forwards it to the leader; the client follows.
    let controller = format!("http://127.0.0.1:{}", second.port);
    let client = setup
        .command("state-client")
        .args([
            "cluster",
            "deploy",
            "api",
            "--version",
            "2.0",
            "--controller",
            &controller,
        ])
        .env("WHARF_API_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually("the 25 % step", Duration::from_secs(60), || {
        (setup.patches().len() == 2).then_some(())
    });
    common::kill9(first.pid());
    assert_eq!(setup.patches().len(), 2);

    let took_over = wait_for_role(&second, "leader");
    assert_eq!(took_over["replica"], standby["replica"]);
    let output = client.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}\n--- leader:\n{}\n--- standby:\n{}",
        text(&output),
        first.log(),
        second.log()
    );
    assert!(
        text(&output).contains("api 2.0: succeeded"),
        "{}",
        text(&output)
    );
    assert_eq!(
        setup.patches(),
        vec![
            weights(&[("api-1-0", 90), ("api-2-0", 10)]),
            weights(&[("api-1-0", 75), ("api-2-0", 25)]),
            // Resumed at 25 % by the new leader, found in place: no second 25 % patch.
            weights(&[("api-1-0", 50), ("api-2-0", 50)]),
            weights(&[("api-1-0", 0), ("api-2-0", 100)]),
            weights(&[("api-2-0", 100)]),
        ],
        "--- standby:\n{}",
        second.log()
    );
    assert!(second.log().contains("resuming the rollout of api to 2.0"));
    assert_eq!(
        setup.fake.names(NS, "deployments"),
        vec!["api-2-0".to_owned()]
    );

    // The ledger: both leaders, the resume by the second, the end.
    let entries = ledger(setup.dir.path(), &setup);
    let leaders: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "control.leader")
        .collect();
    let holders: Vec<&str> = leaders
        .iter()
        .map(|e| e["details"]["holder"].as_str().unwrap_or(""))
        .collect();
    assert!(
        holders.contains(&leader["replica"].as_str().unwrap())
            && holders.contains(&standby["replica"].as_str().unwrap()),
        "{holders:?}"
    );
    let resumed = entries
        .iter()
        .find(|e| e["action"] == "deploy.resume")
        .expect("a deploy.resume entry");
    assert!(
        standby["replica"]
            .as_str()
            .unwrap()
            .starts_with(resumed["actor"].as_str().unwrap()),
        "{resumed}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "deploy.start" && e["actor"] == "api-token"),
        "the deploy is recorded as the token holder's"
    );

    // A new standby serves the reads: status, the rollout, the ledger and its verification.
    let third = setup.replica("state-c");
    wait_for_role(&third, "standby");
    let (status, view) =
        request(third.port, "GET", "/v1/cluster/status", Some(TOKEN), None).unwrap();
    assert_eq!(status, 200, "{view}");
    let api = &view["services"][0];
    assert_eq!(api["rollout"]["to"], "2.0", "{view}");
    assert_eq!(api["rollout"]["outcome"]["result"], "succeeded", "{view}");
    assert_eq!(api["route"], json!([{"backend": "api-2-0", "weight": 100}]));
    let third_url = format!("http://127.0.0.1:{}", third.port);
    let status_cli = setup.client(&["cluster", "status", "--controller", &third_url]);
    assert!(status_cli.status.success(), "{}", text(&status_cli));
    let table = text(&status_cli);
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["api", "2.0", "1/1", "100", "to", "2.0", "(succeeded)"]),
        "{table}"
    );
    let (status, page) = request(
        third.port,
        "GET",
        "/v1/audit/entries?limit=500",
        Some(TOKEN),
        None,
    )
    .unwrap();
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["entries"][0]["action"], "deploy.succeeded", "{page}");
    let (status, verified) =
        request(third.port, "GET", "/v1/audit/verify", Some(TOKEN), None).unwrap();
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["ok"], true, "{verified}");

    // A write a standby gets already forwarded (leadership moved in between) is refused,
    // not forwarded again: no loop between replicas, nothing started.
    let (status, answer) = request_with(
        third.port,
        "POST",
        "/v1/cluster/rollouts",
        Some(TOKEN),
        Some(r#"{"service": "api", "version": "3.0"}"#),
        "x-wharf-forwarded-by: another-replica\r\n",
    )
    .unwrap();
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (503, Some("no_leader")),
        "{answer}"
    );
    let (_, view) = request(
        second.port,
        "GET",
        "/v1/cluster/rollouts/api",
        Some(TOKEN),
        None,
    )
    .unwrap();
    assert_eq!(view["to"], "2.0", "no rollout to 3.0 was started: {view}");

    // SIGTERM (the controller's own rolling update) mid-rollout: the leader stops its
    // rollout, gives the lease up and exits 0; the standby takes over and finishes it —
    // nothing is rolled back.
    let before = setup.patches().len();
    let (status, answer) = request(
        third.port,
        "POST",
        "/v1/cluster/rollouts",
        Some(TOKEN),
        Some(r#"{"service": "api", "version": "3.0"}"#),
    )
    .unwrap();
    assert_eq!(status, 202, "{answer}");
    eventually(
        "the 3.0 rollout's 10 % step",
        Duration::from_secs(60),
        || (setup.patches().len() == before + 1).then_some(()),
    );
    let mut second = second;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(second.child.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let stopped = second.child.wait().unwrap();
    assert!(stopped.success(), "{}", second.log());
    assert!(
        second.log().contains("stopping: the rollouts stay"),
        "{}",
        second.log()
    );
    wait_for_role(&third, "leader");
    let done = eventually("the 3.0 rollout to end", Duration::from_secs(60), || {
        let (status, view) = request(
            third.port,
            "GET",
            "/v1/cluster/rollouts/api",
            Some(TOKEN),
            None,
        )?;
        (status == 200 && view["done"] == true).then_some(view)
    });
    assert_eq!(
        done["outcome"]["result"],
        "succeeded",
        "{done}\n{}",
        third.log()
    );
    assert_eq!(
        setup.patches()[before..],
        [
            weights(&[("api-2-0", 90), ("api-3-0", 10)]),
            weights(&[("api-2-0", 75), ("api-3-0", 25)]),
            weights(&[("api-2-0", 50), ("api-3-0", 50)]),
            weights(&[("api-2-0", 0), ("api-3-0", 100)]),
            weights(&[("api-3-0", 100)]),
        ],
        "--- stopped leader:\n{}\n--- new leader:\n{}",
        second.log(),
        third.log()
    );

    // The database's password is in no replica's log.
    for replica in [&first, &second, &third] {
        assert!(!replica.log().contains(password));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_api_checks_tokens_and_requests_and_an_abort_puts_stable_at_100_in_one_patch_against_fake_apiserver()
 {
    // One replica on the state directory's SQLite.
    let setup = Setup::new("10m", false).await;
    setup.apply();
    let viewer = setup.wharf(&["token", "create", "watcher", "--role", "viewer"]);
    assert!(viewer.status.success(), "{}", text(&viewer));
    let viewer = String::from_utf8_lossy(&viewer.stdout).trim().to_owned();
    let replica = setup.replica("state-a");
    wait_for_role(&replica, "leader");
    let port = replica.port;
    let deploy = r#"{"service": "api", "version": "2.0"}"#;

    // No token, a wrong one, a viewer's for a change: refused, nothing sent to the cluster.
    let (status, body) = request(port, "POST", "/v1/cluster/rollouts", None, Some(deploy)).unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, _) = request(
        port,
        "POST",
        "/v1/cluster/rollouts",
        Some("wrong-token-wrong-token"),
        Some(deploy),
    )
    .unwrap();
    assert_eq!(status, 401);
    let (status, body) = request(
        port,
        "POST",
        "/v1/cluster/rollouts",
        Some(&viewer),
        Some(deploy),
    )
    .unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (status, _) = request(port, "GET", "/v1/cluster/status", Some(&viewer), None).unwrap();
    assert_eq!(status, 200, "a viewer reads");
    // Bad requests: named, refused.
    for (body, code, what) in [
        ("{not json", 400, "invalid deploy request"),
        (r#"{"service": "api"}"#, 400, "missing field `version`"),
        (
            r#"{"service": "api", "version": "2.0", "x": 1}"#,
            400,
            "unknown field `x`",
        ),
        (
            r#"{"service": "api", "version": "a b"}"#,
            400,
            "not an image tag",
        ),
        (
            r#"{"service": "nope", "version": "2.0"}"#,
            404,
            "not in the manifest",
        ),
    ] {
        let (status, answer) = request(
            port,
            "POST",
            "/v1/cluster/rollouts",
            Some(TOKEN),
            Some(body),
        )
        .unwrap();
        assert_eq!(status, code, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(what), "{body}: {answer}");
    }
    let (status, answer) = request(
        port,
        "POST",
        "/v1/cluster/rollouts/api/abort",
        Some(TOKEN),
        None,
    )
    .unwrap();
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (404, Some("no_rollout"))
    );
    assert!(
        setup.patches().is_empty(),
        "nothing was sent to the cluster"
    );

    // A deploy, then an abort mid-pause through the CLI's --controller.
    let controller = format!("http://127.0.0.1:{port}");
    let client = setup.deploy_through(&controller, "2.0");
    eventually("the 10 % step", Duration::from_secs(60), || {
        (setup.patches().len() == 1).then_some(())
    });
    // The same request again: the rollout under way, not a second one.
    let (status, answer) = request(
        port,
        "POST",
        "/v1/cluster/rollouts",
        Some(TOKEN),
        Some(deploy),
    )
    .unwrap();
    assert_eq!(
        (status, &answer["started"]),
        (200, &json!(false)),
        "{answer}"
    );
    // Another version while one is under way: refused.
    let (status, answer) = request(
        port,
        "POST",
        "/v1/cluster/rollouts",
        Some(TOKEN),
        Some(r#"{"service": "api", "version": "3.0"}"#),
    )
    .unwrap();
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("rejected")),
        "{answer}"
    );
    let abort = setup.client(&[
        "cluster",
        "abort",
        "api",
        "--controller",
        &controller,
        "--reason",
        "p99 regression",
    ]);
    assert!(abort.status.success(), "{}", text(&abort));
    let output = client.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("rolled back (p99 regression)"),
        "{}\n{}",
        text(&output),
        replica.log()
    );
    assert_eq!(
        setup.patches(),
        vec![
            weights(&[("api-1-0", 90), ("api-2-0", 10)]),
            weights(&[("api-1-0", 100), ("api-2-0", 0)]),
            weights(&[("api-1-0", 100)]),
        ]
    );

    // A second rollout, followed by its own id: the first one's outcome (rolled back) is
    // not reported for it; promoted, it succeeds.
    let second = setup.deploy_through(&controller, "3.0");
    eventually(
        "the second rollout's 10 % step",
        Duration::from_secs(60),
        || (setup.patches().len() == 4).then_some(()),
    );
    let promote = setup.client(&["cluster", "promote", "api", "--controller", &controller]);
    assert!(promote.status.success(), "{}", text(&promote));
    let output = second.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        text(&output),
        replica.log()
    );
    assert!(
        text(&output).contains("api 3.0: succeeded"),
        "{}",
        text(&output)
    );
    assert_eq!(
        setup.patches()[3..],
        [
            weights(&[("api-1-0", 90), ("api-3-0", 10)]),
            weights(&[("api-1-0", 0), ("api-3-0", 100)]),
            weights(&[("api-3-0", 100)]),
        ]
    );
    // Flags that choose a cluster are the controller's: refused with --controller.
    let namespaced = setup.client(&[
        "cluster",
        "status",
        "--controller",
        &controller,
        "--namespace",
        "x",
    ]);
    assert_eq!(namespaced.status.code(), Some(2), "{}", text(&namespaced));
    assert!(
        text(&namespaced).contains("--namespace"),
        "{}",
        text(&namespaced)
    );
    assert!(!replica.log().contains(TOKEN), "the token is in no log");
}

#[test]
fn serve_refuses_a_short_token_and_an_unreachable_advertised_address() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wharf.yaml"), manifest("1s")).unwrap();
    let run = |token: &str, listen: &str| {
        Command::new(wharf_bin())
            .current_dir(dir.path())
            .args(["cluster", "serve", "--listen", listen])
            .env("WHARF_API_TOKEN", token)
            .env_remove("POD_IP")
            .env_remove("WHARF_STATE_DSN")
            .output()
            .unwrap()
    };
    let short = run("short", "127.0.0.1:0");
    assert_eq!(short.status.code(), Some(2), "{}", text(&short));
    assert!(text(&short).contains("at least 16 characters"));
    let everywhere = run(TOKEN, "0.0.0.0:7070");
    assert_eq!(everywhere.status.code(), Some(2), "{}", text(&everywhere));
    assert!(
        text(&everywhere).contains("--advertise"),
        "{}",
        text(&everywhere)
    );
    assert!(!dir.path().join(".wharf").exists(), "nothing was created");
}
