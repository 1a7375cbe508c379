//! The proxy end to end: a real `wharf-proxy` process in front of real `wharf-testbed`
//! upstreams, driven through its admin socket like the control plane will.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::{ProxyProc, Testbed, client, eventually, free_port, get, h2_client, proxy_to, table};

const DEADLINE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_split_sticky_clients_and_the_pin_header() {
    let dir = tempfile::tempdir().unwrap();
    let stable = Testbed::start("1.4.0", &[]);
    let canary = Testbed::start("1.5.0", &[]);
    let proxy = ProxyProc::start(dir.path());
    let listen = free_port();
    let routes = table(
        1,
        listen,
        &[
            ("1.4.0", 90, &[stable.address]),
            ("1.5.0", 10, &[canary.address]),
        ],
        serde_json::json!({"sticky": {"cookie": "session"}}),
    );
    assert_eq!(proxy.put_routes(&routes).await.0, 200);
    let client = client();

    // 10,000 requests without the cookie: a weighted random split.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let client = client.clone();
        tasks.spawn(async move {
            let mut counts: HashMap<String, u32> = HashMap::new();
            for _ in 0..10_000 / 32 + 1 {
                let (status, version, _) = get(&client, listen, "/", &[]).await;
                assert_eq!(status, 200);
                *counts.entry(version).or_default() += 1;
            }
            counts
        });
    }
    let mut counts: HashMap<String, u32> = HashMap::new();
    while let Some(part) = tasks.join_next().await {
        for (version, n) in part.unwrap() {
            *counts.entry(version).or_default() += n;
        }
    }
    let total: u32 = counts.values().sum();
    let canary_share = f64::from(counts["1.5.0"]) * 100.0 / f64::from(total);
    assert!(total >= 10_000);
    assert!(
        (8.0..=12.0).contains(&canary_share),
        "canary got {canary_share:.2}% of {total}"
    );

    // Sticky: the same cookie always lands on the same version while the weights hold.
    let mut seen = HashMap::new();
    for client_id in 0..300 {
        let cookie = format!("theme=dark; session=client-{client_id}");
        for _ in 0..5 {
            let (_, version, _) = get(&client, listen, "/", &[("cookie", &cookie)]).await;
            let first = seen.entry(client_id).or_insert_with(|| version.clone());
            assert_eq!(*first, version, "client {client_id} flipped");
        }
    }
    let sticky_canaries = seen.values().filter(|v| *v == "1.5.0").count();
    assert!(
        (10..=60).contains(&sticky_canaries),
        "{sticky_canaries} of 300 clients on the canary"
    );

    // The pin header overrides the split; an unknown version falls back to it.
    for _ in 0..50 {
        let (_, version, _) = get(&client, listen, "/", &[("x-wharf-version", "1.5.0")]).await;
        assert_eq!(version, "1.5.0");
    }
    let (status, _, _) = get(&client, listen, "/", &[("x-wharf-version", "9.9.9")]).await;
    assert_eq!(status, 200);

    // HTTP/2 without TLS (prior knowledge) is served too.
    let h2 = h2_client::<http_body_util::Empty<bytes::Bytes>>();
    let (status, version, _) = get(&h2, listen, "/", &[("x-wharf-version", "1.4.0")]).await;
    assert_eq!((status, version.as_str()), (200, "1.4.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_are_atomic_stale_and_invalid_tables_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let one = Testbed::start("1", &[]);
    let two = Testbed::start("2", &[]);
    let proxy = ProxyProc::start(dir.path());
    let listen = free_port();
    let client = client();
    let only = |revision, version: &'static str, address| {
        table(
            revision,
            listen,
            &[(version, 100, &[address][..])],
            serde_json::json!({}),
        )
    };
    assert_eq!(proxy.put_routes(&only(1, "1", one.address)).await.0, 200);
    assert_eq!(get(&client, listen, "/", &[]).await.1, "1");

    // The next request after the PUT returns already sees the new table.
    assert_eq!(proxy.put_routes(&only(2, "2", two.address)).await.0, 200);
    for _ in 0..20 {
        assert_eq!(get(&client, listen, "/", &[]).await.1, "2");
    }

    // Stale revisions: 409, nothing changes.
    for revision in [1, 2] {
        let (status, body) = proxy.put_routes(&only(revision, "1", one.address)).await;
        assert_eq!(status, 409, "{body}");
        assert!(body.contains("stale_revision"), "{body}");
    }

    // Invalid: weights sum to 90. 422 with the reason, nothing changes.
    let bad = table(
        3,
        listen,
        &[("1", 50, &[one.address]), ("2", 40, &[two.address])],
        serde_json::json!({}),
    );
    let (status, body) = proxy.put_routes(&bad).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("service `api`: weights of versions with instances sum to 90, not 100"),
        "{body}"
    );
    let (status, body) = proxy
        .admin("PUT", "/v1/routes", "{\"revision\": 3, \"servces\": {}}")
        .await;
    assert_eq!(status, 400, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "bad_json", "{body}");
    assert!(error["error"].get("service").is_none(), "{body}");
    let (_, current) = proxy.admin("GET", "/v1/routes", "").await;
    let current: serde_json::Value = serde_json::from_str(&current).unwrap();
    assert_eq!(current["revision"], 2);
    assert_eq!(get(&client, listen, "/", &[]).await.1, "2");

    // A port taken by someone else: refused with the port named, nothing changes.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_address = taken.local_addr().unwrap();
    let elsewhere = table(
        3,
        taken_address,
        &[("2", 100, &[two.address])],
        serde_json::json!({}),
    );
    let (status, body) = proxy.put_routes(&elsewhere).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains(&format!(
            "cannot listen on {taken_address}: the port is already in use"
        )),
        "{body}"
    );
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "bind_failed", "{body}");
    assert_eq!(error["error"]["service"], "api", "{body}");
    drop(taken);

    // Moving the service to a new port binds it and closes the old one.
    let moved = free_port();
    let table4 = table(
        4,
        moved,
        &[("2", 100, &[two.address])],
        serde_json::json!({}),
    );
    assert_eq!(proxy.put_routes(&table4).await.0, 200);
    assert_eq!(get(&support::client(), moved, "/", &[]).await.1, "2");
    eventually(DEADLINE, "the old port to close", || async {
        std::net::TcpStream::connect(listen).is_err().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_instance_finishes_its_in_flight_request_and_gets_no_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let old = Testbed::start("1", &[]);
    let new = Testbed::start("2", &[]);
    let proxy = ProxyProc::start(dir.path());
    let listen = free_port();
    let first = table(
        1,
        listen,
        &[("1", 100, &[old.address])],
        serde_json::json!({"drain_timeout_ms": 20000}),
    );
    assert_eq!(proxy.put_routes(&first).await.0, 200);
    let client = client();
    let slow = tokio::spawn({
        let client = client.clone();
        async move { get(&client, listen, "/work?ms=1500", &[]).await }
    });
    eventually(DEADLINE, "the slow request to reach the proxy", || async {
        let stats = proxy.stats().await;
        (stats["services"]["api"]["versions"]["1"]["requests"] == 1).then_some(())
    })
    .await;
    let second = table(
        2,
        listen,
        &[("2", 100, &[new.address])],
        serde_json::json!({}),
    );
    assert_eq!(proxy.put_routes(&second).await.0, 200);
    for _ in 0..20 {
        let (status, version, _) = get(&client, listen, "/", &[]).await;
        assert_eq!((status, version.as_str()), (200, "2"));
    }
    assert!(
        !slow.is_finished(),
        "the slow request should still be in flight"
    );
    let (status, version, _) = slow.await.unwrap();
    assert_eq!((status, version.as_str()), (200, "1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_instance_is_retried_elsewhere_then_ejected() {
    let dir = tempfile::tempdir().unwrap();
    let alive = Testbed::start("1", &[]);
    let dead = free_port(); // nothing listens here: connections are refused
    let proxy = ProxyProc::start(dir.path());
    let listen = free_port();
    let routes = table(
        1,
        listen,
        &[("1", 100, &[dead, alive.address])],
        serde_json::json!({"eject_after": 3, "eject_cooldown_ms": 60000}),
    );
    assert_eq!(proxy.put_routes(&routes).await.0, 200);
    let client = client();
    for _ in 0..40 {
        let (status, version, _) = get(&client, listen, "/", &[]).await;
        assert_eq!((status, version.as_str()), (200, "1"));
    }
    let stats = proxy.stats().await;
    let version = &stats["services"]["api"]["versions"]["1"];
    let dead_state = &stats["instances"][dead.to_string()];
    assert_eq!(dead_state["ejected"], true, "{stats:#}");
    assert_eq!(dead_state["ejections"], 1, "{stats:#}");
    // Round-robin sends every other request to the dead instance until it is ejected after 3.
    assert_eq!(version["retries"], 3, "{stats:#}");
    assert_eq!(version["upstream_errors"], 3, "{stats:#}");
    assert_eq!(version["responses"]["2xx"], 40, "{stats:#}");

    // With no instance able to answer the client gets a short 502.
    let lonely = table(
        2,
        listen,
        &[("1", 100, &[free_port()])],
        serde_json::json!({}),
    );
    assert_eq!(proxy.put_routes(&lonely).await.0, 200);
    let (status, _, body) = get(&client, listen, "/", &[]).await;
    assert_eq!((status, body.as_str()), (502, "no upstream answered\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_proxy_restarts_serving_the_saved_table() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Testbed::start("7", &[]);
    let mut proxy = ProxyProc::start(dir.path());
    let listen = free_port();
    let routes = table(
        5,
        listen,
        &[("7", 100, &[upstream.address])],
        serde_json::json!({}),
    );
    assert_eq!(proxy.put_routes(&routes).await.0, 200);
    assert_eq!(get(&client(), listen, "/", &[]).await.1, "7");
    proxy.proc.child.kill().unwrap(); // SIGKILL
    proxy.proc.child.wait().unwrap();

    let restarted = ProxyProc::start(dir.path());
    // No admin call: the saved table is served as soon as the proxy says it is up.
    let (status, version, _) = get(&client(), listen, "/", &[]).await;
    assert_eq!((status, version.as_str()), (200, "7"));
    let (_, current) = restarted.admin("GET", "/v1/routes", "").await;
    let current: serde_json::Value = serde_json::from_str(&current).unwrap();
    assert_eq!(current["revision"], 5);
    let stale = table(
        5,
        listen,
        &[("7", 100, &[upstream.address])],
        serde_json::json!({}),
    );
    assert_eq!(restarted.put_routes(&stale).await.0, 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_per_version_and_class_and_p95_shows_added_latency() {
    let dir = tempfile::tempdir().unwrap();
    let fast = Testbed::start("1", &[]);
    let slow = Testbed::start("2", &["--latency", "50ms"]);
    let failing = Testbed::start("3", &["--error-rate", "1.0"]);
    let proxy = ProxyProc::start(dir.path());
    let listen = free_port();
    let routes = table(
        1,
        listen,
        &[
            ("1", 50, &[fast.address]),
            ("2", 50, &[slow.address]),
            ("3", 0, &[failing.address]),
        ],
        serde_json::json!({}),
    );
    assert_eq!(proxy.put_routes(&routes).await.0, 200);
    let client = client();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let client = client.clone();
        tasks.spawn(async move {
            for _ in 0..10 {
                assert_eq!(get(&client, listen, "/", &[]).await.0, 200);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    for _ in 0..7 {
        assert_eq!(
            get(&client, listen, "/", &[("x-wharf-version", "3")])
                .await
                .0,
            500
        );
    }
    let stats = proxy.stats().await;
    let versions = &stats["services"]["api"]["versions"];
    let requests = |v: &str| versions[v]["requests"].as_u64().unwrap();
    assert_eq!(requests("1") + requests("2"), 200, "{stats:#}");
    assert_eq!(
        versions["1"]["responses"]["2xx"].as_u64().unwrap(),
        requests("1")
    );
    assert_eq!(versions["3"]["requests"], 7);
    assert_eq!(versions["3"]["responses"]["5xx"], 7);
    assert_eq!(versions["3"]["responses"]["2xx"], 0);
    let p95 = |v: &str| versions[v]["latency_us"]["p95"].as_u64().unwrap();
    assert!(p95("2") >= 50_000, "{stats:#}");
    assert!(p95("2") < 200_000, "{stats:#}");
    assert!(p95("1") < 25_000, "{stats:#}");

    // The same latencies as mergeable buckets: every response counted once, and quantiles
    // computed by a reader agree with the summary.
    let buckets = |stats: &serde_json::Value, v: &str| -> Vec<(u64, u64)> {
        serde_json::from_value(stats["services"]["api"]["versions"][v]["latency_buckets"].clone())
            .unwrap()
    };
    for v in ["1", "2", "3"] {
        let counted: u64 = buckets(&stats, v).iter().map(|(_, c)| c).sum();
        assert_eq!(counted, requests(v), "{stats:#}");
    }
    let p95_ms = wharf_proxy::quantile_from_buckets(&buckets(&stats, "2"), 0.95).unwrap();
    assert!((50.0..200.0).contains(&p95_ms), "{p95_ms} {stats:#}");
    // Between two snapshots: exactly the requests sent in between.
    for _ in 0..5 {
        let pinned = get(&client, listen, "/", &[("x-wharf-version", "2")]).await;
        assert_eq!(pinned.0, 200);
    }
    let later = proxy.stats().await;
    let delta = wharf_proxy::bucket_delta(&buckets(&later, "2"), &buckets(&stats, "2"));
    assert_eq!(delta.iter().map(|(_, c)| c).sum::<u64>(), 5, "{delta:?}");
    let p50_ms = wharf_proxy::quantile_from_buckets(&delta, 0.5).unwrap();
    assert!((50.0..200.0).contains(&p50_ms), "{p50_ms} {delta:?}");

    let (status, metrics) = proxy.admin("GET", "/metrics", "").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains(r#"wharf_proxy_requests_total{service="api",version="3"} 7"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"wharf_proxy_responses_total{service="api",version="3",class="5xx"} 7"#),
        "{metrics}"
    );
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");
}

/// `instances.<address>.in_flight` of `/v1/stats`, 0 when the address is not listed.
async fn in_flight(proxy: &ProxyProc, address: std::net::SocketAddr) -> u64 {
    let stats = proxy.stats().await;
    stats["instances"][address.to_string()]["in_flight"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_counts_slow_requests_until_done_disconnected_or_drained() {
    let dir = tempfile::tempdir().unwrap();
    let old = Testbed::start("1", &[]);
    let new = Testbed::start("2", &[]);
    let proxy = ProxyProc::start(dir.path());
    let listen = free_port();
    let first = table(
        1,
        listen,
        &[("1", 100, &[old.address])],
        serde_json::json!({"drain_timeout_ms": 20000}),
    );
    assert_eq!(proxy.put_routes(&first).await.0, 200);
    let client = client();
    assert_eq!(in_flight(&proxy, old.address).await, 0);

    // A slow request counts while the upstream works on it, and not once it is answered.
    let slow = tokio::spawn({
        let client = client.clone();
        async move { get(&client, listen, "/work?ms=1000", &[]).await }
    });
    eventually(DEADLINE, "the slow request to count", || async {
        (in_flight(&proxy, old.address).await == 1).then_some(())
    })
    .await;
    assert!(!slow.is_finished());
    assert_eq!(slow.await.unwrap().0, 200);
    eventually(
        DEADLINE,
        "the answered request to stop counting",
        || async { (in_flight(&proxy, old.address).await == 0).then_some(()) },
    )
    .await;

    // A client that goes away mid-request stops counting long before the upstream answers.
    let started = std::time::Instant::now();
    let mut raw = tokio::net::TcpStream::connect(listen).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut raw,
        b"GET /work?ms=8000 HTTP/1.1\r\nhost: api\r\n\r\n",
    )
    .await
    .unwrap();
    eventually(DEADLINE, "the abandoned request to count", || async {
        (in_flight(&proxy, old.address).await == 1).then_some(())
    })
    .await;
    drop(raw);
    eventually(
        DEADLINE,
        "the abandoned request to stop counting",
        || async { (in_flight(&proxy, old.address).await == 0).then_some(()) },
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(8));

    // An instance removed from the table stays listed with its in-flight request.
    let slow = tokio::spawn({
        let client = client.clone();
        async move { get(&client, listen, "/work?ms=1500", &[]).await }
    });
    eventually(DEADLINE, "the slow request to count", || async {
        (in_flight(&proxy, old.address).await == 1).then_some(())
    })
    .await;
    let second = table(
        2,
        listen,
        &[("2", 100, &[new.address])],
        serde_json::json!({}),
    );
    assert_eq!(proxy.put_routes(&second).await.0, 200);
    assert_eq!(get(&client, listen, "/", &[]).await.1, "2");
    assert_eq!(in_flight(&proxy, old.address).await, 1);
    assert!(!slow.is_finished());
    let (status, version, _) = slow.await.unwrap();
    assert_eq!((status, version.as_str()), (200, "1"));
    eventually(DEADLINE, "the drained instance to report 0", || async {
        (in_flight(&proxy, old.address).await == 0).then_some(())
    })
    .await;
    assert_eq!(in_flight(&proxy, new.address).await, 0);
}

/// A bare HTTP/1.1 upstream on loopback that counts the connections it accepts; with `close`
/// it answers every request with `connection: close` and closes.
async fn raw_upstream(
    close: bool,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        buffer.drain(..end + 4);
                        let answer: &[u8] = if close {
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-version: raw\r\nconnection: close\r\n\r\nok"
                        } else {
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-version: raw\r\n\r\nok"
                        };
                        if stream.write_all(answer).await.is_err() || close {
                            return;
                        }
                    }
                }
            });
        }
    });
    (address, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused_and_closed_ones_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let (keeps, keeps_accepted) = raw_upstream(false).await;
    let (closes, closes_accepted) = raw_upstream(true).await;
    let proxy = ProxyProc::start(dir.path());
    let listen = free_port();
    let routes = table(
        1,
        listen,
        &[("keep", 100, &[keeps]), ("close", 0, &[closes])],
        serde_json::json!({}),
    );
    assert_eq!(proxy.put_routes(&routes).await.0, 200);
    // One client connection, one request at a time: one upstream connection carries them all.
    let stream = tokio::net::TcpStream::connect(listen).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    for _ in 0..50 {
        let request = hyper::Request::builder()
            .uri("/")
            .header("host", "api")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        sender.ready().await.unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&body[..], b"ok");
    }
    let client = client();
    let used = keeps_accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(used, 1, "upstream connections opened for 50 requests");
    // An upstream that closes after every answer: each request still gets through.
    for _ in 0..20 {
        let (status, _, body) = get(&client, listen, "/", &[("x-wharf-version", "close")]).await;
        assert_eq!((status, body.as_str()), (200, "ok"));
    }
    assert_eq!(
        closes_accepted.load(std::sync::atomic::Ordering::SeqCst),
        20
    );
    let stats = proxy.stats().await;
    assert_eq!(
        stats["services"]["api"]["versions"]["close"]["upstream_errors"], 0,
        "{stats:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_upstream_timeout_bounds_the_wait_for_an_answer_over_http1_and_h2c() {
    let dir = tempfile::tempdir().unwrap();
    let testbed = Testbed::start("1", &[]);
    let (proxy, listen) = proxy_to(
        dir.path(),
        testbed.address,
        serde_json::json!({"upstream_timeout_ms": 400}),
    )
    .await;
    let h1 = client();
    let h2 = h2_client::<http_body_util::Empty<bytes::Bytes>>();
    for client in [&h1, &h2] {
        // Within the timeout: answered.
        let (status, version, _) = get(client, listen, "/work?ms=50", &[]).await;
        assert_eq!((status, version.as_str()), (200, "1"));
        // Past it: the proxy's 504, long before the upstream would have answered.
        let started = std::time::Instant::now();
        let (status, _, body) = get(client, listen, "/work?ms=5000", &[]).await;
        assert_eq!(status, 504, "{body}");
        assert!(body.contains("did not answer in time"), "{body}");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(350) && waited < Duration::from_secs(4),
            "{waited:?}"
        );
    }
    // With a request body, the timeout runs from the body's end: a whole upload followed by
    // a slow answer is a 504 as quickly.
    let h2_upload = h2_client::<http_body_util::Full<bytes::Bytes>>();
    let started = std::time::Instant::now();
    let request = hyper::Request::post(format!("http://{listen}/work?ms=5000"))
        .body(http_body_util::Full::new(bytes::Bytes::from(vec![
            b'x';
            100_000
        ])))
        .unwrap();
    let response = h2_upload.request(request).await.expect("the proxy answers");
    assert_eq!(response.status(), 504);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let stats = proxy.stats().await;
    let version = &stats["services"]["api"]["versions"]["1"];
    assert_eq!(version["responses"]["5xx"], 3, "{stats}");
    assert_eq!(version["upstream_errors"], 3, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_silent_mid_body_is_cut_off_at_its_timeout_over_http1_and_h2c() {
    // Sends half of its body, then nothing, keeping the connection open.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let mut chunk = [0u8; 4096];
                    match tokio::io::AsyncReadExt::read(&mut stream, &mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let half = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\nx-version: 1\r\n\r\nhello";
                if tokio::io::AsyncWriteExt::write_all(&mut stream, half)
                    .await
                    .is_ok()
                {
                    let mut rest = Vec::new();
                    let _ = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut rest).await;
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let (proxy, listen) = proxy_to(
        dir.path(),
        upstream,
        serde_json::json!({"upstream_timeout_ms": 400}),
    )
    .await;
    let h1 = client();
    let h2 = h2_client::<http_body_util::Empty<bytes::Bytes>>();
    for client in [&h1, &h2] {
        let started = std::time::Instant::now();
        let request = hyper::Request::get(format!("http://{listen}/"))
            .body(http_body_util::Empty::new())
            .unwrap();
        let response = client.request(request).await.expect("the head arrives");
        assert_eq!(response.status(), 200);
        // The body breaks off: the client must not take the five bytes as the whole.
        let body = tokio::time::timeout(
            Duration::from_secs(10),
            http_body_util::BodyExt::collect(response.into_body()),
        )
        .await
        .expect("the proxy ends the stalled body");
        assert!(body.is_err(), "a truncated body taken as whole");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(350), "{waited:?}");
    }
    eventually(
        DEADLINE,
        "the stalled exchanges to stop counting",
        || async { (in_flight(&proxy, upstream).await == 0).then_some(()) },
    )
    .await;
}

/// Over h2 the client's flow control can hold a response back for longer than the upstream
/// timeout: that time is the client's. An upstream that streams steadily, each piece well
/// within its timeout, while the client now and then holds its window shut for several
/// timeouts, gets its body through whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_client_holding_back_its_window_longer_than_the_upstream_timeout_gets_the_whole_body()
{
    const PIECES: usize = 40;
    const PIECE: usize = 16 * 1024;
    // Chunked, a piece every 100 ms: a fifth of the upstream timeout.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 4096];
            match tokio::io::AsyncReadExt::read(&mut stream, &mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
        let mut out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        let mut cadence = tokio::time::interval(Duration::from_millis(100));
        for _ in 0..PIECES {
            cadence.tick().await;
            out.extend_from_slice(format!("{PIECE:x}\r\n").as_bytes());
            out.extend(std::iter::repeat_n(b'x', PIECE));
            out.extend_from_slice(b"\r\n");
            if tokio::io::AsyncWriteExt::write_all(&mut stream, &out)
                .await
                .is_err()
            {
                return;
            }
            out.clear();
        }
        let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, b"0\r\n\r\n").await;
        let mut rest = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut rest).await;
    });
    let dir = tempfile::tempdir().unwrap();
    let (proxy, listen) = proxy_to(
        dir.path(),
        upstream,
        serde_json::json!({"upstream_timeout_ms": 500}),
    )
    .await;
    // Small windows, never widened on their own: the proxy may send only what was read here.
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .http2_adaptive_window(false)
        .http2_initial_stream_window_size(65_535)
        .http2_initial_connection_window_size(65_535)
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let request = hyper::Request::get(format!("http://{listen}/stream"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let response = h2.request(request).await.expect("the head arrives");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = 0usize;
    let mut holds = 0;
    while let Some(frame) = tokio::time::timeout(
        Duration::from_secs(10),
        http_body_util::BodyExt::frame(&mut body),
    )
    .await
    .expect("the body keeps coming")
    {
        let frame = frame.expect("the body is not cut off");
        if let Some(data) = frame.data_ref() {
            received += data.len();
        }
        // Hold the window shut for three upstream timeouts, at three points of the body.
        if holds < 3 && received >= (holds + 1) * PIECES * PIECE / 4 {
            holds += 1;
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
    }
    assert_eq!((received, holds), (PIECES * PIECE, 3));
    let stats = proxy.stats().await;
    assert_eq!(
        stats["services"]["api"]["versions"]["1"]["upstream_errors"], 0,
        "{stats}"
    );
}

/// Reads until the peer closes (or `deadline`), answering how long that took and what came.
async fn read_to_close(
    stream: &mut tokio::net::TcpStream,
    deadline: Duration,
) -> (Option<Duration>, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return (Some(started.elapsed()), got),
            Ok(Ok(n)) => got.extend_from_slice(&buffer[..n]),
            Err(_) => return (None, got),
        }
    }
}

/// Whether `bytes` (what a server sent after the preface) hold a frame of `kind`.
fn has_frame(bytes: &[u8], kind: u8) -> bool {
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let length = usize::from(bytes[at]) << 16
            | usize::from(bytes[at + 1]) << 8
            | usize::from(bytes[at + 2]);
        if bytes[at + 3] == kind {
            return true;
        }
        at += 9 + length;
    }
    false
}

// Before: an h2c connection that sent the preface and nothing more (or a HEADERS frame it
// never finished) stayed open for good, holding a connection of the port's budget. Now it gets
// a GOAWAY and is closed once idle for the service's header timeout, as HTTP/1 keep-alive is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_gets_a_goaway_after_the_header_timeout() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let upstream = Testbed::start("1", &[]);
    let (_proxy, listen) = proxy_to(
        dir.path(),
        upstream.address,
        serde_json::json!({"header_timeout_ms": 500}),
    )
    .await;
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];
    // The preface and SETTINGS, then silence.
    let mut idle = tokio::net::TcpStream::connect(listen).await.unwrap();
    idle.write_all(PREFACE).await.unwrap();
    idle.write_all(&SETTINGS).await.unwrap();
    let (closed, got) = read_to_close(&mut idle, Duration::from_secs(10)).await;
    let closed = closed.expect("the idle connection is closed");
    assert!(closed >= Duration::from_millis(400), "{closed:?}");
    assert!(closed < Duration::from_secs(5), "{closed:?}");
    assert!(has_frame(&got, 7), "a GOAWAY came first: {got:?}");
    // A HEADERS frame without END_HEADERS, its CONTINUATION never sent: no request started,
    // the same end.
    let mut partial = tokio::net::TcpStream::connect(listen).await.unwrap();
    partial.write_all(PREFACE).await.unwrap();
    partial.write_all(&SETTINGS).await.unwrap();
    // HEADERS (type 1), flags END_STREAM only, stream 1, one byte of a header block.
    partial
        .write_all(&[0, 0, 1, 1, 0x1, 0, 0, 0, 1, 0x82])
        .await
        .unwrap();
    let (closed, _) = read_to_close(&mut partial, Duration::from_secs(10)).await;
    assert!(
        closed.is_some_and(|c| c < Duration::from_secs(5)),
        "{closed:?}"
    );
    // A connection in use is not cut: requests over one h2 connection for longer than the
    // timeout, each within it of the last, all succeed.
    let h2 = h2_client::<http_body_util::Empty<bytes::Bytes>>();
    for _ in 0..8 {
        let (status, _, _) = get(&h2, listen, "/", &[]).await;
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// An HTTP/1.1 upstream answering every request with a chunked body of `chunks` chunks, one
/// every `every`.
async fn dripping_upstream(chunks: usize, every: Duration) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                    }
                }
                let head =
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-version: drip\r\n\r\n";
                if stream.write_all(head).await.is_err() {
                    return;
                }
                let mut interval = tokio::time::interval(every);
                for _ in 0..chunks {
                    interval.tick().await;
                    if stream.write_all(b"5\r\ndrip\n\r\n").await.is_err() {
                        return;
                    }
                }
                let _ = stream.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    address
}

// A response that streams for longer than the idle timeout is no idle connection: the GOAWAY
// waits for the connection to have nothing open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_response_streaming_past_the_header_timeout_is_not_cut() {
    use http_body_util::BodyExt;
    let dir = tempfile::tempdir().unwrap();
    let upstream = dripping_upstream(10, Duration::from_millis(200)).await;
    let (_proxy, listen) = proxy_to(
        dir.path(),
        upstream,
        serde_json::json!({"header_timeout_ms": 500}),
    )
    .await;
    let h2 = h2_client::<http_body_util::Empty<bytes::Bytes>>();
    let request = hyper::Request::get(format!("http://{listen}/"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let started = std::time::Instant::now();
    let response = h2.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 50, "every chunk arrived");
    assert!(started.elapsed() >= Duration::from_millis(1800));
}
