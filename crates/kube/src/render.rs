//! The manifest as Kubernetes objects: pure, from a loaded [`Stack`] to a list of objects in the
//! order they can be applied.
//!
//! Per `image:` service and version: a Deployment (a Job for `restart: never | on-failure`,
//! whose pods end), the version's ConfigMap of plain `env:` values, and a PodDisruptionBudget
//! when it runs more than one replica; per service with a `port:`, a Service selecting every
//! version; per stack, one Secret holding the names of the secrets the services use — with no
//! values: wharf fills them from its store when it applies, so rendered files never hold one;
//! per named volume a PersistentVolumeClaim. With a Gateway, each service with a `port:` also
//! gets a Service per version and an `HTTPRoute` whose backend weights are the traffic split.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapEnvSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, EnvVar, EnvVarSource, ExecAction, HTTPGetAction, HTTPHeader, KeyToPath,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Probe as KubeProbe, Secret,
    SecretKeySelector, SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec,
    TCPSocketAction, Volume as KubeVolume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use wharf_manifest::Stack;
use wharf_manifest::model::{
    DatastoreKind, Probe, ProbeCheck, RestartPolicy, Service as WharfService, VolumeSource,
};

use crate::names::{dns_label, joined, label_value};
use crate::values::{convert, secret_variable};

/// Labels every object carries; `SERVICE_LABEL` and `VERSION_LABEL` select pods.
pub const STACK_LABEL: &str = "app.kubernetes.io/part-of";
pub const SERVICE_LABEL: &str = "app.kubernetes.io/name";
pub const VERSION_LABEL: &str = "app.kubernetes.io/version";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The field manager wharf applies with, and the value of `managed-by`.
pub const MANAGER: &str = "wharf";

/// Where a secret-files volume is mounted (wharf's `$WHARF_SECRETS_DIR`).
pub const SECRETS_DIR: &str = "/run/secrets/wharf";
/// The size asked for a named volume: the manifest has no size, so the claim says the least a
/// database needs and `wharf render` notes it for the operator to review.
pub const DEFAULT_VOLUME_SIZE: &str = "1Gi";

/// What to render for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// Written into every object when set; otherwise the objects go where they are applied.
    pub namespace: Option<String>,
    /// The Gateway (Gateway API) the services' HTTPRoutes attach to; without one each service
    /// is a plain Service and no traffic split is rendered.
    pub gateway: Option<GatewayRef>,
    /// wharf's own proxy as each service's router (`--router wharf`), instead of a Gateway:
    /// the two are exclusive ([`RenderError::TwoRouters`]).
    pub router: Option<crate::router::RouterSpec>,
}

/// A Gateway by name, in `namespace` or the routes' own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayRef {
    pub name: String,
    pub namespace: Option<String>,
}

/// One rendered object with what identifies it in messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub kind: &'static str,
    pub name: String,
    pub value: serde_json::Value,
}

/// Everything rendered, and what the operator should know about what was not.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rendered {
    pub objects: Vec<Object>,
    /// Things a cluster does differently, each naming its service (written to stderr by the
    /// CLI, never into the YAML).
    pub notes: Vec<String>,
    /// The services whose router table is rendered empty: the cluster assigns the versions'
    /// Service addresses it names, so `wharf cluster apply` fills it in (`wharf render` says so).
    pub unfilled_tables: Vec<String>,
}

impl Rendered {
    /// The objects as one YAML stream (`---` between documents), ready for `kubectl apply -f`
    /// or a GitOps repository.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        for object in &self.objects {
            out.push_str("---\n");
            out.push_str(&wharf_manifest::yaml::emit(&object.value));
        }
        out
    }
}

/// Why a stack cannot be rendered; each names the service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error(
        "service `{service}` runs a local command and has no `image:`; a cluster runs images (give it an `image:`, for instance in an environment overlay)"
    )]
    NoImage { service: String },
    #[error(
        "service `{service}` is built from source by wharf (`build:`) and names no `image:`; a cluster pulls images (build and push it, then name it in `image:`)"
    )]
    BuiltHere { service: String },
    #[error(
        "service `{service}` mounts the host directory `{source_path}`, which a cluster node does not have (use a named volume)"
    )]
    BindMount {
        service: String,
        source_path: String,
    },
    #[error(
        "a Gateway (`--gateway`) and wharf's router (`--router wharf`) both split traffic; choose one"
    )]
    TwoRouters,
    #[error("services `{first}` and `{second}` would both be named `{name}` on a cluster")]
    NameClash {
        first: String,
        second: String,
        name: String,
    },
}

/// Renders `stack` for `target`. Every service that cannot run on a cluster is an error;
/// all of them are returned at once.
pub fn render(stack: &Stack, target: &Target) -> Result<Rendered, Vec<RenderError>> {
    if target.gateway.is_some() && target.router.is_some() {
        return Err(vec![RenderError::TwoRouters]);
    }
    let mut renderer = Renderer {
        stack,
        target,
        rendered: Rendered::default(),
        errors: Vec::new(),
        secrets: Vec::new(),
        volumes: Vec::new(),
        routed: false,
    };
    renderer.check_names();
    let mut workloads = Vec::new();
    for (name, service) in &stack.services {
        if let Some(kind) = skipped_datastore(service) {
            renderer.rendered.notes.push(format!(
                "service `{name}`: a {kind} datastore wharf does not run (`url:` or `path:`) is not rendered; the services reach it as they do today"
            ));
            continue;
        }
        let built = service
            .container
            .as_ref()
            .is_some_and(|c| c.build.is_some());
        if service.image.is_none() {
            renderer.errors.push(if built {
                RenderError::BuiltHere {
                    service: name.clone(),
                }
            } else {
                RenderError::NoImage {
                    service: name.clone(),
                }
            });
            continue;
        }
        if built {
            renderer.rendered.notes.push(format!(
                "service `{name}`: wharf builds its image here (`build:`); the cluster pulls `image:` as named, so push the built image there first"
            ));
        }
        workloads.push((name, service));
    }
    let mut ordered: Vec<Object> = Vec::new();
    let mut later: Vec<Object> = Vec::new();
    for (name, service) in workloads {
        let parts = renderer.service(name, service);
        ordered.extend(parts.first);
        later.extend(parts.then);
    }
    if !renderer.errors.is_empty() {
        return Err(renderer.errors);
    }
    let mut objects = Vec::new();
    if !renderer.secrets.is_empty() {
        objects.push(renderer.secret());
    }
    for volume in renderer.volumes.clone() {
        objects.push(renderer.claim(&volume));
    }
    objects.extend(ordered);
    if renderer.routed {
        objects.push(renderer.router_secret());
    }
    objects.extend(later);
    renderer.rendered.objects = objects;
    Ok(renderer.rendered)
}

/// A datastore wharf only reaches (an external `url:`, or a host `path:`): nothing to run.
fn skipped_datastore(service: &WharfService) -> Option<&'static str> {
    let kind = service.kind?;
    if service.image.is_some() || service.command.is_some() {
        return None;
    }
    Some(match kind {
        DatastoreKind::Postgres => "postgres",
        DatastoreKind::Mariadb => "mariadb",
        DatastoreKind::Redis => "redis",
        DatastoreKind::Sqlite => "sqlite",
        DatastoreKind::Directory => "directory",
    })
}

struct Renderer<'a> {
    stack: &'a Stack,
    target: &'a Target,
    rendered: Rendered,
    errors: Vec<RenderError>,
    /// Every secret a service uses, in first-use order: the keys of the stack's Secret.
    secrets: Vec<String>,
    /// Named volumes, in first-use order: one claim each.
    volumes: Vec<String>,
    /// Some service got a router: the stack's router Secret is rendered.
    routed: bool,
}

/// A service's objects: those applied before the stack's routes, and the routes.
struct Parts {
    first: Vec<Object>,
    then: Vec<Object>,
}

impl Renderer<'_> {
    /// Two wharf names that map to one Kubernetes name (`web_front`, `web-front`) would make
    /// one service's objects overwrite the other's.
    fn check_names(&mut self) {
        let mut seen: BTreeMap<String, &str> = BTreeMap::new();
        for name in self.stack.services.keys() {
            let label = dns_label(name);
            match seen.get(&label) {
                Some(first) => self.errors.push(RenderError::NameClash {
                    first: (*first).to_owned(),
                    second: name.clone(),
                    name: label,
                }),
                None => {
                    seen.insert(label, name);
                }
            }
        }
    }

    fn meta(&self, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: self.target.namespace.clone(),
            labels: Some(labels),
            ..ObjectMeta::default()
        }
    }

    fn stack_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (STACK_LABEL.to_owned(), label_value(&self.stack.name)),
            (MANAGED_BY_LABEL.to_owned(), MANAGER.to_owned()),
        ])
    }

    fn service_labels(&self, service: &str) -> BTreeMap<String, String> {
        let mut labels = self.stack_labels();
        labels.insert(SERVICE_LABEL.to_owned(), label_value(service));
        labels
    }

    fn version_labels(&self, service: &str, version: &str) -> BTreeMap<String, String> {
        let mut labels = self.service_labels(service);
        labels.insert(VERSION_LABEL.to_owned(), label_value(version));
        labels
    }

    fn secret_name(&self) -> String {
        joined(&self.stack.name, "secrets")
    }

    fn claim_name(&self, volume: &str) -> String {
        joined(&self.stack.name, volume)
    }

    fn service(&mut self, name: &str, service: &WharfService) -> Parts {
        let version = version_of(service);
        let workload_name = joined(name, &version);
        let mut first = Vec::new();
        let mut then = Vec::new();

        let (env_from, config) = self.config_map(name, service, &version, &workload_name);
        if let Some(config) = config {
            first.push(config);
        }
        let pod = self.pod(name, service, &version, env_from);
        let labels = self.version_labels(name, &version);
        let selector = LabelSelector {
            match_labels: Some(selector_labels(&labels, true)),
            ..LabelSelector::default()
        };
        let template = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels.clone()),
                ..ObjectMeta::default()
            }),
            spec: Some(pod),
        };
        let one_shot = !matches!(service.restart, RestartPolicy::Always);
        if one_shot {
            first.push(self.job(service, workload_name.clone(), labels, template));
        } else {
            let holds_volume = service.container.as_ref().is_some_and(|c| {
                c.volumes
                    .iter()
                    .any(|v| matches!(v.source, VolumeSource::Named(_)))
            });
            let deployment = Deployment {
                metadata: self.meta(workload_name.clone(), labels.clone()),
                spec: Some(DeploymentSpec {
                    replicas: Some(i32::try_from(service.replicas).unwrap_or(i32::MAX)),
                    selector,
                    template,
                    // A claim a pod holds cannot be attached to its replacement on another
                    // node while the old pod runs: stop first, then start.
                    strategy: holds_volume.then(|| DeploymentStrategy {
                        type_: Some("Recreate".to_owned()),
                        ..DeploymentStrategy::default()
                    }),
                    ..DeploymentSpec::default()
                }),
                ..Deployment::default()
            };
            first.push(object("Deployment", workload_name.clone(), &deployment));
            if service.replicas > 1 {
                first.push(self.disruption_budget(&workload_name, labels));
            }
        }

        if let Some(port) = service.port {
            let container_port = container_port_of(service);
            let extra: &[wharf_manifest::model::ServicePort] = service
                .container
                .as_ref()
                .map_or(&[], |c| c.ports.as_slice());
            // A datastore is not HTTP and runs one version at a time on its data: like the
            // local proxy, the router fronts only the services wharf splits.
            if let Some(router) = self
                .target
                .router
                .as_ref()
                .filter(|_| service.kind.is_none())
            {
                if one_shot {
                    self.note(
                        name,
                        "it runs to completion (a Job): no router is rendered for it".to_owned(),
                    );
                    first.push(self.cluster_service(
                        dns_label(name),
                        self.service_labels(name),
                        port,
                        container_port,
                        extra,
                    ));
                    return Parts { first, then };
                }
                if !extra.is_empty() {
                    self.note(
                        name,
                        "the router carries its main `port:` only; its `ports:` are on the version's Service".to_owned(),
                    );
                }
                self.routed = true;
                self.rendered.unfilled_tables.push(name.to_owned());
                // Only the router reaches a version's Service: on the container's own port.
                first.push(self.cluster_service(
                    workload_name.clone(),
                    self.version_labels(name, &version),
                    container_port,
                    container_port,
                    extra,
                ));
                let labels = crate::router::router_labels(&self.stack_labels(), name);
                first.push(self.router_service(name, labels.clone(), port));
                then.extend(crate::router::objects(
                    router,
                    name,
                    self.target.namespace.clone(),
                    labels,
                    port,
                    &crate::router::token_secret_name(&self.stack.name),
                ));
                return Parts { first, then };
            }
            first.push(self.cluster_service(
                dns_label(name),
                self.service_labels(name),
                port,
                container_port,
                extra,
            ));
            if self.target.gateway.is_some() {
                if !extra.is_empty() {
                    self.note(
                        name,
                        "the Gateway routes its main `port:` only; its `ports:` are on its Service"
                            .to_owned(),
                    );
                }
                first.push(self.cluster_service(
                    workload_name.clone(),
                    self.version_labels(name, &version),
                    port,
                    container_port,
                    extra,
                ));
                then.push(self.route(name, port, &[(workload_name, 100)]));
            }
        }
        Parts { first, then }
    }

    /// The version's plain `env:` values as a ConfigMap (loaded whole with `envFrom`); values
    /// that hold a reference go into the container's `env` instead, where the kubelet expands
    /// `$(…)`.
    fn config_map(
        &self,
        name: &str,
        service: &WharfService,
        version: &str,
        workload_name: &str,
    ) -> (Vec<EnvFromSource>, Option<Object>) {
        let plain: BTreeMap<String, String> = service
            .env
            .iter()
            .filter(|(_, value)| !value.contains("${"))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        if plain.is_empty() {
            return (Vec::new(), None);
        }
        let config_name = format!("{workload_name}-env");
        let config = ConfigMap {
            metadata: self.meta(config_name.clone(), self.version_labels(name, version)),
            data: Some(plain),
            ..ConfigMap::default()
        };
        let env_from = vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: config_name.clone(),
                optional: None,
            }),
            ..EnvFromSource::default()
        }];
        (env_from, Some(object("ConfigMap", config_name, &config)))
    }

    fn pod(
        &mut self,
        name: &str,
        service: &WharfService,
        version: &str,
        env_from: Vec<EnvFromSource>,
    ) -> PodSpec {
        let listen_port = container_port_of(service);
        // Only a port with a public side is declared; `${PORT}` is set either way.
        let container_port = service.port.map(|_| listen_port);
        let mut env = instance_variables(name, version, listen_port);
        let mut secrets: Vec<String> = Vec::new();
        let referenced = |found: Vec<String>, secrets: &mut Vec<String>| {
            for secret in found {
                if !secrets.contains(&secret) {
                    secrets.push(secret);
                }
            }
        };
        // Values holding a reference are expanded by the kubelet from variables defined
        // before them: the secrets' variables first, then these.
        let mut expanded = Vec::new();
        for (key, value) in &service.env {
            if !value.contains("${") {
                continue;
            }
            let converted = convert(value);
            referenced(converted.secrets, &mut secrets);
            expanded.push(EnvVar {
                name: key.clone(),
                value: Some(converted.text),
                value_from: None,
            });
        }
        let command = service.command.as_ref().map(|argv| {
            argv.iter()
                .map(|arg| {
                    let converted = convert(arg);
                    referenced(converted.secrets, &mut secrets);
                    converted.text
                })
                .collect::<Vec<_>>()
        });
        let entrypoint = service
            .container
            .as_ref()
            .and_then(|c| c.entrypoint.as_ref())
            .map(|argv| {
                argv.iter()
                    .map(|arg| {
                        let converted = convert(arg);
                        referenced(converted.secrets, &mut secrets);
                        converted.text
                    })
                    .collect::<Vec<_>>()
            });
        for secret in &secrets {
            env.push(self.secret_env(&secret_variable(secret), secret));
        }
        // `secrets: [NAME]` gives the value as the variable NAME itself.
        for secret in &service.secrets {
            env.push(self.secret_env(secret, secret));
            secrets.push(secret.clone());
        }
        env.extend(expanded);
        for secret in secrets.iter().chain(&service.secret_files) {
            if !self.secrets.contains(secret) {
                self.secrets.push(secret.clone());
            }
        }

        let mut volumes = Vec::new();
        let mut mounts = Vec::new();
        if !service.secret_files.is_empty() {
            env.push(EnvVar {
                name: "WHARF_SECRETS_DIR".to_owned(),
                value: Some(SECRETS_DIR.to_owned()),
                value_from: None,
            });
            volumes.push(KubeVolume {
                name: "wharf-secret-files".to_owned(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(self.secret_name()),
                    default_mode: Some(0o400),
                    items: Some(
                        service
                            .secret_files
                            .iter()
                            .map(|secret| KeyToPath {
                                key: secret.clone(),
                                path: secret.clone(),
                                mode: None,
                            })
                            .collect(),
                    ),
                    optional: None,
                }),
                ..KubeVolume::default()
            });
            mounts.push(VolumeMount {
                name: "wharf-secret-files".to_owned(),
                mount_path: SECRETS_DIR.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
        }
        if let Some(container) = &service.container {
            for (index, volume) in container.volumes.iter().enumerate() {
                match &volume.source {
                    VolumeSource::Named(volume_name) => {
                        if !self.volumes.contains(volume_name) {
                            self.volumes.push(volume_name.clone());
                        }
                        let mount_name = format!("volume-{index}");
                        volumes.push(KubeVolume {
                            name: mount_name.clone(),
                            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                                claim_name: self.claim_name(volume_name),
                                read_only: volume.read_only.then_some(true),
                            }),
                            ..KubeVolume::default()
                        });
                        mounts.push(VolumeMount {
                            name: mount_name,
                            mount_path: volume.target.clone(),
                            read_only: volume.read_only.then_some(true),
                            ..VolumeMount::default()
                        });
                    }
                    VolumeSource::Bind(path) => self.errors.push(RenderError::BindMount {
                        service: name.to_owned(),
                        source_path: path.clone(),
                    }),
                }
            }
        }

        let (liveness, startup) = match &service.probes.live {
            Some(probe) => self.probe(name, "live", probe, listen_port),
            None => (None, None),
        };
        let readiness = match &service.probes.ready {
            Some(probe) => self.probe(name, "ready", probe, listen_port).0,
            None => None,
        };
        let mut security = None;
        let mut working_dir = None;
        let mut extra_ports = Vec::new();
        if let Some(container) = &service.container {
            let options = &container.options;
            working_dir = options.working_dir.clone();
            security = self.security_context(name, options);
            for (index, path) in options.tmpfs.iter().enumerate() {
                let (path, mount_options) = path.split_once(':').unwrap_or((path, ""));
                if !mount_options.is_empty() {
                    self.note(name, format!("tmpfs `{path}`: its mount options `{mount_options}` are not rendered (an in-memory emptyDir takes a size only)"));
                }
                let volume_name = format!("tmpfs-{index}");
                volumes.push(memory_volume(&volume_name, None));
                mounts.push(VolumeMount {
                    name: volume_name,
                    mount_path: path.to_owned(),
                    ..VolumeMount::default()
                });
            }
            if let Some(bytes) = options.shm_size {
                volumes.push(memory_volume("shm", Some(bytes)));
                mounts.push(VolumeMount {
                    name: "shm".to_owned(),
                    mount_path: "/dev/shm".to_owned(),
                    ..VolumeMount::default()
                });
            }
            if !options.ulimits.is_empty() {
                self.note(name, "`ulimits` are not rendered: a pod takes the node's limits (set them in the image's entrypoint)".to_owned());
            }
            if !options.networks.is_empty() {
                self.note(name, "`networks` are not rendered: a cluster's pods share one network; isolate them with a NetworkPolicy".to_owned());
            }
            for port in &container.ports {
                extra_ports.push(ContainerPort {
                    container_port: i32::from(port.target),
                    name: Some(format!("port-{}", port.target)),
                    protocol: Some("TCP".to_owned()),
                    ..ContainerPort::default()
                });
            }
        }
        if service.stop.signal.is_some() {
            self.note(name, "`stop.signal` is not rendered: the kubelet sends the image's STOPSIGNAL (set it in the image)".to_owned());
        }
        let termination_grace = service
            .stop
            .grace
            .map(|grace| i64::try_from(grace.as_std().as_secs()).unwrap_or(i64::MAX));
        let restart_policy = match service.restart {
            RestartPolicy::Always => None,
            RestartPolicy::OnFailure { .. } => Some("OnFailure".to_owned()),
            RestartPolicy::Never => Some("Never".to_owned()),
        };
        PodSpec {
            containers: vec![Container {
                name: dns_label(name),
                image: service.image.clone(),
                command: entrypoint,
                args: command,
                env: (!env.is_empty()).then_some(env),
                env_from: (!env_from.is_empty()).then_some(env_from),
                ports: {
                    let mut ports: Vec<ContainerPort> = container_port
                        .map(|port| ContainerPort {
                            container_port: i32::from(port),
                            name: Some("http".to_owned()),
                            protocol: Some("TCP".to_owned()),
                            ..ContainerPort::default()
                        })
                        .into_iter()
                        .collect();
                    ports.extend(extra_ports);
                    (!ports.is_empty()).then_some(ports)
                },
                working_dir,
                security_context: security,
                liveness_probe: liveness,
                readiness_probe: readiness,
                startup_probe: startup,
                volume_mounts: (!mounts.is_empty()).then_some(mounts),
                image_pull_policy: service.container.as_ref().map(|c| {
                    match c.pull_policy {
                        wharf_manifest::model::PullPolicy::Missing => "IfNotPresent",
                        wharf_manifest::model::PullPolicy::Always => "Always",
                        wharf_manifest::model::PullPolicy::Never => "Never",
                    }
                    .to_owned()
                }),
                ..Container::default()
            }],
            volumes: (!volumes.is_empty()).then_some(volumes),
            restart_policy,
            termination_grace_period_seconds: termination_grace,
            ..PodSpec::default()
        }
    }

    fn note(&mut self, service: &str, text: String) {
        self.rendered
            .notes
            .push(format!("service `{service}`: {text}"));
    }

    /// `user`, `read_only` and capabilities as the container's security context. A user by
    /// name has no equivalent (the kubelet takes numbers): noted, the image's user stays.
    fn security_context(
        &mut self,
        service: &str,
        options: &wharf_manifest::model::ContainerOptions,
    ) -> Option<SecurityContext> {
        let mut context = SecurityContext::default();
        if let Some(user) = &options.user {
            let (uid, gid) = user.split_once(':').unwrap_or((user, ""));
            match (uid.parse::<i64>(), gid) {
                (Ok(uid), "") => context.run_as_user = Some(uid),
                (Ok(uid), gid) => match gid.parse::<i64>() {
                    Ok(gid) => {
                        context.run_as_user = Some(uid);
                        context.run_as_group = Some(gid);
                    }
                    Err(_) => self.note(service, format!("user `{user}` is not rendered: Kubernetes takes a numeric group; write `{uid}:GID`")),
                },
                (Err(_), _) => self.note(service, format!("user `{user}` is not rendered: Kubernetes takes a numeric uid; write `UID[:GID]`")),
            }
        }
        if options.read_only {
            context.read_only_root_filesystem = Some(true);
        }
        let names = |list: &[String]| -> Option<Vec<String>> {
            (!list.is_empty()).then(|| {
                list.iter()
                    .map(|c| c.trim_start_matches("CAP_").to_owned())
                    .collect()
            })
        };
        if !options.cap_add.is_empty() || !options.cap_drop.is_empty() {
            context.capabilities = Some(Capabilities {
                add: names(&options.cap_add),
                drop: names(&options.cap_drop),
            });
        }
        (context != SecurityContext::default()).then_some(context)
    }

    fn secret_env(&self, variable: &str, secret: &str) -> EnvVar {
        EnvVar {
            name: variable.to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: self.secret_name(),
                    key: secret.to_owned(),
                    optional: None,
                }),
                ..EnvVarSource::default()
            }),
        }
    }

    /// A wharf probe as the kubelet's (the probe, and for a live probe with a start period the
    /// startup probe that holds it off). What the kubelet cannot check is noted and left to
    /// wharf: a status list, a body, a latency, a host other than the pod.
    fn probe(
        &mut self,
        service: &str,
        which: &str,
        probe: &Probe,
        port: u16,
    ) -> (Option<KubeProbe>, Option<KubeProbe>) {
        let mut note = |text: String| {
            self.rendered
                .notes
                .push(format!("service `{service}`, probe `{which}`: {text}"));
        };
        let mut rendered = KubeProbe {
            period_seconds: Some(seconds(probe.interval.as_std())),
            timeout_seconds: Some(seconds(probe.timeout.as_std())),
            failure_threshold: Some(i32::try_from(probe.failure_threshold).unwrap_or(i32::MAX)),
            // The kubelet requires 1 for liveness and startup probes.
            success_threshold: Some(if which == "ready" {
                i32::try_from(probe.success_threshold).unwrap_or(1)
            } else {
                1
            }),
            ..KubeProbe::default()
        };
        let in_pod = |port: u16| IntOrString::Int(i32::from(port));
        match &probe.check {
            ProbeCheck::Http(http) => {
                if http.url.is_some() {
                    note("an HTTP probe of a full URL is not rendered (the kubelet checks the pod itself)".to_owned());
                    return (None, None);
                }
                if http.method != "GET" {
                    note(format!(
                        "a {} probe is not rendered (the kubelet sends GET only)",
                        http.method
                    ));
                    return (None, None);
                }
                if !http.expect_status.is_empty()
                    || http.body_contains.is_some()
                    || http.json.is_some()
                    || http.max_latency.is_some()
                {
                    note("the kubelet accepts any status from 200 to 399 and reads no body or latency; those conditions are wharf's alone".to_owned());
                }
                rendered.http_get = Some(HTTPGetAction {
                    path: Some(convert(http.path.as_deref().unwrap_or("/")).text),
                    port: in_pod(port),
                    http_headers: (!http.headers.is_empty()).then(|| {
                        http.headers
                            .iter()
                            .map(|(name, value)| HTTPHeader {
                                name: name.clone(),
                                value: value.clone(),
                            })
                            .collect()
                    }),
                    ..HTTPGetAction::default()
                });
            }
            ProbeCheck::Tcp(tcp) => {
                if tcp.host.is_some() {
                    note("a TCP probe of another host is not rendered".to_owned());
                    return (None, None);
                }
                rendered.tcp_socket = Some(TCPSocketAction {
                    host: None,
                    port: in_pod(tcp.port.unwrap_or(port)),
                });
            }
            ProbeCheck::Exec(exec) => {
                if exec.expect_exit != 0 {
                    note(
                        "the kubelet expects exit status 0; `expect_exit` is wharf's alone"
                            .to_owned(),
                    );
                }
                rendered.exec = Some(ExecAction {
                    command: Some(exec.command.iter().map(|a| convert(a).text).collect()),
                });
            }
            ProbeCheck::Postgres(_) | ProbeCheck::Redis(_) => {
                note("a datastore query probe is rendered as a TCP connect to its port".to_owned());
                rendered.tcp_socket = Some(TCPSocketAction {
                    host: None,
                    port: in_pod(port),
                });
            }
        }
        let start = probe.start_period.as_std();
        let startup = (which == "live" && !start.is_zero()).then(|| {
            let period = seconds(probe.interval.as_std());
            let tries = start
                .as_secs()
                .div_ceil(u64::try_from(period).unwrap_or(1).max(1));
            KubeProbe {
                failure_threshold: Some(
                    i32::try_from(tries.max(1))
                        .unwrap_or(i32::MAX)
                        .saturating_add(rendered.failure_threshold.unwrap_or(1)),
                ),
                ..rendered.clone()
            }
        });
        (Some(rendered), startup)
    }

    fn job(
        &self,
        service: &WharfService,
        workload_name: String,
        labels: BTreeMap<String, String>,
        template: PodTemplateSpec,
    ) -> Object {
        let backoff = match service.restart {
            RestartPolicy::Never => Some(0),
            RestartPolicy::OnFailure {
                max_retries: Some(n),
            } => Some(i32::try_from(n).unwrap_or(i32::MAX)),
            _ => None,
        };
        let job = Job {
            metadata: self.meta(workload_name.clone(), labels),
            spec: Some(JobSpec {
                backoff_limit: backoff,
                parallelism: Some(i32::try_from(service.replicas).unwrap_or(i32::MAX)),
                completions: Some(i32::try_from(service.replicas).unwrap_or(i32::MAX)),
                template,
                ..JobSpec::default()
            }),
            ..Job::default()
        };
        object("Job", workload_name, &job)
    }

    /// At most one pod of the version away at a time during a node drain.
    fn disruption_budget(&self, workload_name: &str, labels: BTreeMap<String, String>) -> Object {
        let budget = PodDisruptionBudget {
            metadata: self.meta(workload_name.to_owned(), labels.clone()),
            spec: Some(PodDisruptionBudgetSpec {
                max_unavailable: Some(IntOrString::Int(1)),
                selector: Some(LabelSelector {
                    match_labels: Some(selector_labels(&labels, true)),
                    ..LabelSelector::default()
                }),
                ..PodDisruptionBudgetSpec::default()
            }),
            ..PodDisruptionBudget::default()
        };
        object("PodDisruptionBudget", workload_name.to_owned(), &budget)
    }

    fn cluster_service(
        &self,
        name: String,
        labels: BTreeMap<String, String>,
        port: u16,
        container_port: u16,
        extra: &[wharf_manifest::model::ServicePort],
    ) -> Object {
        let selects_version = labels.contains_key(VERSION_LABEL);
        let mut ports = vec![ServicePort {
            name: Some("http".to_owned()),
            port: i32::from(port),
            target_port: Some(IntOrString::Int(i32::from(container_port))),
            protocol: Some("TCP".to_owned()),
            ..ServicePort::default()
        }];
        // `ports:` beside the main one: the Service exposes each public port to its container
        // port (a Gateway routes only the main one).
        ports.extend(extra.iter().map(|extra| ServicePort {
            name: Some(format!("port-{}", extra.published)),
            port: i32::from(extra.published),
            target_port: Some(IntOrString::Int(i32::from(extra.target))),
            protocol: Some("TCP".to_owned()),
            ..ServicePort::default()
        }));
        let service = Service {
            metadata: self.meta(name.clone(), labels.clone()),
            spec: Some(ServiceSpec {
                selector: Some(selector_labels(&labels, selects_version)),
                ports: Some(ports),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        };
        object("Service", name, &service)
    }

    /// The service's own Service with a router: its public port to the router pods.
    fn router_service(&self, name: &str, labels: BTreeMap<String, String>, port: u16) -> Object {
        let service = Service {
            metadata: self.meta(dns_label(name), labels.clone()),
            spec: Some(ServiceSpec {
                selector: Some(crate::router::router_selector(&labels)),
                ports: Some(vec![ServicePort {
                    name: Some("http".to_owned()),
                    port: i32::from(port),
                    target_port: Some(IntOrString::Int(i32::from(port))),
                    protocol: Some("TCP".to_owned()),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        };
        object("Service", dns_label(name), &service)
    }

    /// The stack's router Secret: the routers' admin token, with no value — `wharf cluster
    /// apply` makes one (or keeps the cluster's), so no rendered file holds it.
    fn router_secret(&self) -> Object {
        let name = crate::router::token_secret_name(&self.stack.name);
        let mut meta = self.meta(name.clone(), self.stack_labels());
        meta.annotations = Some(BTreeMap::from([(
            "wharf.dev/generated".to_owned(),
            crate::router::TOKEN_KEY.to_owned(),
        )]));
        let secret = Secret {
            metadata: meta,
            type_: Some("Opaque".to_owned()),
            ..Secret::default()
        };
        object("Secret", name, &secret)
    }

    /// The service's HTTPRoute: attached to the Gateway's listener on the public port, its one
    /// rule's backends weighted as the traffic split (`weights` in percent of the service).
    pub(crate) fn route(&self, service: &str, port: u16, weights: &[(String, u32)]) -> Object {
        let Some(gateway) = &self.target.gateway else {
            unreachable!("routes are rendered only with a gateway");
        };
        let route = crate::route::http_route(
            crate::route::RouteMeta {
                name: dns_label(service),
                namespace: self.target.namespace.clone(),
                labels: self.service_labels(service),
            },
            gateway,
            port,
            weights,
        );
        object("HTTPRoute", dns_label(service), &route)
    }

    fn secret(&self) -> Object {
        let name = self.secret_name();
        let mut meta = self.meta(name.clone(), self.stack_labels());
        meta.annotations = Some(BTreeMap::from([(
            "wharf.dev/keys".to_owned(),
            self.secrets.join(","),
        )]));
        let secret = Secret {
            metadata: meta,
            type_: Some("Opaque".to_owned()),
            ..Secret::default()
        };
        object("Secret", name, &secret)
    }

    fn claim(&mut self, volume: &str) -> Object {
        let name = self.claim_name(volume);
        self.rendered.notes.push(format!(
            "volume `{volume}`: claimed as `{name}` with {DEFAULT_VOLUME_SIZE} (ReadWriteOnce); review the size"
        ));
        let claim = PersistentVolumeClaim {
            metadata: self.meta(name.clone(), self.stack_labels()),
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_owned(),
                        Quantity(DEFAULT_VOLUME_SIZE.to_owned()),
                    )])),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            ..PersistentVolumeClaim::default()
        };
        object("PersistentVolumeClaim", name, &claim)
    }
}

/// An in-memory emptyDir (a tmpfs), of at most `bytes` when given.
fn memory_volume(name: &str, bytes: Option<u64>) -> KubeVolume {
    KubeVolume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: Some("Memory".to_owned()),
            size_limit: bytes.map(|b| Quantity(b.to_string())),
        }),
        ..KubeVolume::default()
    }
}

/// The labels that select pods: stack and service, and the version when `with_version`.
fn selector_labels(
    labels: &BTreeMap<String, String>,
    with_version: bool,
) -> BTreeMap<String, String> {
    labels
        .iter()
        .filter(|(key, _)| {
            key.as_str() == STACK_LABEL
                || key.as_str() == SERVICE_LABEL
                || (with_version && key.as_str() == VERSION_LABEL)
        })
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// wharf's instance variables: `PORT` (the container's port), `VERSION`, `SERVICE`, and
/// `INSTANCE` as the pod's name (a cluster has no ordinals for a Deployment's pods).
fn instance_variables(service: &str, version: &str, port: u16) -> Vec<EnvVar> {
    let plain = |name: &str, value: String| EnvVar {
        name: name.to_owned(),
        value: Some(value),
        value_from: None,
    };
    let mut env = vec![plain("PORT", port.to_string())];
    env.push(plain("VERSION", version.to_owned()));
    env.push(plain("SERVICE", service.to_owned()));
    env.push(EnvVar {
        name: "INSTANCE".to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.name".to_owned(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
    });
    env
}

/// The version a service runs: `version:`, else its image's tag, else `latest` (as wharf runs
/// it locally).
pub fn version_of(service: &WharfService) -> String {
    service
        .version
        .clone()
        .or_else(|| {
            service
                .image
                .as_deref()
                .and_then(wharf_runtime::image::tag_of)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "latest".to_owned())
}

/// The port the service listens on in its pod: `container_port`, else `port`. A service with
/// neither still gets `${PORT}`, as every local instance does (a worker's health listener);
/// any port is free in a pod, so it is [`PORT_WITHOUT_PUBLIC`].
fn container_port_of(service: &WharfService) -> u16 {
    service
        .container
        .as_ref()
        .and_then(|c| c.container_port)
        .or(service.port)
        .unwrap_or(PORT_WITHOUT_PUBLIC)
}

/// `${PORT}` in the pod of a service without `port:`.
pub const PORT_WITHOUT_PUBLIC: u16 = 8080;

/// Whole seconds, rounded up, at least 1: the kubelet's unit and minimum.
fn seconds(duration: std::time::Duration) -> i32 {
    let secs = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    i32::try_from(secs.max(1)).unwrap_or(i32::MAX)
}

fn object(kind: &'static str, name: String, value: &impl Serialize) -> Object {
    Object {
        kind,
        name,
        value: serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
    }
}
