//! The manifest's `runbooks:`: decoding each runbook (parameters, rate limit, blast radius, typed
//! steps) with a diagnostic per problem, and the checks across the stack — the services steps
//! name, the parameters `${param:…}` references name and their types.
//!
//! A step is a mapping with exactly one action key (plus `name` and `timeout`), so an unknown
//! or misspelt action is its own error ("unknown step action `restrat`… did you mean
//! `restart`?"), not a generic unknown key. Keys whose feature is not built (`scale`) and
//! steps that would need a hook in the control plane (`secret.rotate` of a secret with a
//! `rotate_command`) are refused here, never accepted and ignored.

use indexmap::IndexMap;

use crate::decode::{Decoder, list, suggestion};
use crate::diagnostic::{Diagnostic, Span};
use crate::interpolate::ParamReference;
use crate::model::{
    BlastRadius, ParamType, RateLimit, Runbook, RunbookParam, RunbookStep, Stack, StepAction,
    WaitState,
};
use crate::schema::{References, is_identifier};
use crate::values::DurationRule;
use crate::yaml::{Node, NodeKind};

/// Every action a step may name, `scale` included so it gets its own "not built yet" error.
pub const STEP_ACTIONS: &[&str] = &[
    "restart",
    "rollback",
    "deploy",
    "restore",
    "drill",
    "secret.rotate",
    "scale",
    "exec",
    "http",
    "wait_for",
    "approve",
];

const RUNBOOK_KEYS: &[&str] = &[
    "description",
    "params",
    "rate_limit",
    "blast_radius",
    "steps",
];

/// Where runbooks name things of the stack, for the cross-checks.
#[derive(Default)]
pub(crate) struct RunbookRefs {
    /// (runbook, service text as written, span): literal names or one `${param:NAME}`.
    pub services: Vec<(String, String, Span)>,
    /// (runbook, secret, span) of `secret.rotate` steps.
    pub secrets: Vec<(String, String, Span)>,
    /// (runbook, default, span) of `service` parameters with a default.
    pub service_defaults: Vec<(String, String, Span)>,
}

pub(crate) fn runbooks(
    decoder: &mut Decoder,
    node: &Node,
    refs: &mut References,
) -> IndexMap<String, Runbook> {
    let mut runbooks = IndexMap::new();
    for (name, key, value) in decoder.named_entries(node, "`runbooks`") {
        if !is_identifier(&name) {
            decoder.push(
                Diagnostic::error(
                    key.span,
                    format!("runbook name `{name}` has characters wharf cannot use"),
                )
                .with_hint("use letters, digits, `-` and `_`, starting with a letter"),
            );
            continue;
        }
        if name == "runs" {
            decoder.push(
                Diagnostic::error(key.span, "`runs` cannot name a runbook")
                    .with_label("a reserved word")
                    .with_hint("the API lists runs at `/v1/runbooks/runs`; choose another name"),
            );
            continue;
        }
        if let Some(runbook) = runbook(decoder, &name, key.span, value, &mut refs.runbooks) {
            runbooks.insert(name, runbook);
        }
    }
    runbooks
}

fn runbook(
    decoder: &mut Decoder,
    name: &str,
    name_span: Span,
    node: &Node,
    refs: &mut RunbookRefs,
) -> Option<Runbook> {
    let what = format!("runbook `{name}`");
    let fields = decoder.fields(node, &what, RUNBOOK_KEYS)?;
    let description = fields
        .get("description")
        .and_then(|n| decoder.string(n, &format!("{what} description")));
    let params = fields
        .get("params")
        .map(|n| params(decoder, name, n, refs))
        .unwrap_or_default();
    let rate_limit = fields
        .get("rate_limit")
        .and_then(|n| rate_limit(decoder, &format!("{what} rate_limit"), n));
    let blast_radius = fields
        .get("blast_radius")
        .and_then(|n| blast_radius(decoder, &format!("{what} blast_radius"), n));
    let Some(steps_node) = fields.get("steps") else {
        decoder.push(
            Diagnostic::error(name_span, format!("{what} has no `steps`"))
                .with_label("a runbook needs steps")
                .with_hint("add `steps:` with at least one step, e.g. `- restart: {service: api}`"),
        );
        return None;
    };
    let items = decoder.items(steps_node, &format!("{what} steps"));
    if items.is_empty() {
        decoder.push(
            Diagnostic::error(steps_node.span, format!("{what} has no steps"))
                .with_hint("add at least one step, e.g. `- restart: {service: api}`"),
        );
    }
    // A step that did not decode has its error already; the others are kept so the
    // cross-checks still judge them (every problem in one run).
    let steps = items
        .iter()
        .enumerate()
        .filter_map(|(index, item)| step(decoder, name, index + 1, item, refs))
        .collect();
    Some(Runbook {
        description,
        params,
        rate_limit,
        blast_radius,
        steps,
    })
}

fn params(
    decoder: &mut Decoder,
    runbook: &str,
    node: &Node,
    refs: &mut RunbookRefs,
) -> IndexMap<String, RunbookParam> {
    let mut params = IndexMap::new();
    for (name, key, value) in decoder.named_entries(node, &format!("runbook `{runbook}` params")) {
        let what = format!("parameter `{name}` of runbook `{runbook}`");
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            decoder.push(
                Diagnostic::error(
                    key.span,
                    format!("{what}: the name has characters `${{param:…}}` cannot name"),
                )
                .with_hint("use letters, digits and `_`"),
            );
            continue;
        }
        let Some(fields) = decoder.fields(value, &what, &["type", "default", "description"]) else {
            continue;
        };
        let Some(kind) = fields.require(decoder, "type", &what).and_then(|n| {
            decoder.choice(
                n,
                &format!("{what} type"),
                &[
                    ("string", ParamType::String),
                    ("int", ParamType::Int),
                    ("bool", ParamType::Bool),
                    ("duration", ParamType::Duration),
                    ("service", ParamType::Service),
                ],
            )
        }) else {
            continue;
        };
        let mut default = None;
        if let Some(n) = fields.get("default")
            && let Some(text) = decoder.string(n, &format!("{what} default"))
        {
            match kind.check(&text) {
                Ok(value) => {
                    if kind == ParamType::Service {
                        refs.service_defaults
                            .push((runbook.to_owned(), value.clone(), n.span));
                    }
                    default = Some(value);
                }
                Err(why) => decoder.push(
                    Diagnostic::error(
                        n.span,
                        format!(
                            "{what}: the default {why}, but the type is `{}`",
                            kind.as_str()
                        ),
                    )
                    .with_label("wrong type"),
                ),
            }
        }
        let description = fields
            .get("description")
            .and_then(|n| decoder.string(n, &format!("{what} description")));
        params.insert(
            name,
            RunbookParam {
                kind,
                default,
                description,
            },
        );
    }
    params
}

fn rate_limit(decoder: &mut Decoder, what: &str, node: &Node) -> Option<RateLimit> {
    let fields = decoder.fields(node, what, &["runs", "per"])?;
    let runs = fields
        .require(decoder, "runs", what)
        .and_then(|n| decoder.integer(n, &format!("{what} runs"), 1, 1_000_000));
    let per = fields
        .require(decoder, "per", what)
        .and_then(|n| decoder.duration(n, &format!("{what} per"), DurationRule::Age));
    Some(RateLimit {
        runs: runs?,
        per: per?,
    })
}

fn blast_radius(decoder: &mut Decoder, what: &str, node: &Node) -> Option<BlastRadius> {
    let fields = decoder.fields(node, what, &["services", "instances"])?;
    let services = fields
        .get("services")
        .and_then(|n| decoder.integer(n, &format!("{what} services"), 0, 100_000));
    let instances = fields
        .get("instances")
        .and_then(|n| decoder.integer(n, &format!("{what} instances"), 0, 1_000_000));
    if services.is_none() && instances.is_none() {
        decoder.push(
            Diagnostic::error(node.span, format!("{what} sets no limit"))
                .with_hint("give `services: N`, `instances: N` or both"),
        );
        return None;
    }
    Some(BlastRadius {
        services,
        instances,
    })
}

fn step(
    decoder: &mut Decoder,
    runbook: &str,
    number: usize,
    node: &Node,
    refs: &mut RunbookRefs,
) -> Option<RunbookStep> {
    let what = format!("runbook `{runbook}` step {number}");
    let NodeKind::Map(entries) = &node.kind else {
        decoder.expected(node, "a mapping with one action", &what);
        return None;
    };
    let mut name = None;
    let mut timeout = None;
    let mut action: Option<(&str, &Node, &Node)> = None;
    let mut ok = true;
    for (key, value) in entries {
        let Some(text) = key.as_str() else {
            decoder.expected(key, "a plain key", &what);
            ok = false;
            continue;
        };
        match text {
            "name" => name = decoder.name(value, &format!("{what} name")),
            "timeout" => {
                timeout = decoder.duration(value, &format!("{what} timeout"), DurationRule::Period);
                ok &= timeout.is_some();
            }
            _ if text.starts_with("x-") => {}
            _ if STEP_ACTIONS.contains(&text) => {
                if let Some((first, _, _)) = action {
                    decoder.push(
                        Diagnostic::error(
                            key.span,
                            format!("{what} has two actions, `{first}` and `{text}`"),
                        )
                        .with_label("a second action")
                        .with_hint("a step does one thing: split it into two steps"),
                    );
                    ok = false;
                } else {
                    action = Some((text, key, value));
                }
            }
            _ => {
                let hint = suggestion(text, STEP_ACTIONS).unwrap_or_else(|| {
                    format!(
                        "a step takes one of {}, plus `name` and `timeout`",
                        list(STEP_ACTIONS)
                    )
                });
                decoder.push(
                    Diagnostic::error(key.span, format!("unknown step action `{text}` in {what}"))
                        .with_label("unknown action")
                        .with_hint(hint),
                );
                ok = false;
            }
        }
    }
    let Some((key_text, key, value)) = action else {
        if ok {
            decoder.push(
                Diagnostic::error(node.span, format!("{what} has no action"))
                    .with_label("no action")
                    .with_hint(format!("give one of {}", list(STEP_ACTIONS))),
            );
        }
        return None;
    };
    let what = format!("{what} `{key_text}`");
    let action = step_action(decoder, runbook, &what, key_text, key, value, timeout, refs)?;
    ok.then_some(RunbookStep {
        name,
        timeout,
        action,
    })
}

#[allow(clippy::too_many_arguments)]
fn step_action(
    decoder: &mut Decoder,
    runbook: &str,
    what: &str,
    action: &str,
    key: &Node,
    node: &Node,
    step_timeout: Option<crate::values::Duration>,
    refs: &mut RunbookRefs,
) -> Option<StepAction> {
    let mut service = |decoder: &mut Decoder, keys: &[&str]| {
        let fields = decoder.fields(node, what, keys)?;
        let n = fields.require(decoder, "service", what)?;
        let text = step_text(decoder, n, &format!("{what} service"))?;
        refs.services
            .push((runbook.to_owned(), text.clone(), n.span));
        Some((fields, text))
    };
    Some(match action {
        "restart" => StepAction::Restart {
            service: service(decoder, &["service"])?.1,
        },
        "rollback" => StepAction::Rollback {
            service: service(decoder, &["service"])?.1,
        },
        "drill" => StepAction::Drill {
            service: service(decoder, &["service"])?.1,
        },
        "deploy" => {
            let (fields, service) = service(decoder, &["service", "version"])?;
            let version = fields
                .require(decoder, "version", what)
                .and_then(|n| step_text(decoder, n, &format!("{what} version")))?;
            StepAction::Deploy { service, version }
        }
        "restore" => {
            let (fields, service) = service(decoder, &["service", "snapshot"])?;
            let snapshot = match fields.get("snapshot") {
                Some(n) => Some(step_text(decoder, n, &format!("{what} snapshot"))?),
                None => None,
            };
            StepAction::Restore { service, snapshot }
        }
        "wait_for" => {
            let (fields, service) = service(decoder, &["service", "state", "within"])?;
            let state = fields.require(decoder, "state", what).and_then(|n| {
                decoder.choice(
                    n,
                    &format!("{what} state"),
                    &[
                        ("running", WaitState::Running),
                        ("ready", WaitState::Ready),
                        ("degraded", WaitState::Degraded),
                        ("down", WaitState::Down),
                        ("stopped", WaitState::Stopped),
                    ],
                )
            });
            let within = fields
                .require(decoder, "within", what)
                .and_then(|n| decoder.duration(n, &format!("{what} within"), DurationRule::Period));
            StepAction::WaitFor {
                service,
                state: state?,
                within: within?,
            }
        }
        "secret.rotate" => {
            let fields = decoder.fields(node, what, &["secret"])?;
            let n = fields.require(decoder, "secret", what)?;
            let secret = decoder.name(n, &format!("{what} secret"))?;
            refs.secrets
                .push((runbook.to_owned(), secret.clone(), n.span));
            StepAction::SecretRotate { secret }
        }
        "scale" => {
            decoder.push(
                Diagnostic::error(key.span, format!("{what}: the `scale` step is not built yet"))
                    .with_label("not built yet")
                    .with_hint(
                        "change `replicas:` in the manifest and run `wharf up`; a runbook cannot scale a service yet",
                    ),
            );
            return None;
        }
        "exec" => {
            let fields = decoder.fields(node, what, &["command", "timeout"])?;
            let command_node = fields.require(decoder, "command", what)?;
            let command = decoder.command(command_node, &format!("{what} command"))?;
            if command.iter().any(|word| word.contains("${secret:")) {
                decoder.push(secret_in_step(command_node.span, what));
                return None;
            }
            let timeout = match fields.get("timeout") {
                Some(n) => decoder.duration(n, &format!("{what} timeout"), DurationRule::Period)?,
                None => match step_timeout {
                    Some(timeout) => timeout,
                    None => {
                        decoder.push(
                            Diagnostic::error(key.span, format!("{what} has no `timeout`"))
                                .with_label("a command needs a bound")
                                .with_hint("give `timeout: 5m` (it is killed past it)"),
                        );
                        return None;
                    }
                },
            };
            StepAction::Exec { command, timeout }
        }
        "http" => {
            let fields = decoder.fields(node, what, &["url", "method", "expect_status"])?;
            let url = fields
                .require(decoder, "url", what)
                .and_then(|n| step_text(decoder, n, &format!("{what} url")))?;
            let method = match fields.get("method") {
                Some(n) => decoder.choice(
                    n,
                    &format!("{what} method"),
                    &[
                        ("GET", "GET"),
                        ("POST", "POST"),
                        ("PUT", "PUT"),
                        ("DELETE", "DELETE"),
                        ("HEAD", "HEAD"),
                        ("PATCH", "PATCH"),
                    ],
                )?,
                None => "GET",
            };
            let mut expect_status = Vec::new();
            if let Some(n) = fields.get("expect_status") {
                let items: Vec<&Node> = match &n.kind {
                    NodeKind::Seq(items) => items.iter().collect(),
                    _ => vec![n],
                };
                for item in items {
                    expect_status.push(decoder.integer(
                        item,
                        &format!("{what} expect_status"),
                        100,
                        599,
                    )?);
                }
            }
            StepAction::Http {
                url,
                method: method.to_owned(),
                expect_status,
            }
        }
        "approve" => {
            let fields = decoder.fields(node, what, &["prompt"])?;
            let prompt = fields
                .require(decoder, "prompt", what)
                .and_then(|n| step_text(decoder, n, &format!("{what} prompt")))?;
            StepAction::Approve { prompt }
        }
        _ => return None,
    })
}

/// A non-empty text field of a step; a `${secret:…}` in it is refused (a run's fields are
/// printed in plans and recorded in the ledger, so a secret has no place in them).
fn step_text(decoder: &mut Decoder, node: &Node, what: &str) -> Option<String> {
    let text = decoder.name(node, what)?;
    if text.contains("${secret:") {
        decoder.push(secret_in_step(node.span, what));
        return None;
    }
    Some(text)
}

fn secret_in_step(span: Span, what: &str) -> Diagnostic {
    Diagnostic::error(span, format!("{what}: a runbook step cannot use `${{secret:…}}`"))
        .with_label("a secret in a step")
        .with_hint(
            "a step's fields are shown in plans and recorded in the ledger; let the command read the secret itself",
        )
}

/// The one `${param:NAME}` a whole field is, if it is one.
pub fn whole_param(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("${param:")?.strip_suffix('}')?;
    (!inner.contains(['$', '{', '}'])).then_some(inner)
}

/// Checks across the stack: each `${param:…}` names a declared parameter of its own runbook
/// (and appears only inside a runbook), each service a step names is a service or a `service`
/// parameter, each secret a `secret.rotate` names is declared and has no hook.
pub(crate) fn cross_check(
    decoder: &mut Decoder,
    stack: &Stack,
    refs: &References,
    params: &[ParamReference],
) {
    for reference in params {
        let Some(runbook) = &reference.runbook else {
            decoder.push(
                Diagnostic::error(
                    reference.span,
                    format!("`${{param:{}}}` outside a runbook", reference.name),
                )
                .with_label("not in a runbook")
                .with_hint(
                    "parameters belong to runbooks; write `$${param:…}` for the literal text",
                ),
            );
            continue;
        };
        let Some(book) = stack.runbooks.get(runbook) else {
            continue;
        };
        if book.params.contains_key(&reference.name) {
            continue;
        }
        let declared: Vec<&str> = book.params.keys().map(String::as_str).collect();
        let hint = suggestion(&reference.name, &declared).unwrap_or_else(|| {
            format!(
                "declare it under `runbooks.{runbook}.params` (e.g. `{}: {{type: string}}`)",
                reference.name
            )
        });
        decoder.push(
            Diagnostic::error(
                reference.span,
                format!(
                    "runbook `{runbook}` uses parameter `{}`, which it does not declare",
                    reference.name
                ),
            )
            .with_label("undeclared parameter")
            .with_hint(hint),
        );
    }
    let services: Vec<&str> = stack.services.keys().map(String::as_str).collect();
    let unknown_service = |decoder: &mut Decoder, runbook: &str, name: &str, span: Span| {
        let hint = suggestion(name, &services)
            .unwrap_or_else(|| format!("declared services: {}", list(&services)));
        decoder.push(
            Diagnostic::error(
                span,
                format!("runbook `{runbook}` names `{name}`, which is not a service"),
            )
            .with_label("unknown service")
            .with_hint(hint),
        );
    };
    for (runbook, text, span) in &refs.runbooks.services {
        let Some(book) = stack.runbooks.get(runbook) else {
            continue;
        };
        if let Some(param) = whole_param(text) {
            if let Some(declared) = book.params.get(param)
                && declared.kind != ParamType::Service
            {
                decoder.push(
                    Diagnostic::error(
                        *span,
                        format!(
                            "runbook `{runbook}`: parameter `{param}` names a service here, but its type is `{}`",
                            declared.kind.as_str()
                        ),
                    )
                    .with_label("not a service parameter")
                    .with_hint("declare it with `type: service`"),
                );
            }
        } else if text.contains("${param:") {
            decoder.push(
                Diagnostic::error(
                    *span,
                    format!("runbook `{runbook}`: a service is a name or one `${{param:NAME}}` of type `service`"),
                )
                .with_label("part of a name"),
            );
        } else if !stack.services.contains_key(text) {
            unknown_service(decoder, runbook, text, *span);
        }
    }
    for (runbook, default, span) in &refs.runbooks.service_defaults {
        if !stack.services.contains_key(default) {
            unknown_service(decoder, runbook, default, *span);
        }
    }
    for (runbook, secret, span) in &refs.runbooks.secrets {
        match stack.secrets.get(secret) {
            None => {
                let declared: Vec<&str> = stack.secrets.keys().map(String::as_str).collect();
                let hint = suggestion(secret, &declared)
                    .unwrap_or_else(|| "declare it under the top-level `secrets:`".to_owned());
                decoder.push(
                    Diagnostic::error(
                        *span,
                        format!("runbook `{runbook}` rotates `{secret}`, which is not declared"),
                    )
                    .with_label("undeclared secret")
                    .with_hint(hint),
                );
            }
            Some(policy) if policy.rotate_command.is_some() => decoder.push(
                Diagnostic::error(
                    *span,
                    format!(
                        "runbook `{runbook}` rotates `{secret}`, which has a `rotate_command`: hooks never run in the control plane"
                    ),
                )
                .with_label("a secret with a hook")
                .with_hint(format!(
                    "rotate it with `wharf secret rotate {secret}`, which runs its hook in the CLI"
                )),
            ),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_parameter_is_recognised() {
        assert_eq!(whole_param("${param:svc}"), Some("svc"));
        assert_eq!(whole_param("api-${param:svc}"), None);
        assert_eq!(whole_param("api"), None);
    }
}
