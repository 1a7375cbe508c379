//! The settings of an `image:` service's container beyond image and command — `user`,
//! `working_dir`, `ulimits`, `shm_size`, `cap_add` / `cap_drop`, `read_only`, `tmpfs`,
//! `networks` — the stack's top-level `networks:`, and every service's `stop:` (signal and
//! grace, for processes and containers alike). Names are checked against the kernel's and
//! docker's own lists here, so a typo is an error with a suggestion, not a failed start.

use indexmap::IndexMap;

use crate::decode::{Decoder, Fields, list, suggestion};
use crate::diagnostic::{Diagnostic, Span};
use crate::model::{
    CAPABILITIES, ContainerOptions, Network, STOP_SIGNALS, Stack, Stop, ULIMITS, Ulimit,
};
use crate::schema::References;
use crate::values::DurationRule;
use crate::yaml::{Node, NodeKind};

/// The keys of an `image:` service this module reads.
pub(crate) const OPTION_KEYS: &[&str] = &[
    "user",
    "working_dir",
    "ulimits",
    "shm_size",
    "cap_add",
    "cap_drop",
    "read_only",
    "tmpfs",
    "networks",
];

/// The stack's own network, which every container joins unless it names others; it needs no
/// declaration and takes none.
pub const DEFAULT_NETWORK: &str = "default";

/// Where a service names networks, for the cross-check once the top-level ones are known.
pub(crate) struct NetworkUse {
    pub service: String,
    /// The `networks` key of the service.
    pub key: Span,
    pub names: Vec<(String, Span)>,
    /// The service has a `port:`, published on loopback: one of its networks must route out.
    pub has_port: bool,
}

/// Reads the option keys of `image:` service `name`.
pub(crate) fn options(
    decoder: &mut Decoder,
    name: &str,
    fields: &Fields<'_>,
    refs: &mut References,
) -> ContainerOptions {
    let field = |key: &str| format!("`services.{name}.{key}`");
    let mut options = ContainerOptions {
        user: fields
            .get("user")
            .and_then(|n| user(decoder, &field("user"), n)),
        working_dir: fields
            .get("working_dir")
            .and_then(|n| absolute_path(decoder, &field("working_dir"), n)),
        ulimits: fields
            .get("ulimits")
            .map(|n| ulimits(decoder, &field("ulimits"), n))
            .unwrap_or_default(),
        shm_size: fields
            .get("shm_size")
            .and_then(|n| shm_size(decoder, &field("shm_size"), n)),
        cap_add: fields
            .get("cap_add")
            .map(|n| capabilities(decoder, &field("cap_add"), n))
            .unwrap_or_default(),
        cap_drop: fields
            .get("cap_drop")
            .map(|n| capabilities(decoder, &field("cap_drop"), n))
            .unwrap_or_default(),
        read_only: fields
            .get("read_only")
            .and_then(|n| decoder.boolean(n, &field("read_only")))
            .unwrap_or(false),
        tmpfs: fields
            .get("tmpfs")
            .map(|n| tmpfs(decoder, &field("tmpfs"), n))
            .unwrap_or_default(),
        networks: Vec::new(),
    };
    if let Some(node) = fields.get("networks") {
        let names = service_networks(decoder, &field("networks"), node);
        options.networks = names.iter().map(|(n, _)| n.clone()).collect();
        refs.networks.push(NetworkUse {
            service: name.to_owned(),
            key: fields.key_span("networks").unwrap_or(node.span),
            names,
            has_port: fields.has("port"),
        });
    }
    options
}

/// `name`, `uid`, `name:group` or `uid:gid`, as docker's `--user` takes it.
fn user(decoder: &mut Decoder, what: &str, node: &Node) -> Option<String> {
    let text = decoder.name(node, what)?;
    let part = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    };
    let valid = match text.split_once(':') {
        Some((user, group)) => part(user) && part(group),
        None => part(&text),
    };
    if !valid {
        decoder.push(
            Diagnostic::error(node.span, format!("{what}: `{text}` is not a user"))
                .with_label("expected `name`, `uid` or `uid:gid`")
                .with_hint("write a user name or number, optionally with `:` and a group (`1000:1000`, `postgres`)"),
        );
        return None;
    }
    Some(text)
}

fn absolute_path(decoder: &mut Decoder, what: &str, node: &Node) -> Option<String> {
    let text = decoder.name(node, what)?;
    if !text.starts_with('/') {
        decoder.push(
            Diagnostic::error(
                node.span,
                format!("{what}: `{text}` is not an absolute path"),
            )
            .with_label("expected a path starting with `/`")
            .with_hint("paths inside the container are absolute: `/app`, not `app`"),
        );
        return None;
    }
    Some(text)
}

/// `nofile: 65535` (soft and hard) or `nofile: {soft: 1024, hard: 65535}`; -1 is unlimited.
fn ulimits(decoder: &mut Decoder, what: &str, node: &Node) -> IndexMap<String, Ulimit> {
    let mut out = IndexMap::new();
    for (name, key, value) in decoder.named_entries(node, what) {
        if !ULIMITS.contains(&name.as_str()) {
            let hint = suggestion(&name, ULIMITS)
                .unwrap_or_else(|| format!("the limits are {}", list(ULIMITS)));
            decoder.push(
                Diagnostic::error(key.span, format!("{what}: unknown limit `{name}`"))
                    .with_label("unknown limit")
                    .with_hint(hint),
            );
            continue;
        }
        let what = sub(what, &name);
        let limit = match &value.kind {
            NodeKind::Map(_) => {
                let Some(fields) = decoder.fields(value, &what, &["soft", "hard"]) else {
                    continue;
                };
                let soft = fields.require(decoder, "soft", &what);
                let hard = fields.require(decoder, "hard", &what);
                let soft = soft.and_then(|n| limit_value(decoder, &sub(&what, "soft"), n));
                let hard = hard.and_then(|n| limit_value(decoder, &sub(&what, "hard"), n));
                let (Some(soft), Some(hard)) = (soft, hard) else {
                    continue;
                };
                let above = hard != -1 && (soft == -1 || soft > hard);
                if above {
                    decoder.push(
                        Diagnostic::error(
                            value.span,
                            format!("{what}: the soft limit {soft} is above the hard limit {hard}"),
                        )
                        .with_hint("the soft limit is at most the hard one (-1 is unlimited)"),
                    );
                    continue;
                }
                Ulimit { soft, hard }
            }
            _ => match limit_value(decoder, &what, value) {
                Some(both) => Ulimit {
                    soft: both,
                    hard: both,
                },
                None => continue,
            },
        };
        out.insert(name, limit);
    }
    out
}

fn limit_value(decoder: &mut Decoder, what: &str, node: &Node) -> Option<i64> {
    decoder.integer::<i64>(node, what, -1, i64::MAX)
}

/// compose's byte notation: an integer (bytes) or a number with `b`, `k`/`kb`, `m`/`mb`,
/// `g`/`gb` (powers of 1024, any case).
fn shm_size(decoder: &mut Decoder, what: &str, node: &Node) -> Option<u64> {
    let text = decoder.name(node, what)?;
    match bytes(&text) {
        Some(size) if size > 0 => Some(size),
        _ => {
            decoder.push(
                Diagnostic::error(node.span, format!("{what}: `{text}` is not a size"))
                    .with_label("expected a size such as `64m`")
                    .with_hint("write bytes, or a number with `b`, `k`, `m` or `g` (`64m`, `1gb`)"),
            );
            None
        }
    }
}

/// Bytes in compose's notation, `None` when it is not one.
pub fn bytes(text: &str) -> Option<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let digits = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let number: u64 = lower[..digits].parse().ok()?;
    let unit: u64 = match &lower[digits..] {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(unit)
}

/// Capability names, with or without `CAP_`, any case, or `ALL`; stored as docker lists them
/// (`NET_ADMIN`).
fn capabilities(decoder: &mut Decoder, what: &str, node: &Node) -> Vec<String> {
    let mut out = Vec::new();
    for item in list_items(node) {
        let Some(text) = decoder.name(item, what) else {
            continue;
        };
        match capability(&text) {
            Some(name) => out.push(name),
            None => {
                let upper = text.to_ascii_uppercase();
                let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
                let hint = suggestion(bare, CAPABILITIES).unwrap_or_else(|| {
                    "see `man 7 capabilities` for the names; `ALL` means every one".to_owned()
                });
                decoder.push(
                    Diagnostic::error(item.span, format!("{what}: unknown capability `{text}`"))
                        .with_label("not a Linux capability")
                        .with_hint(hint),
                );
            }
        }
    }
    out
}

/// The capability `text` names, as docker spells it, if it is one.
pub fn capability(text: &str) -> Option<String> {
    let upper = text.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    (bare == "ALL" || CAPABILITIES.contains(&bare)).then(|| bare.to_owned())
}

/// `/tmp` or `/run:size=64m,mode=1777`: absolute paths, with docker's tmpfs options.
fn tmpfs(decoder: &mut Decoder, what: &str, node: &Node) -> Vec<String> {
    let mut out = Vec::new();
    for item in list_items(node) {
        let Some(text) = decoder.name(item, what) else {
            continue;
        };
        if !text.starts_with('/') {
            decoder.push(
                Diagnostic::error(
                    item.span,
                    format!("{what}: `{text}` is not an absolute path"),
                )
                .with_hint("write the directory inside the container: `/tmp`, `/run:size=64m`"),
            );
            continue;
        }
        out.push(text);
    }
    out
}

/// A list, or one scalar read as a list of one.
fn list_items(node: &Node) -> &[Node] {
    match &node.kind {
        NodeKind::Seq(items) => items,
        NodeKind::Null => &[],
        _ => std::slice::from_ref(node),
    }
}

/// A service's `networks: [a, b]`; compose's mapping form is refused with what to write.
fn service_networks(decoder: &mut Decoder, what: &str, node: &Node) -> Vec<(String, Span)> {
    if let NodeKind::Map(_) = node.kind {
        decoder.push(
            Diagnostic::error(node.span, format!("{what}: expected a list of network names"))
                .with_label("per-network settings are not built yet")
                .with_hint("write `networks: [backend, default]`; a container answers to its service name on each"),
        );
        return Vec::new();
    }
    let mut out: Vec<(String, Span)> = Vec::new();
    for item in decoder.items(node, what) {
        let Some(name) = decoder.name(item, what) else {
            continue;
        };
        if out.iter().any(|(n, _)| *n == name) {
            decoder.push(
                Diagnostic::error(item.span, format!("{what}: `{name}` is listed twice"))
                    .with_label("listed twice"),
            );
            continue;
        }
        out.push((name, item.span));
    }
    if out.is_empty() {
        decoder.push(
            Diagnostic::error(node.span, format!("{what} is empty")).with_hint(
                "name at least one network, or remove `networks` for the stack's own (`default`)",
            ),
        );
    }
    out
}

/// The top-level `networks: {NAME: {internal: bool}}`.
pub(crate) fn networks(decoder: &mut Decoder, node: &Node) -> IndexMap<String, Network> {
    let mut out = IndexMap::new();
    for (name, key, value) in decoder.named_entries(node, "`networks`") {
        let what = format!("network `{name}`");
        if name == DEFAULT_NETWORK {
            decoder.push(
                Diagnostic::error(
                    key.span,
                    "network `default` is the stack's own network and is not declared",
                )
                .with_label("reserved")
                .with_hint(
                    "declare a network of another name, and list it in the services' `networks:`",
                ),
            );
            continue;
        }
        if !crate::schema::is_identifier(&name) {
            decoder.push(
                Diagnostic::error(
                    key.span,
                    format!("network name `{name}` has characters wharf cannot use"),
                )
                .with_hint("use letters, digits, `-` and `_`, starting with a letter"),
            );
            continue;
        }
        let Some(fields) = decoder.fields(value, &what, &["internal"]) else {
            continue;
        };
        let internal = fields
            .get("internal")
            .and_then(|n| decoder.boolean(n, &format!("`networks.{name}.internal`")))
            .unwrap_or(false);
        out.insert(name, Network { internal });
    }
    out
}

/// Each network a service names is `default` or declared, and a service with a `port:` is on
/// one that routes out: its port is published on loopback, which an internal network cannot
/// reach.
pub(crate) fn check_networks(decoder: &mut Decoder, stack: &Stack, refs: &References) {
    let declared: Vec<&str> = std::iter::once(DEFAULT_NETWORK)
        .chain(stack.networks.keys().map(String::as_str))
        .collect();
    for usage in &refs.networks {
        for (name, span) in &usage.names {
            if declared.contains(&name.as_str()) {
                continue;
            }
            let hint = suggestion(name, &declared).unwrap_or_else(|| {
                format!("declare it under the top-level `networks:` (`{name}: {{internal: false}}`), or use {}", list(&declared))
            });
            decoder.push(
                Diagnostic::error(
                    *span,
                    format!(
                        "service `{}` names network `{name}`, which is not declared",
                        usage.service
                    ),
                )
                .with_label("unknown network")
                .with_hint(hint),
            );
        }
        let internal = |name: &str| stack.networks.get(name).is_some_and(|n| n.internal);
        let all_internal =
            !usage.names.is_empty() && usage.names.iter().all(|(name, _)| internal(name));
        if usage.has_port && all_internal {
            decoder.push(
                Diagnostic::error(
                    usage.key,
                    format!("service `{}` has a `port:` but only internal networks", usage.service),
                )
                .with_label("no route to its published port")
                .with_hint("wharf reaches the port through loopback: add `default` or a network without `internal: true`"),
            );
        }
    }
}

/// A service's `stop: {signal, grace}`.
pub(crate) fn stop(decoder: &mut Decoder, name: &str, fields: &Fields<'_>) -> Stop {
    let Some(node) = fields.get("stop") else {
        return Stop::default();
    };
    let what = format!("`services.{name}.stop`");
    if !fields.has("command") && !fields.has("image") && !fields.has("build") {
        decoder.push(
            Diagnostic::error(
                fields.key_span("stop").unwrap_or(node.span),
                format!("{what} on a service wharf does not run"),
            )
            .with_hint("`stop` applies to services with `command:`, `image:` or `build:`"),
        );
    }
    let Some(stop) = decoder.fields(node, &what, &["signal", "grace"]) else {
        return Stop::default();
    };
    Stop {
        signal: stop
            .get("signal")
            .and_then(|n| signal(decoder, &sub(&what, "signal"), n)),
        grace: stop
            .get("grace")
            .and_then(|n| decoder.duration(n, &sub(&what, "grace"), DurationRule::Wait)),
    }
}

/// `what`'s sub-key, inside the backticks: `` `a.b` `` + `c` → `` `a.b.c` ``.
fn sub(what: &str, key: &str) -> String {
    match what.strip_suffix('`') {
        Some(inner) => format!("{inner}.{key}`"),
        None => format!("{what}.{key}"),
    }
}

/// A signal's name, with or without `SIG`, any case; answered as `SIGQUIT`.
pub fn signal_name(text: &str) -> Option<String> {
    let upper = text.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    STOP_SIGNALS.contains(&full.as_str()).then_some(full)
}

fn signal(decoder: &mut Decoder, what: &str, node: &Node) -> Option<String> {
    let text = decoder.name(node, what)?;
    let found = signal_name(&text);
    if found.is_none() {
        let upper = text.to_ascii_uppercase();
        let hint = suggestion(&upper, STOP_SIGNALS)
            .or_else(|| suggestion(&format!("SIG{upper}"), STOP_SIGNALS))
            .unwrap_or_else(|| format!("one of {}", list(STOP_SIGNALS)));
        decoder.push(
            Diagnostic::error(node.span, format!("{what}: `{text}` is not a stop signal"))
                .with_label("unknown signal")
                .with_hint(hint),
        );
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_byte_notation() {
        assert_eq!(bytes("64m"), Some(64 << 20));
        assert_eq!(bytes("1gb"), Some(1 << 30));
        assert_eq!(bytes("1GB"), Some(1 << 30));
        assert_eq!(bytes("512"), Some(512));
        assert_eq!(bytes("2k"), Some(2048));
        for bad in ["", "m", "64x", "1.5g", "-1", "99999999999999999999g"] {
            assert_eq!(bytes(bad), None, "{bad}");
        }
    }

    #[test]
    fn capability_and_signal_names() {
        assert_eq!(capability("CAP_NET_ADMIN").as_deref(), Some("NET_ADMIN"));
        assert_eq!(capability("sys_ptrace").as_deref(), Some("SYS_PTRACE"));
        assert_eq!(capability("all").as_deref(), Some("ALL"));
        assert_eq!(capability("NET_ADMN"), None);
        assert_eq!(signal_name("quit").as_deref(), Some("SIGQUIT"));
        assert_eq!(signal_name("SIGUSR1").as_deref(), Some("SIGUSR1"));
        assert_eq!(signal_name("SIGFOO"), None);
    }
}
