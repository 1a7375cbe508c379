//! Test support (feature `testing`): a throwaway PostgreSQL server on a free loopback port
//! with its data in a temp dir, and [`both`], which gives a test the same state on SQLite and
//! on PostgreSQL so the store's suite runs on each engine.
//!
//! `initdb` and `postgres` refuse to run as root, so as root they run as the `postgres` user
//! (which the Debian package creates) and the temp dir is handed to it. The binaries are found
//! in `/usr/lib/postgresql/<newest>/bin` (Debian) or on `PATH` (`/usr/local/bin` here);
//! `scripts/test` installs the package when they are missing. Failures panic with the
//! server's log: this is test code.

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rand::RngCore;
use rustix::process::{Pid, Signal};
use tempfile::TempDir;

use crate::{PgDsn, StateLocation, Store};

/// How long a server may take to start or stop.
const DEADLINE: Duration = Duration::from_secs(60);

/// The superuser `initdb` creates.
pub const USER: &str = "wharf";

/// A PostgreSQL server for tests, stopped (immediate shutdown) and removed on drop.
pub struct PgServer {
    port: u16,
    password: String,
    child: Option<Child>,
    bin: PathBuf,
    dir: TempDir,
    owner: Option<(u32, u32)>,
    durable: bool,
    databases: AtomicU32,
}

impl std::fmt::Debug for PgServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgServer")
            .field("port", &self.port)
            .finish()
    }
}

impl PgServer {
    /// A server for tests: `fsync=off`, since a test's data dies with it.
    pub fn start() -> PgServer {
        Self::start_with(false)
    }

    /// A server with PostgreSQL's default durability (`fsync=on`): for figures compared
    /// with SQLite's `synchronous = FULL`.
    pub fn start_durable() -> PgServer {
        Self::start_with(true)
    }

    fn start_with(durable: bool) -> PgServer {
        let dir = tempfile::Builder::new()
            .prefix("wharf-store-pg")
            .tempdir()
            .expect("temp dir");
        let mut seed = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let password: String = seed.iter().map(|b| format!("{b:02x}")).collect();
        let owner = owner();
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, &password).expect("write the password file");
        if let Some((uid, gid)) = owner {
            for path in [dir.path(), pwfile.as_path()] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown to postgres");
            }
        }
        let mut server = PgServer {
            port: 0,
            password,
            child: None,
            bin: bin_dir(),
            dir,
            owner,
            durable,
            databases: AtomicU32::new(0),
        };
        server.initdb();
        let _ = std::fs::remove_file(&pwfile);
        // A port taken between free_port() and the server's bind: try another.
        for _ in 0..3 {
            server.port = free_port();
            if server.launch() {
                return server;
            }
        }
        panic!("postgres did not start:\n{}", server.log_tail());
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://wharf:<password>@127.0.0.1:<port>/<db>` with `password` (the right one
    /// when `None`).
    pub fn url(&self, db: &str, password: Option<&str>) -> String {
        let password = password.unwrap_or(&self.password);
        format!("postgres://{USER}:{password}@127.0.0.1:{}/{db}", self.port)
    }

    /// The server's password (to check that no error or log repeats it).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// A new, empty database on this server, as a DSN.
    pub fn fresh_database(&self) -> PgDsn {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("wharf_test_{n}");
        let mut client = postgres::Client::connect(&self.url("postgres", None), postgres::NoTls)
            .expect("connect to the test server");
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create a test database");
        PgDsn::parse(&self.url(&name, None)).expect("a valid DSN")
    }

    /// Stops the server (fast shutdown) and waits until it has exited.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child, Signal::INT);
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.log())
            .expect("open the server log");
        let copy = log.try_clone().expect("clone the log handle");
        command
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(copy);
        command
    }

    fn initdb(&self) {
        let status = self
            .command("initdb")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-U", USER, "--pwfile"])
            .arg(self.dir.path().join("pwfile"))
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .args(["--no-sync", "--encoding=UTF8", "--locale=C"])
            .status()
            .expect("run initdb");
        assert!(status.success(), "initdb failed:\n{}", self.log_tail());
    }

    /// Starts `postgres` on `self.port`; false if it exited before accepting connections.
    fn launch(&mut self) -> bool {
        let fsync = if self.durable {
            "fsync=on"
        } else {
            "fsync=off"
        };
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", fsync])
            .args(["-c", "shared_buffers=32MB", "-c", "max_connections=40"])
            .spawn()
            .expect("run postgres");
        self.child = Some(child);
        let url = format!(
            "postgres://{USER}:{}@127.0.0.1:{}/postgres",
            self.password, self.port
        );
        let until = Instant::now() + DEADLINE;
        let mut backoff = Duration::from_millis(5);
        loop {
            let exited = self
                .child
                .as_mut()
                .is_some_and(|child| matches!(child.try_wait(), Ok(Some(_))));
            if exited {
                self.child = None;
                return false;
            }
            if postgres::Client::connect(&url, postgres::NoTls).is_ok() {
                return true;
            }
            assert!(
                Instant::now() < until,
                "postgres not ready in time:\n{}",
                self.log_tail()
            );
            // The pause between two polls of a loop bounded by the deadline above.
            #[expect(
                clippy::disallowed_methods,
                reason = "a pause between polls bounded by a deadline, not synchronisation"
            )]
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_millis(100));
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Immediate shutdown: the cluster is thrown away with the temp dir.
            stop(&mut child, Signal::QUIT);
        }
    }
}

fn stop(child: &mut Child, signal: Signal) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = rustix::process::kill_process(Pid::from_child(child), signal);
    // postgres exits on these signals; wait() returns when it has.
    let _ = child.wait();
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// The newest `/usr/lib/postgresql/<version>/bin` with an `initdb` (Debian's layout), else
/// the directory on `PATH` that has one.
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
    if let Some((_, bin)) = found.pop() {
        return bin;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| dir.join("initdb").exists() && dir.join("postgres").exists())
        .expect(
            "PostgreSQL not found under /usr/lib/postgresql/*/bin nor on PATH: \
             scripts/test installs it (apt-get install postgresql)",
        )
}

/// As root, the uid and gid of the `postgres` user; otherwise the server runs as ourselves.
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
    Some((
        fields[2].parse().expect("uid"),
        fields[3].parse().expect("gid"),
    ))
}

/// One engine's state for a test: where it lives and a state directory beside it (the ledger
/// key file and logs stay in a directory whichever engine holds the tables).
#[derive(Debug)]
pub struct TestState {
    /// `"sqlite"` or `"postgres"`, for failure messages.
    pub engine: &'static str,
    pub location: StateLocation,
    dir: TempDir,
    server: Option<Arc<PgServer>>,
}

impl TestState {
    /// A state in a new temp directory, on SQLite.
    pub fn sqlite() -> TestState {
        let dir = tempfile::tempdir().expect("temp dir");
        TestState {
            engine: "sqlite",
            location: StateLocation::Dir(dir.path().to_owned()),
            dir,
            server: None,
        }
    }

    /// A state in a fresh database of `server`.
    pub fn postgres(server: &Arc<PgServer>) -> TestState {
        TestState {
            engine: "postgres",
            location: StateLocation::Postgres(server.fresh_database()),
            dir: tempfile::tempdir().expect("temp dir"),
            server: Some(server.clone()),
        }
    }

    /// Opens the store (panics with the engine's name if it cannot).
    pub fn open(&self) -> Store {
        Store::open_location(&self.location)
            .unwrap_or_else(|e| panic!("{}: cannot open the store: {e}", self.engine))
    }

    /// The state directory (for the key file; for SQLite it also holds `state.db`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server, for PostgreSQL.
    pub fn server(&self) -> Option<&PgServer> {
        self.server.as_deref()
    }

    /// Runs `sql` on the state's database through a connection of its own, outside the
    /// store (to tamper with rows as an attacker with database access would).
    pub fn execute_raw(&self, sql: &str) {
        match &self.location {
            StateLocation::Dir(dir) => {
                rusqlite::Connection::open(dir.join(crate::DB_FILE))
                    .and_then(|conn| conn.execute_batch(sql))
                    .expect("raw SQLite statement");
            }
            StateLocation::Postgres(dsn) => {
                dsn.config()
                    .connect(postgres::NoTls)
                    .and_then(|mut client| client.batch_execute(sql))
                    .expect("raw PostgreSQL statement");
            }
        }
    }
}

/// The same empty state on both engines: SQLite in a temp dir, and a fresh database on a
/// PostgreSQL server started for the caller (one server; a test that wants several states
/// on it calls [`TestState::postgres`] again).
pub fn both() -> [TestState; 2] {
    let server = Arc::new(PgServer::start());
    [TestState::sqlite(), TestState::postgres(&server)]
}

/// Runs `test` on SQLite, then on PostgreSQL; stderr says which engine a failure was on.
pub fn on_both(test: impl Fn(&TestState)) {
    for state in both() {
        eprintln!("--- on {}", state.engine);
        test(&state);
    }
}
