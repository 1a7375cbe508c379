//! Checks across services: dependencies (unknown, self, cycles), ports, secrets.

use std::collections::{HashMap, HashSet};

use crate::decode::{Decoder, suggestion};
use crate::diagnostic::{Diagnostic, Span};
use crate::interpolate::SecretReference;
use crate::model::{DependencyCondition, Stack};
use crate::schema::References;

pub(crate) fn cross_check(
    decoder: &mut Decoder,
    stack: &Stack,
    refs: &References,
    secrets: &[SecretReference],
) {
    dependencies(decoder, refs);
    cycles(decoder, refs);
    readiness_conditions(decoder, stack, refs);
    ports(decoder, refs);
    secret_references(decoder, refs, secrets);
    alert_services(decoder, refs);
    alert_runbooks(decoder, stack, refs);
    status_page_services(decoder, refs);
    required_gates(decoder, stack, refs);
    required_backups(decoder, stack, refs);
    crate::container_options::check_networks(decoder, stack, refs);
}

/// `require.backup_max_age` / `drill_max_age` judge the datastores' backups: with no
/// `backup:` anywhere they would check nothing, and a deploy would pass them silently.
fn required_backups(decoder: &mut Decoder, stack: &Stack, refs: &References) {
    if refs.backup_declared || stack.services.values().any(|s| s.backup.is_some()) {
        return;
    }
    for (key, span) in &refs.require_backups {
        decoder.push(
            Diagnostic::error(
                *span,
                format!(
                    "`require.{key}` judges the datastores' backups, and no service has `backup:`"
                ),
            )
            .with_label("would check nothing")
            .with_hint("give a datastore `backup: {schedule: …}`, or remove the requirement"),
        );
    }
}

/// Each gate `require.gates` names is declared under `gates:`.
fn required_gates(decoder: &mut Decoder, stack: &Stack, refs: &References) {
    let names: Vec<&str> = stack.gates.keys().map(String::as_str).collect();
    for (gate, span) in &refs.require_gates {
        if stack.gates.contains_key(gate) {
            continue;
        }
        let hint = suggestion(gate, &names).unwrap_or_else(|| {
            if names.is_empty() {
                "declare it under `gates:` with its conditions".to_owned()
            } else {
                format!("declared gates: {}", crate::decode::list(&names))
            }
        });
        decoder.push(
            Diagnostic::error(
                *span,
                format!("`require.gates` names gate `{gate}`, which is not declared"),
            )
            .with_label("unknown gate")
            .with_hint(hint),
        );
    }
}

/// An alert's runbook exists, and the parameters it gives are the runbook's own; a
/// `root_param` names one of type `service`.
fn alert_runbooks(decoder: &mut Decoder, stack: &Stack, refs: &References) {
    for reference in &refs.alert_runbooks {
        let Some(book) = stack.runbooks.get(&reference.runbook) else {
            let names: Vec<&str> = stack.runbooks.keys().map(String::as_str).collect();
            let hint = suggestion(&reference.runbook, &names).unwrap_or_else(|| {
                if names.is_empty() {
                    "declare it under `runbooks:`".to_owned()
                } else {
                    format!("declared runbooks: {}", crate::decode::list(&names))
                }
            });
            decoder.push(
                Diagnostic::error(
                    reference.span,
                    format!(
                        "alert `{}` names runbook `{}`, which is not declared",
                        reference.alert, reference.runbook
                    ),
                )
                .with_label("unknown runbook")
                .with_hint(hint),
            );
            continue;
        };
        let declared: Vec<&str> = book.params.keys().map(String::as_str).collect();
        let unknown = reference
            .params
            .iter()
            .chain(reference.root_param.iter())
            .filter(|(name, _)| !book.params.contains_key(name));
        for (name, span) in unknown {
            decoder.push(
                Diagnostic::error(
                    *span,
                    format!("runbook `{}` has no parameter `{name}`", reference.runbook),
                )
                .with_label("unknown parameter")
                .with_hint(if declared.is_empty() {
                    "it declares no parameters".to_owned()
                } else {
                    format!("its parameters: {}", crate::decode::list(&declared))
                }),
            );
        }
        if let Some((name, span)) = &reference.root_param
            && let Some(param) = book.params.get(name)
            && param.kind != crate::model::ParamType::Service
        {
            decoder.push(
                Diagnostic::error(
                    *span,
                    format!(
                        "`root_param` `{name}` is of type {}; the page's root cause fills only a `service` parameter",
                        param.kind.as_str()
                    ),
                )
                .with_label("not a service parameter"),
            );
        }
    }
}

fn alert_services(decoder: &mut Decoder, refs: &References) {
    let names = service_names(refs);
    for (alert, service, span) in &refs.alert_services {
        if names.contains(&service.as_str()) {
            continue;
        }
        let hint = suggestion(service, &names)
            .unwrap_or_else(|| format!("declared services: {}", crate::decode::list(&names)));
        decoder.push(
            Diagnostic::error(
                *span,
                format!("alert `{alert}` watches `{service}`, which is not a service"),
            )
            .with_label("unknown service")
            .with_hint(hint),
        );
    }
}

fn status_page_services(decoder: &mut Decoder, refs: &References) {
    let names = service_names(refs);
    for (component, service, span) in &refs.status_page_services {
        if names.contains(&service.as_str()) {
            continue;
        }
        let hint = suggestion(service, &names)
            .unwrap_or_else(|| format!("declared services: {}", crate::decode::list(&names)));
        let message = match component {
            Some(component) => format!(
                "status_page component `{component}` shows `{service}`, which is not a service"
            ),
            None => format!("status_page hides `{service}`, which is not a service"),
        };
        decoder.push(
            Diagnostic::error(*span, message)
                .with_label("unknown service")
                .with_hint(hint),
        );
    }
}

fn service_names(refs: &References) -> Vec<&str> {
    refs.services
        .iter()
        .map(|(name, _)| name.as_str())
        .collect()
}

fn dependencies(decoder: &mut Decoder, refs: &References) {
    let names = service_names(refs);
    let known: HashSet<&str> = names.iter().copied().collect();
    for (service, dependency, span) in &refs.depends_on {
        if service == dependency {
            decoder.push(
                Diagnostic::error(*span, format!("service `{service}` depends on itself"))
                    .with_label("remove this dependency"),
            );
        } else if !known.contains(dependency.as_str()) {
            let hint = suggestion(dependency, &names)
                .unwrap_or_else(|| format!("declared services: {}", crate::decode::list(&names)));
            decoder.push(
                Diagnostic::error(
                    *span,
                    format!(
                        "service `{service}` depends on `{dependency}`, which is not a service"
                    ),
                )
                .with_label("unknown service")
                .with_hint(hint),
            );
        }
    }
}

/// Reports each dependency cycle once, at the edge that closes it, with the whole loop spelled
/// out ("api → worker → api").
fn cycles(decoder: &mut Decoder, refs: &References) {
    let mut edges: HashMap<&str, Vec<(&str, Span)>> = HashMap::new();
    for (service, dependency, span) in &refs.depends_on {
        if service != dependency {
            edges
                .entry(service.as_str())
                .or_default()
                .push((dependency.as_str(), *span));
        }
    }
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Unvisited,
        OnPath,
        Done,
    }
    let names = service_names(refs);
    let mut marks: HashMap<&str, Mark> = names.iter().map(|n| (*n, Mark::Unvisited)).collect();
    // Iterative DFS keeps deep graphs from overflowing the stack.
    for &start in &names {
        if marks[start] != Mark::Unvisited {
            continue;
        }
        let mut path: Vec<(&str, usize)> = vec![(start, 0)];
        marks.insert(start, Mark::OnPath);
        while let Some((node, next)) = path.last().copied() {
            let out = edges.get(node).map(Vec::as_slice).unwrap_or_default();
            if next == out.len() {
                marks.insert(node, Mark::Done);
                path.pop();
                continue;
            }
            if let Some(top) = path.last_mut() {
                top.1 += 1;
            }
            let (target, span) = out[next];
            match marks.get(target).copied() {
                Some(Mark::Unvisited) => {
                    marks.insert(target, Mark::OnPath);
                    path.push((target, 0));
                }
                Some(Mark::OnPath) => {
                    let from = path.iter().position(|(n, _)| *n == target).unwrap_or(0);
                    let mut cycle: Vec<&str> = path[from..].iter().map(|(n, _)| *n).collect();
                    cycle.push(target);
                    decoder.push(
                        Diagnostic::error(span, format!("dependency cycle: {}", cycle.join(" → ")))
                            .with_label("this dependency closes the cycle")
                            .with_hint("services start in dependency order, so a cycle can never start; remove one of these dependencies"),
                    );
                }
                _ => {}
            }
        }
    }
}

/// `condition: ready` on a service without a readiness probe can only mean "started".
fn readiness_conditions(decoder: &mut Decoder, stack: &Stack, refs: &References) {
    for (service, dependency, span) in &refs.depends_on {
        let condition = stack
            .services
            .get(service)
            .and_then(|s| s.depends_on.get(dependency))
            .map(|d| d.condition);
        let Some(target) = stack.services.get(dependency) else {
            continue;
        };
        if condition == Some(DependencyCondition::Ready)
            && target.probes.ready.is_none()
            && target.kind.is_none()
        {
            decoder.push(
                Diagnostic::warning(*span, format!("`{service}` waits for `{dependency}` to be ready, but `{dependency}` has no ready probe"))
                    .with_hint(format!("add `probes.ready` to `{dependency}`; until then wharf treats it as ready once started")),
            );
        }
    }
}

fn ports(decoder: &mut Decoder, refs: &References) {
    let mut seen: HashMap<u16, (&str, Span)> = HashMap::new();
    for (service, port, span) in &refs.ports {
        match seen.get(port) {
            Some((first, first_span)) if first == service => decoder.push(
                Diagnostic::error(
                    *span,
                    format!("port {port} of service `{service}` is published twice"),
                )
                .with_label("duplicate port")
                .with_hint(format!(
                    "line {} publishes it already (`port:` or `ports:`); give each public port once",
                    first_span.line
                )),
            ),
            Some((first, first_span)) => decoder.push(
                Diagnostic::error(
                    *span,
                    format!("port {port} of service `{service}` is already used by `{first}`"),
                )
                .with_label("duplicate port")
                .with_hint(format!(
                    "`{first}` declares port {port} on line {}; give each service its own port",
                    first_span.line
                )),
            ),
            None => {
                seen.insert(*port, (service, *span));
            }
        }
    }
}

fn secret_references(decoder: &mut Decoder, refs: &References, secrets: &[SecretReference]) {
    let declared: Vec<&str> = refs
        .declared_secrets
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    let known: HashSet<&str> = declared.iter().copied().collect();
    let mut undeclared = |name: &str, span: Span, message: String| {
        if known.contains(name) {
            return;
        }
        let hint = suggestion(name, &declared)
            .unwrap_or_else(|| format!("declare it under the top-level `secrets:` (e.g. `secrets: {{{name}: {{max_age: 90d}}}}`)"));
        decoder.push(
            Diagnostic::error(span, message)
                .with_label("undeclared secret")
                .with_hint(hint),
        );
    };
    for (service, name, span) in &refs.service_secrets {
        undeclared(
            name,
            *span,
            format!("service `{service}` uses secret `{name}`, which is not declared"),
        );
    }
    for reference in secrets {
        let name = &reference.name;
        undeclared(
            name,
            reference.span,
            format!("secret `{name}` is not declared"),
        );
    }
}
