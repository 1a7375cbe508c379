//! Gateway API `HTTPRoute`s (gateway.networking.k8s.io/v1): the traffic split of a service
//! across its versions as backend weights. Typed here because k8s-openapi carries only the
//! core API; the fields are those of the standard channel.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::render::GatewayRef;

pub const API_VERSION: &str = "gateway.networking.k8s.io/v1";
/// The Gateway API's bound on a backend's weight.
pub const MAX_WEIGHT: u32 = 1_000_000;
/// The Gateway API's bound on a rule's backends.
pub const MAX_BACKENDS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    pub api_version: String,
    pub kind: String,
    pub metadata: RouteMeta,
    pub spec: HttpRouteSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteMeta {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    pub parent_refs: Vec<ParentRef>,
    pub rules: Vec<RouteRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    pub group: String,
    pub kind: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The Gateway listener's port: each wharf service is reached on its own public port.
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteRule {
    pub backend_refs: Vec<BackendRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendRef {
    pub group: String,
    pub kind: String,
    pub name: String,
    pub port: u16,
    pub weight: u32,
}

/// The route of one service: one rule whose backends are its versions' Services, weighted
/// `weights` (percent; kept as given — Gateway weights are relative, and percent reads best in
/// `kubectl get -o yaml`).
pub fn http_route(
    metadata: RouteMeta,
    gateway: &GatewayRef,
    port: u16,
    weights: &[(String, u32)],
) -> HttpRoute {
    HttpRoute {
        api_version: API_VERSION.to_owned(),
        kind: "HTTPRoute".to_owned(),
        metadata,
        spec: HttpRouteSpec {
            parent_refs: vec![ParentRef {
                group: "gateway.networking.k8s.io".to_owned(),
                kind: "Gateway".to_owned(),
                name: gateway.name.clone(),
                namespace: gateway.namespace.clone(),
                port,
            }],
            rules: vec![RouteRule {
                backend_refs: weights
                    .iter()
                    .take(MAX_BACKENDS)
                    .map(|(service, weight)| BackendRef {
                        group: String::new(),
                        kind: "Service".to_owned(),
                        name: service.clone(),
                        port,
                        weight: (*weight).min(MAX_WEIGHT),
                    })
                    .collect(),
            }],
        },
    }
}
