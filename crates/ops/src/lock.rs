//! `control.lock`: whoever holds it is the one writer of the state directory.
//!
//! A running control plane holds it for its whole life. A CLI command that must write takes it
//! without waiting: if it gets it, no control plane runs and the command runs the use case
//! in-process while holding it; if it does not, a control plane runs and the command goes
//! through its API. The kernel releases the lock when its holder dies, so a crashed control
//! plane never leaves a stale lock behind.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::OpsError;

/// The lock file in the state directory.
pub const LOCK_FILE: &str = "control.lock";
/// The running control plane's pid, for messages.
pub const PID_FILE: &str = "control.pid";

/// How long a write that needs the lock to itself waits for a CLI writer holding it (one use
/// case: milliseconds, seconds at worst behind SQLite's busy timeout).
const CLI_WRITER_PATIENCE: std::time::Duration = std::time::Duration::from_secs(15);

/// Proof that this process is the one writer (see the module docs). Dropping it releases.
#[derive(Debug)]
pub struct ControlLock {
    /// `None` for a replica that leads by the lease and found the flock held (see
    /// [`ControlLock::for_leader`]).
    _file: Option<File>,
    state_dir: PathBuf,
}

impl ControlLock {
    /// Takes the lock without waiting; `None` when another process (a control plane) holds it.
    pub fn try_acquire(state_dir: &Path) -> Result<Option<ControlLock>, OpsError> {
        wharf_store::private_dir(state_dir).map_err(OpsError::io(format!(
            "cannot create {}",
            state_dir.display()
        )))?;
        let path = state_dir.join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(OpsError::io(format!("cannot open {}", path.display())))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(ControlLock {
                _file: Some(file),
                state_dir: state_dir.to_owned(),
            })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(source)) => Err(OpsError::Io {
                context: format!("cannot lock {}", path.display()),
                source,
            }),
        }
    }

    /// Takes the lock, waiting up to `patience` for a holder that is going away (a killed
    /// control plane's last file descriptors, a short CLI write); `None` if it stays held.
    pub fn acquire_within(
        state_dir: &Path,
        patience: std::time::Duration,
    ) -> Result<Option<ControlLock>, OpsError> {
        let deadline = std::time::Instant::now() + patience;
        loop {
            if let Some(lock) = Self::try_acquire(state_dir)? {
                return Ok(Some(lock));
            }
            if std::time::Instant::now() >= deadline {
                return Ok(None);
            }
            #[expect(
                clippy::disallowed_methods,
                reason = "a backoff while another process lets go of the lock, not synchronisation"
            )]
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Takes the lock, or explains that a control plane holds it (for writes that must not
    /// run beside one, such as `secret rekey`). A running control plane is refused at once;
    /// another holder — a CLI writing under the lock for a moment — is waited for, briefly.
    pub fn acquire_or_refuse(state_dir: &Path, what: &str) -> Result<ControlLock, OpsError> {
        if let Some(lock) = Self::try_acquire(state_dir)? {
            return Ok(lock);
        }
        let pid = std::fs::read_to_string(state_dir.join(PID_FILE)).unwrap_or_default();
        let control_plane_runs = pid
            .trim()
            .parse::<u32>()
            .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !control_plane_runs
            && let Some(lock) = Self::acquire_within(state_dir, CLI_WRITER_PATIENCE)?
        {
            return Ok(lock);
        }
        Self::try_acquire(state_dir)?.ok_or_else(|| {
            let pid = pid.trim();
            OpsError::Conflict(format!(
                "a control plane is running for this stack (pid {pid}) and holds {LOCK_FILE}; \
                 {what} needs it stopped first (`kill {pid}`: the services keep running and the \
                 next `wharf up` adopts them)"
            ))
        })
    }

    /// For a replica that holds the control lease (state in PostgreSQL): the lease, not this
    /// flock, decides who leads — a paused old leader holds the flock forever — so the flock
    /// is taken if free (CLI writers then route to this leader's API) and gone without
    /// otherwise.
    pub fn for_leader(state_dir: &Path) -> Result<ControlLock, OpsError> {
        Ok(Self::try_acquire(state_dir)?.unwrap_or_else(|| {
            tracing::info!(
                "{LOCK_FILE} is held by another process (a deposed leader?); leading by the lease without it"
            );
            ControlLock {
                _file: None,
                state_dir: state_dir.to_owned(),
            }
        }))
    }

    /// The state directory this lock guards.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_that_needs_the_lock_waits_for_a_cli_writer_but_not_for_a_control_plane() {
        let dir = tempfile::tempdir().unwrap();
        // A CLI writer holds the lock (no control plane: no pid file naming a live process).
        let holder = ControlLock::try_acquire(dir.path()).unwrap().unwrap();
        let (started, starting) = std::sync::mpsc::channel();
        let state_dir = dir.path().to_owned();
        let waiter = std::thread::spawn(move || {
            started.send(()).unwrap();
            ControlLock::acquire_or_refuse(&state_dir, "re-keying")
        });
        starting.recv().unwrap();
        drop(holder);
        let lock = waiter
            .join()
            .unwrap()
            .expect("the CLI writer's lock was waited for");
        // A running control plane (its pid file names a live process) is refused at once.
        std::fs::write(dir.path().join(PID_FILE), std::process::id().to_string()).unwrap();
        let refused = ControlLock::acquire_or_refuse(dir.path(), "re-keying").unwrap_err();
        assert!(
            refused.to_string().contains("a control plane is running"),
            "{refused}"
        );
        drop(lock);
    }
}
