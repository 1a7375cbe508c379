//! Facts about processes read from `/proc`: identity (pid + start time), liveness, memory.
//!
//! A pid alone does not identify a process: the kernel reuses pids. A pid together with the
//! process's start time (field 22 of `/proc/<pid>/stat`, clock ticks since boot) does, which is
//! what lets a restarted control plane re-adopt exactly the instances it started.

use std::fs;

/// A process as wharf records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessId {
    pub pid: i32,
    /// Start time in clock ticks since boot.
    pub start_time: u64,
}

/// Reads the start time and state of `pid`, or `None` when there is no such process.
fn stat(pid: i32) -> Option<(char, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces and ')': parse from
    // the last ')'.
    let after = &text[text.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the name: state is field 3, start time is field 22, i.e. the 20th after the state.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some((state, start_time))
}

impl ProcessId {
    /// The identity of a running process.
    pub fn of(pid: i32) -> Option<ProcessId> {
        stat(pid).map(|(_, start_time)| ProcessId { pid, start_time })
    }

    /// Whether this exact process still runs (a zombie has exited and does not count).
    pub fn is_running(&self) -> bool {
        matches!(stat(self.pid), Some((state, start)) if start == self.start_time && state != 'Z' && state != 'X')
    }
}

/// Resident set size of `pid` in bytes (from `/proc/<pid>/status`).
pub fn resident_bytes(pid: i32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_identified_and_running() {
        let me = ProcessId::of(std::process::id() as i32).unwrap();
        assert!(me.is_running());
        let impostor = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(
            !impostor.is_running(),
            "a reused pid with another start time is not ours"
        );
        assert!(resident_bytes(me.pid).unwrap() > 0);
    }
}
