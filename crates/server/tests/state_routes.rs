//! The state routes against a real control plane (no services, one declared secret) and its
//! store in a temp dir, through `app(handle).oneshot(…)`: a secret's value goes in and never
//! comes out of any answer.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use wharf_api::{
    ReloadOutcome, RevealAnswer, RotationBegun, RotationFinished, RotationResult,
    SecretChangeAnswer, SecretVersion,
};
use wharf_control::{Config, ControlPlane, Handle, Journal, StackPlan};
use wharf_manifest::model::SecretPolicy;
use wharf_runtime::{ProcessDriver, RestartLimits};

/// A value no answer may contain.
const VALUE: &str = "correct-horse-battery-staple-7f3a";

/// Runs `test` against a control plane with no services and `api_key` declared, in this
/// task (its loop is not `Send`), and stops it once `test` is done.
async fn on_stack<F: std::future::Future<Output = ()>>(test: impl FnOnce(Api) -> F) {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join(".wharf");
    std::fs::create_dir_all(&state_dir).unwrap();
    let plan = StackPlan {
        name: "routes".to_owned(),
        services: Vec::new(),
        secrets: vec![("api_key".to_owned(), SecretPolicy::default())],
        alerts: Vec::new(),
        environment: None,
        smoke: Vec::new(),
        backup_repository: None,
        require: None,
        runbooks: Default::default(),
    };
    let journal = Journal::open(&state_dir, "wharf-control@test".to_owned()).unwrap();
    let config = Config {
        state_dir: state_dir.clone(),
        workdir: dir.path().to_owned(),
        // No service: nothing is ever started through it.
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
        test(Api { handle, state_dir }).await;
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

/// The API over a control plane's handle, as the unix socket serves it.
struct Api {
    handle: Handle,
    /// The control plane's state directory, for tests that break something in it.
    state_dir: std::path::PathBuf,
}

impl Api {
    async fn call(&self, method: &str, uri: &str, body: &str) -> (StatusCode, String) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            // A client's own claim of who it is is not believed: the identity layer names the caller.
            .header("x-wharf-caller", "tester")
            .body(Body::from(body.to_owned()))
            .unwrap();
        let response = wharf_server::app(
            self.handle.clone(),
            wharf_server::Access::socket(Default::default()),
        )
        .oneshot(request)
        .await
        .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }
}

#[tokio::test]
async fn a_put_secret_answer_does_not_contain_the_value() {
    on_stack(|stack| async move {
        let body = serde_json::json!({"value": VALUE, "reason": "first"}).to_string();
        let (status, text) = stack.call("PUT", "/v1/secrets/api_key", &body).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert!(
            !text.contains(VALUE),
            "the answer carries the value: {text}"
        );
        let answer: SecretChangeAnswer = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (answer.secret.name.as_str(), answer.secret.version),
            ("api_key", 1)
        );
        assert_eq!(answer.secret.origin, "set");
        assert_eq!(answer.secret.actor, "api-socket");
        assert!(
            matches!(answer.reload, ReloadOutcome::Applied(_)),
            "{answer:?}"
        );

        // Neither do the answers that read it back.
        for (method, uri, body) in [
            ("GET", "/v1/secrets", ""),
            ("GET", "/v1/secrets/api_key", ""),
            ("POST", "/v1/secrets/api_key/reveals", ""),
            ("POST", "/v1/secrets/api_key/rollback", r#"{"to": 1}"#),
        ] {
            let (status, text) = stack.call(method, uri, body).await;
            assert!(status.is_success(), "{method} {uri}: {status} {text}");
            assert!(
                !text.contains(VALUE),
                "{method} {uri} carries the value: {text}"
            );
        }
        let (_, text) = stack.call("GET", "/v1/secrets/api_key", "").await;
        let versions: Vec<SecretVersion> = serde_json::from_str(&text).unwrap();
        assert_eq!(versions.len(), 2, "{versions:?}");
        let (_, text) = stack
            .call("POST", "/v1/secrets/api_key/reveals", r#"{"version": 1}"#)
            .await;
        let revealed: RevealAnswer = serde_json::from_str(&text).unwrap();
        assert_eq!(revealed.secret.fingerprint, answer.secret.fingerprint);
    })
    .await;
}

/// Begin stores the caller's value (never answered back), finish records the hook's outcome;
/// no hook runs here, and the old one-step route and `PUT`'s `rotated` flag are gone.
#[tokio::test]
async fn a_rotation_is_begun_and_finished_by_its_caller_and_a_failed_one_puts_the_value_back() {
    on_stack(|stack| async move {
        let body = serde_json::json!({"value": "first-value-0a1b"}).to_string();
        let (status, _) = stack.call("PUT", "/v1/secrets/api_key", &body).await;
        assert_eq!(status, StatusCode::OK);
        let begin =
            |reason: &str| serde_json::json!({"value": VALUE, "reason": reason}).to_string();
        let (status, text) = stack
            .call("POST", "/v1/secrets/api_key/rotations", &begin("drill"))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{text}");
        assert!(
            !text.contains(VALUE),
            "the answer carries the value: {text}"
        );
        let begun: RotationBegun = serde_json::from_str(&text).unwrap();
        assert_eq!((begun.secret.version, begun.previous), (2, Some(1)));
        assert_eq!(begun.secret.origin, "rotate");

        let failed = r#"{"outcome": "failed", "reason": "exit status: 3"}"#;
        let (status, text) = stack
            .call("POST", "/v1/secrets/api_key/rotations/2", failed)
            .await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let finished: RotationFinished = serde_json::from_str(&text).unwrap();
        assert_eq!(finished.result, RotationResult::Restored);
        assert_eq!(finished.secret.version, 3);
        assert_eq!(finished.secret.origin, "rollback:1");
        assert!(matches!(finished.reload, Some(ReloadOutcome::Applied(_))));
        // Finished once only.
        let (status, text) = stack
            .call("POST", "/v1/secrets/api_key/rotations/2", failed)
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{text}");

        let (_, text) = stack
            .call("POST", "/v1/secrets/api_key/rotations", &begin("again"))
            .await;
        let begun: RotationBegun = serde_json::from_str(&text).unwrap();
        let uri = format!("/v1/secrets/api_key/rotations/{}", begun.secret.version);
        let (status, text) = stack
            .call("POST", &uri, r#"{"outcome": "succeeded"}"#)
            .await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let finished: RotationFinished = serde_json::from_str(&text).unwrap();
        assert_eq!(finished.result, RotationResult::Rotated);
        assert_eq!(finished.secret.version, begun.secret.version);

        let cases = [
            ("POST", "/v1/secrets/other/rotations", begin("r"), 400),
            (
                "POST",
                "/v1/secrets/api_key/rotations",
                r#"{"value": ""}"#.to_owned(),
                400,
            ),
            (
                "POST",
                "/v1/secrets/api_key/rotations/9",
                r#"{"outcome": "succeeded"}"#.to_owned(),
                404,
            ),
            (
                "POST",
                "/v1/secrets/api_key/rotations/x",
                r#"{"outcome": "succeeded"}"#.to_owned(),
                400,
            ),
            (
                "POST",
                "/v1/secrets/api_key/rotations/1",
                r#"{"outcome": "maybe"}"#.to_owned(),
                400,
            ),
            ("POST", "/v1/secrets/api_key/rotate", String::new(), 404),
            (
                "PUT",
                "/v1/secrets/api_key",
                r#"{"value": "x", "rotated": true}"#.to_owned(),
                400,
            ),
        ];
        for (method, uri, body, expected) in cases {
            let (status, text) = stack.call(method, uri, &body).await;
            assert_eq!(status.as_u16(), expected, "{method} {uri} {body}: {text}");
        }
    })
    .await;
}

#[tokio::test]
async fn state_routes_refuse_what_they_cannot_take_in_the_error_body() {
    on_stack(|stack| async move {
        let cases = [
            // Not declared in the manifest.
            ("PUT", "/v1/secrets/other", r#"{"value": "x"}"#, 400),
            ("PUT", "/v1/secrets/api_key", r#"{"value": ""}"#, 400),
            ("PUT", "/v1/secrets/api_key", "", 400),
            (
                "PUT",
                "/v1/secrets/api_key",
                r#"{"value": "x", "extra": 1}"#,
                400,
            ),
            ("GET", "/v1/secrets/nope", "", 404),
            ("GET", "/v1/secrets/bad%20name", "", 400),
            ("POST", "/v1/secrets/api_key/reveals", "null", 404),
            (
                "POST",
                "/v1/config-rollback",
                r#"{"to": 9, "reason": "r"}"#,
                404,
            ),
            (
                "PUT",
                "/v1/config/ghost",
                r#"{"changes": {"A": "b"}, "reason": "r"}"#,
                404,
            ),
            ("POST", "/v1/audit/notes", r#"{"text": " "}"#, 400),
            (
                "POST",
                "/v1/preflight",
                r#"{"target": "t", "details": []}"#,
                400,
            ),
        ];
        for (method, uri, body, expected) in cases {
            let (status, text) = stack.call(method, uri, body).await;
            assert_eq!(status.as_u16(), expected, "{method} {uri} {body}: {text}");
            let error: wharf_api::ApiErrorBody = serde_json::from_str(&text).unwrap();
            assert!(!error.error.message.is_empty());
        }
        let (status, text) = stack
            .call("POST", "/v1/audit/notes", r#"{"text": "hello"}"#)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{text}");
        let note: wharf_api::NoteAnswer = serde_json::from_str(&text).unwrap();
        assert_eq!(note.seq, note.entry.seq);
        assert_eq!(note.entry.action, "audit.note");
    })
    .await;
}

// Before: a 500 answered `the change was not made: {error}`, handing whoever holds the
// token the state directory's and key file's paths (and SQLite's detail, when it failed).
#[tokio::test]
async fn a_500_does_not_leak_the_state_directory_or_the_cause() {
    on_stack(|stack| async move {
        // A key file others may read is refused: an internal failure whose cause names it.
        let key_file = stack.state_dir.join(wharf_secrets::MASTER_KEY_FILE);
        std::fs::write(&key_file, format!("{}\n", "ab".repeat(32))).unwrap();
        std::fs::set_permissions(
            &key_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .unwrap();
        let body = serde_json::json!({"value": VALUE}).to_string();
        let (status, text) = stack.call("PUT", "/v1/secrets/api_key", &body).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{text}");
        let error: wharf_api::ApiErrorBody = serde_json::from_str(&text).unwrap();
        assert_eq!(error.error.code, wharf_api::ErrorCode::Internal);
        assert_eq!(
            error.error.message,
            "the change was not made; see the control plane's log"
        );
        for leak in [
            stack.state_dir.to_str().unwrap(),
            wharf_secrets::MASTER_KEY_FILE,
            "0644",
            VALUE,
        ] {
            assert!(!text.contains(leak), "the answer carries {leak:?}: {text}");
        }
    })
    .await;
}

// Before: serde's message for a value of the wrong type quoted it
// (`invalid type: integer `12345`, expected a string`), echoing the secret into the 400.
#[tokio::test]
async fn a_secret_value_of_the_wrong_type_is_not_echoed_in_the_400() {
    on_stack(|stack| async move {
        for body in [
            r#"{"value": 7318529046}"#,
            r#"{"value": 7318529046.5, "reason": "r"}"#,
            r#"{"value": ["7318529046"]}"#,
            r#"{"value": {"k": "7318529046"}}"#,
            r#"{"value": true, "reason": "7318"}"#,
        ] {
            let (status, text) = stack.call("PUT", "/v1/secrets/api_key", body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {text}");
            let error: wharf_api::ApiErrorBody = serde_json::from_str(&text).unwrap();
            assert_eq!(
                error.error.message, "invalid secret request: the field `value` must be a string",
                "{body}"
            );
            assert!(!text.contains("7318529046"), "{body}: {text}");
            assert!(!text.contains("true"), "{body}: {text}");
        }
        // Nothing was stored.
        let (status, text) = stack.call("GET", "/v1/secrets/api_key", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    })
    .await;
}

/// A staging ledger elsewhere (its own state directory and key) with api 2.0 rolled out: the
/// promotion bundle's text and the key it is signed with.
fn staging_bundle() -> (String, String) {
    use wharf_ledger::{KnownAction, Ledger, NewEntry};
    let dir = tempfile::tempdir().unwrap();
    let mut store = wharf_store::Store::open_for_writing(dir.path()).unwrap();
    for action in [KnownAction::DeployStart, KnownAction::DeploySucceeded] {
        let details = serde_json::json!({"rollout": 1, "version": "2.0"});
        let entry = NewEntry::new(
            jiff::Timestamp::now(),
            "wharf",
            action.into(),
            "api",
            details,
        )
        .unwrap();
        Ledger::new(&mut store).append(entry).unwrap();
    }
    let origin = || "wharf/staging".to_owned();
    let signed = wharf_ops::audit::checkpoint(&mut store, dir.path(), origin).unwrap();
    let key = wharf_ops::audit::signer(&mut store, dir.path(), origin)
        .unwrap()
        .verifier();
    let entries = wharf_ops::promotion::evidence(&store, "api", "2.0").unwrap();
    let bundle = wharf_ops::promotion::build(
        &Ledger::new(&mut store),
        ("shop", "staging"),
        "api",
        "2.0",
        &key,
        &signed,
        &entries,
    )
    .unwrap();
    (serde_json::to_string(&bundle).unwrap(), key.to_string())
}

/// The writer verifies a bundle itself (whatever the client checked): a tampered one, one
/// checked against another key, or not a bundle is a 400 that records nothing.
#[tokio::test]
async fn a_promotion_is_verified_by_the_writer_and_a_bad_one_records_nothing() {
    let (good, key) = staging_bundle();
    let mut value: serde_json::Value = serde_json::from_str(&good).unwrap();
    value["version"] = "3.0".into();
    let claims_other = value.to_string();
    let (_, other_key) = staging_bundle();
    on_stack(|stack| async move {
        let request =
            |bundle: &str, key: &str| serde_json::json!({"bundle": bundle, "key": key}).to_string();
        for (body, why) in [
            (request(&claims_other, &key), "does not verify"),
            (request(&good, &other_key), "signed by key"),
            (request("{\"format\": 1", &key), "unreadable bundle"),
            (request(&good, "not-a-key"), "the key to verify with"),
        ] {
            let (status, text) = stack.call("POST", "/v1/promotions", &body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
            assert!(text.contains(why), "{why}: {text}");
        }
        let imports = || {
            let store = wharf_store::Store::open(&stack.state_dir).unwrap();
            wharf_ops::promotion::imports(&store, "api", "2.0").unwrap()
        };
        assert!(imports().is_empty());
        let (status, text) = stack
            .call("POST", "/v1/promotions", &request(&good, &key))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{text}");
        let answer: wharf_api::PromotionImportAnswer = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (answer.service.as_str(), answer.version.as_str()),
            ("api", "2.0")
        );
        assert_eq!(answer.env, "staging");
        assert_eq!(
            answer.bundle_sha256,
            wharf_ops::promotion::sha256_hex(good.as_bytes())
        );
        assert_eq!(imports().len(), 1);
    })
    .await;
}
