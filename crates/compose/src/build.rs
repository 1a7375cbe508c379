//! compose `build:` → wharf's `build:`: the context directory (relative to the compose file,
//! rebased like bind mounts when wharf.yaml is written elsewhere), `dockerfile`, `args` and
//! `target`. What wharf does not
//! build (`cache_from`, `ssh`, an arg without a value, …) is warned about.

use serde_json::{Map, Value, json};
use wharf_manifest::yaml::{Node, NodeKind};

use crate::Importer;
use crate::service::{Service, scalar};

/// Keys of compose's `build:` mapping wharf builds with.
const CARRIED: &[&str] = &["context", "dockerfile", "args", "target"];

/// The `build:` value for the service, or `None` when it cannot be carried (warned).
pub(crate) fn convert(imp: &mut Importer<'_>, service: &Service<'_>, node: &Node) -> Option<Value> {
    let path = service.path("build");
    let context = match &node.kind {
        NodeKind::Scalar { value, .. } => value.clone(),
        NodeKind::Map(_) => match node.get("context") {
            Some(context) => scalar(imp, context, &format!("{path}.context"))?,
            None => ".".to_owned(),
        },
        _ => {
            imp.error(
                node.span,
                format!(
                    "`{path}` must be a directory or a mapping, found {}",
                    node.type_name()
                ),
            );
            return None;
        }
    };
    // A remote context is not built: the caller warns that the build is not carried.
    if context.contains("://") || context.starts_with("git@") {
        return None;
    }
    // Relative to the compose file; when wharf.yaml is written elsewhere, relative to it, as
    // bind mounts are.
    let context = match &imp.bind_base {
        Some(base) if !context.starts_with('/') && !context.contains("${") => {
            crate::volumes::rebase(base, &context)
        }
        _ => context,
    };
    let NodeKind::Map(entries) = &node.kind else {
        return Some(json!(context));
    };
    let mut out = Map::new();
    out.insert("context".to_owned(), json!(context));
    for (key, value) in entries {
        let Some(name) = key.as_str() else { continue };
        let what = format!("{path}.{name}");
        match name {
            "context" => {}
            "dockerfile" | "target" => {
                if let Some(text) = scalar(imp, value, &what) {
                    out.insert(name.to_owned(), json!(text));
                }
            }
            "args" => {
                let args = args(imp, &what, value);
                if !args.is_empty() {
                    out.insert("args".to_owned(), Value::Object(args));
                }
            }
            _ if name.starts_with("x-") => {}
            _ => {
                let message = format!(
                    "`{what}` is not carried over: wharf builds with {}",
                    CARRIED.join(", ")
                );
                let hint = "build the image beforehand if it needs this, and name it in `image:`";
                imp.warn(what, key.span, message, Some(hint));
            }
        }
    }
    Some(Value::Object(out))
}

/// `args` as a mapping or compose's `["K=V"]` list; an arg without a value (compose takes it
/// from the environment of `docker compose build`) is warned about, not carried.
fn args(imp: &mut Importer<'_>, what: &str, node: &Node) -> Map<String, Value> {
    let mut out = Map::new();
    let valueless = |imp: &mut Importer<'_>, name: &str, span| {
        let message = format!(
            "`{what}.{name}` is not carried over: it has no value (compose reads it from the shell's environment)"
        );
        let hint = format!("give it a value under `build.args.{name}` in wharf.yaml");
        imp.warn(format!("{what}.{name}"), span, message, Some(&hint));
    };
    match &node.kind {
        NodeKind::Seq(items) => {
            for item in items {
                let Some(text) = scalar(imp, item, what) else {
                    continue;
                };
                match text.split_once('=') {
                    Some((name, value)) => {
                        out.insert(name.to_owned(), json!(value));
                    }
                    None => valueless(imp, &text, item.span),
                }
            }
        }
        NodeKind::Map(entries) => {
            for (key, value) in entries {
                let Some(name) = key.as_str() else { continue };
                match &value.kind {
                    NodeKind::Null => valueless(imp, name, key.span),
                    _ => {
                        if let Some(text) = scalar(imp, value, &format!("{what}.{name}")) {
                            out.insert(name.to_owned(), json!(text));
                        }
                    }
                }
            }
        }
        _ => imp.error(
            node.span,
            format!(
                "`{what}` must be a mapping or a list, found {}",
                node.type_name()
            ),
        ),
    }
    out
}
