//! Forwarding one request: pick a version and an instance, rewrite headers, stream the bodies
//! both ways, retry on another instance only when the connection was refused before any byte
//! was sent, and answer 502/503/504 when no upstream can.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::{Request, Response, StatusCode, Uri, Version};

use crate::activity::Activity;
use crate::routes::{InFlight, Instance, ServiceRt, VersionRt};
use crate::server::Inner;
use crate::upstream::{self, Lease, SendError};

/// At most this many instances are tried for one request.
const MAX_ATTEMPTS: usize = 3;

/// The shortest interval at which a request's timer looks again at its upload, so that a
/// service with a tiny upstream timeout does not wake it every millisecond of a long upload.
const RECHECK_FLOOR: Duration = Duration::from_millis(10);

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// One client connection: what every request on it shares.
#[derive(Debug)]
pub(crate) struct Connection {
    pub inner: Arc<Inner>,
    /// The port it arrived on.
    pub listen: SocketAddr,
    /// The client's IP address as a header value, made once per connection.
    peer_ip: HeaderValue,
}

impl Connection {
    pub(crate) fn new(inner: Arc<Inner>, listen: SocketAddr, peer: SocketAddr) -> Connection {
        let peer_ip =
            HeaderValue::try_from(peer.ip().to_string()).expect("an IP address is a header value");
        Connection {
            inner,
            listen,
            peer_ip,
        }
    }
}

/// Handle one request that arrived on `connection`.
pub(crate) async fn handle(
    connection: Arc<Connection>,
    request: Request<Incoming>,
) -> Result<Response<DownBody>, Infallible> {
    let inner = &connection.inner;
    let service = inner
        .routes
        .load()
        .by_listen
        .get(&connection.listen)
        .cloned();
    let Some(service) = service else {
        return Ok(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no route for this port\n",
        ));
    };
    let Some(version) = service.choose(request.headers()) else {
        return Ok(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no instances for this service\n",
        ));
    };
    version.stats.request();
    let started = Instant::now();
    let response = forward(inner, &service, version, &connection.peer_ip, request).await;
    version
        .stats
        .response(response.status().as_u16(), started.elapsed());
    Ok(response)
}

async fn forward(
    inner: &Inner,
    service: &ServiceRt,
    version: &VersionRt,
    peer_ip: &HeaderValue,
    request: Request<Incoming>,
) -> Response<DownBody> {
    let (mut parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    rewrite_request_headers(&mut parts.headers, &parts.uri, peer_ip);
    let body = if body.is_end_stream() {
        UpBody::Empty
    } else {
        UpBody::Shared(Arc::new(SharedBody {
            slot: Mutex::new(Some(body)),
            progress: Activity::new(),
            wanting: AtomicBool::new(false),
        }))
    };
    let attempts = version.instances.len().min(MAX_ATTEMPTS);
    let mut tried: [SocketAddr; MAX_ATTEMPTS] = [([0, 0, 0, 0], 0).into(); MAX_ATTEMPTS];
    let mut outcome = Outcome::NoInstance;
    for attempt in 0..attempts {
        let Some(instance) = version.pick(&inner.clock, &tried[..attempt]) else {
            break;
        };
        tried[attempt] = instance.address;
        if attempt > 0 {
            version.stats.retry();
        }
        let last = attempt + 1 == attempts;
        // Keep the headers for a retry only while a retry is still possible.
        let headers = if last {
            std::mem::take(&mut parts.headers)
        } else {
            parts.headers.clone()
        };
        let mut upstream = Request::new(body.share());
        *upstream.method_mut() = parts.method.clone();
        // Origin form: the connection already goes to the instance.
        *upstream.uri_mut() = Uri::from(path.clone());
        *upstream.version_mut() = Version::HTTP_11;
        *upstream.headers_mut() = headers;
        if !upstream.headers().contains_key(header::HOST) {
            // An HTTP/1.0 request may name no host; HTTP/1.1 upstreams need one.
            upstream
                .headers_mut()
                .insert(header::HOST, instance.host.clone());
        }
        outcome = send(inner, service, version, instance, upstream).await;
        match outcome {
            Outcome::Refused if body.retryable() => continue,
            _ => break,
        }
    }
    match outcome {
        Outcome::Answered(response) => response,
        Outcome::NoInstance => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no instances for this service\n",
        ),
        Outcome::Refused | Outcome::Failed => {
            error(StatusCode::BAD_GATEWAY, "no upstream answered\n")
        }
        Outcome::TimedOut => error(
            StatusCode::GATEWAY_TIMEOUT,
            "the upstream did not answer in time\n",
        ),
        Outcome::ClientTimedOut => error(
            StatusCode::REQUEST_TIMEOUT,
            "request body not received in time\n",
        ),
    }
}

#[expect(
    clippy::large_enum_variant,
    reason = "lives on the stack for one request; boxing would allocate on every request"
)]
enum Outcome {
    Answered(Response<DownBody>),
    NoInstance,
    Refused,
    Failed,
    TimedOut,
    /// The client's upload stalled.
    ClientTimedOut,
}

async fn send(
    inner: &Inner,
    service: &ServiceRt,
    version: &VersionRt,
    instance: &Arc<Instance>,
    request: Request<UpBody>,
) -> Outcome {
    let mut cut = instance.cut.subscribe();
    // Dropped on every early return; moved into the response body when there is one.
    let in_flight = InFlight::start(instance);
    let upload = request.body().share();
    let mut call = std::pin::pin!(upstream::send(instance.address, request));
    // As on the HTTP/1 path, the upstream timeout bounds the upstream's side: its taking of
    // the body and, from the upload's end, its answer. An upload stalled because the client
    // sends nothing more is the client's, bounded by the client timeout (408).
    let upstream_timeout = service.upstream_timeout;
    let sent = tokio::time::Instant::now();
    // With a body, the timer looks again within the shorter of the two timeouts, whatever
    // the deadline: the upload may end, or stall on the other side, meanwhile.
    let recheck = match upload.progress() {
        Some(_) => upstream_timeout
            .min(service.client_timeout)
            .max(RECHECK_FLOOR),
        None => upstream_timeout,
    };
    let mut timer = std::pin::pin!(tokio::time::sleep(recheck));
    let result = loop {
        tokio::select! {
            result = &mut call => break result,
            () = &mut timer => {
                let now = tokio::time::Instant::now();
                let (due, outcome) = match upload.progress() {
                    Some(progress) if !progress.is_finished() && upload.waits_on_client() => {
                        (progress.last() + service.client_timeout, Outcome::ClientTimedOut)
                    }
                    Some(progress) => (progress.last() + upstream_timeout, Outcome::TimedOut),
                    None => (sent + upstream_timeout, Outcome::TimedOut),
                };
                if due > now {
                    // A finished upload's deadline cannot move: no need to look again.
                    let settled = upload.progress().is_none_or(Activity::is_finished);
                    timer.as_mut().reset(if settled { due } else { due.min(now + recheck) });
                    continue;
                }
                if matches!(outcome, Outcome::TimedOut) {
                    tracing::debug!(instance = %instance.address, "no response head in time");
                    version.stats.upstream_error();
                } else {
                    tracing::debug!(instance = %instance.address, "request body stalled");
                }
                return outcome;
            }
            _ = cut.wait_for(|cut| *cut) => {
                tracing::warn!(instance = %instance.address, "drain timeout: in-flight request cut");
                version.stats.upstream_error();
                return Outcome::TimedOut;
            }
        }
    };
    match result {
        Ok((response, lease)) => {
            instance.succeeded();
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            let body = StreamedBody {
                body,
                in_flight: Some(in_flight),
                lease: Some(lease),
                timeout: service.upstream_timeout,
                silence: None,
                waiting: false,
            };
            Outcome::Answered(Response::from_parts(parts, DownBody::Upstream(body)))
        }
        Err(err) => {
            version.stats.upstream_error();
            let timed_out = match &err {
                SendError::ConnectTimeout => true,
                SendError::Connect(io) => io.kind() == std::io::ErrorKind::TimedOut,
                SendError::Upstream(_) => {
                    tracing::debug!(instance = %instance.address, error = %err, "upstream failed");
                    return Outcome::Failed;
                }
            };
            tracing::debug!(instance = %instance.address, error = %err, "connect failed");
            instance.failed(&inner.clock, service.eject_after, service.cooldown);
            if timed_out {
                Outcome::TimedOut
            } else {
                Outcome::Refused
            }
        }
    }
}

fn rewrite_request_headers(headers: &mut HeaderMap, uri: &Uri, peer_ip: &HeaderValue) {
    strip_hop_by_hop(headers);
    // HTTP/2 requests carry the host in the URI; HTTP/1.1 upstreams need it as a header.
    if !headers.contains_key(header::HOST)
        && let Some(value) = uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        headers.insert(header::HOST, value);
    }
    if let Some(host) = headers.get(header::HOST).cloned() {
        headers.insert(X_FORWARDED_HOST, host);
    }
    let forwarded_for = match headers.get(&X_FORWARDED_FOR) {
        Some(earlier) => {
            let mut joined = Vec::with_capacity(earlier.len() + 2 + peer_ip.len());
            joined.extend_from_slice(earlier.as_bytes());
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(peer_ip.as_bytes());
            HeaderValue::from_maybe_shared(Bytes::from(joined)).ok()
        }
        // A clone of the connection's value shares its bytes: no allocation per request.
        None => Some(peer_ip.clone()),
    };
    if let Some(value) = forwarded_for {
        headers.insert(X_FORWARDED_FOR, value);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too.
    if let Some(connection) = headers.get(header::CONNECTION) {
        let named: Vec<HeaderName> = std::iter::once(connection)
            .chain(headers.get_all(header::CONNECTION).iter().skip(1))
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::try_from(name.trim()).ok())
            .collect();
        for name in &named {
            headers.remove(name);
        }
    }
    // Most messages carry none: one pass over the few names present beats eight lookups.
    if headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        for name in &HOP_BY_HOP {
            headers.remove(name);
        }
    }
}

/// A short plain-text answer from the proxy itself.
pub(crate) fn error(status: StatusCode, message: &'static str) -> Response<DownBody> {
    let mut response = Response::new(DownBody::Own(Full::new(Bytes::from_static(
        message.as_bytes(),
    ))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The body sent to the client: the upstream's, streamed, or the proxy's own.
#[derive(Debug)]
pub enum DownBody {
    /// Streamed from the upstream.
    Upstream(StreamedBody),
    /// Written by the proxy.
    Own(Full<Bytes>),
}

/// Why a response body broke off.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

impl Body for DownBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            DownBody::Upstream(body) => Pin::new(body).poll_frame(cx),
            DownBody::Own(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            DownBody::Upstream(body) => body.is_end_stream(),
            DownBody::Own(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            DownBody::Upstream(body) => body.size_hint(),
            DownBody::Own(body) => body.size_hint(),
        }
    }
}

/// An upstream's response body on its way to the client. It holds the instance's in-flight
/// count until the last frame has passed, or until it is dropped (the client went away).
#[derive(Debug)]
pub struct StreamedBody {
    body: Incoming,
    in_flight: Option<InFlight>,
    /// The upstream connection, back to the pool once the body has been read to its end.
    lease: Option<Lease>,
    /// How long the upstream may send nothing mid-body (the service's upstream timeout).
    timeout: Duration,
    /// The wait for the upstream's next frame; made when the body first has to wait.
    silence: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The last poll found the upstream with nothing: `silence` runs from that first wait.
    /// Time in which the server did not poll at all (the client's flow control holding it
    /// back) is the client's, not upstream silence.
    waiting: bool,
}

impl StreamedBody {
    fn finished(&mut self) {
        self.in_flight = None;
        if let Some(lease) = self.lease.take() {
            lease.release();
        }
    }
}

impl Drop for StreamedBody {
    fn drop(&mut self) {
        // An empty body is never polled; one dropped half-read takes its connection along.
        if self.body.is_end_stream() {
            self.finished();
        }
    }
}

impl Body for StreamedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.finished(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.finished(),
            Poll::Ready(Some(Ok(_))) => this.waiting = false,
            Poll::Ready(Some(Err(_))) => {
                // The connection is broken: count the request done, do not pool it.
                this.in_flight = None;
                this.lease = None;
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let silence = this
                    .silence
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if !std::mem::replace(&mut this.waiting, true) {
                    silence
                        .as_mut()
                        .reset(tokio::time::Instant::now() + timeout);
                }
                if silence.as_mut().poll(cx).is_ready() {
                    // The upstream went silent mid-body: the client must not take it as whole.
                    this.in_flight = None;
                    this.lease = None;
                    let err = std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the upstream sent nothing of its body in time",
                    );
                    return Poll::Ready(Some(Err(err.into())));
                }
            }
        }
        polled.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The body sent upstream. A non-empty client body sits in a shared slot so that, when the
/// connection is refused before the body was polled, the next attempt can still send it.
#[derive(Debug)]
pub enum UpBody {
    /// No body.
    Empty,
    /// The client's body, streamed.
    Shared(Arc<SharedBody>),
}

/// A client's body in its shared slot, with when a frame of it last passed.
#[derive(Debug)]
pub struct SharedBody {
    slot: Mutex<Option<Incoming>>,
    /// Marked at each frame, finished with the last.
    progress: Activity,
    /// The upstream side asked for the next frame and the client had none yet: a stall now is
    /// the client's. When clear, the upstream is not taking the body (or has not asked yet).
    wanting: AtomicBool,
}

impl UpBody {
    fn share(&self) -> UpBody {
        match self {
            UpBody::Empty => UpBody::Empty,
            UpBody::Shared(shared) => UpBody::Shared(shared.clone()),
        }
    }

    /// How the upload goes; `None` for no body.
    fn progress(&self) -> Option<&Activity> {
        match self {
            UpBody::Empty => None,
            UpBody::Shared(shared) => Some(&shared.progress),
        }
    }

    /// Whether the upload waits on the client (see [`SharedBody::wanting`]).
    fn waits_on_client(&self) -> bool {
        match self {
            UpBody::Empty => false,
            UpBody::Shared(shared) => shared.wanting.load(Ordering::Relaxed),
        }
    }

    /// Whether another attempt can still send the whole body.
    fn retryable(&self) -> bool {
        match self {
            UpBody::Empty => true,
            // The slot is emptied once the body is finished; a started body has a size hint
            // lower bound change we cannot see, so only an untouched slot is retried.
            UpBody::Shared(shared) => shared
                .slot
                .lock()
                .map(|body| body.as_ref().is_some_and(|b| !b.is_end_stream()))
                .unwrap_or(false),
        }
    }
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            UpBody::Empty => Poll::Ready(None),
            UpBody::Shared(shared) => {
                let mut guard = shared.slot.lock().unwrap_or_else(|e| e.into_inner());
                match guard.as_mut() {
                    Some(body) => {
                        let polled = Pin::new(&mut *body).poll_frame(cx);
                        let was_wanting =
                            shared.wanting.swap(polled.is_pending(), Ordering::Relaxed);
                        if polled.is_pending() && !was_wanting {
                            // The client's time starts when the upstream asks, not before
                            // (a connect, a slow first read of the head are not the client's).
                            shared.progress.mark();
                        }
                        match &polled {
                            Poll::Ready(None) => {
                                shared.progress.finish();
                                *guard = None;
                            }
                            // The last frame: flagged as such, or all of a declared length
                            // (a client may send its end of stream in a later, empty frame
                            // that an upstream knowing the length never asks for).
                            Poll::Ready(Some(_))
                                if body.is_end_stream() || body.size_hint().exact() == Some(0) =>
                            {
                                shared.progress.finish();
                            }
                            Poll::Ready(Some(_)) => shared.progress.mark(),
                            Poll::Pending => {}
                        }
                        polled
                    }
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpBody::Empty => true,
            UpBody::Shared(shared) => shared
                .slot
                .lock()
                .map(|body| body.as_ref().is_none_or(|b| b.is_end_stream()))
                .unwrap_or(true),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpBody::Empty => SizeHint::with_exact(0),
            UpBody::Shared(shared) => shared
                .slot
                .lock()
                .ok()
                .and_then(|body| body.as_ref().map(Body::size_hint))
                .unwrap_or_else(|| SizeHint::with_exact(0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    #[test]
    fn hop_by_hop_headers_and_those_named_in_connection_are_dropped() {
        let mut map = headers(&[
            ("host", "api"),
            ("connection", "x-session-hint, keep-alive"),
            ("x-session-hint", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut map);
        let mut left: Vec<&str> = map.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "host"]);
        let mut plain = headers(&[("host", "api"), ("accept", "*/*")]);
        strip_hop_by_hop(&mut plain);
        assert_eq!(plain.len(), 2);
    }

    #[test]
    fn forwarded_headers_name_the_client_after_earlier_proxies() {
        let peer = HeaderValue::from_static("10.0.0.7");
        let instance = Instance::new(([127, 0, 0, 1], 9000).into());
        let uri = Uri::from_static("/");
        let mut first = headers(&[("host", "api.example")]);
        rewrite_request_headers(&mut first, &uri, &peer);
        assert_eq!(first[&X_FORWARDED_FOR], "10.0.0.7");
        assert_eq!(first[&X_FORWARDED_HOST], "api.example");
        assert_eq!(first[&X_FORWARDED_PROTO], "http");
        let mut chained = headers(&[("host", "api"), ("x-forwarded-for", "192.0.2.1")]);
        rewrite_request_headers(&mut chained, &uri, &peer);
        assert_eq!(chained[&X_FORWARDED_FOR], "192.0.2.1, 10.0.0.7");
        assert_eq!(instance.host, "127.0.0.1:9000");
    }
}
