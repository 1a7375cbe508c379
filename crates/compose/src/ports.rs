//! compose `ports` (short `"[ip:][published:]target[/proto]"` and long `{target, published, …}`)
//! → wharf's main public `port` (+ `container_port`) and, on an image service, the others as
//! `ports:`, with a warning for each port or detail left behind.

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
    /// The long syntax's `app_protocol` (`http` makes an extra port an HTTP one).
    app_protocol: Option<String>,
}

/// Container ports that usually speak HTTP: the first of these a service publishes becomes
/// its main `port:` (which the proxy serves at HTTP level); otherwise its first port does.
const HTTP_LIKELY: &[&str] = &["80", "8080", "8000", "3000", "5000", "8081", "8888", "4000"];

/// Container ports of well-known protocols other than HTTP (databases, brokers, mail, SSH,
/// TLS): chosen as the main port only when nothing else is published, and then warned about.
const NOT_HTTP: &[&str] = &[
    "22", "25", "143", "443", "465", "587", "993", "1883", "2181", "3306", "4222", "5432", "5433",
    "5672", "6379", "6543", "9042", "9092", "11211", "27017",
];

/// Takes one fixed, published TCP port as wharf's `port` (with `container_port` on an image
/// when the sides differ) and, on an image service, every other one into `ports:` (passed
/// through at TCP level); warns about what is still not carried.
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
    let mut ports = Vec::with_capacity(items.len());
    for item in items {
        let port = match &item.kind {
            NodeKind::Scalar { value, .. } => short_syntax(value),
            NodeKind::Map(_) => long_syntax(imp, service, item),
            _ => None,
        };
        match port {
            Some(port) => ports.push((port, first_key_span(item))),
            None => imp.error(
                item.span,
                format!(
                    "`{}`: not a port mapping compose understands",
                    service.path("ports")
                ),
            ),
        }
    }
    // The main port first, then the others in the file's order.
    let main = ports
        .iter()
        .position(|(p, _)| carried(p) && HTTP_LIKELY.contains(&p.target.as_str()))
        .or_else(|| {
            ports
                .iter()
                .position(|(p, _)| carried(p) && !NOT_HTTP.contains(&p.target.as_str()))
        })
        .or_else(|| ports.iter().position(|(p, _)| carried(p)));
    if let Some(main) = main {
        let first = ports.remove(main);
        // A datastore binds its port itself; anything else is served by the proxy as HTTP.
        if NOT_HTTP.contains(&first.0.target.as_str()) && !out.contains_key("kind") {
            let key = service.path("ports");
            let message = format!(
                "`{key}`: container port {} becomes the service's `port`, which the wharf proxy serves as HTTP; it is a well-known port of another protocol",
                first.0.target
            );
            let hint = "if it speaks another protocol (a database's, TLS), wharf cannot serve it as a service's main port yet: run the service outside wharf, or reach it on the stack's network by service name";
            imp.warn(key.clone(), first.1, message, Some(hint));
        }
        ports.insert(0, first);
    }
    let mut extra = Vec::new();
    for (port, span) in &ports {
        take(imp, service, port, *span, out, &mut extra);
    }
    if !extra.is_empty() {
        out.insert("ports".to_owned(), json!(extra));
    }
}

/// A fixed, published, single TCP port: what wharf can carry.
fn carried(port: &Port) -> bool {
    let published = port.published.as_deref().unwrap_or_default();
    port.protocol == "tcp"
        && !published.is_empty()
        && !is_range(published)
        && !is_range(&port.target)
}

/// Decides what happens to one mapping: it becomes `port`, an entry of `ports` (collected in
/// `extra`), or it is warned about.
fn take(
    imp: &mut Importer<'_>,
    service: &Service<'_>,
    port: &Port,
    span: Span,
    out: &mut Map<String, Value>,
    extra: &mut Vec<Value>,
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
        let hint = "compose publishes it on a random host port; give it one (`PUBLIC:CONTAINER` in `ports:`) if it should be reachable";
        return warn(imp, message, Some(hint));
    };
    if is_range(published) || is_range(target) {
        let message = format!(
            "port range `{published}:{target}` is not carried over: wharf serves single ports"
        );
        let hint = "list each port of the range in `ports:` as `PUBLIC:CONTAINER`";
        return warn(imp, message, Some(hint));
    }
    // A built service runs as a container too.
    let image = out.contains_key("image") || out.contains_key("build");
    if out.contains_key("port") {
        return take_extra(imp, service, port, published, span, out, extra);
    }
    match published.parse::<u16>() {
        Ok(number) => out.insert("port".to_owned(), json!(number)),
        Err(_) if published.contains('$') => out.insert("port".to_owned(), json!(published)),
        Err(_) => return imp.error(span, format!("`{key}`: `{published}` is not a port number")),
    };
    if let Some(ip) = &port.host_ip {
        let message = format!(
            "host address {ip} of port {published} is not carried over: wharf's proxy listens on every interface for a service's `port`"
        );
        warn(imp, message, None);
    }
    // The container side is never dropped silently: `"$SENTRY_BIND:80/tcp"` keeps both. An
    // image keeps it as `container_port`; a process listens where wharf tells it.
    if target != published && image {
        match target.parse::<u16>() {
            Ok(number) => out.insert("container_port".to_owned(), json!(number)),
            Err(_) => out.insert("container_port".to_owned(), json!(target)),
        };
    } else if target != published {
        let message = format!(
            "container port {target} is not carried over: wharf's proxy serves {published} and forwards to each instance's own port"
        );
        let hint = if published.contains('$') {
            "make the service listen on `${PORT}`, which wharf sets for each instance; the variable must hold a port number only (no address)"
        } else {
            "make the service listen on `${PORT}`, which wharf sets for each instance"
        };
        warn(imp, message, Some(hint));
    }
    if published.contains('$') && (target == published || image) {
        let message = format!(
            "`{published}` is carried as the public port; the variable must hold a port number only (no address)"
        );
        imp.changed(key.clone(), span, format!("`{key}`: {message}"), None);
    }
}

/// A port beyond the main one: into `ports:` on an image service (the proxy passes it through
/// at TCP level), warned about where wharf cannot carry it.
fn take_extra(
    imp: &mut Importer<'_>,
    service: &Service<'_>,
    port: &Port,
    published: &str,
    span: Span,
    out: &Map<String, Value>,
    extra: &mut Vec<Value>,
) {
    let key = service.path("ports");
    let target = &port.target;
    let warn = |imp: &mut Importer<'_>, message: String, hint: Option<&str>| {
        imp.warn(key.clone(), span, format!("`{key}`: {message}"), hint)
    };
    if !out.contains_key("image") && !out.contains_key("build") {
        let message = format!(
            "extra port {published} is not carried over: a process gets one port (`${{PORT}}`)"
        );
        let hint = "run the service from its image to publish several ports, or reach the extra port directly";
        return warn(imp, message, Some(hint));
    }
    if out.contains_key("kind") {
        let message = format!(
            "extra port {published} is not carried over: a datastore is reached on its one `port`"
        );
        return warn(imp, message, None);
    }
    let main_target = out
        .get("container_port")
        .or_else(|| out.get("port"))
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned));
    let taken = main_target.as_deref() == Some(target.as_str())
        || extra
            .iter()
            .any(|e| extra_target(e) == Some(target.as_str()));
    if taken {
        let message = format!(
            "port {published} is not carried over: container port {target} is published already, and wharf publishes each container port once"
        );
        return warn(imp, message, None);
    }
    let host = match port.host_ip.as_deref() {
        None | Some("0.0.0.0") => String::new(),
        Some("127.0.0.1") => "127.0.0.1:".to_owned(),
        Some(ip) => {
            let message = format!(
                "host address {ip} of port {published} is not carried over: wharf's proxy binds 0.0.0.0 or 127.0.0.1"
            );
            warn(imp, message, None);
            String::new()
        }
    };
    if port.app_protocol.as_deref() == Some("http") {
        let mut entry = json!({"published": published, "target": target, "app_protocol": "http"});
        if !host.is_empty() {
            entry["host_ip"] = json!("127.0.0.1");
        }
        extra.push(entry);
    } else {
        extra.push(json!(format!("{host}{published}:{target}")));
    }
}

/// The container port of an entry of `ports:` as [`take_extra`] writes it.
fn extra_target(entry: &Value) -> Option<&str> {
    match entry {
        Value::String(text) => text.rsplit(':').next(),
        _ => entry["target"].as_str(),
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
        app_protocol: None,
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
        if matches!(name, "mode" | "name") {
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
        app_protocol: text("app_protocol"),
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
            app_protocol: None,
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
