//! A throwaway PostgreSQL cluster: `initdb` into a temp dir, `postgres` on a free loopback
//! port with its socket in that dir, password (SCRAM) logins over TCP.
//!
//! `initdb` and `postgres` refuse to run as root, so as root they run as the `postgres` user
//! (which the Debian package creates) and the temp dir is handed to it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use rustix::process::Signal;
use tempfile::TempDir;

use super::{DEADLINE, free_port, log_to, poll_until, stop, tail};

/// The superuser `initdb` creates, and its password.
pub const USER: &str = "wharf";
pub const PASSWORD: &str = "correct-horse-battery";

pub struct Postgres {
    pub port: u16,
    child: Option<Child>,
    bin: PathBuf,
    dir: TempDir,
    owner: Option<(u32, u32)>,
}

impl Postgres {
    /// Creates a cluster and starts it; returns once it accepts connections.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("wharf-pg")
            .tempdir()
            .expect("temp dir");
        let owner = owner();
        std::fs::write(dir.path().join("pwfile"), PASSWORD).expect("write the password file");
        if let Some((uid, gid)) = owner {
            for path in [dir.path().to_owned(), dir.path().join("pwfile")] {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).expect("chown to postgres");
            }
        }
        let mut server = Postgres {
            port: 0,
            child: None,
            bin,
            dir,
            owner,
        };
        server.initdb();
        // A port taken between free_port() and the server's bind: try another.
        for _ in 0..3 {
            server.port = free_port();
            if server.launch() {
                return server;
            }
        }
        panic!("postgres did not start:\n{}", tail(&server.log()));
    }

    /// `postgres://user:password@127.0.0.1:port/db`
    pub fn url(&self, user: &str, password: &str, db: &str) -> String {
        format!("postgres://{user}:{password}@127.0.0.1:{}/{db}", self.port)
    }

    /// Stops the server (fast shutdown) and waits until it has exited.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child, Signal::INT);
        }
    }

    /// Starts the stopped server again on the same port and data (an outage that ends).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the server still runs");
        assert!(
            self.launch(),
            "postgres did not start again:\n{}",
            tail(&self.log())
        );
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        let (stdout, stderr) = log_to(&self.log());
        command
            .current_dir(self.dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        command
    }

    fn initdb(&self) {
        let status = self
            .command("initdb")
            .arg("-D")
            .arg(self.data())
            .args(["-U", USER, "--pwfile"])
            .arg(self.dir.path().join("pwfile"))
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .args(["--no-sync", "--encoding=UTF8", "--locale=C"])
            .status()
            .expect("run initdb");
        assert!(status.success(), "initdb failed:\n{}", tail(&self.log()));
    }

    /// Starts `postgres` on `self.port`; false if it exited before accepting connections.
    fn launch(&mut self) -> bool {
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off", "-c", "shared_buffers=16MB"])
            .args(["-c", "max_connections=20"])
            .spawn()
            .expect("run postgres");
        let child = self.child.insert(child);
        let (bin, port) = (self.bin.clone(), self.port);
        let mut exited = false;
        let ready = poll_until(DEADLINE, || {
            exited = matches!(child.try_wait(), Ok(Some(_)));
            exited || accepting(&bin, port)
        });
        assert!(ready, "postgres not ready in time:\n{}", tail(&self.log()));
        if exited {
            self.child = None;
        }
        !exited
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Immediate shutdown: the cluster is thrown away with the temp dir.
            stop(&mut child, Signal::QUIT);
        }
    }
}

/// `pg_isready` says the server takes connections (not merely that the port is open).
fn accepting(bin: &Path, port: u16) -> bool {
    Command::new(bin.join("pg_isready"))
        .args(["-q", "-h", "127.0.0.1", "-t", "1", "-p"])
        .arg(port.to_string())
        .status()
        .is_ok_and(|status| status.success())
}

/// The newest `/usr/lib/postgresql/<version>/bin` with an `initdb` (Debian's layout).
fn bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).expect(
        "PostgreSQL not found under /usr/lib/postgresql/*/bin: \
         scripts/test installs it (apt-get install postgresql)",
    )
}

/// As root, the uid and gid of the `postgres` user; otherwise the servers run as ourselves.
fn owner() -> Option<(u32, u32)> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    let line = passwd
        .lines()
        .find(|line| line.starts_with("postgres:"))
        .expect("no postgres user: install the postgresql package");
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields[2].parse().unwrap(), fields[3].parse().unwrap()))
}
