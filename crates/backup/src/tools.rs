//! The engine tools wharf wraps (pg_dump, mariadb-dump, redis-server, …): where they are found,
//! how a missing one is reported, and how a running one is waited for with its stderr kept for
//! the error message (scrubbed of the credential it was given).

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;

use crate::error::{BackupError, Result};
use crate::secret::Secret;

/// A program wharf runs, with what it is for and which Debian package brings it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    PgDump,
    PgRestore,
    Initdb,
    Postgres,
    PgIsready,
    Mariadb,
    MariadbDump,
    MariadbInstallDb,
    Mariadbd,
    RedisServer,
    RedisCli,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::PgDump => "pg_dump",
            Tool::PgRestore => "pg_restore",
            Tool::Initdb => "initdb",
            Tool::Postgres => "postgres",
            Tool::PgIsready => "pg_isready",
            Tool::Mariadb => "mariadb",
            Tool::MariadbDump => "mariadb-dump",
            Tool::MariadbInstallDb => "mariadb-install-db",
            Tool::Mariadbd => "mariadbd",
            Tool::RedisServer => "redis-server",
            Tool::RedisCli => "redis-cli",
        }
    }

    fn purpose(self) -> &'static str {
        match self {
            Tool::PgDump | Tool::MariadbDump | Tool::RedisCli => "back up",
            Tool::PgRestore | Tool::Mariadb => "restore",
            _ => "start a sandbox server",
        }
    }

    fn package(self) -> &'static str {
        match self {
            Tool::PgDump | Tool::PgRestore | Tool::PgIsready => "postgresql-client",
            Tool::Initdb | Tool::Postgres => "postgresql",
            Tool::Mariadb | Tool::MariadbDump => "mariadb-client",
            Tool::MariadbInstallDb | Tool::Mariadbd => "mariadb-server",
            Tool::RedisServer | Tool::RedisCli => "redis-server (and redis-tools)",
        }
    }
}

/// Where tools are looked up: a PATH-like list of directories. PostgreSQL's server binaries
/// are not on Debian's PATH, so [`Tools::from_env`] appends the newest
/// `/usr/lib/postgresql/<version>/bin`.
#[derive(Debug, Clone)]
pub struct Tools {
    dirs: Vec<PathBuf>,
}

impl Tools {
    /// `$PATH` plus the newest PostgreSQL server bin directory.
    pub fn from_env() -> Tools {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut tools = Tools::with_path(&path);
        if let Some(bin) = newest_postgres_bin() {
            tools.dirs.push(bin);
        }
        tools
    }

    /// Exactly the directories of `path` (a PATH-like value).
    pub fn with_path(path: &OsString) -> Tools {
        Tools {
            dirs: std::env::split_paths(path).collect(),
        }
    }

    /// The tool's executable, or [`BackupError::ToolMissing`].
    pub fn find(&self, tool: Tool) -> Result<PathBuf> {
        self.dirs
            .iter()
            .map(|dir| dir.join(tool.name()))
            .find(|candidate| is_executable(candidate))
            .ok_or(BackupError::ToolMissing {
                tool: tool.name(),
                purpose: tool.purpose(),
                package: tool.package(),
            })
    }

    /// A `Command` for the tool: stdin closed, stdout and stderr piped, environment cleared
    /// of variables that would redirect the tool (`PG*`, `MYSQL*`) but for `PATH`/`HOME`/`LANG`.
    pub fn command(&self, tool: Tool) -> Result<Command> {
        let mut command = Command::new(self.find(tool)?);
        command.env_clear();
        for key in ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"] {
            if let Some(value) = std::env::var_os(key) {
                command.env(key, value);
            }
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Ok(command)
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn newest_postgres_bin() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
}

/// A started tool whose stderr is being collected (so a full pipe never blocks it).
pub(crate) struct Running {
    pub tool: Tool,
    pub child: Child,
    stderr: Option<JoinHandle<String>>,
    scrub: Option<Secret>,
}

impl Running {
    /// Spawns `command` (built by [`Tools::command`]).
    pub fn spawn(tool: Tool, mut command: Command, scrub: Option<Secret>) -> Result<Running> {
        let mut child = command.spawn().map_err(|e| BackupError::ToolFailed {
            tool: tool.name(),
            status: "could not start".into(),
            detail: e.to_string(),
        })?;
        let stderr = child.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                text
            })
        });
        Ok(Running {
            tool,
            child,
            stderr,
            scrub,
        })
    }

    /// Waits for the tool; a non-zero exit is [`BackupError::ToolFailed`] with its stderr.
    pub fn finish(&mut self) -> Result<()> {
        let status = self
            .child
            .wait()
            .map_err(|e| BackupError::io(self.tool.name(), e))?;
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        if status.success() {
            if !stderr.trim().is_empty() {
                tracing::debug!(tool = self.tool.name(), "tool wrote to stderr");
            }
            return Ok(());
        }
        Err(BackupError::ToolFailed {
            tool: self.tool.name(),
            status: status.to_string(),
            detail: self.clean(&stderr),
        })
    }

    fn clean(&self, stderr: &str) -> String {
        let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
        let text = tail.into_iter().rev().collect::<Vec<_>>().join(" / ");
        match &self.scrub {
            Some(secret) => secret.scrub(&text),
            None => text,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A tool abandoned half-way (an error elsewhere) must not outlive the backup.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Writes `contents` to a new 0600 file in `dir` (for option and password files).
pub(crate) fn private_file(dir: &Path, name: &str, contents: &str) -> Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| BackupError::io(&path, e))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| BackupError::io(&path, e))?;
    Ok(path)
}
