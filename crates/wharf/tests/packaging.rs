//! wharf's packaging for one machine: the systemd unit (`packaging/systemd/wharf@.service`).
//! No systemd runs as PID 1 here, so the test does what systemd would with the unit: checks it
//! with `systemd-analyze verify`, then runs its ExecStart, reads its PIDFile, crashes the main
//! process (what `Restart=on-failure` answers by running ExecStart again), reloads and stops —
//! the real commands, on a real stack.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Stack, alive, eventually, kill9, wharf_bin};

const UNIT: &str = include_str!("../../../packaging/systemd/wharf@.service");

/// The unit as systemd would see it for instance `shop` whose directory is `dir`, with the
/// binary where the tests built it.
fn instantiated(dir: &Path) -> String {
    let root = dir.parent().unwrap().display().to_string();
    UNIT.replace("/usr/local/bin/wharf", &wharf_bin().display().to_string())
        .replace("/srv/wharf", &root)
}

fn setting(unit: &str, key: &str, instance: &str) -> String {
    unit.lines()
        .find_map(|line| line.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in the unit"))
        .replace("%i", instance)
}

fn exec(command: &str, dir: &Path) -> std::process::Output {
    let words = shlex::split(command).unwrap();
    Command::new(&words[0])
        .args(&words[1..])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("WHARF_ACTOR", "systemd")
        .output()
        .unwrap()
}

#[test]
fn the_systemd_unit_verifies_and_its_commands_start_adopt_reload_and_stop_the_stack() {
    let stack = Stack::new(
        r#"
name: shop
services:
  api:
    command: [TESTBED, --port, "${PORT}"]
"#,
    );
    // Instance `shop` lives in a directory named `shop`.
    let parent = stack.path();
    let dir = parent.join("shop");
    std::fs::create_dir(&dir).unwrap();
    std::fs::rename(parent.join("wharf.yaml"), dir.join("wharf.yaml")).unwrap();
    let unit = instantiated(&dir);

    let units = tempfile::tempdir().unwrap();
    std::fs::write(units.path().join("wharf@.service"), &unit).unwrap();
    std::os::unix::fs::symlink("wharf@.service", units.path().join("wharf@shop.service")).unwrap();
    let verify = Command::new("systemd-analyze")
        .args(["verify", "wharf@shop.service"])
        .current_dir(units.path())
        .output()
        .expect("systemd-analyze (scripts/test installs systemd)");
    let said = String::from_utf8_lossy(&verify.stderr).to_string();
    assert!(verify.status.success() && said.trim().is_empty(), "{said}");
    assert_eq!(setting(&unit, "Type", "shop"), "forking");
    assert_eq!(setting(&unit, "KillMode", "shop"), "process");
    assert_eq!(setting(&unit, "Restart", "shop"), "on-failure");

    let start = exec(&setting(&unit, "ExecStart", "shop"), &dir);
    assert!(
        start.status.success(),
        "{}",
        String::from_utf8_lossy(&start.stderr)
    );
    let pid_file = setting(&unit, "PIDFile", "shop");
    let main_pid: i64 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(main_pid));
    let status = |dir: &Path| -> serde_json::Value {
        let out = Command::new(wharf_bin())
            .args(["--output", "json", "status"])
            .current_dir(dir)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    let instance_pid = eventually("api running", Duration::from_secs(30), || {
        status(&dir)["services"][0]["instances"][0]["pid"].as_i64()
    });

    // The main process crashes; systemd runs ExecStart again, which adopts the running service.
    kill9(main_pid);
    eventually(
        "the old control plane gone",
        Duration::from_secs(10),
        || (!alive(main_pid)).then_some(()),
    );
    let restart = exec(&setting(&unit, "ExecStart", "shop"), &dir);
    assert!(
        restart.status.success(),
        "{}",
        String::from_utf8_lossy(&restart.stderr)
    );
    let new_pid: i64 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(new_pid, main_pid);
    assert!(
        alive(instance_pid),
        "the service kept running through the crash"
    );
    assert_eq!(
        status(&dir)["services"][0]["instances"][0]["pid"].as_i64(),
        Some(instance_pid)
    );

    let reload = exec(&setting(&unit, "ExecReload", "shop"), &dir);
    assert!(
        reload.status.success(),
        "{}",
        String::from_utf8_lossy(&reload.stderr)
    );

    let stop = exec(&setting(&unit, "ExecStop", "shop"), &dir);
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    eventually("the stack stopped", Duration::from_secs(30), || {
        (!alive(instance_pid) && !alive(new_pid)).then_some(())
    });
    assert!(
        !Path::new(&pid_file).exists(),
        "the PIDFile goes with the control plane"
    );
}
