//! Test harness: real `wharf-proxy` and `wharf-testbed` processes on loopback ports, an admin
//! client over the unix socket, a pooled HTTP client, and polling with a deadline.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn testbed_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            // The test binary lives in target/<profile>/deps; the testbed beside target/<profile>.
            let exe = std::env::current_exe().unwrap();
            let dir = exe.parent().unwrap().parent().unwrap().to_owned();
            let testbed = dir.join("wharf-testbed");
            if !testbed.exists() {
                let status = Command::new(env!("CARGO"))
                    .args(["build", "-p", "wharf-testbed"])
                    .status()
                    .expect("cargo runs");
                assert!(status.success(), "cargo build -p wharf-testbed failed");
            }
            testbed
        })
        .clone()
}

/// A testbed upstream.
pub struct Testbed {
    pub proc: Proc,
    pub address: SocketAddr,
}

impl Testbed {
    pub fn start(version: &str, extra: &[&str]) -> Testbed {
        let mut child = Command::new(testbed_binary())
            .args(["--port", "0", "--version", version])
            .args(extra)
            .env("WHARF_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("testbed starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Testbed {
            proc: Proc { child },
            address,
        }
    }
}

/// A `wharf-proxy` process with its admin socket and state file in `dir`.
pub struct ProxyProc {
    pub proc: Proc,
    pub socket: PathBuf,
}

impl ProxyProc {
    pub fn start(dir: &Path) -> ProxyProc {
        let socket = dir.join("admin.sock");
        let mut child = Command::new(env!("CARGO_BIN_EXE_wharf-proxy"))
            .arg("--admin-socket")
            .arg(&socket)
            .arg("--state")
            .arg(dir.join("state.json"))
            .env("WHARF_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("proxy starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("admin socket"), "proxy said {line:?}");
        ProxyProc {
            proc: Proc { child },
            socket,
        }
    }

    pub async fn admin(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        admin(&self.socket, method, path, body).await
    }

    pub async fn put_routes(&self, table: &serde_json::Value) -> (u16, String) {
        self.admin("PUT", "/v1/routes", &table.to_string()).await
    }

    pub async fn stats(&self) -> serde_json::Value {
        let (status, body) = self.admin("GET", "/v1/stats", "").await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

/// One request on the admin socket.
pub async fn admin(socket: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("admin socket");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "wharf-proxy")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A free loopback port (bound, then released).
pub fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A pooled HTTP/1.1 client.
pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// Status, `X-Version` and body of one GET.
pub async fn get(
    client: &HttpClient,
    address: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut request = Request::builder().uri(format!("http://{address}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(request.body(Empty::new()).unwrap())
        .await
        .expect("the proxy answers");
    let status = response.status().as_u16();
    let version = response
        .headers()
        .get("x-version")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, version, String::from_utf8_lossy(&body).into_owned())
}

/// Poll `check` until it returns `Some`, or panic after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A route table of one service `api` on `listen`.
pub fn table(
    revision: u64,
    listen: SocketAddr,
    versions: &[(&str, u8, &[SocketAddr])],
    extra: serde_json::Value,
) -> serde_json::Value {
    let versions: Vec<_> = versions
        .iter()
        .map(|(name, weight, instances)| {
            serde_json::json!({
                "name": name,
                "weight": weight,
                "instances": instances.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut service = serde_json::json!({"listen": listen.to_string(), "versions": versions});
    if let serde_json::Value::Object(extra) = extra {
        service.as_object_mut().unwrap().extend(extra);
    }
    serde_json::json!({"revision": revision, "services": {"api": service}})
}

/// A proxy serving `api` on a free port, all of it to version `1` on `upstream`, with `extra`
/// merged into the service's route (timeouts, stickiness).
pub async fn proxy_to(
    dir: &Path,
    upstream: SocketAddr,
    extra: serde_json::Value,
) -> (ProxyProc, SocketAddr) {
    let proxy = ProxyProc::start(dir);
    let listen = free_port();
    let routes = table(1, listen, &[("1", 100, &[upstream])], extra);
    assert_eq!(proxy.put_routes(&routes).await.0, 200);
    (proxy, listen)
}

/// A client speaking h2c only (prior knowledge), sending bodies of type `B`.
pub fn h2_client<B>() -> Client<HttpConnector, B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<B>()
}
