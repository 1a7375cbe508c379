//! Shared by the end-to-end tests: a stack in a temp dir driven through the real `wharf`
//! binary, free ports, polling with a deadline, a polling HTTP client, an HTTPS client for the
//! TCP API, ledger helpers.
#![allow(dead_code)] // Each test binary uses part of it.

pub mod docker;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn wharf_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wharf"))
}

/// A workspace binary beside wharf's (the testbed, the proxy, the load generator); built once
/// if this test run did not build it.
fn sibling_bin(name: &str, package: &str, once: &'static Once) -> PathBuf {
    let path = wharf_bin().with_file_name(name);
    once.call_once(|| {
        if !path.exists() {
            let status = Command::new(env!("CARGO"))
                .args(["build", "-q", "-p", package, "--bins"])
                .status()
                .unwrap();
            assert!(status.success(), "building {package}");
        }
    });
    assert!(path.exists(), "{} missing", path.display());
    path
}

pub fn testbed_bin() -> PathBuf {
    static BUILD: Once = Once::new();
    sibling_bin("wharf-testbed", "wharf-testbed", &BUILD)
}

/// `wharf up` finds the proxy beside itself.
pub fn proxy_bin() -> PathBuf {
    static BUILD: Once = Once::new();
    sibling_bin("wharf-proxy", "wharf-proxy", &BUILD)
}

/// A port nothing listens on, for a stack's public port or a fixed instance port. Picked below
/// the kernel's ephemeral range (32768 and up), not from it: instances get their ports from
/// that range, so a port the kernel handed out here could go to another test's instance before
/// this test's proxy binds it — and that test's `up` would fail with "port in use".
pub fn free_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = u64::from(std::process::id());
    for _ in 0..10_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000
            + (seed
                .wrapping_mul(7_919)
                .wrapping_add(n.wrapping_mul(104_729))
                % 12_000);
        let port = u16::try_from(port).expect("below 32000");
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between 20000 and 32000");
}

/// Polls `check` until it returns `Some` or the deadline passes.
pub fn eventually<T>(what: &str, deadline: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + deadline;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

/// A stack in a temp dir; `down` (or a kill of whatever is left) when dropped.
pub struct Stack {
    dir: tempfile::TempDir,
}

impl Stack {
    /// `manifest` may use `TESTBED` for the testbed binary's path.
    pub fn new(manifest: &str) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let text = manifest.replace("TESTBED", &testbed_bin().display().to_string());
        proxy_bin();
        std::fs::write(dir.path().join("wharf.yaml"), text).unwrap();
        Stack { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn wharf(&self, args: &[&str]) -> Output {
        Command::new(wharf_bin())
            .args(args)
            .current_dir(self.path())
            .env("NO_COLOR", "1")
            .env("WHARF_ACTOR", "tester")
            .output()
            .unwrap()
    }

    /// `wharf ARGS` with `stdin` on its standard input (a secret's value: never argv).
    pub fn wharf_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(wharf_bin())
            .args(args)
            .current_dir(self.path())
            .env("NO_COLOR", "1")
            .env("WHARF_ACTOR", "tester")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// `wharf secret set NAME` with the value on stdin; it must succeed.
    pub fn set_secret(&self, name: &str, value: &str) {
        let output = self.wharf_with_stdin(
            &["secret", "set", name, "--reason", "test"],
            &format!("{value}\n"),
        );
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    pub fn up(&self) -> Output {
        self.wharf(&["up", "-d", "--wait-timeout", "60s"])
    }

    pub fn status(&self) -> Value {
        let output = self.wharf(&["status", "--output", "json"]);
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|_| panic!("status: {}", String::from_utf8_lossy(&output.stderr)))
    }

    pub fn service(&self, name: &str) -> Value {
        self.status()["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap()
    }

    pub fn pids(&self) -> Vec<i64> {
        let mut pids: Vec<i64> = self.status()["services"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| {
                s["instances"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|i| i["pid"].as_i64())
                    .collect::<Vec<_>>()
            })
            .collect();
        pids.sort();
        pids
    }

    pub fn ledger(&self) -> Vec<Value> {
        let output = self.wharf(&["audit", "log", "--output", "json"]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    pub fn control_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.path().join(".wharf/control.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.wharf(&["down"]);
    }
}

/// Whether any thread of `pid` still runs. The main thread of a killed multi-threaded
/// process shows as a zombie while its other threads are still exiting and holding its files
/// (a lock, a listening socket), so every thread is looked at.
pub fn alive(pid: i64) -> bool {
    let running = |stat: String| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with(['Z', 'X'])
    };
    match std::fs::read_dir(format!("/proc/{pid}/task")) {
        Ok(tasks) => tasks
            .flatten()
            .any(|task| std::fs::read_to_string(task.path().join("stat")).is_ok_and(running)),
        Err(_) => std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(running),
    }
}

pub fn kill9(pid: i64) {
    assert!(
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

/// GET on a fresh connection; `None` on any failure.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    let status = raw.split(' ').nth(1)?.parse().ok()?;
    Some((status, raw.split_once("\r\n\r\n")?.1.to_owned()))
}

/// A client polling `port` from a thread until stopped: (successes, failures).
pub struct Poller {
    stop: Arc<AtomicBool>,
    pub ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Poller {
    pub fn start(port: u16) -> Poller {
        let (stop, ok, failed) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let thread = std::thread::spawn({
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    match get(port, "/") {
                        Some((200, _)) => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                    // tidy: pacing — a client's pause between requests, not a wait for anything.
                    std::thread::park_timeout(Duration::from_millis(5));
                }
            }
        });
        Poller {
            stop,
            ok,
            failed,
            thread: Some(thread),
        }
    }

    pub fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

pub fn actions(ledger: &[Value], action: &str) -> Vec<Value> {
    ledger
        .iter()
        .filter(|e| e["action"] == action)
        .cloned()
        .collect()
}

pub fn seq_of(ledger: &[Value], action: &str, target: &str) -> u64 {
    ledger
        .iter()
        .find(|e| e["action"] == action && e["target"] == target)
        .and_then(|e| e["seq"].as_u64())
        .unwrap_or_else(|| panic!("no {action} of {target} in the ledger"))
}

/// A client TLS configuration trusting only the certificates in `root_pem` (the API's
/// self-signed certificate is its own root).
fn tls_connector(root_pem: &Path) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(root_pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    // ring, as the server uses (rustls 0.23.48 deprecates it for lacking post-quantum kx).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

pub async fn tls_connect(
    root_pem: &Path,
    addr: SocketAddr,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    tls_connector(root_pem).connect(name, tcp).await.unwrap()
}

/// A TLS connection to `addr` from source address `source`; `None` if the server closes it
/// before the handshake ends.
pub async fn try_tls_connect_from(
    root_pem: &Path,
    source: std::net::IpAddr,
    addr: SocketAddr,
) -> Option<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket.bind(SocketAddr::new(source, 0)).ok()?;
    let tcp = socket.connect(addr).await.ok()?;
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    tls_connector(root_pem).connect(name, tcp).await.ok()
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// One request to the TCP API over HTTPS, trusting only `cert_pem`: (status, body).
pub fn https_request(
    cert_pem: &Path,
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    use http_body_util::BodyExt;
    block_on(async {
        let tls = tls_connect(cert_pem, addr).await;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(connection);
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string());
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let body = http_body_util::Full::new(bytes::Bytes::from(body.unwrap_or("").to_owned()));
        let response = sender
            .send_request(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    })
}

/// The certificate the TCP API at `addr` presents (DER), verified against `root_pem`.
pub fn peer_certificate(root_pem: &Path, addr: SocketAddr) -> Vec<u8> {
    block_on(async {
        let tls = tls_connect(root_pem, addr).await;
        let (_, session) = tls.get_ref();
        session.peer_certificates().unwrap()[0].to_vec()
    })
}

/// The state directory's self-signed API certificate.
pub fn api_cert(stack: &Path) -> PathBuf {
    stack.join(".wharf/tls/api-cert.pem")
}

/// `wharf up -d --api-listen ADDR` with `WHARF_API_TOKEN=token` and `extra` arguments.
pub fn up_api(stack: &Path, listen: &str, token: &str, extra: &[&str]) -> Output {
    Command::new(wharf_bin())
        .args(["up", "-d", "--api-listen", listen])
        .args(extra)
        .current_dir(stack)
        .env("WHARF_API_TOKEN", token)
        .output()
        .unwrap()
}

/// The identity the control plane gives this test process on its unix socket (peer
/// credentials): `user@host`, the user named by the password database.
pub fn socket_actor() -> String {
    let uid = std::fs::metadata("/proc/self").map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid()
    });
    let uid = uid.unwrap_or(0);
    let user = std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.get(2).and_then(|f| f.parse::<u32>().ok()) == Some(uid))
                .then(|| fields[0].to_owned())
        })
        .unwrap_or_else(|| format!("uid:{uid}"));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{user}@{}", host.trim())
}

/// The Kubernetes version rendered objects are checked against.
pub const KUBERNETES: &str = "1.35.0";

/// Runs `kubernetes-validate --strict` on `yaml`; the exit status and what it printed.
pub fn kubernetes_validate(yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("objects.yaml");
    std::fs::write(&file, yaml).unwrap();
    let output = Command::new("python3")
        .args([
            "-m",
            "kubernetes_validate",
            "--strict",
            "--quiet",
            "-k",
            KUBERNETES,
        ])
        .arg(&file)
        .output()
        .expect("kubernetes-validate runs (scripts/test installs it from PyPI)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// A real PostgreSQL server and the URL of a fresh database on it (with its password). Its
/// setup uses a blocking client: call it off an async runtime (`spawn_blocking`).
pub fn postgres_database() -> (wharf_store::testing::PgServer, String) {
    let server = wharf_store::testing::PgServer::start();
    let db = server.fresh_database();
    let name = db.redacted().rsplit('/').next().unwrap().to_owned();
    let url = server.url(&name, None);
    (server, url)
}
