//! HTTP/1.x client connections, proxied without a general-purpose HTTP stack in between.
//!
//! The proxy's hot path: read a request head, pick a version and an instance, write the head
//! (hop-by-hop fields dropped, `X-Forwarded-*` added) and the body to a pooled upstream
//! connection, read the response head, write it and stream the body back, all on the worker
//! thread that accepted the client, with buffers reused for the connection's life and one
//! read and one write per message on each side when a message fits in a buffer. Framing
//! follows RFC 9112: Content-Length or chunked request bodies (both at once is refused, the
//! classic smuggling shape), responses delimited by length, chunks or the upstream's close,
//! none after HEAD, 204 and 304; `Expect: 100-continue` and other interim responses pass
//! through; pipelined requests are answered in order. A connection that opens with the HTTP/2
//! preface is handed back to the caller, which serves it with hyper (h2c).

mod parse;
pub(crate) mod pool;
#[cfg(test)]
mod properties;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::activity::Activity;
use crate::routes::{InFlight, Instance, ServiceRt, VersionRt, cookie_value};
use crate::server::{Inner, MAX_HEADER_BYTES};
use crate::table::{PIN_HEADER, Sticky};
use parse::{Chunks, Framing, HeadError, Kind, RequestHead, ResponseHead};

/// After one side of a tunnel has ended its stream, how long the other may stay silent before
/// the tunnel is closed (HAProxy's `timeout client-fin` / `server-fin`): a peer that never
/// closes must not hold the tunnel, and its instance's in-flight count, for the idle timeout.
const TUNNEL_FIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an upstream that stopped taking a request body still has to send its answer (it
/// may have answered early, say with a 413, and stopped reading).
const STALLED_GRACE: Duration = Duration::from_secs(1);

/// Initial size of each of a connection's buffers; they grow for larger heads.
const BUFFER: usize = 16 * 1024;

/// At most this many instances are tried for one request.
const MAX_ATTEMPTS: usize = 3;

/// What opens an HTTP/2 connection with prior knowledge (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How a client connection ended.
pub(crate) enum End {
    /// Served and closed (or the client went away).
    Closed,
    /// It speaks HTTP/2: these bytes were read already; serve it with an HTTP/2 server.
    Http2(BytesMut),
}

/// Whether the connection stays open after an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    KeepAlive,
    Close,
}

/// One client connection's state, reused request after request.
struct Client<'s> {
    inner: &'s Inner,
    listen: SocketAddr,
    peer_ip: Vec<u8>,
    stream: &'s mut TcpStream,
    /// Bytes from the client not yet consumed: the current request head, then whatever
    /// follows it (body, pipelined requests).
    input: BytesMut,
    /// Bytes from the upstream not yet passed on.
    upstream_input: BytesMut,
    /// The message being written (either way).
    out: Vec<u8>,
    request: RequestHead,
    response: ResponseHead,
    closing: watch::Receiver<bool>,
    /// The connection's one timer, moved to each new deadline (head, answer): resetting a
    /// registered timer to a later time costs next to nothing, a new one per request does not.
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// How long one read or write of a body may wait on the upstream, and it may take to start
    /// its answer: the service's `upstream_timeout_ms`, set per exchange.
    upstream_timeout: Duration,
    /// How long one read of the request body or write to the client may wait: the service's
    /// `client_timeout_ms`, set per exchange.
    client_timeout: Duration,
    /// See `header_timeout` in [`serve`].
    header_timeout: Duration,
    /// A write of the current request's body waited the whole upstream timeout.
    upstream_stalled: bool,
    /// The protocols the current request offers in `Upgrade`, comma-separated, kept past the
    /// head's bytes so the upstream's 101 can be checked against them.
    offered: Vec<u8>,
}

/// Serve HTTP/1.x requests on `stream` until the client closes, asks to, the listener
/// closes (`closing` turns true: the connection ends once idle), or it turns out to speak
/// HTTP/2.
pub(crate) async fn serve(
    inner: &Inner,
    listen: SocketAddr,
    peer: SocketAddr,
    stream: &mut TcpStream,
    closing: watch::Receiver<bool>,
) -> End {
    // How long a client may take to send a whole request head, and how long an idle
    // keep-alive connection is kept open waiting for the next one: the service's
    // `header_timeout`, read again at each exchange.
    let header_timeout = inner.routes.load().by_listen.get(&listen).map_or(
        Duration::from_millis(crate::table::DEFAULT_HEADER_TIMEOUT_MS),
        |s| s.header_timeout,
    );
    let mut client = Client {
        inner,
        listen,
        peer_ip: peer.ip().to_string().into_bytes(),
        stream,
        input: BytesMut::with_capacity(BUFFER),
        upstream_input: BytesMut::with_capacity(BUFFER),
        out: Vec::with_capacity(BUFFER),
        request: RequestHead::default(),
        response: ResponseHead::default(),
        closing,
        timer: Box::pin(tokio::time::sleep(header_timeout)),
        header_timeout,
        upstream_timeout: Duration::from_millis(crate::table::DEFAULT_UPSTREAM_TIMEOUT_MS),
        client_timeout: Duration::from_millis(crate::table::DEFAULT_CLIENT_TIMEOUT_MS),
        upstream_stalled: false,
        offered: Vec::new(),
    };
    let mut first = true;
    loop {
        match client.read_head(first).await {
            Ok(true) => {}
            Ok(false) => return End::Closed,
            Err(HeadRead::Http2) => return End::Http2(client.input),
        }
        first = false;
        if client.exchange().await == Next::Close {
            let _ = client.stream.shutdown().await;
            return End::Closed;
        }
    }
}

/// Resolves once `flag` is true (at once if it is); never if its sender is gone.
async fn until_true(flag: &mut watch::Receiver<bool>) {
    if flag.wait_for(|set| *set).await.is_err() {
        std::future::pending::<()>().await;
    }
}

enum HeadRead {
    Http2,
}

/// Append one header field line.
fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Append a `content-length` field line.
fn push_length(out: &mut Vec<u8>, length: u64) {
    out.extend_from_slice(b"content-length: ");
    push_decimal(out, length);
    out.extend_from_slice(b"\r\n");
}

/// Append `n` in decimal, without the allocation `to_string` makes on every message.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The message's own Transfer-Encoding fields (validated to end in chunked), so a coding
/// before the chunks (`gzip, chunked`) is not lost.
fn write_transfer_encoding(out: &mut Vec<u8>, input: &[u8], fields: &[parse::Field]) {
    for field in fields.iter().filter(|f| f.kind == Kind::TransferEncoding) {
        push_field(out, b"transfer-encoding", &input[field.value.clone()]);
    }
}

/// The message's own `Upgrade` fields and the `Connection: upgrade` that makes them mean a
/// switch, written again after the hop-by-hop fields were dropped.
fn write_upgrade(out: &mut Vec<u8>, input: &[u8], fields: &[parse::Field]) {
    for field in fields.iter().filter(|f| f.kind == Kind::Upgrade) {
        push_field(out, b"upgrade", &input[field.value.clone()]);
    }
    out.extend_from_slice(b"connection: upgrade\r\n");
}

/// One direction of a tunnel: write what `buffer` holds, read more, until `from` ends (then
/// `to` is shut down, passing the half-close on). Every byte moved marks the activity.
async fn carry(
    from: &mut tokio::net::tcp::ReadHalf<'_>,
    to: &mut tokio::net::tcp::WriteHalf<'_>,
    buffer: &mut BytesMut,
    activity: &Activity,
) -> std::io::Result<()> {
    loop {
        // Piece by piece, so a slow reader taking a little at a time counts as activity.
        let mut written = 0;
        while written < buffer.len() {
            let n = to.write(&buffer[written..]).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            written += n;
            activity.mark();
        }
        buffer.clear();
        room(buffer);
        if from.read_buf(buffer).await? == 0 {
            return to.shutdown().await;
        }
        activity.mark();
    }
}

/// Why bytes did not reach the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteFailure {
    /// The connection is closed or broken (or the drain cut came).
    Broken,
    /// The upstream took nothing more for the upstream timeout.
    Stalled,
}

/// Write all of `bytes` to the upstream: at once when its socket takes them (no timer, the
/// common case), else waiting at most `timeout` and never past the drain cut.
async fn write_upstream(
    upstream: &mut TcpStream,
    bytes: &[u8],
    timeout: Duration,
    cut: &mut watch::Receiver<bool>,
) -> Result<(), WriteFailure> {
    let written = match upstream.try_write(bytes) {
        Ok(n) => n,
        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => 0,
        Err(_) => return Err(WriteFailure::Broken),
    };
    if written == bytes.len() {
        return Ok(());
    }
    let rest = &bytes[written..];
    tokio::select! {
        done = tokio::time::timeout(timeout, upstream.write_all(rest)) => match done {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(WriteFailure::Broken),
            Err(_) => Err(WriteFailure::Stalled),
        },
        () = until_true(cut) => Err(WriteFailure::Broken),
    }
}

/// Make sure `buffer` has room for a read of a useful size.
fn room(buffer: &mut BytesMut) {
    if buffer.capacity() - buffer.len() < 1024 {
        buffer.reserve(BUFFER);
    }
}

impl Client<'_> {
    /// Read until `input` starts with a whole request head, parsed into `self.request`.
    /// `Ok(false)`: the connection is done (closed, timed out, refused with an answer).
    async fn read_head(&mut self, first: bool) -> Result<bool, HeadRead> {
        self.timer
            .as_mut()
            .reset(tokio::time::Instant::now() + self.header_timeout);
        loop {
            if !self.input.is_empty() {
                let seen = self.input.len().min(H2_PREFACE.len());
                if first && self.input[..seen] == H2_PREFACE[..seen] {
                    if seen == H2_PREFACE.len() {
                        return Err(HeadRead::Http2);
                    }
                } else if let Some(done) = self.try_parse().await {
                    return Ok(done);
                }
                if self.input.len() >= MAX_HEADER_BYTES {
                    self.own(
                        431,
                        "Request Header Fields Too Large",
                        "request head too large\n",
                        Next::Close,
                    )
                    .await;
                    return Ok(false);
                }
            }
            let idle = self.input.is_empty();
            room(&mut self.input);
            let read = tokio::select! {
                biased;
                () = until_true(&mut self.closing), if idle => return Ok(false),
                read = self.stream.read_buf(&mut self.input) => Some(read),
                () = self.timer.as_mut() => None,
            };
            match read {
                Some(Ok(0) | Err(_)) => return Ok(false),
                Some(Ok(_)) => {}
                None => {
                    if !idle {
                        self.own(
                            408,
                            "Request Timeout",
                            "request head not received in time\n",
                            Next::Close,
                        )
                        .await;
                    }
                    return Ok(false);
                }
            }
        }
    }

    /// `Some(true)`: a whole head is parsed; `Some(false)`: refused (answered, close);
    /// `None`: more bytes are needed.
    async fn try_parse(&mut self) -> Option<bool> {
        match parse::request(&self.input, &mut self.request) {
            Ok(true) => Some(true),
            Ok(false) => None,
            Err(err) => {
                tracing::debug!(error = %err, "bad request head");
                let (status, reason) = match err {
                    HeadError::TooManyHeaders => (431, "Request Header Fields Too Large"),
                    HeadError::TransferEncoding => (501, "Not Implemented"),
                    _ => (400, "Bad Request"),
                };
                let message = match err {
                    HeadError::TooManyHeaders => "too many header fields\n",
                    HeadError::ContentLength => "invalid content-length\n",
                    HeadError::TransferEncoding => "unsupported transfer-encoding\n",
                    HeadError::Ambiguous => "both content-length and transfer-encoding\n",
                    HeadError::Host => "a request needs exactly one host field\n",
                    HeadError::Malformed(_) => "malformed request\n",
                };
                self.own(status, reason, message, Next::Close).await;
                Some(false)
            }
        }
    }

    /// A short plain-text answer from the proxy itself.
    async fn own(&mut self, status: u16, reason: &str, message: &str, next: Next) -> Next {
        self.out.clear();
        self.out.extend_from_slice(b"HTTP/1.1 ");
        push_decimal(&mut self.out, u64::from(status));
        self.out.push(b' ');
        self.out.extend_from_slice(reason.as_bytes());
        self.out
            .extend_from_slice(b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ");
        push_decimal(&mut self.out, message.len() as u64);
        if next == Next::Close {
            self.out.extend_from_slice(b"\r\nconnection: close");
        } else if self.request.minor == 0 {
            self.out.extend_from_slice(b"\r\nconnection: keep-alive");
        }
        self.out.extend_from_slice(b"\r\n\r\n");
        self.out.extend_from_slice(message.as_bytes());
        if self.stream.write_all(&self.out).await.is_err() {
            return Next::Close;
        }
        next
    }

    /// Answer the request at the start of `input`.
    async fn exchange(&mut self) -> Next {
        let head = &self.request;
        let keep_alive = if head.minor >= 1 {
            !head.summary.close
        } else {
            head.summary.keep_alive && !head.summary.close
        };
        let method = &self.input[head.method.clone()];
        let is_head = method == b"HEAD";
        // A tunnel needs both directions at once; a reverse proxy has no business opening one.
        if method == b"CONNECT" {
            self.input.advance(self.request.len);
            return self
                .own(
                    405,
                    "Method Not Allowed",
                    "CONNECT is not supported\n",
                    Next::Close,
                )
                .await;
        }
        // Safe to send again on a fresh connection when a pooled one turns out closed.
        let idempotent = matches!(method, b"GET" | b"HEAD" | b"OPTIONS");
        let framing = if head.summary.chunked {
            Framing::Chunked
        } else {
            match head.summary.content_length {
                Some(0) | None => Framing::Empty,
                Some(n) => Framing::Length(n),
            }
        };
        // A protocol switch (a WebSocket) is carried for HTTP/1.1 requests without a body, so
        // the new protocol starts right after the request head (RFC 9110 §7.8). h2c is not
        // passed on: the proxy speaks HTTP/2 with the client itself.
        let upgrade = head.minor >= 1
            && head.summary.connection_upgrade
            && framing == Framing::Empty
            && self.upgrade_offered();
        // With a body still unread, the next request cannot be found: close after an answer
        // that is not the upstream's.
        let after_own = if keep_alive && framing == Framing::Empty {
            Next::KeepAlive
        } else {
            Next::Close
        };
        let service = self
            .inner
            .routes
            .load()
            .by_listen
            .get(&self.listen)
            .cloned();
        let Some(service) = service else {
            self.input.advance(self.request.len);
            return self
                .own(
                    503,
                    "Service Unavailable",
                    "no route for this port\n",
                    after_own,
                )
                .await;
        };
        self.upstream_timeout = service.upstream_timeout;
        self.client_timeout = service.client_timeout;
        self.header_timeout = service.header_timeout;
        self.upstream_stalled = false;
        let (pin, sticky) = self.routing_keys(&service);
        let Some(version) =
            service.choose_by(pin.map(|r| &self.input[r]), sticky.map(|r| &self.input[r]))
        else {
            self.input.advance(self.request.len);
            return self
                .own(
                    503,
                    "Service Unavailable",
                    "no instances for this service\n",
                    after_own,
                )
                .await;
        };
        version.stats.request();
        let started = Instant::now();
        let exchange = Exchange {
            service: &service,
            version,
            keep_alive,
            is_head,
            idempotent,
            framing,
            upgrade,
            started,
        };
        self.forward(&exchange).await
    }

    /// Whether the request's `Upgrade` fields offer a protocol the proxy may tunnel: at least
    /// one, and no `h2c` among them. The protocols are kept in `offered`.
    fn upgrade_offered(&mut self) -> bool {
        self.offered.clear();
        for field in self
            .request
            .fields
            .iter()
            .filter(|f| f.kind == Kind::Upgrade)
        {
            for token in self.input[field.value.clone()].split(|&b| b == b',') {
                let protocol = token.trim_ascii();
                if protocol.len() >= 3 && protocol[..3].eq_ignore_ascii_case(b"h2c") {
                    return false;
                }
                if !protocol.is_empty() {
                    self.offered.extend_from_slice(protocol);
                    self.offered.push(b',');
                }
            }
        }
        !self.offered.is_empty()
    }

    /// Whether the upstream's 101 switches to protocols the request offered, and names one.
    fn switch_agreed(&self) -> bool {
        let mut named = false;
        for field in self
            .response
            .fields
            .iter()
            .filter(|f| f.kind == Kind::Upgrade)
        {
            for token in self.upstream_input[field.value.clone()].split(|&b| b == b',') {
                let protocol = token.trim_ascii();
                if protocol.is_empty() {
                    continue;
                }
                let offered = self
                    .offered
                    .split(|&b| b == b',')
                    .any(|o| o.eq_ignore_ascii_case(protocol));
                if !offered {
                    return false;
                }
                named = true;
            }
        }
        named
    }

    /// The pin header's value and the sticky key, as ranges into `input`.
    fn routing_keys(
        &self,
        service: &ServiceRt,
    ) -> (
        Option<std::ops::Range<usize>>,
        Option<std::ops::Range<usize>>,
    ) {
        let input = &self.input;
        let mut pin = None;
        let mut sticky = None;
        for field in &self.request.fields {
            let name = &input[field.name.clone()];
            if field.kind == Kind::Other && name.eq_ignore_ascii_case(PIN_HEADER.as_bytes()) {
                pin.get_or_insert(field.value.clone());
            }
            match service.sticky() {
                Some(Sticky::Header(wanted)) if name.eq_ignore_ascii_case(wanted.as_bytes()) => {
                    sticky.get_or_insert(field.value.clone());
                }
                Some(Sticky::Cookie(wanted)) if field.kind == Kind::Cookie && sticky.is_none() => {
                    let value = &input[field.value.clone()];
                    if let Some(found) = cookie_value(value, wanted) {
                        let start =
                            field.value.start + (found.as_ptr() as usize - value.as_ptr() as usize);
                        sticky = Some(start..start + found.len());
                    }
                }
                _ => {}
            }
        }
        (pin, sticky)
    }

    async fn forward(&mut self, exchange: &Exchange<'_>) -> Next {
        let version = exchange.version;
        let attempts = version.instances.len().min(MAX_ATTEMPTS);
        let mut tried: [SocketAddr; MAX_ATTEMPTS] = [([0, 0, 0, 0], 0).into(); MAX_ATTEMPTS];
        let mut failure = Failure::NoInstance;
        for attempt in 0..attempts {
            let Some(instance) = version.pick(&self.inner.clock, &tried[..attempt]) else {
                break;
            };
            tried[attempt] = instance.address;
            if attempt > 0 {
                version.stats.retry();
            }
            let (upstream, reused) = match pool::checkout(instance.address) {
                Some(stream) => (stream, true),
                None => match pool::connect(instance.address).await {
                    Ok(stream) => (stream, false),
                    Err(err) => {
                        tracing::debug!(instance = %instance.address, error = %err, "connect failed");
                        version.stats.upstream_error();
                        instance.failed(
                            &self.inner.clock,
                            exchange.service.eject_after,
                            exchange.service.cooldown,
                        );
                        // Nothing was sent: another instance may take the request.
                        if matches!(err, pool::ConnectError::TimedOut) {
                            failure = Failure::TimedOut;
                            break;
                        }
                        failure = Failure::Refused;
                        continue;
                    }
                },
            };
            let in_flight = InFlight::start(instance);
            return self
                .proxy(exchange, instance, upstream, reused, in_flight)
                .await;
        }
        let (status, reason, message) = match failure {
            Failure::NoInstance => (
                503,
                "Service Unavailable",
                "no instances for this service\n",
            ),
            Failure::Refused => (502, "Bad Gateway", "no upstream answered\n"),
            Failure::TimedOut => (
                504,
                "Gateway Timeout",
                "the upstream did not answer in time\n",
            ),
        };
        version.stats.response(status, exchange.started.elapsed());
        self.input.advance(self.request.len);
        let next = if exchange.keep_alive && exchange.framing == Framing::Empty {
            Next::KeepAlive
        } else {
            Next::Close
        };
        self.own(status, reason, message, next).await
    }

    /// Write the upstream request head for `instance` into `out`.
    fn write_request_head(&mut self, instance: &Instance, chunked: bool, upgrade: bool) {
        let input = &self.input;
        let head = &self.request;
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(&input[head.method.clone()]);
        out.push(b' ');
        let target = &input[head.target.clone()];
        // Absolute form (a request meant for a proxy): origin form upstream, and its
        // authority is the host.
        let mut authority = None;
        let scheme = if target.starts_with(b"http://") {
            7
        } else if target.starts_with(b"https://") {
            8
        } else {
            0
        };
        if scheme > 0 {
            let rest = &target[scheme..];
            let end = rest
                .iter()
                .position(|&b| matches!(b, b'/' | b'?' | b'#'))
                .unwrap_or(rest.len());
            authority = Some(&rest[..end]);
            // The path is at least `/`; a query right after the authority follows it.
            if rest.get(end) != Some(&b'/') {
                out.push(b'/');
            }
            let path = &rest[end..];
            let fragment = path.iter().position(|&b| b == b'#').unwrap_or(path.len());
            out.extend_from_slice(&path[..fragment]);
        } else {
            out.extend_from_slice(target);
        }
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let connection = if head.summary.connection_names_others {
            parse::connection_values(&head.fields)
        } else {
            Vec::new()
        };
        let mut forwarded_for: Option<Vec<u8>> = None;
        for field in &head.fields {
            match field.kind {
                Kind::XForwardedFor => {
                    let earlier = forwarded_for.get_or_insert_with(Vec::new);
                    if !earlier.is_empty() {
                        earlier.extend_from_slice(b", ");
                    }
                    earlier.extend_from_slice(&input[field.value.clone()]);
                    continue;
                }
                // Written once below, from the framing the proxy itself follows.
                Kind::XForwardedHost | Kind::XForwardedProto | Kind::ContentLength => continue,
                Kind::Host if authority.is_some() => continue,
                _ => {}
            }
            if parse::is_hop_by_hop(field, input, &head.summary, &connection) {
                continue;
            }
            push_field(out, &input[field.name.clone()], &input[field.value.clone()]);
        }
        let host: &[u8] = match (authority, &head.summary.host) {
            (Some(authority), _) => authority,
            (None, Some(host)) => &input[host.clone()],
            (None, None) => instance.host.as_bytes(),
        };
        if authority.is_some() || head.summary.host.is_none() {
            out.extend_from_slice(b"host: ");
            out.extend_from_slice(host);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"x-forwarded-for: ");
        if let Some(earlier) = forwarded_for {
            out.extend_from_slice(&earlier);
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(&self.peer_ip);
        out.extend_from_slice(b"\r\nx-forwarded-host: ");
        out.extend_from_slice(host);
        out.extend_from_slice(b"\r\nx-forwarded-proto: http\r\n");
        if upgrade {
            write_upgrade(out, input, &head.fields);
        }
        if chunked {
            write_transfer_encoding(out, input, &head.fields);
        } else if let Some(length) = head.summary.content_length {
            push_length(out, length);
        }
        out.extend_from_slice(b"\r\n");
    }

    /// One request to one instance over `upstream`, and its response back to the client.
    async fn proxy(
        &mut self,
        exchange: &Exchange<'_>,
        instance: &Arc<Instance>,
        mut upstream: TcpStream,
        reused: bool,
        in_flight: InFlight,
    ) -> Next {
        let version = exchange.version;
        let mut cut = instance.cut.subscribe();
        // A pooled connection the upstream closed just as the request went out: nothing came
        // back, so an idempotent request whose bytes are all still in `out` may go again once
        // on a fresh connection.
        let mut may_resend = reused && exchange.idempotent;
        self.write_request_head(
            instance,
            exchange.framing == Framing::Chunked,
            exchange.upgrade,
        );
        let expect_continue = self.request.summary.expect_continue;
        let client_minor = self.request.minor;
        self.input.advance(self.request.len);

        // The request body: what arrived with the head goes out with it.
        let mut body = BodyCursor::new(exchange.framing);
        match body.take(&mut self.input, &mut self.out, false) {
            Ok(()) => {}
            Err(()) => return self.bad_body(version, exchange).await,
        }
        may_resend &= body.done;
        // Bounded like every later write of the body: an upstream that takes nothing is its
        // own failure, not a connection held open for ever.
        let sent = write_upstream(&mut upstream, &self.out, self.upstream_timeout, &mut cut).await;
        if sent == Err(WriteFailure::Stalled) {
            // Alive but taking nothing: sending again could run the request twice.
            tracing::debug!(instance = %instance.address, "upstream took no request in time");
            version.stats.upstream_error();
            return self
                .upstream_failed_status(
                    version,
                    exchange,
                    504,
                    "Gateway Timeout",
                    "the upstream did not answer in time\n",
                )
                .await;
        }
        if sent.is_err() {
            match self.resend(instance, version, &mut may_resend).await {
                Some(fresh) => upstream = fresh,
                None => {
                    return self
                        .upstream_failed(version, exchange, "no upstream answered\n")
                        .await;
                }
            }
        }
        // An HTTP/1.0 client does not wait for a 100 (RFC 9110 §10.1.1).
        let mut awaiting_continue = expect_continue && !body.done && client_minor >= 1;
        if !body.done
            && !awaiting_continue
            && let Err(next) = self
                .pass_body(&mut body, &mut upstream, &mut cut, exchange)
                .await
        {
            return next;
        }

        // The response head, after any interim ones.
        self.upstream_input.clear();
        self.restart_upstream_timer();
        loop {
            let parsed = parse::response(&self.upstream_input, &mut self.response);
            match parsed {
                Ok(true) => {
                    let status = self.response.status;
                    if status == 101 || !(100..200).contains(&status) {
                        break;
                    }
                    // Interim: pass it on (a 100 only to a client that asked for one; none
                    // to HTTP/1.0, which knows no interim responses).
                    let len = self.response.len;
                    may_resend = false;
                    if (status != 100 || awaiting_continue) && client_minor >= 1 {
                        // Rebuilt like a final head, so what the client parses is what the
                        // proxy parsed.
                        self.write_response_head(false, false, client_minor);
                        if !self.send_out(&mut cut).await {
                            return Next::Close;
                        }
                    }
                    self.upstream_input.advance(len);
                    if status == 100 && awaiting_continue {
                        awaiting_continue = false;
                        if let Err(next) = self
                            .pass_body(&mut body, &mut upstream, &mut cut, exchange)
                            .await
                        {
                            return next;
                        }
                        // The wait for the answer starts when the upload ends.
                        self.restart_upstream_timer();
                    }
                    continue;
                }
                Ok(false) if self.upstream_input.len() < MAX_HEADER_BYTES => {}
                Ok(false) | Err(_) => {
                    tracing::debug!(instance = %instance.address, "malformed response head");
                    return self
                        .upstream_failed(version, exchange, "no upstream answered\n")
                        .await;
                }
            }
            room(&mut self.upstream_input);
            let watch_client = self.input.len() < MAX_HEADER_BYTES;
            if watch_client {
                room(&mut self.input);
            }
            tokio::select! {
                read = upstream.read_buf(&mut self.upstream_input) => match read {
                    Ok(n) if n > 0 => may_resend = false,
                    _ => match self.resend(instance, version, &mut may_resend).await {
                        Some(fresh) => upstream = fresh,
                        None => return self.upstream_failed(version, exchange, "no upstream answered\n").await,
                    },
                },
                read = self.stream.read_buf(&mut self.input), if watch_client => match read {
                    // Pipelined bytes wait in `input`.
                    Ok(n) if n > 0 => {}
                    // An end of stream is a client that left, as nginx and hyper take it (a
                    // half-close looks the same): the upstream exchange is abandoned, so
                    // the instance's in-flight count drops at once.
                    _ => return Next::Close,
                },
                () = self.timer.as_mut() => {
                    tracing::debug!(instance = %instance.address, "no response head in time");
                    version.stats.upstream_error();
                    return self.upstream_failed_status(version, exchange, 504, "Gateway Timeout", "the upstream did not answer in time\n").await;
                },
                () = until_true(&mut cut) => {
                    tracing::warn!(instance = %instance.address, "drain timeout: in-flight request cut");
                    version.stats.upstream_error();
                    return self.upstream_failed_status(version, exchange, 504, "Gateway Timeout", "the upstream did not answer in time\n").await;
                }
            }
            // A client awaiting a 100 that has not come sends its body anyway after a while
            // (RFC 9110 §10.1.1): pass it on.
            if awaiting_continue && !self.input.is_empty() {
                awaiting_continue = false;
                if let Err(next) = self
                    .pass_body(&mut body, &mut upstream, &mut cut, exchange)
                    .await
                {
                    return next;
                }
                self.restart_upstream_timer();
            }
        }
        let response_len = self.response.len;
        let status = self.response.status;
        if status == 101 {
            // A switch nobody asked for, or one that does not say to what, cannot be carried.
            let agreed = exchange.upgrade && self.switch_agreed();
            if !agreed {
                return self
                    .upstream_failed(version, exchange, "no upstream answered\n")
                    .await;
            }
            instance.succeeded();
            version.stats.response(status, exchange.started.elapsed());
            self.write_response_head(false, false, client_minor);
            self.upstream_input.advance(response_len);
            if self.send_out(&mut cut).await {
                self.tunnel(
                    &mut upstream,
                    &mut cut,
                    instance,
                    exchange.service.tunnel_idle,
                )
                .await;
            }
            // The instance stays busy while the tunnel is open, so a drain waits for it.
            drop(in_flight);
            return Next::Close;
        }
        instance.succeeded();
        version.stats.response(status, exchange.started.elapsed());

        let summary = &self.response.summary;
        let framing = if exchange.is_head || status == 204 || status == 304 {
            Framing::Empty
        } else if summary.chunked {
            Framing::Chunked
        } else {
            match summary.content_length {
                Some(0) => Framing::Empty,
                Some(n) => Framing::Length(n),
                None => Framing::UntilClose,
            }
        };
        // Both a length and chunks is a smuggling shape: framed by the chunks, then closed
        // (RFC 9112 §6.1).
        let upstream_keeps = !summary.close
            && (self.response.minor >= 1 || summary.keep_alive)
            && !(summary.chunked && summary.content_length.is_some());
        let dechunk = framing == Framing::Chunked && client_minor == 0;
        if dechunk && !summary.only_chunked {
            // HTTP/1.0 has no transfer codings to carry the others in.
            return self
                .upstream_failed(version, exchange, "no upstream answered\n")
                .await;
        }
        // A body the client did not get to send (the upstream answered before a 100) is
        // still on the wire: neither connection can carry another request.
        let request_unfinished = !body.done;
        let close_after = !exchange.keep_alive
            || framing == Framing::UntilClose
            || dechunk
            || request_unfinished
            || *self.closing.borrow();
        self.write_response_head(
            framing == Framing::Chunked && !dechunk,
            close_after,
            client_minor,
        );
        self.upstream_input.advance(response_len);

        // The head (in `out`) goes with the body bytes read along with it, then the rest.
        let mut body_out = BodyCursor::new(framing);
        loop {
            if body_out
                .take(&mut self.upstream_input, &mut self.out, dechunk)
                .is_err()
                || !self.send_out(&mut cut).await
            {
                return Next::Close;
            }
            if body_out.done {
                break;
            }
            self.upstream_input.clear();
            room(&mut self.upstream_input);
            let read = tokio::select! {
                read = tokio::time::timeout(self.upstream_timeout, upstream.read_buf(&mut self.upstream_input)) => {
                    read.unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
                }
                () = until_true(&mut cut) => {
                    tracing::warn!(instance = %instance.address, "drain timeout: in-flight response cut");
                    return Next::Close;
                }
            };
            match read {
                Ok(0) if framing == Framing::UntilClose => break,
                Ok(0) | Err(_) => {
                    // The upstream broke off mid-body: the client must not take it as whole.
                    version.stats.upstream_error();
                    return Next::Close;
                }
                Ok(_) => {}
            }
            self.out.clear();
        }
        drop(in_flight);
        if upstream_keeps
            && framing != Framing::UntilClose
            && !request_unfinished
            && self.upstream_input.is_empty()
        {
            pool::checkin(instance.address, upstream);
        }
        if close_after {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }

    /// Carry bytes both ways between the client and the upstream after a protocol switch: first
    /// what each side sent already (in `input` and `upstream_input`), then whatever comes. A
    /// side that ends its stream has the other side's write half closed; the tunnel ends once
    /// both have, when either fails, when no byte passes for `idle_timeout` (the service's
    /// `tunnel_idle_timeout_ms`: an idle WebSocket is normal, and nginx cutting them after its
    /// 60 s default is one of its best-known surprises) or, once one side has ended, for
    /// [`TUNNEL_FIN_TIMEOUT`], or at the instance's drain cut.
    async fn tunnel(
        &mut self,
        upstream: &mut TcpStream,
        cut: &mut watch::Receiver<bool>,
        instance: &Instance,
        idle_timeout: Duration,
    ) {
        let Client {
            stream,
            input,
            upstream_input,
            ..
        } = self;
        // In a block: the pinned directions hold the buffers until it ends.
        {
            let (mut client_read, mut client_write) = stream.split();
            let (mut upstream_read, mut upstream_write) = upstream.split();
            let activity = Activity::new();
            let mut up = std::pin::pin!(carry(
                &mut client_read,
                &mut upstream_write,
                input,
                &activity
            ));
            let mut down = std::pin::pin!(carry(
                &mut upstream_read,
                &mut client_write,
                upstream_input,
                &activity,
            ));
            let (mut up_done, mut down_done) = (false, false);
            // The loop turns only when a direction ends or the timer fires: the directions loop
            // inside `carry`.
            while !(up_done && down_done) {
                let silence = if up_done || down_done {
                    idle_timeout.min(TUNNEL_FIN_TIMEOUT)
                } else {
                    idle_timeout
                };
                let due = activity.last() + silence;
                let broken = tokio::select! {
                    carried = &mut up, if !up_done => {
                        up_done = true;
                        carried.err()
                    }
                    carried = &mut down, if !down_done => {
                        down_done = true;
                        carried.err()
                    }
                    () = tokio::time::sleep_until(due) => {
                        if activity.last() + silence <= tokio::time::Instant::now() {
                            tracing::debug!(instance = %instance.address, ?silence, "tunnel silent: closed");
                            break;
                        }
                        None
                    }
                    () = until_true(cut) => {
                        tracing::warn!(instance = %instance.address, "drain timeout: tunnel cut");
                        break;
                    }
                };
                if let Some(err) = broken {
                    tracing::debug!(instance = %instance.address, error = %err, "tunnel broken");
                    break;
                }
            }
        }
        input.clear();
        upstream_input.clear();
    }

    /// The upstream has the service's upstream timeout from now to send its response head,
    /// or only [`STALLED_GRACE`] when it already let a write of the body wait that long.
    fn restart_upstream_timer(&mut self) {
        let wait = if std::mem::take(&mut self.upstream_stalled) {
            self.upstream_timeout.min(STALLED_GRACE)
        } else {
            self.upstream_timeout
        };
        self.timer
            .as_mut()
            .reset(tokio::time::Instant::now() + wait);
    }

    /// [`Client::send_body`], and what its failure means for the exchange: a client gone or a
    /// broken body ends it (`Err` with how); an upstream that stopped taking the body may have
    /// answered already, so its response is still read.
    async fn pass_body(
        &mut self,
        body: &mut BodyCursor,
        upstream: &mut TcpStream,
        cut: &mut watch::Receiver<bool>,
        exchange: &Exchange<'_>,
    ) -> Result<(), Next> {
        match self.send_body(body, upstream, cut).await {
            Ok(()) | Err(BodyFailure::Upstream) => Ok(()),
            Err(BodyFailure::Client) => Err(Next::Close),
            Err(BodyFailure::ClientTimeout) => {
                let version = exchange.version;
                version.stats.response(408, exchange.started.elapsed());
                Err(self
                    .own(
                        408,
                        "Request Timeout",
                        "request body not received in time\n",
                        Next::Close,
                    )
                    .await)
            }
            Err(BodyFailure::Malformed) => Err(self.bad_body(exchange.version, exchange).await),
        }
    }

    /// Copy the rest of the request body from the client to the upstream: first what is in
    /// `input` already, then what the client sends; each read and write bounded by
    /// the service's upstream timeout (writes) or its client timeout (reads) and by the
    /// instance's drain cut.
    async fn send_body(
        &mut self,
        body: &mut BodyCursor,
        upstream: &mut TcpStream,
        cut: &mut watch::Receiver<bool>,
    ) -> Result<(), BodyFailure> {
        loop {
            self.out.clear();
            body.take(&mut self.input, &mut self.out, false)
                .map_err(|()| BodyFailure::Malformed)?;
            if !self.out.is_empty()
                && let Err(failure) =
                    write_upstream(upstream, &self.out, self.upstream_timeout, cut).await
            {
                // An upstream that stopped taking the body has used its time already: what
                // is left for its answer is a short grace, for one it sent early.
                self.upstream_stalled = failure == WriteFailure::Stalled;
                return Err(BodyFailure::Upstream);
            }
            if body.done {
                return Ok(());
            }
            room(&mut self.input);
            let read = tokio::select! {
                read = tokio::time::timeout(self.client_timeout, self.stream.read_buf(&mut self.input)) => read,
                () = until_true(cut) => return Err(BodyFailure::Client),
            };
            match read {
                Ok(Ok(n)) if n > 0 => {}
                Err(_) => return Err(BodyFailure::ClientTimeout),
                _ => return Err(BodyFailure::Client),
            }
        }
    }

    /// Write `out` to the client: at once when the socket takes it all (no timer, no
    /// waiter), else waiting at most the client timeout and never past the drain cut.
    async fn send_out(&mut self, cut: &mut watch::Receiver<bool>) -> bool {
        let written = match self.stream.try_write(&self.out) {
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(_) => return false,
        };
        if written == self.out.len() {
            return true;
        }
        let rest = &self.out[written..];
        tokio::select! {
            done = tokio::time::timeout(self.client_timeout, self.stream.write_all(rest)) => matches!(done, Ok(Ok(()))),
            () = until_true(cut) => false,
        }
    }

    /// A fresh connection to `instance` with the request in `out` written to it, if a resend
    /// is still allowed (see `may_resend` in [`Client::proxy`]); allowed once.
    async fn resend(
        &mut self,
        instance: &Instance,
        version: &VersionRt,
        may_resend: &mut bool,
    ) -> Option<TcpStream> {
        if !std::mem::take(may_resend) {
            return None;
        }
        tracing::debug!(instance = %instance.address, "pooled connection was closed: resending on a new one");
        version.stats.retry();
        let mut fresh = pool::connect(instance.address).await.ok()?;
        fresh.write_all(&self.out).await.ok()?;
        Some(fresh)
    }

    /// Write the response head for the client into `out`.
    fn write_response_head(&mut self, chunked: bool, close: bool, client_minor: u8) {
        // The upstream's length, unless the body is chunked (then it must go, RFC 9112 §6.3)
        // or the status has no content at all (1xx, 204: RFC 9110 §8.6).
        let status = self.response.status;
        let length = if self.response.summary.chunked || status < 200 || status == 204 {
            None
        } else {
            self.response.summary.content_length
        };
        let input = &self.upstream_input;
        let head = &self.response;
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        // httparse accepts exactly three digits.
        let status = head.status;
        out.extend_from_slice(&[
            b'0' + (status / 100 % 10) as u8,
            b'0' + (status / 10 % 10) as u8,
            b'0' + (status % 10) as u8,
            b' ',
        ]);
        out.extend_from_slice(&input[head.reason.clone()]);
        out.extend_from_slice(b"\r\n");
        let connection = if head.summary.connection_names_others {
            parse::connection_values(&head.fields)
        } else {
            Vec::new()
        };
        for field in &head.fields {
            if field.kind == Kind::ContentLength
                || parse::is_hop_by_hop(field, input, &head.summary, &connection)
            {
                continue;
            }
            push_field(out, &input[field.name.clone()], &input[field.value.clone()]);
        }
        if chunked {
            write_transfer_encoding(out, input, &head.fields);
        } else if let Some(length) = length {
            push_length(out, length);
        }
        if status == 101 {
            write_upgrade(out, input, &head.fields);
        } else if close {
            out.extend_from_slice(b"connection: close\r\n");
        } else if client_minor == 0 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    async fn bad_body(&mut self, version: &VersionRt, exchange: &Exchange<'_>) -> Next {
        version.stats.response(400, exchange.started.elapsed());
        self.own(400, "Bad Request", "malformed chunked body\n", Next::Close)
            .await
    }

    async fn upstream_failed(
        &mut self,
        version: &VersionRt,
        exchange: &Exchange<'_>,
        message: &str,
    ) -> Next {
        version.stats.upstream_error();
        self.upstream_failed_status(version, exchange, 502, "Bad Gateway", message)
            .await
    }

    async fn upstream_failed_status(
        &mut self,
        version: &VersionRt,
        exchange: &Exchange<'_>,
        status: u16,
        reason: &str,
        message: &str,
    ) -> Next {
        version.stats.response(status, exchange.started.elapsed());
        // The request may be half sent and the upstream's answer half read: start afresh.
        self.own(status, reason, message, Next::Close).await
    }
}

/// What one request needs to be proxied, decided before an instance is picked.
struct Exchange<'r> {
    service: &'r ServiceRt,
    version: &'r VersionRt,
    keep_alive: bool,
    is_head: bool,
    idempotent: bool,
    framing: Framing,
    /// The request asks for a protocol switch the proxy will carry.
    upgrade: bool,
    started: Instant,
}

/// Why a request body did not get through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFailure {
    /// The client went away or failed mid-body.
    Client,
    /// The client sent nothing more of its body within the service's client timeout.
    ClientTimeout,
    /// The upstream stopped taking it (closed, reset).
    Upstream,
    /// Its chunked framing is broken.
    Malformed,
}

#[cfg(test)]
#[test]
fn decimals_are_written_like_display() {
    for n in [0, 7, 10, 999, 1_000_000, u64::MAX] {
        let mut out = Vec::new();
        push_decimal(&mut out, n);
        assert_eq!(out, n.to_string().into_bytes());
    }
}

#[derive(Debug, Clone, Copy)]
enum Failure {
    NoInstance,
    Refused,
    TimedOut,
}

/// Where a body stands while it passes through: bytes still due by its framing.
struct BodyCursor {
    framing: Framing,
    remaining: u64,
    chunks: Chunks,
    done: bool,
}

impl BodyCursor {
    fn new(framing: Framing) -> BodyCursor {
        BodyCursor {
            framing,
            remaining: match framing {
                Framing::Length(n) => n,
                _ => 0,
            },
            chunks: Chunks::default(),
            done: framing == Framing::Empty,
        }
    }

    /// Move the body's bytes at the front of `from` to `to` (only the chunk data when
    /// `dechunk`), leaving what follows the body in `from`.
    fn take(&mut self, from: &mut BytesMut, to: &mut Vec<u8>, dechunk: bool) -> Result<(), ()> {
        if self.done {
            return Ok(());
        }
        match self.framing {
            Framing::Empty => {}
            Framing::Length(_) => {
                let take = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(from.len());
                to.extend_from_slice(&from[..take]);
                from.advance(take);
                self.remaining -= take as u64;
                self.done = self.remaining == 0;
            }
            Framing::Chunked => {
                let bytes = &from[..];
                let end = self
                    .chunks
                    .scan(bytes, |range| {
                        if dechunk {
                            to.extend_from_slice(&bytes[range]);
                        }
                    })
                    .map_err(|_| ())?;
                let used = end.unwrap_or(bytes.len());
                if !dechunk {
                    to.extend_from_slice(&bytes[..used]);
                }
                from.advance(used);
                self.done = end.is_some();
            }
            Framing::UntilClose => {
                to.extend_from_slice(from);
                from.clear();
            }
        }
        Ok(())
    }
}

/// A client stream whose first bytes were already read: they are read again first, so an
/// HTTP/2 server sees the connection from its start.
pub(crate) struct Prefixed {
    read: BytesMut,
    stream: TcpStream,
}

impl Prefixed {
    pub(crate) fn new(read: BytesMut, stream: TcpStream) -> Prefixed {
        Prefixed { read, stream }
    }
}

impl tokio::io::AsyncRead for Prefixed {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.read.is_empty() {
            let n = this.read.len().min(buf.remaining());
            buf.put_slice(&this.read[..n]);
            this.read.advance(n);
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Prefixed {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
