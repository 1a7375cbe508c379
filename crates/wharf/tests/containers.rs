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
    Registry, VolumeGuard, all_containers, containers, docker, docker_ok, engine_answers, images,
    import, redis, rootfs, show, stamp, started_at, unique, version_served, volume_exists,
};
use common::{Stack, actions, eventually, free_port, get, kill9, testbed_bin};

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

/// A build context beside the manifest: a Dockerfile `FROM` the locally imported testbed
/// image that copies the host's testbed binary (and a release note) to `/app`, a path the host
/// does not have, and a `.dockerignore`d log file.
fn build_context(stack: &Stack, base: &str, release: &str) {
    let app = stack.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("Dockerfile"),
        format!(
            "FROM {base}\nCOPY testbed /app/testbed\nCOPY release.txt /app/release.txt\nENTRYPOINT [\"/app/testbed\", \"--host\", \"0.0.0.0\"]\n"
        ),
    )
    .unwrap();
    if !app.join("testbed").exists() {
        std::fs::copy(testbed_bin(), app.join("testbed")).unwrap();
    }
    std::fs::write(app.join("release.txt"), release).unwrap();
    std::fs::write(app.join(".dockerignore"), "*.log\n").unwrap();
    std::fs::write(app.join("debug.log"), format!("noise {release}")).unwrap();
}

/// Removes the images a test built, whatever its outcome.
struct ImagesGuard(String);

impl Drop for ImagesGuard {
    fn drop(&mut self) {
        let listed = docker(&["images", "-q", "--filter", &format!("reference={}", self.0)]);
        for id in String::from_utf8_lossy(&listed.stdout).lines() {
            let _ = docker(&["rmi", "-f", id]);
        }
    }
}

fn image_id(reference: &str) -> Option<String> {
    let output = docker(&["image", "inspect", "--format", "{{.Id}}", reference]);
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// compose's `build:`: `up` builds the image from the context beside the manifest (its output
/// in the service's log), the version is the digest of the context, the exec readiness probe
/// runs inside the container (`/app/testbed` exists there, not on this host), and a changed
/// context deployed with `wharf deploy` (no `--version`) rolls out as a canary of a new version
/// built from it; a context change the `.dockerignore` hides changes nothing.
#[test]
fn a_built_service_is_built_by_up_probed_inside_and_a_changed_context_deploys_as_a_new_version() {
    let images = images();
    assert!(
        !Path::new("/app/testbed").exists(),
        "the host must not have the probed path"
    );
    let name = unique("build");
    let _built = ImagesGuard(format!("{name}-api"));
    let port = free_port();
    let stack = Stack::new(&format!(
        r#"
name: {name}
services:
  api:
    build: ./app
    port: {port}
    container_port: 8080
    probes:
      ready: {{exec: {{command: ["/app/testbed", "--help"]}}, interval: 200ms, timeout: 5s}}
    rollout:
      strategy: canary
      steps: [{{weight: 50, pause: 1s}}, {{weight: 100}}]
      analysis: {{min_requests: 1}}
      deadlines: {{drain: 2s}}
"#
    ));
    build_context(&stack, &images.testbed_v1, "one");
    let output = stack.up();
    assert!(output.status.success(), "{}", show(&output));
    let api = stack.service("api");
    let first = api["version"].as_str().unwrap().to_owned();
    assert_eq!(first.len(), 12, "a digest of the context: {api}");
    assert!(first.chars().all(|c| c.is_ascii_hexdigit()), "{first}");
    let built = image_id(&format!("{name}-api:{first}")).expect("the image was built and tagged");
    // Ready only because the probe ran inside the container.
    assert_eq!(api["instances"][0]["ready"], true, "{api}");
    let body = eventually("the built image serves", Duration::from_secs(20), || {
        version_served(port)
    });
    assert!(body.contains(&first), "{body}");
    // The build is in the service's log and, by image id, in the ledger.
    let logs = show(&stack.wharf(&["logs", "api"]));
    assert!(
        logs.contains("[build] Step 2/4 : COPY testbed /app/testbed"),
        "{logs}"
    );
    let starts = actions(&stack.ledger(), "instance.start");
    assert_eq!(starts[0]["details"]["image"], built.as_str(), "{starts:?}");

    // A change the .dockerignore hides is no new version.
    std::fs::write(stack.path().join("app/debug.log"), "more noise").unwrap();
    let output = stack.wharf(&["deploy", "api"]);
    assert!(!output.status.success(), "{}", show(&output));
    assert!(
        show(&output).contains("already runs version"),
        "{}",
        show(&output)
    );

    // A changed source is a new version, built and canaried by `wharf deploy`.
    build_context(&stack, &images.testbed_v1, "two");
    // The canary's analysis judges live traffic.
    let mut plan = LoadPlan::new(format!("http://127.0.0.1:{port}/"), 50.0);
    plan.max_duration = Duration::from_secs(120);
    plan.timeout = Duration::from_secs(5);
    let run = load::start(plan).expect("load starts");
    let output = stack.wharf(&["deploy", "api", "--watch"]);
    let report = run.stop();
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert_eq!(report.failures(), 0, "no request failed during the canary");
    let second = stack.service("api")["version"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert!(show(&output).contains(&second), "{}", show(&output));
    let rebuilt = image_id(&format!("{name}-api:{second}")).expect("the new version was built");
    assert_ne!(rebuilt, built);
    let body = eventually("the new version serves", Duration::from_secs(20), || {
        version_served(port).filter(|body| body.contains(&second))
    });
    assert!(body.contains(&second));
    let deploys = actions(&stack.ledger(), "deploy.start");
    assert_eq!(deploys.len(), 1, "{deploys:?}");
    let output = stack.wharf(&["down"]);
    assert!(output.status.success(), "{}", show(&output));
    assert!(all_containers(&name).is_empty());
}

/// A Dockerfile that cannot build fails `up` with the service and the failing step named, and
/// leaves no container (and no image) behind.
#[test]
fn a_broken_dockerfile_fails_up_naming_the_service_and_the_step_leaving_nothing_running() {
    let images = images();
    let name = unique("badbuild");
    let _built = ImagesGuard(format!("{name}-web"));
    let stack = Stack::new(&format!(
        r#"
name: {name}
services:
  web:
    build: {{context: ./app, dockerfile: web.Dockerfile}}
    port: {}
    container_port: 8080
    restart: never
"#,
        free_port()
    ));
    let app = stack.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("web.Dockerfile"),
        format!(
            "FROM {}\nCOPY missing.txt /missing.txt\n",
            images.testbed_v1
        ),
    )
    .unwrap();
    let output = stack.up();
    assert!(!output.status.success(), "{}", show(&output));
    let text = show(&output);
    assert!(text.contains("web"), "{text}");
    assert!(text.contains("cannot build image"), "{text}");
    assert!(
        text.contains("Step 2/2 : COPY missing.txt /missing.txt"),
        "{text}"
    );
    assert!(all_containers(&name).is_empty(), "nothing was created");
    let listed = docker_ok(&["images", "-q", "--filter", &format!("reference={name}-web")]);
    assert!(listed.is_empty(), "no image: {listed}");
    let failed = actions(&stack.ledger(), "instance.start_failed");
    assert!(!failed.is_empty());
}

/// Stack `name`: one `web` service of the testbed image whose readiness probe runs the image's
/// own testbed (at its path inside the image, the host's where the image was made) with
/// `args` (quoted YAML list items), on `timing` (`interval: …, timeout: …`).
fn with_exec_probe(name: &str, args: &str, timing: &str) -> Stack {
    let images = images();
    let entrypoint = docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{index .Config.Entrypoint 0}}",
        &images.testbed_v1,
    ]);
    Stack::new(&format!(
        r#"
name: {name}
services:
  web:
    image: {}
    pull_policy: never
    port: {}
    container_port: 8080
    probes:
      ready: {{exec: {{command: ["{entrypoint}", {args}]}}, {timing}}}
"#,
        images.testbed_v1,
        free_port()
    ))
}

/// compose's `healthcheck` on an image service becomes an exec probe that runs inside the
/// container; when it fails, status says why — the exit code and the end of its output.
#[test]
fn a_failing_exec_probe_of_an_image_service_shows_its_exit_code_and_output() {
    let name = unique("probe");
    let stack = with_exec_probe(&name, r#""--no-such-flag""#, "interval: 200ms, timeout: 5s");
    let _ = stack.wharf(&["up", "-d", "--wait-timeout", "2s"]);
    let reason = eventually("the probe's reason", Duration::from_secs(30), || {
        stack.service("web")["instances"][0]["probe_reason"]
            .as_str()
            .map(str::to_owned)
    });
    assert!(reason.starts_with("exit code 2: "), "{reason}");
    assert!(reason.contains("--no-such-flag"), "{reason}");
    let output = stack.wharf(&["down"]);
    assert!(output.status.success(), "{}", show(&output));
    assert!(all_containers(&name).is_empty());
}

/// An exec probe that hangs past its timeout is abandoned (the engine cannot kill an exec),
/// and no other is started while it runs: the container holds its own process and one hung
/// check, not one more per interval.
#[test]
fn a_hung_exec_probe_is_not_started_again_while_it_runs() {
    let name = unique("hung");
    // The check serves forever on another port: it never exits.
    let stack = with_exec_probe(
        &name,
        r#""--host", "127.0.0.1", "--port", "9""#,
        "interval: 200ms, timeout: 300ms",
    );
    let _ = stack.wharf(&["up", "-d", "--wait-timeout", "2s"]);
    let reason = eventually(
        "the probe says its previous check still runs",
        Duration::from_secs(30),
        || {
            stack.service("web")["instances"][0]["probe_reason"]
                .as_str()
                .filter(|r| r.contains("still running"))
                .map(str::to_owned)
        },
    );
    assert!(reason.contains("previous check"), "{reason}");
    // The intervals since the check hung started nothing: the container's process and one
    // check.
    let id = containers(&name).into_iter().next().expect("the container");
    let top = docker_ok(&["top", &id, "-o", "pid"]);
    let processes = top.lines().skip(1).count();
    assert!(processes <= 2, "{top}");
    let output = stack.wharf(&["down"]);
    assert!(output.status.success(), "{}", show(&output));
}

/// An image that serves HTTP (the testbed on 8080) and a TCP protocol (redis-server on 6379)
/// from one container, through a shell: one service with two ports. Built once per machine.
fn duo_image() -> String {
    engine_answers();
    let testbed = testbed_bin();
    let meta = std::fs::metadata(&testbed).unwrap();
    let tag = format!("wharf-test/duo:{}", stamp(&testbed, &meta));
    let lock = std::fs::File::create(std::env::temp_dir().join("wharf-test-images.lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    if !docker(&["image", "inspect", &tag]).status.success() {
        let server = PathBuf::from("/usr/bin/redis-server");
        assert!(
            server.exists(),
            "redis-server is missing: scripts/test installs redis-server"
        );
        let root = rootfs(&[&testbed, &server, Path::new("/bin/sh")], &["tmp"]);
        import(root.path(), &tag, &["ENTRYPOINT [\"/bin/sh\", \"-c\"]"]);
    }
    tag
}

/// Several ports per service: an `image:` service's HTTP `port:` served by the proxy and a
/// `ports:` entry passed through at TCP level to redis in the same container; a deploy of a
/// new tag moves the TCP port with the HTTP one (half the connections during the canary's
/// 50 % step, all of them after), and `down` closes the public TCP port.
#[test]
fn a_tcp_port_beside_the_http_one_is_passed_through_and_moves_with_a_deploy() {
    let image = duo_image();
    let registry = Registry::start();
    let v1 = registry.push(&image, "duo:v1");
    registry.push(&image, "duo:v2");
    let name = unique("duo");
    let (http_port, tcp_port) = (free_port(), free_port());
    let testbed = testbed_bin();
    let stack = Stack::new(&format!(
        r#"
name: {name}
services:
  app:
    image: {v1}
    command: ["/usr/bin/redis-server --port 6379 --protected-mode no --save '' --dir /tmp --dbfilename ${{VERSION}}.rdb & exec {testbed} --host 0.0.0.0 --port 8080"]
    port: {http_port}
    container_port: 8080
    ports: ["{tcp_port}:6379"]
    probes:
      ready: {{http: {{path: /ready}}, interval: 200ms}}
    rollout:
      strategy: canary
      steps: [{{weight: 50, pause: 30s}}, {{weight: 100}}]
      analysis: {{min_requests: 0}}
      deadlines: {{drain: 2s}}
"#,
        testbed = testbed.display()
    ));
    let output = stack.up();
    assert!(output.status.success(), "{}", show(&output));
    // The version redis runs as is in its dump file's name: which container a TCP
    // connection through the public port reached.
    let tcp_version = || {
        let reply = redis(tcp_port, &["CONFIG", "GET", "dbfilename"])?;
        ["v1", "v2"]
            .into_iter()
            .find(|v| reply.contains(&format!("{v}.rdb")))
            .map(str::to_owned)
    };
    let pong = eventually(
        "redis answers through the proxy",
        Duration::from_secs(20),
        || redis(tcp_port, &["PING"]),
    );
    assert!(pong.starts_with("+PONG"), "{pong}");
    assert_eq!(tcp_version().as_deref(), Some("v1"));
    let body = eventually("the HTTP port answers", Duration::from_secs(20), || {
        version_served(http_port)
    });
    assert!(body.contains("v1"), "{body}");
    // The proxy listens on the public TCP port; the container publishes only on loopback
    // ports of its own.
    let published = docker_ok(&[
        "ps",
        "--filter",
        &format!("label=dev.wharf.stack={name}"),
        "--format",
        "{{.Ports}}",
    ]);
    assert!(published.contains("127.0.0.1:"), "{published}");
    assert!(
        !published.contains(&format!(":{tcp_port}->")),
        "{published}"
    );

    // Deploy v2: during the 50 % step both versions take TCP connections.
    std::thread::scope(|scope| {
        let deploy = scope.spawn(|| stack.wharf(&["deploy", "app", "--version", "v2", "--watch"]));
        let mut seen = std::collections::BTreeSet::new();
        eventually(
            "TCP connections reach both versions",
            Duration::from_secs(60),
            || {
                seen.extend(tcp_version());
                (seen.len() == 2).then_some(())
            },
        );
        let promoted = stack.wharf(&["rollout", "promote", "app"]);
        let output = deploy.join().unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}{}",
            show(&promoted),
            show(&output)
        );
    });
    assert_eq!(stack.service("app")["version"], "v2");
    eventually(
        "every TCP connection reaches v2",
        Duration::from_secs(30),
        || {
            (0..10)
                .all(|_| tcp_version().as_deref() == Some("v2"))
                .then_some(())
        },
    );
    assert!(version_served(http_port).unwrap_or_default().contains("v2"));

    // A restarted control plane adopts the container with its TCP port (from the driver's
    // handle), so the table it sends keeps the port routed: nothing restarts, v2 still answers.
    // The old version's container goes once its drain ends: wait for it, so what is compared
    // below is what the restarted control plane finds.
    let before = eventually(
        "only the v2 container runs",
        Duration::from_secs(60),
        || {
            let running = containers(&name);
            (running.len() == 1).then_some(running)
        },
    );
    kill9(i64::from(stack.control_pid().unwrap()));
    eventually("the control plane is gone", Duration::from_secs(10), || {
        (!common::alive(i64::from(stack.control_pid().unwrap_or(0)))).then_some(())
    });
    assert_eq!(
        tcp_version().as_deref(),
        Some("v2"),
        "served while wharf is down"
    );
    let output = stack.up();
    let log = std::fs::read_to_string(stack.path().join(".wharf/control.log")).unwrap_or_default();
    assert!(output.status.success(), "{}\n{log}", show(&output));
    assert_eq!(containers(&name), before, "the same container");
    // The v2 instance's identity (its spec with every published port) matches what it
    // started with: adopted as it is, not replaced. (v1 may still be draining.)
    let adopted = actions(&stack.ledger(), "instance.adopt");
    let v2: Vec<_> = adopted
        .iter()
        .filter(|e| e["details"]["version"] == "v2")
        .collect();
    assert_eq!(v2.len(), 1, "{adopted:?}");
    assert_eq!(v2[0]["details"]["outdated"], false, "{adopted:?}");
    for _ in 0..20 {
        assert_eq!(tcp_version().as_deref(), Some("v2"), "after adoption");
    }

    let output = stack.wharf(&["down"]);
    assert!(output.status.success(), "{}", show(&output));
    assert!(all_containers(&name).is_empty());
    assert!(
        redis(tcp_port, &["PING"]).is_none(),
        "the public TCP port is closed"
    );
}
