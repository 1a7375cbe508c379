//! The Redis check: TCP connect, `AUTH` when the URL has a password, `SELECT` when it names a
//! database, then `PING`, expecting `+PONG`. The few lines of RESP are written here; replies
//! are read line by line with a bound, so a server that talks too much cannot hold the probe.
//!
//! Reasons are the server's error text ("NOAUTH Authentication required.", "WRONGPASS …") or
//! the socket's ("connection refused"); the URL and its password never appear in them.

use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::{Outcome, io_reason};

/// The longest reply line read; status and error replies are short.
const MAX_REPLY: u64 = 4096;

const DEFAULT_PORT: u16 = 6379;

/// Where and how to connect, from `redis://[[user]:password@]host[:port][/db]`.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<String>,
    db: Option<u32>,
}

/// Runs the check against `url`. The caller bounds the whole check with its timeout.
pub(crate) async fn check(url: &str, started: Instant) -> Outcome {
    let result = match parse(url) {
        Ok(target) => ping(&target).await,
        Err(reason) => Err(format!("invalid Redis URL: {reason}")),
    };
    match result {
        Ok(()) => Outcome::pass(started.elapsed()),
        Err(reason) => Outcome::fail(started.elapsed(), reason),
    }
}

async fn ping(target: &Target) -> Result<(), String> {
    let stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|err| io_reason(&err))?;
    let mut conn = BufReader::new(stream);
    if let Some(password) = &target.password {
        let mut args = vec!["AUTH"];
        args.extend(target.user.as_deref());
        args.push(password);
        expect_ok(&mut conn, &args).await?;
    }
    if let Some(db) = target.db {
        expect_ok(&mut conn, &["SELECT", &db.to_string()])
            .await
            .map_err(|reason| format!("selecting database {db}: {reason}"))?;
    }
    match command(&mut conn, &["PING"]).await? {
        Reply::Status(status) if status == "PONG" => Ok(()),
        Reply::Status(other) => Err(format!("PING answered {other:?}, expected PONG")),
        Reply::Error(error) => Err(error),
    }
}

/// A reply's first line, which is all a status, an error or this check needs.
enum Reply {
    Status(String),
    Error(String),
}

async fn expect_ok(conn: &mut BufReader<TcpStream>, args: &[&str]) -> Result<(), String> {
    match command(conn, args).await? {
        Reply::Status(_) => Ok(()),
        Reply::Error(error) => Err(error),
    }
}

async fn command(conn: &mut BufReader<TcpStream>, args: &[&str]) -> Result<Reply, String> {
    conn.get_mut()
        .write_all(&encode(args))
        .await
        .map_err(|err| io_reason(&err))?;
    let mut line = Vec::new();
    let read = (&mut *conn)
        .take(MAX_REPLY)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|err| io_reason(&err))?;
    if read == 0 {
        return Err("connection closed by the server".to_owned());
    }
    if !line.ends_with(b"\r\n") {
        return Err("not a Redis reply (no line end within 4 KiB)".to_owned());
    }
    let text = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
    match text.split_at_checked(1) {
        Some(("+", status)) => Ok(Reply::Status(status.to_owned())),
        Some(("-", error)) => Ok(Reply::Error(error.to_owned())),
        _ => Err(format!("unexpected reply {text:?}, not a Redis status")),
    }
}

/// A command as a RESP array of bulk strings.
fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Parses `redis://[[user]:password@]host[:port][/db]`. Errors never quote the credentials.
fn parse(url: &str) -> Result<Target, String> {
    let rest = match url.split_once("://") {
        Some(("redis", rest)) => rest,
        Some(("rediss", _)) => return Err("TLS (rediss://) is not supported".to_owned()),
        _ => return Err("expected redis://[user:password@]host[:port][/db]".to_owned()),
    };
    // Query parameters (protocol=…, timeouts) do not change what this check does.
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
    let (user, password) = match userinfo.map(|u| u.split_once(':').unwrap_or((u, ""))) {
        Some((user, password)) => (nonempty(decode(user)?), nonempty(decode(password)?)),
        None => (None, None),
    };
    let (host, port) = host_port(hostport)?;
    let db = match path.trim_end_matches('/') {
        "" => None,
        db => Some(
            db.parse()
                .map_err(|_| format!("database {db:?} is not a number"))?,
        ),
    };
    Ok(Target {
        host,
        port,
        user,
        password,
        db,
    })
}

fn host_port(hostport: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        // An IPv6 literal: [::1]:6379
        let (host, after) = bracketed.split_once(']').ok_or("unclosed [ in the host")?;
        (host, after.strip_prefix(':'))
    } else {
        match hostport.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("no host".to_owned());
    }
    let port = match port {
        None | Some("") => DEFAULT_PORT,
        Some(port) => port
            .parse()
            .map_err(|_| format!("port {port:?} is not a number from 1 to 65535"))?,
    };
    Ok((host.to_owned(), port))
}

fn nonempty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

/// Percent-decoding for the user and password (`p%40ss` is `p@ss`).
fn decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("bad percent-encoding in the credentials")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "credentials are not UTF-8".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, port: u16, user: Option<&str>, password: Option<&str>) -> Target {
        Target {
            host: host.to_owned(),
            port,
            user: user.map(str::to_owned),
            password: password.map(str::to_owned),
            db: None,
        }
    }

    #[test]
    fn url_forms() {
        let cases = [
            ("redis://cache", target("cache", 6379, None, None)),
            ("redis://cache:6380", target("cache", 6380, None, None)),
            ("redis://:pw@cache", target("cache", 6379, None, Some("pw"))),
            (
                "redis://alice:pw@cache:7000",
                target("cache", 7000, Some("alice"), Some("pw")),
            ),
            (
                "redis://:p%40ss@127.0.0.1",
                target("127.0.0.1", 6379, None, Some("p@ss")),
            ),
            ("redis://[::1]:6390", target("::1", 6390, None, None)),
            ("redis://cache/", target("cache", 6379, None, None)),
            (
                "redis://cache?protocol=resp3",
                target("cache", 6379, None, None),
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(parse(url), Ok(expected), "{url}");
        }
        let with_db = parse("redis://:pw@cache:6379/3").unwrap();
        assert_eq!(with_db.db, Some(3));
    }

    #[test]
    fn bad_urls_are_explained_without_the_password() {
        let cases = [
            (
                "http://cache",
                "expected redis://[user:password@]host[:port][/db]",
            ),
            ("rediss://cache", "TLS (rediss://) is not supported"),
            (
                "redis://:s3cret@cache:port",
                "port \"port\" is not a number from 1 to 65535",
            ),
            ("redis://:s3cret@", "no host"),
            (
                "redis://:s3cret@cache/zero",
                "database \"zero\" is not a number",
            ),
            (
                "redis://:s3cret%zz@cache",
                "bad percent-encoding in the credentials",
            ),
        ];
        for (url, expected) in cases {
            let reason = parse(url).unwrap_err();
            assert_eq!(reason, expected, "{url}");
            assert!(!reason.contains("s3cret"));
        }
    }

    #[test]
    fn commands_are_resp_arrays() {
        assert_eq!(
            encode(&["AUTH", "pw"]),
            b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n".to_vec()
        );
    }
}
