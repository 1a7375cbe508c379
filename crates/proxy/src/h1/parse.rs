//! HTTP/1.1 message heads as the proxy needs them: where each part lies in the bytes read
//! (ranges, so the bytes are never copied into owned strings), how the body is framed, and
//! which headers describe only this hop (RFC 9110 §7.6.1, RFC 9112 §6–7).

use std::mem::MaybeUninit;
use std::ops::Range;

/// At most this many header fields in one message head.
pub(crate) const MAX_HEADERS: usize = 128;

/// Why a message head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HeadError {
    /// Not an HTTP/1.x message head (httparse's reason).
    #[error("malformed message head: {0}")]
    Malformed(&'static str),
    /// More than [`MAX_HEADERS`] fields.
    #[error("more than {MAX_HEADERS} header fields")]
    TooManyHeaders,
    /// Content-Length that is not one decimal number, or two that disagree.
    #[error("invalid content-length")]
    ContentLength,
    /// Transfer-Encoding whose last coding is not chunked.
    #[error("unsupported transfer-encoding")]
    TransferEncoding,
    /// Both Content-Length and Transfer-Encoding: the shape requests are smuggled in.
    #[error("both content-length and transfer-encoding")]
    Ambiguous,
    /// No Host in an HTTP/1.1 request in origin form, or more than one.
    #[error("a request needs exactly one host field")]
    Host,
}

/// One header field: its name and value as ranges into the head's bytes.
#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub name: Range<usize>,
    pub value: Range<usize>,
    pub kind: Kind,
}

/// The header names the proxy acts on; everything else is [`Kind::Other`] and passes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    /// Hop-by-hop fields dropped whatever they say: keep-alive, te, trailer,
    /// proxy-authenticate, proxy-authorization.
    HopByHop,
    /// `Upgrade`: hop-by-hop, so dropped, except where the proxy carries a protocol switch
    /// (RFC 9110 §7.8) and writes it again itself.
    Upgrade,
    Expect,
    XForwardedFor,
    XForwardedHost,
    XForwardedProto,
    Cookie,
    Other,
}

impl Kind {
    fn of(name: &[u8]) -> Kind {
        let is = |other: &str| name.eq_ignore_ascii_case(other.as_bytes());
        match name.len() {
            2 if is("te") => Kind::HopByHop,
            4 if is("host") => Kind::Host,
            6 if is("cookie") => Kind::Cookie,
            6 if is("expect") => Kind::Expect,
            7 if is("upgrade") => Kind::Upgrade,
            7 if is("trailer") => Kind::HopByHop,
            10 if is("connection") => Kind::Connection,
            10 if is("keep-alive") => Kind::HopByHop,
            14 if is("content-length") => Kind::ContentLength,
            15 if is("x-forwarded-for") => Kind::XForwardedFor,
            16 if is("x-forwarded-host") => Kind::XForwardedHost,
            17 if is("transfer-encoding") => Kind::TransferEncoding,
            17 if is("x-forwarded-proto") => Kind::XForwardedProto,
            18 if is("proxy-authenticate") => Kind::HopByHop,
            19 if is("proxy-authorization") => Kind::HopByHop,
            _ => Kind::Other,
        }
    }
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the sender closes the connection (responses only).
    UntilClose,
}

/// What the fields of one head say, found in one pass.
#[derive(Debug, Clone, Default)]
pub(crate) struct Summary {
    pub content_length: Option<u64>,
    pub chunked: bool,
    /// Every Transfer-Encoding field says just `chunked` (no other coding to keep).
    pub only_chunked: bool,
    /// `Connection: close`.
    pub close: bool,
    /// `Connection: keep-alive`.
    pub keep_alive: bool,
    /// `Connection` names other fields: they are hop-by-hop too.
    pub connection_names_others: bool,
    /// `Connection: upgrade`: the sender asks for (or, answering, agrees to) a protocol switch.
    pub connection_upgrade: bool,
    pub expect_continue: bool,
    pub host: Option<Range<usize>>,
    /// How many Host fields (a request needs exactly one, RFC 9112 §3.2).
    pub hosts: u8,
}

/// A parsed request head. Ranges index the bytes it was parsed from.
#[derive(Debug, Default)]
pub(crate) struct RequestHead {
    pub len: usize,
    pub method: Range<usize>,
    pub target: Range<usize>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub fields: Vec<Field>,
    pub summary: Summary,
}

/// A parsed response head.
#[derive(Debug, Default)]
pub(crate) struct ResponseHead {
    pub len: usize,
    pub status: u16,
    pub reason: Range<usize>,
    pub minor: u8,
    pub fields: Vec<Field>,
    pub summary: Summary,
}

/// Where `part`, a slice httparse took from `base`, lies in it. An empty part may be a static
/// string outside `base` (a status line without a reason): an empty range then.
fn offset(base: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
    if part.is_empty() || start > base.len() || base.len() - start < part.len() {
        return 0..0;
    }
    start..start + part.len()
}

fn map_error(err: httparse::Error) -> HeadError {
    match err {
        httparse::Error::TooManyHeaders => HeadError::TooManyHeaders,
        httparse::Error::HeaderName => HeadError::Malformed("invalid header name"),
        httparse::Error::HeaderValue => HeadError::Malformed("invalid header value"),
        httparse::Error::NewLine => HeadError::Malformed("invalid line ending"),
        httparse::Error::Status => HeadError::Malformed("invalid status"),
        httparse::Error::Token => HeadError::Malformed("invalid token"),
        httparse::Error::Version => HeadError::Malformed("invalid HTTP version"),
    }
}

/// Parse a request head at the start of `buf` into `head` (its field list reused); `Ok(false)`
/// when `buf` does not hold a whole head yet.
pub(crate) fn request(buf: &[u8], head: &mut RequestHead) -> Result<bool, HeadError> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let len = match parsed.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(false),
        Err(err) => return Err(map_error(err)),
    };
    head.len = len;
    head.method = offset(buf, parsed.method.unwrap_or_default().as_bytes());
    head.target = offset(buf, parsed.path.unwrap_or_default().as_bytes());
    head.minor = parsed.version.unwrap_or(1);
    head.summary = collect(buf, parsed.headers, &mut head.fields)?;
    if head.summary.chunked && head.summary.content_length.is_some() {
        // Both framings at once is how requests are smuggled past a proxy (RFC 9112 §6.1).
        return Err(HeadError::Ambiguous);
    }
    let target = &buf[head.target.clone()];
    let absolute = target.starts_with(b"http://") || target.starts_with(b"https://");
    if head.summary.hosts > 1 || (head.minor >= 1 && head.summary.hosts == 0 && !absolute) {
        return Err(HeadError::Host);
    }
    Ok(true)
}

/// Parse a response head at the start of `buf`; `Ok(false)` when it is not whole yet.
pub(crate) fn response(buf: &[u8], head: &mut ResponseHead) -> Result<bool, HeadError> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut parsed,
        buf,
        &mut slots,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(false),
        Err(err) => return Err(map_error(err)),
    };
    head.len = len;
    head.status = parsed.code.unwrap_or(0);
    head.reason = offset(buf, parsed.reason.unwrap_or_default().as_bytes());
    head.minor = parsed.version.unwrap_or(1);
    head.summary = collect(buf, parsed.headers, &mut head.fields)?;
    Ok(true)
}

fn collect(
    buf: &[u8],
    headers: &[httparse::Header<'_>],
    fields: &mut Vec<Field>,
) -> Result<Summary, HeadError> {
    fields.clear();
    let mut summary = Summary::default();
    for header in headers {
        let kind = Kind::of(header.name.as_bytes());
        let value = header.value;
        match kind {
            Kind::ContentLength => {
                let length = parse_length(value)?;
                if summary.content_length.is_some_and(|known| known != length) {
                    return Err(HeadError::ContentLength);
                }
                summary.content_length = Some(length);
            }
            Kind::TransferEncoding => {
                // Only chunked as the final coding can be delimited (RFC 9112 §6.3).
                let last = value.rsplit(|&b| b == b',').next().unwrap_or_default();
                if !last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                    return Err(HeadError::TransferEncoding);
                }
                summary.only_chunked = (!summary.chunked || summary.only_chunked)
                    && value.trim_ascii().eq_ignore_ascii_case(b"chunked");
                summary.chunked = true;
            }
            Kind::Connection => {
                for token in value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        summary.close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        summary.keep_alive = true;
                    } else if !token.is_empty() {
                        summary.connection_upgrade |= token.eq_ignore_ascii_case(b"upgrade");
                        summary.connection_names_others = true;
                    }
                }
            }
            Kind::Expect => {
                summary.expect_continue |= value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
            }
            Kind::Host => {
                summary.hosts = summary.hosts.saturating_add(1);
                summary.host.get_or_insert_with(|| offset(buf, value));
            }
            _ => {}
        }
        fields.push(Field {
            name: offset(buf, header.name.as_bytes()),
            value: offset(buf, value),
            kind,
        });
    }
    Ok(summary)
}

fn parse_length(value: &[u8]) -> Result<u64, HeadError> {
    let digits = value.trim_ascii();
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(HeadError::ContentLength);
    }
    Ok(digits
        .iter()
        .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// Whether the field is one the proxy must not pass on: hop-by-hop by name, or named in the
/// message's `Connection` header.
pub(crate) fn is_hop_by_hop(
    field: &Field,
    buf: &[u8],
    summary: &Summary,
    connection: &[Range<usize>],
) -> bool {
    match field.kind {
        Kind::Connection | Kind::HopByHop | Kind::Upgrade | Kind::TransferEncoding => true,
        // Framing and routing are the proxy's to decide: a `Connection` token naming them
        // must not make the upstream see a different message than the proxy does.
        Kind::ContentLength | Kind::Host | Kind::Expect => false,
        _ if summary.connection_names_others => {
            let name = &buf[field.name.clone()];
            connection.iter().any(|value| {
                buf[value.clone()]
                    .split(|&b| b == b',')
                    .any(|token| token.trim_ascii().eq_ignore_ascii_case(name))
            })
        }
        _ => false,
    }
}

/// The value ranges of every `Connection` field, for [`is_hop_by_hop`].
pub(crate) fn connection_values(fields: &[Field]) -> Vec<Range<usize>> {
    fields
        .iter()
        .filter(|f| f.kind == Kind::Connection)
        .map(|f| f.value.clone())
        .collect()
}

/// Follows chunked framing over the bytes as they pass, without changing them, to find where
/// the body ends and, for a client that cannot take chunks, where the data lies.
#[derive(Debug, Clone, Default)]
pub(crate) struct Chunks {
    state: ChunkState,
    size: u64,
    digits: u8,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    /// Whitespace after the size: only more of it or `;` may follow.
    SizeSpace,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerLineStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

/// The chunked framing is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunked body")]
pub(crate) struct ChunkError;

/// The LF a CR must be followed by.
fn line_feed(byte: u8) -> Result<(), ChunkError> {
    if byte == b'\n' {
        Ok(())
    } else {
        Err(ChunkError)
    }
}

impl Chunks {
    /// Scan `data`, calling `on_data` with the range of every piece of chunk data in it.
    /// Returns how many bytes of `data` belong to the body once its end is in `data`,
    /// `None` when all of it does and more is to come.
    pub(crate) fn scan(
        &mut self,
        data: &[u8],
        mut on_data: impl FnMut(Range<usize>),
    ) -> Result<Option<usize>, ChunkError> {
        let mut at = 0;
        while at < data.len() {
            let byte = data[at];
            match self.state {
                ChunkState::Size => match byte {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        // 15 hex digits stay far below u64::MAX.
                        if self.digits == 15 {
                            return Err(ChunkError);
                        }
                        let digit = (byte as char).to_digit(16).unwrap_or(0);
                        self.size = self.size * 16 + u64::from(digit);
                        self.digits += 1;
                    }
                    b';' if self.digits > 0 => self.state = ChunkState::Extension,
                    b' ' | b'\t' if self.digits > 0 => self.state = ChunkState::SizeSpace,
                    b'\r' if self.digits > 0 => self.state = ChunkState::SizeLf,
                    _ => return Err(ChunkError),
                },
                ChunkState::SizeSpace => match byte {
                    b' ' | b'\t' => {}
                    b';' => self.state = ChunkState::Extension,
                    b'\r' => self.state = ChunkState::SizeLf,
                    _ => return Err(ChunkError),
                },
                // Every line ends in CRLF: a bare LF is where two parsers could disagree.
                ChunkState::Extension => match byte {
                    b'\r' => self.state = ChunkState::SizeLf,
                    b'\n' => return Err(ChunkError),
                    _ => {}
                },
                ChunkState::SizeLf => {
                    line_feed(byte)?;
                    self.size_line_done();
                }
                ChunkState::Data => {
                    let take = usize::try_from(self.size)
                        .unwrap_or(usize::MAX)
                        .min(data.len() - at);
                    on_data(at..at + take);
                    self.size -= take as u64;
                    at += take;
                    if self.size == 0 {
                        self.state = ChunkState::DataCr;
                    }
                    continue;
                }
                ChunkState::DataCr => match byte {
                    b'\r' => self.state = ChunkState::DataLf,
                    _ => return Err(ChunkError),
                },
                ChunkState::DataLf => {
                    line_feed(byte)?;
                    self.next_chunk();
                }
                ChunkState::TrailerLineStart => match byte {
                    b'\r' => self.state = ChunkState::EndLf,
                    b'\n' => return Err(ChunkError),
                    _ => self.state = ChunkState::TrailerLine,
                },
                ChunkState::TrailerLine => match byte {
                    b'\r' => self.state = ChunkState::TrailerLf,
                    b'\n' => return Err(ChunkError),
                    _ => {}
                },
                ChunkState::TrailerLf => {
                    line_feed(byte)?;
                    self.state = ChunkState::TrailerLineStart;
                }
                ChunkState::EndLf => {
                    line_feed(byte)?;
                    self.state = ChunkState::Done;
                    return Ok(Some(at + 1));
                }
                ChunkState::Done => return Ok(Some(at)),
            }
            at += 1;
        }
        Ok((self.state == ChunkState::Done).then_some(at))
    }

    fn size_line_done(&mut self) {
        self.state = if self.size == 0 {
            ChunkState::TrailerLineStart
        } else {
            ChunkState::Data
        };
    }

    fn next_chunk(&mut self) {
        self.state = ChunkState::Size;
        self.size = 0;
        self.digits = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_head_is_found_with_its_framing() {
        let raw = b"POST /a?b=1 HTTP/1.1\r\nHost: api\r\nContent-Length: 5\r\nConnection: close, x-hint\r\nx-hint: 1\r\n\r\nhello";
        let mut head = RequestHead::default();
        assert!(request(raw, &mut head).unwrap());
        assert_eq!(&raw[head.method.clone()], b"POST");
        assert_eq!(&raw[head.target.clone()], b"/a?b=1");
        assert_eq!(head.len, raw.len() - 5);
        assert_eq!(head.summary.content_length, Some(5));
        assert!(head.summary.close && head.summary.connection_names_others);
        let connection = connection_values(&head.fields);
        let passed: Vec<&[u8]> = head
            .fields
            .iter()
            .filter(|f| !is_hop_by_hop(f, raw, &head.summary, &connection))
            .map(|f| &raw[f.name.clone()])
            .collect();
        assert_eq!(passed, [&b"Host"[..], b"Content-Length"]);
        assert!(!request(b"GET / HTTP/1.1\r\nhost: a\r\n", &mut head).unwrap());
    }

    #[test]
    fn connection_cannot_unframe_a_message_and_host_must_be_single() {
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nConnection: content-length, host, expect, x-a\r\nContent-Length: 1\r\nx-a: 1\r\n\r\nx";
        let mut head = RequestHead::default();
        assert!(request(raw, &mut head).unwrap());
        let connection = connection_values(&head.fields);
        let passed: Vec<&[u8]> = head
            .fields
            .iter()
            .filter(|f| !is_hop_by_hop(f, raw, &head.summary, &connection))
            .map(|f| &raw[f.name.clone()])
            .collect();
        assert_eq!(passed, [&b"Host"[..], b"Content-Length"]);
        for raw in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n",
        ] {
            assert_eq!(request(raw, &mut head), Err(HeadError::Host));
        }
        assert!(request(b"GET / HTTP/1.0\r\n\r\n", &mut head).unwrap());
        assert!(request(b"GET http://a/ HTTP/1.1\r\n\r\n", &mut head).unwrap());
    }

    #[test]
    fn a_status_line_without_a_reason_parses() {
        let mut head = ResponseHead::default();
        assert!(response(b"HTTP/1.1 204\r\n\r\n", &mut head).unwrap());
        assert_eq!((head.status, head.reason.clone()), (204, 0..0));
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        let mut head = RequestHead::default();
        for raw in [
            &b"POST / HTTP/1.1\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\ncontent-length: +5\r\n\r\n",
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
        ] {
            assert!(
                request(raw, &mut head).is_err(),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn chunks_end_where_the_last_chunk_and_trailers_end_in_any_split() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        let end = body.len() - 4;
        for split in 0..end {
            let mut chunks = Chunks::default();
            let mut data = Vec::new();
            let first = chunks
                .scan(&body[..split], |r| data.extend_from_slice(&body[r]))
                .unwrap();
            assert_eq!(first, None, "split at {split}");
            let rest = &body[split..];
            let second = chunks
                .scan(rest, |r| data.extend_from_slice(&rest[r]))
                .unwrap();
            assert_eq!(second, Some(end - split), "split at {split}");
            assert_eq!(data, b"hello world");
        }
        for lenient in [
            &b"3\nabc\r\n0\r\n\r\n"[..],
            b"3\r\nabc\n0\r\n\r\n",
            b"3;x\nabc\r\n0\r\n\r\n",
            b"3 x\r\nabc\r\n0\r\n\r\n",
            b"3\r\nabc\r\n0\r\nX\n\r\n",
            b"3\r\nabc\r\n0\r\n\n",
        ] {
            let mut chunks = Chunks::default();
            assert_eq!(
                chunks.scan(lenient, |_| {}),
                Err(ChunkError),
                "{}",
                String::from_utf8_lossy(lenient)
            );
        }
        assert_eq!(
            Chunks::default().scan(b"3 ;x\r\nabc\r\n0\r\n\r\n", |_| {}),
            Ok(Some(16))
        );
        assert_eq!(Chunks::default().scan(b"zz\r\n", |_| {}), Err(ChunkError));
        assert_eq!(
            Chunks::default().scan(b"3\r\nabcX", |_| {}),
            Err(ChunkError)
        );
    }
}
