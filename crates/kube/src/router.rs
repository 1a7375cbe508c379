//! wharf's own proxy as a service's router on a cluster (`--router wharf`), pure: its objects
//! and the route tables it is fed. No Gateway API implementation or mesh is needed: the
//! service's `Service` selects the router pods, which split the traffic between the versions'
//! Services by the weights of the table `wharf cluster` sends them.
//!
//! Per service with a `port:`:
//! - a Deployment `SERVICE-router` (2 replicas) running `wharf-proxy` with its admin API on
//!   [`ADMIN_PORT`] behind the bearer token of the stack's Secret `STACK-router`
//!   ([`TOKEN_KEY`]), reached through the API server's pod proxy — no Service exposes it;
//! - a ConfigMap `SERVICE-router` holding the table in force ([`TABLE_KEY`]), which a router pod
//!   serves at start (`--seed`), so a new or rescheduled pod serves the split of the moment;
//! - a PodDisruptionBudget (one router pod away at a time).
//!
//! The versions are reached at their per-version Service's cluster IP, not at pod IPs: the
//! cluster keeps a Service's endpoints current as pods come, go and fail their readiness, so
//! the table changes only when the weights do. A table of pod IPs would have to follow every
//! pod restart, which nothing of wharf's watches between rollouts. The cluster assigns those
//! IPs, so the rendered table is empty: `wharf cluster apply` fills it in.

use std::collections::BTreeMap;

use serde_json::Value;
use wharf_manifest::model::Service as WharfService;
use wharf_proxy::table::{RouteTable, ServiceRoute, Sticky, VersionRoute};

use crate::names::joined;

/// The label that tells router pods from a service's version pods.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// Its value on router objects.
pub const COMPONENT: &str = "router";
/// The router's admin API port in its pod.
pub const ADMIN_PORT: u16 = 9901;
/// The container port's name the deployer looks the admin port up by (a pod says its own).
pub const ADMIN_PORT_NAME: &str = "admin";
/// The ConfigMap key holding the table.
pub const TABLE_KEY: &str = "table.json";
/// The key of the admin token in the stack's router Secret.
pub const TOKEN_KEY: &str = "admin-token";
/// Where the router's ConfigMap is mounted.
pub const SEED_DIR: &str = "/etc/wharf-router";
/// The drain a table gives a version's connections when the manifest names none.
pub const DEFAULT_DRAIN_MS: u64 = 30_000;

/// `--router wharf`: the image that runs `wharf-proxy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterSpec {
    pub image: String,
}

/// The router Deployment and ConfigMap of `service` (a wharf service name).
pub fn router_name(service: &str) -> String {
    joined(service, "router")
}

/// The stack's Secret holding the routers' admin token.
pub fn token_secret_name(stack: &str) -> String {
    joined(stack, "router")
}

/// An empty table (revision 0): what a router serves before `wharf cluster apply` seeds it.
pub fn empty_table() -> RouteTable {
    RouteTable {
        revision: 0,
        services: BTreeMap::new(),
    }
}

/// One version in a router's table: its name, weight and where its Service is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub version: String,
    pub weight: u8,
    /// `CLUSTER_IP:PORT` of the version's Service.
    pub address: String,
}

/// The table a router of `service` serves: the service on `0.0.0.0:PORT` in the pod, its
/// versions weighted, with the manifest's proxy settings (timeouts, stickiness, budgets) as
/// the local proxy gets them.
pub fn table(
    service_name: &str,
    service: &WharfService,
    port: u16,
    backends: &[Backend],
    revision: u64,
) -> RouteTable {
    let settings = service.proxy.clone().unwrap_or_default();
    let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let drain = service
        .rollout
        .as_ref()
        .and_then(|r| r.deadlines.drain)
        .map_or(DEFAULT_DRAIN_MS, |d| millis(d.as_std()));
    use wharf_proxy::table as t;
    let route = ServiceRoute {
        listen: format!("0.0.0.0:{port}"),
        mode: t::Mode::Http,
        versions: backends
            .iter()
            .map(|b| VersionRoute {
                name: b.version.clone(),
                weight: b.weight,
                instances: vec![b.address.clone()],
            })
            .collect(),
        sticky: service.sticky.as_ref().map(|sticky| match sticky {
            wharf_manifest::model::Sticky::Cookie(name) => Sticky::Cookie(name.clone()),
            wharf_manifest::model::Sticky::Header(name) => Sticky::Header(name.clone()),
        }),
        drain_timeout_ms: drain,
        eject_after: 3,
        eject_cooldown_ms: 10_000,
        upstream_timeout_ms: settings
            .upstream_timeout
            .map_or(t::DEFAULT_UPSTREAM_TIMEOUT_MS, |d| millis(d.as_std())),
        tunnel_idle_timeout_ms: settings
            .tunnel_idle_timeout
            .map_or(t::DEFAULT_TUNNEL_IDLE_MS, |d| millis(d.as_std())),
        client_timeout_ms: settings
            .client_timeout
            .map_or(t::DEFAULT_CLIENT_TIMEOUT_MS, |d| millis(d.as_std())),
        header_timeout_ms: settings
            .header_timeout
            .map_or(t::DEFAULT_HEADER_TIMEOUT_MS, |d| millis(d.as_std())),
        max_connections: settings
            .max_connections
            .unwrap_or(t::DEFAULT_MAX_CONNECTIONS),
        max_connections_per_client: settings
            .max_connections_per_client
            .unwrap_or(t::DEFAULT_MAX_CONNECTIONS_PER_CLIENT),
    };
    RouteTable {
        revision,
        services: BTreeMap::from([(service_name.to_owned(), route)]),
    }
}

/// The table as the ConfigMap holds it (and a router pod reads with `--seed`).
pub fn table_text(table: &RouteTable) -> String {
    serde_json::to_string_pretty(table).unwrap_or_default()
}

/// The table a ConfigMap holds, `None` when it has none or not one that reads.
pub fn table_of_config_map(config_map: &Value) -> Option<RouteTable> {
    config_map["data"][TABLE_KEY]
        .as_str()
        .and_then(|text| serde_json::from_str(text).ok())
}

/// Whether two tables route `service` alike (the revision aside): what decides if a router
/// pod needs a table at all, so a resumed rollout sends none it already has.
pub fn same_route(a: &RouteTable, b: &RouteTable, service: &str) -> bool {
    a.services.get(service) == b.services.get(service)
}

/// `(version, weight)` of `service` in `table`, in table order.
pub fn weights(table: &RouteTable, service: &str) -> Vec<(String, u8)> {
    table
        .services
        .get(service)
        .map(|route| {
            route
                .versions
                .iter()
                .map(|v| (v.name.clone(), v.weight))
                .collect()
        })
        .unwrap_or_default()
}

/// The pods of `service`'s router among `pods` (a list of the namespace's Pods) that can be
/// asked: running, with an IP, not being deleted; with the admin port each declares.
pub fn reachable_pods(pods: &[Value]) -> Vec<(String, u16)> {
    pods.iter()
        .filter(|pod| {
            pod["status"]["phase"] == "Running"
                && pod["status"]["podIP"].is_string()
                && pod["metadata"]["deletionTimestamp"].is_null()
        })
        .filter_map(|pod| {
            let name = pod["metadata"]["name"].as_str()?.to_owned();
            let port = pod["spec"]["containers"]
                .as_array()?
                .iter()
                .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                .find(|p| p["name"] == ADMIN_PORT_NAME)
                .and_then(|p| p["containerPort"].as_u64())
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(ADMIN_PORT);
            Some((name, port))
        })
        .collect()
}

/// The labels of a service's router objects (and its pods): the stack's, the service's, and
/// [`COMPONENT_LABEL`], which version pods lack.
pub fn router_labels(
    stack_labels: &BTreeMap<String, String>,
    service: &str,
) -> BTreeMap<String, String> {
    let mut labels = stack_labels.clone();
    labels.insert(
        crate::render::SERVICE_LABEL.to_owned(),
        crate::names::label_value(service),
    );
    labels.insert(COMPONENT_LABEL.to_owned(), COMPONENT.to_owned());
    labels
}

/// The labels that select a service's router pods (and only them).
pub fn router_selector(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels
        .iter()
        .filter(|(key, _)| {
            [
                crate::render::STACK_LABEL,
                crate::render::SERVICE_LABEL,
                COMPONENT_LABEL,
            ]
            .contains(&key.as_str())
        })
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// A service's router objects: its ConfigMap (the empty table), Deployment and
/// PodDisruptionBudget. `secret` is the stack's router Secret.
pub(crate) fn objects(
    router: &RouterSpec,
    service: &str,
    namespace: Option<String>,
    labels: BTreeMap<String, String>,
    port: u16,
    secret: &str,
) -> Vec<crate::render::Object> {
    use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
    use k8s_openapi::api::core::v1::{
        Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
        EnvVar, EnvVarSource, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
        SecretKeySelector, SecurityContext, TCPSocketAction, Volume, VolumeMount,
    };
    use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    let name = router_name(service);
    let meta = |labels: &BTreeMap<String, String>| ObjectMeta {
        name: Some(name.clone()),
        namespace: namespace.clone(),
        labels: Some(labels.clone()),
        ..ObjectMeta::default()
    };
    let selector = LabelSelector {
        match_labels: Some(router_selector(&labels)),
        ..LabelSelector::default()
    };
    let config = config_map(service, namespace.clone(), labels.clone(), &empty_table());
    let mount = |volume: &str, path: &str, read_only: bool| VolumeMount {
        name: volume.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    };
    let empty_dir = |volume: &str| Volume {
        name: volume.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    };
    let tcp_probe = |port: u16, period: i32| Probe {
        tcp_socket: Some(TCPSocketAction {
            host: None,
            port: IntOrString::Int(i32::from(port)),
        }),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        ..Probe::default()
    };
    let container = Container {
        name: "router".to_owned(),
        image: Some(router.image.clone()),
        args: Some(
            [
                "--admin-socket",
                "/run/wharf-router/admin.sock",
                "--state",
                "/var/lib/wharf-router/table.json",
                "--seed",
                &format!("{SEED_DIR}/{TABLE_KEY}"),
                "--admin-listen",
                &format!("0.0.0.0:{ADMIN_PORT}"),
            ]
            .map(str::to_owned)
            .to_vec(),
        ),
        env: Some(vec![EnvVar {
            name: "WHARF_PROXY_ADMIN_TOKEN".to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.to_owned(),
                    key: TOKEN_KEY.to_owned(),
                    optional: None,
                }),
                ..EnvVarSource::default()
            }),
        }]),
        ports: Some(vec![
            ContainerPort {
                container_port: i32::from(port),
                name: Some("http".to_owned()),
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            },
            ContainerPort {
                container_port: i32::from(ADMIN_PORT),
                name: Some(ADMIN_PORT_NAME.to_owned()),
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            },
        ]),
        // Ready once it listens on the service's port, which it does only with a table.
        readiness_probe: Some(tcp_probe(port, 2)),
        liveness_probe: Some(tcp_probe(ADMIN_PORT, 10)),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity("50m".to_owned())),
                ("memory".to_owned(), Quantity("32Mi".to_owned())),
            ])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                // A public port below 1024 is bound by the router itself.
                add: (port < 1024).then(|| vec!["NET_BIND_SERVICE".to_owned()]),
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            mount("run", "/run/wharf-router", false),
            mount("state", "/var/lib/wharf-router", false),
            mount("table", SEED_DIR, true),
        ]),
        ..Container::default()
    };
    let deployment = Deployment {
        metadata: meta(&labels),
        spec: Some(DeploymentSpec {
            replicas: Some(2),
            selector: selector.clone(),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(vec![
                        empty_dir("run"),
                        empty_dir("state"),
                        Volume {
                            name: "table".to_owned(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: name.clone(),
                                ..ConfigMapVolumeSource::default()
                            }),
                            ..Volume::default()
                        },
                    ]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    };
    let budget = PodDisruptionBudget {
        metadata: meta(&labels),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(selector),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    };
    let object = |kind: &'static str, value: serde_json::Result<Value>| crate::render::Object {
        kind,
        name: name.clone(),
        value: value.unwrap_or(Value::Null),
    };
    vec![
        config,
        object("Deployment", serde_json::to_value(&deployment)),
        object("PodDisruptionBudget", serde_json::to_value(&budget)),
    ]
}

/// The router's ConfigMap holding `table` (every field wharf manages, as server-side apply
/// needs: a field left out would be dropped).
pub fn config_map(
    service: &str,
    namespace: Option<String>,
    labels: BTreeMap<String, String>,
    table: &RouteTable,
) -> crate::render::Object {
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    let name = router_name(service);
    let config = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace,
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(TABLE_KEY.to_owned(), table_text(table))])),
        ..ConfigMap::default()
    };
    crate::render::Object {
        kind: "ConfigMap",
        name,
        value: serde_json::to_value(&config).unwrap_or(Value::Null),
    }
}

/// The labels every object of `stack` carries.
pub fn stack_labels(stack: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            crate::render::STACK_LABEL.to_owned(),
            crate::names::label_value(stack),
        ),
        (
            crate::render::MANAGED_BY_LABEL.to_owned(),
            crate::render::MANAGER.to_owned(),
        ),
    ])
}

/// The label selector of `service`'s router pods, as a list query takes it.
pub fn pod_selector(stack: &str, service: &str) -> String {
    router_selector(&router_labels(&stack_labels(stack), service))
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}
