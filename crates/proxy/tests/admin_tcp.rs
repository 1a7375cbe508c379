//! The admin API on TCP (`--admin-listen`, a router pod on a cluster) and the seed table
//! (`--seed`, the router's ConfigMap): real `wharf-proxy` processes, real sockets.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use support::{Proc, Testbed, client, free_port, get, table};

const TOKEN: &str = "0123456789abcdef-router-token";

/// A proxy with a TCP admin listener on a free port; its admin address and the lines it
/// printed on stdout.
struct TcpProxy {
    _proc: Proc,
    admin: std::net::SocketAddr,
}

fn command(dir: &Path, token: Option<&str>, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wharf-proxy"));
    command
        .arg("--admin-socket")
        .arg(dir.join("admin.sock"))
        .arg("--state")
        .arg(dir.join("state.json"))
        .args(["--admin-listen", "127.0.0.1:0"])
        .args(extra)
        .env("WHARF_LOG", "info")
        .env_remove("WHARF_PROXY_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(token) = token {
        command.env("WHARF_PROXY_ADMIN_TOKEN", token);
    }
    command
}

fn start(dir: &Path, extra: &[&str]) -> TcpProxy {
    let mut child = command(dir, Some(TOKEN), extra)
        .spawn()
        .expect("proxy starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let admin = line
        .trim()
        .strip_prefix("admin listen ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no admin address in {line:?}"));
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with("admin socket"), "{line:?}");
    TcpProxy {
        _proc: Proc { child },
        admin,
    }
}

async fn request(
    admin: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(admin).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "router");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = sender
        .send_request(
            builder
                .body(Full::new(Bytes::from(body.to_owned())))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn a_tcp_admin_listener_without_a_usable_token_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (token, expected) in [
        (None, "set WHARF_PROXY_ADMIN_TOKEN"),
        (Some(""), "set WHARF_PROXY_ADMIN_TOKEN"),
        (
            Some("short-one"),
            "is 9 characters long; it needs at least 16",
        ),
        (Some("with a space in it!"), "printable ASCII"),
    ] {
        let output = command(dir.path(), token, &[]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expected), "{token:?}: {stderr}");
        if let Some(token) = token.filter(|t| !t.is_empty()) {
            assert!(!stderr.contains(token), "the token is never printed");
        }
        assert!(output.stdout.is_empty(), "nothing listened");
    }
}

#[tokio::test]
async fn the_tcp_admin_api_needs_the_token_and_never_logs_it() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Testbed::start("1", &[]);
    let mut proxy = start(dir.path(), &[]);
    let listen = free_port();
    let routes = table(
        1,
        listen,
        &[("1", 100, &[upstream.address])],
        serde_json::json!({}),
    );
    let body = routes.to_string();

    let basic = format!("Basic {TOKEN}");
    for headers in [
        &[][..],
        &[("authorization", "Bearer wrong-token-0123456789")][..],
        &[("authorization", basic.as_str())][..],
        &[("x-wharf-proxy-token", &TOKEN[..TOKEN.len() - 1])][..],
    ] {
        let (status, answer) = request(proxy.admin, "PUT", "/v1/routes", headers, &body).await;
        assert_eq!(status, 401, "{headers:?}: {answer}");
        assert!(answer.contains("\"unauthorized\""), "{answer}");
        let (status, _) = request(proxy.admin, "GET", "/v1/stats", headers, "").await;
        assert_eq!(status, 401);
    }
    // Nothing was applied by the refused requests.
    let bearer = format!("Bearer {TOKEN}");
    let (status, current) = request(
        proxy.admin,
        "GET",
        "/v1/routes",
        &[("authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(current.contains("\"revision\": 0"), "{current}");

    // The pod proxy's way: the token in wharf's header (Authorization is the API server's).
    let (status, answer) = request(
        proxy.admin,
        "PUT",
        "/v1/routes",
        &[("x-wharf-proxy-token", TOKEN)],
        &body,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(get(&client(), listen, "/", &[]).await.1, "1");
    let (status, stats) = request(
        proxy.admin,
        "GET",
        "/v1/stats",
        &[("authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["services"]["api"]["versions"]["1"]["requests"], 1);

    let child = &mut proxy._proc.child;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    child.wait().unwrap();
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(
        logs.contains("admin request without the token refused"),
        "{logs}"
    );
    assert!(!logs.contains(TOKEN), "the token is never logged:\n{logs}");
    assert!(
        !logs.contains("wrong-token"),
        "nor what was offered:\n{logs}"
    );
}

#[tokio::test]
async fn a_newer_seed_table_is_served_at_start_and_an_older_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let one = Testbed::start("1", &[]);
    let two = Testbed::start("2", &[]);
    let listen = free_port();
    let seed = dir.path().join("seed.json");
    std::fs::write(
        &seed,
        table(
            3,
            listen,
            &[("1", 100, &[one.address])],
            serde_json::json!({}),
        )
        .to_string(),
    )
    .unwrap();
    let seed_arg = seed.display().to_string();
    let proxy = start(dir.path(), &["--seed", &seed_arg]);
    // Served without any admin call.
    assert_eq!(get(&client(), listen, "/", &[]).await.1, "1");
    let newer = table(
        4,
        listen,
        &[("2", 100, &[two.address])],
        serde_json::json!({}),
    );
    let bearer = format!("Bearer {TOKEN}");
    let (status, _) = request(
        proxy.admin,
        "PUT",
        "/v1/routes",
        &[("authorization", &bearer)],
        &newer.to_string(),
    )
    .await;
    assert_eq!(status, 200);
    drop(proxy);

    // Restarted with the same (now older) seed: the saved revision 4 stays.
    let _proxy = start(dir.path(), &["--seed", &seed_arg]);
    assert_eq!(get(&client(), listen, "/", &[]).await.1, "2");
}
