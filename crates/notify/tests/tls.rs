//! Receivers are reached over TLS that is really checked: a loopback HTTPS server with a
//! self-signed certificate (not in Mozilla's roots) is refused at the handshake, retryably,
//! and the request never reaches it.

use std::sync::Arc;

use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use wharf_notify::{Client, Format, Receiver, SendError, send};

#[allow(deprecated)] // ring's provider, as in wharf-server: no cmake / aws-lc in the build.
fn acceptor() -> TlsAcceptor {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(made.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![made.cert.der().clone()], key)
    .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

#[tokio::test]
async fn https_receiver_with_an_untrusted_certificate_is_refused_at_the_handshake() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = acceptor();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        acceptor.accept(stream).await.map(|_| ())
    });
    let receiver = Receiver {
        name: "oncall".into(),
        format: Format::Generic,
        url: format!("https://localhost:{port}/hook"),
        routing_key: None,
    };
    let error = send(&Client::new(), &receiver, &json!({}))
        .await
        .unwrap_err();
    let SendError::Unreachable { reason, .. } = &error else {
        panic!("unreachable expected: {error:?}");
    };
    assert!(error.is_retryable());
    assert!(reason.contains("certificate"), "{reason}");
    assert!(
        server.await.unwrap().is_err(),
        "the handshake did not complete"
    );
}
