//! wharf's own proxy as the router on a cluster, against a fake API server (no API server can
//! run on these machines). Everything else is real: a `wharf-proxy` process plays the router
//! pod — the fake lists a Pod whose `podIP` is 127.0.0.1 and whose admin port is the proxy's,
//! and forwards the pod proxy subresource to it —, two `wharf-testbed` processes are the
//! versions behind their Services (cluster IPs 127.0.0.2 and 127.0.0.3, reserved in the fake:
//! nothing plays kube-proxy), and `wharf-load` sends open-loop traffic through the router.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Once};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
mod support;

use support::{MemoryJournal, fast, until, weights};
use wharf_fake_apiserver::FakeApiServer;
use wharf_kube::cluster::Cluster;
use wharf_kube::deploy::{ClusterRollout, Record, Runner, Split, prepare};
use wharf_kube::proxy_router::ProxyRouter;
use wharf_kube::{RouterSpec, Target, render};
use wharf_manifest::{EnvironmentChoice, Stack, load};
use wharf_rollout::Outcome;
use wharf_testbed::load::{LoadPlan, LoadReport, LoadRun};

const NS: &str = "shop";
/// How long a test waits for what it polls.
const WAIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "test-router-token-0123456789abcdef";

/// A workspace binary (the proxy, the testbed), built for this run so it is never stale.
fn bin(name: &str) -> PathBuf {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let status = Command::new(env!("CARGO"))
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
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(path.exists(), "{} missing", path.display());
    path
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a process and returns it with the first line it printed that starts with `prefix`
/// (what follows the prefix).
fn start(mut command: Command, prefix: &str) -> (Proc, String) {
    let mut child = Proc(
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "no `{prefix}` line"
        );
        if let Some(rest) = line.trim().strip_prefix(prefix) {
            let rest = rest.to_owned();
            // The rest of its output is not read: keep the pipe drained.
            std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
            return (child, rest);
        }
    }
}

fn testbed(host: &str, port: u16, version: &str, extra: &[&str]) -> (Proc, SocketAddr) {
    let mut command = Command::new(bin("wharf-testbed"));
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
    let (proc, address) = start(command, "listening on ");
    (proc, address.parse().unwrap())
}

fn manifest(port: u16, container_port: u16, pause: &str, analysis: &str) -> Stack {
    let yaml = format!(
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
      analysis: {{{analysis}}}
"#
    );
    let loaded = load(&yaml, EnvironmentChoice::Default, &|_: &str| None);
    (*loaded.stack.expect("a valid stack")).clone()
}

/// A namespace on the fake with the stack applied for `--router wharf`, one router pod (a
/// real proxy) seeded from its ConfigMap, and both versions' processes running.
struct Setup {
    fake: FakeApiServer,
    cluster: Cluster,
    stack: Stack,
    /// The router's public port (the service's `port:`).
    port: u16,
    _dir: tempfile::TempDir,
    _processes: Vec<Proc>,
}

impl Setup {
    async fn new(pause: &str, canary: &[&str]) -> Setup {
        Setup::with_analysis(
            pause,
            canary,
            "max_error_rate: 5%, min_requests: 20, max_latency_p95: 2s",
        )
        .await
    }

    async fn with_analysis(pause: &str, canary: &[&str], analysis: &str) -> Setup {
        let (stable, stable_address) = testbed("127.0.0.2", 0, "1.0", &[]);
        let container_port = stable_address.port();
        let (new, _) = testbed("127.0.0.3", container_port, "2.0", canary);
        let port = std::net::TcpListener::bind("0.0.0.0:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let stack = manifest(port, container_port, pause, analysis);

        let fake = FakeApiServer::start().await;
        fake.auto_available(true);
        fake.reserve_cluster_ip(NS, "api-1-0", "127.0.0.2");
        fake.reserve_cluster_ip(NS, "api-2-0", "127.0.0.3");
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, fake.kubeconfig(NS)).unwrap();
        let cluster = Cluster::connect(Some(&kubeconfig), None, None)
            .await
            .unwrap();

        // What `wharf cluster apply --router wharf` does: the objects, the token in its
        // Secret, then the table seeded with the versions' Service addresses.
        let target = Target {
            namespace: Some(NS.to_owned()),
            gateway: None,
            router: Some(RouterSpec {
                image: "registry.example.com/wharf-proxy:test".to_owned(),
            }),
        };
        for mut object in render(&stack, &target).unwrap().objects {
            if object.kind == "Secret" && object.name == "shop-router" {
                use base64::Engine as _;
                object.value["data"] = json!({
                    "admin-token": base64::engine::general_purpose::STANDARD.encode(TOKEN)
                });
            }
            cluster.apply(&object).await.unwrap();
        }
        let router = ProxyRouter::connect(&cluster, &stack, "api").await.unwrap();
        let seeded = router.seed("1.0").await.unwrap();
        assert!(seeded.is_some(), "the ConfigMap got its first table");
        assert!(fake.proxied().is_empty(), "no router pod yet");

        // The router pod: its container reads the ConfigMap's table at start.
        let table =
            fake.get("api/v1", NS, "configmaps", "api-router").unwrap()["data"]["table.json"]
                .as_str()
                .unwrap()
                .to_owned();
        let seed = dir.path().join("seed.json");
        std::fs::write(&seed, &table).unwrap();
        let mut command = Command::new(bin("wharf-proxy"));
        command
            .arg("--admin-socket")
            .arg(dir.path().join("admin.sock"))
            .arg("--state")
            .arg(dir.path().join("state.json"))
            .arg("--seed")
            .arg(&seed)
            .args(["--admin-listen", "127.0.0.1:0"])
            .env("WHARF_PROXY_ADMIN_TOKEN", TOKEN)
            .env("WHARF_LOG", "warn");
        let (proxy, admin) = start(command, "admin listen ");
        let admin: SocketAddr = admin.parse().unwrap();
        let labels = fake
            .get("apis/apps/v1", NS, "deployments", "api-router")
            .unwrap()["spec"]["template"]["metadata"]["labels"]
            .clone();
        fake.put(
            "api/v1",
            "pods",
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "api-router-5d8f9-x2k4q", "namespace": NS, "labels": labels},
                "spec": {"containers": [{"name": "router", "ports": [
                    {"name": "http", "containerPort": port},
                    {"name": "admin", "containerPort": admin.port()},
                ]}]},
                "status": {"phase": "Running", "podIP": "127.0.0.1"},
            }),
        );
        let setup = Setup {
            fake,
            cluster,
            stack,
            port,
            _dir: dir,
            _processes: vec![stable, new, proxy],
        };
        assert_eq!(setup.version_served().await, "1.0");
        setup
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The `X-Version` of one request through the router.
    async fn version_served(&self) -> String {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
        let response = client.get(self.url().parse().unwrap()).await.unwrap();
        assert_eq!(response.status(), 200);
        response.headers()["x-version"].to_str().unwrap().to_owned()
    }

    /// The weights of every table PUT to a router pod, in order, each answered 200.
    fn tables_sent(&self) -> Vec<Vec<(String, u64)>> {
        self.fake
            .proxied()
            .iter()
            .filter(|p| p.method == "PUT" && p.path == "/v1/routes")
            .map(|p| {
                assert_eq!(p.status, 200, "{p:?}");
                assert!(
                    p.headers.contains(&"x-wharf-proxy-token".to_owned())
                        && !p.headers.contains(&"authorization".to_owned()),
                    "{p:?}"
                );
                let table: Value = serde_json::from_str(&p.body).unwrap();
                table["services"]["api"]["versions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| {
                        assert_eq!(v["instances"].as_array().unwrap().len(), 1);
                        (
                            v["name"].as_str().unwrap().to_owned(),
                            v["weight"].as_u64().unwrap(),
                        )
                    })
                    .collect()
            })
            .collect()
    }

    async fn run(
        &self,
        rollout: ClusterRollout,
        resumed: bool,
        journal: &MemoryJournal,
    ) -> Outcome {
        let (_commands_tx, commands) = mpsc::channel(4);
        self.run_with(rollout, resumed, journal, commands).await
    }

    /// A rollout steered through `commands` (the operator's pause, abort…).
    async fn run_with(
        &self,
        rollout: ClusterRollout,
        resumed: bool,
        journal: &MemoryJournal,
        mut commands: mpsc::Receiver<wharf_rollout::Event>,
    ) -> Outcome {
        let router = ProxyRouter::connect(&self.cluster, &self.stack, "api")
            .await
            .unwrap();
        let mut journal = journal.clone();
        let mut runner = Runner {
            cluster: &self.cluster,
            journal: &mut journal,
            router: &router,
            options: fast(),
        };
        runner
            .run(rollout, resumed, &mut commands, &mut |_: &str| {})
            .await
            .unwrap()
    }
}

fn send_load(url: String) -> LoadRun {
    wharf_testbed::load::start(LoadPlan {
        max_duration: Duration::from_secs(120),
        ..LoadPlan::new(url, 250.0)
    })
    .unwrap()
}

async fn stop(run: LoadRun) -> LoadReport {
    tokio::task::spawn_blocking(move || run.stop())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_through_wharfs_proxy_moves_its_tables_10_25_50_100_under_load_with_no_failed_request_against_fake_apiserver()
 {
    let setup = Setup::new("1500ms", &[]).await;
    let rollout = prepare(&setup.cluster, &setup.stack, "api", "2.0")
        .await
        .unwrap();
    assert_eq!(rollout.split, Split::Proxy);
    assert_eq!(rollout.stable.workload, "api-1-0");
    let traffic = send_load(setup.url());
    let journal = MemoryJournal::default();
    let outcome = setup.run(rollout, false, &journal).await;
    let report = stop(traffic).await;
    assert_eq!(outcome, Outcome::Succeeded);
    assert_eq!(
        setup.tables_sent(),
        vec![
            weights(&[("1.0", 90), ("2.0", 10)]),
            weights(&[("1.0", 75), ("2.0", 25)]),
            weights(&[("1.0", 50), ("2.0", 50)]),
            weights(&[("1.0", 0), ("2.0", 100)]),
            // The old version leaves the table before its objects go.
            weights(&[("2.0", 100)]),
        ]
    );
    assert_eq!(report.failures(), 0, "{:?}", report.errors());
    let by_version = report.by_version();
    assert!(
        by_version.get("1.0").copied().unwrap_or(0) > 0,
        "{by_version:?}"
    );
    assert!(
        by_version.get("2.0").copied().unwrap_or(0) > 0,
        "{by_version:?}"
    );
    // The analysis judged the proxy's real counters: every passing verdict saw the canary's
    // requests, which only the proxy counted.
    let verdicts: Vec<Record> = journal
        .records()
        .into_iter()
        .filter(|r| r.action == "deploy.verdict")
        .collect();
    assert!(!verdicts.is_empty());
    // A step may be extended once ("continue": not yet 100 requests to judge the p95 by);
    // none fails, and each pass judged what the proxy counted.
    assert!(verdicts.iter().all(|v| v.details["verdict"] != "fail"));
    let passes: Vec<&Record> = verdicts
        .iter()
        .filter(|v| v.details["verdict"] == "pass")
        .collect();
    assert!(!passes.is_empty());
    for verdict in passes {
        let seen = verdict.details["numbers"]["new"]["requests"]
            .as_u64()
            .unwrap();
        assert!(seen >= 100, "{:?}", verdict.details);
        assert_eq!(verdict.details["numbers"]["new"]["errors"], 0);
        // Latency from the proxy's histograms, as locally: the p95 bound was judged.
        let p95 = verdict.details["numbers"]["new"]["p95_ms"].as_f64();
        assert!(p95.is_some_and(|p| p < 2000.0), "{:?}", verdict.details);
    }
    assert!(
        setup
            .fake
            .proxied()
            .iter()
            .any(|p| p.path == "/v1/stats" && p.status == 200)
    );
    // The ConfigMap holds the table in force, for a router pod that starts now.
    let config = setup
        .fake
        .get("api/v1", NS, "configmaps", "api-router")
        .unwrap();
    let table: Value =
        serde_json::from_str(config["data"]["table.json"].as_str().unwrap()).unwrap();
    assert_eq!(
        table["services"]["api"]["versions"],
        json!([{"name": "2.0", "weight": 100, "instances": [format!("127.0.0.3:{}", setup.stack.services["api"].container.as_ref().unwrap().container_port.unwrap())]}])
    );
    assert_eq!(
        setup.fake.names(NS, "deployments"),
        ["api-2-0", "api-router"]
    );
    assert_eq!(setup.version_served().await, "2.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_canary_is_rolled_back_on_the_proxys_counters_with_stable_100_in_one_table_against_fake_apiserver()
 {
    let setup = Setup::new("10s", &["--error-rate", "0.5"]).await;
    let rollout = prepare(&setup.cluster, &setup.stack, "api", "2.0")
        .await
        .unwrap();
    let traffic = send_load(setup.url());
    let journal = MemoryJournal::default();
    let outcome = setup.run(rollout, false, &journal).await;
    let report = stop(traffic).await;
    let Outcome::RolledBack { reason } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(reason.contains("error"), "{reason}");
    assert_eq!(
        setup.tables_sent(),
        vec![
            weights(&[("1.0", 90), ("2.0", 10)]),
            // One table: stable takes everything back, no step down.
            weights(&[("1.0", 100), ("2.0", 0)]),
            weights(&[("1.0", 100)]),
        ]
    );
    let verdict = journal
        .records()
        .into_iter()
        .find(|r| r.action == "deploy.verdict")
        .unwrap();
    assert_eq!(verdict.details["verdict"], "fail", "{:?}", verdict.details);
    assert!(
        verdict.details["numbers"]["new"]["errors"]
            .as_u64()
            .unwrap()
            > 0
    );
    // Only the canary failed requests; the stable version served the rest, and serves all now.
    let failures = report.failures_by_version();
    assert!(
        failures.get("2.0").copied().unwrap_or(0) > 0,
        "{failures:?}"
    );
    assert_eq!(failures.get("1.0").copied().unwrap_or(0), 0, "{failures:?}");
    assert_eq!(
        setup.fake.names(NS, "deployments"),
        ["api-1-0", "api-router"]
    );
    for _ in 0..20 {
        assert_eq!(setup.version_served().await, "1.0");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_rollout_sends_no_table_the_router_pods_already_have_against_fake_apiserver() {
    let setup = Setup::new("1500ms", &[]).await;
    let rollout = prepare(&setup.cluster, &setup.stack, "api", "2.0")
        .await
        .unwrap();
    let traffic = send_load(setup.url());
    let journal = MemoryJournal::default();
    let setup = Arc::new(setup);
    let first = {
        let setup = setup.clone();
        let journal = journal.clone();
        tokio::spawn(async move { setup.run(rollout, false, &journal).await })
    };
    until("the 25 % table", WAIT, || setup.tables_sent().len() == 2).await;
    first.abort();
    let _ = first.await;
    assert_eq!(setup.tables_sent().len(), 2);
    let outcome = setup.run(journal.last(), true, &journal).await;
    let report = stop(traffic).await;
    assert_eq!(outcome, Outcome::Succeeded);
    assert_eq!(
        setup.tables_sent(),
        vec![
            weights(&[("1.0", 90), ("2.0", 10)]),
            weights(&[("1.0", 75), ("2.0", 25)]),
            // Resumed at 25 %: the pod reported that table, so none was sent again.
            weights(&[("1.0", 50), ("2.0", 50)]),
            weights(&[("1.0", 0), ("2.0", 100)]),
            weights(&[("2.0", 100)]),
        ]
    );
    assert_eq!(report.failures(), 0, "{:?}", report.errors());
    assert!(
        journal
            .records()
            .iter()
            .any(|r| r.action == "deploy.resume")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_puts_stable_at_100_in_one_table_only_once_stable_is_available_against_fake_apiserver()
 {
    let setup = Arc::new(Setup::new("10m", &[]).await);
    let rollout = prepare(&setup.cluster, &setup.stack, "api", "2.0")
        .await
        .unwrap();
    let traffic = send_load(setup.url());
    let journal = MemoryJournal::default();
    let (commands_tx, commands) = mpsc::channel(4);
    let run = {
        let setup = setup.clone();
        let journal = journal.clone();
        tokio::spawn(async move { setup.run_with(rollout, false, &journal, commands).await })
    };
    until("the 10 % table", WAIT, || setup.tables_sent().len() == 1).await;
    // The stable Deployment loses pods (a node drain) just as the operator aborts.
    setup.fake.hold(NS, "api-1-0");
    commands_tx
        .send(wharf_rollout::Event::Abort {
            reason: "p99 regression".into(),
        })
        .await
        .unwrap();
    until("a watch of the stable Deployment", WAIT, || {
        setup
            .fake
            .watches()
            .iter()
            .any(|w| w == "deployments?metadata.name=api-1-0")
    })
    .await;
    assert_eq!(
        setup.tables_sent().len(),
        1,
        "no table while stable is short"
    );
    setup.fake.release(NS, "api-1-0");
    let outcome = run.await.unwrap();
    let report = stop(traffic).await;
    assert_eq!(
        outcome,
        Outcome::RolledBack {
            reason: "p99 regression".into()
        }
    );
    assert_eq!(
        setup.tables_sent(),
        vec![
            weights(&[("1.0", 90), ("2.0", 10)]),
            // One table: stable takes everything back, no step down.
            weights(&[("1.0", 100), ("2.0", 0)]),
            weights(&[("1.0", 100)]),
        ]
    );
    assert_eq!(report.failures(), 0, "{:?}", report.errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_canary_is_rolled_back_on_the_proxys_latency_histograms_against_fake_apiserver() {
    let setup = Setup::with_analysis(
        "20s",
        &["--latency", "150ms"],
        "max_error_rate: 5%, min_requests: 20, max_latency_p95: 50ms",
    )
    .await;
    let rollout = prepare(&setup.cluster, &setup.stack, "api", "2.0")
        .await
        .unwrap();
    let traffic = send_load(setup.url());
    let journal = MemoryJournal::default();
    let outcome = setup.run(rollout, false, &journal).await;
    let report = stop(traffic).await;
    let Outcome::RolledBack { reason } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(reason.contains("p95"), "{reason}");
    assert_eq!(
        setup.tables_sent(),
        vec![
            weights(&[("1.0", 90), ("2.0", 10)]),
            weights(&[("1.0", 100), ("2.0", 0)]),
            weights(&[("1.0", 100)]),
        ]
    );
    assert_eq!(report.failures(), 0, "{:?}", report.errors());
}
