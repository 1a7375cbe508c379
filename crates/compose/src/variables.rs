//! `${PORT}`, `${INSTANCE}`, `${VERSION}` and `${SERVICE}` change meaning on import: compose
//! takes them from the host's environment, wharf fills them per instance inside a service's
//! `command`, `env` and `probes`. This module finds them so the user is told.

use wharf_manifest::INSTANCE_VARIABLES;
use wharf_manifest::yaml::{Node, NodeKind};

use crate::Importer;
use crate::service::Service;

/// The compose keys whose text lands in wharf's `command`, `env` or `probes`.
const SCOPED_KEYS: &[&str] = &["command", "entrypoint", "environment", "healthcheck"];

/// Warns once per scalar that refers to one of wharf's instance variables.
pub(crate) fn check(imp: &mut Importer<'_>, service: &Service<'_>) {
    for key in SCOPED_KEYS {
        if let Some(node) = service.node.get(key) {
            let mut found = Vec::new();
            scalars(node, &mut found);
            for scalar in found {
                warn(imp, service, key, scalar);
            }
        }
    }
}

fn warn(imp: &mut Importer<'_>, service: &Service<'_>, key: &str, scalar: &Node) {
    let Some(name) = scalar.as_str().and_then(instance_reference) else {
        return;
    };
    let message = format!(
        "`${{{name}}}` changes meaning: compose reads it from the host's environment, wharf fills `{name}` for each instance"
    );
    let hint = format!(
        "to keep the host's value, write `${{{name}:-}}`; the per-instance value is usually what a service wants"
    );
    imp.changed(service.path(key), scalar.span, message, Some(&hint));
}

fn scalars<'n>(node: &'n Node, out: &mut Vec<&'n Node>) {
    match &node.kind {
        NodeKind::Scalar { .. } => out.push(node),
        NodeKind::Seq(items) => items.iter().for_each(|item| scalars(item, out)),
        NodeKind::Map(entries) => entries.iter().for_each(|(_, value)| scalars(value, out)),
        NodeKind::Null => {}
    }
}

/// The first plain `$NAME` or `${NAME}` (no modifier, not escaped as `$$`) naming an instance
/// variable.
pub(crate) fn instance_reference(text: &str) -> Option<&'static str> {
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        let after = &rest[dollar + 1..];
        if let Some(escaped) = after.strip_prefix('$') {
            rest = escaped;
            continue;
        }
        let (body, braced) = match after.strip_prefix('{') {
            Some(inner) => (inner, true),
            None => (after, false),
        };
        let len = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(body.len());
        let name = &body[..len];
        let plain = !braced || body[len..].starts_with('}');
        if let Some(found) = INSTANCE_VARIABLES
            .iter()
            .find(|v| **v == name)
            .filter(|_| plain)
        {
            return Some(found);
        }
        rest = after;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_plain_references_only() {
        assert_eq!(instance_reference("--port ${PORT}"), Some("PORT"));
        assert_eq!(instance_reference("--port=$PORT"), Some("PORT"));
        assert_eq!(instance_reference("id-$INSTANCE-x"), Some("INSTANCE"));
        assert_eq!(instance_reference("${PORT:-3000}"), None);
        assert_eq!(instance_reference("$$PORT"), None);
        assert_eq!(instance_reference("$PORTS ${VERSIONS}"), None);
        assert_eq!(instance_reference("no variables"), None);
    }
}
