//! The wharf.yaml schema: decodes the (overlaid, interpolated) node tree into a [`Stack`].
//!
//! Checks that need only one node's neighbourhood (rollout steps, command vs image, cron) are
//! made here; checks across services (dependencies, ports, secrets) go to `validate` with the
//! spans collected in [`References`].

use indexmap::IndexMap;

use crate::decode::{Decoder, Fields};
use crate::diagnostic::{Diagnostic, Span};
use crate::model::*;
use crate::values::{CronSchedule, Duration, DurationRule, Percent, Weight};
use crate::yaml::{Node, NodeKind};

/// Where cross-service names and values appear, for `validate`.
#[derive(Default)]
pub(crate) struct References {
    /// (service, dependency name, span of the name)
    pub depends_on: Vec<(String, String, Span)>,
    /// (service, port, span of the value)
    pub ports: Vec<(String, u16, Span)>,
    /// (service, secret name, span) from a service's `secrets:` list
    pub service_secrets: Vec<(String, String, Span)>,
    /// Span of each declared secret's name.
    pub declared_secrets: Vec<(String, Span)>,
    /// Span of each service's name.
    pub services: Vec<(String, Span)>,
    /// (alert, service, span) from an alert's `services:` list
    pub alert_services: Vec<(String, String, Span)>,
    /// (alert, runbook, span of its name, its params' names with spans, root_param with span)
    pub alert_runbooks: Vec<AlertRunbookRef>,
    /// What runbooks name (services, secrets), for `runbooks::cross_check`.
    pub runbooks: crate::runbooks::RunbookRefs,
    /// (component, service, span) from `status_page.components[].services`, and
    /// (`None`, service, span) from `status_page.hide`
    pub status_page_services: Vec<(Option<String>, String, Span)>,
    /// (gate, span) from `require.gates`
    pub require_gates: Vec<(String, Span)>,
    /// (key, span) of `require.backup_max_age` / `drill_max_age`, which judge `backup:`s
    pub require_backups: Vec<(String, Span)>,
    /// Some service says `backup:` (decoded or not: a broken one has its own error)
    pub backup_declared: bool,
    /// Each service's `networks:` list, checked against the top-level `networks:`
    pub networks: Vec<crate::container_options::NetworkUse>,
}

pub(crate) const ROOT_KEYS: &[&str] = &[
    "name",
    "services",
    "environments",
    "secrets",
    "smoke",
    "alerts",
    "require",
    "backups",
    "runbooks",
    "status_page",
    "gates",
    "networks",
];
pub(crate) const ENVIRONMENT_KEYS: &[&str] = &["require", "services", "secrets", "smoke", "alerts"];
const SERVICE_KEYS: &[&str] = &[
    "kind",
    "command",
    "image",
    "url",
    "path",
    "version",
    "port",
    "replicas",
    "env",
    "secrets",
    "secret_files",
    "depends_on",
    "probes",
    "rollout",
    "sticky",
    "proxy",
    "reload",
    "restart",
    "backup",
    "stop",
];
const PROBE_KEYS: &[&str] = &[
    "http",
    "tcp",
    "exec",
    "postgres",
    "redis",
    "interval",
    "timeout",
    "failure_threshold",
    "success_threshold",
    "start_period",
];
const PROBE_KINDS: &[&str] = &["http", "tcp", "exec", "postgres", "redis"];
const HTTP_KEYS: &[&str] = &[
    "method",
    "path",
    "url",
    "headers",
    "expect_status",
    "body_contains",
    "json",
    "max_latency",
    "warn_latency",
];

pub(crate) fn stack(decoder: &mut Decoder, root: &Node, refs: &mut References) -> Option<Stack> {
    let fields = decoder.fields(root, "the manifest", ROOT_KEYS)?;
    if root.kind == NodeKind::Null {
        decoder.push(
            Diagnostic::error(root.span, "the manifest is empty")
                .with_hint("run `wharf init` for a starter file"),
        );
        return None;
    }
    let name = fields
        .require(decoder, "name", "the manifest")
        .and_then(|n| stack_name(decoder, n));
    // `services:` with nothing under it is present but empty, which `services` reports.
    let services = match root
        .get("services")
        .or_else(|| fields.require(decoder, "services", "the manifest"))
    {
        Some(node) => services(decoder, node, refs),
        None => IndexMap::new(),
    };
    let secrets = fields
        .get("secrets")
        .map(|n| secrets(decoder, n, refs))
        .unwrap_or_default();
    let smoke = fields
        .get("smoke")
        .map(|n| smoke_checks(decoder, n))
        .unwrap_or_default();
    let alerts = fields
        .get("alerts")
        .map(|n| alerts(decoder, n, refs))
        .unwrap_or_default();
    let require = fields
        .get("require")
        .and_then(|n| requirements(decoder, n, refs));
    let backups = fields
        .get("backups")
        .and_then(|n| backup_repository(decoder, n));
    let runbooks = fields
        .get("runbooks")
        .map(|n| crate::runbooks::runbooks(decoder, n, refs))
        .unwrap_or_default();
    let status_page = fields
        .get("status_page")
        .and_then(|n| status_page(decoder, n, refs));
    let gates = fields
        .get("gates")
        .map(|n| crate::gates::gates(decoder, n))
        .unwrap_or_default();
    let networks = fields
        .get("networks")
        .map(|n| crate::container_options::networks(decoder, n))
        .unwrap_or_default();
    Some(Stack {
        name: name?,
        environment: None,
        require,
        backups,
        secrets,
        services,
        smoke,
        alerts,
        runbooks,
        status_page,
        gates,
        networks,
    })
}

/// `status_page: {title, components: [{name, services, description}], hide: [..]}`. Whether
/// the services exist is `validate`'s question (with the spans kept in `refs`).
fn status_page(decoder: &mut Decoder, node: &Node, refs: &mut References) -> Option<StatusPage> {
    const WHAT: &str = "`status_page`";
    let fields = decoder.fields(node, WHAT, &["title", "components", "hide"])?;
    let title = fields
        .get("title")
        .and_then(|n| decoder.string(n, &sub(WHAT, "title")));
    let mut components: Vec<PublicComponent> = Vec::new();
    if let Some(list) = fields.get("components") {
        let items = decoder.items(list, &sub(WHAT, "components"));
        if items.is_empty() {
            decoder.push(
                Diagnostic::error(list.span, "`status_page.components` is empty").with_hint(
                    "list at least one component, or remove `components` to show every service",
                ),
            );
        }
        for (index, item) in items.iter().enumerate() {
            if let Some(component) = public_component(decoder, index, item, &components, refs) {
                components.push(component);
            }
        }
    }
    let mut hide = Vec::new();
    if let Some(list) = fields.get("hide") {
        if fields.has("components") {
            decoder.push(
                Diagnostic::error(
                    fields.key_span("hide").unwrap_or(list.span),
                    "`status_page.hide` is for the default components; with `components` only the listed ones show",
                )
                .with_label("not used with `components`")
                .with_hint("remove `hide`, or remove `components` to show every service but the hidden ones"),
            );
        }
        for service in decoder.items(list, &sub(WHAT, "hide")) {
            if let Some(name) = decoder.name(service, &sub(WHAT, "hide")) {
                refs.status_page_services
                    .push((None, name.clone(), service.span));
                hide.push(name);
            }
        }
    }
    Some(StatusPage {
        title,
        components,
        hide,
    })
}

/// One entry of `status_page.components`; a name used twice is an error at the second.
fn public_component(
    decoder: &mut Decoder,
    index: usize,
    item: &Node,
    before: &[PublicComponent],
    refs: &mut References,
) -> Option<PublicComponent> {
    let what = format!("status_page component {}", index + 1);
    let fields = decoder.fields(item, &what, &["name", "services", "description"])?;
    let name_node = fields.require(decoder, "name", &what);
    let name = name_node.and_then(|n| decoder.name(n, &format!("{what} name")));
    if let (Some(name), Some(node)) = (&name, name_node)
        && before.iter().any(|c| c.name == *name)
    {
        decoder.push(
            Diagnostic::error(
                node.span,
                format!("status_page component `{name}` is declared twice"),
            )
            .with_label("a second component of this name")
            .with_hint("give each component its own name, or list both services under one"),
        );
        return None;
    }
    let description = fields
        .get("description")
        .and_then(|n| decoder.string(n, &sub(&what, "description")));
    let mut services = Vec::new();
    if let Some(list) = fields.require(decoder, "services", &what) {
        let items = decoder.items(list, &sub(&what, "services"));
        if items.is_empty() {
            decoder.push(
                Diagnostic::error(list.span, format!("{what} lists no services"))
                    .with_hint("a component shows the health of at least one service"),
            );
        }
        for service in items {
            if let Some(text) = decoder.name(service, &sub(&what, "services")) {
                refs.status_page_services.push((
                    Some(name.clone().unwrap_or_else(|| what.clone())),
                    text.clone(),
                    service.span,
                ));
                services.push(text);
            }
        }
    }
    Some(PublicComponent {
        name: name?,
        services,
        description,
    })
}

fn stack_name(decoder: &mut Decoder, node: &Node) -> Option<String> {
    let name = decoder.name(node, "`name`")?;
    let valid = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        decoder.push(
            Diagnostic::error(
                node.span,
                format!("stack name `{name}` has characters wharf cannot use"),
            )
            .with_hint("use letters, digits, `-` and `_`"),
        );
        return None;
    }
    Some(name)
}

fn services(
    decoder: &mut Decoder,
    node: &Node,
    refs: &mut References,
) -> IndexMap<String, Service> {
    let mut services = IndexMap::new();
    let entries = decoder.named_entries(node, "`services`");
    if entries.is_empty() && matches!(node.kind, NodeKind::Map(_) | NodeKind::Null) {
        decoder.push(
            Diagnostic::error(node.span, "`services` is empty")
                .with_hint("declare at least one service"),
        );
    }
    for (name, key, value) in entries {
        refs.services.push((name.clone(), key.span));
        if !is_identifier(&name) {
            decoder.push(
                Diagnostic::error(
                    key.span,
                    format!("service name `{name}` has characters wharf cannot use"),
                )
                .with_hint("use lowercase letters, digits, `-` and `_`, starting with a letter"),
            );
        }
        if let Some(service) = service(decoder, &name, key.span, value, refs) {
            services.insert(name, service);
        }
    }
    services
}

pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn service(
    decoder: &mut Decoder,
    name: &str,
    name_span: Span,
    node: &Node,
    refs: &mut References,
) -> Option<Service> {
    let what = format!("service `{name}`");
    let known: Vec<&str> = SERVICE_KEYS
        .iter()
        .chain(crate::container::CONTAINER_KEYS)
        .chain(crate::container_options::OPTION_KEYS)
        .chain(["ports"].iter())
        .copied()
        .chain(crate::container::NOT_BUILT.iter().map(|(key, _)| *key))
        .collect();
    let fields = decoder.fields(node, &what, &known)?;
    let field = |key: &str| format!("`services.{name}.{key}`");
    let kind = fields.get("kind").and_then(|n| {
        decoder.choice(
            n,
            &field("kind"),
            &[
                ("postgres", DatastoreKind::Postgres),
                ("mariadb", DatastoreKind::Mariadb),
                ("redis", DatastoreKind::Redis),
                ("sqlite", DatastoreKind::Sqlite),
                ("directory", DatastoreKind::Directory),
            ],
        )
    });
    let command = fields
        .get("command")
        .and_then(|n| decoder.command(n, &field("command")));
    let image = fields
        .get("image")
        .and_then(|n| decoder.name(n, &field("image")));
    check_runnable(decoder, name, name_span, &fields);
    let port = fields.get("port").and_then(|n| {
        let port = decoder.integer::<u16>(n, &field("port"), 1, 65535)?;
        refs.ports.push((name.to_owned(), port, n.span));
        Some(port)
    });
    let mut secret_list = |key: &str| {
        fields.get(key).and_then(|n| {
            let names = decoder.string_list(n, &field(key))?;
            let spans = item_spans(n);
            for (secret, span) in names.iter().zip(spans) {
                refs.service_secrets
                    .push((name.to_owned(), secret.clone(), span));
            }
            Some(names)
        })
    };
    let secrets = secret_list("secrets");
    let secret_files = secret_list("secret_files");
    let depends_on = fields
        .get("depends_on")
        .map(|n| dependencies(decoder, name, n, refs))
        .unwrap_or_default();
    let proxy = fields.get("proxy").and_then(|n| {
        let served = !fields.has("kind")
            && (fields.has("command") || fields.has("image") || fields.has("build"))
            && fields.has("port");
        if !served {
            let key = fields.key_span("proxy").unwrap_or(n.span);
            decoder.push(
                Diagnostic::error(
                    key,
                    format!("`proxy` on {what}, which the wharf proxy does not serve"),
                )
                .with_hint(
                    "the proxy serves services with `command:` or `image:` and `port:` (not datastores)",
                ),
            );
        }
        proxy_settings(decoder, &field("proxy"), n)
    });
    if fields.has("backup") {
        refs.backup_declared = true;
    }
    let backup = fields.get("backup").and_then(|n| {
        if !fields.has("kind") {
            let key = fields.key_span("backup").unwrap_or(n.span);
            decoder.push(
                Diagnostic::error(key, format!("`backup` on {what}, which is not a datastore"))
                    .with_hint("backups apply to services with `kind: postgres | mariadb | redis | sqlite | directory`"),
            );
        } else if !fields.has("url") && !fields.has("path") {
            // A backup reaches the datastore by its address; without one it could never run.
            let key = fields.key_span("backup").unwrap_or(n.span);
            decoder.push(
                Diagnostic::error(key, format!("`backup` on {what}, which has no `url:` or `path:` to back up from"))
                    .with_hint("give the datastore's address: `url:` for postgres, mariadb and redis (a `${secret:…}` may hold its password), `path:` for sqlite and directory"),
            );
        }
        backup(decoder, name, n)
    });
    let ports = crate::ports::ports(decoder, name, &fields);
    for (port, span) in &ports {
        refs.ports.push((name.to_owned(), port.published, *span));
    }
    let mut container = crate::container::container(decoder, name, &fields, refs);
    if let Some(container) = container.as_mut() {
        container.ports = ports.into_iter().map(|(port, _)| port).collect();
    }
    let stop = crate::container_options::stop(decoder, name, &fields);
    Some(Service {
        container,
        kind,
        command,
        image,
        url: fields
            .get("url")
            .and_then(|n| decoder.name(n, &field("url"))),
        path: fields
            .get("path")
            .and_then(|n| decoder.name(n, &field("path"))),
        version: fields
            .get("version")
            .and_then(|n| decoder.name(n, &field("version"))),
        port,
        replicas: fields
            .get("replicas")
            .and_then(|n| decoder.integer(n, &field("replicas"), 0, 1000))
            .unwrap_or(1),
        env: fields
            .get("env")
            .map(|n| decoder.string_map(n, &field("env")))
            .unwrap_or_default(),
        secrets: secrets.unwrap_or_default(),
        secret_files: secret_files.unwrap_or_default(),
        depends_on,
        probes: fields
            .get("probes")
            .map(|n| probes(decoder, name, n))
            .unwrap_or_default(),
        rollout: fields
            .get("rollout")
            .and_then(|n| rollout(decoder, name, n)),
        sticky: fields
            .get("sticky")
            .and_then(|n| sticky(decoder, &field("sticky"), n)),
        proxy,
        reload: fields
            .get("reload")
            .and_then(|n| {
                decoder.choice(
                    n,
                    &field("reload"),
                    &[("restart", Reload::Restart), ("signal", Reload::Signal)],
                )
            })
            .unwrap_or(Reload::Restart),
        restart: fields
            .get("restart")
            .and_then(|n| restart_policy(decoder, &field("restart"), n))
            .unwrap_or(RestartPolicy::Always),
        stop,
        backup,
    })
}

/// `always | on-failure | on-failure:N | never`: the retry limit is compose's and Docker's
/// spelling, so a compose file's `on-failure:5` keeps its meaning.
fn restart_policy(decoder: &mut Decoder, what: &str, node: &Node) -> Option<RestartPolicy> {
    if let Some(limit) = node.as_str().and_then(|t| t.strip_prefix("on-failure:")) {
        let max_retries = limit
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=10_000).contains(n));
        if max_retries.is_none() {
            decoder.push(
                Diagnostic::error(node.span, format!("{what}: `{limit}` is not a retry limit"))
                    .with_hint(
                        "write `on-failure:N` with N from 1 to 10000, or `on-failure` for no limit",
                    ),
            );
        }
        return max_retries.map(|n| RestartPolicy::OnFailure {
            max_retries: Some(n),
        });
    }
    decoder.choice(
        node,
        what,
        &[
            ("always", RestartPolicy::Always),
            ("on-failure", RestartPolicy::OnFailure { max_retries: None }),
            ("never", RestartPolicy::Never),
        ],
    )
}

/// A service runs a `command`, an `image` (whose `CMD` a `command` then overrides), or is a
/// datastore (`kind`).
fn check_runnable(decoder: &mut Decoder, name: &str, name_span: Span, fields: &Fields<'_>) {
    let (command, image, kind) = (
        fields.get("command"),
        // An image wharf builds (`build:`) runs like one it pulls.
        fields.get("image").or_else(|| fields.get("build")),
        fields.get("kind"),
    );
    if command.is_none() && image.is_none() && kind.is_none() {
        decoder.push(
            Diagnostic::error(name_span, format!("service `{name}` has nothing to run"))
                .with_label("needs `command`, `image` or `kind`")
                .with_hint("add `command: [...]` for a local process, `image:` for a container, or `kind:` for a datastore"),
        );
    }
    if let Some(kind) = kind {
        let external = fields.has("url") || fields.has("path");
        if command.is_none() && image.is_none() && !external {
            decoder.push(
                Diagnostic::error(kind.span, format!("datastore `{name}` has no `url`, `path`, `command` or `image`"))
                    .with_hint("point wharf at it with `url:` (or `path:` for sqlite and directory), or let wharf run it with `command:`"),
            );
        }
    }
}

fn item_spans(node: &Node) -> Vec<Span> {
    match &node.kind {
        NodeKind::Seq(items) => items.iter().map(|n| n.span).collect(),
        _ => vec![node.span],
    }
}

fn dependencies(
    decoder: &mut Decoder,
    service: &str,
    node: &Node,
    refs: &mut References,
) -> IndexMap<String, Dependency> {
    let what = format!("`services.{service}.depends_on`");
    let mut deps = IndexMap::new();
    let default = Dependency {
        condition: DependencyCondition::Started,
        critical: true,
    };
    if let NodeKind::Seq(items) = &node.kind {
        for item in items {
            if let Some(name) = decoder.name(item, &what) {
                refs.depends_on
                    .push((service.to_owned(), name.clone(), item.span));
                deps.insert(name, default.clone());
            }
        }
        return deps;
    }
    for (name, key, value) in decoder.named_entries(node, &what) {
        refs.depends_on
            .push((service.to_owned(), name.clone(), key.span));
        let entry = sub(&what, &name);
        let Some(fields) = decoder.fields(value, &entry, &["condition", "critical"]) else {
            continue;
        };
        let condition = fields
            .get("condition")
            .and_then(|n| {
                decoder.choice(
                    n,
                    &sub(&entry, "condition"),
                    &[
                        ("started", DependencyCondition::Started),
                        ("ready", DependencyCondition::Ready),
                    ],
                )
            })
            .unwrap_or(DependencyCondition::Started);
        let critical = fields
            .get("critical")
            .and_then(|n| decoder.boolean(n, &sub(&entry, "critical")))
            .unwrap_or(true);
        deps.insert(
            name,
            Dependency {
                condition,
                critical,
            },
        );
    }
    deps
}

fn probes(decoder: &mut Decoder, service: &str, node: &Node) -> Probes {
    let what = format!("`services.{service}.probes`");
    let Some(fields) = decoder.fields(node, &what, &["live", "ready"]) else {
        return Probes::default();
    };
    Probes {
        live: fields
            .get("live")
            .and_then(|n| probe(decoder, &sub(&what, "live"), fields.key_span("live"), n)),
        ready: fields
            .get("ready")
            .and_then(|n| probe(decoder, &sub(&what, "ready"), fields.key_span("ready"), n)),
    }
}

/// `key` is the span of `live:` or `ready:`, where a probe with no check is reported.
fn probe(decoder: &mut Decoder, what: &str, key: Option<Span>, node: &Node) -> Option<Probe> {
    let fields = decoder.fields(node, what, PROBE_KEYS)?;
    let kinds: Vec<(&str, &Node)> = PROBE_KINDS
        .iter()
        .filter_map(|kind| {
            fields
                .get(kind)
                .map(|n| (*kind, n))
                .or_else(|| has_null(&fields, node, kind))
        })
        .collect();
    let (kind, check_node) = match kinds.as_slice() {
        [one] => *one,
        [] => {
            decoder.push(
                Diagnostic::error(
                    key.unwrap_or(node.span),
                    format!("{what} does not say what to check"),
                )
                .with_hint("add one of `http`, `tcp`, `exec`, `postgres`, `redis`"),
            );
            return None;
        }
        [_, (second, n), ..] => {
            decoder.push(
                Diagnostic::error(
                    n.span,
                    format!("{what} has more than one check (`{second}` is the second)"),
                )
                .with_hint(
                    "a probe checks one thing; split it into `live` and `ready` or drop one",
                ),
            );
            return None;
        }
    };
    let check_what = sub(what, kind);
    let check = match kind {
        "http" => ProbeCheck::Http(http_check(decoder, &check_what, check_node, false)?),
        "tcp" => ProbeCheck::Tcp(tcp_check(decoder, &check_what, check_node)?),
        "exec" => ProbeCheck::Exec(exec_check(decoder, &check_what, check_node)?),
        "postgres" => ProbeCheck::Postgres(connect_check(decoder, &check_what, check_node)?),
        _ => ProbeCheck::Redis(connect_check(decoder, &check_what, check_node)?),
    };
    let duration = |decoder: &mut Decoder, key: &str, rule: DurationRule, default: Duration| {
        fields
            .get(key)
            .and_then(|n| decoder.duration(n, &sub(what, key), rule))
            .unwrap_or(default)
    };
    let interval = duration(
        decoder,
        "interval",
        DurationRule::Period,
        Duration::from_secs(10),
    );
    let timeout = duration(
        decoder,
        "timeout",
        DurationRule::Period,
        Duration::from_secs(1),
    );
    let start_period = duration(
        decoder,
        "start_period",
        DurationRule::Wait,
        Duration::default(),
    );
    if timeout > interval
        && let Some(n) = fields.get("timeout")
    {
        decoder.push(
            Diagnostic::warning(
                n.span,
                format!("{what}: timeout {timeout} is longer than the interval {interval}"),
            )
            .with_hint("probes would overlap; make the timeout shorter than the interval"),
        );
    }
    let threshold = |decoder: &mut Decoder, key: &str| {
        fields
            .get(key)
            .and_then(|n| decoder.integer(n, &sub(what, key), 1, 1000))
    };
    Some(Probe {
        check,
        interval,
        timeout,
        failure_threshold: threshold(decoder, "failure_threshold").unwrap_or(3),
        success_threshold: threshold(decoder, "success_threshold").unwrap_or(1),
        start_period,
    })
}

/// `tcp: {}` and `postgres:` (null) are complete checks: the key alone selects the kind.
fn has_null<'n>(
    fields: &Fields<'n>,
    _parent: &'n Node,
    kind: &'static str,
) -> Option<(&'static str, &'n Node)> {
    fields
        .iter()
        .find(|(name, _, value)| *name == kind && value.kind == NodeKind::Null)
        .map(|(_, _, value)| (kind, value))
}

pub(crate) fn http_check(
    decoder: &mut Decoder,
    what: &str,
    node: &Node,
    needs_url: bool,
) -> Option<HttpCheck> {
    // Shorthand: `http: /health` (a path) or `http: http://host/health` (a URL).
    if let NodeKind::Scalar { value, .. } = &node.kind {
        let is_url = value.contains("://");
        // The same rule as the long form's `path` (found by the fuzz run: `http: health`
        // validated, while its rendered `{path: health}` did not).
        if !is_url && !value.starts_with('/') {
            decoder.push(
                Diagnostic::error(
                    node.span,
                    format!("{what} must be a path starting with `/` or a URL"),
                )
                .with_hint("e.g. `http: /health` or `http: http://127.0.0.1:8080/health`"),
            );
            return None;
        }
        return Some(HttpCheck {
            method: "GET".to_owned(),
            path: (!is_url).then(|| value.clone()),
            url: is_url.then(|| value.clone()),
            headers: IndexMap::new(),
            expect_status: Vec::new(),
            body_contains: None,
            json: None,
            max_latency: None,
            warn_latency: None,
        });
    }
    let fields = decoder.fields(node, what, HTTP_KEYS)?;
    let path = fields
        .get("path")
        .and_then(|n| decoder.name(n, &sub(what, "path")));
    let url = fields
        .get("url")
        .and_then(|n| decoder.name(n, &sub(what, "url")));
    if needs_url && url.is_none() && !fields.has("url") {
        fields.require(decoder, "url", what);
    } else if !needs_url
        && path.is_none()
        && url.is_none()
        && !fields.has("path")
        && !fields.has("url")
    {
        decoder.push(
            Diagnostic::error(
                node.span,
                format!("{what} needs a `path` (on the instance) or a `url`"),
            )
            .with_hint("e.g. `http: {path: /health}`"),
        );
    }
    if let (Some(p), Some(n)) = (&path, fields.get("path"))
        && !p.starts_with('/')
    {
        decoder.push(Diagnostic::error(
            n.span,
            format!("{} must start with `/`", sub(what, "path")),
        ));
    }
    let max_latency = fields
        .get("max_latency")
        .and_then(|n| decoder.duration(n, &sub(what, "max_latency"), DurationRule::Period));
    let warn_latency = fields
        .get("warn_latency")
        .and_then(|n| decoder.duration(n, &sub(what, "warn_latency"), DurationRule::Period));
    if let (Some(warn), Some(max), Some(n)) =
        (warn_latency, max_latency, fields.get("warn_latency"))
        && warn >= max
    {
        decoder.push(Diagnostic::error(
            n.span,
            format!("{what}: warn_latency {warn} must be below max_latency {max}"),
        ));
    }
    Some(HttpCheck {
        method: fields
            .get("method")
            .and_then(|n| {
                let methods =
                    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"].map(|m| (m, m));
                decoder.choice(n, &sub(what, "method"), &methods)
            })
            .unwrap_or("GET")
            .to_owned(),
        path,
        url,
        headers: fields
            .get("headers")
            .map(|n| decoder.string_map(n, &sub(what, "headers")))
            .unwrap_or_default(),
        expect_status: fields
            .get("expect_status")
            .map(|n| statuses(decoder, what, n))
            .unwrap_or_default(),
        body_contains: fields
            .get("body_contains")
            .and_then(|n| decoder.string(n, &sub(what, "body_contains"))),
        json: fields
            .get("json")
            .and_then(|n| json_condition(decoder, what, n)),
        max_latency,
        warn_latency,
    })
}

fn statuses(decoder: &mut Decoder, what: &str, node: &Node) -> Vec<u16> {
    let what = sub(what, "expect_status");
    let single = std::slice::from_ref(node);
    let items = match &node.kind {
        NodeKind::Seq(items) => items.as_slice(),
        _ => single,
    };
    items
        .iter()
        .filter_map(|n| decoder.integer(n, &what, 100, 599))
        .collect()
}

fn json_condition(decoder: &mut Decoder, what: &str, node: &Node) -> Option<JsonCondition> {
    let what = sub(what, "json");
    let fields = decoder.fields(node, &what, &["pointer", "equals"])?;
    let pointer_node = fields.require(decoder, "pointer", &what)?;
    let pointer = decoder.string(pointer_node, &what)?;
    if !pointer.is_empty() && !pointer.starts_with('/') {
        let span = fields.get("pointer").map_or(node.span, |n| n.span);
        decoder.push(
            Diagnostic::error(
                span,
                format!(
                    "{} `{pointer}` is not a JSON pointer",
                    sub(&what, "pointer")
                ),
            )
            .with_hint(format!("JSON pointers start with `/`, e.g. `/{pointer}`")),
        );
        return None;
    }
    let equals = to_json(fields.require(decoder, "equals", &what)?);
    Some(JsonCondition { pointer, equals })
}

/// A YAML node as the JSON value it denotes (plain scalars typed by YAML's core schema).
fn to_json(node: &Node) -> serde_json::Value {
    match &node.kind {
        NodeKind::Null => serde_json::Value::Null,
        NodeKind::Scalar {
            value,
            quoted: true,
        } => value.clone().into(),
        NodeKind::Scalar {
            value,
            quoted: false,
        } => match node.type_name() {
            "a boolean" => value.eq_ignore_ascii_case("true").into(),
            "an integer" => value
                .parse::<i64>()
                .map_or_else(|_| value.clone().into(), Into::into),
            "a number" => value
                .parse::<f64>()
                .map_or_else(|_| value.clone().into(), Into::into),
            _ => value.clone().into(),
        },
        NodeKind::Seq(items) => items.iter().map(to_json).collect(),
        NodeKind::Map(entries) => entries
            .iter()
            .map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), to_json(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

fn tcp_check(decoder: &mut Decoder, what: &str, node: &Node) -> Option<TcpCheck> {
    let fields = decoder.fields(node, what, &["host", "port"])?;
    Some(TcpCheck {
        host: fields
            .get("host")
            .and_then(|n| decoder.name(n, &sub(what, "host"))),
        port: fields
            .get("port")
            .and_then(|n| decoder.integer(n, &sub(what, "port"), 1, 65535)),
    })
}

pub(crate) fn exec_check(decoder: &mut Decoder, what: &str, node: &Node) -> Option<ExecCheck> {
    if matches!(node.kind, NodeKind::Seq(_) | NodeKind::Scalar { .. }) {
        return Some(ExecCheck {
            command: decoder.command(node, what)?,
            expect_exit: 0,
        });
    }
    let fields = decoder.fields(node, what, &["command", "expect_exit"])?;
    let command_node = fields.require(decoder, "command", what)?;
    let command = decoder.command(command_node, &sub(what, "command"))?;
    Some(ExecCheck {
        command,
        expect_exit: fields
            .get("expect_exit")
            .and_then(|n| decoder.integer(n, &sub(what, "expect_exit"), 0, 255))
            .unwrap_or(0),
    })
}

fn connect_check(decoder: &mut Decoder, what: &str, node: &Node) -> Option<ConnectCheck> {
    let fields = decoder.fields(node, what, &["url"])?;
    Some(ConnectCheck {
        url: fields
            .get("url")
            .and_then(|n| decoder.name(n, &sub(what, "url"))),
    })
}

fn rollout(decoder: &mut Decoder, service: &str, node: &Node) -> Option<Rollout> {
    let what = format!("`services.{service}.rollout`");
    let fields = decoder.fields(node, &what, &["strategy", "steps", "analysis", "deadlines"])?;
    let strategy = fields
        .get("strategy")
        .and_then(|n| {
            decoder.choice(
                n,
                &sub(&what, "strategy"),
                &[
                    ("canary", Strategy::Canary),
                    ("blue-green", Strategy::BlueGreen),
                    ("recreate", Strategy::Recreate),
                ],
            )
        })
        .unwrap_or(Strategy::Canary);
    let steps = match fields.get("steps") {
        Some(n) if strategy != Strategy::Canary => {
            decoder.push(
                Diagnostic::warning(
                    n.span,
                    format!("{what}: `steps` only apply to the canary strategy and are ignored"),
                )
                .with_hint("remove `steps`, or use `strategy: canary`"),
            );
            Vec::new()
        }
        Some(n) => steps(decoder, &what, n),
        None if strategy == Strategy::Canary => Rollout::default_canary_steps(),
        None => Vec::new(),
    };
    Some(Rollout {
        strategy,
        steps,
        analysis: fields
            .get("analysis")
            .and_then(|n| analysis(decoder, &what, n))
            .unwrap_or_else(default_analysis),
        deadlines: fields
            .get("deadlines")
            .and_then(|n| deadlines(decoder, &what, n))
            .unwrap_or_default(),
    })
}

fn generator(decoder: &mut Decoder, what: &str, node: &Node) -> Option<Generator> {
    let fields = decoder.fields(node, what, &["length", "alphabet"])?;
    let default = Generator::default();
    let length = fields
        .get("length")
        .and_then(|n| decoder.integer::<u32>(n, &sub(what, "length"), 8, 4096))
        .unwrap_or(default.length);
    let alphabet = fields
        .get("alphabet")
        .and_then(|n| decoder.name(n, &sub(what, "alphabet")))
        .unwrap_or(default.alphabet);
    let generator = Generator { length, alphabet };
    let distinct: std::collections::HashSet<char> = generator.characters().chars().collect();
    if distinct.len() < 2 {
        decoder.push(
            Diagnostic::error(
                node.span,
                format!("{what}: the alphabet needs at least two distinct characters"),
            )
            .with_hint("use alnum, hex, base64url, or list the characters"),
        );
        return None;
    }
    Some(generator)
}

/// `proxy: {upstream_timeout: 2m, tunnel_idle_timeout: 4h, client_timeout: 30s,
/// header_timeout: 10s, max_connections: 20000, max_connections_per_client: 200}`: durations
/// of at least a millisecond, the proxy's resolution; connection caps of at least one.
fn proxy_settings(decoder: &mut Decoder, what: &str, node: &Node) -> Option<ProxySettings> {
    let fields = decoder.fields(
        node,
        what,
        &[
            "upstream_timeout",
            "tunnel_idle_timeout",
            "client_timeout",
            "header_timeout",
            "max_connections",
            "max_connections_per_client",
        ],
    )?;
    let max_connections = fields
        .get("max_connections")
        .and_then(|n| decoder.integer(n, &sub(what, "max_connections"), 1, 1_000_000));
    let max_connections_per_client = fields
        .get("max_connections_per_client")
        .and_then(|n| decoder.integer(n, &sub(what, "max_connections_per_client"), 1, 1_000_000));
    let mut duration = |key: &str| {
        let node = fields.get(key)?;
        let what = sub(what, key);
        let value = decoder.duration(node, &what, DurationRule::Wait)?;
        if value.as_std() < std::time::Duration::from_millis(1) {
            decoder.push(
                Diagnostic::error(node.span, format!("{what} must be at least 1ms"))
                    .with_label("below the proxy's millisecond")
                    .with_hint(
                        "the proxy counts in milliseconds, and a zero timeout would fail every request; leave it out for the default",
                    ),
            );
            return None;
        }
        Some(value)
    };
    Some(ProxySettings {
        upstream_timeout: duration("upstream_timeout"),
        tunnel_idle_timeout: duration("tunnel_idle_timeout"),
        client_timeout: duration("client_timeout"),
        header_timeout: duration("header_timeout"),
        max_connections,
        max_connections_per_client,
    })
}

/// `sticky: {cookie: NAME}` or `sticky: {header: NAME}`: exactly one.
fn sticky(decoder: &mut Decoder, what: &str, node: &Node) -> Option<Sticky> {
    let fields = decoder.fields(node, what, &["cookie", "header"])?;
    let cookie = fields
        .get("cookie")
        .and_then(|n| decoder.name(n, &sub(what, "cookie")));
    let header = fields
        .get("header")
        .and_then(|n| decoder.name(n, &sub(what, "header")));
    match (cookie, header) {
        (Some(cookie), None) => Some(Sticky::Cookie(cookie)),
        (None, Some(header)) => Some(Sticky::Header(header)),
        (Some(_), Some(_)) => {
            decoder.push(
                Diagnostic::error(
                    node.span,
                    format!("{what} takes `cookie` or `header`, not both"),
                )
                .with_hint("a client is kept on one version by one key"),
            );
            None
        }
        (None, None) => {
            decoder.push(
                Diagnostic::error(node.span, format!("{what} needs `cookie` or `header`"))
                    .with_hint("e.g. `sticky: {cookie: session}`"),
            );
            None
        }
    }
}

fn deadlines(decoder: &mut Decoder, what: &str, node: &Node) -> Option<Deadlines> {
    let what = sub(what, "deadlines");
    let fields = decoder.fields(
        node,
        &what,
        &[
            "ready",
            "step_extension",
            "on_step_deadline",
            "preview",
            "drain",
        ],
    )?;
    let duration = |decoder: &mut Decoder, key: &str, rule: DurationRule| {
        fields
            .get(key)
            .and_then(|n| decoder.duration(n, &sub(&what, key), rule))
    };
    Some(Deadlines {
        ready: duration(decoder, "ready", DurationRule::Period),
        step_extension: duration(decoder, "step_extension", DurationRule::Wait),
        on_step_deadline: fields.get("on_step_deadline").and_then(|n| {
            decoder.choice(
                n,
                &sub(&what, "on_step_deadline"),
                &[("abort", OnDeadline::Abort), ("pause", OnDeadline::Pause)],
            )
        }),
        preview: duration(decoder, "preview", DurationRule::Wait),
        drain: duration(decoder, "drain", DurationRule::Wait),
    })
}

fn default_analysis() -> Analysis {
    Analysis {
        min_requests: 50,
        ..Analysis::default()
    }
}

fn steps(decoder: &mut Decoder, what: &str, node: &Node) -> Vec<RolloutStep> {
    let what = sub(what, "steps");
    let items = decoder.items(node, &what);
    if items.is_empty() && matches!(node.kind, NodeKind::Seq(_)) {
        decoder.push(
            Diagnostic::error(node.span, format!("{what} is empty"))
                .with_hint("end with `{weight: 100}`"),
        );
    }
    let mut steps = Vec::new();
    let mut previous: Option<(Weight, Span)> = None;
    let mut last_span = node.span;
    for item in items {
        let Some(fields) = decoder.fields(item, &what, &["weight", "pause"]) else {
            continue;
        };
        let Some(weight_node) = fields.require(decoder, "weight", &format!("a step of {what}"))
        else {
            continue;
        };
        let Some(weight) = decoder
            .integer::<u64>(weight_node, &format!("{what} weight"), 0, 100)
            .and_then(Weight::new)
        else {
            continue;
        };
        if let Some((before, _)) = previous
            && weight <= before
        {
            decoder.push(
                Diagnostic::error(
                    weight_node.span,
                    format!("{what}: weight {} does not increase", weight.get()),
                )
                .with_label(format!("the step before sends {}%", before.get()))
                .with_hint(
                    "each step must send more traffic to the new version than the one before",
                ),
            );
        }
        previous = Some((weight, weight_node.span));
        last_span = weight_node.span;
        let pause = fields
            .get("pause")
            .and_then(|n| decoder.duration(n, &format!("{what} pause"), DurationRule::Wait));
        steps.push(RolloutStep { weight, pause });
    }
    // When a step did not decode (reported above), the last good step need not be the last
    // step, so "does not end at 100%" would blame the wrong line.
    if let (Some((last, _)), true) = (previous, steps.len() == items.len())
        && last != Weight::FULL
    {
        decoder.push(
            Diagnostic::error(
                last_span,
                format!("{what} end at {}%, not 100%", last.get()),
            )
            .with_label("the last step")
            .with_hint("add a final `{weight: 100}` step so the rollout completes"),
        );
    }
    steps
}

fn analysis(decoder: &mut Decoder, what: &str, node: &Node) -> Option<Analysis> {
    let what = sub(what, "analysis");
    let fields = decoder.fields(
        node,
        &what,
        &[
            "max_error_rate",
            "max_latency_p95",
            "max_latency_p99",
            "min_requests",
        ],
    )?;
    let duration = |decoder: &mut Decoder, key: &str| {
        fields
            .get(key)
            .and_then(|n| decoder.duration(n, &sub(&what, key), DurationRule::Period))
    };
    let p95 = duration(decoder, "max_latency_p95");
    let p99 = duration(decoder, "max_latency_p99");
    if let (Some(p95), Some(p99), Some(n)) = (p95, p99, fields.get("max_latency_p99"))
        && p99 < p95
    {
        decoder.push(Diagnostic::error(
            n.span,
            format!("{what}: max_latency_p99 {p99} is below max_latency_p95 {p95}"),
        ));
    }
    Some(Analysis {
        max_error_rate: fields.get("max_error_rate").and_then(|n| {
            decoder.parsed::<Percent>(n, &sub(&what, "max_error_rate"), "percentage")
        }),
        max_latency_p95: p95,
        max_latency_p99: p99,
        min_requests: fields
            .get("min_requests")
            .and_then(|n| decoder.integer(n, &sub(&what, "min_requests"), 0, i64::MAX))
            .unwrap_or(50),
    })
}

fn backup(decoder: &mut Decoder, service: &str, node: &Node) -> Option<Backup> {
    let what = format!("`services.{service}.backup`");
    let fields = decoder.fields(node, &what, &["schedule", "retain", "drill"])?;
    let schedule = fields
        .require(decoder, "schedule", &what)
        .and_then(|n| decoder.parsed::<CronSchedule>(n, &sub(&what, "schedule"), "cron schedule"));
    let retain = fields.get("retain").and_then(|n| {
        let what = sub(&what, "retain");
        let keys = ["last", "hourly", "daily", "weekly", "monthly", "yearly"];
        let f = decoder.fields(n, &what, &keys)?;
        let mut count = |key: &str| {
            f.get(key)
                .and_then(|n| decoder.integer(n, &sub(&what, key), 0, 100_000))
        };
        Some(Retention {
            last: count("last"),
            hourly: count("hourly"),
            daily: count("daily"),
            weekly: count("weekly"),
            monthly: count("monthly"),
            yearly: count("yearly"),
        })
    });
    let drill = fields.get("drill").and_then(|n| {
        let text = decoder.string(n, &sub(&what, "drill"))?;
        let period = match text.as_str() {
            "daily" => Some(DrillPeriod::Daily),
            "weekly" => Some(DrillPeriod::Weekly),
            "monthly" => Some(DrillPeriod::Monthly),
            _ => None,
        };
        match period {
            Some(p) => Some(DrillSchedule::Every(p)),
            None => decoder
                .parsed::<CronSchedule>(
                    n,
                    &sub(&what, "drill"),
                    "drill schedule (`daily`, `weekly`, `monthly` or cron)",
                )
                .map(DrillSchedule::Cron),
        }
    });
    Some(Backup {
        schedule: schedule?,
        retain: retain.unwrap_or(Retention {
            last: Some(7),
            ..Retention::default()
        }),
        drill,
    })
}

/// The top-level `backups:`: where the repository is, and the keys of an S3 one.
fn backup_repository(decoder: &mut Decoder, node: &Node) -> Option<BackupRepository> {
    let what = "`backups`";
    let fields = decoder.fields(
        node,
        what,
        &["repository", "access_key_id", "secret_access_key", "region"],
    )?;
    let repository_node = fields.require(decoder, "repository", what)?;
    let repository = decoder.name(repository_node, "`backups.repository`")?;
    let s3 = repository.starts_with("s3:");
    // restic's other backends are not built: refuse them by name rather than misread them.
    if let Some((scheme, _)) = repository.split_once(':')
        && [
            "sftp", "rest", "b2", "azure", "gs", "swift", "rclone", "opendal",
        ]
        .contains(&scheme)
    {
        decoder.push(
            Diagnostic::error(
                repository_node.span,
                format!("`{scheme}:` repositories are not built yet"),
            )
            .with_hint("a folder (`./backups`, `/srv/backups`) or S3-compatible storage (`s3:https://HOST/BUCKET/PREFIX`)"),
        );
        return None;
    }
    if s3 {
        let rest = repository["s3:".len()..]
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let bucket = rest.split('/').nth(1).unwrap_or("");
        if bucket.is_empty() || rest.contains('@') {
            decoder.push(
                Diagnostic::error(
                    repository_node.span,
                    "`backups.repository`: an S3 repository is `s3:https://HOST[:PORT]/BUCKET[/PREFIX]`, keys apart",
                )
                .with_hint("write the keys as `access_key_id` and `secret_access_key`, from secrets"),
            );
        }
    }
    let mut key = |name: &str| -> Option<String> {
        let node = fields.get(name)?;
        let text = decoder.name(node, &format!("`backups.{name}`"))?;
        if !is_secret_reference(&text) {
            decoder.push(
                Diagnostic::error(
                    node.span,
                    format!("`backups.{name}` is a credential: it must come from a secret"),
                )
                .with_label("a key in clear text")
                .with_hint(format!(
                    "declare it under `secrets:` and write `{name}: ${{secret:NAME}}`"
                )),
            );
            return None;
        }
        Some(text)
    };
    let access_key_id = key("access_key_id");
    let secret_access_key = key("secret_access_key");
    if s3 && (fields.get("access_key_id").is_none() || fields.get("secret_access_key").is_none()) {
        let span = fields
            .key_span("repository")
            .unwrap_or(repository_node.span);
        decoder.push(
            Diagnostic::error(span, "an S3 repository needs `access_key_id` and `secret_access_key`")
                .with_hint("both from secrets: `access_key_id: ${secret:S3_KEY_ID}`, `secret_access_key: ${secret:S3_SECRET}`"),
        );
    }
    if !s3 {
        for name in ["access_key_id", "secret_access_key", "region"] {
            if let Some(span) = fields.key_span(name) {
                decoder.push(Diagnostic::error(
                    span,
                    format!("`backups.{name}` applies to an S3 repository (`s3:…`) only"),
                ));
            }
        }
    }
    let region = fields
        .get("region")
        .and_then(|n| decoder.name(n, "`backups.region`"));
    Some(BackupRepository {
        repository,
        access_key_id,
        secret_access_key,
        region,
    })
}

fn secrets(
    decoder: &mut Decoder,
    node: &Node,
    refs: &mut References,
) -> IndexMap<String, SecretPolicy> {
    let mut secrets = IndexMap::new();
    if let NodeKind::Seq(items) = &node.kind {
        for item in items {
            if let Some(name) = decoder.name(item, "`secrets`") {
                refs.declared_secrets.push((name.clone(), item.span));
                secrets.insert(name, SecretPolicy::default());
            }
        }
        return secrets;
    }
    for (name, key, value) in decoder.named_entries(node, "`secrets`") {
        refs.declared_secrets.push((name.clone(), key.span));
        let what = format!("secret `{name}`");
        let Some(fields) = decoder.fields(
            value,
            &what,
            &[
                "description",
                "max_age",
                "overdue",
                "generate",
                "rotate_command",
            ],
        ) else {
            continue;
        };
        let policy = SecretPolicy {
            description: fields
                .get("description")
                .and_then(|n| decoder.string(n, &format!("{what} description"))),
            max_age: fields
                .get("max_age")
                .and_then(|n| decoder.duration(n, &format!("{what} max_age"), DurationRule::Age)),
            overdue: fields
                .get("overdue")
                .and_then(|n| {
                    decoder.choice(
                        n,
                        &format!("{what} overdue"),
                        &[("fail", Overdue::Fail), ("warn", Overdue::Warn)],
                    )
                })
                .unwrap_or_default(),
            generate: fields
                .get("generate")
                .and_then(|n| generator(decoder, &format!("{what} generate"), n))
                .unwrap_or_default(),
            rotate_command: fields
                .get("rotate_command")
                .and_then(|n| decoder.command(n, &format!("{what} rotate_command"))),
        };
        secrets.insert(name, policy);
    }
    secrets
}

fn requirements(decoder: &mut Decoder, node: &Node, refs: &mut References) -> Option<Requirements> {
    let what = "`require`";
    let fields = decoder.fields(
        node,
        what,
        &[
            "approvals",
            "gates",
            "backup_max_age",
            "drill_max_age",
            "promoted_from",
        ],
    )?;
    // `approvals: 2`, or `approvals: {count: 2, within: 4h}` (how long a request waits).
    let (approvals, approvals_within) = match fields.get("approvals") {
        None => (None, None),
        Some(node) if matches!(node.kind, NodeKind::Map(_)) => {
            let what = "`require.approvals`";
            match decoder.fields(node, what, &["count", "within"]) {
                Some(inner) => (
                    inner
                        .require(decoder, "count", what)
                        .and_then(|n| decoder.integer(n, "`require.approvals.count`", 1, 10)),
                    inner.get("within").and_then(|n| {
                        decoder.duration(n, "`require.approvals.within`", DurationRule::Period)
                    }),
                ),
                None => (None, None),
            }
        }
        Some(node) => (decoder.integer(node, "`require.approvals`", 1, 10), None),
    };
    for key in ["backup_max_age", "drill_max_age"] {
        if let Some(span) = fields.key_span(key) {
            refs.require_backups.push((key.to_owned(), span));
        }
    }
    let mut gates = Vec::new();
    if let Some(list) = fields.get("gates") {
        for item in decoder.items(list, "`require.gates`") {
            if let Some(name) = decoder.name(item, "a gate in `require.gates`") {
                if gates.contains(&name) {
                    decoder.push(
                        Diagnostic::error(item.span, format!("gate `{name}` is required twice"))
                            .with_label("repeated"),
                    );
                    continue;
                }
                refs.require_gates.push((name.clone(), item.span));
                gates.push(name);
            }
        }
    }
    Some(Requirements {
        backup_max_age: fields
            .get("backup_max_age")
            .and_then(|n| decoder.duration(n, "`require.backup_max_age`", DurationRule::Age)),
        drill_max_age: fields
            .get("drill_max_age")
            .and_then(|n| decoder.duration(n, "`require.drill_max_age`", DurationRule::Age)),
        approvals,
        approvals_within,
        gates,
        promoted_from: fields
            .get("promoted_from")
            .and_then(|n| crate::promotion::promoted_from(decoder, n)),
    })
}

fn smoke_checks(decoder: &mut Decoder, node: &Node) -> Vec<SmokeCheck> {
    let mut checks = Vec::new();
    for (index, item) in decoder.items(node, "`smoke`").iter().enumerate() {
        let what = format!("smoke check {}", index + 1);
        let Some(fields) = decoder.fields(item, &what, &["name", "http", "exec"]) else {
            continue;
        };
        let name = fields
            .require(decoder, "name", &what)
            .and_then(|n| decoder.name(n, &format!("{what} name")));
        let check = match (fields.get("http"), fields.get("exec")) {
            (Some(http), None) => {
                http_check(decoder, &sub(&what, "http"), http, true).map(SmokeKind::Http)
            }
            (None, Some(exec)) => {
                exec_check(decoder, &sub(&what, "exec"), exec).map(SmokeKind::Exec)
            }
            (Some(_), Some(exec)) => {
                decoder.push(
                    Diagnostic::error(exec.span, format!("{what} has both `http` and `exec`"))
                        .with_hint("one check per entry"),
                );
                None
            }
            (None, None) => {
                decoder.push(
                    Diagnostic::error(item.span, format!("{what} does not say what to check"))
                        .with_hint("add `http: {url: ...}` or `exec: [...]`"),
                );
                None
            }
        };
        if let (Some(name), Some(check)) = (name, check) {
            checks.push(SmokeCheck { name, check });
        }
    }
    checks
}

fn alerts(decoder: &mut Decoder, node: &Node, refs: &mut References) -> Vec<Alert> {
    let mut alerts = Vec::new();
    for (index, item) in decoder.items(node, "`alerts`").iter().enumerate() {
        let what = format!("alert {}", index + 1);
        let Some(fields) = decoder.fields(
            item,
            &what,
            &[
                "name",
                "webhook",
                "thresholds",
                "severity",
                "services",
                "labels",
                "incident",
                "runbook",
            ],
        ) else {
            continue;
        };
        let name = fields
            .require(decoder, "name", &what)
            .and_then(|n| decoder.name(n, &format!("{what} name")));
        let incident = fields.get("incident").and_then(|n| {
            decoder.choice(
                n,
                &sub(&what, "incident"),
                &[
                    ("sev1", IncidentLevel::Sev1),
                    ("sev2", IncidentLevel::Sev2),
                    ("sev3", IncidentLevel::Sev3),
                    ("sev4", IncidentLevel::Sev4),
                ],
            )
        });
        let runbook = fields.get("runbook").and_then(|n| {
            alert_runbook(
                decoder,
                &sub(&what, "runbook"),
                n,
                name.clone().unwrap_or_else(|| what.clone()),
                refs,
            )
        });
        let webhook = fields
            .require(decoder, "webhook", &what)
            .and_then(|n| webhook(decoder, &sub(&what, "webhook"), n));
        let thresholds = fields
            .get("thresholds")
            .and_then(|n| thresholds(decoder, &sub(&what, "thresholds"), n));
        let severity = fields
            .get("severity")
            .and_then(|n| {
                decoder.choice(
                    n,
                    &sub(&what, "severity"),
                    &[
                        ("critical", AlertSeverity::Critical),
                        ("error", AlertSeverity::Error),
                        ("warning", AlertSeverity::Warning),
                        ("info", AlertSeverity::Info),
                    ],
                )
            })
            .unwrap_or(AlertSeverity::Critical);
        let mut services = Vec::new();
        if let Some(list) = fields.get("services") {
            for service in decoder.items(list, &sub(&what, "services")) {
                if let Some(text) = decoder.name(service, &sub(&what, "services")) {
                    refs.alert_services.push((
                        name.clone().unwrap_or_else(|| what.clone()),
                        text.clone(),
                        service.span,
                    ));
                    services.push(text);
                }
            }
        }
        let labels = fields
            .get("labels")
            .map(|n| decoder.string_map(n, &sub(&what, "labels")))
            .unwrap_or_default()
            .into_iter()
            .collect();
        if let Some(name) = &name
            && alerts.iter().any(|a: &Alert| a.name == *name)
            && let Some(node) = fields.get("name")
        {
            decoder.push(
                Diagnostic::error(node.span, format!("alert `{name}` is declared twice"))
                    .with_label("a second alert of this name")
                    .with_hint("each alert names one receiver: give this one another name"),
            );
            continue;
        }
        if let (Some(name), Some(webhook)) = (name, webhook) {
            alerts.push(Alert {
                name,
                webhook,
                thresholds: thresholds.unwrap_or_default(),
                severity,
                services,
                labels,
                incident,
                runbook,
            });
        }
    }
    alerts
}

/// An alert's runbook reference, checked against `runbooks:` in `validate`.
#[derive(Debug, Clone)]
pub(crate) struct AlertRunbookRef {
    pub alert: String,
    pub runbook: String,
    pub span: Span,
    pub params: Vec<(String, Span)>,
    pub root_param: Option<(String, Span)>,
}

/// `runbook: NAME`, or `runbook: {name, auto, params, root_param}`.
fn alert_runbook(
    decoder: &mut Decoder,
    what: &str,
    node: &Node,
    alert: String,
    refs: &mut References,
) -> Option<AlertRunbook> {
    if let NodeKind::Scalar { .. } = node.kind {
        let name = decoder.name(node, what)?;
        refs.alert_runbooks.push(AlertRunbookRef {
            alert,
            runbook: name.clone(),
            span: node.span,
            params: Vec::new(),
            root_param: None,
        });
        return Some(AlertRunbook {
            name,
            auto: false,
            params: Default::default(),
            root_param: None,
        });
    }
    let fields = decoder.fields(node, what, &["name", "auto", "params", "root_param"])?;
    let name_node = fields.require(decoder, "name", what)?;
    let name = decoder.name(name_node, &sub(what, "name"))?;
    let auto = fields
        .get("auto")
        .and_then(|n| decoder.boolean(n, &sub(what, "auto")))
        .unwrap_or(false);
    let mut params = std::collections::BTreeMap::new();
    let mut param_spans = Vec::new();
    if let Some(map) = fields.get("params") {
        if let NodeKind::Map(entries) = &map.kind {
            for (key, _) in entries {
                if let Some(key_text) = key.as_str() {
                    param_spans.push((key_text.to_owned(), key.span));
                }
            }
        }
        params = decoder
            .string_map(map, &sub(what, "params"))
            .into_iter()
            .collect();
    }
    let root_param = fields.get("root_param").and_then(|n| {
        decoder
            .name(n, &sub(what, "root_param"))
            .map(|text| (text, n.span))
    });
    refs.alert_runbooks.push(AlertRunbookRef {
        alert,
        runbook: name.clone(),
        span: name_node.span,
        params: param_spans,
        root_param: root_param.clone(),
    });
    Some(AlertRunbook {
        name,
        auto,
        params,
        root_param: root_param.map(|(text, _)| text),
    })
}

fn webhook(decoder: &mut Decoder, what: &str, node: &Node) -> Option<Webhook> {
    let fields = decoder.fields(node, what, &["url", "format", "routing_key"])?;
    let url = fields
        .require(decoder, "url", what)
        .and_then(|n| decoder.name(n, &sub(what, "url")).map(|url| (url, n.span)));
    let format = fields
        .get("format")
        .and_then(|n| {
            decoder.choice(
                n,
                &sub(what, "format"),
                &[
                    ("generic", WebhookFormat::Generic),
                    ("slack", WebhookFormat::Slack),
                    ("pagerduty", WebhookFormat::Pagerduty),
                ],
            )
        })
        .unwrap_or(WebhookFormat::Generic);
    let routing_key = fields.get("routing_key").and_then(|n| {
        let key = decoder.name(n, &sub(what, "routing_key"))?;
        if !is_secret_reference(&key) {
            decoder.push(
                Diagnostic::error(
                    n.span,
                    format!(
                        "{} is a credential: it must come from a secret",
                        sub(what, "routing_key")
                    ),
                )
                .with_label("a key in clear text")
                .with_hint("declare it under `secrets:` and write `routing_key: ${secret:NAME}`"),
            );
            return None;
        }
        Some(key)
    });
    if format != WebhookFormat::Pagerduty
        && let Some(span) = fields.key_span("routing_key")
    {
        decoder.push(
            Diagnostic::error(
                span,
                format!(
                    "{} is for `format: pagerduty` only",
                    sub(what, "routing_key")
                ),
            )
            .with_label("not used by this format"),
        );
    }
    let (url, url_span) = url?;
    if let Some(why) = url_carries_key(&url, format) {
        decoder.push(
            Diagnostic::error(
                url_span,
                format!(
                    "{} carries a key ({why}): it must come from a secret",
                    sub(what, "url")
                ),
            )
            .with_label("a credential in clear text")
            .with_hint("declare it under `secrets:` and write `url: ${secret:NAME}`"),
        );
        return None;
    }
    Some(Webhook {
        url,
        format,
        routing_key,
    })
}

/// The whole value is one `${secret:NAME}`.
fn is_secret_reference(text: &str) -> bool {
    let text = text.trim();
    text.starts_with("${secret:") && text.ends_with('}') && text.matches("${").count() == 1
}

/// Why a receiver URL written in clear text holds a credential, if it does: user info, a query
/// (PagerDuty's `routing_key`, tokens), or a Slack webhook's path, which is its key.
fn url_carries_key(url: &str, format: WebhookFormat) -> Option<&'static str> {
    const SECRET: char = '\u{1}';
    if is_secret_reference(url) {
        return None;
    }
    // What is written in clear around any `${secret:…}` is judged on its own; a reference
    // stands for a key kept where it belongs.
    let mut clear = String::new();
    let mut rest = url;
    while let Some(start) = rest.find("${secret:") {
        clear.push_str(&rest[..start]);
        clear.push(SECRET);
        rest = rest[start..]
            .find('}')
            .map_or("", |end| &rest[start + end + 1..]);
    }
    clear.push_str(rest);
    let is_secret = |text: &str| text.len() == SECRET.len_utf8() && text.starts_with(SECRET);
    let after_scheme = clear
        .split_once("://")
        .map_or(clear.as_str(), |(_, rest)| rest);
    let authority = after_scheme.split(['/', '?', '#']).next().unwrap_or("");
    if let Some((user_info, _)) = authority.rsplit_once('@') {
        let key = user_info
            .split_once(':')
            .map_or(user_info, |(_, password)| password);
        if !is_secret(key) {
            return Some("user info");
        }
    }
    let query = clear
        .split_once('?')
        .map(|(_, query)| query.split('#').next().unwrap_or(""));
    if let Some(query) = query {
        let clear_value = query.split('&').any(|pair| {
            let value = pair.split_once('=').map_or("", |(_, value)| value);
            !value.is_empty() && !is_secret(value)
        });
        if clear_value {
            return Some("a query string");
        }
    }
    if format == WebhookFormat::Slack && authority.ends_with("hooks.slack.com") {
        let path = after_scheme.split(['?', '#']).next().unwrap_or("");
        if !path.rsplit('/').next().is_some_and(is_secret) {
            return Some("a Slack webhook's path is its key");
        }
    }
    None
}

fn thresholds(decoder: &mut Decoder, what: &str, node: &Node) -> Option<AlertThresholds> {
    let fields = decoder.fields(
        node,
        what,
        &[
            "error_rate",
            "latency_p95",
            "latency_p99",
            "down_for",
            "degraded",
        ],
    )?;
    Some(AlertThresholds {
        error_rate: fields
            .get("error_rate")
            .and_then(|n| decoder.parsed(n, &sub(what, "error_rate"), "percentage")),
        latency_p95: fields
            .get("latency_p95")
            .and_then(|n| decoder.duration(n, &sub(what, "latency_p95"), DurationRule::Period)),
        latency_p99: fields
            .get("latency_p99")
            .and_then(|n| decoder.duration(n, &sub(what, "latency_p99"), DurationRule::Period)),
        down_for: fields
            .get("down_for")
            .and_then(|n| decoder.duration(n, &sub(what, "down_for"), DurationRule::Wait)),
        degraded: fields
            .get("degraded")
            .and_then(|n| decoder.boolean(n, &sub(what, "degraded"))),
    })
}

/// `what` extended by `.key`, keeping the backticks around the whole path:
/// "`services.api.probes`" + "ready" → "`services.api.probes.ready`".
fn sub(what: &str, key: &str) -> String {
    match what.strip_suffix('`') {
        Some(inner) => format!("{inner}.{key}`"),
        None => format!("{what}.{key}"),
    }
}
