//! The container options compose users rely on — `user`, `working_dir`, `ulimits`,
//! `shm_size`, `cap_add` / `cap_drop`, `read_only`, `tmpfs`, `networks` — carried onto
//! `image:` services, `stop_grace_period` / `stop_signal` onto every service as `stop:`, and
//! the top-level `networks:` with their `internal` flag. What has no wharf equivalent (network
//! drivers, IPAM, per-network aliases, a signal wharf does not send) is warned about at the
//! line of the service or network that sets it.

use indexmap::IndexMap;
use serde_json::{Map, Value, json};
use wharf_manifest::yaml::{Node, NodeKind};

use crate::service::{Service, key_span, scalar};
use crate::{Importer, map_entries};

/// The service keys this module carries (or warns about itself).
pub(crate) const KEYS: &[&str] = &[
    "user",
    "working_dir",
    "ulimits",
    "shm_size",
    "cap_add",
    "cap_drop",
    "read_only",
    "tmpfs",
    "networks",
    "stop_grace_period",
    "stop_signal",
];

/// What a top-level network became: declared in wharf.yaml (with `internal`), or left out
/// (`external`, and compose's own `default`, which is wharf's stack network).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NetworkFate {
    Declared { internal: bool },
    External,
    Default,
}

/// The compose file's top-level networks by compose name.
pub(crate) type Networks = IndexMap<String, (String, NetworkFate)>;

/// Reads the top-level `networks:`: each becomes a wharf network of the same name (made
/// valid) with its `internal`; an `external` one is not declared (wharf makes its own); every
/// other setting is warned about.
pub(crate) fn top_level(imp: &mut Importer<'_>, node: &Node) -> (Networks, Map<String, Value>) {
    let mut networks = Networks::new();
    let mut out = Map::new();
    for (key, value) in map_entries(node) {
        let Some(name) = key.as_str() else { continue };
        let wharf = crate::keys::service_name(name);
        let external = value
            .get("external")
            .is_some_and(|e| e.as_str() != Some("false"));
        let internal = value.get("internal").and_then(Node::as_str) == Some("true");
        let fate = if name == "default" {
            NetworkFate::Default
        } else if external {
            NetworkFate::External
        } else {
            NetworkFate::Declared { internal }
        };
        if fate == NetworkFate::External {
            let message = format!(
                "network `{name}` is external and is not carried over: wharf joins only networks it makes"
            );
            let hint = "services on it are put on their other networks; declare it in this file (without `external`) if the containers must share it";
            imp.warn(format!("networks.{name}"), key.span, message, Some(hint));
        }
        for (setting, _) in map_entries(value) {
            let Some((setting, span)) = setting_name(setting) else {
                continue;
            };
            let carried = matches!(
                (fate, setting),
                (NetworkFate::Declared { .. }, "internal" | "external")
                    | (NetworkFate::External, _)
            );
            if carried {
                continue;
            }
            let path = format!("networks.{name}.{setting}");
            let (message, hint) = if fate == NetworkFate::Default && setting == "internal" {
                (
                    format!(
                        "`{path}` is not carried over: wharf's `default` network always routes out"
                    ),
                    "declare an internal network of another name and list it in the services' `networks:`",
                )
            } else {
                (
                    format!("`{path}` is not carried over: wharf.yaml has no equivalent"),
                    "wharf makes bridge networks with the engine's defaults; only `internal` is carried",
                )
            };
            imp.warn(path, span, message, Some(hint));
        }
        if let NetworkFate::Declared { internal } = fate {
            let mut network = Map::new();
            if internal {
                network.insert("internal".to_owned(), json!(true));
            }
            out.insert(wharf.clone(), Value::Object(network));
        }
        networks.insert(name.to_owned(), (wharf, fate));
    }
    (networks, out)
}

fn setting_name(key: &Node) -> Option<(&str, wharf_manifest::Span)> {
    key.as_str().map(|name| (name, key.span))
}

/// Carries this module's keys of one service into `out`; `image` says whether the service
/// runs as a container (the options apply only there; `stop` applies to both).
pub(crate) fn convert(
    imp: &mut Importer<'_>,
    service: &Service<'_>,
    networks: &Networks,
    out: &mut Map<String, Value>,
) {
    stop(imp, service, out);
    // A built service runs as a container too.
    let image = out.contains_key("image") || out.contains_key("build");
    for key in [
        "user",
        "working_dir",
        "ulimits",
        "shm_size",
        "cap_add",
        "cap_drop",
        "read_only",
        "tmpfs",
        "networks",
    ] {
        let Some(value) = service.node.get(key) else {
            continue;
        };
        if !image {
            let message = format!(
                "`{}` is not carried over: it configures a container, and this service runs as a local process",
                service.path(key)
            );
            let hint = match key {
                "networks" => {
                    "local processes reach each other on loopback, through the wharf proxy on each service's `port`"
                }
                "working_dir" => {
                    "the command runs in the directory of wharf.yaml; `cd` in the command if it needs another"
                }
                _ => "run the image with `image:` to keep it, or set it in the command",
            };
            imp.warn(
                service.path(key),
                key_span(service.node, key, value),
                message,
                Some(hint),
            );
            continue;
        }
        let carried = match key {
            "ulimits" => ulimits(imp, service, value),
            "cap_add" | "cap_drop" | "tmpfs" => list(imp, service, key, value),
            "networks" => service_networks(imp, service, networks, value, out),
            _ => scalar(imp, value, &service.path(key)).map(|text| plain(key, text)),
        };
        if let Some(carried) = carried {
            out.insert(key.to_owned(), carried);
        }
    }
}

/// A scalar as YAML would type it: `read_only: true` stays a boolean.
fn plain(key: &str, text: String) -> Value {
    match (key, text.as_str()) {
        ("read_only", "true") => json!(true),
        ("read_only", "false") => json!(false),
        _ => json!(text),
    }
}

/// `stop_grace_period` → `stop.grace`, `stop_signal` → `stop.signal`, when wharf can do what
/// they say; otherwise a warning at the key.
fn stop(imp: &mut Importer<'_>, service: &Service<'_>, out: &mut Map<String, Value>) {
    let mut stop = Map::new();
    if let Some(node) = service.node.get("stop_grace_period") {
        let text = node.as_str().unwrap_or_default();
        match text.parse::<wharf_manifest::values::Duration>() {
            Ok(_) => {
                stop.insert("grace".to_owned(), json!(text));
            }
            Err(_) => {
                let message = format!(
                    "`{}: {text}` is not carried over: wharf cannot read this duration",
                    service.path("stop_grace_period")
                );
                imp.warn(
                    service.path("stop_grace_period"),
                    key_span(service.node, "stop_grace_period", node),
                    message,
                    Some("write it as `stop: {grace: 30s}` (units ms, s, m, h, d)"),
                );
            }
        }
    }
    if let Some(node) = service.node.get("stop_signal") {
        let text = node.as_str().unwrap_or_default();
        match wharf_manifest::container_options::signal_name(text) {
            Some(name) => {
                stop.insert("signal".to_owned(), json!(name));
            }
            None => {
                let message = format!(
                    "`{}: {text}` is not carried over: wharf does not stop services with this signal",
                    service.path("stop_signal")
                );
                let hint = format!(
                    "wharf sends one of {}; the service gets SIGTERM",
                    wharf_manifest::model::STOP_SIGNALS.join(", ")
                );
                imp.warn(
                    service.path("stop_signal"),
                    key_span(service.node, "stop_signal", node),
                    message,
                    Some(&hint),
                );
            }
        }
    }
    if !stop.is_empty() {
        out.insert("stop".to_owned(), Value::Object(stop));
    }
}

/// `nofile: 65535` or `nofile: {soft, hard}`, kept as written.
fn ulimits(imp: &mut Importer<'_>, service: &Service<'_>, node: &Node) -> Option<Value> {
    let mut out = Map::new();
    for (key, value) in map_entries(node) {
        let Some(name) = key.as_str() else { continue };
        let path = service.path(&format!("ulimits.{name}"));
        if !wharf_manifest::model::ULIMITS.contains(&name) {
            let message =
                format!("`{path}` is not carried over: `{name}` is not a limit docker knows");
            imp.warn(path, key.span, message, None);
            continue;
        }
        let limit = match &value.kind {
            NodeKind::Map(_) => {
                let soft = value.get("soft").and_then(Node::as_str);
                let hard = value.get("hard").and_then(Node::as_str);
                match (soft.and_then(number), hard.and_then(number)) {
                    (Some(soft), Some(hard)) => json!({"soft": soft, "hard": hard}),
                    _ => {
                        imp.error(
                            value.span,
                            format!("`{path}`: expected `soft` and `hard` numbers"),
                        );
                        continue;
                    }
                }
            }
            _ => match value.as_str().and_then(number) {
                Some(both) => json!(both),
                None => {
                    imp.error(value.span, format!("`{path}`: expected a number"));
                    continue;
                }
            },
        };
        out.insert(name.to_owned(), limit);
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

fn number(text: &str) -> Option<i64> {
    text.trim().parse().ok()
}

/// A list of strings (one string is a list of one).
fn list(imp: &mut Importer<'_>, service: &Service<'_>, key: &str, node: &Node) -> Option<Value> {
    let items: Vec<String> = match &node.kind {
        NodeKind::Seq(items) => items
            .iter()
            .filter_map(|item| scalar(imp, item, &service.path(key)))
            .collect(),
        NodeKind::Null => Vec::new(),
        _ => vec![scalar(imp, node, &service.path(key))?],
    };
    (!items.is_empty()).then(|| json!(items))
}

/// The service's networks as a list of wharf names: compose's list form, or its mapping form
/// whose per-network settings (`aliases`, `ipv4_address`, …) are warned about. An external
/// network is left out; a service with a port whose networks are all internal also joins
/// `default`, since its port is published on loopback.
fn service_networks(
    imp: &mut Importer<'_>,
    service: &Service<'_>,
    networks: &Networks,
    node: &Node,
    out: &Map<String, Value>,
) -> Option<Value> {
    let mut names: Vec<(&Node, &str)> = Vec::new();
    match &node.kind {
        NodeKind::Seq(items) => {
            names.extend(items.iter().filter_map(|item| Some((item, item.as_str()?))));
        }
        NodeKind::Map(entries) => {
            for (key, value) in entries {
                let Some(name) = key.as_str() else { continue };
                names.push((key, name));
                for (setting, _) in map_entries(value) {
                    let Some(setting_name) = setting.as_str() else {
                        continue;
                    };
                    let path = service.path(&format!("networks.{name}.{setting_name}"));
                    let message = format!(
                        "`{path}` is not carried over: wharf.yaml has no per-network settings"
                    );
                    let hint =
                        "the container answers to its service name on every network it joins";
                    imp.warn(path, setting.span, message, Some(hint));
                }
            }
        }
        _ => {
            imp.error(
                node.span,
                format!("`{}` must be a list or a mapping", service.path("networks")),
            );
            return None;
        }
    }
    let mut out_names: Vec<String> = Vec::new();
    let mut internal_only = true;
    for (at, name) in names {
        match networks.get(name) {
            Some((wharf, NetworkFate::Declared { internal })) => {
                internal_only &= *internal;
                out_names.push(wharf.clone());
            }
            Some((_, NetworkFate::External)) => {
                let path = service.path("networks");
                let message = format!(
                    "`{path}`: network `{name}` is external and is not carried over; `{}` is not on it",
                    service.name
                );
                imp.warn(path, at.span, message, Some("declare the network in this file if the containers must share it"));
            }
            Some((_, NetworkFate::Default)) | None if name == "default" => {
                internal_only = false;
                out_names.push("default".to_owned());
            }
            _ => imp.error(
                at.span,
                format!(
                    "service `{}` refers to network `{name}`, which is not declared under the top-level `networks:`",
                    service.name
                ),
            ),
        }
    }
    if out_names.is_empty() {
        return None;
    }
    if internal_only && (out.contains_key("port") || out.contains_key("ports")) {
        out_names.push("default".to_owned());
        let message = format!(
            "`{}`: `{}` also joins `default`: its networks are all internal, and wharf publishes its port on loopback",
            service.path("networks"),
            service.name
        );
        imp.changed(
            service.path("networks"),
            key_span(service.node, "networks", node),
            message,
            Some("compose would publish no port of a container on internal networks only"),
        );
    }
    Some(json!(out_names))
}
