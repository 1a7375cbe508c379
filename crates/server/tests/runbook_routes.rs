//! The runbook routes against a real control plane (no services, one runbook of a command and
//! an approval) through `app(handle).oneshot(…)`: the documented codes for a wrong runbook,
//! parameter, field, run or state; a dry run answers its plan and stores nothing; a run waits
//! at its approval and ends once approved, naming who approved.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use wharf_control::{Config, ControlPlane, Handle, Journal, StackPlan};
use wharf_manifest::EnvironmentChoice;
use wharf_runtime::{ProcessDriver, RestartLimits};

const MANIFEST: &str = r#"
name: routes
services:
  api:
    command: ["./api"]
runbooks:
  fix:
    params:
      n: {type: int, default: 2}
    steps:
      - exec: {command: "echo n=${param:n}", timeout: 10s}
      - approve: {prompt: "go on?"}
"#;

async fn on_stack<F: std::future::Future<Output = ()>>(test: impl FnOnce(Handle) -> F) {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join(".wharf");
    std::fs::create_dir_all(&state_dir).unwrap();
    let loaded = wharf_manifest::load(MANIFEST, EnvironmentChoice::Base, &|_: &str| None);
    let stack = loaded.stack.expect("the manifest is valid");
    let plan = StackPlan {
        name: "routes".to_owned(),
        services: Vec::new(),
        secrets: Vec::new(),
        alerts: Vec::new(),
        environment: None,
        smoke: Vec::new(),
        backup_repository: None,
        require: None,
        runbooks: stack.runbooks.clone(),
    };
    let journal = Journal::open(&state_dir, "wharf-control@test".to_owned()).unwrap();
    let config = Config {
        state_dir: state_dir.clone(),
        workdir: dir.path().to_owned(),
        driver: Arc::new(ProcessDriver::new("/bin/false".into(), Vec::new())),
        stop_grace: Duration::from_secs(1),
        limits: RestartLimits::default(),
        log_max_bytes: 1 << 20,
        log_keep: 1,
        proxy_binary: None,
        log_json: false,
        reload_plan: None,
    };
    let (control, handle) = ControlPlane::new(plan, config, journal);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let test = async move {
        test(handle).await;
        let _ = stop.send(());
    };
    let control = control.run(async {
        let _ = stopped.await;
    });
    tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(control, test)
    })
    .await
    .expect("the test and the control plane end");
}

async fn call(handle: &Handle, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        // A client's own claim of who it is is not believed: the identity layer names the caller.
        .header("x-wharf-caller", "tester")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let response = wharf_server::app(
        handle.clone(),
        wharf_server::Access::socket(Default::default()),
    )
    .oneshot(request)
    .await
    .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Polls run 1 until it is in `state` (within 20 s).
async fn until_state(handle: &Handle, state: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, run) = call(handle, "GET", "/v1/runbooks/runs/1", "").await;
        if run["state"] == state {
            return run;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "run 1 never became {state}: {run}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn runbook_routes_answer_as_documented() {
    on_stack(|handle| async move {
        let (status, list) = call(&handle, "GET", "/v1/runbooks", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["runbooks"][0]["name"], "fix");
        assert_eq!(
            list["runbooks"][0]["steps"][0],
            "exec echo 'n=${param:n}' (timeout 10s)"
        );

        let refusals = [
            (
                "/v1/runbooks/nope/runs",
                "{}",
                StatusCode::NOT_FOUND,
                "unknown_runbook",
            ),
            (
                "/v1/runbooks/fix/runs",
                r#"{"params": {"n": "two"}}"#,
                StatusCode::BAD_REQUEST,
                "invalid_request",
            ),
            (
                "/v1/runbooks/fix/runs",
                r#"{"dryrun": true}"#,
                StatusCode::BAD_REQUEST,
                "invalid_request",
            ),
            (
                "/v1/runbooks/runs/1/resume",
                "",
                StatusCode::NOT_FOUND,
                "unknown_runbook",
            ),
            (
                "/v1/runbooks/runs/x/approve",
                r#"{"reason": "r"}"#,
                StatusCode::BAD_REQUEST,
                "invalid_request",
            ),
        ];
        for (uri, body, expected, code) in refusals {
            let (status, answer) = call(&handle, "POST", uri, body).await;
            assert_eq!(status, expected, "{uri} {body}: {answer}");
            assert_eq!(answer["error"]["code"], code, "{uri} {body}: {answer}");
        }

        let (status, dry) = call(
            &handle,
            "POST",
            "/v1/runbooks/fix/runs",
            r#"{"dry_run": true}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{dry}");
        assert_eq!(
            dry["plan"]["steps"][0]["detail"],
            "exec echo n=2 (timeout 10s)"
        );
        assert!(dry.get("run").is_none(), "{dry}");
        let (_, runs) = call(&handle, "GET", "/v1/runbooks/runs", "").await;
        assert_eq!(
            runs["runs"].as_array().unwrap().len(),
            0,
            "a dry run stores nothing"
        );

        let (status, started) = call(&handle, "POST", "/v1/runbooks/fix/runs", "").await;
        assert_eq!(status, StatusCode::ACCEPTED, "{started}");
        assert_eq!(started["run"]["actor"], "api-socket");
        let waiting = until_state(&handle, "waiting_approval").await;
        assert_eq!(waiting["steps"][0]["output"], "n=2\n");
        let (status, answer) = call(&handle, "POST", "/v1/runbooks/runs/1/resume", "").await;
        assert_eq!(status, StatusCode::CONFLICT, "{answer}");
        let (status, answer) = call(
            &handle,
            "POST",
            "/v1/runbooks/runs/1/approve",
            r#"{"reason": "looks fine"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        let done = until_state(&handle, "succeeded").await;
        assert_eq!(done["steps"][1]["approval"]["actor"], "api-socket");
        assert_eq!(done["steps"][1]["approval"]["reason"], "looks fine");
        let (status, answer) = call(&handle, "POST", "/v1/runbooks/runs/1/cancel", "").await;
        assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    })
    .await;
}
