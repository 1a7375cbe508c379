//! The API's OpenAPI 3.1 document, generated from the route handlers' `#[utoipa::path]`
//! annotations and `wharf-api`'s schemas, served at `GET /v1/openapi.json`.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use wharf_api::{
    ApiErrorBody, AssignRoleRequest, AuditEntry, AuditPage, AuditVerification, BackupHealth,
    BackupOverview, BackupRequest, BeginRotationRequest, ChangeConfigRequest, CheckpointAnswer,
    ConfigAnswer, ConfigChangeAnswer, ConfigRevision, ConfigRollbackRequest, CreateSilenceRequest,
    DatastoreBackups, DeclareIncidentRequest, DependencyStatus, DeployRequest, DownAnswer,
    DownRequest, DrillRequest, ErrorCode, ErrorDetail, FinishRotationRequest, HealthStatus,
    HealthTransition, HookResult, Incident, IncidentList, IncidentSeverity, IncidentStatus,
    IncidentStepRequest, IncidentUpdate, IncidentUpdateRequest, InclusionProofAnswer,
    InstancePhase, InstanceStatus, Job, JobCheck, JobKind, JobState, JobTrigger, JobsStarted,
    LedgerEntry, ManifestChanges, MatchOp, Matcher, NoteAnswer, NoteRequest, OpenPage,
    PreflightRecordAnswer, PreflightRecordRequest, PruneRequest, ReloadAnswer, ReloadOutcome,
    ReloadRequest, RestartAnswer, RestoreRequest, RestoreTarget, RevealAnswer, RevealRequest,
    RevisedConfig, RollbackSecretRequest, RolloutCommand, RolloutOutcome, RolloutPhase,
    RolloutStrategy, RolloutView, RotationBegun, RotationFinished, RotationResult,
    SecretChangeAnswer, SecretVersion, ServiceState, ServiceStatus, SetSecretRequest, Silence,
    SilenceList, Snapshot, SnapshotList, StackStatus, StatusReport, VerifierAnswer, VerifyRequest,
    VersionTraffic,
};
use wharf_api::{
    Approval, ApproveRequest, CancelRequest, ParamInfo, PlannedStep, Run, RunList, RunPlan,
    RunStarted, RunState, RunbookInfo, RunbookList, StartRunRequest, StepResult, StepState,
    Verdict,
};

/// Every route [`crate::app`] serves, as `(method, path)`; a test holds the document to it.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/health/ready"),
    ("get", "/health/detailed"),
    ("get", "/v1/openapi.json"),
    ("get", "/v1/status"),
    ("get", "/metrics"),
    ("post", "/v1/services/{name}/restart"),
    ("get", "/v1/services/{name}/health-history"),
    ("post", "/v1/down"),
    ("post", "/v1/reload"),
    ("post", "/v1/services/{name}/deploy"),
    ("get", "/v1/services/{name}/rollout"),
    ("post", "/v1/services/{name}/rollout/{command}"),
    ("post", "/v1/services/{name}/rollback"),
    ("get", "/v1/approvals"),
    ("get", "/v1/approvals/{id}"),
    ("post", "/v1/approvals/{id}/approve"),
    ("post", "/v1/approvals/{id}/reject"),
    ("get", "/v1/whoami"),
    ("get", "/v1/tokens"),
    ("post", "/v1/tokens"),
    ("post", "/v1/tokens/{name}/revoke"),
    ("get", "/v1/secrets"),
    ("get", "/v1/secrets/{name}"),
    ("put", "/v1/secrets/{name}"),
    ("post", "/v1/secrets/{name}/rollback"),
    ("post", "/v1/secrets/{name}/rotations"),
    ("post", "/v1/secrets/{name}/rotations/{version}"),
    ("post", "/v1/secrets/{name}/reveals"),
    ("get", "/v1/config/{service}"),
    ("put", "/v1/config/{service}"),
    ("post", "/v1/config-rollback"),
    ("get", "/v1/audit/verifier"),
    ("get", "/v1/audit/entries"),
    ("get", "/v1/audit/entries/{seq}/proof"),
    ("get", "/v1/audit/verify"),
    ("post", "/v1/audit/checkpoints"),
    ("post", "/v1/audit/notes"),
    ("post", "/v1/preflight"),
    ("post", "/v1/gates/checks"),
    ("post", "/v1/promotions"),
    ("get", "/v1/backups"),
    ("post", "/v1/backups"),
    ("get", "/v1/backups/jobs/{id}"),
    ("get", "/v1/backups/snapshots"),
    ("post", "/v1/backups/prune"),
    ("post", "/v1/backups/verify"),
    ("post", "/v1/drills"),
    ("post", "/v1/restores"),
    ("get", "/v1/runbooks"),
    ("post", "/v1/runbooks/{name}/runs"),
    ("get", "/v1/runbooks/runs"),
    ("get", "/v1/runbooks/runs/{id}"),
    ("post", "/v1/runbooks/runs/{id}/resume"),
    ("post", "/v1/runbooks/runs/{id}/approve"),
    ("post", "/v1/runbooks/runs/{id}/cancel"),
    ("get", "/v1/silences"),
    ("post", "/v1/silences"),
    ("post", "/v1/silences/{id}/expire"),
    ("get", "/v1/incidents"),
    ("post", "/v1/incidents"),
    ("get", "/v1/incidents/{id}"),
    ("get", "/v1/incidents/{id}/timeline"),
    ("get", "/v1/incidents/{id}/postmortem"),
    ("post", "/v1/incidents/{id}/updates"),
    ("post", "/v1/incidents/{id}/ack"),
    ("post", "/v1/incidents/{id}/roles"),
    ("post", "/v1/incidents/{id}/resolve"),
];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "wharf control plane API",
        description = "Drive a running wharf stack: status, health, restarts, deploys and rollouts, reloads; change its stored state: secrets (values go in, never come out), config overrides, audit notes, preflight records, release gate verdicts, promotion bundles from another environment; back up, drill and restore the datastores; approve or reject deploys and live restores; manage API tokens; silence pages; run incidents; run the manifest's runbooks (plan, start, approve, resume, cancel). Every route but `/health` and `/v1/openapi.json` names its caller: on the unix socket the OS user (peer credentials, role admin) unless a person's token is presented; on TCP always `Authorization: Bearer <token>` — a person's token (`wharf token create`, with a role: viewer, operator, approver or admin) or the break-glass `WHARF_API_TOKEN`. A role that does not allow a route is answered 403. Errors are `{\"error\": {\"code\", \"message\"}}`."
    ),
    paths(
        crate::health_live,
        crate::health_ready,
        crate::health_detailed,
        crate::openapi_json,
        crate::status,
        crate::metrics::metrics_route,
        crate::restart,
        crate::down,
        crate::reload,
        crate::deploy::deploy,
        crate::deploy::rollout,
        crate::deploy::rollout_command,
        crate::deploy::rollback,
        crate::deploy::list_requests,
        crate::deploy::request,
        crate::deploy::approve,
        crate::deploy::reject,
        crate::identity_routes::whoami,
        crate::identity_routes::list_tokens,
        crate::identity_routes::create_token,
        crate::identity_routes::revoke_token,
        crate::state_routes::list_secrets,
        crate::state_routes::secret_history,
        crate::state_routes::set_secret,
        crate::state_routes::rollback_secret,
        crate::state_routes::begin_rotation,
        crate::state_routes::finish_rotation,
        crate::state_routes::record_reveal,
        crate::state_routes::get_config,
        crate::state_routes::change_config,
        crate::state_routes::rollback_config,
        crate::state_routes::add_note,
        crate::state_routes::audit_verifier,
        crate::audit_routes::entries,
        crate::audit_routes::health_history,
        crate::audit_routes::proof,
        crate::audit_routes::verify,
        crate::state_routes::audit_checkpoint,
        crate::state_routes::record_preflight,
        crate::state_routes::record_gate_check,
        crate::state_routes::import_promotion,
        crate::backups::overview,
        crate::backups::backup,
        crate::backups::job,
        crate::backups::snapshots,
        crate::backups::prune,
        crate::backups::verify,
        crate::backups::drill,
        crate::backups::restore,
        crate::oncall::list_silences,
        crate::oncall::create_silence,
        crate::oncall::expire_silence,
        crate::oncall::list_incidents,
        crate::oncall::declare_incident,
        crate::oncall::incident,
        crate::oncall::timeline,
        crate::oncall::postmortem,
        crate::oncall::update,
        crate::oncall::ack,
        crate::oncall::assign,
        crate::oncall::resolve,
        crate::runbooks::list,
        crate::runbooks::start,
        crate::runbooks::runs,
        crate::runbooks::run,
        crate::runbooks::resume,
        crate::runbooks::approve,
        crate::runbooks::cancel,
    ),
    components(schemas(
        AuditEntry, AuditPage, AuditVerification, InclusionProofAnswer, HealthTransition,
        ApiErrorBody, ErrorDetail, ErrorCode, StatusReport, OpenPage, StackStatus, ServiceStatus,
        ServiceState, HealthStatus, DependencyStatus, InstanceStatus, InstancePhase,
        DeployRequest, RolloutCommand, RolloutView, RolloutStrategy, RolloutPhase, RolloutOutcome,
        VersionTraffic, ReloadRequest, ReloadAnswer,
        ManifestChanges, RestartAnswer, DownRequest, DownAnswer,
        SecretVersion, SetSecretRequest, SecretChangeAnswer, ReloadOutcome, RollbackSecretRequest,
        BeginRotationRequest, RotationBegun, FinishRotationRequest, HookResult, RotationFinished,
        RotationResult, RevealRequest, RevealAnswer,
        ConfigAnswer, ConfigRevision, ChangeConfigRequest, ConfigChangeAnswer, RevisedConfig,
        ConfigRollbackRequest, NoteRequest, NoteAnswer, LedgerEntry, VerifierAnswer, CheckpointAnswer,
        PreflightRecordRequest, PreflightRecordAnswer,
        wharf_api::GateCheckRecordRequest, wharf_api::GateCheckRecordAnswer,
        wharf_api::PromotionImportRequest, wharf_api::PromotionImportAnswer,
        wharf_api::GateConditionRecord, wharf_api::GateInputRecord,
        BackupOverview, DatastoreBackups, BackupHealth, Job, JobKind, JobState, JobTrigger, JobCheck,
        JobsStarted, BackupRequest, DrillRequest, RestoreRequest, RestoreTarget, PruneRequest,
        VerifyRequest, SnapshotList, Snapshot,
        Silence, SilenceList, CreateSilenceRequest, Matcher, MatchOp,
        Incident, IncidentList, IncidentSeverity, IncidentStatus, IncidentUpdate,
        DeclareIncidentRequest, IncidentUpdateRequest, IncidentStepRequest, AssignRoleRequest,
        RunbookList, RunbookInfo, ParamInfo, StartRunRequest, RunStarted, RunPlan, PlannedStep,
        Verdict, Run, RunState, StepResult, StepState, Approval, RunList, ApproveRequest,
        CancelRequest,
        wharf_api::PendingDeploy, wharf_api::PendingDeployList, wharf_api::DeployApproval,
        wharf_api::DeployRequestState, wharf_api::DecideDeployRequest,
        wharf_api::Caller, wharf_api::Role, wharf_api::CreateTokenRequest, wharf_api::CreatedToken,
        wharf_api::TokenInfo, wharf_api::TokenList,
    )),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

/// Declares the bearer scheme the TCP listener requires.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        // Every route that names its caller may answer 403 for a role that does not allow it;
        // said once here rather than on each handler, so no route can forget it.
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let forbidden = ResponseBuilder::new()
            .description("The caller's role does not allow this route (`forbidden`)")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ApiErrorBody")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                item.get.as_mut(),
                item.post.as_mut(),
                item.put.as_mut(),
                item.delete.as_mut(),
                item.patch.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                let named = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                if named {
                    operation
                        .responses
                        .responses
                        .entry("403".to_owned())
                        .or_insert_with(|| forbidden.clone().into());
                }
            }
        }
    }
}

/// The OpenAPI 3.1 document of the API `app` serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::body::Body;
    use axum::http::{Method, Request};
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    use wharf_control::Handle;

    use super::*;

    fn documented() -> BTreeSet<(String, String)> {
        let doc = serde_json::to_value(openapi()).unwrap();
        let mut routes = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                    routes.insert((method.clone(), path.clone()));
                }
            }
        }
        routes
    }

    #[test]
    fn the_document_lists_every_route_and_no_other() {
        let served: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        assert_eq!(documented(), served);
    }

    #[test]
    fn the_document_round_trips_as_openapi_3_1() {
        let text = serde_json::to_string(&openapi()).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["openapi"], "3.1.0");
        assert_eq!(serde_json::to_string(&value).unwrap(), text);
    }

    /// Each listed route reaches a handler (a disconnected handle answers `stopping` or the
    /// handler refuses the request), never the router's `not_found` / `method_not_allowed`.
    /// A secret's value goes in, never out: the schema says so, and no answer schema has a
    /// `value` property.
    #[test]
    fn the_secret_value_is_write_only() {
        let doc = serde_json::to_value(openapi()).unwrap();
        let schemas = &doc["components"]["schemas"];
        for request in ["SetSecretRequest", "BeginRotationRequest"] {
            assert_eq!(
                schemas[request]["properties"]["value"]["writeOnly"], true,
                "{request}"
            );
        }
        for answer in [
            "SecretVersion",
            "SecretChangeAnswer",
            "RotationBegun",
            "RotationFinished",
            "RevealAnswer",
        ] {
            assert!(schemas[answer].is_object(), "{answer}");
            assert!(
                schemas[answer]["properties"].get("value").is_none(),
                "{answer}"
            );
        }
    }

    #[tokio::test]
    async fn every_listed_route_is_served() {
        for (method, path) in ROUTES {
            let uri = path
                .replace("{name}", "web")
                .replace("{service}", "web")
                .replace("{command}", "pause")
                .replace("{version}", "1");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let request = Request::builder()
                .method(method)
                .uri(&uri)
                .body(Body::empty())
                .unwrap();
            let response = crate::app(
                Handle::disconnected(),
                crate::Access::socket(Default::default()),
            )
            .oneshot(request)
            .await
            .unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            if let Ok(error) = serde_json::from_slice::<ApiErrorBody>(&body) {
                assert!(
                    !matches!(
                        error.error.code,
                        ErrorCode::NotFound | ErrorCode::MethodNotAllowed
                    ),
                    "{uri}: {status} {error:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn unknown_routes_and_malformed_bodies_get_the_json_error_body() {
        let cases = [
            ("GET", "/v1/nope", "", 404, ErrorCode::NotFound),
            ("DELETE", "/v1/status", "", 405, ErrorCode::MethodNotAllowed),
            ("POST", "/v1/down", "{", 400, ErrorCode::InvalidRequest),
            ("POST", "/v1/down", "[]", 400, ErrorCode::InvalidRequest),
            (
                "POST",
                "/v1/reload",
                "{\"manifest\": 3}",
                400,
                ErrorCode::InvalidRequest,
            ),
            (
                "POST",
                "/v1/services/web/deploy",
                "nope",
                400,
                ErrorCode::InvalidRequest,
            ),
            (
                "POST",
                "/v1/services/%FF/restart",
                "",
                400,
                ErrorCode::InvalidRequest,
            ),
            ("GET", "/v1/status", "", 503, ErrorCode::Stopping),
        ];
        for (method, uri, body, status, code) in cases {
            let request = Request::builder()
                .method(method)
                .uri(uri)
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap();
            let response = crate::app(
                Handle::disconnected(),
                crate::Access::socket(Default::default()),
            )
            .oneshot(request)
            .await
            .unwrap();
            assert_eq!(response.status().as_u16(), status, "{method} {uri}");
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            let body: ApiErrorBody = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(body.error.code, code, "{method} {uri}");
        }
    }

    #[test]
    fn every_route_that_names_its_caller_documents_401_and_403() {
        let doc = serde_json::to_value(openapi()).unwrap();
        for (method, path) in ROUTES {
            let operation = &doc["paths"][path][method];
            let public = matches!(*path, "/health" | "/v1/openapi.json");
            let responses = operation["responses"].as_object().unwrap();
            assert_eq!(
                responses.contains_key("403"),
                !public,
                "{method} {path}: 403 documented iff the caller is named"
            );
            if !public {
                assert!(responses.contains_key("401"), "{method} {path}: no 401");
            }
        }
    }

    #[tokio::test]
    async fn the_document_is_public_on_tcp_but_status_is_not() {
        let app = crate::app(
            Handle::disconnected(),
            crate::Access::tcp(Default::default(), Some("a-token-of-16-chars".to_owned())),
        );
        let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
        let doc = app.clone().oneshot(get("/v1/openapi.json")).await.unwrap();
        assert_eq!(doc.status().as_u16(), 200);
        let status = app.oneshot(get("/v1/status")).await.unwrap();
        assert_eq!(status.status().as_u16(), 401);
    }
}
