//! Regression tests for issue 20's "one client can lock the operator out": 21,000 idle
//! unauthenticated connections to the TCP API held the control plane at its file-descriptor
//! limit, so every request on the operator's unix socket timed out; the proxy let one client's
//! 21,000 one-byte connections fail legitimate requests; a client that trickled its request
//! head was never closed. Real binaries, real sockets; the flooding client connects from other
//! loopback addresses (127.0.0.2 and up) than the legitimate one (127.0.0.1), as a separate
//! machine would.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::*;

const API_TOKEN: &str = "a-token-of-enough-length";

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `count` TCP connections to `target`, spread over source addresses 127.0.0.2 … so that
/// no more than `per_source` come from one; each sends `first` (maybe nothing) and is kept
/// open. Connections the server closes at once are kept too (they cost it nothing).
fn flood(
    target: SocketAddr,
    count: usize,
    per_source: usize,
    first: &[u8],
) -> Vec<std::net::TcpStream> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut held = Vec::with_capacity(count);
        for i in 0..count {
            let source = IpAddr::from([127, 0, 0, 2 + (i / per_source) as u8]);
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::new(source, 0)).unwrap();
            let connect = tokio::time::timeout(Duration::from_secs(5), socket.connect(target));
            let Ok(Ok(stream)) = connect.await else {
                continue;
            };
            let mut stream = stream.into_std().unwrap();
            stream.set_nonblocking(false).unwrap();
            let _ = stream.write_all(first);
            held.push(stream);
        }
        held
    })
}

/// One `GET path` on the operator's unix socket: (status, time it took).
fn socket_get(state: &Path, path: &str) -> (u16, Duration) {
    let start = Instant::now();
    let mut stream = UnixStream::connect(state.join("control.sock")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: wharf\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let status = raw.split(' ').nth(1).unwrap().parse().unwrap();
    (status, start.elapsed())
}

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

/// How long until the server closes `stream` (reads return 0 or fail), reading with a
/// deadline; `None` if it stays open past `within`. Each read that times out sends `trickle`'s
/// next byte, if any: a slowloris client.
fn closed_within(
    stream: &mut std::net::TcpStream,
    within: Duration,
    trickle: &[u8],
) -> Option<Duration> {
    let start = Instant::now();
    let mut next = trickle.iter();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buffer = [0u8; 1024];
    while start.elapsed() < within {
        match stream.read(&mut buffer) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {} // a 408 or a 503 on its way out
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if let Some(byte) = next.next()
                    && stream.write_all(&[*byte]).is_err()
                {
                    return Some(start.elapsed());
                }
            }
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

const API_STACK: &str = r#"
name: lockout
services:
  api:
    command: [sleep, "3600"]
"#;

// Before: 21,000 idle connections to `--api-listen` took every file descriptor of the control
// plane and every unix-socket request timed out for ~80 s. Now the TCP API holds at most its
// budget (32 per source address, 512 in all) and closes the rest at once: the operator's
// socket answers at once and a legitimate TLS client still gets in.
#[test]
fn thousands_of_idle_connections_to_the_tcp_api_do_not_lock_the_operator_out() {
    let stack = Stack::new(API_STACK);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let up = up_api(stack.path(), &listen, API_TOKEN, &[]);
    assert!(up.status.success(), "{}", stderr(&up));
    let state = stack.path().join(".wharf");
    let control = stack.control_pid().unwrap();
    let before = open_fds(control);

    // From 127.0.0.2 … 127.0.0.11: ten sources of 300 each. Loopback answers for any 127/8.
    let target: SocketAddr = format!("0.0.0.0:{port}").parse().unwrap();
    let target = SocketAddr::new([127, 0, 0, 1].into(), target.port());
    let held = flood(target, 3000, 300, b"");
    assert!(
        held.len() > 2500,
        "the flood connected {} times",
        held.len()
    );
    // And from 127.0.0.12, 600 clients that finish their handshake and then say nothing.
    let cert = api_cert(stack.path());
    let idle_tls = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut done = Vec::new();
            for _ in 0..600 {
                let source = IpAddr::from([127, 0, 0, 12]);
                let connect = try_tls_connect_from(&cert, source, target);
                if let Ok(Some(tls)) = tokio::time::timeout(Duration::from_secs(5), connect).await {
                    done.push(tls);
                }
            }
            done
        });
    assert!(
        idle_tls.len() <= 32,
        "{} idle TLS connections from one address were let in",
        idle_tls.len()
    );

    let mut latencies = Vec::new();
    for _ in 0..20 {
        let (status, took) = socket_get(&state, "/v1/status");
        assert_eq!(status, 200);
        latencies.push(took);
    }
    latencies.sort();
    let worst = *latencies.last().unwrap();
    eprintln!(
        "unix socket during the flood: median {:?}, worst {worst:?}",
        latencies[10]
    );
    assert!(
        worst < Duration::from_secs(2),
        "the operator waited {worst:?}"
    );
    let status = stack.wharf(&["--timeout", "5s", "status"]);
    assert!(status.status.success(), "{}", stderr(&status));

    let (code, body) = https_request(
        &api_cert(stack.path()),
        target,
        "GET",
        "/v1/status",
        Some(API_TOKEN),
        None,
    );
    assert_eq!(code, 200, "{body}");
    let during = open_fds(control);
    assert!(
        during < before + 512 + 64,
        "the control plane holds {during} descriptors (had {before}): the flood was not bounded"
    );
    drop((held, idle_tls));
}

// Before: a TLS client that finished its handshake and then sent its request head a byte at
// a time (or nothing at all) held its connection for good.
#[test]
fn a_slowloris_connection_to_the_tcp_api_is_closed_after_the_header_timeout() {
    let stack = Stack::new(API_STACK);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let up = up_api(
        stack.path(),
        &listen,
        API_TOKEN,
        &["--api-header-timeout", "1s"],
    );
    assert!(up.status.success(), "{}", stderr(&up));
    let target: SocketAddr = listen.parse().unwrap();

    // Silent before the handshake.
    let mut silent = std::net::TcpStream::connect(target).unwrap();
    let took =
        closed_within(&mut silent, Duration::from_secs(8), b"").expect("a silent client is closed");
    assert!(
        took >= Duration::from_millis(800),
        "closed before its deadline: {took:?}"
    );

    // Handshake done, then a request head trickled a byte every 200 ms.
    let cert = api_cert(stack.path());
    let took = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut tls = tls_connect(&cert, target).await;
            let start = Instant::now();
            let head = b"GET /health HTTP/1.1\r\nHost: wharf\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
            let mut buffer = [0u8; 256];
            for byte in head {
                if tls.write_all(&[*byte]).await.is_err() || tls.flush().await.is_err() {
                    return Some(start.elapsed());
                }
                let read = tokio::time::timeout(Duration::from_millis(200), tls.read(&mut buffer));
                if let Ok(Ok(0) | Err(_)) = read.await {
                    return Some(start.elapsed());
                }
            }
            None
        })
        .expect("the trickling client is closed before its head is complete");
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
}

// One source address gets no more than its share: past `--api-max-connections-per-client`
// its new connections are closed at once, while another client still gets in.
#[test]
fn one_client_gets_no_more_than_its_share_of_tcp_api_connections() {
    let stack = Stack::new(API_STACK);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let up = up_api(
        stack.path(),
        &listen,
        API_TOKEN,
        &["--api-max-connections-per-client", "4"],
    );
    assert!(up.status.success(), "{}", stderr(&up));
    let target: SocketAddr = listen.parse().unwrap();
    let mut held = flood(target, 6, 100, b"");
    assert_eq!(held.len(), 6);
    // The first four wait for their handshake (10 s); the last two are closed at once.
    let mut closed = 0;
    for stream in held.iter_mut().skip(4) {
        if closed_within(stream, Duration::from_secs(3), b"").is_some() {
            closed += 1;
        }
    }
    assert_eq!(closed, 2, "connections past the share were closed at once");
    let (code, body) = https_request(
        &api_cert(stack.path()),
        target,
        "GET",
        "/health",
        None,
        None,
    );
    assert_eq!(code, 200, "{body}");
}

fn proxy_stack(port: u16) -> String {
    format!(
        r#"
name: lockout
services:
  web:
    command: [TESTBED, --port, "${{PORT}}"]
    port: {port}
    proxy: {{header_timeout: 1s, max_connections_per_client: 200}}
    probes:
      ready: {{http: {{path: /ready}}, interval: 200ms, timeout: 500ms}}
"#
    )
}

// Before: 21,000 one-byte connections to a service's port made 300 of 7,000 legitimate
// requests fail (timeouts and 502). Now one source holds at most its share
// (`max_connections_per_client`), the rest get a 503 at once, and every legitimate request
// succeeds; a trickling client is closed after `header_timeout`.
#[test]
fn thousands_of_one_byte_connections_to_the_proxy_do_not_fail_legitimate_requests() {
    let port = free_port();
    let stack = Stack::new(&proxy_stack(port));
    let up = stack.up();
    assert!(up.status.success(), "{}", stderr(&up));
    eventually("the proxy to serve", Duration::from_secs(20), || {
        matches!(get(port, "/"), Some((200, _))).then_some(())
    });
    let target = SocketAddr::new([127, 0, 0, 1].into(), port);
    let mut held = flood(target, 3000, 1000, b"G");
    assert!(
        held.len() > 2500,
        "the flood connected {} times",
        held.len()
    );
    // Past the first 200 of a source: a 503 that says why, then the close.
    let mut refused = String::new();
    held[500]
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = held[500].read_to_string(&mut refused);
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused:?}");
    assert!(
        refused.contains("too many connections from this address"),
        "{refused:?}"
    );

    let (mut ok, mut failed) = (0, 0);
    for _ in 0..500 {
        match get(port, "/") {
            Some((200, _)) => ok += 1,
            _ => failed += 1,
        }
    }
    eprintln!("legitimate requests during the flood: {ok} ok, {failed} failed");
    assert_eq!(failed, 0, "{ok} ok, {failed} failed");

    // The held ones (one byte of a head each) are closed after the header timeout.
    let took = closed_within(&mut held[0], Duration::from_secs(8), b"").expect("closed");
    assert!(took < Duration::from_secs(3), "{took:?}");
    drop(held);
}

#[test]
fn a_slowloris_connection_to_the_proxy_is_closed_after_the_header_timeout() {
    let port = free_port();
    let stack = Stack::new(&proxy_stack(port));
    let up = stack.up();
    assert!(up.status.success(), "{}", stderr(&up));
    eventually("the proxy to serve", Duration::from_secs(20), || {
        matches!(get(port, "/"), Some((200, _))).then_some(())
    });
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head =
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let took = closed_within(&mut slow, Duration::from_secs(8), head)
        .expect("the trickling client is closed before its head is complete");
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    assert!(
        took >= Duration::from_millis(800),
        "closed before its deadline: {took:?}"
    );
}

// Before: `wharf status` waited forever on a stopped (SIGSTOP) control plane. Now every API
// call is bounded by `--timeout`, and the error names the control plane that did not answer.
#[test]
fn a_stopped_control_plane_gets_a_clear_timeout_instead_of_a_hang() {
    let stack = Stack::new(API_STACK);
    let up = stack.up();
    assert!(up.status.success(), "{}", stderr(&up));
    let control = stack.control_pid().unwrap();
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([name, &control.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal("-STOP");
    let start = Instant::now();
    let status = stack.wharf(&["--timeout", "1s", "status"]);
    let took = start.elapsed();
    signal("-CONT");
    let text = stderr(&status);
    assert!(!status.status.success(), "{text}");
    assert!(took < Duration::from_secs(10), "gave up after {took:?}");
    assert!(text.contains("did not answer within 1s"), "{text}");
    assert!(text.contains(&format!("pid {control}")), "{text}");
    assert!(text.contains("control.sock"), "{text}");
}
