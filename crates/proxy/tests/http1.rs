//! HTTP/1.x framing through a real `wharf-proxy` process: chunked and length-delimited
//! bodies both ways, pipelining, `Expect: 100-continue`, HTTP/1.0 clients, absolute-form
//! targets, and the request shapes refused before anything reaches an upstream. The client
//! side is raw TCP so the exact bytes on the wire are what is checked; the upstream is a
//! hyper server on a loopback port that echoes what it received.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{ProxyProc, h2_client, proxy_to};

type EchoBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

/// An upstream that answers `/chunked` with a three-chunk body and everything else with
/// `METHOD TARGET`, the request's fields (`name: value`, sorted) and its body, length-framed.
async fn echo_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        async move {
                            let path = request.uri().path().to_owned();
                            let body: EchoBody = if path == "/count" {
                                // Count an upload without keeping it.
                                let mut body = request.into_body();
                                let (mut length, mut sum) = (0u64, 0u64);
                                // A body cut off (the proxy gave up on its client) ends it.
                                while let Some(Ok(frame)) = body.frame().await {
                                    if let Ok(data) = frame.into_data() {
                                        length += data.len() as u64;
                                        sum = data
                                            .iter()
                                            .fold(sum, |s, &b| s.wrapping_add(u64::from(b)));
                                    }
                                }
                                Full::new(Bytes::from(format!("{length} {sum}"))).boxed()
                            } else if let Some(size) = path.strip_prefix("/big/") {
                                // `size` bytes in 64 KiB pieces, chunked.
                                let size: usize = size.parse().unwrap();
                                let piece = Bytes::from(vec![b'x'; 64 * 1024]);
                                Pieces((0..size / piece.len()).map(|_| piece.clone()).collect())
                                    .boxed()
                            } else if path == "/chunked" {
                                Pieces(
                                    ["a", "b", "c"]
                                        .map(|p| Bytes::from_static(p.as_bytes()))
                                        .into(),
                                )
                                .boxed()
                            } else {
                                let mut fields: Vec<String> = request
                                    .headers()
                                    .iter()
                                    .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap_or("?")))
                                    .collect();
                                fields.sort();
                                let head = format!(
                                    "{} {}\n{}\n\n",
                                    request.method(),
                                    request.uri(),
                                    fields.join("\n")
                                );
                                let received =
                                    request.into_body().collect().await.unwrap().to_bytes();
                                let mut all = head.into_bytes();
                                all.extend_from_slice(&received);
                                Full::new(Bytes::from(all)).boxed()
                            };
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(body))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (address, requests)
}

/// A body of ready pieces with no length announced, so hyper sends it chunked.
struct Pieces(std::collections::VecDeque<Bytes>);

impl hyper::body::Body for Pieces {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|piece| Ok(Frame::data(piece))))
    }
}

/// One response read off `stream`: status, fields (names lowercased) and the decoded body.
struct Answer {
    status: u16,
    fields: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

async fn read_answer(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Answer {
    loop {
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut slots);
        if let httparse::Status::Complete(len) = response.parse(buffer).unwrap() {
            let status = response.code.unwrap();
            let fields: Vec<(String, String)> = response
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            buffer.drain(..len);
            let mut answer = Answer {
                status,
                fields,
                body: Vec::new(),
            };
            if (100..200).contains(&status) || status == 204 || status == 304 {
                return answer;
            }
            if let Some(length) = answer.field("content-length") {
                let length: usize = length.parse().unwrap();
                fill(stream, buffer, length).await;
                answer.body = buffer.drain(..length).collect();
            } else if answer
                .field("transfer-encoding")
                .is_some_and(|codings| codings.ends_with("chunked"))
            {
                loop {
                    let line_end = loop {
                        if let Some(at) = buffer.windows(2).position(|w| w == b"\r\n") {
                            break at;
                        }
                        fill(stream, buffer, buffer.len() + 1).await;
                    };
                    let size = usize::from_str_radix(
                        std::str::from_utf8(&buffer[..line_end]).unwrap(),
                        16,
                    )
                    .unwrap();
                    buffer.drain(..line_end + 2);
                    fill(stream, buffer, size + 2).await;
                    answer.body.extend(buffer.drain(..size));
                    buffer.drain(..2);
                    if size == 0 {
                        break;
                    }
                }
            } else {
                stream.read_to_end(buffer).await.unwrap();
                answer.body = std::mem::take(buffer);
            }
            return answer;
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the proxy closed before a whole response head");
        buffer.extend_from_slice(&chunk[..n]);
    }
}

async fn fill(stream: &mut TcpStream, buffer: &mut Vec<u8>, want: usize) {
    while buffer.len() < want {
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the proxy closed mid-body");
        buffer.extend_from_slice(&chunk[..n]);
    }
}

async fn closed(stream: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    matches!(
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            stream.read_to_end(&mut rest)
        )
        .await,
        Ok(Ok(0))
    )
}

async fn proxy_to_echo(dir: &std::path::Path) -> (ProxyProc, SocketAddr, Arc<AtomicUsize>) {
    let (upstream, requests) = echo_upstream().await;
    let (proxy, listen) = proxy_to(dir, upstream, serde_json::json!({})).await;
    (proxy, listen, requests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_and_pipelined_requests_pass_with_forwarded_fields_and_without_hop_by_hop_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (_proxy, listen, _) = proxy_to_echo(dir.path()).await;
    let mut stream = TcpStream::connect(listen).await.unwrap();
    // Two requests in one write: a chunked upload, then a GET right behind it.
    stream
        .write_all(
            b"POST /upload?x=1 HTTP/1.1\r\nHost: api.example\r\nTransfer-Encoding: chunked\r\n\
              Connection: x-hint\r\nx-hint: drop me\r\nkeep-alive: timeout=5\r\n\
              X-Forwarded-For: 192.0.2.1\r\n\r\n\
              5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n\
              GET /second HTTP/1.1\r\nhost: api.example\r\n\r\n",
        )
        .await
        .unwrap();
    let mut buffer = Vec::new();
    let first = read_answer(&mut stream, &mut buffer).await;
    let echoed = String::from_utf8(first.body).unwrap();
    assert_eq!(first.status, 200);
    assert!(echoed.starts_with("POST /upload?x=1\n"), "{echoed}");
    assert!(echoed.ends_with("\n\nhello world"), "{echoed}");
    assert!(
        echoed.contains("x-forwarded-for: 192.0.2.1, 127.0.0.1\n"),
        "{echoed}"
    );
    assert!(
        echoed.contains("x-forwarded-host: api.example\n"),
        "{echoed}"
    );
    assert!(echoed.contains("x-forwarded-proto: http\n"), "{echoed}");
    assert!(echoed.contains("host: api.example\n"), "{echoed}");
    assert!(
        !echoed.contains("x-hint") && !echoed.contains("keep-alive"),
        "{echoed}"
    );
    let second = read_answer(&mut stream, &mut buffer).await;
    assert!(
        String::from_utf8(second.body.clone())
            .unwrap()
            .starts_with("GET /second\n")
    );
    assert_eq!(second.field("connection"), None);

    // An absolute-form target reaches the upstream in origin form, its authority as host.
    stream
        .write_all(b"GET http://shop.example:8080/a/b?c HTTP/1.1\r\nhost: ignored\r\n\r\n")
        .await
        .unwrap();
    let third = String::from_utf8(read_answer(&mut stream, &mut buffer).await.body).unwrap();
    assert!(third.starts_with("GET /a/b?c\n"), "{third}");
    assert!(third.contains("host: shop.example:8080\n"), "{third}");
    assert!(!third.contains("ignored"), "{third}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_is_answered_by_the_upstream_before_the_body_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (_proxy, listen, _) = proxy_to_echo(dir.path()).await;
    let mut stream = TcpStream::connect(listen).await.unwrap();
    stream
        .write_all(
            b"PUT /item HTTP/1.1\r\nhost: api\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let mut buffer = Vec::new();
    let interim = read_answer(&mut stream, &mut buffer).await;
    assert_eq!(interim.status, 100);
    stream.write_all(b"hello").await.unwrap();
    let last = read_answer(&mut stream, &mut buffer).await;
    assert_eq!(last.status, 200);
    assert!(String::from_utf8(last.body).unwrap().ends_with("\n\nhello"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_responses_stay_chunked_for_http11_and_are_decoded_for_http10() {
    let dir = tempfile::tempdir().unwrap();
    let (_proxy, listen, _) = proxy_to_echo(dir.path()).await;
    let mut stream = TcpStream::connect(listen).await.unwrap();
    let mut buffer = Vec::new();
    stream
        .write_all(b"GET /chunked HTTP/1.1\r\nhost: api\r\n\r\n")
        .await
        .unwrap();
    let answer = read_answer(&mut stream, &mut buffer).await;
    assert_eq!(answer.field("transfer-encoding"), Some("chunked"));
    assert_eq!(answer.body, b"abc");

    // HTTP/1.0 knows no chunks: the body comes plain and the connection ends it.
    let mut old = TcpStream::connect(listen).await.unwrap();
    old.write_all(b"GET /chunked HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = Vec::new();
    let answer = read_answer(&mut old, &mut buffer).await;
    assert_eq!(answer.field("transfer-encoding"), None);
    assert_eq!(answer.field("connection"), Some("close"));
    assert_eq!(answer.body, b"abc");

    // An HTTP/1.0 client that asks to keep the connection gets it kept.
    let mut kept = TcpStream::connect(listen).await.unwrap();
    let mut buffer = Vec::new();
    for _ in 0..2 {
        kept.write_all(b"GET /x HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
            .await
            .unwrap();
        let answer = read_answer(&mut kept, &mut buffer).await;
        assert_eq!(
            (answer.status, answer.field("connection")),
            (200, Some("keep-alive"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_or_oversized_requests_are_refused_and_reach_no_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let (_proxy, listen, requests) = proxy_to_echo(dir.path()).await;
    let refused: [(&[u8], u16); 4] = [
        (b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabc", 400),
        (b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip\r\n\r\n", 501),
        (b"GET / HTTP/1.1\r\nhost: a\r\nbad header\r\n\r\n", 400),
    ];
    for (raw, status) in refused {
        let mut stream = TcpStream::connect(listen).await.unwrap();
        stream.write_all(raw).await.unwrap();
        let mut buffer = Vec::new();
        let answer = read_answer(&mut stream, &mut buffer).await;
        assert_eq!(answer.status, status, "{}", String::from_utf8_lossy(raw));
        assert_eq!(answer.field("connection"), Some("close"));
        assert!(closed(&mut stream).await);
    }
    // A head larger than the limit.
    let mut stream = TcpStream::connect(listen).await.unwrap();
    let big = format!(
        "GET / HTTP/1.1\r\nhost: a\r\nx-big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let _ = stream.write_all(big.as_bytes()).await;
    let mut buffer = Vec::new();
    assert_eq!(read_answer(&mut stream, &mut buffer).await.status, 431);
    assert_eq!(
        requests.load(Ordering::SeqCst),
        0,
        "a refused request reached the upstream"
    );

    // The same connection shape, well formed, goes through.
    let mut stream = TcpStream::connect(listen).await.unwrap();
    stream
        .write_all(b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\n\r\nabc")
        .await
        .unwrap();
    let mut buffer = Vec::new();
    assert_eq!(read_answer(&mut stream, &mut buffer).await.status, 200);
    assert_eq!(requests.load(Ordering::SeqCst), 1);
}

/// Resident memory of a process, in KiB.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_through_both_ways_without_being_held_in_memory() {
    const SIZE: usize = 64 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let (proxy, listen, _) = proxy_to_echo(dir.path()).await;
    let pid = proxy.proc.child.id();
    let before = resident_kib(pid);

    // Upload 64 MiB with a length, then the same chunked, on one connection.
    let mut stream = TcpStream::connect(listen).await.unwrap();
    let mut buffer = Vec::new();
    let piece = vec![7u8; 1024 * 1024];
    let expected = format!("{SIZE} {}", 7 * SIZE as u64);
    stream
        .write_all(
            format!("POST /count HTTP/1.1\r\nhost: api\r\ncontent-length: {SIZE}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    for _ in 0..SIZE / piece.len() {
        stream.write_all(&piece).await.unwrap();
    }
    let answer = read_answer(&mut stream, &mut buffer).await;
    assert_eq!(String::from_utf8(answer.body).unwrap(), expected);
    stream
        .write_all(b"POST /count HTTP/1.1\r\nhost: api\r\ntransfer-encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..SIZE / piece.len() {
        stream
            .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .await
            .unwrap();
        stream.write_all(&piece).await.unwrap();
        stream.write_all(b"\r\n").await.unwrap();
    }
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    let answer = read_answer(&mut stream, &mut buffer).await;
    assert_eq!(String::from_utf8(answer.body).unwrap(), expected);

    // Download 64 MiB, chunked.
    stream
        .write_all(format!("GET /big/{SIZE} HTTP/1.1\r\nhost: api\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let answer = read_answer(&mut stream, &mut buffer).await;
    assert_eq!(answer.body.len(), SIZE);
    assert!(answer.body.iter().all(|&b| b == b'x'));

    let grown = resident_kib(pid).saturating_sub(before);
    assert!(
        grown < 16 * 1024,
        "the proxy grew by {grown} KiB moving 3 x 64 MiB"
    );
}

/// An upstream that records every request it reads (head and length-framed body) and answers
/// each with `answer`.
async fn scripted_upstream(
    answer: &'static [u8],
) -> (SocketAddr, Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
    let (address, seen, _) = scripted_upstream_with(answer, None).await;
    (address, seen)
}

/// [`scripted_upstream`] that, given `limit`, answers that many requests per connection and
/// closes without a word on the next one; it also counts the connections it accepts.
async fn scripted_upstream_with(
    answer: &'static [u8],
    limit: Option<usize>,
) -> (
    SocketAddr,
    Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    Arc<AtomicUsize>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let accepted = Arc::new(AtomicUsize::new(0));
    let (log, counter) = (seen.clone(), accepted.clone());
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            let log = log.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut answered = 0;
                loop {
                    while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        if limit == Some(answered) {
                            return;
                        }
                        let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        if buffer.len() < end + 4 + length {
                            break;
                        }
                        let request: Vec<u8> = buffer.drain(..end + 4 + length).collect();
                        log.lock().unwrap().push(request);
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                        answered += 1;
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
    (address, seen, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_tokens_cannot_unframe_a_request_and_absolute_targets_keep_their_query() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, seen) =
        scripted_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    let (_proxy, listen) = proxy_to(dir.path(), upstream, serde_json::json!({})).await;
    let mut stream = TcpStream::connect(listen).await.unwrap();
    let mut buffer = Vec::new();
    // `Connection: content-length` must not strip the length while the body still goes out:
    // the upstream would read the body as a second, smuggled request.
    let smuggled = b"GET /smuggled HTTP/1.1\r\nHost: internal\r\n\r\n";
    stream
        .write_all(
            format!(
                "POST /public HTTP/1.1\r\nHost: api\r\nConnection: content-length, host\r\nContent-Length: {}\r\n\r\n",
                smuggled.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    stream.write_all(smuggled).await.unwrap();
    assert_eq!(read_answer(&mut stream, &mut buffer).await.status, 200);
    stream
        .write_all(b"GET http://example.com?next=/admin#frag HTTP/1.1\r\nhost: other\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_answer(&mut stream, &mut buffer).await.status, 200);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "the upstream read {} requests", seen.len());
    let first = String::from_utf8_lossy(&seen[0]).into_owned();
    assert!(first.starts_with("POST /public HTTP/1.1\r\n"), "{first}");
    assert!(
        first.contains(&format!("\r\ncontent-length: {}\r\n", smuggled.len()))
            && first.contains("Host: api\r\n"),
        "{first}"
    );
    assert!(
        first.ends_with("\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: internal\r\n\r\n"),
        "{first}"
    );
    let second = String::from_utf8_lossy(&seen[1]).into_owned();
    assert!(
        second.starts_with("GET /?next=/admin HTTP/1.1\r\n"),
        "{second}"
    );
    assert!(
        second.contains("host: example.com\r\n") && !second.contains("other"),
        "{second}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_but_valid_upstream_heads_reach_the_client_framed_once() {
    let dir = tempfile::tempdir().unwrap();
    // No reason phrase at all.
    let (bare, _) = scripted_upstream(b"HTTP/1.1 204\r\n\r\n").await;
    let (_proxy, listen) = proxy_to(dir.path(), bare, serde_json::json!({})).await;
    let mut stream = TcpStream::connect(listen).await.unwrap();
    let mut buffer = Vec::new();
    for _ in 0..2 {
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_answer(&mut stream, &mut buffer).await.status, 204);
    }
    // Both a length and chunks: the chunks frame it, and the length must not reach the client.
    let dir = tempfile::tempdir().unwrap();
    let (both, _) = scripted_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let (_proxy, listen) = proxy_to(dir.path(), both, serde_json::json!({})).await;
    let mut stream = TcpStream::connect(listen).await.unwrap();
    let mut buffer = Vec::new();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let answer = read_answer(&mut stream, &mut buffer).await;
    assert_eq!(answer.field("content-length"), None);
    assert_eq!(answer.field("transfer-encoding"), Some("chunked"));
    assert_eq!(answer.body, b"hello");
    // A coding before the chunks is kept; a 204 carries no length.
    for (upstream_answer, field, expected) in [
        (
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"[..],
            "transfer-encoding",
            Some("gzip, chunked"),
        ),
        (
            &b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"[..],
            "content-length",
            None,
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let answer_bytes: &'static [u8] = Box::leak(upstream_answer.to_vec().into_boxed_slice());
        let (upstream, _) = scripted_upstream(answer_bytes).await;
        let (_proxy, listen) = proxy_to(dir.path(), upstream, serde_json::json!({})).await;
        let mut stream = TcpStream::connect(listen).await.unwrap();
        let mut buffer = Vec::new();
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
            .await
            .unwrap();
        let answer = read_answer(&mut stream, &mut buffer).await;
        assert_eq!(answer.field(field), expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pooled_connection_is_resent_for_idempotent_requests_and_connect_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // One answer per connection, then a close without a word on the next request: a
    // keep-alive connection whose idle timer fired just as the proxy reused it.
    let (upstream, _, accepted) =
        scripted_upstream_with(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", Some(1)).await;
    let (proxy, listen) = proxy_to(dir.path(), upstream, serde_json::json!({})).await;
    let mut stream = TcpStream::connect(listen).await.unwrap();
    let mut buffer = Vec::new();
    // Every GET after the first finds its pooled connection closed: each is sent again on
    // a new one, and no client sees a 502.
    for _ in 0..5 {
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
            .await
            .unwrap();
        let answer = read_answer(&mut stream, &mut buffer).await;
        assert_eq!((answer.status, answer.body.as_slice()), (200, &b"ok"[..]));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 5);
    let stats = proxy.stats().await;
    let counts = &stats["services"]["api"]["versions"]["1"];
    assert_eq!(
        (
            counts["responses"]["2xx"].as_u64(),
            counts["upstream_errors"].as_u64()
        ),
        (Some(5), Some(0)),
        "{stats:#}"
    );
    // A POST is not sent twice: its client gets the 502.
    stream
        .write_all(b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\n\r\nx")
        .await
        .unwrap();
    assert_eq!(read_answer(&mut stream, &mut buffer).await.status, 502);

    // CONNECT opens no tunnel.
    let mut tunnel = TcpStream::connect(listen).await.unwrap();
    tunnel
        .write_all(b"CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = Vec::new();
    assert_eq!(read_answer(&mut tunnel, &mut buffer).await.status, 405);
}

/// A request body fed piece by piece from a channel, ending when the sender is dropped.
struct Trickle(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for Trickle {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|piece| piece.map(|p| Ok(Frame::data(p))))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_upstream_timeout_does_not_cut_off_a_slow_client_upload_over_http1_or_h2c() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, _) = echo_upstream().await;
    let (proxy, listen) = proxy_to(
        dir.path(),
        upstream,
        serde_json::json!({"upstream_timeout_ms": 300}),
    )
    .await;
    // The client pauses mid-body for four upstream timeouts: its own side, not the upstream's.
    let pause = std::time::Duration::from_millis(1200);

    let mut stream = TcpStream::connect(listen).await.unwrap();
    stream
        .write_all(b"POST /count HTTP/1.1\r\nhost: api\r\ncontent-length: 10\r\n\r\nhello")
        .await
        .unwrap();
    tokio::time::sleep(pause).await;
    stream.write_all(b"world").await.unwrap();
    let mut buffer = Vec::new();
    let answer = read_answer(&mut stream, &mut buffer).await;
    assert_eq!(answer.status, 200);
    let sum: u64 = b"helloworld".iter().map(|&b| u64::from(b)).sum();
    assert_eq!(answer.body, format!("10 {sum}").into_bytes());

    let h2 = h2_client::<Trickle>();
    let (pieces, receiver) = tokio::sync::mpsc::channel(4);
    let request = hyper::Request::post(format!("http://{listen}/count"))
        .body(Trickle(receiver))
        .unwrap();
    let response = tokio::spawn(async move { h2.request(request).await });
    pieces.send(Bytes::from_static(b"hello")).await.unwrap();
    tokio::time::sleep(pause).await;
    pieces.send(Bytes::from_static(b"world")).await.unwrap();
    drop(pieces);
    let response = response.await.unwrap().expect("the proxy answers");
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, format!("10 {sum}").into_bytes());

    let stats = proxy.stats().await;
    assert_eq!(
        stats["services"]["api"]["versions"]["1"]["upstream_errors"], 0,
        "{stats}"
    );
}

/// How an [`uploads_upstream`] treats a request, chosen by its target.
/// `/answer`: reads the whole body (after a `100 Continue` if asked), answers with its length
/// and closes; `/silent`: reads the whole body and never answers; `/unread`: reads only the head.
async fn uploads_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let end = loop {
                    if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        break end;
                    }
                    let mut chunk = [0u8; 4096];
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
                let mut hold = Vec::new();
                if head.starts_with("post /unread") {
                    // Keep the connection, read nothing more.
                    let _ =
                        tokio::time::timeout(std::time::Duration::from_secs(30), stream.readable())
                            .await;
                    tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                    return;
                }
                if head.contains("expect: 100-continue")
                    && stream
                        .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                        .await
                        .is_err()
                {
                    return;
                }
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                let mut body = buffer.len() - end - 4;
                while body < length {
                    let mut chunk = [0u8; 4096];
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => body += n,
                    }
                }
                if head.starts_with("post /silent") {
                    let _ = stream.read_to_end(&mut hold).await;
                    return;
                }
                // Closed after the answer, so that no later request reuses this connection
                // and meets a handler it did not choose.
                let answer = format!("{body}");
                let _ = stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{answer}",
                            answer.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    address
}

/// The upstream timeout is the upstream's side of an exchange: it starts when a slow upload
/// has ended (also when the body went after a `100 Continue`), and it covers an upstream that
/// stops taking the body, which is its failure (504), not the client's (408).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_timeout_runs_from_the_end_of_a_slow_upload_and_covers_an_upstream_not_reading()
 {
    let dir = tempfile::tempdir().unwrap();
    let upstream = uploads_upstream().await;
    let (proxy, listen) = proxy_to(
        dir.path(),
        upstream,
        serde_json::json!({"upstream_timeout_ms": 300}),
    )
    .await;
    let pause = std::time::Duration::from_millis(1200);
    let bound = std::time::Duration::from_secs(15);

    // HTTP/1.1 with Expect: the 100 comes at once, the body in two pieces four timeouts apart,
    // then the answer.
    let mut stream = TcpStream::connect(listen).await.unwrap();
    stream
        .write_all(b"POST /answer HTTP/1.1\r\nhost: api\r\nexpect: 100-continue\r\ncontent-length: 10\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = Vec::new();
    assert_eq!(read_answer(&mut stream, &mut buffer).await.status, 100);
    stream.write_all(b"hello").await.unwrap();
    tokio::time::sleep(pause).await;
    stream.write_all(b"world").await.unwrap();
    let answer = read_answer(&mut stream, &mut buffer).await;
    assert_eq!(
        (answer.status, answer.body.as_slice()),
        (200, b"10".as_slice())
    );

    // A slow upload to an upstream that then says nothing: a 504 one timeout after the upload
    // ended, not after the client's own 60 s. HTTP/1.1, then h2c.
    let mut stream = TcpStream::connect(listen).await.unwrap();
    stream
        .write_all(b"POST /silent HTTP/1.1\r\nhost: api\r\ncontent-length: 10\r\n\r\nhello")
        .await
        .unwrap();
    tokio::time::sleep(pause).await;
    stream.write_all(b"world").await.unwrap();
    let uploaded = std::time::Instant::now();
    let mut buffer = Vec::new();
    let answer = tokio::time::timeout(bound, read_answer(&mut stream, &mut buffer))
        .await
        .expect("an answer");
    assert_eq!(answer.status, 504);
    assert!(uploaded.elapsed() < std::time::Duration::from_secs(5));

    let h2 = h2_client::<Trickle>();
    let (pieces, receiver) = tokio::sync::mpsc::channel(4);
    let request = hyper::Request::post(format!("http://{listen}/silent"))
        .header("content-length", "10")
        .body(Trickle(receiver))
        .unwrap();
    let response = tokio::spawn(async move { h2.request(request).await });
    pieces.send(Bytes::from_static(b"hello")).await.unwrap();
    tokio::time::sleep(pause).await;
    pieces.send(Bytes::from_static(b"world")).await.unwrap();
    drop(pieces);
    let uploaded = std::time::Instant::now();
    let response = tokio::time::timeout(bound, response)
        .await
        .expect("an answer before the client's timeout")
        .unwrap()
        .expect("the proxy answers");
    assert_eq!(response.status(), 504);
    assert!(uploaded.elapsed() < std::time::Duration::from_secs(5));

    // An upstream that takes the head and none of a large body: once the socket buffers are
    // full, the upload stalls on the upstream's side, a 504 and an upstream error.
    let large = Bytes::from(vec![b'x'; 64 << 20]);
    let mut stream = TcpStream::connect(listen).await.unwrap();
    let head = format!(
        "POST /unread HTTP/1.1\r\nhost: api\r\ncontent-length: {}\r\n\r\n",
        large.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut read_half, mut write_half) = stream.into_split();
    let body = large.clone();
    // The write half stays open until the end: a client's half-close is taken as leaving.
    let upload = tokio::spawn(async move {
        let _ = write_half.write_all(&body).await;
        std::future::pending::<()>().await;
        drop(write_half);
    });
    let mut buffer = Vec::new();
    let answer = tokio::time::timeout(bound, async {
        loop {
            let mut chunk = [0u8; 4096];
            let n = read_half.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed without an answer");
            buffer.extend_from_slice(&chunk[..n]);
            if buffer.windows(4).any(|w| w == b"\r\n\r\n") {
                break String::from_utf8_lossy(&buffer).into_owned();
            }
        }
    })
    .await
    .expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 504 "), "{answer}");
    upload.abort();

    let h2 = h2_client::<Full<Bytes>>();
    let request = hyper::Request::post(format!("http://{listen}/unread"))
        .body(Full::new(large))
        .unwrap();
    let response = tokio::time::timeout(bound, h2.request(request))
        .await
        .expect("an answer before the client's timeout")
        .expect("the proxy answers");
    assert_eq!(response.status(), 504);

    let stats = proxy.stats().await;
    let version = &stats["services"]["api"]["versions"]["1"];
    assert_eq!(version["responses"]["4xx"], 0, "{stats}");
    assert_eq!(version["upstream_errors"], 4, "{stats}");
}

/// The service's client timeout bounds the client's side: an upload that stalls gets a 408
/// (HTTP/1.1 and h2c), a response the client leaves unread ends the connection; neither is
/// the upstream's failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stalling_its_upload_gets_408_and_one_not_reading_is_let_go_at_the_client_timeout()
{
    let dir = tempfile::tempdir().unwrap();
    let (upstream, _) = echo_upstream().await;
    // A shorter upstream timeout too: a client's stall is still the client's.
    let (proxy, listen) = proxy_to(
        dir.path(),
        upstream,
        serde_json::json!({"client_timeout_ms": 500, "upstream_timeout_ms": 300}),
    )
    .await;
    let bound = std::time::Duration::from_secs(10);

    let mut stream = TcpStream::connect(listen).await.unwrap();
    stream
        .write_all(b"POST /count HTTP/1.1\r\nhost: api\r\ncontent-length: 10\r\n\r\nhello")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buffer = Vec::new();
    let answer = tokio::time::timeout(bound, read_answer(&mut stream, &mut buffer))
        .await
        .expect("an answer");
    assert_eq!(answer.status, 408);
    assert!(started.elapsed() >= std::time::Duration::from_millis(450));
    assert_eq!(answer.field("connection"), Some("close"));

    let h2 = h2_client::<Trickle>();
    let (pieces, receiver) = tokio::sync::mpsc::channel(4);
    let request = hyper::Request::post(format!("http://{listen}/count"))
        .body(Trickle(receiver))
        .unwrap();
    let response = tokio::spawn(async move { h2.request(request).await });
    pieces.send(Bytes::from_static(b"hello")).await.unwrap();
    let started = std::time::Instant::now();
    let response = tokio::time::timeout(bound, response)
        .await
        .expect("an answer while the upload is still open")
        .unwrap()
        .expect("the proxy answers");
    assert_eq!(response.status(), 408);
    assert!(started.elapsed() >= std::time::Duration::from_millis(450));
    drop(pieces);

    // 32 MiB asked for and not read: once the socket buffers are full the proxy's write waits,
    // and half a second later the connection is closed short of the body.
    let size = 32 << 20;
    let mut stream = TcpStream::connect(listen).await.unwrap();
    stream
        .write_all(format!("GET /big/{size} HTTP/1.1\r\nhost: api\r\n\r\n").as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    let mut received = 0usize;
    let ended = tokio::time::timeout(bound, async {
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received += n,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection stays open");
    assert!(received < size, "all {received} bytes came");

    let stats = proxy.stats().await;
    let version = &stats["services"]["api"]["versions"]["1"];
    assert_eq!(version["responses"]["4xx"], 2, "{stats}");
    assert_eq!(version["upstream_errors"], 0, "{stats}");
}
