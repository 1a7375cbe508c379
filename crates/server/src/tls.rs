//! TLS for the API's TCP listener: the server's certificate (given PEM files, or a self-signed
//! one kept in the state directory) and a listener that hands axum only finished handshakes.
//!
//! A bearer token must never cross a network in clear, so the TCP API has no plain mode.
//! Handshakes run in each connection's own task, bounded in time (and connections in number,
//! `tcp.rs`), so a slow or silent client cannot hold up the accept loop; one that fails (a
//! plain-HTTP client, a bad alert) is closed with a debug log.

use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Where the self-signed pair lives, under the state directory.
pub const TLS_DIR: &str = "tls";
pub const SELF_SIGNED_CERT: &str = "api-cert.pem";
pub const SELF_SIGNED_KEY: &str = "api-key.pem";

/// What went wrong with the API's certificate, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("{}: no PEM certificate in it ({reason})", path.display())]
    Certificate { path: PathBuf, reason: String },
    #[error(
        "{}: no usable private key in it (PEM PKCS#8, PKCS#1 or SEC1 expected; {reason})",
        path.display()
    )]
    Key { path: PathBuf, reason: String },
    #[error("{} and {} do not make a usable pair: {reason}", cert.display(), key.display())]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Where the API's certificate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertOrigin {
    /// `--tls-cert` / `--tls-key`.
    Given,
    /// The state directory's self-signed pair, made by this start.
    Created,
    /// The state directory's self-signed pair, made by an earlier start.
    Reused,
}

/// The API's TLS identity: a server configuration and what a client needs to pin it.
#[derive(Clone)]
pub struct ApiTls {
    config: Arc<ServerConfig>,
    leaf: CertificateDer<'static>,
    fingerprint: String,
    certificate: PathBuf,
    origin: CertOrigin,
}

impl std::fmt::Debug for ApiTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiTls")
            .field("fingerprint", &self.fingerprint)
            .field("certificate", &self.certificate)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl ApiTls {
    /// The certificate chain in `cert` (leaf first) and the private key in `key`, both PEM.
    pub fn from_files(cert: &Path, key: &Path) -> Result<ApiTls, TlsError> {
        let chain = read_chain(cert)?;
        let key_der = read_key(key)?;
        Self::build(chain, key_der, cert, key, CertOrigin::Given)
    }

    /// The state directory's self-signed pair (`tls/api-cert.pem`, `tls/api-key.pem`), made on
    /// first use, and made again when the kept one is unreadable or does not name `listen`.
    pub fn self_signed(state_dir: &Path, listen: IpAddr) -> Result<ApiTls, TlsError> {
        let dir = state_dir.join(TLS_DIR);
        let (cert, key) = (dir.join(SELF_SIGNED_CERT), dir.join(SELF_SIGNED_KEY));
        if cert.exists() || key.exists() {
            match Self::from_files(&cert, &key) {
                Ok(tls) if tls.names(listen) => {
                    return Ok(ApiTls {
                        origin: CertOrigin::Reused,
                        ..tls
                    });
                }
                Ok(_) => {
                    tracing::warn!(%listen, "the kept API certificate does not name the listen address; making a new one")
                }
                Err(error) => {
                    tracing::warn!(%error, "the kept API certificate is unusable; making a new one")
                }
            }
        }
        generate(&dir, &cert, &key, listen)?;
        let tls = Self::from_files(&cert, &key)?;
        Ok(ApiTls {
            origin: CertOrigin::Created,
            ..tls
        })
    }

    fn build(
        chain: Vec<CertificateDer<'static>>,
        key_der: PrivateKeyDer<'static>,
        cert: &Path,
        key: &Path,
        origin: CertOrigin,
    ) -> Result<ApiTls, TlsError> {
        let leaf = chain[0].clone();
        let fingerprint = fingerprint(&leaf);
        let pair_error = |error: rustls::Error| TlsError::Pair {
            cert: cert.to_owned(),
            key: key.to_owned(),
            reason: error.to_string(),
        };
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(pair_error)?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(pair_error)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ApiTls {
            config: Arc::new(config),
            leaf,
            fingerprint,
            certificate: cert.to_owned(),
            origin,
        })
    }

    /// The leaf certificate's SHA-256 fingerprint, `sha256:AB:CD:…` (openssl's
    /// `x509 -fingerprint -sha256` digits).
    /// The rustls server configuration to accept with.
    pub(crate) fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The certificate file a client can trust or pin.
    pub fn certificate(&self) -> &Path {
        &self.certificate
    }

    pub fn origin(&self) -> CertOrigin {
        self.origin
    }

    /// Whether the served certificate is valid for `ip` (an unspecified address names no
    /// address in particular, so any certificate does).
    fn names(&self, ip: IpAddr) -> bool {
        if ip.is_unspecified() {
            return true;
        }
        webpki::EndEntityCert::try_from(&self.leaf).is_ok_and(|cert| {
            cert.verify_is_valid_for_subject_name(&ServerName::IpAddress(ip.into()))
                .is_ok()
        })
    }
}

/// ring, installed as the process's default provider when none is (so any other rustls user
/// in the process agrees), and used explicitly for the API's configuration.
// rustls 0.23.48 deprecates ring's provider for lacking post-quantum key exchange; ring is
// chosen to keep the build free of cmake and aws-lc (ARCHITECTURE.md, dependencies).
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    let ring = rustls::crypto::ring::default_provider();
    // An error only means a provider is installed already; ours is passed explicitly anyway.
    let _ = CryptoProvider::install_default(ring.clone());
    Arc::new(ring)
}

/// `sha256:` and the digest's bytes in upper-case hex, colon-separated.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = Sha256::digest(cert.as_ref());
    let mut text = String::from("sha256");
    for byte in digest {
        let _ = write!(text, ":{byte:02X}");
    }
    text
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |reason: String| TlsError::Certificate {
        path: path.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&read(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if chain.is_empty() {
        return Err(bad("no CERTIFICATE section found".to_owned()));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(&read(path)?).map_err(|e| TlsError::Key {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Makes a self-signed pair naming the local names and `listen`, the key written 0600 before
/// the certificate (a pair half-written by a crash is replaced at the next start).
fn generate(dir: &Path, cert: &Path, key: &Path, listen: IpAddr) -> Result<(), TlsError> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if !listen.is_unspecified() && !names.contains(&listen.to_string()) {
        names.push(listen.to_string());
    }
    let made = rcgen::generate_simple_self_signed(names)?;
    let write_error = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(write_error(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(write_error(dir))?;
    write_file(key, made.key_pair.serialize_pem().as_bytes(), 0o600).map_err(write_error(key))?;
    write_file(cert, made.cert.pem().as_bytes(), 0o644).map_err(write_error(cert))?;
    Ok(())
}

/// Writes `bytes` to a temporary file with `mode` and renames it over `path`.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write as _;
    let temporary = path.with_extension("pem.tmp");
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

/// A client's TLS handshake, bounded by `within`; `None` (logged at debug) when it fails or
/// takes too long, and the connection is closed.
pub(crate) async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    within: Duration,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(within, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "API TLS handshake failed; connection closed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, timeout = ?within, "API TLS handshake timed out; connection closed");
            None
        }
    }
}

/// As axum does for its own listeners: a connection that died before accept is nothing; any
/// other error (out of file descriptors) is logged and retried after a pause.
pub(crate) async fn accept_failed(error: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "API accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_fingerprint_is_openssls_notation() {
        let cert = CertificateDer::from(b"abc".to_vec());
        assert_eq!(
            fingerprint(&cert),
            "sha256:BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }

    #[test]
    fn the_self_signed_pair_is_kept_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = ApiTls::self_signed(dir.path(), ip("127.0.0.1")).unwrap();
        assert_eq!(first.origin(), CertOrigin::Created);
        let key = dir.path().join(TLS_DIR).join(SELF_SIGNED_KEY);
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = ApiTls::self_signed(dir.path(), ip("::1")).unwrap();
        assert_eq!(again.origin(), CertOrigin::Reused);
        assert_eq!(again.fingerprint(), first.fingerprint());
        let any = ApiTls::self_signed(dir.path(), ip("0.0.0.0")).unwrap();
        assert_eq!(any.fingerprint(), first.fingerprint());
    }

    #[test]
    fn a_kept_certificate_that_does_not_name_the_listen_address_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let first = ApiTls::self_signed(dir.path(), ip("127.0.0.1")).unwrap();
        let moved = ApiTls::self_signed(dir.path(), ip("10.1.2.3")).unwrap();
        assert_eq!(moved.origin(), CertOrigin::Created);
        assert_ne!(moved.fingerprint(), first.fingerprint());
        assert!(moved.names(ip("10.1.2.3")) && moved.names(ip("127.0.0.1")));
    }

    #[test]
    fn a_half_written_pair_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        ApiTls::self_signed(dir.path(), ip("127.0.0.1")).unwrap();
        std::fs::remove_file(dir.path().join(TLS_DIR).join(SELF_SIGNED_KEY)).unwrap();
        let made = ApiTls::self_signed(dir.path(), ip("127.0.0.1")).unwrap();
        assert_eq!(made.origin(), CertOrigin::Created);
    }

    #[test]
    fn bad_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let tls = ApiTls::self_signed(dir.path(), ip("127.0.0.1")).unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "hello\n").unwrap();
        let cert_error = ApiTls::from_files(&garbage, &garbage).unwrap_err();
        assert!(
            matches!(cert_error, TlsError::Certificate { .. }),
            "{cert_error}"
        );
        assert!(cert_error.to_string().contains("garbage.pem"));
        let key_error = ApiTls::from_files(tls.certificate(), &garbage).unwrap_err();
        assert!(matches!(key_error, TlsError::Key { .. }), "{key_error}");
        assert!(key_error.to_string().contains("garbage.pem"));
        let other = tempfile::tempdir().unwrap();
        let stranger = ApiTls::self_signed(other.path(), ip("127.0.0.1")).unwrap();
        let other_key = other.path().join(TLS_DIR).join(SELF_SIGNED_KEY);
        let pair_error = ApiTls::from_files(tls.certificate(), &other_key).unwrap_err();
        assert!(matches!(pair_error, TlsError::Pair { .. }), "{pair_error}");
        assert_ne!(stranger.fingerprint(), tls.fingerprint());
    }
}
