//! Real PostgreSQL and Redis servers for the probe tests: each on a free loopback port, in a
//! temp dir of its own, stopped and removed on Drop. Any test file can use them with
//! `mod support;`. The Debian packages' own cluster and service (port 5432, 6379) play no part.
#![allow(dead_code)] // Each test binary uses only part of the harness.

pub mod postgres;
pub mod redis;

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

/// How long a server may take to start or stop before the test gives up.
const DEADLINE: Duration = Duration::from_secs(60);

/// A loopback port nobody listens on right now. Another process could take it before the
/// server binds; servers whose start fails retry on a fresh port.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// Polls `ready` until it holds or `deadline` passes (checking every 20ms).
#[expect(
    clippy::disallowed_methods,
    reason = "the pause between two polls of a deadline loop; the condition is the synchronisation"
)]
pub fn poll_until(deadline: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + deadline;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// stdout and stderr for a server, appended to `log`.
fn log_to(log: &Path) -> (Stdio, Stdio) {
    let file = File::options()
        .create(true)
        .append(true)
        .open(log)
        .expect("open the server log");
    let copy = file.try_clone().expect("clone the log file handle");
    (file.into(), copy.into())
}

/// The log's last lines, for a failure message.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Asks `child` to stop with `signal`, waits for it (polling, with a deadline), and kills it
/// if it does not stop in time.
fn stop(child: &mut Child, signal: Signal) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = rustix::process::kill_process(Pid::from_child(child), signal);
    let exited = poll_until(DEADLINE, || matches!(child.try_wait(), Ok(Some(_))));
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
    }
}
