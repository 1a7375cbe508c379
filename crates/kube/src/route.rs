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

/// Why a route cannot be moved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("HTTPRoute {route} has no rules; wharf's rule (the first) is missing")]
    NoRule { route: String },
    #[error("HTTPRoute {route}: {count} backends exceed the Gateway API's {MAX_BACKENDS}")]
    TooManyBackends { route: String, count: usize },
}

/// The backends of wharf's rule (the route's first) with their weights. Rules after it are not
/// wharf's and never touched.
pub fn backend_weights(route: &serde_json::Value) -> Vec<(String, u32)> {
    route["spec"]["rules"][0]["backendRefs"]
        .as_array()
        .map(|refs| {
            refs.iter()
                .map(|r| {
                    (
                        r["name"].as_str().unwrap_or("").to_owned(),
                        r["weight"]
                            .as_u64()
                            .map_or(1, |w| w.min(u64::from(MAX_WEIGHT)))
                            as u32,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The one JSON patch that gives wharf's rule exactly the `target` backends and weights (in
/// that order; a backend not named is removed), or `None` when the route already has them.
///
/// The patch opens with a `test` of the rule's current backends, so it applies only to the
/// route it was computed from: a route changed in between fails the patch instead of being
/// written over. Only `/spec/rules/0/backendRefs` is replaced — other rules (header-matched
/// previews a person added, another tool's) and every other field stay as they are.
pub fn weights_patch(
    route_name: &str,
    route: &serde_json::Value,
    target: &[(String, u32)],
    port: u16,
) -> Result<Option<json_patch::Patch>, RouteError> {
    let Some(current) = route["spec"]["rules"][0].get("backendRefs").cloned() else {
        return Err(RouteError::NoRule {
            route: route_name.to_owned(),
        });
    };
    if target.len() > MAX_BACKENDS {
        return Err(RouteError::TooManyBackends {
            route: route_name.to_owned(),
            count: target.len(),
        });
    }
    if backend_weights(route) == target {
        return Ok(None);
    }
    let refs: Vec<BackendRef> = target
        .iter()
        .map(|(name, weight)| BackendRef {
            group: String::new(),
            kind: "Service".to_owned(),
            name: name.clone(),
            port,
            weight: (*weight).min(MAX_WEIGHT),
        })
        .collect();
    let ops = serde_json::json!([
        {"op": "test", "path": "/spec/rules/0/backendRefs", "value": current},
        {"op": "replace", "path": "/spec/rules/0/backendRefs", "value": refs},
    ]);
    Ok(Some(
        serde_json::from_value(ops).expect("a well-formed JSON patch"),
    ))
}
