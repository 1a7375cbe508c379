//! wharf's own proxy as the router on a cluster: the [`Router`] that feeds route tables to every
//! router pod of a service and reads their per-version counters, the IO edge of
//! [`crate::router`].
//!
//! The pods are reached through the API server's pod proxy (`pods/POD:PORT/proxy/…`), so the
//! deployer needs no network path into the cluster beyond the API server it already talks to.
//! Each request carries the routers' admin token in `X-Wharf-Proxy-Token` (the API server
//! consumes `Authorization` itself); the token is read from the stack's router Secret and is
//! never part of a message.
//!
//! One update of the split is: the ConfigMap's table (what a router pod starting later
//! serves), then one `PUT /v1/routes` per running router pod — each only where what that pod
//! reports (`GET /v1/routes`) routes the service differently, so a resumed rollout sends no
//! table a pod already has.

use std::sync::Mutex;

use serde_json::Value;
use wharf_manifest::Stack;
use wharf_manifest::model::Service as WharfService;
use wharf_proxy::admin::TOKEN_HEADER;
use wharf_proxy::table::RouteTable;

use crate::cluster::Cluster;
use crate::deploy::{ClusterRollout, DeployError, Router, Totals, VersionRef};
use crate::names::joined;
use crate::router::{
    Backend, config_map, pod_selector, reachable_pods, router_labels, router_name, same_route,
    stack_labels, table, table_of_config_map, token_secret_name,
};

/// The routers' admin token; no `Debug` shows it.
struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token([redacted])")
    }
}

/// The router of one service.
#[derive(Debug)]
pub struct ProxyRouter {
    cluster: Cluster,
    stack: String,
    service: String,
    spec: WharfService,
    port: u16,
    token: Token,
    /// The revision of the last table put in place: a pod reporting less (it started from an
    /// older ConfigMap while the split moved) is sent the table again when its stats are read.
    desired: Mutex<Option<RouteTable>>,
}

impl ProxyRouter {
    /// The router of `service`, its admin token read from the stack's router Secret.
    pub async fn connect(
        cluster: &Cluster,
        stack: &Stack,
        service: &str,
    ) -> Result<ProxyRouter, DeployError> {
        let failed = |reason: String| DeployError::Router {
            service: service.to_owned(),
            reason,
        };
        let Some(spec) = stack.services.get(service) else {
            return Err(DeployError::UnknownService(service.to_owned()));
        };
        let Some(port) = spec.port else {
            return Err(DeployError::NoPort(service.to_owned()));
        };
        let secret_name = token_secret_name(&stack.name);
        let secret = cluster.get("Secret", &secret_name).await?;
        let token = secret
            .as_ref()
            .and_then(|s| s["data"][crate::router::TOKEN_KEY].as_str())
            .and_then(|encoded| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .ok()
            })
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                failed(format!(
                    "the Secret `{secret_name}` holds no `{}`; run `wharf cluster apply --router wharf --router-image IMAGE`",
                    crate::router::TOKEN_KEY
                ))
            })?;
        Ok(ProxyRouter {
            cluster: cluster.clone(),
            stack: stack.name.clone(),
            service: service.to_owned(),
            spec: spec.clone(),
            port,
            token: Token(token),
            desired: Mutex::new(None),
        })
    }

    fn failed(&self, reason: String) -> DeployError {
        DeployError::Router {
            service: self.service.clone(),
            reason,
        }
    }

    /// The router pods that can be asked, with their admin ports.
    async fn pods(&self) -> Result<Vec<(String, u16)>, DeployError> {
        let pods = self
            .cluster
            .pods(&pod_selector(&self.stack, &self.service))
            .await?;
        Ok(reachable_pods(&pods))
    }

    async fn call(
        &self,
        pod: &str,
        port: u16,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, DeployError> {
        let headers = [(TOKEN_HEADER, self.token.0.as_str())];
        let (status, answer) = self
            .cluster
            .pod_request(pod, port, method, path, &headers, body)
            .await?;
        if status != 200 {
            let text = String::from_utf8_lossy(&answer);
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| {
                    v["error"]["message"]
                        .as_str()
                        .or(v["message"].as_str())
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| text.chars().take(200).collect());
            return Err(self.failed(format!(
                "router pod {pod} answered {status} to {method} {path}: {message}"
            )));
        }
        Ok(answer)
    }

    async fn table_of(&self, pod: &str, port: u16) -> Result<RouteTable, DeployError> {
        let answer = self
            .call(pod, port, "GET", "/v1/routes", Vec::new())
            .await?;
        serde_json::from_slice(&answer)
            .map_err(|e| self.failed(format!("router pod {pod} sent an unreadable table: {e}")))
    }

    /// Where each version's Service is: its cluster IP and port, read from the API.
    async fn backends(&self, target: &[(VersionRef, u32)]) -> Result<Vec<Backend>, DeployError> {
        let mut backends = Vec::with_capacity(target.len());
        for (version, weight) in target {
            let service = self
                .cluster
                .get("Service", &version.workload)
                .await?
                .ok_or_else(|| {
                    self.failed(format!(
                        "version {}'s Service `{}` is not on the cluster",
                        version.version, version.workload
                    ))
                })?;
            let ip = service["spec"]["clusterIP"]
                .as_str()
                .filter(|ip| !ip.is_empty() && *ip != "None")
                .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
                .ok_or_else(|| {
                    self.failed(format!(
                        "the Service `{}` has no cluster IP yet",
                        version.workload
                    ))
                })?;
            let port = service["spec"]["ports"][0]["port"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| {
                    self.failed(format!("the Service `{}` has no port", version.workload))
                })?;
            backends.push(Backend {
                version: version.version.clone(),
                weight: u8::try_from(*weight).unwrap_or(100),
                address: std::net::SocketAddr::new(ip, port).to_string(),
            });
        }
        Ok(backends)
    }

    /// The table in the router's ConfigMap, if it holds one.
    async fn saved_table(&self) -> Result<Option<RouteTable>, DeployError> {
        Ok(self
            .cluster
            .get("ConfigMap", &router_name(&self.service))
            .await?
            .as_ref()
            .and_then(table_of_config_map))
    }

    /// Puts `target` in place on the ConfigMap and every router pod, where it is not already.
    async fn put_in_place(
        &self,
        target: &[(VersionRef, u32)],
    ) -> Result<Option<String>, DeployError> {
        let backends = self.backends(target).await?;
        let saved = self.saved_table().await?;
        let pods = self.pods().await?;
        let mut tables = Vec::with_capacity(pods.len());
        for (pod, port) in &pods {
            tables.push(self.table_of(pod, *port).await?);
        }
        let newest = tables
            .iter()
            .chain(saved.iter())
            .map(|t| t.revision)
            .max()
            .unwrap_or(0);
        let desired = table(&self.service, &self.spec, self.port, &backends, newest + 1);
        let mut sent = Vec::new();
        if saved
            .as_ref()
            .is_none_or(|saved| !same_route(saved, &desired, &self.service))
        {
            let labels = router_labels(&stack_labels(&self.stack), &self.service);
            let object = config_map(
                &self.service,
                Some(self.cluster.namespace().to_owned()),
                labels,
                &desired,
            );
            self.cluster.apply(&object).await?;
            sent.push(format!("ConfigMap {}", object.name));
        }
        let body = serde_json::to_vec(&desired).unwrap_or_default();
        for ((pod, port), table) in pods.iter().zip(&tables) {
            if !same_route(table, &desired, &self.service) {
                self.call(pod, *port, "PUT", "/v1/routes", body.clone())
                    .await?;
                sent.push(format!("pod {pod}"));
            }
        }
        let in_force = if sent.is_empty() {
            saved.unwrap_or(desired)
        } else {
            desired
        };
        *self.desired.lock().unwrap_or_else(|e| e.into_inner()) = Some(in_force);
        if sent.is_empty() {
            return Ok(None);
        }
        let weights: Vec<(String, u32)> = target
            .iter()
            .map(|(v, w)| (v.version.clone(), *w))
            .collect();
        Ok(Some(format!(
            "router {}: {} ({})",
            self.service,
            crate::deploy::describe(&weights),
            sent.join(", ")
        )))
    }

    /// After `wharf cluster apply`: the router's table filled in with the versions' Service
    /// addresses — the weights in force kept when the ConfigMap has a table naming versions,
    /// else all traffic to `version` (the manifest's) — and sent to every running router pod
    /// that does not have it.
    pub async fn seed(&self, version: &str) -> Result<Option<String>, DeployError> {
        let saved = self.saved_table().await?;
        let mut target: Vec<(VersionRef, u32)> = saved
            .map(|t| crate::router::weights(&t, &self.service))
            .unwrap_or_default()
            .into_iter()
            .map(|(name, weight)| {
                (
                    VersionRef {
                        workload: joined(&self.service, &name),
                        version: name,
                    },
                    u32::from(weight),
                )
            })
            .collect();
        if target.is_empty() {
            target.push((
                VersionRef {
                    version: version.to_owned(),
                    workload: joined(&self.service, version),
                },
                100,
            ));
        }
        self.put_in_place(&target).await
    }

    /// A pod whose table is older than the one in force is sent it (it started from the
    /// ConfigMap before the split last moved).
    async fn catch_up(&self, pod: &str, port: u16, revision: u64) -> Result<(), DeployError> {
        let desired = self
            .desired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(desired) = desired
            && revision < desired.revision
        {
            let table = self.table_of(pod, port).await?;
            if !same_route(&table, &desired, &self.service) {
                let body = serde_json::to_vec(&desired).unwrap_or_default();
                self.call(pod, port, "PUT", "/v1/routes", body).await?;
                tracing::info!(pod, revision = desired.revision, "router pod caught up");
            }
        }
        Ok(())
    }
}

/// One version's counters in a `/v1/stats` answer: answered requests (every status class),
/// the 5xx among them (the proxy's own 502/503/504 for unreachable upstreams included), and
/// its latency histogram.
fn version_totals(stats: &Value, service: &str, version: &str) -> Totals {
    let counters = &stats["services"][service]["versions"][version];
    let responses = &counters["responses"];
    let class = |name: &str| responses[name].as_f64().unwrap_or(0.0);
    let buckets: Vec<(u64, u64)> =
        serde_json::from_value(counters["latency_buckets"].clone()).unwrap_or_default();
    Totals {
        requests: class("2xx") + class("3xx") + class("4xx") + class("5xx"),
        errors: class("5xx"),
        latency_buckets: Some(buckets),
    }
}

impl Router for ProxyRouter {
    async fn set_weights(
        &self,
        _state: &ClusterRollout,
        target: &[(VersionRef, u32)],
    ) -> Result<Option<String>, DeployError> {
        self.put_in_place(target).await
    }

    /// The sums over the router pods of their counters since each started. A pod that
    /// restarted counts from zero again, which makes the sum drop: the runner then takes no
    /// window from that sample (a counter reset), as with Prometheus counters.
    async fn totals(&self, state: &ClusterRollout) -> Result<(Totals, Totals), String> {
        let pods = self.pods().await.map_err(|e| e.to_string())?;
        if pods.is_empty() {
            return Err(format!("no router pod of {} is running", self.service));
        }
        let mut stable = Totals::default();
        let mut new = Totals::default();
        for (pod, port) in &pods {
            let answer = self
                .call(pod, *port, "GET", "/v1/stats", Vec::new())
                .await
                .map_err(|e| e.to_string())?;
            let stats: Value = serde_json::from_slice(&answer)
                .map_err(|e| format!("router pod {pod} sent unreadable stats: {e}"))?;
            let revision = stats["revision"].as_u64().unwrap_or(0);
            self.catch_up(pod, *port, revision)
                .await
                .map_err(|e| e.to_string())?;
            for (sum, version) in [(&mut stable, &state.stable), (&mut new, &state.new)] {
                let totals = version_totals(&stats, &self.service, &version.version);
                sum.requests += totals.requests;
                sum.errors += totals.errors;
                let merged = wharf_proxy::merge_buckets(
                    sum.latency_buckets.as_deref().unwrap_or_default(),
                    totals.latency_buckets.as_deref().unwrap_or_default(),
                );
                sum.latency_buckets = Some(merged);
            }
        }
        Ok((stable, new))
    }
}
