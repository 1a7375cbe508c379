//! The TCP API over TLS, through the real binary: a plain-HTTP client gets no answer and does
//! no harm, the fingerprint printed at start is the kept certificate's, a given certificate is
//! the one served, and a bad key file is refused before anything starts.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::*;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

const TOKEN: &str = "a-token-of-enough-length";
const MANIFEST: &str =
    "name: api\nservices:\n  web:\n    command: [TESTBED, --port, \"${PORT}\"]\n";

fn listen() -> (String, SocketAddr) {
    let listen = format!("127.0.0.1:{}", free_port());
    let addr = listen.parse().unwrap();
    (listen, addr)
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn leaf_der(pem: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(pem).unwrap().to_vec()
}

/// openssl's `x509 -fingerprint -sha256` digits, as wharf prints them.
fn fingerprint(pem: &Path) -> String {
    let digest = Sha256::digest(leaf_der(pem));
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    format!("sha256:{}", hex.join(":"))
}

fn printed_fingerprint(stderr: &str) -> String {
    stderr
        .split_whitespace()
        .find(|word| word.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no fingerprint printed: {stderr}"))
        .to_owned()
}

fn status_ok(cert: &Path, addr: SocketAddr) -> bool {
    let (status, body) = https_request(cert, addr, "GET", "/v1/status", Some(TOKEN), None);
    status == 200 && body.contains("\"stack\":\"api\"")
}

#[test]
fn a_plain_http_request_to_the_tls_port_gets_no_answer_and_the_api_keeps_serving() {
    let stack = Stack::new(MANIFEST);
    let (listen, addr) = listen();
    let up = up_api(stack.path(), &listen, TOKEN, &[]);
    assert!(up.status.success(), "{}", stderr(&up));
    let cert = api_cert(stack.path());
    for _ in 0..3 {
        let mut stream = TcpStream::connect(addr).unwrap();
        // Past the server's 10 s handshake bound: the server must close, not this timeout.
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let request = format!(
            "GET /v1/status HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
        );
        // The server may close as soon as the first bytes fail to parse as TLS, so the write
        // itself can meet a closed connection.
        if let Err(error) = stream.write_all(request.as_bytes()) {
            assert!(
                matches!(
                    error.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ),
                "{error}"
            );
        }
        let mut raw = Vec::new();
        // A TLS alert then EOF, or a reset: either way no HTTP answer.
        match stream.read_to_end(&mut raw) {
            Ok(_) => {}
            Err(error) => assert!(
                !matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "the server kept a plain-HTTP connection open: {error}"
            ),
        }
        assert!(
            !raw.starts_with(b"HTTP/"),
            "{}",
            String::from_utf8_lossy(&raw)
        );
        assert!(!String::from_utf8_lossy(&raw).contains("\"stack\""));
    }
    assert!(status_ok(&cert, addr), "the API still serves over TLS");
}

#[test]
fn the_printed_fingerprint_is_the_kept_certificates_and_a_restart_reuses_it() {
    let stack = Stack::new(MANIFEST);
    let (listen, addr) = listen();
    let up = up_api(stack.path(), &listen, TOKEN, &[]);
    assert!(up.status.success(), "{}", stderr(&up));
    let cert = api_cert(stack.path());
    let printed = printed_fingerprint(&stderr(&up));
    assert_eq!(printed, fingerprint(&cert));
    assert_eq!(printed.len(), "sha256:".len() + 32 * 3 - 1);
    let key = stack.path().join(".wharf/tls/api-key.pem");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the key file is the owner's only");
    assert_eq!(peer_certificate(&cert, addr), leaf_der(&cert));
    assert!(status_ok(&cert, addr));

    let down = stack.wharf(&["down"]);
    assert!(down.status.success(), "{}", stderr(&down));
    // The next `up` must find no control plane (else it only applies the manifest to it).
    eventually("the control plane to exit", Duration::from_secs(30), || {
        stack.control_pid().is_none().then_some(())
    });
    let again = up_api(stack.path(), &listen, TOKEN, &[]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(printed_fingerprint(&stderr(&again)), printed, "reused");
    // The daemon binds after `up -d` has seen the stack settle through the unix socket.
    eventually("the restarted API", Duration::from_secs(20), || {
        (peer_certificate(&cert, addr) == leaf_der(&cert)).then_some(())
    });
}

#[test]
fn a_given_certificate_is_the_one_served() {
    let stack = Stack::new(MANIFEST);
    let (listen, addr) = listen();
    let made =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "api.example".to_owned()])
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("given.pem"), dir.path().join("given.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    let up = up_api(
        stack.path(),
        &listen,
        TOKEN,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(up.status.success(), "{}", stderr(&up));
    assert_eq!(printed_fingerprint(&stderr(&up)), fingerprint(&cert));
    assert_eq!(peer_certificate(&cert, addr), made.cert.der().to_vec());
    assert!(status_ok(&cert, addr));
    assert!(
        !api_cert(stack.path()).exists(),
        "no self-signed certificate is made when one is given"
    );
}

#[test]
fn a_bad_tls_key_file_is_refused_with_exit_2_naming_it_and_nothing_starts() {
    let stack = Stack::new(MANIFEST);
    let (listen, _) = listen();
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("given.pem"), dir.path().join("broken.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nnot base64 at all\n").unwrap();
    let missing = dir.path().join("missing.key");
    for key in [&key, &missing] {
        let up = up_api(
            stack.path(),
            &listen,
            TOKEN,
            &[
                "--tls-cert",
                cert.to_str().unwrap(),
                "--tls-key",
                key.to_str().unwrap(),
            ],
        );
        assert_eq!(up.status.code(), Some(2), "{}", stderr(&up));
        assert!(
            stderr(&up).contains(&key.display().to_string()),
            "{}",
            stderr(&up)
        );
        assert!(
            !stack.path().join(".wharf").exists(),
            "nothing created or started"
        );
    }
    let half = up_api(
        stack.path(),
        &listen,
        TOKEN,
        &["--tls-cert", cert.to_str().unwrap()],
    );
    assert_eq!(half.status.code(), Some(2), "both or neither");
    assert!(stderr(&half).contains("--tls-key"), "{}", stderr(&half));
}
