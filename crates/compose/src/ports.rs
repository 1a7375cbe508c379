//! compose `ports` (short `"[ip:][published:]target[/proto]"` and long `{target, published, …}`)
//! → wharf's single public `port`, with a warning for each port or detail left behind.

use serde_json::{Map, Value, json};
use wharf_manifest::Span;
use wharf_manifest::yaml::{Node, NodeKind};

use crate::Importer;
use crate::service::Service;

/// One compose port mapping, whichever syntax it was written in.
#[derive(Debug, Default, PartialEq)]
struct Port {
    host_ip: Option<String>,
    published: Option<String>,
    target: String,
    protocol: String,
}

/// Takes the first fixed, published TCP port as wharf's `port`; warns about the others.
pub(crate) fn convert(imp: &mut Importer<'_>, service: &Service<'_>, out: &mut Map<String, Value>) {
    let Some(node) = service.node.get("ports") else {
        return;
    };
    let NodeKind::Seq(items) = &node.kind else {
        imp.error(
            node.span,
            format!("`{}` must be a list", service.path("ports")),
        );
        return;
    };
    for item in items {
        let port = match &item.kind {
            NodeKind::Scalar { value, .. } => short_syntax(value),
            NodeKind::Map(_) => long_syntax(imp, service, item),
            _ => None,
        };
        match port {
            Some(port) => take(imp, service, &port, first_key_span(item), out),
            None => imp.error(
                item.span,
                format!(
                    "`{}`: not a port mapping compose understands",
                    service.path("ports")
                ),
            ),
        }
    }
}

/// Decides what happens to one mapping: it becomes `port`, or it is warned about.
fn take(
    imp: &mut Importer<'_>,
    service: &Service<'_>,
    port: &Port,
    span: Span,
    out: &mut Map<String, Value>,
) {
    let key = service.path("ports");
    let target = &port.target;
    let published = port.published.as_deref().filter(|p| !p.is_empty());
    let warn = |imp: &mut Importer<'_>, message: String, hint: Option<&str>| {
        imp.warn(key.clone(), span, format!("`{key}`: {message}"), hint)
    };
    if port.protocol != "tcp" {
        let message = format!(
            "{} port {target} is not carried over: wharf's proxy serves TCP",
            port.protocol
        );
        return warn(imp, message, None);
    }
    let Some(published) = published else {
        let message =
            format!("container port {target} is not carried over: it has no fixed published port");
        let hint = "compose publishes it on a random host port; set wharf's `port` by hand if it should be reachable";
        return warn(imp, message, Some(hint));
    };
    if is_range(published) || is_range(target) {
        let message = format!(
            "port range `{published}:{target}` is not carried over: a wharf service has one public port"
        );
        return warn(imp, message, None);
    }
    if out.contains_key("port") {
        let message = format!(
            "extra port {published} is not carried over: a wharf service has one public port"
        );
        let hint = "split the service, or reach the extra port directly";
        return warn(imp, message, Some(hint));
    }
    match published.parse::<u16>() {
        Ok(number) => out.insert("port".to_owned(), json!(number)),
        Err(_) if published.contains('$') => out.insert("port".to_owned(), json!(published)),
        Err(_) => return imp.error(span, format!("`{key}`: `{published}` is not a port number")),
    };
    if let Some(ip) = &port.host_ip {
        let message = format!(
            "host address {ip} of port {published} is not carried over: wharf's proxy chooses where it listens"
        );
        warn(imp, message, None);
    }
    // The container side is never dropped silently: `"$SENTRY_BIND:80/tcp"` keeps the public
    // side only, and the 80 must be said.
    if target != published {
        let message = format!(
            "container port {target} is not carried over: wharf's proxy serves {published} and forwards to each instance's own port"
        );
        let hint = if published.contains('$') {
            "make the service listen on `${PORT}`, which wharf sets for each instance; the variable must hold a port number only (no address)"
        } else {
            "make the service listen on `${PORT}`, which wharf sets for each instance"
        };
        warn(imp, message, Some(hint));
    } else if published.contains('$') {
        let message = format!(
            "`{published}` is carried as the public port; the variable must hold a port number only (no address)"
        );
        imp.changed(key.clone(), span, format!("`{key}`: {message}"), None);
    }
}

/// Where to point for a port: the scalar itself, or the first key of a long-syntax mapping
/// (a block mapping's own span has no single line to underline).
fn first_key_span(item: &Node) -> Span {
    crate::map_entries(item)
        .first()
        .map_or(item.span, |(key, _)| key.span)
}

fn is_range(text: &str) -> bool {
    !text.contains('$') && text.contains('-')
}

/// `"8080:80"`, `"127.0.0.1:8080:80/tcp"`, `"80"`, `"${WEB_PORT:-8000}:8000"`, `"[::1]:80:80"`.
fn short_syntax(text: &str) -> Option<Port> {
    let (rest, protocol) = match text.rsplit_once('/') {
        Some((rest, proto)) if proto.chars().all(|c| c.is_ascii_alphabetic()) => (rest, proto),
        _ => (text, "tcp"),
    };
    let parts = split_colons(rest);
    let (host_ip, published, target) = match parts.as_slice() {
        [target] => (None, None, *target),
        [published, target] => (None, Some(*published), *target),
        [ip, published, target] => (Some(*ip), Some(*published), *target),
        _ => return None,
    };
    if target.is_empty() {
        return None;
    }
    Some(Port {
        host_ip: host_ip
            .filter(|ip| !ip.is_empty())
            .map(|ip| ip.trim_matches(['[', ']']).to_owned()),
        published: published.map(str::to_owned),
        target: target.to_owned(),
        protocol: protocol.to_owned(),
    })
}

/// Splits on `:` outside `${…}` (whose defaults use `:-`) and outside `[…]` (IPv6 addresses).
fn split_colons(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b':' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// `{target: 80, published: "8080", host_ip: 127.0.0.1, protocol: tcp, mode: host}`.
fn long_syntax(imp: &mut Importer<'_>, service: &Service<'_>, node: &Node) -> Option<Port> {
    let text = |key: &str| node.get(key).and_then(Node::as_str).map(str::to_owned);
    for (key, _) in crate::map_entries(node) {
        let name = key.as_str().unwrap_or_default();
        if matches!(name, "mode" | "name" | "app_protocol") {
            let path = service.path("ports");
            let message = format!(
                "`{name}` of a port in `{path}` is not carried over: wharf.yaml has no equivalent"
            );
            imp.warn(path, key.span, message, None);
        }
    }
    Some(Port {
        host_ip: text("host_ip"),
        published: text("published"),
        target: text("target")?,
        protocol: text("protocol").unwrap_or_else(|| "tcp".to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(
        ip: Option<&str>,
        published: Option<&str>,
        target: &str,
        protocol: &str,
    ) -> Option<Port> {
        Some(Port {
            host_ip: ip.map(str::to_owned),
            published: published.map(str::to_owned),
            target: target.to_owned(),
            protocol: protocol.to_owned(),
        })
    }

    #[test]
    fn short_syntax_forms() {
        assert_eq!(short_syntax("80"), port(None, None, "80", "tcp"));
        assert_eq!(
            short_syntax("8080:80"),
            port(None, Some("8080"), "80", "tcp")
        );
        assert_eq!(
            short_syntax("127.0.0.1:8080:80/tcp"),
            port(Some("127.0.0.1"), Some("8080"), "80", "tcp")
        );
        assert_eq!(
            short_syntax("127.0.0.1::80"),
            port(Some("127.0.0.1"), Some(""), "80", "tcp")
        );
        assert_eq!(
            short_syntax("53:53/udp"),
            port(None, Some("53"), "53", "udp")
        );
        assert_eq!(
            short_syntax("[::1]:6379:6379"),
            port(Some("::1"), Some("6379"), "6379", "tcp")
        );
        assert_eq!(
            short_syntax("${WEB_PORT:-8000}:8000"),
            port(None, Some("${WEB_PORT:-8000}"), "8000", "tcp")
        );
        assert_eq!(
            short_syntax("9000-9010:9000-9010"),
            port(None, Some("9000-9010"), "9000-9010", "tcp")
        );
        assert_eq!(short_syntax("a:b:c:d"), None);
    }
}
