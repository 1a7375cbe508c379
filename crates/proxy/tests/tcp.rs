//! TCP pass-through ports (`mode: tcp`): a real `wharf-proxy` process in front of echo
//! servers on loopback, which greet each connection with their name so the test sees which
//! version took it.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::{ProxyProc, eventually, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const DEADLINE: Duration = Duration::from_secs(10);

/// An upstream that writes `name\n` to each connection, then echoes what it reads.
async fn echo(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if stream
                    .write_all(format!("{name}\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    address
}

/// A route table with one TCP service `db` on `listen`.
fn tcp_table(
    revision: u64,
    listen: SocketAddr,
    versions: &[(&str, u8, &[SocketAddr])],
    drain_ms: u64,
) -> serde_json::Value {
    let mut table = support::table(
        revision,
        listen,
        versions,
        serde_json::json!({"mode": "tcp", "drain_timeout_ms": drain_ms}),
    );
    let route = table["services"]["api"].take();
    serde_json::json!({"revision": table["revision"], "services": {"db": route}})
}

/// Connects through the proxy and reads the greeting: which upstream took the connection.
async fn connect(listen: SocketAddr) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(listen).await.unwrap();
    let mut greeting = Vec::new();
    let mut byte = [0u8; 1];
    while byte[0] != b'\n' {
        let read = tokio::time::timeout(DEADLINE, stream.read(&mut byte))
            .await
            .expect("the upstream greets in time")
            .unwrap();
        assert_eq!(read, 1, "the connection closed before the greeting");
        greeting.push(byte[0]);
    }
    greeting.pop();
    (stream, String::from_utf8(greeting).unwrap())
}

/// Writes `text` and reads the echo back.
async fn round_trip(stream: &mut TcpStream, text: &str) -> String {
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut back = vec![0u8; text.len()];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut back))
        .await
        .expect("the echo comes back in time")
        .unwrap();
    String::from_utf8(back).unwrap()
}

async fn in_flight(proxy: &ProxyProc, address: SocketAddr) -> u64 {
    let stats = proxy.stats().await;
    stats["instances"][address.to_string()]["in_flight"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_connection_goes_whole_to_one_version_chosen_by_weight() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (echo("one").await, echo("two").await);
    let proxy = ProxyProc::start(dir.path());
    let listen = free_port();
    let routes = tcp_table(1, listen, &[("1", 50, &[one]), ("2", 50, &[two])], 1000);
    assert_eq!(proxy.put_routes(&routes).await.0, 200);
    let mut counts = std::collections::HashMap::<String, u32>::new();
    for n in 0..200 {
        let (mut stream, greeting) = connect(listen).await;
        // Every byte of one connection goes to the upstream that greeted it.
        let text = format!("{greeting} connection {n}");
        assert_eq!(round_trip(&mut stream, &text).await, text);
        *counts.entry(greeting).or_default() += 1;
    }
    let (ones, twos) = (counts["one"], counts["two"]);
    assert_eq!(ones + twos, 200);
    // 50/50 over 200 connections: outside 50..150 happens with odds below 1e-12.
    assert!((50..150).contains(&ones), "{counts:?}");
    let stats = eventually(DEADLINE, "the bytes of closed connections", || async {
        let stats = proxy.stats().await;
        let versions = &stats["services"]["db"]["versions"];
        (versions["1"]["bytes_in"].as_u64().is_some()
            && versions["2"]["bytes_in"].as_u64().is_some())
        .then_some(stats)
    })
    .await;
    let versions = &stats["services"]["db"]["versions"];
    assert_eq!(versions["1"]["requests"], u64::from(ones));
    assert_eq!(versions["2"]["requests"], u64::from(twos));
    assert_eq!(versions["1"]["responses"]["2xx"], u64::from(ones));

    // All the weight on one version: every new connection goes there.
    let routes = tcp_table(2, listen, &[("1", 0, &[one]), ("2", 100, &[two])], 1000);
    assert_eq!(proxy.put_routes(&routes).await.0, 200);
    for _ in 0..20 {
        assert_eq!(connect(listen).await.1, "two");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_instance_keeps_its_open_connections_until_the_drain_cut_and_gets_no_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (echo("old").await, echo("new").await);
    let proxy = ProxyProc::start(dir.path());
    let listen = free_port();
    assert_eq!(
        proxy
            .put_routes(&tcp_table(1, listen, &[("1", 100, &[old])], 20_000))
            .await
            .0,
        200
    );
    let (mut kept, greeting) = connect(listen).await;
    assert_eq!(greeting, "old");
    assert_eq!(in_flight(&proxy, old).await, 1);

    // Moved to the new version with a long drain: the open connection goes on, new ones go
    // to the new version, and the old instance counts one in flight until it closes.
    assert_eq!(
        proxy
            .put_routes(&tcp_table(2, listen, &[("2", 100, &[new])], 20_000))
            .await
            .0,
        200
    );
    for _ in 0..10 {
        assert_eq!(connect(listen).await.1, "new");
    }
    assert_eq!(round_trip(&mut kept, "still here").await, "still here");
    assert_eq!(in_flight(&proxy, old).await, 1);
    drop(kept);
    eventually(
        DEADLINE,
        "the closed connection to leave the count",
        || async { (in_flight(&proxy, old).await == 0).then_some(()) },
    )
    .await;

    // Back to the old one, then away again with a short drain: its connection is cut.
    assert_eq!(
        proxy
            .put_routes(&tcp_table(3, listen, &[("1", 100, &[old])], 200))
            .await
            .0,
        200
    );
    let (mut doomed, greeting) = connect(listen).await;
    assert_eq!(greeting, "old");
    assert_eq!(
        proxy
            .put_routes(&tcp_table(4, listen, &[("2", 100, &[new])], 200))
            .await
            .0,
        200
    );
    let mut rest = Vec::new();
    let read = tokio::time::timeout(DEADLINE, doomed.read_to_end(&mut rest))
        .await
        .expect("the drain cut closes the connection");
    assert!(!matches!(read, Ok(n) if n > 0), "{rest:?}");
    eventually(
        DEADLINE,
        "the cut connection to leave the count",
        || async { (in_flight(&proxy, old).await == 0).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_instance_is_skipped_and_a_version_with_none_left_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let live = echo("live").await;
    let dead = free_port();
    let proxy = ProxyProc::start(dir.path());
    let listen = free_port();
    let routes = tcp_table(1, listen, &[("1", 100, &[dead, live])], 1000);
    assert_eq!(proxy.put_routes(&routes).await.0, 200);
    for _ in 0..10 {
        assert_eq!(connect(listen).await.1, "live");
    }
    let routes = tcp_table(2, listen, &[("1", 100, &[dead])], 1000);
    assert_eq!(proxy.put_routes(&routes).await.0, 200);
    let mut stream = TcpStream::connect(listen).await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest))
        .await
        .expect("the proxy closes a connection no instance took");
    assert!(!matches!(read, Ok(n) if n > 0), "{rest:?}");
    let stats = proxy.stats().await;
    let version = &stats["services"]["db"]["versions"]["1"];
    assert_eq!(version["responses"]["5xx"], 1, "{version}");
    assert!(
        version["upstream_errors"].as_u64().unwrap() >= 1,
        "{version}"
    );
}
