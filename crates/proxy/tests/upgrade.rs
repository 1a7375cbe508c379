//! Protocol switches (`Upgrade`, RFC 9110 §7.8) through a real `wharf-proxy` process: a
//! WebSocket handshake reaches the upstream with its fields, the 101 comes back, and bytes
//! then pass both ways until each side closes; a declined switch is an ordinary exchange;
//! `h2c` and unrequested 101s are not carried; an open tunnel keeps its instance busy through
//! a drain and is cut at the drain timeout. The upstream is hyper with upgrades enabled, the
//! client raw TCP so the bytes on the wire are what is checked.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{eventually, free_port, proxy_to, table};

const DEADLINE: Duration = Duration::from_secs(10);

const HANDSHAKE: &[u8] = b"GET /chat HTTP/1.1\r\nHost: api.example\r\nConnection: keep-alive, Upgrade\r\n\
    Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// The request heads an upstream saw, one string per request (fields as `name: value` lines).
type Seen = Arc<Mutex<Vec<String>>>;

/// A hyper upstream that switches every request carrying `Upgrade` to an echo protocol: each
/// read comes back prefixed with `echo:`, and when the client ends its stream it answers
/// `bye` and closes. Requests without `Upgrade` get `200 plain`.
async fn switching_upstream() -> (SocketAddr, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let log = log.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |mut request: hyper::Request<hyper::body::Incoming>| {
                        let mut head = format!("{} {}\n", request.method(), request.uri());
                        for (name, value) in request.headers() {
                            head.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
                        }
                        log.lock().unwrap().push(head);
                        let wants = request.headers().contains_key(hyper::header::UPGRADE);
                        let upgrade = wants.then(|| hyper::upgrade::on(&mut request));
                        async move {
                            let Some(upgrade) = upgrade else {
                                return Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                    http_body_util::Full::new(Bytes::from_static(b"plain")),
                                ));
                            };
                            tokio::spawn(async move {
                                let upgraded = upgrade.await.unwrap();
                                let mut io = hyper_util::rt::TokioIo::new(upgraded);
                                let mut chunk = [0u8; 4096];
                                loop {
                                    let n = io.read(&mut chunk).await.unwrap();
                                    if n == 0 {
                                        io.write_all(b"bye").await.unwrap();
                                        io.shutdown().await.unwrap();
                                        return;
                                    }
                                    let mut answer = b"echo:".to_vec();
                                    answer.extend_from_slice(&chunk[..n]);
                                    io.write_all(&answer).await.unwrap();
                                }
                            });
                            let response = hyper::Response::builder()
                                .status(101)
                                .header("upgrade", "websocket")
                                .header("connection", "upgrade")
                                .header("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
                                .body(http_body_util::Full::new(Bytes::new()))
                                .unwrap();
                            Ok(response)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (address, seen)
}

/// A raw upstream that answers every request head with `answer`, logging each head.
async fn scripted_upstream(answer: &'static [u8]) -> (SocketAddr, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let log = log.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                loop {
                    while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = buffer.drain(..end + 4).collect();
                        log.lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&head).to_ascii_lowercase());
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                    let mut chunk = [0u8; 4096];
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (address, seen)
}

/// Read from `stream` until `buffer` holds a whole response head; returns it (lowercased)
/// and leaves what follows in `buffer`.
async fn read_head(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> String {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = buffer.drain(..end + 4).collect();
            return String::from_utf8(head).unwrap().to_ascii_lowercase();
        }
        read_more(stream, buffer).await;
    }
}

/// Read until `buffer` holds `want` bytes, then take them.
async fn read_exactly(stream: &mut TcpStream, buffer: &mut Vec<u8>, want: usize) -> Vec<u8> {
    while buffer.len() < want {
        read_more(stream, buffer).await;
    }
    buffer.drain(..want).collect()
}

async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) {
    let mut chunk = [0u8; 4096];
    let n = tokio::time::timeout(DEADLINE, stream.read(&mut chunk))
        .await
        .expect("the proxy went silent")
        .unwrap();
    assert!(n > 0, "the proxy closed the connection early");
    buffer.extend_from_slice(&chunk[..n]);
}

/// Whether the stream reaches its end (nothing more than `buffer` already holds) in time.
async fn ends(stream: &mut TcpStream, buffer: &[u8]) -> bool {
    assert!(buffer.is_empty(), "unexpected bytes: {buffer:?}");
    let mut rest = Vec::new();
    matches!(
        tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest)).await,
        Ok(Ok(0))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_handshake_is_switched_and_bytes_pass_both_ways_until_each_side_closes() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, seen) = switching_upstream().await;
    let (proxy, listen) = proxy_to(dir.path(), upstream, serde_json::json!({})).await;
    let mut stream = TcpStream::connect(listen).await.unwrap();
    // The client's first frame rides in the same write as the handshake.
    let mut first = HANDSHAKE.to_vec();
    first.extend_from_slice(b"early");
    stream.write_all(&first).await.unwrap();

    let mut buffer = Vec::new();
    let head = read_head(&mut stream, &mut buffer).await;
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    assert!(head.contains("\r\nupgrade: websocket\r\n"), "{head}");
    assert!(head.contains("\r\nconnection: upgrade\r\n"), "{head}");
    assert!(
        head.contains("\r\nsec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
        "{head}"
    );
    assert!(!head.contains("content-length"), "{head}");
    let upstream_saw = seen.lock().unwrap()[0].clone();
    for field in [
        "upgrade: websocket\n",
        "connection: upgrade\n",
        "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\n",
        "sec-websocket-version: 13\n",
        "x-forwarded-for: 127.0.0.1\n",
    ] {
        assert!(
            upstream_saw.contains(field),
            "{field} missing in {upstream_saw}"
        );
    }

    assert_eq!(
        read_exactly(&mut stream, &mut buffer, 10).await,
        b"echo:early"
    );
    // Many round trips over the one tunnel, including one larger than a buffer.
    for round in 0..20 {
        let message = format!("message {round}");
        stream.write_all(message.as_bytes()).await.unwrap();
        let echoed = read_exactly(&mut stream, &mut buffer, 5 + message.len()).await;
        assert_eq!(echoed, format!("echo:{message}").into_bytes());
    }
    let big = vec![b'w'; 200 * 1024];
    stream.write_all(&big).await.unwrap();
    let mut received = 0;
    while received < big.len() {
        let piece = read_exactly(&mut stream, &mut buffer, 5).await;
        assert_eq!(piece, b"echo:");
        // Each echo is one upstream read's worth: take the w's up to the next prefix.
        loop {
            if buffer.is_empty() {
                read_more(&mut stream, &mut buffer).await;
            }
            let run = buffer.iter().take_while(|&&b| b == b'w').count();
            received += run;
            buffer.drain(..run);
            if !buffer.is_empty() || received == big.len() {
                break;
            }
        }
    }
    assert_eq!(received, big.len());

    // The client's half-close reaches the upstream, whose last words and close come back.
    stream.shutdown().await.unwrap();
    assert_eq!(read_exactly(&mut stream, &mut buffer, 3).await, b"bye");
    assert!(ends(&mut stream, &buffer).await);

    // The switch is a success in the stats, not an upstream error.
    let stats = proxy.stats().await;
    let version = &stats["services"]["api"]["versions"]["1"];
    assert_eq!(version["responses"]["2xx"], 1, "{stats}");
    assert_eq!(version["responses"]["5xx"], 0, "{stats}");
    assert_eq!(version["upstream_errors"], 0, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_switch_is_an_ordinary_exchange_and_h2c_or_an_unasked_101_is_not_carried() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, seen) = switching_upstream().await;
    let (_proxy, listen) = proxy_to(dir.path(), upstream, serde_json::json!({})).await;

    // `Upgrade: h2c` is dropped: the upstream sees a plain request and answers it plainly,
    // on a connection that stays open for the next request.
    let mut stream = TcpStream::connect(listen).await.unwrap();
    let mut buffer = Vec::new();
    for upgrade in ["h2c", "H2C, websocket"] {
        stream
            .write_all(
                format!(
                    "GET /plain HTTP/1.1\r\nhost: api\r\nconnection: Upgrade, HTTP2-Settings\r\n\
                     upgrade: {upgrade}\r\nhttp2-settings: AAMAAABkAAQAAP__\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let head = read_head(&mut stream, &mut buffer).await;
        assert!(head.starts_with("http/1.1 200 "), "{head}");
        assert_eq!(read_exactly(&mut stream, &mut buffer, 5).await, b"plain");
        let upstream_saw = seen.lock().unwrap().last().unwrap().clone();
        assert!(!upstream_saw.contains("upgrade"), "{upstream_saw}");
        assert!(!upstream_saw.contains("http2-settings"), "{upstream_saw}");
    }

    // HTTP/1.0 has no protocol switch: the fields are dropped.
    let mut old = TcpStream::connect(listen).await.unwrap();
    old.write_all(b"GET /plain HTTP/1.0\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = Vec::new();
    let head = read_head(&mut old, &mut buffer).await;
    assert!(head.starts_with("http/1.1 200 "), "{head}");
    let upstream_saw = seen.lock().unwrap().last().unwrap().clone();
    assert!(!upstream_saw.contains("upgrade"), "{upstream_saw}");

    // An upstream that declines (answers 200) keeps the client's connection an HTTP one.
    let dir = tempfile::tempdir().unwrap();
    let (declining, declined) =
        scripted_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nno").await;
    let (_proxy, listen) = proxy_to(dir.path(), declining, serde_json::json!({})).await;
    let mut stream = TcpStream::connect(listen).await.unwrap();
    let mut buffer = Vec::new();
    for _ in 0..2 {
        stream.write_all(HANDSHAKE).await.unwrap();
        let head = read_head(&mut stream, &mut buffer).await;
        assert!(head.starts_with("http/1.1 200 "), "{head}");
        assert!(!head.contains("upgrade"), "{head}");
        assert_eq!(read_exactly(&mut stream, &mut buffer, 2).await, b"no");
    }
    assert_eq!(declined.lock().unwrap().len(), 2);

    // A 101 to a request that asked for no switch, or one naming no protocol or one the
    // client did not offer, is a broken upstream: 502, and nothing after it reaches the client.
    for (request, answer) in [
        (
            &b"GET / HTTP/1.1\r\nhost: api\r\n\r\n"[..],
            &b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\nraw"[..],
        ),
        (
            HANDSHAKE,
            &b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\n\r\nraw"[..],
        ),
        (
            HANDSHAKE,
            &b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\nconnection: upgrade\r\n\r\nraw"[..],
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (rogue, _) = scripted_upstream(answer).await;
        let (_proxy, listen) = proxy_to(dir.path(), rogue, serde_json::json!({})).await;
        let mut stream = TcpStream::connect(listen).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut buffer = Vec::new();
        let head = read_head(&mut stream, &mut buffer).await;
        assert!(head.starts_with("http/1.1 502 "), "{head}");
        let mut rest = Vec::new();
        tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        buffer.extend_from_slice(&rest);
        assert!(!String::from_utf8_lossy(&buffer).contains("raw"), "{buffer:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_tunnel_keeps_its_instance_busy_through_a_drain_and_is_cut_at_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (old, _) = switching_upstream().await;
    let (new, _) = switching_upstream().await;
    let drain = serde_json::json!({"drain_timeout_ms": 3000});
    let (proxy, listen) = proxy_to(dir.path(), old, drain.clone()).await;
    let mut tunnel = TcpStream::connect(listen).await.unwrap();
    tunnel.write_all(HANDSHAKE).await.unwrap();
    let mut buffer = Vec::new();
    let head = read_head(&mut tunnel, &mut buffer).await;
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    let in_flight = |address: SocketAddr| {
        let proxy = &proxy;
        async move {
            proxy.stats().await["instances"][address.to_string()]["in_flight"]
                .as_u64()
                .unwrap_or(0)
        }
    };
    assert_eq!(in_flight(old).await, 1);

    // The instance leaves the table: new switches go to the new one, the open tunnel still
    // carries bytes to the old one, which stays listed as busy.
    let routes = table(2, listen, &[("2", 100, &[new])], drain);
    assert_eq!(proxy.put_routes(&routes).await.0, 200);
    let removed = std::time::Instant::now();
    let mut other = TcpStream::connect(listen).await.unwrap();
    other.write_all(HANDSHAKE).await.unwrap();
    let mut other_buffer = Vec::new();
    assert!(
        read_head(&mut other, &mut other_buffer)
            .await
            .starts_with("http/1.1 101 ")
    );
    assert_eq!(in_flight(new).await, 1);
    tunnel.write_all(b"still").await.unwrap();
    assert_eq!(
        read_exactly(&mut tunnel, &mut buffer, 10).await,
        b"echo:still"
    );
    assert_eq!(in_flight(old).await, 1);

    // At the drain timeout the tunnel is cut, and the old instance is no longer busy.
    assert!(ends(&mut tunnel, &buffer).await);
    assert!(
        removed.elapsed() >= Duration::from_millis(2900),
        "{:?}",
        removed.elapsed()
    );
    eventually(DEADLINE, "the cut tunnel to stop counting", || async {
        (in_flight(old).await == 0).then_some(())
    })
    .await;
    // The tunnel to the instance still in the table is untouched.
    other.write_all(b"on").await.unwrap();
    assert_eq!(
        read_exactly(&mut other, &mut other_buffer, 7).await,
        b"echo:on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_idle_past_its_timeout_is_closed_and_a_busy_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, _) = switching_upstream().await;
    let (_proxy, listen) = proxy_to(
        dir.path(),
        upstream,
        serde_json::json!({"tunnel_idle_timeout_ms": 1000}),
    )
    .await;
    let open = || async {
        let mut stream = TcpStream::connect(listen).await.unwrap();
        stream.write_all(HANDSHAKE).await.unwrap();
        let mut buffer = Vec::new();
        let head = read_head(&mut stream, &mut buffer).await;
        assert!(head.starts_with("http/1.1 101 "), "{head}");
        (stream, buffer)
    };
    let (mut idle, idle_buffer) = open().await;
    let idle_opened = std::time::Instant::now();
    let (mut busy, mut busy_buffer) = open().await;
    let opened = std::time::Instant::now();
    // The busy tunnel carries a message every 100 ms for over two idle timeouts.
    let mut cadence = tokio::time::interval(Duration::from_millis(100));
    for round in 0..25 {
        cadence.tick().await;
        let message = format!("m{round:02}");
        busy.write_all(message.as_bytes()).await.unwrap();
        let echoed = read_exactly(&mut busy, &mut busy_buffer, 8).await;
        assert_eq!(echoed, format!("echo:{message}").into_bytes());
        // Early and late within its timeout (the proxy's clock started before the 101
        // reached this side), the idle tunnel is still open: nothing to read, no end.
        if (round == 1 || round == 5) && idle_opened.elapsed() < Duration::from_millis(700) {
            let early = idle.try_read(&mut [0u8; 1]);
            assert!(
                matches!(&early, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
                "{early:?} at {:?}",
                idle_opened.elapsed()
            );
        }
    }
    assert!(opened.elapsed() >= Duration::from_millis(2400));
    // The idle one was closed meanwhile, not before its timeout.
    assert!(ends(&mut idle, &idle_buffer).await);
    busy.write_all(b"m99").await.unwrap();
    assert_eq!(
        read_exactly(&mut busy, &mut busy_buffer, 8).await,
        b"echo:m99"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_one_side_has_closed_a_silent_tunnel_ends_in_seconds_not_at_the_idle_timeout() {
    // An upstream that switches, says hello and closes at once.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buffer = Vec::new();
        while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            buffer.extend_from_slice(&chunk[..n]);
        }
        stream
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\nhello")
            .await
            .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    // The idle timeout stays at its default, an hour.
    let (proxy, listen) = proxy_to(dir.path(), upstream, serde_json::json!({})).await;
    let in_flight = || async {
        proxy.stats().await["instances"][upstream.to_string()]["in_flight"]
            .as_u64()
            .unwrap_or(0)
    };
    let mut client = TcpStream::connect(listen).await.unwrap();
    client.write_all(HANDSHAKE).await.unwrap();
    let mut buffer = Vec::new();
    assert!(
        read_head(&mut client, &mut buffer)
            .await
            .starts_with("http/1.1 101 ")
    );
    // The upstream's end of stream reaches the client after its last words.
    assert_eq!(read_exactly(&mut client, &mut buffer, 5).await, b"hello");
    assert!(ends(&mut client, &buffer).await);
    let half_closed = std::time::Instant::now();
    // The client keeps its side open and silent: the tunnel waits a little, then ends.
    assert_eq!(in_flight().await, 1);
    eventually(
        Duration::from_secs(30),
        "the half-closed tunnel to end",
        || async { (in_flight().await == 0).then_some(()) },
    )
    .await;
    let waited = half_closed.elapsed();
    assert!(
        waited >= Duration::from_secs(8) && waited < Duration::from_secs(20),
        "{waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_on_a_port_that_closed_is_cut_at_the_drain_even_if_its_instance_stays() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, _) = switching_upstream().await;
    let drain = serde_json::json!({"drain_timeout_ms": 1000});
    let (proxy, old_port) = proxy_to(dir.path(), upstream, drain.clone()).await;
    let mut tunnel = TcpStream::connect(old_port).await.unwrap();
    tunnel.write_all(HANDSHAKE).await.unwrap();
    let mut buffer = Vec::new();
    assert!(
        read_head(&mut tunnel, &mut buffer)
            .await
            .starts_with("http/1.1 101 ")
    );

    // The service moves to another port; its instance stays in the table.
    let new_port = free_port();
    let routes = table(2, new_port, &[("1", 100, &[upstream])], drain);
    assert_eq!(proxy.put_routes(&routes).await.0, 200);
    let moved = std::time::Instant::now();
    tunnel.write_all(b"still").await.unwrap();
    assert_eq!(
        read_exactly(&mut tunnel, &mut buffer, 10).await,
        b"echo:still"
    );
    let mut other = TcpStream::connect(new_port).await.unwrap();
    other.write_all(HANDSHAKE).await.unwrap();
    let mut other_buffer = Vec::new();
    assert!(
        read_head(&mut other, &mut other_buffer)
            .await
            .starts_with("http/1.1 101 ")
    );

    // The old port's drain ends its tunnel; the one on the new port goes on.
    assert!(ends(&mut tunnel, &buffer).await);
    assert!(
        moved.elapsed() >= Duration::from_millis(900),
        "{:?}",
        moved.elapsed()
    );
    other.write_all(b"on").await.unwrap();
    assert_eq!(
        read_exactly(&mut other, &mut other_buffer, 7).await,
        b"echo:on"
    );
    let in_flight = proxy.stats().await["instances"][upstream.to_string()]["in_flight"].clone();
    assert_eq!(in_flight, 1, "only the tunnel on the new port is in flight");
}
