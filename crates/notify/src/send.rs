//! Sending one body to one receiver once, and the verdict on a failure: retry (429, 408, 5xx,
//! no connection, no answer in time) or give up (any other 4xx, a bad URL). Bounded by a
//! timeout for the whole exchange, 10 s by default.
//!
//! The receiver's URL and routing key are secrets (a Slack webhook URL *is* its credential):
//! no error built here holds them. What a receiver answered is kept in errors as a short
//! detail, because "invalid_payload" or PagerDuty's list of invalid fields is what an operator
//! needs, but only after the URL, its path and the routing key are cut out of it.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::pagerduty::change_url;
use crate::{Format, Receiver};

/// How long one request may take, connection, answer and body together.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// At most this much of a receiver's answer is read, and less kept in an error.
const ANSWER_READ_MAX: usize = 64 * 1024;
const DETAIL_MAX: usize = 200;

/// An HTTP client for receivers: HTTPS with Mozilla's roots (rustls, ring) and plain HTTP to
/// loopback only. Cheap to clone; clones share one connection pool.
#[derive(Clone)]
pub struct Client {
    inner: HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    /// A client with the [`REQUEST_TIMEOUT`].
    pub fn new() -> Client {
        Client::with_timeout(REQUEST_TIMEOUT)
    }

    /// A client whose requests each give up after `timeout`.
    // rustls 0.23.48 deprecates ring's provider for lacking post-quantum key exchange; ring is
    // the workspace's provider, keeping the build free of cmake and aws-lc (as wharf-server).
    #[allow(deprecated)]
    pub fn with_timeout(timeout: Duration) -> Client {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        // The provider is named rather than taken from the process default, so another crate
        // enabling a second provider cannot make this panic.
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls' default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Client {
            inner: HyperClient::builder(TokioExecutor::new()).build(connector),
            timeout,
        }
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// Why one send failed. [`SendError::is_retryable`] says whether trying again can help.
/// Neither `Display` nor `Debug` contains the receiver's URL or routing key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The URL does not parse as an absolute http(s) URL.
    #[error("receiver {receiver}: its URL is not an absolute http or https URL")]
    BadUrl { receiver: String },
    /// Plain http to anything but loopback would carry the secret URL and the page in clear.
    #[error("receiver {receiver}: plain http is only allowed to a loopback address; use https")]
    Insecure { receiver: String },
    /// A PagerDuty receiver without a routing key, and a body without one.
    #[error("receiver {receiver}: a pagerduty receiver needs a routing key")]
    NoRoutingKey { receiver: String },
    /// The receiver refused the request for good (a 4xx but 408 and 429, or a redirect).
    #[error("receiver {receiver}: answered {status}, not retried{}", detail_note(.detail))]
    Rejected {
        receiver: String,
        status: u16,
        detail: String,
    },
    /// The receiver is throttling (429) or failing (5xx, 408): try again, after `retry_after`
    /// if it said so.
    #[error("receiver {receiver}: answered {status}{}{}", retry_note(.retry_after), detail_note(.detail))]
    Unavailable {
        receiver: String,
        status: u16,
        retry_after: Option<Duration>,
        detail: String,
    },
    /// No complete answer within the timeout.
    #[error("receiver {receiver}: no answer within {} ms", .timeout.as_millis())]
    Timeout { receiver: String, timeout: Duration },
    /// No connection (refused, name not found, TLS failed) or the connection broke.
    #[error("receiver {receiver}: could not reach it: {reason}")]
    Unreachable { receiver: String, reason: String },
}

fn detail_note(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

fn retry_note(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(" (retry after {} s)", d.as_secs()),
        None => String::new(),
    }
}

impl SendError {
    /// Whether sending the same body again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SendError::Unavailable { .. }
                | SendError::Timeout { .. }
                | SendError::Unreachable { .. }
        )
    }

    /// How long the receiver asked to wait (`Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SendError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status the receiver answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            SendError::Rejected { status, .. } | SendError::Unavailable { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }
}

impl Receiver {
    /// What [`send`] would refuse before sending anything: a URL that is not absolute
    /// http(s), plain http to anything but loopback, a PagerDuty receiver without a routing
    /// key. For the control plane to report a bad receiver when it resolves the secrets,
    /// rather than at the first page.
    pub fn check(&self) -> Result<(), SendError> {
        let receiver = || self.name.clone();
        checked_uri(&self.url).map_err(|bad| match bad {
            UrlProblem::Invalid => SendError::BadUrl {
                receiver: receiver(),
            },
            UrlProblem::Insecure => SendError::Insecure {
                receiver: receiver(),
            },
        })?;
        if self.format == Format::PagerDuty && self.routing_key.is_none() {
            return Err(SendError::NoRoutingKey {
                receiver: receiver(),
            });
        }
        Ok(())
    }
}

/// Which endpoint of a receiver a body goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// Alert events (the receiver's URL).
    Events,
    /// Change events (PagerDuty: [`change_url`] of the receiver's URL; others: its URL).
    Changes,
}

/// Sends one notice body (from [`crate::body`]) once: `Ok` on a 2xx answer, or an error that
/// says whether to retry. A PagerDuty body without `routing_key` gets the receiver's.
pub async fn send(
    client: &Client,
    receiver: &Receiver,
    body: &serde_json::Value,
) -> Result<(), SendError> {
    send_to(client, receiver, Endpoint::Events, body).await
}

/// Sends one change body (from [`crate::change_body`]) once, like [`send`]; PagerDuty's goes to
/// its change-event URL.
pub async fn send_change(
    client: &Client,
    receiver: &Receiver,
    body: &serde_json::Value,
) -> Result<(), SendError> {
    send_to(client, receiver, Endpoint::Changes, body).await
}

pub(crate) async fn send_to(
    client: &Client,
    receiver: &Receiver,
    endpoint: Endpoint,
    body: &serde_json::Value,
) -> Result<(), SendError> {
    let name = || receiver.name.clone();
    let url = match (receiver.format, endpoint) {
        (Format::PagerDuty, Endpoint::Changes) => change_url(&receiver.url),
        _ => receiver.url.clone(),
    };
    let uri = checked_uri(&url).map_err(|bad| match bad {
        UrlProblem::Invalid => SendError::BadUrl { receiver: name() },
        UrlProblem::Insecure => SendError::Insecure { receiver: name() },
    })?;
    let bytes = serialize(receiver, body)?;
    let request = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::USER_AGENT,
            concat!("wharf/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(bytes))
        .map_err(|_| SendError::BadUrl { receiver: name() })?;
    let exchange = async {
        let response = client
            .inner
            .request(request)
            .await
            .map_err(|e| SendError::Unreachable {
                receiver: name(),
                reason: redact(&error_chain(&e), receiver),
            })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        // The answer is read (bounded) so the connection can be reused and its words reported.
        let answer = Limited::new(response.into_body(), ANSWER_READ_MAX)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Ok::<_, SendError>((status, retry_after, answer))
    };
    let (status, retry_after, answer) = tokio::time::timeout(client.timeout, exchange)
        .await
        .map_err(|_| SendError::Timeout {
            receiver: name(),
            timeout: client.timeout,
        })??;
    verdict(receiver, status, retry_after, &answer)
}

/// The body's bytes, with the routing key added for PagerDuty when the body has none.
fn serialize(receiver: &Receiver, body: &serde_json::Value) -> Result<Bytes, SendError> {
    let needs_key = receiver.format == Format::PagerDuty
        && body
            .as_object()
            .is_some_and(|o| !o.contains_key("routing_key"));
    let bytes = if needs_key {
        let key = receiver
            .routing_key
            .as_deref()
            .ok_or_else(|| SendError::NoRoutingKey {
                receiver: receiver.name.clone(),
            })?;
        let mut body = body.clone();
        if let Some(object) = body.as_object_mut() {
            object.insert("routing_key".into(), key.into());
        }
        serde_json::to_vec(&body)
    } else {
        serde_json::to_vec(body)
    };
    // Serializing a `Value` cannot fail (its map keys are strings).
    Ok(Bytes::from(bytes.unwrap_or_default()))
}

fn verdict(
    receiver: &Receiver,
    status: StatusCode,
    retry_after: Option<Duration>,
    answer: &[u8],
) -> Result<(), SendError> {
    if status.is_success() {
        return Ok(());
    }
    let detail = redact(&String::from_utf8_lossy(answer), receiver);
    let receiver = receiver.name.clone();
    let code = status.as_u16();
    if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
    {
        Err(SendError::Unavailable {
            receiver,
            status: code,
            retry_after,
            detail,
        })
    } else {
        Err(SendError::Rejected {
            receiver,
            status: code,
            detail,
        })
    }
}

enum UrlProblem {
    Invalid,
    Insecure,
}

/// The URL as a `Uri` if it is absolute http(s), and plain http only to loopback.
fn checked_uri(url: &str) -> Result<Uri, UrlProblem> {
    let uri: Uri = url.parse().map_err(|_| UrlProblem::Invalid)?;
    let host = uri.host().ok_or(UrlProblem::Invalid)?;
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if is_loopback(host) => Ok(uri),
        Some("http") => Err(UrlProblem::Insecure),
        _ => Err(UrlProblem::Invalid),
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `Retry-After` as delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    let wait = at.duration_since(jiff::Timestamp::now());
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

/// An error and its sources, joined, the way an operator reads them.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// `text` without the receiver's secrets (URL, its path and query, routing key), on one line,
/// cut to a short detail.
fn redact(text: &str, receiver: &Receiver) -> String {
    let mut out = text.to_owned();
    let mut secrets: Vec<&str> = vec![receiver.url.as_str()];
    if let Some(key) = receiver.routing_key.as_deref() {
        secrets.push(key);
    }
    // The path (and query) of a webhook URL is its credential on its own, e.g. Slack's.
    if let Some(path) = url_path(&receiver.url) {
        secrets.push(path);
    }
    for secret in secrets.into_iter().filter(|s| s.len() > 1) {
        out = out.replace(secret, "[redacted]");
    }
    let one_line: String = out
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    crate::text::truncate(one_line.trim(), DETAIL_MAX)
}

fn url_path(url: &str) -> Option<&str> {
    let after_scheme = url.find("://").map(|i| i + 3)?;
    let path = url[after_scheme..]
        .find('/')
        .map(|j| &url[after_scheme + j..])?;
    (path.len() > 1).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiver() -> Receiver {
        Receiver {
            name: "oncall".into(),
            format: Format::Slack,
            url: "https://hooks.example.com/services/T000/B000/XXXX".into(),
            routing_key: Some("R0UT1NGKEY".into()),
        }
    }

    #[test]
    fn redact_removes_url_path_and_key() {
        let r = receiver();
        let text = "bad https://hooks.example.com/services/T000/B000/XXXX and /services/T000/B000/XXXX with R0UT1NGKEY\n";
        let out = redact(text, &r);
        assert_eq!(out, "bad [redacted] and [redacted] with [redacted]");
    }

    #[test]
    fn check_refuses_what_send_would() {
        let ok = |format, url: &str, key: Option<&str>| {
            Receiver {
                name: "r".into(),
                format,
                url: url.into(),
                routing_key: key.map(str::to_owned),
            }
            .check()
        };
        assert_eq!(
            ok(Format::Slack, "https://hooks.example.com/x", None),
            Ok(())
        );
        assert_eq!(
            ok(
                Format::PagerDuty,
                "https://events.pagerduty.com/v2/enqueue",
                Some("k")
            ),
            Ok(())
        );
        assert!(matches!(
            ok(
                Format::PagerDuty,
                "https://events.pagerduty.com/v2/enqueue",
                None
            ),
            Err(SendError::NoRoutingKey { .. })
        ));
        assert!(matches!(
            ok(Format::Generic, "http://10.0.0.1/hook", None),
            Err(SendError::Insecure { .. })
        ));
        assert!(matches!(
            ok(Format::Generic, "hook", None),
            Err(SendError::BadUrl { .. })
        ));
    }

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(checked_uri("http://127.0.0.1:9/x").is_ok());
        assert!(checked_uri("http://[::1]:9/x").is_ok());
        assert!(checked_uri("http://localhost:9/x").is_ok());
        assert!(checked_uri("https://events.pagerduty.com/v2/enqueue").is_ok());
        assert!(matches!(
            checked_uri("http://hooks.example.com/x"),
            Err(UrlProblem::Insecure)
        ));
        assert!(matches!(checked_uri("ftp://x/y"), Err(UrlProblem::Invalid)));
        assert!(matches!(checked_uri("not a url"), Err(UrlProblem::Invalid)));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
