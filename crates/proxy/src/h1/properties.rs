//! Property runs over the HTTP/1 head parser and the chunked scanner (issue 20): arbitrary
//! and HTTP-shaped bytes, 2,000 cases each, no panic, every range inside the bytes parsed, the
//! same answer whichever way the bytes arrive, and no case over 1 s (a bound that catches a
//! hang or a quadratic path, not a performance test: those are `scripts/bench/`).

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::parse::{
    Chunks, RequestHead, ResponseHead, connection_values, is_hop_by_hop, request, response,
};

/// The hang bound of one case.
const CASE_LIMIT: Duration = Duration::from_secs(1);

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2_000,
        // Shrinking a failure is worth little here and would multiply the run.
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    }
}

/// Everything the proxy does with a head it read: parse it as a request and as a response,
/// and for each field decide whether it is hop-by-hop. Ranges must lie inside `buf`.
fn exercise(buf: &[u8]) {
    let started = Instant::now();
    let mut head = RequestHead::default();
    if let Ok(true) = request(buf, &mut head) {
        assert!(head.len <= buf.len());
        assert!(head.fields.len() <= super::parse::MAX_HEADERS);
        for range in [&head.method, &head.target] {
            assert!(range.end <= head.len, "{range:?} past {}", head.len);
        }
        let connection = connection_values(&head.fields);
        for field in &head.fields {
            assert!(field.name.end <= head.len && field.value.end <= head.len);
            let _ = is_hop_by_hop(field, buf, &head.summary, &connection);
        }
        // The same head arriving in two reads gives the same answer: partial, then whole.
        for cut in [0, head.len / 2, head.len.saturating_sub(1)] {
            let mut part = RequestHead::default();
            assert!(
                !matches!(request(&buf[..cut], &mut part), Ok(true)) || cut == head.len,
                "a prefix of {cut} bytes parsed as a whole head"
            );
        }
        let mut again = RequestHead::default();
        assert_eq!(request(&buf[..head.len], &mut again), Ok(true));
        assert_eq!(again.fields.len(), head.fields.len());
    }
    let mut head = ResponseHead::default();
    if let Ok(true) = response(buf, &mut head) {
        assert!(head.len <= buf.len());
        assert!(head.reason.end <= head.len);
        let connection = connection_values(&head.fields);
        for field in &head.fields {
            assert!(field.name.end <= head.len && field.value.end <= head.len);
            let _ = is_hop_by_hop(field, buf, &head.summary, &connection);
        }
    }
    assert!(
        started.elapsed() < CASE_LIMIT,
        "one case took {:?}",
        started.elapsed()
    );
}

/// A chunked body scanned in pieces cut at `cuts`: every data range lies inside its piece,
/// and the outcome is the same as scanning it whole.
fn scan_in_pieces(body: &[u8], cuts: &[usize]) {
    let started = Instant::now();
    let whole = {
        let mut chunks = Chunks::default();
        let mut data = Vec::new();
        let end = chunks.scan(body, |r| data.extend_from_slice(&body[r]));
        (end, data)
    };
    let mut chunks = Chunks::default();
    let mut data = Vec::new();
    let mut at = 0;
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
    bounds.sort_unstable();
    bounds.push(body.len());
    let mut outcome = Ok(None);
    for bound in bounds {
        if bound < at {
            continue;
        }
        let piece = &body[at..bound];
        outcome = chunks.scan(piece, |r| {
            assert!(r.end <= piece.len());
            data.extend_from_slice(&piece[r]);
        });
        match outcome {
            Ok(Some(used)) => {
                assert!(used <= piece.len());
                outcome = Ok(Some(at + used));
                break;
            }
            Err(_) => break,
            Ok(None) => at = bound,
        }
    }
    assert_eq!(outcome.is_err(), whole.0.is_err(), "{body:?} at {cuts:?}");
    if let (Ok(whole_end), Ok(end)) = (whole.0, outcome) {
        assert_eq!(end, whole_end, "{body:?} at {cuts:?}");
        assert_eq!(data, whole.1);
    }
    assert!(
        started.elapsed() < CASE_LIMIT,
        "one case took {:?}",
        started.elapsed()
    );
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "Host", "host", "Content-Length", "Transfer-Encoding", "Connection", "Upgrade",
            "Expect", "Keep-Alive", "TE", "Trailer", "X-Forwarded-For", "Cookie", "x-a",
            "Proxy-Authorization", "content-length ", " Host", "Host:",
        ])
        .prop_map(str::to_owned),
        4 => "[a-zA-Z0-9-]{1,12}",
        1 => "[!-~]{0,12}",
    ]
}

fn field_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "chunked",
            "gzip, chunked",
            "chunked, gzip",
            "close",
            "keep-alive",
            "upgrade",
            "x-a, close",
            "host, content-length",
            "5",
            "05",
            "-1",
            "18446744073709551616",
            "1, 1",
            "100-continue",
            "",
            " ",
            "a\tb",
        ])
        .prop_map(str::to_owned),
        "[ -~\t]{0,24}",
        "[0-9]{1,22}",
    ]
}

/// Mostly CRLF, so many heads are whole; sometimes a line end a parser could misread.
fn line_end() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        30 => Just("\r\n"),
        1 => prop::sample::select(vec!["\n", "\r", ""]),
    ]
}

/// Heads shaped like HTTP/1 with the fields a proxy acts on, line ends sometimes wrong.
fn head() -> impl Strategy<Value = Vec<u8>> {
    let start = prop_oneof![
        4 => (
            prop::sample::select(vec!["GET", "POST", "PUT", "OPTIONS"]),
            prop::sample::select(vec!["/", "/a?b=1", "http://h/x"]),
            prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0"]),
        )
            .prop_map(|(m, t, v)| format!("{m} {t} {v}\r\nHost: h")),
        1 => (
            prop::sample::select(vec!["GET", "POST", "CONNECT", "G T", ""]),
            prop::sample::select(vec!["/", "*", "https://h", "", "/\0"]),
            prop::sample::select(vec!["HTTP/1.1", "HTTP/2.0", "HTTP/1.", "http/1.1"]),
        )
            .prop_map(|(m, t, v)| format!("{m} {t} {v}")),
        3 => (
            prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0", "HTTP/1.1 "]),
            prop::sample::select(vec!["200", "101", "204", "304", "999", "20", "abc"]),
            "[ -~]{0,12}",
        )
            .prop_map(|(v, s, r)| format!("{v} {s} {r}")),
    ];
    let fields = prop::collection::vec((field_name(), field_value(), line_end()), 0..12);
    (start, line_end(), fields, line_end(), "[ -~\r\n]{0,16}").prop_map(
        |(start, end, fields, last, body)| {
            let mut text = start + end;
            for (name, value, end) in fields {
                text.push_str(&format!("{name}: {value}{end}"));
            }
            text.push_str(last);
            text.push_str(&body);
            text.into_bytes()
        },
    )
}

/// Chunked bodies: sizes, extensions, data and trailers, some of it wrong.
fn chunked_body() -> impl Strategy<Value = Vec<u8>> {
    let chunk = (
        prop::sample::select(vec![
            "0",
            "1",
            "a",
            "A",
            "10",
            "fffffffffffffff",
            "1x",
            "",
            " 1",
        ]),
        prop::sample::select(vec!["", ";x=y", " ;e", "\t", " x"]),
        line_end(),
        "[a-z]{0,20}",
        line_end(),
    )
        .prop_map(|(size, ext, end, data, data_end)| format!("{size}{ext}{end}{data}{data_end}"));
    (
        prop::collection::vec(chunk, 0..6),
        prop::sample::select(vec!["0\r\n\r\n", "0\r\nt: 1\r\n\r\n", "0\r\n", "0\n\n", ""]),
    )
        .prop_map(|(chunks, last)| (chunks.concat() + last).into_bytes())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic_the_head_parser(buf in prop::collection::vec(any::<u8>(), 0..512)) {
        exercise(&buf);
    }

    #[test]
    fn http_shaped_heads_parse_within_their_bytes(buf in head()) {
        exercise(&buf);
    }

    #[test]
    fn chunked_bodies_scan_the_same_in_any_pieces(
        body in prop_oneof![chunked_body(), prop::collection::vec(any::<u8>(), 0..128)],
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        scan_in_pieces(&body, &cuts);
    }
}

/// The HTTP-shaped strategy reaches the parser's success path often, so the property above
/// checks whole heads' ranges and not only refusals.
#[test]
fn http_shaped_heads_are_often_whole() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = head();
    let whole = (0..400)
        .filter(|_| {
            let buf = strategy.new_tree(&mut runner).unwrap().current();
            matches!(request(&buf, &mut RequestHead::default()), Ok(true))
                || matches!(response(&buf, &mut ResponseHead::default()), Ok(true))
        })
        .count();
    assert!(
        whole >= 40,
        "only {whole} of 400 generated heads parsed whole"
    );
}
