//! The pure half of runbooks: a run's parameters typed against their declarations and filled
//! into its steps, each step described and what it touches, and the plan's verdicts on the
//! blast-radius cap and the rate limit. No IO and no clock: the runbooks subsystem
//! (`runbooks.rs`) hands in the stack's shape and the count of recent runs.

use std::collections::{BTreeMap, HashMap};

use wharf_api::{ControlError, ErrorCode, PlannedStep, RunPlan, Verdict};
use wharf_manifest::model::{ParamType, Runbook, StepAction, WaitState};

use crate::report::ServiceStatus;

/// A step's output kept in its record: the last bytes, where the error usually is.
pub(super) const MAX_OUTPUT: usize = 4096;

/// Checks each given parameter against its declared type (a `service` against the stack),
/// fills in defaults, and refuses unknown or missing ones.
pub(super) fn typed_params(
    name: &str,
    book: &Runbook,
    given: &BTreeMap<String, String>,
    services: &[&str],
) -> Result<BTreeMap<String, String>, ControlError> {
    let invalid = |message: String| ControlError::new(ErrorCode::InvalidRequest, message);
    if let Some(unknown) = given.keys().find(|k| !book.params.contains_key(*k)) {
        let declared: Vec<&str> = book.params.keys().map(String::as_str).collect();
        return Err(invalid(format!(
            "runbook `{name}` has no parameter `{unknown}` (parameters: {})",
            if declared.is_empty() {
                "none".to_owned()
            } else {
                declared.join(", ")
            }
        )));
    }
    let mut values = BTreeMap::new();
    for (param, declared) in &book.params {
        let Some(text) = given.get(param).or(declared.default.as_ref()) else {
            return Err(invalid(format!(
                "runbook `{name}` needs parameter `{param}` ({}): give `--param {param}=VALUE`",
                declared.kind.as_str()
            )));
        };
        let value = declared.kind.check(text).map_err(|why| {
            invalid(format!(
                "parameter `{param}` of runbook `{name}` is of type `{}`: {why}",
                declared.kind.as_str()
            ))
        })?;
        if declared.kind == ParamType::Service && !services.contains(&value.as_str()) {
            return Err(invalid(format!(
                "parameter `{param}` of runbook `{name}` is of type `service`: `{value}` is not a service of the stack (services: {})",
                services.join(", ")
            )));
        }
        values.insert(param.clone(), value);
    }
    Ok(values)
}

/// `text` with every `${param:NAME}` replaced by its value (validation made sure each is
/// declared; the values are complete after [`typed_params`]).
pub(super) fn substitute(text: &str, params: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${param:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + "${param:".len()..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                match params.get(name) {
                    Some(value) => out.push_str(value),
                    None => out.push_str(&rest[start..start + "${param:".len() + end + 1]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The step's action with the run's parameters filled in.
pub(super) fn resolve(action: &StepAction, params: &BTreeMap<String, String>) -> StepAction {
    let s = |text: &String| substitute(text, params);
    match action {
        StepAction::Restart { service } => StepAction::Restart {
            service: s(service),
        },
        StepAction::Rollback { service } => StepAction::Rollback {
            service: s(service),
        },
        StepAction::Deploy { service, version } => StepAction::Deploy {
            service: s(service),
            version: s(version),
        },
        StepAction::Restore { service, snapshot } => StepAction::Restore {
            service: s(service),
            snapshot: snapshot.as_ref().map(s),
        },
        StepAction::Drill { service } => StepAction::Drill {
            service: s(service),
        },
        StepAction::SecretRotate { secret } => StepAction::SecretRotate { secret: s(secret) },
        StepAction::Exec { command, timeout } => StepAction::Exec {
            command: command.iter().map(s).collect(),
            timeout: *timeout,
        },
        StepAction::Http {
            url,
            method,
            expect_status,
        } => StepAction::Http {
            url: s(url),
            method: method.clone(),
            expect_status: expect_status.clone(),
        },
        StepAction::WaitFor {
            service,
            state,
            within,
        } => StepAction::WaitFor {
            service: s(service),
            state: *state,
            within: *within,
        },
        StepAction::Approve { prompt } => StepAction::Approve { prompt: s(prompt) },
    }
}

/// What the step does, in a line.
pub(super) fn detail(action: &StepAction) -> String {
    match action {
        StepAction::Restart { service } => format!("restart {service}"),
        StepAction::Rollback { service } => format!("roll back {service}"),
        StepAction::Deploy { service, version } => format!("deploy {service} {version}"),
        StepAction::Restore { service, snapshot } => format!(
            "restore {service} in place from {}",
            snapshot.as_deref().unwrap_or("the latest snapshot")
        ),
        StepAction::Drill { service } => format!("drill {service}"),
        StepAction::SecretRotate { secret } => format!("rotate {secret}"),
        StepAction::Exec { command, timeout } => {
            format!("exec {} (timeout {timeout})", shell_words(command))
        }
        StepAction::Http {
            url,
            method,
            expect_status,
        } => {
            let expect = if expect_status.is_empty() {
                "2xx".to_owned()
            } else {
                expect_status
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join("|")
            };
            format!("http {method} {url} expecting {expect}")
        }
        StepAction::WaitFor {
            service,
            state,
            within,
        } => format!(
            "wait for {service} to be {} within {within}",
            wait_word(*state)
        ),
        StepAction::Approve { prompt } => format!("approve: {prompt}"),
    }
}

fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if w.is_empty() || w.contains(|c: char| c.is_whitespace() || "'\"$\\".contains(c)) {
                format!("'{}'", w.replace('\'', "'\\''"))
            } else {
                w.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn wait_word(state: WaitState) -> &'static str {
    match state {
        WaitState::Running => "running",
        WaitState::Ready => "ready",
        WaitState::Degraded => "degraded",
        WaitState::Down => "down",
        WaitState::Stopped => "stopped",
    }
}

/// Whether a service's state is the one waited for.
pub(super) fn reached(state: WaitState, service: &ServiceStatus) -> bool {
    use wharf_api::ServiceState as S;
    match state {
        WaitState::Running => service.state == S::Running,
        WaitState::Ready => service.state.is_serving(),
        WaitState::Degraded => service.state == S::Degraded,
        WaitState::Down => service.state == S::Down,
        WaitState::Stopped => service.state == S::Stopped,
    }
}

/// The stack as the plan sees it: each service's instance count and who depends on it.
pub(super) struct StackView {
    pub replicas: HashMap<String, u32>,
    pub dependents: HashMap<String, Vec<String>>,
}

impl StackView {
    /// The service and everything that depends on it, transitively (an in-place restore
    /// stops them all).
    fn with_dependents(&self, service: &str) -> Vec<String> {
        let mut out = vec![service.to_owned()];
        let mut index = 0;
        while index < out.len() {
            for dependent in self.dependents.get(&out[index]).into_iter().flatten() {
                if !out.contains(dependent) {
                    out.push(dependent.clone());
                }
            }
            index += 1;
        }
        out
    }

    /// What a step acts on: services, and how many instances.
    fn touches(&self, action: &StepAction) -> (Vec<String>, u32) {
        let services = match action {
            StepAction::Restart { service }
            | StepAction::Rollback { service }
            | StepAction::Deploy { service, .. } => vec![service.clone()],
            StepAction::Restore { service, .. } => self.with_dependents(service),
            // A drill restores into a sandbox; it touches nothing that serves.
            StepAction::Drill { .. }
            | StepAction::SecretRotate { .. }
            | StepAction::Exec { .. }
            | StepAction::Http { .. }
            | StepAction::WaitFor { .. }
            | StepAction::Approve { .. } => Vec::new(),
        };
        let instances = services
            .iter()
            .map(|s| self.replicas.get(s).copied().unwrap_or(0))
            .sum();
        (services, instances)
    }
}

/// The plan of a run: steps resolved, what they touch, the limits' verdicts (pure).
pub(super) fn plan(
    name: &str,
    book: &Runbook,
    params: BTreeMap<String, String>,
    actions: &[StepAction],
    stack: &StackView,
    recent_runs: usize,
) -> RunPlan {
    let mut services: Vec<String> = Vec::new();
    let mut instances = 0;
    let steps = book
        .steps
        .iter()
        .zip(actions)
        .enumerate()
        .map(|(index, (step, action))| {
            let (touches, count) = stack.touches(action);
            for service in &touches {
                if !services.contains(service) {
                    services.push(service.clone());
                }
            }
            instances += count;
            PlannedStep {
                number: index as u32 + 1,
                name: step.name.clone(),
                action: action.key().to_owned(),
                detail: detail(action),
                touches,
                instances: count,
            }
        })
        .collect();
    let blast_radius = match &book.blast_radius {
        None => Verdict {
            ok: true,
            detail: format!(
                "no limit ({} services, {instances} instances touched)",
                services.len()
            ),
        },
        Some(cap) => {
            let mut problems = Vec::new();
            if let Some(max) = cap.services
                && services.len() as u32 > max
            {
                problems.push(format!(
                    "{} services ({}) where at most {max} may be touched",
                    services.len(),
                    services.join(", ")
                ));
            }
            if let Some(max) = cap.instances
                && instances > max
            {
                problems.push(format!(
                    "{instances} instances where at most {max} may be touched"
                ));
            }
            Verdict {
                ok: problems.is_empty(),
                detail: if problems.is_empty() {
                    format!(
                        "{} services and {instances} instances, within the cap",
                        services.len()
                    )
                } else {
                    problems.join("; ")
                },
            }
        }
    };
    let rate_limit = match &book.rate_limit {
        None => Verdict {
            ok: true,
            detail: "no limit".to_owned(),
        },
        Some(limit) => Verdict {
            ok: (recent_runs as u32) < limit.runs,
            detail: format!(
                "{recent_runs} of at most {} runs in the last {}",
                limit.runs, limit.per
            ),
        },
    };
    RunPlan {
        runbook: name.to_owned(),
        params,
        steps,
        services,
        instances,
        blast_radius,
        rate_limit,
    }
}

/// The last [`MAX_OUTPUT`] bytes of `text` (on a character boundary), marked when cut.
pub(super) fn truncate_output(text: &str) -> String {
    if text.len() <= MAX_OUTPUT {
        return text.to_owned();
    }
    let mut start = text.len() - MAX_OUTPUT;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[… {start} bytes cut]\n{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use indexmap::IndexMap;
    use wharf_manifest::model::{BlastRadius, RateLimit, RunbookParam, RunbookStep};

    use super::*;

    fn book() -> Runbook {
        let mut params = IndexMap::new();
        params.insert(
            "svc".to_owned(),
            RunbookParam {
                kind: ParamType::Service,
                default: Some("api".to_owned()),
                description: None,
            },
        );
        params.insert(
            "count".to_owned(),
            RunbookParam {
                kind: ParamType::Int,
                default: None,
                description: None,
            },
        );
        Runbook {
            description: None,
            params,
            rate_limit: Some(RateLimit {
                runs: 2,
                per: "1h".parse().unwrap(),
            }),
            blast_radius: Some(BlastRadius {
                services: Some(1),
                instances: Some(3),
            }),
            steps: vec![
                RunbookStep {
                    name: None,
                    timeout: None,
                    action: StepAction::Restart {
                        service: "${param:svc}".to_owned(),
                    },
                },
                RunbookStep {
                    name: None,
                    timeout: None,
                    action: StepAction::Exec {
                        command: vec!["echo".to_owned(), "n=${param:count}".to_owned()],
                        timeout: "5s".parse().unwrap(),
                    },
                },
            ],
        }
    }

    fn view() -> StackView {
        StackView {
            replicas: [
                ("api".to_owned(), 2),
                ("db".to_owned(), 1),
                ("web".to_owned(), 4),
            ]
            .into_iter()
            .collect(),
            dependents: [("db".to_owned(), vec!["api".to_owned()])]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn parameters_are_typed_defaulted_and_substituted() {
        let book = book();
        let given: BTreeMap<String, String> = [("count".to_owned(), "7".to_owned())].into();
        let params = typed_params("fix", &book, &given, &["api", "db"]).unwrap();
        assert_eq!(params["svc"], "api");
        let actions: Vec<_> = book
            .steps
            .iter()
            .map(|s| resolve(&s.action, &params))
            .collect();
        assert_eq!(detail(&actions[0]), "restart api");
        assert_eq!(detail(&actions[1]), "exec echo n=7 (timeout 5s)");

        let wrong: BTreeMap<String, String> = [("count".to_owned(), "seven".to_owned())].into();
        let error = typed_params("fix", &book, &wrong, &["api"]).unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidRequest);
        assert!(
            error.message.contains("`count`") && error.message.contains("`int`"),
            "{}",
            error.message
        );

        let unknown_service: BTreeMap<String, String> = [
            ("count".to_owned(), "1".to_owned()),
            ("svc".to_owned(), "nope".to_owned()),
        ]
        .into();
        let error = typed_params("fix", &book, &unknown_service, &["api"]).unwrap_err();
        assert!(
            error.message.contains("`nope` is not a service"),
            "{}",
            error.message
        );

        let error = typed_params("fix", &book, &BTreeMap::new(), &["api"]).unwrap_err();
        assert!(
            error.message.contains("needs parameter `count`"),
            "{}",
            error.message
        );

        let extra: BTreeMap<String, String> = [
            ("count".to_owned(), "1".to_owned()),
            ("colour".to_owned(), "x".to_owned()),
        ]
        .into();
        let error = typed_params("fix", &book, &extra, &["api"]).unwrap_err();
        assert!(
            error.message.contains("no parameter `colour`"),
            "{}",
            error.message
        );
    }

    #[test]
    fn the_plan_judges_blast_radius_and_rate_limit() {
        let book = book();
        let params: BTreeMap<String, String> = [
            ("svc".to_owned(), "api".to_owned()),
            ("count".to_owned(), "1".to_owned()),
        ]
        .into();
        let actions: Vec<_> = book
            .steps
            .iter()
            .map(|s| resolve(&s.action, &params))
            .collect();
        let within = plan("fix", &book, params.clone(), &actions, &view(), 1);
        assert!(within.blast_radius.ok && within.rate_limit.ok);
        assert_eq!(
            (within.services.clone(), within.instances),
            (vec!["api".to_owned()], 2)
        );

        let limited = plan("fix", &book, params.clone(), &actions, &view(), 2);
        assert!(!limited.rate_limit.ok, "{}", limited.rate_limit.detail);

        let wide = [StepAction::Restore {
            service: "db".to_owned(),
            snapshot: None,
        }];
        let mut restore = book.clone();
        restore.steps.truncate(1);
        let over = plan("fix", &restore, params, &wide, &view(), 0);
        assert!(!over.blast_radius.ok);
        assert!(
            over.blast_radius.detail.contains("2 services (db, api)"),
            "{}",
            over.blast_radius.detail
        );
    }

    #[test]
    fn long_output_keeps_its_end() {
        let text = "x".repeat(10_000) + "the error";
        let cut = truncate_output(&text);
        assert!(cut.len() < 4200 && cut.ends_with("the error") && cut.starts_with("[…"));
    }
}
