//! The issue's "Must show", end to end on a real Docker engine and a loopback registry: a compose
//! file in the shape of a real stack (an HTTP service with two replicas, a redis datastore with
//! a named volume, a worker, a one-shot job) is imported, brought up with its images pulled,
//! canaried to a new tag and promoted, rolled back automatically from a bad tag, re-adopted
//! after the control plane is killed -9, and keeps its data across `down` + `up` until
//! `down --volumes`.
//!
//! Needs what crates/wharf/tests/containers.rs needs (`docker` with a running daemon,
//! `docker-registry`, `redis-server`; scripts/test installs them).

mod common;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use wharf_testbed::load::{self, LoadPlan};

use common::docker::{
    Registry, VolumeGuard, all_containers, containers, images, redis, show, started_at,
    testbed_image_with, unique, version_served, volume_exists,
};
use common::{Stack, actions, eventually, free_port, kill9, wharf_bin};

/// The rollout view of `service` (`wharf rollout status --output json`).
fn rollout(stack: &Stack, service: &str) -> Value {
    let output = stack.wharf(&["rollout", "status", service, "--output", "json"]);
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}

/// Waits for the rollout of `version` to end; its view.
fn outcome(stack: &Stack, version: &str) -> Value {
    eventually(
        &format!("the rollout of {version} to end"),
        Duration::from_secs(90),
        || {
            let view = rollout(stack, "web");
            let ended = view["outcome"].is_string() && view.to_string().contains(version);
            ended.then_some(view)
        },
    )
}

fn control_plane_killed(stack: &Stack) {
    let pid = i64::from(stack.control_pid().expect("a control plane runs"));
    kill9(pid);
    eventually("the control plane is gone", Duration::from_secs(10), || {
        (!common::alive(pid)).then_some(())
    });
}

/// `(id, StartedAt)` of each running container of the stack.
fn running(stack: &str) -> Vec<(String, String)> {
    containers(stack)
        .into_iter()
        .map(|id| {
            let started = started_at(&id);
            (id, started)
        })
        .collect()
}

#[test]
fn an_imported_compose_stack_runs_rolls_out_is_adopted_and_keeps_its_data() {
    let images = images();
    let bad = testbed_image_with("bad", &["--error-rate", "1.0"]);
    let registry = Registry::start();
    let v1 = registry.push(&images.testbed_v1, "testbed:v1");
    registry.push(&images.testbed_v2, "testbed:v2");
    registry.push(&bad, "testbed:v3");
    let redis_image = registry.push(&images.redis, "redis:7");
    let name = unique("shop");
    let (web_port, redis_port) = (free_port(), free_port());
    // Dropped after the stack's own `down`: a failing run leaves no volume behind.
    let _volume = VolumeGuard(format!("{name}_cache-data"));

    // The compose file, as a compose user has it. Each port is the same on both sides, so
    // the test holds whether the import keeps the container side as `container_port:` or
    // leaves it to `port:`.
    let compose = format!(
        r#"
name: {name}
services:
  web:
    image: {v1}
    ports:
      - "{web_port}:{web_port}"
    deploy:
      replicas: 2
    environment:
      GREETING: hello
    depends_on:
      cache:
        condition: service_started
    restart: unless-stopped
  cache:
    image: {redis_image}
    command: ["--port", "{redis_port}", "--dir", "/data", "--appendonly", "yes", "--protected-mode", "no"]
    ports:
      - "{redis_port}:{redis_port}"
    volumes:
      - cache-data:/data
    restart: unless-stopped
  worker:
    image: {v1}
    command: ["--port", "9000"]
    restart: unless-stopped
  migrate:
    image: {v1}
    command: ["--help"]
volumes:
  cache-data:
"#
    );
    let source = tempfile::tempdir().unwrap();
    std::fs::write(source.path().join("docker-compose.yml"), &compose).unwrap();
    let import = Command::new(wharf_bin())
        .args(["import", "compose", "docker-compose.yml"])
        .current_dir(source.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(import.status.success(), "{}", show(&import));
    let imported = String::from_utf8(import.stdout.clone()).unwrap();
    // What a container needs came over: the datastore kind, the command override, the named
    // volume, the one-shot job's compose default (no restart).
    for needle in [
        "kind: redis",
        "- \"--appendonly\"",
        "- cache-data:/data",
        "- \"--help\"",
        "restart: never",
        "replicas: 2",
    ] {
        assert!(imported.contains(needle), "`{needle}` in:\n{imported}");
    }
    // The operator's one edit: probes and the rollout's pace, which compose has no words for.
    let additions = "    probes:\n      ready: {http: {path: /ready}, interval: 200ms}\n    rollout:\n      strategy: canary\n      steps: [{weight: 50, pause: 2s}, {weight: 100}]\n      analysis: {max_error_rate: 5%, min_requests: 5}\n      deadlines: {drain: 2s}\n";
    let manifest = imported.replacen("\n  web:\n", &format!("\n  web:\n{additions}"), 1);
    let manifest = manifest.replacen(
        "\n  cache:\n",
        "\n  cache:\n    probes:\n      ready: {redis: {}, interval: 200ms}\n",
        1,
    );
    assert_ne!(
        manifest, imported,
        "the web and cache services are in:\n{imported}"
    );
    let stack = Stack::new(&manifest);

    // `up -d` pulls what is missing first (plain lines: stderr is not a terminal), once per
    // image, then starts everything.
    let output = stack.up();
    assert!(output.status.success(), "{}", show(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("pulling {v1}")), "{stderr}");
    assert_eq!(
        stderr.matches(&format!("pulling {v1}")).count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("pulling {redis_image}")),
        "{stderr}"
    );
    let status = stack.status();
    assert_eq!(status["healthy"], true, "{status}");
    assert_eq!(stack.service("web")["version"], "v1");
    let body = eventually("web answers", Duration::from_secs(20), || {
        version_served(web_port)
    });
    assert!(body.contains("v1"), "{body}");
    // The one-shot job ran once, exited 0, is not restarted and leaves the stack healthy.
    let exits = eventually("the job exits", Duration::from_secs(20), || {
        let exits: Vec<Value> = actions(&stack.ledger(), "instance.exit")
            .into_iter()
            .filter(|e| e["target"].as_str().unwrap_or("").starts_with("migrate/"))
            .collect();
        (!exits.is_empty()).then_some(exits)
    });
    assert_eq!(exits.len(), 1, "{exits:?}");
    assert_eq!(exits[0]["details"]["status"], "exit code 0", "{exits:?}");
    let migrate = stack.service("migrate");
    assert_eq!(migrate["state"], "exited", "{migrate}");
    let status = stack.status();
    assert_eq!(status["healthy"], true, "{status}");
    assert_eq!(status["status"], "ok", "{status}");
    assert_eq!(
        containers(&name).len(),
        4,
        "two web replicas, the cache and the worker run; the job is done"
    );

    // A new tag, canaried and promoted under live traffic; then a bad tag (every answer a
    // 500) rolled back on its own.
    let mut plan = LoadPlan::new(format!("http://127.0.0.1:{web_port}/"), 40.0);
    plan.max_duration = Duration::from_secs(240);
    plan.timeout = Duration::from_secs(5);
    let run = load::start(plan).expect("load starts");
    let output = stack.wharf(&["deploy", "web", "--version", "v2"]);
    assert!(output.status.success(), "{}", show(&output));
    let view = outcome(&stack, "v2");
    assert_eq!(view["outcome"], "succeeded", "{view}");
    assert_eq!(stack.service("web")["version"], "v2");
    let output = stack.wharf(&["deploy", "web", "--version", "v3"]);
    assert!(output.status.success(), "{}", show(&output));
    let view = outcome(&stack, "v3");
    assert_eq!(view["outcome"], "rolled-back", "{view}");
    assert!(!actions(&stack.ledger(), "deploy.rollback").is_empty());
    eventually("only v2 serves", Duration::from_secs(30), || {
        let served = version_served(web_port)?;
        (containers(&name).len() == 4 && served.contains("v2")).then_some(())
    });
    assert_eq!(stack.service("web")["version"], "v2");
    let report = run.stop();
    assert!(report.total() > 0);

    // The control plane dies; `up -d` adopts the same containers without restarting them.
    // web ×2, redis, worker: the old version's containers go once their drain ends.
    let before = eventually(
        "the v1 containers are gone",
        Duration::from_secs(60),
        || {
            let now = running(&name);
            (now.len() == 4).then_some(now)
        },
    );
    control_plane_killed(&stack);
    let output = stack.up();
    assert!(output.status.success(), "{}", show(&output));
    assert_eq!(running(&name), before, "the same containers, not restarted");
    assert!(stack.status()["healthy"] == true);

    // Data written to the datastore survives `down` + `up`: the named volume is kept.
    let stored = eventually("redis answers", Duration::from_secs(10), || {
        redis(redis_port, &["SET", "order", "42"])
    });
    assert!(stored.starts_with("+OK"), "{stored}");
    let volume = format!("{name}_cache-data");
    let output = stack.wharf(&["down"]);
    assert!(output.status.success(), "{}", show(&output));
    assert!(all_containers(&name).is_empty(), "no container left");
    assert!(volume_exists(&volume), "`down` keeps the named volume");
    let output = stack.up();
    assert!(output.status.success(), "{}", show(&output));
    let value = eventually("redis answers again", Duration::from_secs(20), || {
        redis(redis_port, &["GET", "order"]).filter(|v| !v.starts_with("-"))
    });
    assert!(value.contains("42"), "{value}");
    let output = stack.wharf(&["down"]);
    assert!(output.status.success(), "{}", show(&output));
    assert!(volume_exists(&volume), "`down` keeps the named volume");
    let output = stack.wharf(&["down", "--volumes"]);
    assert!(output.status.success(), "{}", show(&output));
    assert!(!volume_exists(&volume), "`down --volumes` removes it");
    assert!(all_containers(&name).is_empty());
}

/// The stack's networks (running or not, wharf labels them with the stack's name).
fn networks(stack: &str) -> Vec<String> {
    let listed = common::docker::docker_ok(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("label=dev.wharf.stack={stack}"),
    ]);
    listed.lines().map(str::to_owned).collect()
}

/// `up -d` refused with exit 1 and every `needles` in its message, and nothing of the stack
/// left: no container, no network, no control plane, no instance started.
fn refused(stack: &Stack, name: &str, output: &std::process::Output, needles: &[&str]) {
    let text = show(output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    for needle in needles {
        assert!(text.contains(needle), "`{needle}` in: {text}");
    }
    assert!(text.contains("nothing was started"), "{text}");
    assert!(all_containers(name).is_empty(), "no container: {text}");
    assert!(networks(name).is_empty(), "no network: {text}");
    assert!(
        !stack.path().join(".wharf/control.pid").exists(),
        "no control plane started"
    );
    assert!(
        actions(&stack.ledger(), "instance.start").is_empty(),
        "no instance started, not even the local process"
    );
}

/// Bad input is refused before anything starts, naming the service: an image no registry has,
/// a `pull_policy: never` image that is absent, an engine that does not answer, a public port
/// another process holds.
#[test]
fn bad_input_is_refused_before_anything_starts_naming_the_service() {
    let images = images();
    let registry = Registry::start();
    let redis_image = registry.push(&images.redis, "redis:7");
    let stack_with = |name: &str, services: &str| {
        Stack::new(&format!(
            "name: {name}\nservices:\n  worker:\n    command: [TESTBED, --port, \"0\"]\n{services}"
        ))
    };

    // An image the registry does not have, beside one it has.
    let name = unique("nosuch");
    let missing = format!("127.0.0.1:{}/nothing-here:v1", registry.port);
    let stack = stack_with(
        &name,
        &format!(
            "  cache:\n    image: {redis_image}\n  web:\n    image: {missing}\n    port: {}\n",
            free_port()
        ),
    );
    let output = stack.up();
    refused(
        &stack,
        &name,
        &output,
        &["`web`", &format!("cannot pull image `{missing}`")],
    );

    // `pull_policy: never` with the image absent.
    let name = unique("never");
    let absent = format!("wharf-test/absent-{name}:v1");
    let stack = stack_with(
        &name,
        &format!("  job:\n    image: {absent}\n    pull_policy: never\n    restart: never\n"),
    );
    let output = stack.up();
    refused(
        &stack,
        &name,
        &output,
        &["`job`", &absent, "`pull_policy: never` forbids pulling it"],
    );

    // No engine at the socket: the socket and every service that needs it are named, a
    // service whose image wharf builds among them (the engine builds it).
    let name = unique("nodaemon");
    let stack = stack_with(
        &name,
        &format!(
            "  cache:\n    image: {redis_image}\n  web:\n    image: {}\n    pull_policy: never\n  api:\n    build: ./api\n",
            images.testbed_v1
        ),
    );
    std::fs::create_dir(stack.path().join("api")).unwrap();
    std::fs::write(stack.path().join("api/Dockerfile"), "FROM scratch\n").unwrap();
    let output = Command::new(wharf_bin())
        .args(["up", "-d", "--wait-timeout", "30s"])
        .current_dir(stack.path())
        .env("NO_COLOR", "1")
        .env("DOCKER_HOST", "unix:///nonexistent/wharf-test/docker.sock")
        .output()
        .unwrap();
    refused(
        &stack,
        &name,
        &output,
        &[
            "`cache`, `web` and `api`",
            "/nonexistent/wharf-test/docker.sock",
            "cannot reach the container engine",
        ],
    );

    // A container service's public port held by another process.
    let name = unique("taken");
    let taken = std::net::TcpListener::bind(("0.0.0.0", 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let stack = stack_with(
        &name,
        &format!(
            "  cache:\n    kind: redis\n    image: {redis_image}\n    port: {port}\n    container_port: 6379\n"
        ),
    );
    let output = stack.up();
    refused(
        &stack,
        &name,
        &output,
        &[&format!("`cache`'s port {port} is already in use")],
    );

    // A port of `ports:` held by another process is refused the same way.
    let name = unique("taken-extra");
    let stack = stack_with(
        &name,
        &format!(
            "  web:\n    image: {}\n    port: {}\n    container_port: 8080\n    ports: [\"{port}:6379\"]\n",
            images.testbed_v1,
            free_port()
        ),
    );
    let output = stack.up();
    refused(
        &stack,
        &name,
        &output,
        &[&format!("`web`'s port {port} is already in use")],
    );
    drop(taken);
}
