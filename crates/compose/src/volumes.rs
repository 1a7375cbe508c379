//! `volumes:` and `pull_policy:` of an `image:` service, and the top-level `volumes:`
//! declarations.
//!
//! wharf mounts a container's volumes as compose does: a named volume of the stack (created on
//! first use, named `STACK_NAME` like compose's `PROJECT_NAME`, kept across `down`) or a host
//! path. Bind sources stay as compose wrote them: relative to the compose file, which is
//! relative to the wharf.yaml written beside it. What has no place in the manifest (anonymous
//! volumes, tmpfs, SELinux relabelling, volume drivers, external volumes) is warned about at
//! the service's line.

use serde_json::{Map, Value, json};
use wharf_manifest::yaml::{Node, NodeKind};

use crate::service::{Service, key_span, scalar};
use crate::{Importer, map_entries};

/// A service's `volumes:` → the manifest's short syntax (`NAME:/path`, `./dir:/path:ro`).
/// Only an `image:` service mounts anything: a local process sees the host's filesystem.
pub(crate) fn convert(imp: &mut Importer<'_>, service: &Service<'_>, out: &mut Map<String, Value>) {
    let Some(node) = service.node.get("volumes") else {
        return;
    };
    if !out.contains_key("image") && !out.contains_key("build") {
        let (message, hint) = crate::keys::service_key(service.name, "volumes");
        imp.warn(
            service.path("volumes"),
            key_span(service.node, "volumes", node),
            message,
            hint,
        );
        return;
    }
    let items: &[Node] = match &node.kind {
        NodeKind::Seq(items) => items,
        NodeKind::Null => &[],
        _ => {
            imp.error(
                node.span,
                format!("`{}` must be a list", service.path("volumes")),
            );
            return;
        }
    };
    let mut mounts = Vec::new();
    for item in items {
        let mount = match &item.kind {
            NodeKind::Map(_) => long(imp, service, item),
            _ => scalar(imp, item, &service.path("volumes"))
                .and_then(|text| short(imp, service, item, &text)),
        };
        mounts.extend(mount);
    }
    if !mounts.is_empty() {
        out.insert("volumes".to_owned(), json!(mounts));
    }
}

/// compose's short syntax, `[SOURCE:]TARGET[:MODE]`.
fn short(imp: &mut Importer<'_>, service: &Service<'_>, item: &Node, text: &str) -> Option<String> {
    let parts = split_colons(text);
    let (source, target, mode) = match parts.as_slice() {
        [_] => {
            anonymous(imp, service, item, text);
            return None;
        }
        [source, target] => (*source, *target, ""),
        [source, target, mode] => (*source, *target, *mode),
        _ => {
            imp.error(
                item.span,
                format!("`{}`: `{text}` has too many `:`", service.path("volumes")),
            );
            return None;
        }
    };
    let mut read_only = false;
    let mut dropped = Vec::new();
    for option in mode.split(',').filter(|o| !o.is_empty()) {
        match option {
            "ro" => read_only = true,
            "rw" => {}
            other => dropped.push(other),
        }
    }
    if !dropped.is_empty() {
        let message = format!(
            "`{}`: mount option(s) `{}` of `{text}` not carried over; the mount is kept{}",
            service.path("volumes"),
            dropped.join(","),
            if read_only { ", read-only" } else { "" },
        );
        let hint = "wharf mounts with the engine's defaults: relabel SELinux contexts (`z`, `Z`) on the host if it enforces them";
        imp.warn(service.path("volumes"), item.span, message, Some(hint));
    }
    mount(imp, service, item, source, target, read_only)
}

/// compose's long syntax, `{type, source, target, read_only, …}`.
fn long(imp: &mut Importer<'_>, service: &Service<'_>, item: &Node) -> Option<String> {
    let path = service.path("volumes");
    let kind = item.get("type").and_then(Node::as_str).unwrap_or("volume");
    let target = item.get("target").and_then(Node::as_str);
    let source = item.get("source").and_then(Node::as_str);
    let read_only = matches!(
        item.get("read_only").and_then(Node::as_str),
        Some("true" | "True" | "yes")
    );
    match kind {
        "volume" | "bind" => {}
        other => {
            let message = format!(
                "`{path}`: a `type: {other}` mount{} is not carried over",
                target.map(|t| format!(" at `{t}`")).unwrap_or_default()
            );
            let hint = if other == "tmpfs" {
                "wharf mounts named volumes and host directories only; write to a named volume instead"
            } else {
                "wharf mounts named volumes and host directories only"
            };
            imp.warn(path, item.span, message, Some(hint));
            return None;
        }
    }
    let Some(target) = target else {
        imp.error(item.span, format!("`{path}`: a mount needs a `target`"));
        return None;
    };
    let Some(source) = source.filter(|s| !s.is_empty()) else {
        anonymous(imp, service, item, target);
        return None;
    };
    for (key, _) in map_entries(item) {
        let Some(name) = key.as_str() else { continue };
        if !matches!(name, "type" | "source" | "target" | "read_only") {
            let message = format!(
                "`{path}`: `{name}` of the mount at `{target}` is not carried over; the mount is kept"
            );
            imp.warn(format!("{path}.{name}"), key.span, message, None);
        }
    }
    if kind == "bind" && !is_path(source) {
        // compose reads a bind's source as a path even without `./`.
        return mount(
            imp,
            service,
            item,
            &format!("./{source}"),
            target,
            read_only,
        );
    }
    mount(imp, service, item, source, target, read_only)
}

/// One mount in the manifest's short syntax, or a warning when its source has no place there.
fn mount(
    imp: &mut Importer<'_>,
    service: &Service<'_>,
    item: &Node,
    source: &str,
    target: &str,
    read_only: bool,
) -> Option<String> {
    if let Some(home) = source.strip_prefix('~') {
        let message = format!(
            "`{}`: `{source}` (in the home directory) is not carried over",
            service.path("volumes")
        );
        let hint = format!(
            "write the directory's absolute path, `/home/USER{home}:{target}`, in wharf.yaml"
        );
        imp.warn(service.path("volumes"), item.span, message, Some(&hint));
        return None;
    }
    let mode = if read_only { ":ro" } else { "" };
    let source = match &imp.bind_base {
        Some(base) if source == "." || source.starts_with("./") || source.starts_with("../") => {
            rebase(base, source)
        }
        _ => source.to_owned(),
    };
    Some(format!("{source}:{target}{mode}"))
}

/// The compose file's directory relative to `manifest_dir` (both made absolute and lexically
/// normalised), or `None` when they are the same directory.
pub(crate) fn bind_base(
    manifest_dir: &std::path::Path,
    compose_file: &std::path::Path,
) -> Option<String> {
    use std::path::Component;
    let compose_dir = compose_file.parent()?;
    let parts = |path: &std::path::Path| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for component in path.components() {
            match component {
                Component::Normal(part) => out.push(part.to_string_lossy().into_owned()),
                Component::ParentDir => {
                    out.pop();
                }
                _ => {}
            }
        }
        out
    };
    let (from, to) = (parts(manifest_dir), parts(compose_dir));
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut relative: Vec<String> = vec!["..".to_owned(); from.len() - common];
    relative.extend(to[common..].iter().cloned());
    (!relative.is_empty()).then(|| relative.join("/"))
}

/// `base/source` as a relative path starting with `./` or `../`, `.` and `x/..` folded.
pub(crate) fn rebase(base: &str, source: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in base.split('/').chain(source.split('/')) {
        match part {
            "" | "." => {}
            ".." if out.last().is_some_and(|last| *last != "..") => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    let trailing = if source.ends_with('/') { "/" } else { "" };
    match out.first() {
        None => ".".to_owned(),
        Some(&"..") => format!("{}{trailing}", out.join("/")),
        Some(_) => format!("./{}{trailing}", out.join("/")),
    }
}

/// `text` split at its `:`s, except those inside a `${…}` (`${DIR:-.}/data:/data`).
fn split_colons(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    let bytes = text.as_bytes();
    for (i, byte) in bytes.iter().enumerate() {
        match byte {
            b'{' if i > 0 && bytes[i - 1] == b'$' => depth += 1,
            b'}' if depth > 0 => depth -= 1,
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

/// A host path as compose tells one from a volume name (a `${VAR}` is left for the manifest to
/// resolve, as compose would).
fn is_path(source: &str) -> bool {
    source.starts_with(['/', '.', '~', '$'])
}

fn anonymous(imp: &mut Importer<'_>, service: &Service<'_>, item: &Node, target: &str) {
    let message = format!(
        "`{}`: the anonymous volume at `{target}` is not carried over: the container writes there into its own filesystem",
        service.path("volumes")
    );
    let hint = format!(
        "name it to keep its data across restarts: `{}-data:{target}` (and declare it under top-level `volumes:`)",
        service.name
    );
    imp.warn(service.path("volumes"), item.span, message, Some(&hint));
}

/// `pull_policy:` → the manifest's `missing | always | never`.
pub(crate) fn pull_policy(
    imp: &mut Importer<'_>,
    service: &Service<'_>,
    out: &mut Map<String, Value>,
) {
    let Some(node) = service.node.get("pull_policy") else {
        return;
    };
    let span = key_span(service.node, "pull_policy", node);
    let path = service.path("pull_policy");
    let text = node.as_str().unwrap_or_default();
    let policy = match text {
        "always" => Some("always"),
        "missing" | "if_not_present" => Some("missing"),
        "never" => Some("never"),
        _ => None,
    };
    match policy {
        Some(_) if out.contains_key("build") => {
            let message = format!(
                "`{path}` is not carried over: wharf builds this service's image from its context and never pulls it"
            );
            imp.warn(path, span, message, None);
        }
        Some(policy) if out.contains_key("image") => {
            // `missing` is the manifest's default.
            if policy != "missing" {
                out.insert("pull_policy".to_owned(), json!(policy));
            }
        }
        Some(_) => {
            let message = format!(
                "`{path}` is not carried over: the service runs a local process, not an image"
            );
            imp.warn(path, span, message, None);
        }
        None => {
            let message = format!(
                "`{path}: {text}` is not carried over: wharf pulls an image when it is missing (`missing`), every time (`always`) or never (`never`)"
            );
            let hint =
                "the image is pulled when missing; `wharf deploy` of a new tag pulls that tag";
            imp.warn(path, span, message, Some(hint));
        }
    }
}

/// The top-level `volumes:` declarations: a plain one (or `driver: local`) is what wharf makes
/// on first use, so it needs nothing in the manifest; the rest is warned about at its key.
pub(crate) fn top_level(imp: &mut Importer<'_>, project: &str, node: &Node) {
    for (name, declaration) in map_entries(node) {
        let Some(volume) = name.as_str() else {
            continue;
        };
        for (key, value) in map_entries(declaration) {
            let Some(option) = key.as_str() else { continue };
            let path = format!("volumes.{volume}.{option}");
            let (message, hint) = match (option, value.as_str()) {
                ("driver", Some("local")) => continue,
                ("external", Some("false")) => continue,
                ("external", _) => (
                    format!(
                        "`{path}` is not carried over: wharf creates and owns the stack's volume `{project}_{volume}`, it does not use an existing `{volume}`"
                    ),
                    Some(format!(
                        "to keep the existing data, copy it into `{project}_{volume}` before `wharf up`, or mount the host directory instead"
                    )),
                ),
                ("name", _) => (
                    format!(
                        "`{path}` is not carried over: wharf names the volume `{project}_{volume}`"
                    ),
                    None,
                ),
                _ => (
                    format!(
                        "`{path}` is not carried over: wharf creates local volumes with the engine's defaults"
                    ),
                    None,
                ),
            };
            imp.warn(path, key.span, message, hint.as_deref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{bind_base, rebase, split_colons};
    use std::path::Path;

    #[test]
    fn binds_are_rebased_onto_the_manifests_directory() {
        let base =
            |manifest: &str, compose: &str| bind_base(Path::new(manifest), Path::new(compose));
        assert_eq!(base("/srv/app", "/srv/app/docker-compose.yml"), None);
        assert_eq!(
            base("/srv", "/srv/app/docker-compose.yml").as_deref(),
            Some("app")
        );
        assert_eq!(
            base("/srv/wharf", "/srv/app/docker-compose.yml").as_deref(),
            Some("../app")
        );
        assert_eq!(rebase("app", "./data"), "./app/data");
        assert_eq!(rebase("app", "."), "./app");
        assert_eq!(rebase("app", "../shared/conf/"), "./shared/conf/");
        assert_eq!(rebase("../app", "./data"), "../app/data");
        assert_eq!(rebase("../app", "../x"), "../x");
    }

    #[test]
    fn colons_inside_variables_do_not_split() {
        assert_eq!(
            split_colons("${DIR:-.}/dags:/opt/dags:ro"),
            ["${DIR:-.}/dags", "/opt/dags", "ro"]
        );
        assert_eq!(split_colons("data:/data"), ["data", "/data"]);
        assert_eq!(split_colons("/data"), ["/data"]);
    }
}
