//! Shared by the end-to-end tests: a stack in a temp dir driven through the real `wharf`
//! binary, free ports, polling with a deadline, a polling HTTP client, ledger helpers.
#![allow(dead_code)] // Each test binary uses part of it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn wharf_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wharf"))
}

/// A workspace binary beside wharf's (the testbed, the proxy, the load generator); built once
/// if this test run did not build it.
fn sibling_bin(name: &str, package: &str, once: &'static Once) -> PathBuf {
    let path = wharf_bin().with_file_name(name);
    once.call_once(|| {
        if !path.exists() {
            let status = Command::new(env!("CARGO"))
                .args(["build", "-q", "-p", package, "--bins"])
                .status()
                .unwrap();
            assert!(status.success(), "building {package}");
        }
    });
    assert!(path.exists(), "{} missing", path.display());
    path
}

pub fn testbed_bin() -> PathBuf {
    static BUILD: Once = Once::new();
    sibling_bin("wharf-testbed", "wharf-testbed", &BUILD)
}

/// `wharf up` finds the proxy beside itself.
pub fn proxy_bin() -> PathBuf {
    static BUILD: Once = Once::new();
    sibling_bin("wharf-proxy", "wharf-proxy", &BUILD)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` until it returns `Some` or the deadline passes.
pub fn eventually<T>(what: &str, deadline: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + deadline;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

/// A stack in a temp dir; `down` (or a kill of whatever is left) when dropped.
pub struct Stack {
    dir: tempfile::TempDir,
}

impl Stack {
    /// `manifest` may use `TESTBED` for the testbed binary's path.
    pub fn new(manifest: &str) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let text = manifest.replace("TESTBED", &testbed_bin().display().to_string());
        proxy_bin();
        std::fs::write(dir.path().join("wharf.yaml"), text).unwrap();
        Stack { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn wharf(&self, args: &[&str]) -> Output {
        Command::new(wharf_bin())
            .args(args)
            .current_dir(self.path())
            .env("NO_COLOR", "1")
            .env("WHARF_ACTOR", "tester")
            .output()
            .unwrap()
    }

    pub fn up(&self) -> Output {
        self.wharf(&["up", "-d", "--wait-timeout", "60s"])
    }

    pub fn status(&self) -> Value {
        let output = self.wharf(&["status", "--output", "json"]);
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|_| panic!("status: {}", String::from_utf8_lossy(&output.stderr)))
    }

    pub fn service(&self, name: &str) -> Value {
        self.status()["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap()
    }

    pub fn pids(&self) -> Vec<i64> {
        let mut pids: Vec<i64> = self.status()["services"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| {
                s["instances"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|i| i["pid"].as_i64())
                    .collect::<Vec<_>>()
            })
            .collect();
        pids.sort();
        pids
    }

    pub fn ledger(&self) -> Vec<Value> {
        let output = self.wharf(&["audit", "log", "--output", "json"]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    pub fn control_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.path().join(".wharf/control.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.wharf(&["down"]);
    }
}

pub fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

pub fn kill9(pid: i64) {
    assert!(
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

/// GET on a fresh connection; `None` on any failure.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    let status = raw.split(' ').nth(1)?.parse().ok()?;
    Some((status, raw.split_once("\r\n\r\n")?.1.to_owned()))
}

/// A client polling `port` from a thread until stopped: (successes, failures).
pub struct Poller {
    stop: Arc<AtomicBool>,
    pub ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Poller {
    pub fn start(port: u16) -> Poller {
        let (stop, ok, failed) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let thread = std::thread::spawn({
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    match get(port, "/") {
                        Some((200, _)) => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                    std::thread::park_timeout(Duration::from_millis(5));
                }
            }
        });
        Poller {
            stop,
            ok,
            failed,
            thread: Some(thread),
        }
    }

    pub fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

pub fn actions(ledger: &[Value], action: &str) -> Vec<Value> {
    ledger
        .iter()
        .filter(|e| e["action"] == action)
        .cloned()
        .collect()
}

pub fn seq_of(ledger: &[Value], action: &str, target: &str) -> u64 {
    ledger
        .iter()
        .find(|e| e["action"] == action && e["target"] == target)
        .and_then(|e| e["seq"].as_u64())
        .unwrap_or_else(|| panic!("no {action} of {target} in the ledger"))
}
