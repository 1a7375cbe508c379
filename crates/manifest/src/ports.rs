//! `ports:` of an `image:` service: the published ports beside its main `port:`, in compose's
//! short syntax (`"PUBLIC:CONTAINER"`, `"PUBLIC:CONTAINER/tcp"`, `"127.0.0.1:PUBLIC:CONTAINER"`)
//! or its long one (`{published, target, protocol, app_protocol, host_ip}`). What the wharf
//! proxy cannot carry (UDP, ranges, a host port left to chance) is refused with what to do.

use crate::decode::{Decoder, Fields};
use crate::diagnostic::{Diagnostic, Span};
use crate::model::{AppProtocol, PortHost, ServicePort};
use crate::yaml::{Node, NodeKind};

/// The keys of one entry in the long syntax.
const LONG_KEYS: &[&str] = &["published", "target", "protocol", "app_protocol", "host_ip"];

/// Why one entry was refused, and what to write instead.
#[derive(Debug, PartialEq, Eq)]
struct Problem {
    message: String,
    hint: &'static str,
}

impl Problem {
    fn new(message: impl Into<String>, hint: &'static str) -> Problem {
        Problem {
            message: message.into(),
            hint,
        }
    }
}

const SHORT_HINT: &str = "write `PUBLIC:CONTAINER` (e.g. `\"5432:5432\"`), optionally with `/tcp` or a host IP `127.0.0.1:` in front; add `app_protocol: http` in the long syntax for an HTTP port";
const UDP_HINT: &str = "the wharf proxy carries TCP only; UDP ports are not built yet — run that service outside wharf, or drop the port";
const RANGE_HINT: &str = "port ranges are not built yet; list each port as its own entry";
const RANDOM_HINT: &str = "a host port chosen at random is not built: wharf must know the public port to serve it; give one (`PUBLIC:CONTAINER`)";
const HOST_HINT: &str = "the proxy binds `0.0.0.0` (every interface, the default) or `127.0.0.1` (this machine only); other addresses are not built yet";

/// Reads `ports:` of service `name`: each entry with the span a duplicate public port is
/// reported at. Errors on a service without `image:` or `build:`, on a datastore and without
/// `port:`.
pub(crate) fn ports(
    decoder: &mut Decoder,
    name: &str,
    fields: &Fields<'_>,
) -> Vec<(ServicePort, Span)> {
    let Some(node) = fields.get("ports") else {
        return Vec::new();
    };
    let key = fields.key_span("ports").unwrap_or(node.span);
    let what = format!("`services.{name}.ports`");
    let refuse = |decoder: &mut Decoder, message: String, hint: &str| {
        decoder.push(Diagnostic::error(key, message).with_hint(hint));
    };
    if !fields.has("image") && !fields.has("build") {
        refuse(
            decoder,
            format!("{what} on a service without `image:` or `build:`"),
            "a process listens on its one `port:` (`${PORT}`); several ports per process are not built — run it from an image, or give each port a service of its own",
        );
        return Vec::new();
    }
    if fields.has("kind") {
        refuse(
            decoder,
            format!("{what} on a datastore"),
            "a datastore is reached on its one `port:` (with `container_port:` inside the container); more ports on a datastore are not built yet",
        );
        return Vec::new();
    }
    if !fields.has("port") {
        refuse(
            decoder,
            format!("{what} without `port:`"),
            "give the main port as `port:` (and `container_port:`): probes, stats and rollout analysis use it; `ports:` lists the others",
        );
        return Vec::new();
    }
    let main_target = ["container_port", "port"]
        .iter()
        .find_map(|k| fields.get(k)?.as_str()?.trim().parse::<u16>().ok());
    let mut out: Vec<(ServicePort, Span)> = Vec::new();
    for item in decoder.items(node, &what) {
        let parsed = match &item.kind {
            NodeKind::Map(_) => long(decoder, &what, item),
            _ => match item.as_str().map(short) {
                Some(Ok(port)) => Some((port, item.span)),
                Some(Err(problem)) => {
                    decoder.push(
                        Diagnostic::error(item.span, format!("{what}: {}", problem.message))
                            .with_hint(problem.hint),
                    );
                    None
                }
                None => {
                    decoder.expected(item, "`PUBLIC:CONTAINER` or a mapping", &what);
                    None
                }
            },
        };
        let Some((port, span)) = parsed else {
            continue;
        };
        let target = port.target;
        if Some(target) == main_target {
            decoder.push(
                Diagnostic::error(
                    span,
                    format!("{what}: container port {target} is already the main port"),
                )
                .with_label("published twice")
                .with_hint("`port:` (with `container_port:`) publishes it already; list only the other ports here"),
            );
        } else if let Some((_, first)) = out.iter().find(|(p, _)| p.target == target) {
            decoder.push(
                Diagnostic::error(
                    span,
                    format!("{what}: container port {target} is published twice"),
                )
                .with_label("published twice")
                .with_hint(format!(
                    "line {} publishes it already; one public port per container port",
                    first.line
                )),
            );
        } else {
            out.push((port, span));
        }
    }
    out
}

/// Compose's short syntax: `[HOST_IP:]PUBLIC:CONTAINER[/PROTOCOL]`.
fn short(text: &str) -> Result<ServicePort, Problem> {
    let (address, protocol) = text.split_once('/').unwrap_or((text, "tcp"));
    match protocol {
        "tcp" => {}
        "udp" => return Err(Problem::new(format!("`{text}` is a UDP port"), UDP_HINT)),
        other => {
            return Err(Problem::new(
                format!("`{text}`: unknown protocol `{other}`"),
                SHORT_HINT,
            ));
        }
    }
    let parts: Vec<&str> = address.split(':').collect();
    let (host, published, target) = match parts.as_slice() {
        [target] => {
            number(target, text)?;
            return Err(Problem::new(
                format!("`{text}` publishes no host port"),
                RANDOM_HINT,
            ));
        }
        [published, target] => ("0.0.0.0", *published, *target),
        [host, published, target] => (*host, *published, *target),
        _ => {
            return Err(Problem::new(
                format!("`{text}` is not `[HOST_IP:]PUBLIC:CONTAINER`"),
                SHORT_HINT,
            ));
        }
    };
    if published.is_empty() {
        return Err(Problem::new(
            format!("`{text}` publishes no host port"),
            RANDOM_HINT,
        ));
    }
    Ok(ServicePort {
        published: number(published, text)?,
        target: number(target, text)?,
        host_ip: host_ip(host, text)?,
        app_protocol: AppProtocol::Tcp,
    })
}

/// A port number; a range (`8000-8010`) gets its own refusal.
fn number(text: &str, entry: &str) -> Result<u16, Problem> {
    if text.contains('-') {
        return Err(Problem::new(
            format!("`{entry}` is a port range"),
            RANGE_HINT,
        ));
    }
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(Problem::new(
            format!("`{entry}`: `{text}` is not a port (1 to 65535)"),
            SHORT_HINT,
        )),
    }
}

fn host_ip(text: &str, entry: &str) -> Result<PortHost, Problem> {
    match text {
        "0.0.0.0" => Ok(PortHost::Any),
        "127.0.0.1" => Ok(PortHost::Loopback),
        _ => Err(Problem::new(
            format!("`{entry}`: host IP `{text}` is not built"),
            HOST_HINT,
        )),
    }
}

/// Compose's long syntax: `{published, target, protocol, app_protocol, host_ip}`.
fn long(decoder: &mut Decoder, what: &str, node: &Node) -> Option<(ServicePort, Span)> {
    let fields = decoder.fields(node, what, LONG_KEYS)?;
    let mut ok = true;
    let field = |decoder: &mut Decoder, key: &str, problem: Problem, at: &Node| {
        decoder.push(
            Diagnostic::error(at.span, format!("{what}: `{key}`: {}", problem.message))
                .with_hint(problem.hint),
        );
        false
    };
    let target = fields.require(decoder, "target", what);
    let published = fields.get("published");
    if published.is_none() {
        decoder.push(
            Diagnostic::error(fields.span, format!("{what}: an entry without `published`"))
                .with_label("no public port")
                .with_hint(RANDOM_HINT),
        );
        ok = false;
    }
    let number_of = |node: &Node| {
        let text = node.as_str().unwrap_or_default().trim();
        number(text, text)
    };
    let mut port = ServicePort {
        published: 0,
        target: 0,
        host_ip: PortHost::Any,
        app_protocol: AppProtocol::Tcp,
    };
    for (key, node, slot) in [
        ("published", published, &mut port.published),
        ("target", target, &mut port.target),
    ] {
        if let Some(node) = node {
            match number_of(node) {
                Ok(n) => *slot = n,
                Err(problem) => ok &= field(decoder, key, problem, node),
            }
        } else {
            ok = false;
        }
    }
    if let Some(node) = fields.get("protocol") {
        match node.as_str() {
            Some("tcp") => {}
            Some("udp") => {
                ok &= field(
                    decoder,
                    "protocol",
                    Problem::new("`udp` is not built yet", UDP_HINT),
                    node,
                );
            }
            _ => {
                ok &= field(
                    decoder,
                    "protocol",
                    Problem::new("expected `tcp`", SHORT_HINT),
                    node,
                );
            }
        }
    }
    if let Some(node) = fields.get("host_ip") {
        let text = node.as_str().unwrap_or_default();
        match host_ip(text, text) {
            Ok(host) => port.host_ip = host,
            Err(problem) => ok &= field(decoder, "host_ip", problem, node),
        }
    }
    if let Some(node) = fields.get("app_protocol") {
        // Anything but HTTP (TLS, gRPC over TLS, a database's own protocol) passes through.
        match node.as_str() {
            Some("http") => port.app_protocol = AppProtocol::Http,
            Some(_) => {}
            None => {
                decoder.expected(node, "a protocol name (`http`, or any other for TCP)", what);
                ok = false;
            }
        }
    }
    let span = published.map_or(fields.span, |n| n.span);
    ok.then_some((port, span))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(published: u16, target: u16, host_ip: PortHost) -> ServicePort {
        ServicePort {
            published,
            target,
            host_ip,
            app_protocol: AppProtocol::Tcp,
        }
    }

    #[test]
    fn short_syntax_reads_public_container_protocol_and_host_ip() {
        assert_eq!(short("5432:5432"), Ok(port(5432, 5432, PortHost::Any)));
        assert_eq!(short("8443:443/tcp"), Ok(port(8443, 443, PortHost::Any)));
        assert_eq!(
            short("127.0.0.1:6380:6379"),
            Ok(port(6380, 6379, PortHost::Loopback))
        );
        assert_eq!(
            short("0.0.0.0:9000:9000/tcp"),
            Ok(port(9000, 9000, PortHost::Any))
        );
    }

    #[test]
    fn short_syntax_refuses_what_the_proxy_cannot_carry_with_what_to_do() {
        let cases = [
            ("53:53/udp", "`53:53/udp` is a UDP port", UDP_HINT),
            (
                "8000-8010:8000-8010",
                "`8000-8010:8000-8010` is a port range",
                RANGE_HINT,
            ),
            ("80", "`80` publishes no host port", RANDOM_HINT),
            (
                "127.0.0.1::80",
                "`127.0.0.1::80` publishes no host port",
                RANDOM_HINT,
            ),
            (
                "10.0.0.5:80:80",
                "`10.0.0.5:80:80`: host IP `10.0.0.5` is not built",
                HOST_HINT,
            ),
            (
                "80:80/sctp",
                "`80:80/sctp`: unknown protocol `sctp`",
                SHORT_HINT,
            ),
            ("0:80", "`0:80`: `0` is not a port (1 to 65535)", SHORT_HINT),
            ("x:80", "`x:80`: `x` is not a port (1 to 65535)", SHORT_HINT),
            (
                "a:b:c:d",
                "`a:b:c:d` is not `[HOST_IP:]PUBLIC:CONTAINER`",
                SHORT_HINT,
            ),
        ];
        for (text, message, hint) in cases {
            assert_eq!(short(text), Err(Problem::new(message, hint)), "{text}");
        }
    }
}
