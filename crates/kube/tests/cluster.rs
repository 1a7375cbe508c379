//! wharf's Kubernetes driver against a fake API server (no API server can run on these
//! machines; `wharf-fake-apiserver` stores objects and answers apply, patch, watch over real
//! HTTP), and rollout counters from a fake Prometheus (a loopback HTTP server answering the
//! query API with counters the test controls: the Gateway implementation whose metrics it
//! stands for cannot run here either).

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
mod support;

use support::{MemoryJournal, fast, until, weights};
use wharf_fake_apiserver::prometheus::FakePrometheus;
use wharf_fake_apiserver::{FakeApiServer, Recorded, route_patches};
use wharf_kube::cluster::Cluster;
use wharf_kube::deploy::{GatewayRouter, PrometheusStats, Runner, prepare};
use wharf_kube::{GatewayRef, Target, render};
use wharf_manifest::{EnvironmentChoice, Stack, load};
use wharf_rollout::{Event, Outcome};

const NS: &str = "shop";
/// How long a test waits for what it polls.
const WAIT: Duration = Duration::from_secs(30);

fn stack(yaml: &str) -> Stack {
    let loaded = load(yaml, EnvironmentChoice::Default, &|_: &str| None);
    let errors: Vec<_> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == wharf_manifest::Severity::Error)
        .map(|d| d.message.clone())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    (*loaded.stack.expect("a valid stack")).clone()
}

fn shop(pause: &str) -> Stack {
    stack(&format!(
        r#"
name: shop
services:
  api:
    image: registry.example.com/api:1.0
    port: 8080
    replicas: 2
    env: {{LOG_LEVEL: info}}
    rollout:
      strategy: canary
      steps:
        - {{weight: 10, pause: {pause}}}
        - {{weight: 25, pause: {pause}}}
        - {{weight: 50, pause: {pause}}}
        - {{weight: 100}}
      analysis: {{max_error_rate: 5%, min_requests: 20}}
"#
    ))
}

fn gateway() -> GatewayRef {
    GatewayRef {
        name: "edge".to_owned(),
        namespace: Some("infra".to_owned()),
    }
}

async fn connect(fake: &FakeApiServer) -> (Cluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, fake.kubeconfig(NS)).unwrap();
    let cluster = Cluster::connect(Some(&path), None, None).await.unwrap();
    assert_eq!(cluster.namespace(), NS);
    (cluster, dir)
}

/// What `wharf cluster apply` does: every rendered object, server-side applied.
async fn apply_stack(cluster: &Cluster, stack: &Stack) {
    let target = Target {
        namespace: Some(NS.to_owned()),
        gateway: Some(gateway()),
        router: None,
    };
    for object in render(stack, &target).unwrap().objects {
        cluster.apply(&object).await.unwrap();
    }
}

fn router(cluster: &Cluster, prometheus: &FakePrometheus) -> GatewayRouter<PrometheusStats> {
    GatewayRouter {
        cluster: cluster.clone(),
        stats: stats(prometheus),
    }
}

fn stats(prometheus: &FakePrometheus) -> PrometheusStats {
    PrometheusStats::new(
        &prometheus.url,
        "requests{backend=\"{workload}\"}".to_owned(),
        "errors{backend=\"{workload}\"}".to_owned(),
        NS.to_owned(),
        "api".to_owned(),
    )
    .unwrap()
}

#[tokio::test]
async fn server_side_apply_uses_wharfs_field_manager_and_leaves_foreign_fields_against_fake_apiserver()
 {
    let fake = FakeApiServer::start().await;
    let (cluster, _dir) = connect(&fake).await;
    let stack = shop("1s");
    apply_stack(&cluster, &stack).await;
    let applies: Vec<Recorded> = fake
        .log()
        .into_iter()
        .filter(|r| r.kind == "apply")
        .collect();
    // ConfigMap, Deployment, PDB (replicas > 1), the service's and the version's Services, HTTPRoute.
    assert_eq!(applies.len(), 6, "{applies:?}");
    for apply in &applies {
        assert_eq!(apply.field_manager.as_deref(), Some("wharf"), "{apply:?}");
        assert!(apply.force);
        assert_eq!(apply.status, 200);
    }

    // A GitOps tool adds an annotation and a label to wharf's Deployment.
    fake.apply_as(
        "argocd-controller",
        "apis/apps/v1",
        "deployments",
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "api-1-0", "namespace": NS,
                            "annotations": {"argocd.argoproj.io/sync-wave": "2"},
                            "labels": {"team": "payments"}}}),
    );
    // wharf applies again with a changed env value.
    let mut changed = stack.clone();
    changed
        .services
        .get_mut("api")
        .unwrap()
        .env
        .insert("LOG_LEVEL".into(), "debug".into());
    apply_stack(&cluster, &changed).await;

    let deployment = fake
        .get("apis/apps/v1", NS, "deployments", "api-1-0")
        .unwrap();
    assert_eq!(
        deployment["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"],
        "2"
    );
    assert_eq!(deployment["metadata"]["labels"]["team"], "payments");
    assert_eq!(
        deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "wharf"
    );
    let managers: Vec<&str> = deployment["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert!(
        managers.contains(&"wharf") && managers.contains(&"argocd-controller"),
        "{managers:?}"
    );
    let wharf_fields = deployment["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["manager"] == "wharf")
        .unwrap()["fieldsV1"]
        .to_string();
    assert!(
        !wharf_fields.contains("argocd"),
        "wharf never owns the foreign annotation"
    );
    let config = fake.get("api/v1", NS, "configmaps", "api-1-0-env").unwrap();
    assert_eq!(config["data"]["LOG_LEVEL"], "debug");
}

#[tokio::test]
async fn a_canary_patches_the_route_10_25_50_100_against_fake_apiserver() {
    let fake = FakeApiServer::start().await;
    fake.auto_available(true);
    let (cluster, _dir) = connect(&fake).await;
    let stack = shop("300ms");
    apply_stack(&cluster, &stack).await;
    let prometheus = FakePrometheus::start().await;
    let stats = router(&cluster, &prometheus);
    let rollout = prepare(&cluster, &stack, "api", "2.0").await.unwrap();
    assert_eq!(rollout.stable.workload, "api-1-0");
    assert_eq!(rollout.new.workload, "api-2-0");
    let mut journal = MemoryJournal::default();
    let (_commands_tx, mut commands) = mpsc::channel(4);
    let mut runner = Runner {
        cluster: &cluster,
        journal: &mut journal,
        router: &stats,
        options: fast(),
    };
    let outcome = runner
        .run(rollout, false, &mut commands, &mut |_: &str| {})
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Succeeded);
    assert_eq!(
        route_patches(&fake.log(), "api"),
        vec![
            weights(&[("api-1-0", 90), ("api-2-0", 10)]),
            weights(&[("api-1-0", 75), ("api-2-0", 25)]),
            weights(&[("api-1-0", 50), ("api-2-0", 50)]),
            weights(&[("api-1-0", 0), ("api-2-0", 100)]),
            // The old version's backend leaves once its pods are gone.
            weights(&[("api-2-0", 100)]),
        ]
    );
    assert!(prometheus.queries.load(Ordering::SeqCst) > 0);
    let deployments = fake.names(NS, "deployments");
    assert_eq!(
        deployments,
        vec!["api-2-0".to_owned()],
        "the old version is deleted"
    );
    let image = &fake
        .get("apis/apps/v1", NS, "deployments", "api-2-0")
        .unwrap()["spec"]["template"]["spec"]["containers"][0]["image"];
    assert_eq!(image, "registry.example.com/api:2.0");
    let actions = journal.actions();
    assert_eq!(actions.first(), Some(&"deploy.start"));
    assert_eq!(actions.iter().filter(|a| **a == "deploy.step").count(), 4);
    assert_eq!(actions.last(), Some(&"deploy.succeeded"));
}

#[tokio::test]
async fn an_abort_mid_pause_puts_stable_at_100_in_one_patch_once_stable_is_available_against_fake_apiserver()
 {
    let fake = FakeApiServer::start().await;
    fake.auto_available(true);
    let (cluster, _dir) = connect(&fake).await;
    let stack = shop("10m");
    apply_stack(&cluster, &stack).await;
    let prometheus = FakePrometheus::start().await;
    let stats = router(&cluster, &prometheus);
    let rollout = prepare(&cluster, &stack, "api", "2.0").await.unwrap();
    let journal = MemoryJournal::default();
    let (commands_tx, mut commands) = mpsc::channel(4);
    let run = {
        let cluster = cluster.clone();
        let mut journal = journal.clone();
        tokio::spawn(async move {
            let mut runner = Runner {
                cluster: &cluster,
                journal: &mut journal,
                router: &stats,
                options: fast(),
            };
            runner
                .run(rollout, false, &mut commands, &mut |_: &str| {})
                .await
        })
    };
    until("the 10 % step", WAIT, || {
        route_patches(&fake.log(), "api").len() == 1
    })
    .await;
    // The stable Deployment loses pods (a node drain) just as the operator aborts.
    fake.hold(NS, "api-1-0");
    commands_tx
        .send(Event::Abort {
            reason: "bad canary".into(),
        })
        .await
        .unwrap();
    until("a watch of the stable Deployment", WAIT, || {
        fake.watches()
            .iter()
            .any(|w| w == "deployments?metadata.name=api-1-0")
    })
    .await;
    assert_eq!(
        route_patches(&fake.log(), "api").len(),
        1,
        "no route change while stable is short"
    );
    fake.release(NS, "api-1-0");
    let outcome = run.await.unwrap().unwrap();
    assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome:?}");
    assert_eq!(
        route_patches(&fake.log(), "api"),
        vec![
            weights(&[("api-1-0", 90), ("api-2-0", 10)]),
            // One patch: stable takes everything back, no step down through 25 / 50.
            weights(&[("api-1-0", 100), ("api-2-0", 0)]),
            weights(&[("api-1-0", 100)]),
        ]
    );
    assert_eq!(fake.names(NS, "deployments"), vec!["api-1-0".to_owned()]);
    let actions = journal.actions();
    assert!(actions.contains(&"deploy.rollback"), "{actions:?}");
    assert_eq!(actions.last(), Some(&"deploy.rolled_back"));
}

#[tokio::test]
async fn a_runner_killed_mid_rollout_resumes_from_the_persisted_step_without_a_second_patch_against_fake_apiserver()
 {
    let fake = FakeApiServer::start().await;
    fake.auto_available(true);
    let (cluster, _dir) = connect(&fake).await;
    let stack = shop("800ms");
    apply_stack(&cluster, &stack).await;
    let prometheus = FakePrometheus::start().await;
    let rollout = prepare(&cluster, &stack, "api", "2.0").await.unwrap();
    let journal = MemoryJournal::default();
    let first = {
        let cluster = cluster.clone();
        let mut journal = journal.clone();
        let stats = router(&cluster, &prometheus);
        tokio::spawn(async move {
            let (_tx, mut commands) = mpsc::channel(4);
            let mut runner = Runner {
                cluster: &cluster,
                journal: &mut journal,
                router: &stats,
                options: fast(),
            };
            runner
                .run(rollout, false, &mut commands, &mut |_: &str| {})
                .await
        })
    };
    until("the 25 % step", WAIT, || {
        route_patches(&fake.log(), "api").len() == 2
    })
    .await;
    first.abort();
    let _ = first.await;
    let persisted = journal.last();
    let patches_before = route_patches(&fake.log(), "api").len();

    let stats = router(&cluster, &prometheus);
    let (_tx, mut commands) = mpsc::channel(4);
    let mut resumed_journal = journal.clone();
    let mut runner = Runner {
        cluster: &cluster,
        journal: &mut resumed_journal,
        router: &stats,
        options: fast(),
    };
    let outcome = runner
        .run(persisted, true, &mut commands, &mut |_: &str| {})
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Succeeded);
    let patches = route_patches(&fake.log(), "api");
    assert_eq!(patches_before, 2);
    assert_eq!(
        patches,
        vec![
            weights(&[("api-1-0", 90), ("api-2-0", 10)]),
            weights(&[("api-1-0", 75), ("api-2-0", 25)]),
            // The resumed runner found 25 % in place: no second 25 % patch.
            weights(&[("api-1-0", 50), ("api-2-0", 50)]),
            weights(&[("api-1-0", 0), ("api-2-0", 100)]),
            weights(&[("api-2-0", 100)]),
        ]
    );
    assert!(journal.actions().contains(&"deploy.resume"));
}

#[tokio::test]
async fn a_rollout_without_the_route_or_to_the_running_version_is_refused_against_fake_apiserver() {
    let fake = FakeApiServer::start().await;
    let (cluster, _dir) = connect(&fake).await;
    let stack = shop("1s");
    let error = prepare(&cluster, &stack, "api", "2.0").await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("nor its router `api-router` is on the cluster; run `wharf cluster apply"),
        "{error}"
    );
    apply_stack(&cluster, &stack).await;
    let error = prepare(&cluster, &stack, "api", "1.0").await.unwrap_err();
    assert!(
        error.to_string().contains("already runs version 1.0"),
        "{error}"
    );
    let error = prepare(&cluster, &stack, "nope", "1.0").await.unwrap_err();
    assert!(
        error.to_string().contains("`nope` is not in the manifest"),
        "{error}"
    );
    assert!(
        fake.log().iter().all(|r| r.kind == "apply"),
        "refusals change nothing"
    );
}
