//! The IO edge to a Kubernetes API server (`kube`'s client): server-side apply under wharf's
//! own field manager, reads, deletes, Deployment availability by watch, and the route patches.
//!
//! Every object is applied with `fieldManager=wharf` and `force=true`: wharf owns the fields it
//! sends (and takes them back if another manager changed them), and never sends — so never
//! touches — a field it does not manage, such as an annotation a GitOps tool or a person added.

use std::path::Path;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value;

use crate::render::{MANAGED_BY_LABEL, MANAGER, Object, STACK_LABEL};

/// Why a cluster call failed; each names what wharf was doing.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("no cluster configuration: {0} (pass --kubeconfig, or set KUBECONFIG)")]
    Infer(String),
    #[error("cannot make a client for {url}: {source}")]
    Client { url: String, source: kube::Error },
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("wharf does not apply objects of kind {0}")]
    UnknownKind(String),
    #[error("{what}: {reason}")]
    PodProxy { what: String, reason: String },
    #[error(
        "Deployment {name} is not available after {waited:?} ({available} of {wanted} replicas)"
    )]
    NotAvailable {
        name: String,
        waited: Duration,
        available: i64,
        wanted: i64,
    },
}

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Api { what, source }
}

/// The API resource of each kind wharf renders.
pub fn resource(kind: &str) -> Result<ApiResource, ClusterError> {
    let (group, version, plural) = match kind {
        "Deployment" => ("apps", "v1", "deployments"),
        "Service" => ("", "v1", "services"),
        "ConfigMap" => ("", "v1", "configmaps"),
        "Secret" => ("", "v1", "secrets"),
        "PersistentVolumeClaim" => ("", "v1", "persistentvolumeclaims"),
        "Job" => ("batch", "v1", "jobs"),
        "PodDisruptionBudget" => ("policy", "v1", "poddisruptionbudgets"),
        "HTTPRoute" => ("gateway.networking.k8s.io", "v1", "httproutes"),
        "Pod" => ("", "v1", "pods"),
        other => return Err(ClusterError::UnknownKind(other.to_owned())),
    };
    Ok(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind),
        plural,
    ))
}

/// ring as the process's default rustls provider, unless one is installed already.
// rustls 0.23.48 deprecates ring's provider for lacking post-quantum key exchange; wharf
// chooses ring everywhere (see wharf-server's tls.rs).
#[allow(deprecated)]
fn install_ring() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A Deployment's rollout as its controller reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Availability {
    pub wanted: i64,
    pub available: i64,
    pub updated: i64,
    /// The controller has seen the latest spec.
    pub observed: bool,
}

impl Availability {
    /// Every wanted replica is updated and available, for the latest spec.
    pub fn complete(&self) -> bool {
        self.observed && self.available >= self.wanted && self.updated >= self.wanted
    }

    pub fn of(deployment: &Value) -> Availability {
        let wanted = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
        let status = &deployment["status"];
        let generation = deployment["metadata"]["generation"].as_i64().unwrap_or(0);
        Availability {
            wanted,
            available: status["availableReplicas"].as_i64().unwrap_or(0),
            updated: status["updatedReplicas"].as_i64().unwrap_or(0),
            observed: status["observedGeneration"].as_i64().unwrap_or(-1) >= generation,
        }
    }
}

/// A connection to one namespace of a cluster.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    namespace: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects as the kubeconfig says (`kubeconfig`, else `$KUBECONFIG` / `~/.kube/config`,
    /// else the in-cluster service account), in `namespace` or the context's own (else
    /// `default`).
    pub async fn connect(
        kubeconfig: Option<&Path>,
        context: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<Cluster, ClusterError> {
        let options = KubeConfigOptions {
            context: context.map(str::to_owned),
            ..KubeConfigOptions::default()
        };
        let config = match kubeconfig {
            Some(path) => {
                let file =
                    Kubeconfig::read_from(path).map_err(|source| ClusterError::Kubeconfig {
                        path: path.display().to_string(),
                        source,
                    })?;
                kube::Config::from_custom_kubeconfig(file, &options)
                    .await
                    .map_err(|source| ClusterError::Kubeconfig {
                        path: path.display().to_string(),
                        source,
                    })?
            }
            None if context.is_some() => kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|e| ClusterError::Infer(e.to_string()))?,
            None => kube::Config::infer()
                .await
                .map_err(|e| ClusterError::Infer(e.to_string()))?,
        };
        let namespace = namespace
            .map(str::to_owned)
            .unwrap_or_else(|| config.default_namespace.clone());
        let url = config.cluster_url.to_string();
        // The binary links rustls with more than one crypto provider (other crates bring
        // aws-lc-rs); kube's client needs a process default, so pick ring, as the API server
        // does. An already installed default stays.
        install_ring();
        let client = kube::Client::try_from(config)
            .map_err(|source| ClusterError::Client { url, source })?;
        Ok(Cluster { client, namespace })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn api(&self, kind: &str) -> Result<(Api<DynamicObject>, ApiResource), ClusterError> {
        let resource = resource(kind)?;
        Ok((
            Api::namespaced_with(self.client.clone(), &self.namespace, &resource),
            resource,
        ))
    }

    /// Server-side apply of one rendered object under wharf's field manager.
    pub async fn apply(&self, object: &Object) -> Result<Value, ClusterError> {
        let (api, _) = self.api(object.kind)?;
        let mut value = object.value.clone();
        // The object goes into the connection's namespace whatever the render said.
        value["metadata"]["namespace"] = Value::String(self.namespace.clone());
        let params = PatchParams::apply(MANAGER).force();
        let applied = api
            .patch(&object.name, &params, &Patch::Apply(&value))
            .await
            .map_err(api_error(format!(
                "server-side apply of {} {}/{}",
                object.kind, self.namespace, object.name
            )))?;
        Ok(serde_json::to_value(applied).unwrap_or(Value::Null))
    }

    /// The object, or `None` when the cluster has none by that name.
    pub async fn get(&self, kind: &str, name: &str) -> Result<Option<Value>, ClusterError> {
        let (api, _) = self.api(kind)?;
        let found = api.get_opt(name).await.map_err(api_error(format!(
            "reading {kind} {}/{name}",
            self.namespace
        )))?;
        Ok(found.map(|o| serde_json::to_value(o).unwrap_or(Value::Null)))
    }

    /// Deletes the object; `false` when it was already gone.
    pub async fn delete(&self, kind: &str, name: &str) -> Result<bool, ClusterError> {
        let (api, _) = self.api(kind)?;
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
            Err(source) => Err(ClusterError::Api {
                what: format!("deleting {kind} {}/{name}", self.namespace),
                source,
            }),
        }
    }

    /// The objects of `kind` wharf manages for `stack` (adoption: what runs is read from the
    /// cluster by labels, not remembered).
    pub async fn managed(&self, kind: &str, stack: &str) -> Result<Vec<Value>, ClusterError> {
        let (api, _) = self.api(kind)?;
        let selector = format!(
            "{STACK_LABEL}={},{MANAGED_BY_LABEL}={MANAGER}",
            crate::names::label_value(stack)
        );
        let list = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(api_error(format!("listing {kind} in {}", self.namespace)))?;
        Ok(list
            .items
            .into_iter()
            .map(|o| serde_json::to_value(o).unwrap_or(Value::Null))
            .collect())
    }

    /// The pods matching a label selector (`key=value,…`).
    pub async fn pods(&self, selector: &str) -> Result<Vec<Value>, ClusterError> {
        let (api, _) = self.api("Pod")?;
        let list = api
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(api_error(format!("listing pods in {}", self.namespace)))?;
        Ok(list
            .items
            .into_iter()
            .map(|o| serde_json::to_value(o).unwrap_or(Value::Null))
            .collect())
    }

    /// One HTTP request to a pod's port through the API server's pod proxy
    /// (`/api/v1/namespaces/NS/pods/POD:PORT/proxy/PATH`): the pod is reached the way the API
    /// server reaches it, so the deployer needs no route into the pod network, only RBAC on
    /// `pods/proxy` for the method's verb (`get` for GET, `update` for PUT). The answer's
    /// status and body, whatever the status; an error only when no answer came (within 10 s).
    /// `headers` may hold a credential: it is never part of an error.
    pub async fn pod_request(
        &self,
        pod: &str,
        port: u16,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), ClusterError> {
        use http_body_util::BodyExt;
        let what = format!("{method} {path} on pod {}/{pod}:{port}", self.namespace);
        let failed = |reason: String| ClusterError::PodProxy {
            what: what.clone(),
            reason,
        };
        let uri = format!(
            "/api/v1/namespaces/{}/pods/{pod}:{port}/proxy{path}",
            self.namespace
        );
        let mut request = hyper::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if !body.is_empty() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(kube::client::Body::from(body))
            .map_err(|e| failed(format!("cannot build the request: {e}")))?;
        let answer = tokio::time::timeout(Duration::from_secs(10), async {
            let response = self
                .client
                .send(request)
                .await
                .map_err(|e| failed(e.to_string()))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| failed(e.to_string()))?
                .to_bytes();
            Ok::<_, ClusterError>((status, body.to_vec()))
        })
        .await
        .map_err(|_| failed("no answer within 10 s".to_owned()))??;
        Ok(answer)
    }

    /// The Deployment's availability, `None` when it does not exist.
    pub async fn availability(&self, name: &str) -> Result<Option<Availability>, ClusterError> {
        Ok(self
            .get("Deployment", name)
            .await?
            .map(|d| Availability::of(&d)))
    }

    /// Waits until the Deployment is complete ([`Availability::complete`]), watching it rather
    /// than polling; gives up after `limit`.
    pub async fn wait_available(&self, name: &str, limit: Duration) -> Result<(), ClusterError> {
        let (api, _) = self.api("Deployment")?;
        let deadline = tokio::time::Instant::now() + limit;
        let mut last = Availability {
            wanted: 0,
            available: 0,
            updated: 0,
            observed: false,
        };
        loop {
            let current = api.get_opt(name).await.map_err(api_error(format!(
                "reading Deployment {}/{name}",
                self.namespace
            )))?;
            let version = match &current {
                Some(object) => {
                    let value = serde_json::to_value(object).unwrap_or(Value::Null);
                    last = Availability::of(&value);
                    if last.complete() {
                        return Ok(());
                    }
                    object.metadata.resource_version.clone().unwrap_or_default()
                }
                None => "0".to_owned(),
            };
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                return Err(ClusterError::NotAvailable {
                    name: name.to_owned(),
                    waited: limit,
                    available: last.available,
                    wanted: last.wanted,
                });
            }
            let params = WatchParams::default()
                .fields(&format!("metadata.name={name}"))
                .timeout(remaining.as_secs().clamp(1, 290) as u32);
            let stream = api
                .watch(&params, &version)
                .await
                .map_err(api_error(format!(
                    "watching Deployment {}/{name}",
                    self.namespace
                )))?;
            let mut stream = std::pin::pin!(stream.into_stream());
            let watched = tokio::time::timeout(remaining, async {
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(WatchEvent::Added(object) | WatchEvent::Modified(object)) => {
                            let value = serde_json::to_value(&object).unwrap_or(Value::Null);
                            if Availability::of(&value).complete() {
                                return true;
                            }
                        }
                        // Gone, an error event or a broken stream: read again from scratch.
                        _ => return false,
                    }
                }
                false
            })
            .await;
            if let Ok(true) = watched {
                return Ok(());
            }
        }
    }

    /// One JSON patch (RFC 6902) of an HTTPRoute: the weights move in a single update, and its
    /// `test` operations make it fail rather than write over a route that changed under it.
    pub async fn patch_route(
        &self,
        name: &str,
        patch: &json_patch::Patch,
    ) -> Result<Value, ClusterError> {
        let (api, _) = self.api("HTTPRoute")?;
        let params = PatchParams {
            field_manager: Some(MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let patched = api
            .patch(name, &params, &Patch::<()>::Json(patch.clone()))
            .await
            .map_err(api_error(format!(
                "patching the weights of HTTPRoute {}/{name}",
                self.namespace
            )))?;
        Ok(serde_json::to_value(patched).unwrap_or(Value::Null))
    }
}
