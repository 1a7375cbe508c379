//! What the control plane hands the shim to start one instance.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One instance to start: its command line and environment with `${PORT}`, `${INSTANCE}`,
/// `${VERSION}` and `${SERVICE}` already substituted, and where its logs and exit status go.
///
/// The spec reaches the shim on its stdin, never in argv or a file, because its environment
/// may hold secret values (`Debug` prints only the variable names for the same reason).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InstanceSpec {
    pub service: String,
    pub index: u32,
    pub version: String,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: PathBuf,
    pub log_path: PathBuf,
    /// Where the shim writes the exit status, so a control plane that was down when the
    /// instance exited still learns how it ended.
    pub exit_path: PathBuf,
    pub log_max_bytes: u64,
    /// Rotated files kept besides the current one.
    pub log_keep: u32,
}

impl fmt::Debug for InstanceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env_names: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("InstanceSpec")
            .field("service", &self.service)
            .field("index", &self.index)
            .field("version", &self.version)
            .field("command", &self.command)
            .field("env", &env_names)
            .field("workdir", &self.workdir)
            .field("log_path", &self.log_path)
            .finish_non_exhaustive()
    }
}

/// How an instance ended, as the shim saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit code, when it exited by itself.
    pub code: Option<i32>,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    /// RFC 3339 UTC.
    pub at: String,
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exit code {code}"),
            (None, Some(9)) => f.write_str("killed (SIGKILL)"),
            (None, Some(15)) => f.write_str("terminated (SIGTERM)"),
            (None, Some(signal)) => write!(f, "killed by signal {signal}"),
            (None, None) => f.write_str("exited"),
        }
    }
}
