//! wharf's own health endpoints, in the IETF "Health Check Response Format for HTTP APIs"
//! (`application/health+json`: status pass / warn / fail and a `checks` object).
//!
//! `/health` says the process runs; `/health/ready` says whether the stack serves, naming the
//! root causes when it does not; `/health/detailed` lists every service, instance and
//! dependency with status, latency and last error.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use wharf_api::{HealthStatus, ServiceStatus, StatusReport};

const HEALTH_JSON: &str = "application/health+json";

pub fn respond(status: StatusCode, body: Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(HEALTH_JSON));
    response
}

/// Whether a service in this state lets the stack count as ready (it serves, or an operator
/// stopped it).
fn counts_as_ready(service: &ServiceStatus) -> bool {
    service.state.counts_as_ready()
}

/// 200 `{"status":"ready"}`, or 503 with one failure per root cause (a service down on its
/// own, with the dependents it blocks) and per service still starting.
pub fn ready(report: &StatusReport) -> Response {
    let mut failures: Vec<Value> = Vec::new();
    for root in report.root_causes() {
        let blocks: Vec<&str> = report
            .services
            .iter()
            .filter(|s| s.blocked_by.as_deref() == Some(&root.name))
            .map(|s| s.name.as_str())
            .collect();
        failures.push(json!({"service": root.name, "state": root.state, "reason": root.reason, "blocks": blocks}));
    }
    for service in report
        .services
        .iter()
        .filter(|s| !counts_as_ready(s) && s.blocked_by.is_none())
    {
        if !report.root_causes().iter().any(|r| r.name == service.name) {
            failures.push(json!({"service": service.name, "state": service.state, "reason": service.reason, "blocks": []}));
        }
    }
    if failures.is_empty() {
        respond(
            StatusCode::OK,
            json!({"status": "ready", "stack": report.stack}),
        )
    } else {
        respond(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not ready", "stack": report.stack, "failures": failures}),
        )
    }
}

/// Every component with its status, latency and last error.
pub fn detailed(report: &StatusReport) -> Response {
    let mut checks = Map::new();
    for service in &report.services {
        checks.insert(
            format!("{}:state", service.name),
            json!([{
                "componentId": service.name,
                "componentType": "service",
                "status": service.health,
                "observedValue": service.state,
                "output": service.reason,
                "affectedBy": service.blocked_by,
            }]),
        );
        if let Some(latency) = service.probe_latency_ms {
            checks.insert(
                format!("{}:responseTime", service.name),
                json!([{"componentId": service.name, "componentType": "datastore", "status": service.health,
                        "observedValue": latency, "observedUnit": "ms", "output": service.reason}]),
            );
        }
        let instances: Vec<Value> = service
            .instances
            .iter()
            .map(|i| {
                let status = i.health();
                json!({
                    "componentId": format!("{}/{}", service.name, i.ordinal),
                    "componentType": "instance",
                    "status": status,
                    "observedValue": i.probe_latency_ms,
                    "observedUnit": "ms",
                    "time": i.started_at,
                    "output": i.probe_reason.clone().or_else(|| i.error.clone()).or_else(|| i.last_exit.clone()),
                    "live": i.live,
                    "ready": i.ready,
                    "pid": i.pid,
                    "port": i.port,
                })
            })
            .collect();
        if !instances.is_empty() {
            checks.insert(format!("{}:ready", service.name), Value::Array(instances));
        }
        if let Some(backups) = &service.backups {
            let status = if backups.health.is_problem() {
                HealthStatus::Warn
            } else {
                HealthStatus::Pass
            };
            checks.insert(
                format!("{}:backup", service.name),
                json!([{
                    "componentId": service.name,
                    "componentType": "backup",
                    "status": status,
                    "observedValue": backups.health,
                    "time": backups.last_success,
                    "output": backups.reason,
                }]),
            );
        }
        let dependencies: Vec<Value> = service
            .dependencies
            .iter()
            .map(|dep| {
                let target = report.services.iter().find(|s| s.name == dep.name);
                let up = target.is_some_and(|t| t.state.is_serving());
                let status = match (up, dep.critical) {
                    (true, _) => HealthStatus::Pass,
                    (false, true) => HealthStatus::Fail,
                    (false, false) => HealthStatus::Warn,
                };
                json!({
                    "componentId": dep.name,
                    "componentType": "dependency",
                    "status": status,
                    "critical": dep.critical,
                    "output": target.and_then(|t| t.reason.clone()),
                })
            })
            .collect();
        if !dependencies.is_empty() {
            checks.insert(
                format!("{}:dependencies", service.name),
                Value::Array(dependencies),
            );
        }
    }
    let status = report.status.health();
    let code = if status == HealthStatus::Fail {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    respond(
        code,
        json!({
            "status": status,
            "serviceId": report.stack,
            "description": format!("wharf stack {} ({})", report.stack, report.status),
            "notes": [format!("control plane pid {}", report.control_pid)],
            "checks": checks,
        }),
    )
}
