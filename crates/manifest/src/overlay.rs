//! Environment overlays: `environments.<name>` merged over the base manifest.
//!
//! Mappings merge key by key, everything else (scalars, lists) is replaced, as in compose's
//! multi-file merge. The merge works on nodes, so a value that came from an overlay keeps the
//! overlay's line and column in diagnostics.

use std::collections::{HashMap, HashSet};

use crate::decode::{Decoder, suggestion};
use crate::diagnostic::Diagnostic;
use crate::schema::{ENVIRONMENT_KEYS, is_identifier};
use crate::yaml::{Node, NodeKind};

/// The environment used when none is asked for, if the manifest defines it.
pub const DEFAULT_ENVIRONMENT: &str = "dev";

/// The most environments a manifest defines. `wharf validate` checks the base and each one
/// in turn, so the count multiplies the work: a bound keeps validation linear in the file.
pub const MAX_ENVIRONMENTS: usize = 64;

/// Removes `environments` from `root` and returns the names with their overlay nodes, checking
/// each overlay's keys.
pub(crate) fn take_environments(
    decoder: &mut Decoder,
    root: &mut Node,
) -> Vec<(String, Node, Node)> {
    let NodeKind::Map(entries) = &mut root.kind else {
        return Vec::new();
    };
    let Some(index) = entries
        .iter()
        .position(|(k, _)| k.as_str() == Some("environments"))
    else {
        return Vec::new();
    };
    let (_, node) = entries.remove(index);
    let mut environments = Vec::new();
    for (name, key, value) in decoder.named_entries(&node, "`environments`") {
        if environments.len() == MAX_ENVIRONMENTS {
            decoder.push(
                Diagnostic::error(
                    key.span,
                    format!("more than {MAX_ENVIRONMENTS} environments"),
                )
                .with_label("this one and those after it are not read")
                .with_hint("split the stack, or fold environments that differ little"),
            );
            break;
        }
        if !is_identifier(&name) {
            decoder.push(
                Diagnostic::error(
                    key.span,
                    format!("environment name `{name}` has characters wharf cannot use"),
                )
                .with_hint("use letters, digits, `-` and `_`"),
            );
            continue;
        }
        if decoder
            .fields(value, &format!("environment `{name}`"), ENVIRONMENT_KEYS)
            .is_some()
        {
            // An unknown key was reported against the environment; merging it would report it
            // a second time as an unknown key of the manifest.
            let mut overlay = value.clone();
            if let NodeKind::Map(entries) = &mut overlay.kind {
                entries.retain(|(k, _)| k.as_str().is_some_and(|k| ENVIRONMENT_KEYS.contains(&k)));
            }
            environments.push((name, key.clone(), overlay));
        }
    }
    environments
}

/// Merges `overlay` (an environment's node) over `root`, reporting overlaid services the base
/// does not define.
pub(crate) fn apply(decoder: &mut Decoder, root: &mut Node, environment: &str, mut overlay: Node) {
    let base_services: Vec<String> = root
        .get("services")
        .map(|services| match &services.kind {
            NodeKind::Map(entries) => entries
                .iter()
                .filter_map(|(k, _)| k.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        })
        .unwrap_or_default();
    let candidates: Vec<&str> = base_services.iter().map(String::as_str).collect();
    let base_set: HashSet<&str> = candidates.iter().copied().collect();
    if let Some(NodeKind::Map(entries)) = overlay_services(&mut overlay) {
        // An overlaid service the base lacks is reported here and left out of the merge, so it
        // is not reported again as a half-declared service ("nothing to run").
        entries.retain(|(key, _)| {
            let Some(name) = key.as_str() else { return true };
            let declared = base_set.contains(name);
            if !declared {
                let hint = suggestion(name, &candidates)
                    .unwrap_or_else(|| "an environment can only change services the base declares".to_owned());
                decoder.push(
                    Diagnostic::error(key.span, format!("environment `{environment}` overlays service `{name}`, which the base does not declare"))
                        .with_hint(hint),
                );
            }
            declared
        });
    }
    merge(root, overlay);
}

fn overlay_services(overlay: &mut Node) -> Option<&mut NodeKind> {
    let NodeKind::Map(entries) = &mut overlay.kind else {
        return None;
    };
    entries
        .iter_mut()
        .find(|(k, _)| k.as_str() == Some("services"))
        .map(|(_, v)| &mut v.kind)
}

fn merge(base: &mut Node, overlay: Node) {
    match (&mut base.kind, overlay.kind) {
        (NodeKind::Map(base_entries), NodeKind::Map(overlay_entries)) => {
            // An index of the base's keys keeps the merge linear in the two mappings' sizes.
            let mut index: HashMap<String, usize> = base_entries
                .iter()
                .enumerate()
                .filter_map(|(i, (k, _))| k.as_str().map(|name| (name.to_owned(), i)))
                .collect();
            for (key, value) in overlay_entries {
                let found = key.as_str().and_then(|name| index.get(name).copied());
                match found {
                    Some(i) => merge(&mut base_entries[i].1, value),
                    None => {
                        if let Some(name) = key.as_str() {
                            index.insert(name.to_owned(), base_entries.len());
                        }
                        base_entries.push((key, value));
                    }
                }
            }
        }
        (_, kind) => {
            base.kind = kind;
            base.span = overlay.span;
        }
    }
}
