//! Sandbox servers for drills (and tests): a fresh PostgreSQL, MariaDB or Redis on a free
//! loopback port with its data in a temp dir, stopped and removed on drop; a temp file or
//! folder for SQLite and directories. PostgreSQL refuses to run as root, so as root it runs as
//! the `postgres` user. Each gets a random password; it is held only in memory.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal};
use tempfile::TempDir;
use wharf_manifest::model::DatastoreKind;

use crate::datastore::{Datastore, MariadbConn, PgConn, RedisConn};
use crate::drivers::Feed;
use crate::drivers::redis::poll;
use crate::drivers::resp::{Resp, Value};
use crate::error::{BackupError, Result};
use crate::secret::Secret;
use crate::tools::{Tool, Tools};

const START: Duration = Duration::from_secs(120);

/// A running throwaway server (or temp path) and the datastore that reaches it.
pub struct Sandbox {
    kind: DatastoreKind,
    child: Option<Child>,
    stop_signal: Signal,
    port: u16,
    store: Datastore,
    dir: TempDir,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("kind", &crate::kind_name(self.kind))
            .field("port", &self.port)
            .finish()
    }
}

fn fail(kind: DatastoreKind, detail: impl Into<String>) -> BackupError {
    BackupError::Sandbox {
        kind,
        detail: detail.into(),
    }
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| BackupError::io("127.0.0.1:0", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| BackupError::io("127.0.0.1:0", e))
}

fn random_password() -> Secret {
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = nanos.to_be_bytes();
    }
    Secret::new(hex::encode(bytes))
}

fn temp_dir(kind: DatastoreKind) -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("wharf-sandbox-{}", crate::kind_name(kind)))
        .tempdir()
        .map_err(|e| BackupError::io(std::env::temp_dir(), e))
}

fn log_file(path: &Path) -> Result<(Stdio, Stdio)> {
    let file = std::fs::File::options()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| BackupError::io(path, e))?;
    let copy = file.try_clone().map_err(|e| BackupError::io(path, e))?;
    Ok((file.into(), copy.into()))
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(6)..].join(" / ")
}

/// uid and gid of the `postgres` user when running as root (from /etc/passwd).
fn postgres_owner() -> Option<(u32, u32)> {
    if !rustix::process::getuid().is_root() {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&"postgres") && fields.len() > 3)
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
            .flatten()
    })
}

impl Sandbox {
    /// A sandbox of `kind`, empty, ready for a restore.
    pub fn start(kind: DatastoreKind, tools: &Tools) -> Result<Sandbox> {
        match kind {
            DatastoreKind::Postgres => Sandbox::start_postgres(tools),
            DatastoreKind::Mariadb => Sandbox::start_mariadb(tools),
            DatastoreKind::Redis => Sandbox::start_redis(tools, None),
            DatastoreKind::Sqlite => {
                let dir = temp_dir(kind)?;
                let store = Datastore::Sqlite(dir.path().join("restored.sqlite"));
                Ok(Sandbox::path_only(kind, store, dir))
            }
            DatastoreKind::Directory => {
                let dir = temp_dir(kind)?;
                let store = Datastore::Directory(dir.path().join("restored"));
                Ok(Sandbox::path_only(kind, store, dir))
            }
        }
    }

    fn path_only(kind: DatastoreKind, store: Datastore, dir: TempDir) -> Sandbox {
        Sandbox {
            kind,
            child: None,
            stop_signal: Signal::TERM,
            port: 0,
            store,
            dir,
        }
    }

    /// The datastore to restore into and check.
    pub fn datastore(&self) -> &Datastore {
        &self.store
    }

    /// The loopback port the server listens on (0 for SQLite and directories).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The sandbox's temp dir (its data and logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// PostgreSQL: `initdb` (superuser `wharf`, SCRAM over TCP) and `postgres` on a free port.
    pub fn start_postgres(tools: &Tools) -> Result<Sandbox> {
        let kind = DatastoreKind::Postgres;
        let (initdb, postgres, isready) = (
            tools.find(Tool::Initdb)?,
            tools.find(Tool::Postgres)?,
            tools.find(Tool::PgIsready)?,
        );
        let mut dir = temp_dir(kind)?;
        let root = dir.path().to_owned();
        let password = random_password();
        let pwfile = crate::tools::private_file(dir.path(), "pwfile", password.expose())?;
        let owner = postgres_owner();
        if let Some((uid, gid)) = owner {
            for path in [dir.path().to_owned(), pwfile.clone()] {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                    .map_err(|e| BackupError::io(&path, e))?;
            }
        }
        let log = root.join("postgres.log");
        let command = |program: &Path| -> Result<Command> {
            let mut command = Command::new(program);
            if let Some((uid, gid)) = owner {
                command.uid(uid).gid(gid);
            }
            let (out, err) = log_file(&log)?;
            command
                .current_dir(&root)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err);
            Ok(command)
        };
        let data = root.join("data");
        let status = command(&initdb)?
            .arg("-D")
            .arg(&data)
            .args(["-U", "wharf", "--pwfile"])
            .arg(&pwfile)
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .args(["--no-sync", "--encoding=UTF8", "--locale=C"])
            .status()
            .map_err(|e| fail(kind, format!("initdb: {e}")))?;
        if !status.success() {
            return Err(fail(kind, format!("initdb failed: {}", tail(&log))));
        }
        let _ = std::fs::remove_file(&pwfile);
        for _ in 0..3 {
            let port = free_port()?;
            let child = command(&postgres)?
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-k"])
                .arg(&root)
                .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
                .args(["-c", "shared_buffers=32MB", "-c", "max_connections=20"])
                .spawn()
                .map_err(|e| fail(kind, format!("postgres: {e}")))?;
            let mut sandbox = Sandbox {
                kind,
                child: Some(child),
                stop_signal: Signal::QUIT,
                port,
                store: Datastore::Postgres(PgConn {
                    host: "127.0.0.1".into(),
                    port,
                    user: "wharf".into(),
                    password: Some(password.clone()),
                    dbname: "postgres".into(),
                    sslmode: None,
                }),
                dir,
            };
            if sandbox.wait_ready(|| {
                Ok(Command::new(&isready)
                    .args(["-q", "-h", "127.0.0.1", "-t", "1", "-p", &port.to_string()])
                    .status()
                    .is_ok_and(|s| s.success()))
            })? {
                return Ok(sandbox);
            }
            dir = std::mem::replace(&mut sandbox.dir, temp_dir(kind)?);
        }
        Err(fail(
            kind,
            format!("postgres did not start: {}", tail(&log)),
        ))
    }

    /// MariaDB: `mariadb-install-db`, `mariadbd` as root (`--user=root`) on a free port, then
    /// a user `wharf` with a random password and an empty database `restored`.
    pub fn start_mariadb(tools: &Tools) -> Result<Sandbox> {
        let kind = DatastoreKind::Mariadb;
        let (install, server, client) = (
            tools.find(Tool::MariadbInstallDb)?,
            tools.find(Tool::Mariadbd)?,
            tools.find(Tool::Mariadb)?,
        );
        let mut dir = temp_dir(kind)?;
        let log = dir.path().join("mariadb.log");
        let data = dir.path().join("data");
        let (out, err) = log_file(&log)?;
        let status = Command::new(&install)
            .args(["--no-defaults", "--user=root", "--skip-test-db"])
            .args(["--auth-root-authentication-method=socket"])
            .arg(format!("--datadir={}", data.display()))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .map_err(|e| fail(kind, format!("mariadb-install-db: {e}")))?;
        if !status.success() {
            return Err(fail(
                kind,
                format!("mariadb-install-db failed: {}", tail(&log)),
            ));
        }
        let password = random_password();
        let socket = dir.path().join("mysqld.sock");
        for _ in 0..3 {
            let port = free_port()?;
            let (out, err) = log_file(&log)?;
            let child = Command::new(&server)
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--socket={}", socket.display()))
                .arg(format!(
                    "--pid-file={}",
                    dir.path().join("mysqld.pid").display()
                ))
                .args([
                    "--user=root",
                    "--bind-address=127.0.0.1",
                    &format!("--port={port}"),
                ])
                .args([
                    "--skip-log-bin",
                    "--innodb-buffer-pool-size=32M",
                    "--innodb-flush-log-at-trx-commit=0",
                ])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .map_err(|e| fail(kind, format!("mariadbd: {e}")))?;
            let mut sandbox = Sandbox {
                kind,
                child: Some(child),
                stop_signal: Signal::TERM,
                port,
                store: Datastore::Mariadb(MariadbConn {
                    host: "127.0.0.1".into(),
                    port,
                    socket: None,
                    user: "wharf".into(),
                    password: Some(password.clone()),
                    dbname: "restored".into(),
                }),
                dir,
            };
            let setup = format!(
                "CREATE USER IF NOT EXISTS 'wharf'@'127.0.0.1' IDENTIFIED BY '{pw}';\n\
                 GRANT ALL ON *.* TO 'wharf'@'127.0.0.1' WITH GRANT OPTION;\n\
                 CREATE DATABASE IF NOT EXISTS restored;\n",
                pw = password.expose()
            );
            let ready = sandbox.wait_ready(|| {
                if !socket.exists() {
                    return Ok(false);
                }
                let mut child = Command::new(&client)
                    .args(["--no-defaults", "-u", "root"])
                    .arg(format!("--socket={}", socket.display()))
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|e| fail(kind, format!("mariadb: {e}")))?;
                if let Some(mut stdin) = child.stdin.take() {
                    let _ = stdin.write_all(setup.as_bytes());
                }
                Ok(child.wait().is_ok_and(|s| s.success()))
            })?;
            if ready {
                return Ok(sandbox);
            }
            dir = std::mem::replace(&mut sandbox.dir, temp_dir(kind)?);
        }
        Err(fail(
            kind,
            format!("mariadbd did not start: {}", tail(&log)),
        ))
    }

    /// Redis: `redis-server` without persistence of its own on a free port; with `rdb`, the
    /// backup's RDB is written to its dir first and loaded at start.
    pub fn start_redis(tools: &Tools, rdb: Option<Feed<'_>>) -> Result<Sandbox> {
        let kind = DatastoreKind::Redis;
        let server = tools.find(Tool::RedisServer)?;
        let mut dir = temp_dir(kind)?;
        if let Some(feed) = rdb {
            let path = dir.path().join("dump.rdb");
            let mut file = std::fs::File::create(&path).map_err(|e| BackupError::io(&path, e))?;
            feed(&mut file)?;
            file.flush().map_err(|e| BackupError::io(&path, e))?;
        }
        let log = dir.path().join("redis.log");
        for _ in 0..3 {
            let port = free_port()?;
            let (out, err) = log_file(&log)?;
            let child = Command::new(&server)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .args(["--dbfilename", "dump.rdb", "--dir"])
                .arg(dir.path())
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .map_err(|e| fail(kind, format!("redis-server: {e}")))?;
            let conn = RedisConn {
                host: "127.0.0.1".into(),
                port,
                user: None,
                password: None,
            };
            let mut sandbox = Sandbox {
                kind,
                child: Some(child),
                stop_signal: Signal::TERM,
                port,
                store: Datastore::Redis(conn.clone()),
                dir,
            };
            let ready = sandbox.wait_ready(|| {
                if TcpStream::connect(("127.0.0.1", port)).is_err() {
                    return Ok(false);
                }
                Ok(Resp::connect(&conn)
                    .and_then(|mut r| r.call(&["PING"]))
                    .is_ok_and(|v| v == Value::Status("PONG".into())))
            })?;
            if ready {
                return Ok(sandbox);
            }
            dir = std::mem::replace(&mut sandbox.dir, temp_dir(kind)?);
        }
        Err(fail(
            kind,
            format!("redis-server did not start: {}", tail(&log)),
        ))
    }

    /// Polls `ready` until it holds (true) or the server exits (false); errors after
    /// [`START`].
    fn wait_ready(&mut self, mut ready: impl FnMut() -> Result<bool>) -> Result<bool> {
        let kind = self.kind;
        let mut exited = false;
        let child = self.child.as_mut();
        let Some(child) = child else { return Ok(true) };
        poll(START, || {
            exited = matches!(child.try_wait(), Ok(Some(_)));
            Ok(exited || ready()?)
        })
        .map_err(|_| fail(kind, "not ready in time"))?;
        if exited {
            self.child = None;
        }
        Ok(!exited)
    }

    /// Stops the server now (also done on drop).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = rustix::process::kill_process(Pid::from_child(&child), self.stop_signal);
            let stopped = poll(Duration::from_secs(30), || {
                Ok(!matches!(child.try_wait(), Ok(None)))
            });
            if stopped.is_err() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Where the sandbox keeps its data (for tests that damage or inspect it).
    pub fn data_path(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop();
    }
}
