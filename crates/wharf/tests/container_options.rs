//! The container options of issue 18 on a real engine — `user`, `working_dir`, `ulimits`,
//! `shm_size`, `cap_drop`, `read_only` with `tmpfs`, `stop.signal` — each checked twice: as the
//! engine recorded it (`docker inspect`) and as the kernel applies it to the container's
//! process (`/proc`), with the service serving through the proxy. Then networks: two
//! containers on an `internal: true` network reach each other by name, and one that is only
//! on it cannot reach the host while one on the stack's own network can. And a process's
//! `stop:`: it is asked to stop with its own signal, and killed after its own grace.
//!
//! Needs `docker` with a running daemon (scripts/test installs docker.io and starts dockerd).

mod common;

use std::time::Duration;

use common::docker::{
    docker, docker_ok, inspect, proc_file, service_containers, testbed_image, unique,
};
use common::{Stack, actions, eventually, free_port, get};

fn show(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The line of a `/proc/PID/status` or `limits` file that starts with `name`, whitespace
/// folded.
fn line(text: &str, name: &str) -> String {
    text.lines()
        .find(|l| l.starts_with(name))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| panic!("no `{name}` in\n{text}"))
}

/// The mount options of `mount_point` in a `/proc/PID/mountinfo` (fields 6 and after the
/// `-`: the per-mount and the superblock options), with its filesystem type.
fn mount(mountinfo: &str, mount_point: &str) -> String {
    mountinfo
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some(mount_point))
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let dash = fields.iter().position(|f| *f == "-").unwrap();
            format!("{} {} {}", fields[5], fields[dash + 1], fields[dash + 3])
        })
        .unwrap_or_else(|| panic!("no mount at {mount_point} in\n{mountinfo}"))
}

#[test]
fn user_workdir_limits_shm_capabilities_and_a_read_only_root_reach_the_container() {
    let image = testbed_image();
    let name = unique("opts");
    let port = free_port();
    let stack = Stack::new(&format!(
        r#"
name: {name}
services:
  api:
    image: {image}
    pull_policy: never
    port: {port}
    container_port: 8080
    user: "1000:1001"
    working_dir: /srv
    ulimits:
      nofile: {{soft: 1024, hard: 2048}}
    shm_size: 32m
    cap_drop: [ALL]
    read_only: true
    tmpfs: [/tmp]
    stop: {{signal: SIGQUIT, grace: 3s}}
    probes:
      ready: {{http: {{path: /ready}}, interval: 200ms}}
"#
    ));
    let output = stack.up();
    assert!(output.status.success(), "{}", show(&output));
    // It serves through the proxy as that user, from a read-only root.
    let served = eventually("api answers", Duration::from_secs(20), || {
        get(port, "/").filter(|(status, _)| *status == 200)
    });
    assert!(served.1.contains("v"), "{served:?}");
    let ids = service_containers(&name, "api");
    assert_eq!(ids.len(), 1, "{ids:?}");
    let id = &ids[0];

    // What the engine was told.
    assert_eq!(inspect(id, "{{.Config.User}}"), "1000:1001");
    assert_eq!(inspect(id, "{{.Config.WorkingDir}}"), "/srv");
    assert_eq!(inspect(id, "{{.Config.StopSignal}}"), "SIGQUIT");
    assert_eq!(
        inspect(
            id,
            "{{range .HostConfig.Ulimits}}{{.Name}}={{.Soft}}:{{.Hard}}{{end}}"
        ),
        "nofile=1024:2048"
    );
    assert_eq!(
        inspect(id, "{{.HostConfig.ShmSize}}"),
        (32u64 << 20).to_string()
    );
    assert_eq!(inspect(id, "{{.HostConfig.CapDrop}}"), "[ALL]");
    assert_eq!(inspect(id, "{{.HostConfig.ReadonlyRootfs}}"), "true");
    assert_eq!(inspect(id, "{{json .HostConfig.Tmpfs}}"), r#"{"/tmp":""}"#);

    // What the kernel applies to its process.
    let status = proc_file(id, "status");
    assert_eq!(line(&status, "Uid:"), "Uid: 1000 1000 1000 1000");
    assert_eq!(line(&status, "Gid:"), "Gid: 1001 1001 1001 1001");
    assert_eq!(line(&status, "CapEff:"), "CapEff: 0000000000000000");
    assert_eq!(line(&status, "CapBnd:"), "CapBnd: 0000000000000000");
    let limits = proc_file(id, "limits");
    assert_eq!(
        line(&limits, "Max open files"),
        "Max open files 1024 2048 files"
    );
    let mounts = proc_file(id, "mountinfo");
    assert!(
        mount(&mounts, "/").starts_with("ro,"),
        "{}",
        mount(&mounts, "/")
    );
    assert!(
        mount(&mounts, "/tmp").contains(" tmpfs "),
        "{}",
        mount(&mounts, "/tmp")
    );
    let shm = mount(&mounts, "/dev/shm");
    assert!(shm.contains("size=32768k"), "{shm}");
    let cwd = std::fs::read_link(format!("/proc/{}/cwd", inspect(id, "{{.State.Pid}}"))).unwrap();
    assert!(cwd.ends_with("srv"), "{}", cwd.display());

    let output = stack.wharf(&["down"]);
    assert!(output.status.success(), "{}", show(&output));
}

/// A server "outside" the machine's docker networks: in a network namespace of its own behind
/// a veth pair, so a container reaches it only through the host's forwarding — which docker
/// gives a normal network and refuses an internal one. (An internal network of docker 20.10
/// still reaches the host's own addresses, so a server on the host would not tell them apart.)
struct Outside {
    namespace: String,
    address: String,
    server: std::process::Child,
}

impl Outside {
    fn start() -> Outside {
        let id = free_port();
        let namespace = format!("wharf-out-{id}");
        let (host_if, ns_if) = (format!("wo{id}"), format!("wp{id}"));
        let net = format!("10.203.{}", id % 250);
        let address = format!("{net}.2");
        let ip = |args: &[&str]| {
            let output = std::process::Command::new("ip")
                .args(args)
                .output()
                .unwrap_or_else(|e| panic!("cannot run `ip` ({e}): install iproute2"));
            assert!(
                output.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        ip(&["netns", "add", &namespace]);
        let outside = Outside {
            namespace: namespace.clone(),
            address: address.clone(),
            server: std::process::Command::new("ip")
                .args(["netns", "exec", &namespace])
                .arg(common::testbed_bin())
                .args(["--host", &address, "--port", "8080"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        };
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &namespace]);
        ip(&["addr", "add", &format!("{net}.1/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &namespace, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&["addr", "add", &format!("{address}/30"), "dev", &ns_if]);
        inside(&["link", "set", &ns_if, "up"]);
        inside(&["link", "set", "lo", "up"]);
        outside
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        // Deleting the namespace deletes the veth pair with it.
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.namespace])
            .output();
    }
}

#[test]
fn an_internal_network_joins_its_containers_by_name_and_has_no_route_out() {
    let image = testbed_image();
    let name = unique("net");
    let outside_server = Outside::start();
    let (reach_port, web_port) = (free_port(), free_port());
    let outside = format!("http://{}:8080/health", outside_server.address);
    let stack = Stack::new(&format!(
        r#"
name: {name}
networks:
  back: {{internal: true}}
services:
  reach:
    image: {image}
    pull_policy: never
    port: {reach_port}
    container_port: 8080
    command: [--depends-on, "{outside}"]
  store:
    image: {image}
    pull_policy: never
    networks: [back]
    command: [--port, "8080", --depends-on, "{outside}"]
  web:
    image: {image}
    pull_policy: never
    port: {web_port}
    container_port: 8080
    networks: [default, back]
    command: [--depends-on, "http://store:8080/health", --depends-on, "http://store:8080/ready"]
    depends_on: [store]
"#
    ));
    let output = stack.up();
    assert!(output.status.success(), "{}", show(&output));
    let network = format!("{name}_back");
    assert_eq!(
        docker_ok(&["network", "inspect", &network, "--format", "{{.Internal}}"]),
        "true"
    );
    // On the stack's own network the outside is reachable: `reach` gets ready.
    eventually("reach reaches the outside", Duration::from_secs(20), || {
        get(reach_port, "/ready").filter(|(status, _)| *status == 200)
    });
    // `web` reaches `store` by name across the internal network (its /health answers), and
    // `store`, only on that network, cannot reach the outside (its /ready fails).
    let (_, body) = eventually(
        "web's dependencies are judged",
        Duration::from_secs(20),
        || get(web_port, "/ready").filter(|(status, _)| *status == 503),
    );
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    let failures: Vec<&str> = report["failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert_eq!(failures.len(), 1, "{body}");
    assert!(
        failures[0].starts_with("http://store:8080/ready: "),
        "store answered by name, and is not ready: {body}"
    );
    let store = service_containers(&name, "store");
    assert_eq!(
        inspect(
            &store[0],
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}"
        ),
        network
    );
    let web = service_containers(&name, "web");
    assert_eq!(
        inspect(
            &web[0],
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}"
        ),
        format!("{network} {name}_wharf")
    );

    // `down` removes the networks (they hold no data).
    let output = stack.wharf(&["down"]);
    assert!(output.status.success(), "{}", show(&output));
    eventually("the networks are gone", Duration::from_secs(20), || {
        let back = docker(&["network", "inspect", &network]).status.success();
        let own = docker(&["network", "inspect", &format!("{name}_wharf")])
            .status
            .success();
        (!back && !own).then_some(())
    });
}

/// A process is asked to stop with its service's `stop.signal` (which it traps, ending
/// cleanly), and one that ignores its signal is killed after its service's `stop.grace`, not
/// the control plane's default (10 s).
#[test]
fn a_process_is_stopped_with_its_own_signal_and_grace() {
    let stack = Stack::new(
        r#"
name: stopper
services:
  quits:
    command: [sh, -c, "trap 'echo stopped by SIGQUIT; exit 0' QUIT; while true; do sleep 0.1; done"]
    stop: {signal: SIGQUIT}
  stubborn:
    command: [sh, -c, "trap '' USR1; while true; do sleep 0.1; done"]
    stop: {signal: SIGUSR1, grace: 300ms}
"#,
    );
    let output = stack.up();
    assert!(output.status.success(), "{}", show(&output));
    let output = stack.wharf(&["down"]);
    assert!(output.status.success(), "{}", show(&output));
    let ledger = stack.ledger();
    let stopped = actions(&ledger, "instance.stopped");
    let status = |target: &str| {
        stopped
            .iter()
            .find(|e| e["target"] == target)
            .map(|e| {
                e["details"]["status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .unwrap_or_else(|| panic!("no instance.stopped for {target}: {stopped:?}"))
    };
    assert_eq!(status("quits/0"), "exit code 0");
    let logs = stack.wharf(&["logs", "quits"]);
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("stopped by SIGQUIT"),
        "{}",
        show(&logs)
    );
    assert_eq!(status("stubborn/0"), "killed (SIGKILL)");
    // Killed after its own grace: well before the default 10 s had passed.
    let at = |action: &str| -> jiff::Timestamp {
        actions(&ledger, action)
            .iter()
            .find(|e| e["target"] == "stubborn/0")
            .and_then(|e| e["time"].as_str()?.parse().ok())
            .unwrap_or_else(|| panic!("no {action} for stubborn/0"))
    };
    let waited = at("instance.stopped").duration_since(at("instance.stop"));
    assert!(
        waited < jiff::SignedDuration::from_secs(5),
        "stopped after {waited:?}"
    );
}

/// The same without a control plane (it was killed): `down` stops the recorded processes
/// itself, with the signal kept in each one's handle and its service's grace from the
/// manifest.
#[test]
fn a_process_is_stopped_with_its_own_signal_and_grace_by_a_down_without_control_plane() {
    let stack = Stack::new(
        r#"
name: stopper-adopted
services:
  quits:
    command: [sh, -c, "trap 'echo stopped by SIGQUIT; exit 0' QUIT; while true; do sleep 0.1; done"]
    stop: {signal: SIGQUIT}
  stubborn:
    command: [sh, -c, "trap '' USR1; while true; do sleep 0.1; done"]
    stop: {signal: SIGUSR1, grace: 300ms}
"#,
    );
    let output = stack.up();
    assert!(output.status.success(), "{}", show(&output));
    let control = stack.control_pid().unwrap();
    common::kill9(i64::from(control));
    eventually("the control plane is gone", Duration::from_secs(10), || {
        (!common::alive(i64::from(control))).then_some(())
    });
    let started = std::time::Instant::now();
    let output = stack.wharf(&["down"]);
    let took = started.elapsed();
    let text = show(&output);
    assert!(output.status.success(), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("stopped quits/0") && l.ends_with("graceful)")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("stopped stubborn/0")
            && l.ends_with("killed after the grace period)")),
        "{text}"
    );
    let logs = stack.wharf(&["logs", "quits"]);
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("stopped by SIGQUIT"),
        "{}",
        show(&logs)
    );
    // Its own grace, not the default 10 s.
    assert!(took < Duration::from_secs(8), "down took {took:?}");
}
