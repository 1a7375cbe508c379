//! Running a secret's `rotate_command`: in the manifest's directory, with the values in its
//! environment (never argv), in a process group of its own, bounded by a timeout after which
//! the whole group is killed. Every way it can go wrong — it cannot be started, it fails, it
//! hangs — is a [`HookFailure`], never an error that would skip the rotation's finish.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wharf_secrets::{MASTER_KEY_ENV, SecretValue};

/// How long a rotate_command may run before it is killed and counted as failed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// How long the hook's stderr may stay open after it exited (a background child holding it).
const STDERR_GRACE: Duration = Duration::from_secs(2);

/// Why a rotate_command did not succeed.
///
/// `summary` is safe to record (an exit status, a timeout, why it could not start); `stderr`
/// is the hook's own output, which may echo the new value (a shell under `set -x`): it goes to
/// the operator's terminal only, never to a log, the ledger or the API.
#[derive(Clone, PartialEq, Eq)]
pub struct HookFailure {
    pub summary: String,
    pub stderr: String,
}

impl HookFailure {
    fn new(summary: String) -> HookFailure {
        HookFailure {
            summary,
            stderr: String::new(),
        }
    }

    /// What the operator sees: the hook's stderr, then `rotate_command: <summary>`.
    pub fn report(&self) -> String {
        let mut text = self.stderr.clone();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("rotate_command: {}\n", self.summary));
        text
    }
}

/// The stderr stays out of debug output: it may hold the value.
impl std::fmt::Debug for HookFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookFailure")
            .field("summary", &self.summary)
            .field("stderr", &format_args!("[{} bytes]", self.stderr.len()))
            .finish()
    }
}

/// Runs a rotate_command in `dir` with `WHARF_SECRET_NAME`, `WHARF_SECRET_NEW` and (when there
/// is one) `WHARF_SECRET_OLD` in its environment, without the master key; kills its process
/// group after `timeout`.
pub fn run_hook(
    dir: &Path,
    name: &str,
    command: &[String],
    new: &SecretValue,
    old: Option<&SecretValue>,
    timeout: Duration,
) -> Result<(), HookFailure> {
    let Some((program, rest)) = command.split_first() else {
        return Err(HookFailure::new(format!(
            "the rotate_command of {name} is empty"
        )));
    };
    // A relative path such as `./rotate.sh` means the manifest's directory, like its cwd.
    let program = if program.contains('/') {
        dir.join(program)
    } else {
        PathBuf::from(program)
    };
    let not_text = |_| HookFailure::new(format!("a value of {name} is not UTF-8 text"));
    let mut child = Command::new(&program);
    child
        .args(rest)
        .current_dir(dir)
        // The hook gets the two values it needs, not the key that opens every secret.
        .env_remove(MASTER_KEY_ENV)
        .env("WHARF_SECRET_NAME", name)
        .env("WHARF_SECRET_NEW", new.expose_str().map_err(not_text)?)
        .env_remove("WHARF_SECRET_OLD")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own group, so that a timeout kills whatever it started too.
        .process_group(0);
    if let Some(old) = old {
        child.env("WHARF_SECRET_OLD", old.expose_str().map_err(not_text)?);
    }
    let mut child = child
        .spawn()
        .map_err(|err| HookFailure::new(format!("cannot run {}: {err}", program.display())))?;
    let pid = child.id();
    let started = Instant::now();
    let stderr = child.stderr.take().map(|mut pipe| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            let _ = tx.send(bytes);
        });
        rx
    });
    let (tx, exited) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match exited.recv_timeout(timeout) {
        Ok(status) => status,
        Err(_) => {
            kill_group(pid);
            // Killed: it ends now; its status is of no interest.
            let _ = exited.recv();
            let mut failure = HookFailure::new(format!(
                "timed out after {}s and was killed",
                timeout.as_secs_f64()
            ));
            failure.stderr = collect(stderr, STDERR_GRACE);
            return Err(failure);
        }
    };
    let status = status.map_err(|err| HookFailure::new(format!("cannot wait for it: {err}")))?;
    let remaining = (timeout.saturating_sub(started.elapsed())).min(STDERR_GRACE);
    let stderr = collect(stderr, remaining);
    if status.success() {
        return Ok(());
    }
    Err(HookFailure {
        summary: status.to_string(),
        stderr,
    })
}

/// The hook's stderr as far as it came within `wait`.
fn collect(stderr: Option<mpsc::Receiver<Vec<u8>>>, wait: Duration) -> String {
    stderr
        .and_then(|rx| rx.recv_timeout(wait).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

fn kill_group(pid: u32) {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}
