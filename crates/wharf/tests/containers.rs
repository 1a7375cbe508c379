//! Containers end to end, on a real Docker engine and a real registry: `image:` services beside
//! a local process, pulled from a loopback registry, served through the proxy, rolled out to a
//! new tag and back, adopted by a restarted control plane, a named volume kept across `down`
//! and removed by `down --volumes`, and bad input refused with nothing left behind.
//!
//! Needs `docker` with a running daemon and `docker-registry` (scripts/test installs Debian's
//! `docker.io` and `docker-registry` and starts `dockerd`); without them the tests fail saying
//! so. The images (the testbed, and redis-server as a datastore) are made here from the host's
//! binaries and their shared libraries (`docker import` of a rootfs), once per machine.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use wharf_testbed::load::{self, LoadPlan};

use common::docker::{
    Registry, VolumeGuard, all_containers, containers, docker, docker_ok, images, redis, show,
    started_at, unique, version_served, volume_exists,
};
use common::{Stack, actions, eventually, free_port, get, kill9};

/// The shape of a real compose stack, run by wharf with local images: an HTTP service in
/// containers (two replicas behind the proxy), a redis datastore container with a named
/// volume, and a worker that is a local process.
#[test]
fn a_mixed_stack_runs_rolls_out_is_adopted_after_kill_9_and_keeps_its_volume() {
    let images = images();
    let registry = Registry::start();
    let v1 = registry.push(&images.testbed_v1, "testbed:v1");
    registry.push(&images.testbed_v2, "testbed:v2");
    let redis_image = registry.push(&images.redis, "redis:7");
    let name = unique("mix");
    let (api_port, redis_port) = (free_port(), free_port());
    // Declared before the stack, so dropped after its `down`: a failing run leaves no volume.
    let _volume = VolumeGuard(format!("{name}_data"));
    let stack = Stack::new(&format!(
        r#"
name: {name}
services:
  cache:
    kind: redis
    image: {redis_image}
    command: ["--port", "6379", "--dir", "/data", "--appendonly", "yes", "--protected-mode", "no"]
    port: {redis_port}
    container_port: 6379
    volumes: ["data:/data"]
    probes:
      ready: {{redis: {{}}, interval: 200ms}}
  api:
    image: {v1}
    port: {api_port}
    container_port: 8080
    replicas: 2
    env: {{GREETING: hello}}
    depends_on: {{cache: {{condition: ready}}}}
    probes:
      ready: {{http: {{path: /ready}}, interval: 200ms}}
    rollout:
      strategy: canary
      steps: [{{weight: 50, pause: 1s}}, {{weight: 100}}]
      analysis: {{min_requests: 1}}
      deadlines: {{drain: 2s}}
  worker:
    command: [TESTBED, --port, "0"]
"#
    ));
    let output = stack.up();
    assert!(output.status.success(), "{}", show(&output));
    // The version is the image's tag; both replicas answer through the proxy.
    assert_eq!(stack.service("api")["version"], "v1");
    let body = eventually("api answers", Duration::from_secs(20), || {
        version_served(api_port)
    });
    assert!(body.contains("v1"), "{body}");
    let running = containers(&name);
    assert_eq!(running.len(), 3, "two api replicas and the cache");
    // What ran is in the ledger by digest: the image was pulled from the registry.
    let ledger = stack.ledger();
    let starts = actions(&ledger, "instance.start");
    let api_starts: Vec<_> = starts
        .iter()
        .filter(|e| e["target"].as_str().unwrap_or("").starts_with("api/"))
        .collect();
    assert_eq!(api_starts.len(), 2, "{starts:?}");
    for entry in &api_starts {
        let image = entry["details"]["image"].as_str().unwrap_or_default();
        assert!(
            image.starts_with(&format!("127.0.0.1:{}/testbed@sha256:", registry.port)),
            "{entry}"
        );
    }
    // `wharf logs` reads the containers' output like a process's.
    let logs = stack.wharf(&["logs", "api"]);
    assert!(logs.status.success(), "{}", show(&logs));
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("listening"),
        "{}",
        show(&logs)
    );
    // Data written to the datastore container.
    let stored = eventually("redis answers", Duration::from_secs(10), || {
        redis(redis_port, &["SET", "greeting", "kept"])
    });
    assert!(stored.starts_with("+OK"), "{stored}");

    // A new tag is a new version: canary to v2 under live traffic, then roll back to v1.
    let mut plan = LoadPlan::new(format!("http://127.0.0.1:{api_port}/"), 50.0);
    plan.max_duration = Duration::from_secs(120);
    plan.timeout = Duration::from_secs(5);
    let run = load::start(plan).expect("load starts");
    let output = stack.wharf(&["deploy", "api", "--version", "v2", "--watch"]);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert_eq!(stack.service("api")["version"], "v2");
    assert!(version_served(api_port).unwrap_or_default().contains("v2"));
    let output = stack.wharf(&["rollback", "api", "--watch"]);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert_eq!(stack.service("api")["version"], "v1");
    eventually("only v1 serves", Duration::from_secs(30), || {
        (containers(&name).len() == 3 && version_served(api_port)?.contains("v1")).then_some(())
    });
    let report = run.stop();
    assert!(report.total() > 0);
    assert_eq!(
        report.failures(),
        0,
        "no request failed during the rollout and rollback"
    );

    // The control plane dies; the containers keep serving and are adopted, not restarted.
    let before = containers(&name);
    let started: Vec<String> = before.iter().map(|id| started_at(id)).collect();
    kill9(i64::from(stack.control_pid().unwrap()));
    eventually("the control plane is gone", Duration::from_secs(10), || {
        (!common::alive(i64::from(stack.control_pid().unwrap_or(0)))).then_some(())
    });
    assert!(
        version_served(api_port).is_some(),
        "served while wharf is down"
    );
    // `wharf status` without a control plane asks the engine about the recorded containers.
    let output = stack.wharf(&["status", "--output", "json"]);
    let recorded: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let instances = recorded["instances"].as_array().unwrap();
    let running = |service: &str| {
        instances
            .iter()
            .filter(|i| i["service"] == service && i["running"] == true)
            .count()
    };
    assert_eq!((running("api"), running("cache")), (2, 1), "{recorded}");
    let output = stack.up();
    assert!(output.status.success(), "{}", show(&output));
    assert_eq!(containers(&name), before, "the same containers");
    let again: Vec<String> = before.iter().map(|id| started_at(id)).collect();
    assert_eq!(again, started, "none restarted");
    let adopted = actions(&stack.ledger(), "instance.adopt");
    assert!(adopted.len() >= 3, "{adopted:?}");

    // `down` removes the containers and keeps the named volume; the data survives `up`.
    let volume = format!("{name}_data");
    let output = stack.wharf(&["down"]);
    assert!(output.status.success(), "{}", show(&output));
    assert!(all_containers(&name).is_empty(), "no container left");
    assert!(volume_exists(&volume), "the named volume is kept");
    let output = stack.up();
    assert!(output.status.success(), "{}", show(&output));
    let value = eventually("redis answers again", Duration::from_secs(10), || {
        redis(redis_port, &["GET", "greeting"])
    });
    assert!(value.contains("kept"), "{value}");
    // `down --volumes` removes it, here without a control plane (killed again): `down`
    // stops the recorded containers through the same driver.
    kill9(i64::from(stack.control_pid().unwrap()));
    eventually("the control plane is gone", Duration::from_secs(10), || {
        (!common::alive(i64::from(stack.control_pid().unwrap_or(0)))).then_some(())
    });
    let output = stack.wharf(&["down", "--volumes"]);
    assert!(output.status.success(), "{}", show(&output));
    assert!(!volume_exists(&volume), "removed by --volumes");
    assert!(all_containers(&name).is_empty());
}

/// Bad input names the service and leaves nothing half-started: an image no registry has,
/// an engine that does not answer, a port already taken.
#[test]
fn a_missing_image_no_daemon_and_a_taken_port_are_clear_errors_leaving_nothing_behind() {
    let images = images();
    let registry = Registry::start();
    let redis_image = registry.push(&images.redis, "redis:7");

    let name = unique("bad");
    let stack = Stack::new(&format!(
        r#"
name: {name}
services:
  web:
    image: 127.0.0.1:{}/nothing-here:v1
    port: {}
    restart: never
"#,
        registry.port,
        free_port()
    ));
    let output = stack.up();
    assert!(!output.status.success(), "{}", show(&output));
    let text = show(&output);
    assert!(text.contains("web"), "{text}");
    assert!(text.contains("cannot pull image"), "{text}");
    assert!(all_containers(&name).is_empty(), "nothing was created");

    // A taken port: the datastore's public port is bound by someone else.
    let name = unique("port");
    let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let stack = Stack::new(&format!(
        r#"
name: {name}
services:
  cache:
    kind: redis
    image: {redis_image}
    port: {port}
    container_port: 6379
    restart: never
"#
    ));
    let output = stack.up();
    assert!(!output.status.success(), "{}", show(&output));
    let text = show(&output);
    assert!(text.contains("cache"), "{text}");
    assert!(text.contains(&port.to_string()), "{text}");
    assert!(all_containers(&name).is_empty(), "nothing was created");
    drop(taken);

    // No engine answers at the socket.
    let name = unique("nod");
    let stack = Stack::new(&format!(
        r#"
name: {name}
services:
  cache:
    image: {redis_image}
    restart: never
"#
    ));
    let output = Command::new(common::wharf_bin())
        .args(["up", "-d", "--wait-timeout", "30s"])
        .current_dir(stack.path())
        .env("NO_COLOR", "1")
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert!(!output.status.success(), "{}", show(&output));
    let text = show(&output);
    assert!(text.contains("cache"), "{text}");
    assert!(text.contains("cannot reach the container engine"), "{text}");
    assert!(all_containers(&name).is_empty());
}

/// Restarts are wharf's: a container that crashes is recorded with its exit code, removed, and
/// replaced by a new container (the engine's own restart policy is `no`). The image is used as
/// the engine has it (`pull_policy: never`). Its secret reaches the container's environment
/// and no file wharf writes.
#[test]
fn a_crashed_container_is_restarted_by_wharf_and_its_secret_stays_out_of_wharfs_files() {
    let images = images();
    let name = unique("crash");
    let port = free_port();
    let stack = Stack::new(&format!(
        r#"
name: {name}
secrets:
  TOKEN: {{}}
services:
  flaky:
    image: {}
    pull_policy: never
    command: ["--crash-after", "0"]
    port: {port}
    container_port: 8080
    restart: on-failure
    secrets: [TOKEN]
"#,
        images.testbed_v1
    ));
    let secret = "container-secret-5e1f9a";
    stack.set_secret("TOKEN", secret);
    let output = stack.up();
    assert!(output.status.success(), "{}", show(&output));
    let first = eventually("the container runs", Duration::from_secs(20), || {
        containers(&name).into_iter().next()
    });
    // The secret reaches the container's environment, and nothing wharf writes.
    let env = docker_ok(&["inspect", "--format", "{{json .Config.Env}}", &first]);
    assert!(env.contains(&format!("TOKEN={secret}")), "{env}");
    // The first request makes it exit 1.
    let _ = get(port, "/");
    let restart = eventually("wharf restarts it", Duration::from_secs(30), || {
        actions(&stack.ledger(), "instance.restart")
            .into_iter()
            .next()
    });
    let exits = actions(&stack.ledger(), "instance.exit");
    assert!(
        exits
            .iter()
            .any(|e| e["details"]["status"] == "exit code 1"),
        "{exits:?}"
    );
    let second = eventually("the new container runs", Duration::from_secs(20), || {
        containers(&name)
            .into_iter()
            .next()
            .filter(|id| *id != first)
    });
    assert!(
        second.starts_with(restart["details"]["container"].as_str().unwrap()),
        "{restart}"
    );
    assert!(
        !docker(&["inspect", &first]).status.success(),
        "the crashed container was removed"
    );
    assert_eq!(
        docker_ok(&[
            "inspect",
            "--format",
            "{{.HostConfig.RestartPolicy.Name}}",
            &second
        ]),
        "no"
    );
    let ledger = serde_json::to_string(&stack.ledger()).unwrap();
    assert!(!ledger.contains(secret), "the secret is not in the ledger");
    for file in walk(&stack.path().join(".wharf")) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret),
            "the secret is in {}",
            file.display()
        );
    }
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Regression: instances of a stack starting at once each created the stack's network (the
/// engine allows two networks of one name), and then none could start ("network … is
/// ambiguous").
#[test]
fn regression_concurrent_starts_made_duplicate_networks() {
    let images = images();
    let name = unique("net");
    let mut manifest = format!("name: {name}\nservices:\n");
    for i in 0..4 {
        manifest.push_str(&format!(
            "  s{i}:\n    image: {}\n    pull_policy: never\n    port: {}\n    container_port: 8080\n",
            images.testbed_v1,
            free_port()
        ));
    }
    let stack = Stack::new(&manifest);
    let output = stack.up();
    assert!(output.status.success(), "{}", show(&output));
    let networks = docker_ok(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("label=dev.wharf.stack={name}"),
    ]);
    assert_eq!(networks.lines().count(), 1, "one network: {networks}");
    assert_eq!(containers(&name).len(), 4);
    let output = stack.wharf(&["down"]);
    assert!(output.status.success(), "{}", show(&output));
    let networks = docker_ok(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("label=dev.wharf.stack={name}"),
    ]);
    assert!(networks.is_empty(), "removed by down: {networks}");
}
