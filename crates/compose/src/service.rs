//! One compose service → one wharf service: what runs (command or image), replicas,
//! dependencies and restart policy, with ports, env and healthcheck delegated to their modules.

use indexmap::IndexMap;
use serde_json::{Map, Value, json};
use wharf_manifest::yaml::{Node, NodeKind};

use crate::{ImportError, Importer, env, health, keys, map_entries, ports};

/// Service keys this crate carries over (or deliberately folds into another key).
const HANDLED: &[&str] = &[
    "image",
    "build",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "depends_on",
    "healthcheck",
    "deploy",
    "restart",
    "scale",
    "volumes",
    "pull_policy",
];

/// Every compose service name with its wharf name.
pub(crate) struct ServiceNames {
    names: IndexMap<String, String>,
}

impl ServiceNames {
    pub(crate) fn collect(services: &Node) -> Self {
        let names = map_entries(services)
            .iter()
            .filter_map(|(key, _)| key.as_str())
            .map(|name| (name.to_owned(), keys::service_name(name)))
            .collect();
        ServiceNames { names }
    }

    /// The wharf name of a compose service (the same unless it had characters wharf rejects).
    pub(crate) fn wharf_name(&self, compose: &str) -> String {
        self.names
            .get(compose)
            .cloned()
            .unwrap_or_else(|| keys::service_name(compose))
    }

    fn contains(&self, compose: &str) -> bool {
        self.names.contains_key(compose)
    }
}

/// What one conversion needs to know about the service at hand.
pub(crate) struct Service<'n> {
    pub name: &'n str,
    pub key: &'n Node,
    pub node: &'n Node,
}

impl Service<'_> {
    /// The dotted path of one of this service's keys, as warnings name it.
    pub(crate) fn path(&self, key: &str) -> String {
        format!("services.{}.{key}", self.name)
    }
}

/// Converts one service; `Ok(None)` when it is malformed (the error is recorded).
pub(crate) fn convert(
    imp: &mut Importer<'_>,
    project: &str,
    names: &ServiceNames,
    name: &str,
    key: &Node,
    node: &Node,
) -> Result<Option<Value>, ImportError> {
    if !matches!(node.kind, NodeKind::Map(_)) {
        imp.error(
            node.span,
            format!(
                "service `{name}` must be a mapping, found {}",
                node.type_name()
            ),
        );
        return Ok(None);
    }
    let service = Service { name, key, node };
    imp.scope = Some(crate::Scope::new(name, key, node));
    let converted = convert_scoped(imp, project, names, &service);
    imp.scope = None;
    converted
}

/// [`convert`] with the importer scoped to the service.
fn convert_scoped(
    imp: &mut Importer<'_>,
    project: &str,
    names: &ServiceNames,
    service: &Service<'_>,
) -> Result<Option<Value>, ImportError> {
    warn_if_renamed(imp, names, service);
    let mut out = Map::new();
    run_target(imp, project, service, &mut out);
    ports::convert(imp, service, &mut out);
    replicas(imp, service, &mut out);
    let env = env::convert(imp, service)?;
    if !env.is_empty() {
        out.insert("env".to_owned(), Value::Object(env));
    }
    depends_on(imp, names, service, &mut out);
    if let Some(probe) = health::convert(imp, service) {
        out.insert("probes".to_owned(), json!({ "ready": probe }));
    }
    restart(imp, service, &mut out);
    crate::volumes::convert(imp, service, &mut out);
    crate::volumes::pull_policy(imp, service, &mut out);
    let networks = imp.networks.clone();
    crate::options::convert(imp, service, &networks, &mut out);
    other_keys(imp, service);
    crate::variables::check(imp, service);
    Ok(Some(Value::Object(out)))
}

fn warn_if_renamed(imp: &mut Importer<'_>, names: &ServiceNames, service: &Service<'_>) {
    let wharf = names.wharf_name(service.name);
    if wharf != service.name {
        let message = format!("service `{}` is imported as `{wharf}`", service.name);
        let hint = "wharf service names start with a letter and use letters, digits, `-` and `_`";
        imp.changed(
            format!("services.{}", service.name),
            service.key.span,
            message,
            Some(hint),
        );
    }
}

/// What the service runs. wharf runs either a local `command` or a container `image`, never
/// both. A service built from the project's own source (`build:`) keeps its command: that is
/// the process a developer runs locally. An off-the-shelf image keeps the image, with its
/// `command`/`entrypoint` overrides (postgres' `-c wal_level=logical`).
fn run_target(
    imp: &mut Importer<'_>,
    project: &str,
    service: &Service<'_>,
    out: &mut Map<String, Value>,
) {
    let (node, name) = (service.node, service.name);
    let image = node.get("image");
    let build = node.get("build");
    let entrypoint = node
        .get("entrypoint")
        .and_then(|n| words(imp, service, "entrypoint", n));
    let command = node
        .get("command")
        .and_then(|n| words(imp, service, "command", n));
    let joined: Vec<String> = entrypoint
        .iter()
        .chain(command.iter())
        .flatten()
        .cloned()
        .collect();
    let built_tag = format!("{project}-{name}");
    // A service compose builds is built by wharf too (`build:`), and runs as a container.
    let carried_build = build.and_then(|b| crate::build::convert(imp, service, b));
    let runs_command =
        !joined.is_empty() && carried_build.is_none() && (build.is_some() || image.is_none());
    if let Some(carried) = carried_build {
        if let Some(text) = image.and_then(Node::as_str) {
            out.insert("image".to_owned(), json!(text));
        }
        out.insert("build".to_owned(), carried);
        // compose's meanings are wharf's on an image: `entrypoint` replaces the image's
        // ENTRYPOINT, `command` its CMD.
        if let Some(entrypoint) = entrypoint {
            out.insert("entrypoint".to_owned(), json!(entrypoint));
        }
        if let Some(command) = command {
            out.insert("command".to_owned(), json!(command));
        }
        return;
    }
    if runs_command {
        out.insert("command".to_owned(), json!(joined));
        warn_command_meaning(imp, service, entrypoint.is_some(), command.is_some());
    } else if let Some(text) = image.and_then(Node::as_str) {
        datastore(imp, service, text, out);
        out.insert("image".to_owned(), json!(text));
        carry_override(imp, service, "entrypoint", entrypoint.as_deref(), out);
        carry_override(imp, service, "command", command.as_deref(), out);
    } else if build.is_some() {
        out.insert("image".to_owned(), json!(built_tag));
    } else {
        imp.error(
            service.key.span,
            format!("service `{name}` has no `image`, `build` or `command`"),
        );
    }
    if let Some(build) = build {
        let tag = image.and_then(Node::as_str).unwrap_or(&built_tag);
        let message = if runs_command {
            format!(
                "`services.{name}.build` is not carried over: the service's command runs as a local process, not inside image `{tag}`"
            )
        } else {
            format!(
                "`services.{name}.build` is not carried over: wharf runs image `{tag}` but does not build it"
            )
        };
        let hint = if runs_command {
            "run the command where its code and dependencies are installed, or build the image and use `image:` instead of `command:`".to_owned()
        } else {
            format!("build it first: `docker compose build {name}` (compose tags it `{tag}`)")
        };
        imp.warn(
            service.path("build"),
            key_span(node, "build", build),
            message,
            Some(&hint),
        );
    }
}

/// A well-known database image becomes a datastore of its `kind`, the image kept, so wharf
/// backs it up and probes it as one.
fn datastore(
    imp: &mut Importer<'_>,
    service: &Service<'_>,
    image: &str,
    out: &mut Map<String, Value>,
) {
    let Some(engine) = crate::datastore::engine(image) else {
        return;
    };
    out.insert("kind".to_owned(), json!(engine.kind));
    if let Some(engine_name) = engine.served_as {
        let node = service.node.get("image").unwrap_or(service.node);
        let family = if engine.kind == "redis" {
            "Redis"
        } else {
            "MariaDB"
        };
        let message = format!(
            "`{}: {image}` is imported as `kind: {}`: wharf treats {engine_name} as {family} (its protocol, backups with {family}'s tools)",
            service.path("image"),
            engine.kind,
        );
        let hint = "remove `kind:` if the engine's differences matter for its backups";
        imp.changed(
            service.path("image"),
            key_span(service.node, "image", node),
            message,
            Some(hint),
        );
    }
}

/// A `command`/`entrypoint` override on an image, carried as the list of words compose
/// passes to the engine (`command` replaces the image's CMD, `entrypoint` its ENTRYPOINT and
/// with it the CMD, as in compose). An empty one (compose's way to clear the image's) has no
/// manifest form and is warned about.
fn carry_override(
    imp: &mut Importer<'_>,
    service: &Service<'_>,
    key: &str,
    words: Option<&[String]>,
    out: &mut Map<String, Value>,
) {
    let Some(value) = service.node.get(key) else {
        return;
    };
    match words {
        Some(words) if !words.is_empty() => {
            out.insert(key.to_owned(), json!(words));
        }
        // Null: compose's "not set".
        None if matches!(value.kind, NodeKind::Null) => {}
        // Unbalanced quotes: already an error.
        None => {}
        Some(_) => {
            let message = format!(
                "`{}` is empty and not carried over: wharf runs the image's own {key}",
                service.path(key)
            );
            let hint = format!(
                "an empty {key} clears the image's in compose; give the words to run instead"
            );
            imp.warn(
                service.path(key),
                key_span(service.node, key, value),
                message,
                Some(&hint),
            );
        }
    }
}

/// Warns where the joined command does not mean what compose meant: the image is dropped for
/// a command, and a `command` alone was arguments to the image's ENTRYPOINT.
fn warn_command_meaning(
    imp: &mut Importer<'_>,
    service: &Service<'_>,
    has_entrypoint: bool,
    has_command: bool,
) {
    let node = service.node;
    if let Some(image) = node.get("image") {
        let text = image.as_str().unwrap_or_default();
        let message = format!(
            "`{}: {text}` is not carried over: a wharf service runs either a `command` or an `image`, and this one is built from source and sets a command",
            service.path("image")
        );
        let hint = format!(
            "the command now runs as a local process; to run the container instead, replace `command` with `image: {text}`"
        );
        imp.warn(
            service.path("image"),
            key_span(node, "image", image),
            message,
            Some(&hint),
        );
    }
    if has_command && !has_entrypoint && node.get("build").is_some() {
        let command = node
            .get("command")
            .map_or(node.span, |n| key_span(node, "command", n));
        let message = format!(
            "`{}` changes meaning: compose passes it as arguments to the image's ENTRYPOINT, wharf runs it as the whole command",
            service.path("command")
        );
        let hint = "if the Dockerfile sets an ENTRYPOINT, put it in front of the command";
        imp.changed(service.path("command"), command, message, Some(hint));
    }
}

/// `command`/`entrypoint` as a list of words: a string is split like a shell would, as compose
/// does (no shell runs it).
fn words(
    imp: &mut Importer<'_>,
    service: &Service<'_>,
    key: &str,
    node: &Node,
) -> Option<Vec<String>> {
    match &node.kind {
        NodeKind::Null => None,
        NodeKind::Scalar { value, .. } => shlex::split(value).or_else(|| {
            imp.error(
                node.span,
                format!("`{}`: unbalanced quotes", service.path(key)),
            );
            None
        }),
        NodeKind::Seq(items) => items
            .iter()
            .map(|item| scalar(imp, item, &service.path(key)))
            .collect(),
        NodeKind::Map(_) => {
            imp.error(
                node.span,
                format!("`{}` must be a string or a list", service.path(key)),
            );
            None
        }
    }
}

/// A scalar's text, or an error naming `what`.
pub(crate) fn scalar(imp: &mut Importer<'_>, node: &Node, what: &str) -> Option<String> {
    match &node.kind {
        NodeKind::Scalar { value, .. } => Some(value.clone()),
        _ => {
            imp.error(
                node.span,
                format!("`{what}`: expected a string, found {}", node.type_name()),
            );
            None
        }
    }
}

/// The span of the key whose value is `value` in mapping `parent` (the value's span if not found).
pub(crate) fn key_span(parent: &Node, key: &str, value: &Node) -> wharf_manifest::Span {
    map_entries(parent)
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map_or(value.span, |(k, _)| k.span)
}

/// `deploy.replicas` (or the legacy `scale`) → `replicas`; the rest of `deploy` is warned about.
fn replicas(imp: &mut Importer<'_>, service: &Service<'_>, out: &mut Map<String, Value>) {
    let node = service.node;
    let deploy = node.get("deploy");
    let count = deploy
        .and_then(|d| d.get("replicas"))
        .or_else(|| node.get("scale"));
    if let Some(count) = count {
        match count.as_str() {
            Some(text) if text.contains('$') => {
                out.insert("replicas".to_owned(), json!(text));
            }
            Some(text) if text.parse::<u32>().is_ok() => {
                out.insert(
                    "replicas".to_owned(),
                    json!(text.parse::<u32>().unwrap_or(1)),
                );
            }
            _ => imp.error(
                count.span,
                format!(
                    "`{}`: expected a number of replicas",
                    service.path("deploy.replicas")
                ),
            ),
        }
    }
    for (key, _) in deploy.map(map_entries).unwrap_or_default() {
        let Some(name) = key.as_str() else { continue };
        if matches!(name, "replicas" | "restart_policy") {
            continue;
        }
        let path = service.path(&format!("deploy.{name}"));
        let message = format!("`{path}` is not carried over: wharf.yaml has no equivalent");
        imp.warn(path, key.span, message, None);
    }
}

fn depends_on(
    imp: &mut Importer<'_>,
    names: &ServiceNames,
    service: &Service<'_>,
    out: &mut Map<String, Value>,
) {
    let Some(node) = service.node.get("depends_on") else {
        return;
    };
    let mut deps = Map::new();
    match &node.kind {
        NodeKind::Seq(items) => {
            for item in items {
                let Some(dep) = scalar(imp, item, &service.path("depends_on")) else {
                    continue;
                };
                if known(imp, names, service, &dep, item) {
                    deps.insert(names.wharf_name(&dep), json!({ "condition": "started" }));
                }
            }
        }
        NodeKind::Map(entries) => {
            for (key, value) in entries {
                let Some(dep) = key.as_str() else { continue };
                if known(imp, names, service, dep, key) {
                    let converted = dependency(imp, service, dep, value);
                    deps.insert(names.wharf_name(dep), converted);
                }
            }
        }
        _ => imp.error(
            node.span,
            format!(
                "`{}` must be a list or a mapping",
                service.path("depends_on")
            ),
        ),
    }
    if !deps.is_empty() {
        out.insert("depends_on".to_owned(), Value::Object(deps));
    }
}

fn known(
    imp: &mut Importer<'_>,
    names: &ServiceNames,
    service: &Service<'_>,
    dep: &str,
    at: &Node,
) -> bool {
    let found = names.contains(dep);
    if !found {
        imp.error(
            at.span,
            format!(
                "service `{}` depends on `{dep}`, which is not a service in this file",
                service.name
            ),
        );
    }
    found
}

/// One long-form dependency: `condition`, `required` and `restart`.
fn dependency(imp: &mut Importer<'_>, service: &Service<'_>, dep: &str, value: &Node) -> Value {
    let path = service.path(&format!("depends_on.{dep}"));
    let mut out = Map::new();
    let condition = value.get("condition");
    let wharf_condition = match condition.and_then(Node::as_str) {
        None | Some("service_started") => "started",
        Some("service_healthy") => "ready",
        Some("service_completed_successfully") => {
            let span = condition.map_or(value.span, |c| c.span);
            let message = format!(
                "`{path}`: wharf has no \"completed successfully\" condition; `{}` waits for `{dep}` to start",
                service.name
            );
            let hint = format!(
                "`{dep}` keeps compose's restart policy, so a job that succeeds is not rerun; run it before `wharf up` if the order matters"
            );
            imp.changed(format!("{path}.condition"), span, message, Some(&hint));
            "started"
        }
        Some(other) => {
            let span = condition.map_or(value.span, |c| c.span);
            imp.error(
                span,
                format!("`{path}.condition`: unknown condition `{other}`"),
            );
            "started"
        }
    };
    out.insert("condition".to_owned(), json!(wharf_condition));
    if value.get("required").and_then(Node::as_str) == Some("false") {
        out.insert("critical".to_owned(), json!(false));
    }
    for (key, _) in map_entries(value) {
        let Some(name) = key.as_str() else { continue };
        if !matches!(name, "condition" | "required") {
            let message =
                format!("`{path}.{name}` is not carried over: wharf.yaml has no equivalent");
            imp.warn(format!("{path}.{name}"), key.span, message, None);
        }
    }
    Value::Object(out)
}

/// `restart` (or `deploy.restart_policy`) → wharf's `restart`, with compose's meaning. Without
/// either, compose restarts nothing, so the service gets `never` written out: wharf's own
/// default (`always`) would rerun a one-shot job such as a migration forever.
fn restart(imp: &mut Importer<'_>, service: &Service<'_>, out: &mut Map<String, Value>) {
    let node = service.node;
    let policy = node.get("deploy").and_then(|d| d.get("restart_policy"));
    let policy = if let Some(restart) = node.get("restart") {
        restart_value(imp, service, restart)
    } else if let Some(policy) = policy {
        restart_policy(imp, service, policy)
    } else {
        Some("never".to_owned())
    };
    if let Some(policy) = policy {
        out.insert("restart".to_owned(), json!(policy));
    }
}

/// compose's `no | always | on-failure[:N] | unless-stopped`. `unless-stopped` is wharf's
/// `always`: wharf restarts what exits by itself and never what an operator stopped, which is
/// the difference compose's two words make (Docker's `always` also revives a stopped container
/// when its daemon restarts; wharf has no such daemon restart).
fn restart_value(imp: &mut Importer<'_>, service: &Service<'_>, node: &Node) -> Option<String> {
    let text = node.as_str().unwrap_or_default();
    match text {
        "no" | "false" => Some("never".to_owned()),
        "always" | "unless-stopped" => Some("always".to_owned()),
        "on-failure" => Some("on-failure".to_owned()),
        _ => match text.strip_prefix("on-failure:").map(str::parse::<u32>) {
            // Docker reads a limit of 0 as "no limit".
            Some(Ok(0)) => Some("on-failure".to_owned()),
            Some(Ok(n)) if n <= 10_000 => Some(format!("on-failure:{n}")),
            _ => {
                imp.error(
                    node.span,
                    format!(
                        "`{}`: unknown restart policy `{text}`",
                        service.path("restart")
                    ),
                );
                None
            }
        },
    }
}

/// The swarm form: `condition: none | on-failure | any` (compose's default `any`), with
/// `max_attempts` carried as `on-failure:N`; `delay` and `window` are warned about.
fn restart_policy(imp: &mut Importer<'_>, service: &Service<'_>, node: &Node) -> Option<String> {
    let path = service.path("deploy.restart_policy");
    let condition = node.get("condition").and_then(Node::as_str);
    let attempts = node
        .get("max_attempts")
        .and_then(Node::as_str)
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|n| (1..=10_000).contains(n));
    for (key, _) in map_entries(node) {
        let Some(name) = key.as_str() else { continue };
        let carried = name == "condition"
            || (name == "max_attempts" && condition == Some("on-failure") && attempts.is_some());
        if !carried {
            let message =
                format!("`{path}.{name}` is not carried over: wharf.yaml has no equivalent");
            imp.warn(format!("{path}.{name}"), key.span, message, None);
        }
    }
    match condition {
        Some("none") => Some("never".to_owned()),
        Some("on-failure") => {
            Some(attempts.map_or_else(|| "on-failure".to_owned(), |n| format!("on-failure:{n}")))
        }
        Some("any") | None => Some("always".to_owned()),
        Some(other) => {
            imp.error(
                node.span,
                format!("`{path}.condition`: unknown condition `{other}`"),
            );
            None
        }
    }
}

/// Warns about every key this crate does not handle; `x-*` extensions are skipped silently.
fn other_keys(imp: &mut Importer<'_>, service: &Service<'_>) {
    for (key, _) in map_entries(service.node) {
        let Some(name) = key.as_str() else { continue };
        if HANDLED.contains(&name) || crate::options::KEYS.contains(&name) || name.starts_with("x-")
        {
            continue;
        }
        let (message, hint) = keys::service_key(service.name, name);
        imp.warn(service.path(name), key.span, message, hint);
    }
}
