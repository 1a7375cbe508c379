//! From a validated stack to what the control plane runs: services in dependency order, their
//! command lines and environments with instance variables substituted, and their probes.
//!
//! Pure: the plan is a function of the manifest, so the refusal of what cannot run (secret
//! values not yet resolvable) happens before anything starts. An `image:` service is planned
//! like a process, with a [`ContainerPlan`] beside its command (the image's arguments).

use std::time::Duration;

use wharf_manifest::model::{
    Dependency, HttpCheck, ProbeCheck, RestartPolicy as ManifestRestart, Service,
};
use wharf_manifest::{Stack, ValidStack};
use wharf_probe::{Check, HttpProbe};
use wharf_runtime::RestartPolicy;

/// Why a manifest cannot be run by this control plane.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error(
        "service `{service}` uses secret `{secret}` in `{field}`: a command line is visible to every process on the machine; pass it in `env:` or `secrets:` instead"
    )]
    SecretInArgv {
        service: String,
        secret: String,
        field: String,
    },
    /// The context of a built service could not be read to give it its version.
    #[error("service `{service}`: cannot read its build context {context}: {reason}")]
    BuildContext {
        service: String,
        context: String,
        reason: String,
    },
}

/// The whole stack, services in an order where every dependency comes first.
#[derive(Debug, Clone)]
pub struct StackPlan {
    pub name: String,
    pub services: Vec<ServicePlan>,
    /// The declared secrets and their policies (rotation over the API needs the generator and
    /// the hook).
    pub secrets: Vec<(String, wharf_manifest::model::SecretPolicy)>,
    /// The alert rules and their receivers (the environment's, when one is chosen).
    pub alerts: Vec<wharf_manifest::model::Alert>,
    /// The environment chosen, and what it demands before a deploy.
    pub environment: Option<String>,
    /// The manifest's smoke checks (a drill runs them against the restored copy).
    pub smoke: Vec<wharf_manifest::model::SmokeCheck>,
    /// Where backups go (`.wharf/backups` when absent).
    pub backup_repository: Option<wharf_manifest::model::BackupRepository>,
    pub require: Option<wharf_manifest::model::Requirements>,
    /// The manifest's runbooks, by name.
    pub runbooks: indexmap::IndexMap<String, wharf_manifest::model::Runbook>,
}

/// The secret holding the backup repository's password: generated at the first `wharf up` of
/// a stack with backups, never shown but by `wharf backup key export` (recorded).
pub const BACKUP_PASSWORD_SECRET: &str = "WHARF_BACKUP_PASSWORD";

impl StackPlan {
    /// Whether a datastore has `backup:` (the repository's password is then needed).
    pub fn backs_up(&self) -> bool {
        self.services.iter().any(|s| s.backup.is_some())
    }

    pub fn service(&self, name: &str) -> Option<&ServicePlan> {
        self.services.iter().find(|s| s.name == name)
    }

    /// Whether running the stack needs the master key: a service's secrets, or a receiver's
    /// URL or key.
    pub fn uses_secrets(&self) -> bool {
        self.services.iter().any(|s| !s.secret_names().is_empty())
            || self.backs_up()
            || self.alerts.iter().any(|a| {
                !secret_references(&a.webhook.url).is_empty() || a.webhook.routing_key.is_some()
            })
    }
}

/// One service as the control plane runs it.
#[derive(Debug, Clone)]
pub struct ServicePlan {
    pub name: String,
    pub version: String,
    /// `None` for an external datastore (reached by `url` or `path`): nothing to run.
    pub command: Option<Vec<String>>,
    /// The image an `image:` service runs (its tag is the version unless `version:` is set).
    pub image: Option<String>,
    /// The datastore's connection URL, the default target of its postgres / redis probes.
    pub url: Option<String>,
    pub env: Vec<(String, String)>,
    pub replicas: u32,
    pub public_port: Option<u16>,
    pub restart: RestartPolicy,
    pub depends_on: Vec<(String, Dependency)>,
    pub ready: Option<ProbePlan>,
    pub live: Option<ProbePlan>,
    /// Served by the wharf proxy on `public_port`: an HTTP service wharf runs. Its instances
    /// get ports of their own, and it can be deployed progressively.
    pub proxied: bool,
    /// The manifest's `rollout` block (canary with default steps when absent).
    pub rollout: Option<wharf_manifest::model::Rollout>,
    /// Keeps a client on one version during a rollout.
    pub sticky: Option<wharf_manifest::model::Sticky>,
    /// The proxy's timeouts for the service (the proxy's defaults where absent).
    pub proxy: wharf_manifest::model::ProxySettings,
    /// Secrets given as environment variables, and as files.
    pub secrets: Vec<String>,
    pub secret_files: Vec<String>,
    /// Config and secret-file changes reach it by SIGHUP rather than a rolling restart.
    pub reload_by_signal: bool,
    /// A datastore's kind, its `path:` (relative to the manifest) and its backups.
    pub kind: Option<wharf_manifest::model::DatastoreKind>,
    pub path: Option<String>,
    pub backup: Option<wharf_manifest::model::Backup>,
    /// Set for an `image:` service: run by the container driver (`command` then holds the
    /// image's arguments, empty for its own `CMD`).
    pub container: Option<ContainerPlan>,
    /// `stop.signal` (SIGTERM when `None`) and `stop.grace` (the control plane's
    /// `Config::stop_grace` when `None`).
    pub stop_signal: Option<String>,
    pub stop_grace: Option<std::time::Duration>,
}

/// How an `image:` service's containers are made. The image itself is per version
/// (`VersionSpec::image`): a deploy of another tag is another version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPlan {
    pub entrypoint: Option<Vec<String>>,
    /// The port inside the container each instance's own loopback port is published to.
    pub container_port: Option<u16>,
    pub volumes: Vec<wharf_manifest::model::Volume>,
    pub pull: wharf_runtime::PullPolicy,
    /// User, working directory, limits, capabilities, filesystem, as the engine takes them.
    pub options: wharf_runtime::ContainerOptions,
    /// The networks the service names (`default` is the stack's own), each with whether it
    /// is internal; empty: the stack's own network only.
    pub networks: Vec<(String, bool)>,
    /// Set when wharf builds the image (`build:`).
    pub build: Option<BuildPlan>,
    /// `ports:`: more public ports, each served by the proxy (TCP pass-through, or HTTP) to
    /// its container port, which every instance publishes on a loopback port of its own.
    pub ports: Vec<wharf_manifest::model::ServicePort>,
}

/// The manifest's container options as the container driver takes them.
fn container_options(
    options: &wharf_manifest::model::ContainerOptions,
) -> wharf_runtime::ContainerOptions {
    wharf_runtime::ContainerOptions {
        user: options.user.clone(),
        working_dir: options.working_dir.clone(),
        ulimits: options
            .ulimits
            .iter()
            .map(|(name, limit)| wharf_runtime::Ulimit {
                name: name.clone(),
                soft: limit.soft,
                hard: limit.hard,
            })
            .collect(),
        shm_size: options.shm_size,
        cap_add: options.cap_add.clone(),
        cap_drop: options.cap_drop.clone(),
        read_only: options.read_only,
        tmpfs: options.tmpfs.clone(),
    }
}

/// How a built service's image is made (the manifest's `build:`). Its image reference is
/// `REPOSITORY:VERSION` — `image:`'s repository, else `STACK-SERVICE` — and its version is
/// `version:`, else the digest of the context ([`version_builds`] reads it: [`plan`] stays
/// pure), so a changed source is a new version that `wharf up` rolls in and `wharf deploy`
/// rolls out as a canary like any new tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildPlan {
    /// The context directory as the manifest writes it (relative to the manifest's directory).
    pub context: String,
    pub dockerfile: String,
    pub args: Vec<(String, String)>,
    pub target: Option<String>,
    /// `image:` as written, when it is another reference: the built image gets that tag too.
    pub also_tag: Vec<String>,
    /// No `version:`: the version is the context's digest.
    pub versioned_by_content: bool,
}

/// The version of a built service before its context is read: [`version_builds`] replaces it.
pub const UNREAD_BUILD_VERSION: &str = "unread";

impl BuildPlan {
    /// What the container driver builds, the context resolved against the manifest's
    /// directory.
    pub fn spec(&self, workdir: &std::path::Path) -> wharf_runtime::BuildSpec {
        wharf_runtime::BuildSpec {
            context: workdir.join(&self.context),
            dockerfile: self.dockerfile.clone(),
            args: self.args.clone(),
            target: self.target.clone(),
            also_tag: self.also_tag.clone(),
        }
    }
}

/// Gives each built service without `version:` its version, `digest` of its build context
/// (the container driver's `context::version`), and the image reference tagged with it. The
/// CLI calls it where it reads the manifest, off the control plane's loop.
pub fn version_builds(
    plan: &mut StackPlan,
    workdir: &std::path::Path,
    digest: impl Fn(&wharf_runtime::BuildSpec) -> std::io::Result<String>,
) -> Result<(), Vec<PlanError>> {
    let mut errors = Vec::new();
    for service in &mut plan.services {
        let Some(build) = service.container.as_ref().and_then(|c| c.build.as_ref()) else {
            continue;
        };
        if !build.versioned_by_content {
            continue;
        }
        let spec = build.spec(workdir);
        match digest(&spec) {
            Ok(version) => {
                service.image = service
                    .image
                    .as_deref()
                    .map(|image| wharf_runtime::image::with_tag(image, &version));
                service.version = version;
            }
            Err(error) => errors.push(PlanError::BuildContext {
                service: service.name.clone(),
                context: spec.context.display().to_string(),
                reason: error.to_string(),
            }),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// A service with `build:` planned as the `image:` service it becomes: its image is
/// `REPOSITORY:VERSION` (see [`BuildPlan`]). `None` for a service without `build:`.
fn as_built(stack: &str, name: &str, service: &Service) -> Option<(Service, BuildPlan)> {
    let build = service.container.as_ref()?.build.as_ref()?;
    let repository = match &service.image {
        Some(image) => wharf_runtime::image::parse_image(image).repository,
        None => format!("{stack}-{name}").to_lowercase(),
    };
    let version = service
        .version
        .clone()
        .unwrap_or_else(|| UNREAD_BUILD_VERSION.to_owned());
    let image = format!("{repository}:{version}");
    let plan = BuildPlan {
        context: build.context.clone(),
        dockerfile: build
            .dockerfile
            .clone()
            .unwrap_or_else(|| "Dockerfile".to_owned()),
        args: build
            .args
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        target: build.target.clone(),
        also_tag: service
            .image
            .iter()
            .filter(|written| **written != image)
            .cloned()
            .collect(),
        versioned_by_content: service.version.is_none(),
    };
    let mut service = service.clone();
    service.image = Some(image);
    service.version = Some(version);
    Some((service, plan))
}

impl ServicePlan {
    /// Every secret an instance of this service needs at start: `secrets:`, `secret_files:`
    /// and `${secret:NAME}` in env values and its URL.
    pub fn secret_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .secrets
            .iter()
            .chain(&self.secret_files)
            .cloned()
            .collect();
        let mut texts: Vec<&String> = self.env.iter().map(|(_, v)| v).chain(&self.url).collect();
        for probe in self.ready.iter().chain(&self.live) {
            match &probe.check {
                ProbeCheck::Http(http) => {
                    texts.extend(&http.url);
                    texts.extend(http.headers.values());
                }
                ProbeCheck::Postgres(c) | ProbeCheck::Redis(c) => texts.extend(&c.url),
                ProbeCheck::Tcp(_) | ProbeCheck::Exec(_) => {}
            }
        }
        for text in texts {
            names.extend(secret_references(text));
        }
        names.sort();
        names.dedup();
        names
    }
}

/// The names in `${secret:NAME}` references of a text.
pub fn secret_references(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${secret:") {
        let after = &rest[start + "${secret:".len()..];
        let Some(end) = after.find('}') else { break };
        names.push(after[..end].to_owned());
        rest = &after[end..];
    }
    names
}

impl ServicePlan {
    /// Whether instances bind the public port themselves: datastores (`kind:`) with one
    /// replica. A datastore container publishes its public port directly (on 127.0.0.1, to
    /// its `container_port`) rather than through the proxy's TCP pass-through, on purpose:
    /// it runs one instance at a time on its data (two versions of postgres on one volume
    /// would corrupt it), so it is replaced by recreate and no weight ever splits its
    /// traffic — the proxy would add a hop and nothing to route; and its probes, backups and
    /// restore drills reach it at `localhost:PORT` whether or not the proxy runs (a proxy
    /// restart must not fail a backup). Containers of the stack reach it by service name.
    pub fn binds_public_port(&self) -> bool {
        !self.proxied && self.replicas <= 1 && self.public_port.is_some()
    }
}

/// A probe with its schedule; the check still holds `${PORT}` and friends.
#[derive(Debug, Clone)]
pub struct ProbePlan {
    pub check: ProbeCheck,
    pub interval: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub start_period: Duration,
}

/// Values of the instance variables for one instance.
#[derive(Debug, Clone)]
pub struct InstanceVars<'a> {
    pub service: &'a str,
    pub ordinal: u32,
    pub version: &'a str,
    pub port: Option<u16>,
}

impl InstanceVars<'_> {
    /// Replaces `${PORT}`, `${INSTANCE}`, `${VERSION}` and `${SERVICE}` (and `$PORT` …).
    pub fn substitute(&self, text: &str) -> String {
        let port = self.port.map(|p| p.to_string()).unwrap_or_default();
        let ordinal = self.ordinal.to_string();
        let pairs = [
            ("PORT", port.as_str()),
            ("INSTANCE", ordinal.as_str()),
            ("VERSION", self.version),
            ("SERVICE", self.service),
        ];
        let mut out = text.to_owned();
        for (name, value) in pairs {
            out = out.replace(&format!("${{{name}}}"), value);
        }
        out
    }

    /// The variables as environment entries, set for every instance (like Heroku's `PORT`).
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("INSTANCE".to_owned(), self.ordinal.to_string()),
            ("VERSION".to_owned(), self.version.to_owned()),
            ("SERVICE".to_owned(), self.service.to_owned()),
        ];
        if let Some(port) = self.port {
            env.push(("PORT".to_owned(), port.to_string()));
        }
        env
    }
}

/// Builds the plan; every service that cannot run is reported.
pub fn plan(stack: &ValidStack) -> Result<StackPlan, Vec<PlanError>> {
    let mut errors = Vec::new();
    let mut services = Vec::new();
    for name in dependency_order(stack) {
        let service = &stack.services[&name];
        let built = as_built(&stack.name, &name, service);
        let service = built.as_ref().map_or(service, |(service, _)| service);
        match service_plan(&name, service) {
            Ok(mut plan) => {
                if let Some(container) = &mut plan.container {
                    container.networks = service
                        .container
                        .iter()
                        .flat_map(|c| &c.options.networks)
                        .map(|network| {
                            let internal = stack.networks.get(network).is_some_and(|n| n.internal);
                            (network.clone(), internal)
                        })
                        .collect();
                }
                if let (Some(container), Some((_, build))) = (plan.container.as_mut(), built) {
                    container.build = Some(build);
                }
                services.push(plan)
            }
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() {
        let mut secrets: Vec<(String, wharf_manifest::model::SecretPolicy)> = stack
            .secrets
            .iter()
            .map(|(name, policy)| (name.clone(), policy.clone()))
            .collect();
        // Datastores with `backup:` declare the repository's password.
        if services.iter().any(|s| s.backup.is_some())
            && !secrets
                .iter()
                .any(|(name, _)| name == BACKUP_PASSWORD_SECRET)
        {
            secrets.push((
                BACKUP_PASSWORD_SECRET.to_owned(),
                wharf_manifest::model::SecretPolicy {
                    description: Some("the backup repository's password".to_owned()),
                    ..Default::default()
                },
            ));
        }
        Ok(StackPlan {
            name: stack.name.clone(),
            services,
            secrets,
            alerts: stack.alerts.clone(),
            environment: stack.environment.clone(),
            smoke: stack.smoke.clone(),
            backup_repository: stack.backups.clone(),
            require: stack.require.clone(),
            runbooks: stack.runbooks.clone(),
        })
    } else {
        Err(errors)
    }
}

fn service_plan(name: &str, service: &Service) -> Result<ServicePlan, PlanError> {
    let container = service.image.as_ref().map(|_| {
        let manifest = service.container.clone().unwrap_or_default();
        ContainerPlan {
            entrypoint: manifest.entrypoint,
            container_port: manifest.container_port.or(service.port),
            volumes: manifest.volumes,
            ports: manifest.ports,
            pull: match manifest.pull_policy {
                wharf_manifest::model::PullPolicy::Missing => wharf_runtime::PullPolicy::Missing,
                wharf_manifest::model::PullPolicy::Always => wharf_runtime::PullPolicy::Always,
                wharf_manifest::model::PullPolicy::Never => wharf_runtime::PullPolicy::Never,
            },
            options: container_options(&manifest.options),
            // Filled in by `plan`, which sees the stack's networks.
            networks: Vec::new(),
            build: None,
        }
    });
    // An image's tag is its version unless `version:` says otherwise.
    let version = service
        .version
        .clone()
        .or_else(|| {
            service
                .image
                .as_deref()
                .and_then(wharf_runtime::image::tag_of)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "0".to_owned());
    // An image runs with its own `CMD` unless `command:` overrides it.
    let command = match (&service.command, &service.image) {
        (Some(command), _) => Some(command.clone()),
        (None, Some(_)) => Some(Vec::new()),
        (None, None) => None,
    };
    let env: Vec<(String, String)> = service
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for arg in service.command.iter().flatten() {
        refuse_secrets(name, "command", arg)?;
    }
    // An entrypoint is argv too (`docker inspect` and `ps` show it).
    for arg in service
        .container
        .iter()
        .flat_map(|c| c.entrypoint.iter().flatten())
    {
        refuse_secrets(name, "entrypoint", arg)?;
    }
    Ok(ServicePlan {
        name: name.to_owned(),
        version,
        command,
        image: service.image.clone(),
        url: service.url.clone(),
        env,
        replicas: service.replicas,
        public_port: service.port,
        restart: match service.restart {
            ManifestRestart::Always => RestartPolicy::Always,
            ManifestRestart::OnFailure { max_retries } => RestartPolicy::OnFailure { max_retries },
            ManifestRestart::Never => RestartPolicy::Never,
        },
        depends_on: service
            .depends_on
            .iter()
            .map(|(dep, d)| (dep.clone(), d.clone()))
            .collect(),
        ready: service.probes.ready.as_ref().map(probe_plan),
        live: service.probes.live.as_ref().map(probe_plan),
        proxied: service.kind.is_none()
            && (service.command.is_some() || service.image.is_some())
            && service.port.is_some(),
        rollout: service.rollout.clone(),
        sticky: service.sticky.clone(),
        proxy: service.proxy.clone().unwrap_or_default(),
        secrets: service.secrets.clone(),
        secret_files: service.secret_files.clone(),
        reload_by_signal: service.reload == wharf_manifest::model::Reload::Signal,
        kind: service.kind,
        path: service.path.clone(),
        backup: service.backup.clone(),
        container,
        stop_signal: service.stop.signal.clone(),
        stop_grace: service.stop.grace.map(|g| g.as_std()),
    })
}

fn refuse_secrets(service: &str, field: &str, text: &str) -> Result<(), PlanError> {
    let Some(start) = text.find("${secret:") else {
        return Ok(());
    };
    let rest = &text[start + "${secret:".len()..];
    let secret = rest.split('}').next().unwrap_or_default().to_owned();
    Err(PlanError::SecretInArgv {
        service: service.to_owned(),
        secret,
        field: field.to_owned(),
    })
}

fn probe_plan(probe: &wharf_manifest::model::Probe) -> ProbePlan {
    ProbePlan {
        check: probe.check.clone(),
        interval: probe.interval.as_std(),
        timeout: probe.timeout.as_std(),
        failure_threshold: probe.failure_threshold,
        success_threshold: probe.success_threshold,
        start_period: probe.start_period.as_std(),
    }
}

/// Services with every dependency before its dependents; ties keep manifest order. The
/// manifest was validated, so there is no cycle.
pub fn dependency_order(stack: &Stack) -> Vec<String> {
    let mut placed: Vec<String> = Vec::new();
    let mut remaining: Vec<&String> = stack.services.keys().collect();
    while !remaining.is_empty() {
        let before = remaining.len();
        remaining.retain(|name| {
            let ready = stack.services[*name]
                .depends_on
                .keys()
                .all(|dep| placed.contains(dep) || !stack.services.contains_key(dep));
            if ready {
                placed.push((*name).clone());
            }
            !ready
        });
        if remaining.len() == before {
            // Unreachable for a validated stack; keep going rather than loop forever.
            placed.extend(remaining.drain(..).cloned());
        }
    }
    placed
}

/// A manifest HTTP check (probe or smoke check) as a runnable probe of `url`, with instance
/// variables substituted in its headers.
pub fn http_probe(http: &HttpCheck, url: String, vars: &InstanceVars<'_>) -> HttpProbe {
    HttpProbe {
        method: http.method.clone(),
        url,
        headers: http
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), vars.substitute(v)))
            .collect(),
        expect_status: http.expect_status.clone(),
        body_contains: http.body_contains.clone(),
        json: http
            .json
            .as_ref()
            .map(|j| (j.pointer.clone(), j.equals.clone())),
        max_latency: http.max_latency.map(|d| d.as_std()),
        warn_latency: http.warn_latency.map(|d| d.as_std()),
    }
}

/// Turns a manifest probe into a runnable check for one instance.
/// `service_url` is the service's own `url`, the default target of datastore probes.
pub fn resolve_check(
    check: &ProbeCheck,
    vars: &InstanceVars<'_>,
    service_url: Option<&str>,
) -> Option<Check> {
    let port = vars.port;
    match check {
        ProbeCheck::Http(http) => {
            let url = match (&http.url, &http.path) {
                (Some(url), _) => vars.substitute(url),
                (None, Some(path)) => {
                    format!("http://127.0.0.1:{}{}", port?, vars.substitute(path))
                }
                (None, None) => return None,
            };
            Some(Check::Http(Box::new(http_probe(http, url, vars))))
        }
        ProbeCheck::Tcp(tcp) => Some(Check::Tcp {
            host: tcp.host.clone().unwrap_or_else(|| "127.0.0.1".to_owned()),
            port: tcp.port.or(port)?,
        }),
        ProbeCheck::Exec(exec) => Some(Check::Exec {
            command: exec.command.iter().map(|a| vars.substitute(a)).collect(),
            expect_exit: exec.expect_exit,
        }),
        // Datastore probes target their own `url`, else the service's, else the instance's
        // port on loopback.
        ProbeCheck::Postgres(c) => Some(Check::Postgres {
            url: match c.url.as_deref().or(service_url) {
                Some(url) => vars.substitute(url),
                None => format!("postgres://postgres@127.0.0.1:{}/postgres", port?),
            },
        }),
        ProbeCheck::Redis(c) => Some(Check::Redis {
            url: match c.url.as_deref().or(service_url) {
                Some(url) => vars.substitute(url),
                None => format!("redis://127.0.0.1:{}", port?),
            },
        }),
    }
}

/// Services that depend on `name`, directly.
pub fn dependents<'a>(plan: &'a StackPlan, name: &str) -> Vec<&'a str> {
    plan.services
        .iter()
        .filter(|s| s.depends_on.iter().any(|(dep, _)| dep == name))
        .map(|s| s.name.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The manifest accepts a stop signal only if the process driver can send it.
    #[test]
    fn every_stop_signal_the_manifest_accepts_is_one_the_process_driver_sends() {
        for name in wharf_manifest::model::STOP_SIGNALS {
            assert!(wharf_runtime::signal_by_name(name).is_some(), "{name}");
        }
    }

    /// An entrypoint is argv like a command: `ps` and `docker inspect` would show a secret.
    #[test]
    fn a_secret_in_an_entrypoint_is_refused_like_one_in_a_command() {
        let source = r#"
name: shop
secrets:
  TOKEN: {}
services:
  api:
    image: api:1
    entrypoint: [run, "--token=${secret:TOKEN}"]
"#;
        let loaded = wharf_manifest::load(source, Default::default(), &|_: &str| None);
        let stack = loaded.stack.expect("valid");
        let errors = plan(&stack).expect_err("refused");
        assert!(
            errors.iter().any(|e| matches!(
                e,
                PlanError::SecretInArgv { service, secret, field }
                    if service == "api" && secret == "TOKEN" && field == "entrypoint"
            )),
            "{errors:?}"
        );
    }

    #[test]
    fn a_container_service_plans_its_options_networks_and_stop() {
        let source = r#"
name: shop
networks:
  back: {internal: true}
services:
  db:
    image: db:1
    user: "999"
    ulimits: {nofile: 1024}
    networks: [back, default]
    stop: {signal: SIGINT, grace: 90s}
"#;
        let loaded = wharf_manifest::load(source, Default::default(), &|_: &str| None);
        let stack = loaded.stack.expect("valid");
        let plan = plan(&stack).expect("plans");
        let db = &plan.services[0];
        let container = db.container.as_ref().unwrap();
        assert_eq!(container.options.user.as_deref(), Some("999"));
        assert_eq!(
            container.options.ulimits,
            [wharf_runtime::Ulimit {
                name: "nofile".to_owned(),
                soft: 1024,
                hard: 1024
            }]
        );
        assert_eq!(
            container.networks,
            [("back".to_owned(), true), ("default".to_owned(), false)]
        );
        assert_eq!(db.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(db.stop_grace, Some(std::time::Duration::from_secs(90)));
    }
}
