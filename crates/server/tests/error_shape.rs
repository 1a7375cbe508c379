//! Every error the API answers over a real socket — axum's own refusals included — is the
//! documented `{"error": {"code", "message"}}` (issue 20: 404/405/413/415/422 were plain text),
//! and on TCP the bearer token is checked before anything of the body is read.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wharf_api::{ApiErrorBody, ErrorCode};
use wharf_control::{Config, ControlPlane, Journal, StackPlan};
use wharf_runtime::{ProcessDriver, RestartLimits};

const TOKEN: &str = "a-token-of-enough-length";

/// One HTTP/1.1 exchange on a fresh connection (`Connection: close`): status, headers, body.
async fn exchange<S>(mut stream: S, head: &str, body: &[u8]) -> (u16, String, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let request = format!(
        "{head}\r\nHost: wharf\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // A server that refuses early may close before the whole body is written.
    let _ = stream.write_all(body).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = headers
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, headers.to_lowercase(), body.to_owned())
}

fn assert_error_shape(what: &str, status: u16, headers: &str, body: &str, code: ErrorCode) {
    assert!(
        headers.contains("content-type: application/json"),
        "{what}: {headers}\n{body}"
    );
    let error: ApiErrorBody =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: {e}: {body:?}"));
    assert_eq!(error.error.code, code, "{what}: {body}");
    assert_eq!(status, code.http_status(), "{what}: {body}");
    assert!(!error.error.message.is_empty(), "{what}");
}

#[tokio::test]
async fn api_errors_over_real_sockets_are_the_documented_json_shape() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join(".wharf");
    std::fs::create_dir_all(&state_dir).unwrap();
    let plan = StackPlan {
        name: "errors".to_owned(),
        services: Vec::new(),
        secrets: vec![("api_key".to_owned(), Default::default())],
        alerts: Vec::new(),
        environment: None,
        smoke: Vec::new(),
        backup_repository: None,
        require: None,
        runbooks: Default::default(),
    };
    let journal = Journal::open(&state_dir, "wharf-control@test".to_owned()).unwrap();
    let config = Config {
        state_dir: state_dir.clone(),
        workdir: dir.path().to_owned(),
        // No service: nothing is ever started through it.
        driver: Arc::new(ProcessDriver::new("/bin/false".into(), Vec::new())),
        stop_grace: Duration::from_secs(1),
        limits: RestartLimits::default(),
        log_max_bytes: 1 << 20,
        log_keep: 1,
        proxy_binary: None,
        log_json: false,
        reload_plan: None,
    };
    let (control, handle) = ControlPlane::new(plan, config, journal);
    let socket = state_dir.join("control.sock");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let shutdown = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let unix = tokio::spawn({
        let (socket, handle, shutdown) =
            (socket.clone(), handle.clone(), shutdown(stopped.clone()));
        async move { wharf_server::serve_unix(&socket, handle, Default::default(), shutdown).await }
    });
    // The TCP listener's router with its token (TLS is tls.rs's and the CLI tests' concern).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tcp = tokio::spawn({
        let app = wharf_server::app(
            handle.clone(),
            wharf_server::Access::tcp(Default::default(), Some(TOKEN.to_owned())),
        );
        let shutdown = shutdown(stopped.clone());
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    });
    let test = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::net::UnixStream::connect(&socket).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the socket never answered"
            );
            tokio::task::yield_now().await;
        }
        let unix_call = |head: &'static str, body: Vec<u8>| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
                exchange(stream, head, &body).await
            }
        };
        let big = vec![b'x'; wharf_server::MAX_BODY_BYTES + 1];
        let cases: Vec<(&str, Vec<u8>, ErrorCode)> = vec![
            ("GET /v1/nope HTTP/1.1", Vec::new(), ErrorCode::NotFound),
            (
                "DELETE /v1/status HTTP/1.1",
                Vec::new(),
                ErrorCode::MethodNotAllowed,
            ),
            (
                "POST /v1/reload HTTP/1.1",
                big.clone(),
                ErrorCode::PayloadTooLarge,
            ),
            (
                "PUT /v1/secrets/api_key HTTP/1.1",
                big,
                ErrorCode::PayloadTooLarge,
            ),
            // Once 422 (serde's detail) or 415 (a missing content type) from axum's `Json`.
            (
                "POST /v1/down HTTP/1.1\r\nContent-Type: text/plain",
                b"{".to_vec(),
                ErrorCode::InvalidRequest,
            ),
            (
                "POST /v1/reload HTTP/1.1",
                br#"{"manifest": "yes"}"#.to_vec(),
                ErrorCode::InvalidRequest,
            ),
            (
                "PUT /v1/secrets/api_key HTTP/1.1\r\nContent-Type: application/json",
                b"[1,2".to_vec(),
                ErrorCode::InvalidRequest,
            ),
        ];
        for (head, body, code) in cases {
            let (status, headers, text) = unix_call(head, body).await;
            assert_error_shape(head, status, &headers, &text, code);
        }

        // TCP: no token, or a wrong one, is 401 before the body is looked at — bad JSON,
        // a body over the limit and an unknown route alike.
        let big = vec![b'x'; wharf_server::MAX_BODY_BYTES + 1];
        for (head, body) in [
            (
                "POST /v1/down HTTP/1.1\r\nContent-Type: application/json",
                b"{not json".to_vec(),
            ),
            (
                "POST /v1/down HTTP/1.1\r\nAuthorization: Bearer wrong-token-of-some-length",
                b"{not json".to_vec(),
            ),
            ("PUT /v1/secrets/api_key HTTP/1.1", big),
            ("GET /v1/nope HTTP/1.1", Vec::new()),
        ] {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (status, headers, text) = exchange(stream, head, &body).await;
            assert_error_shape(head, status, &headers, &text, ErrorCode::Unauthorized);

            assert!(
                !text.contains("line") && !text.contains("column"),
                "{head}: {text}"
            );
        }
        // A refused request whose body is left unread, on a keep-alive connection: the answer
        // says `Connection: close` (hyper closes it), or a client would send its next
        // request on a connection about to close.
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                b"POST /v1/down HTTP/1.1\r\nHost: wharf\r\nContent-Length: 9\r\n\r\n{not json",
            )
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer).to_lowercase();
        assert!(answer.starts_with("http/1.1 401"), "{answer}");
        assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
        // With the token, the same bad JSON is the client's mistake, in the same shape.
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = "POST /v1/down HTTP/1.1\r\nAuthorization: Bearer a-token-of-enough-length";
        let (status, headers, text) = exchange(stream, head, b"{not json").await;
        assert_error_shape(
            "authorized bad JSON",
            status,
            &headers,
            &text,
            ErrorCode::InvalidRequest,
        );
        // The public liveness route needs no token.
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (status, _, _) = exchange(stream, "GET /health HTTP/1.1", b"").await;
        assert_eq!(status, 200);
    };
    let run = control.run(async {
        test.await;
    });
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the test ends");
    let _ = stop.send(true);
    let _ = unix.await;
    let _ = tcp.await;
}
