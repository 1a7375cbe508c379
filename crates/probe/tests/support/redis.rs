//! A throwaway Redis server on a free loopback port: no persistence, its working dir a temp
//! dir, optionally with a `requirepass` and an ACL user.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rustix::process::Signal;
use tempfile::TempDir;

use super::{DEADLINE, free_port, log_to, poll_until, stop, tail};

/// Who may log in.
#[derive(Default)]
pub struct Auth {
    /// The default user's password (`requirepass`).
    pub password: Option<&'static str>,
    /// An ACL user with every permission: (name, password).
    pub user: Option<(&'static str, &'static str)>,
}

pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    dir: TempDir,
}

impl Redis {
    /// Starts a server; returns once it answers.
    pub fn start(auth: Auth) -> Redis {
        let dir = tempfile::Builder::new()
            .prefix("wharf-redis")
            .tempdir()
            .expect("temp dir");
        let mut server = Redis {
            port: 0,
            child: None,
            dir,
        };
        // A port taken between free_port() and the server's bind: try another.
        for _ in 0..3 {
            server.port = free_port();
            if server.launch(&auth) {
                return server;
            }
        }
        panic!("redis-server did not start:\n{}", tail(&server.log()));
    }

    /// `redis://127.0.0.1:port` with `userinfo@` when given.
    pub fn url(&self, userinfo: Option<&str>) -> String {
        match userinfo {
            Some(userinfo) => format!("redis://{userinfo}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Stops the server and waits until it has exited.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child, Signal::TERM);
        }
    }

    fn log(&self) -> std::path::PathBuf {
        self.dir.path().join("redis.log")
    }

    fn launch(&mut self, auth: &Auth) -> bool {
        let (stdout, stderr) = log_to(&self.log());
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path());
        if let Some(password) = auth.password {
            command.args(["--requirepass", password]);
        }
        if let Some((user, password)) = auth.user {
            command.args([
                "--user",
                user,
                "on",
                &format!(">{password}"),
                "~*",
                "&*",
                "+@all",
            ]);
        }
        let child = command
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("run redis-server (scripts/test installs it: apt-get install redis-server)");
        let child = self.child.insert(child);
        let port = self.port;
        let mut exited = false;
        let ready = poll_until(DEADLINE, || {
            exited = matches!(child.try_wait(), Ok(Some(_)));
            exited || answers(port)
        });
        assert!(
            ready,
            "redis-server not ready in time:\n{}",
            tail(&self.log())
        );
        if exited {
            self.child = None;
        }
        !exited
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The server answers an inline PING (with PONG, or NOAUTH when it wants a password).
fn answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut line = String::new();
    let _ = BufReader::new(stream).read_line(&mut line);
    line.starts_with("+PONG") || line.starts_with("-NOAUTH")
}
