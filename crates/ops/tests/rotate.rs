//! Rotation: begin stores the value with `secret.rotate_pending`, the hook runs, finish
//! records `secret.rotate` or puts the previous value back with `secret.rotate_failed` — also
//! when the hook cannot start or hangs past its timeout.

use std::time::{Duration, Instant};

use wharf_manifest::model::SecretPolicy;
use wharf_ops::secrets::{self, FinishedAs, HOOK_TIMEOUT, HookOutcome, Rotated};
use wharf_ops::{Actor, OpsErrorKind};
use wharf_secrets::{MasterKey, SecretValue, Secrets};
use wharf_store::{EntryFilter, Store};

struct State {
    dir: tempfile::TempDir,
    store: Store,
    secrets: Secrets,
    actor: Actor,
}

impl State {
    fn new() -> State {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let secrets = Secrets::unlock(&mut store, MasterKey::generate()).unwrap();
        State {
            dir,
            store,
            secrets,
            actor: Actor("tester".to_owned()),
        }
    }

    fn set(&mut self, name: &str, value: &str) {
        let value = SecretValue::new(value.as_bytes().to_vec());
        secrets::set(
            &mut self.store,
            &self.secrets,
            &self.actor,
            name,
            &value,
            None,
        )
        .unwrap();
    }

    fn current(&self, name: &str) -> (u32, String) {
        let (info, value) = self.secrets.current(&self.store, name).unwrap().unwrap();
        (info.version, value.expose_str().unwrap().to_owned())
    }

    fn actions(&self) -> Vec<String> {
        self.store
            .ledger_entries(&EntryFilter::default())
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect()
    }

    fn details(&self, action: &str) -> serde_json::Value {
        let filter = EntryFilter {
            action: Some(action.to_owned()),
            target: None,
        };
        let entries = self.store.ledger_entries(&filter).unwrap();
        serde_json::from_str(&entries.last().unwrap().details).unwrap()
    }

    fn rotate(&mut self, command: &[&str], timeout: Duration) -> Rotated {
        let policy = SecretPolicy {
            rotate_command: Some(command.iter().map(|s| (*s).to_owned()).collect()),
            ..SecretPolicy::default()
        };
        secrets::rotate(
            &mut self.store,
            &self.secrets,
            &self.actor,
            "DB",
            &policy,
            self.dir.path(),
            Some("drill"),
            timeout,
        )
        .unwrap()
    }

    fn begin(&mut self, value: &str) -> u32 {
        let value = SecretValue::new(value.as_bytes().to_vec());
        let begun = secrets::rotate_begin(
            &mut self.store,
            &self.secrets,
            &self.actor,
            "DB",
            &value,
            None,
        )
        .unwrap();
        begun.new.version
    }

    fn finish(
        &mut self,
        version: u32,
        outcome: HookOutcome,
    ) -> Result<secrets::Finished, wharf_ops::OpsError> {
        secrets::rotate_finish(
            &mut self.store,
            &self.secrets,
            &self.actor,
            "DB",
            version,
            outcome,
        )
    }
}

fn failed() -> HookOutcome {
    HookOutcome::Failed {
        reason: "exit status: 3".to_owned(),
    }
}

#[test]
fn a_hook_that_cannot_be_spawned_leaves_the_previous_value_and_a_rotate_failed_entry() {
    let mut state = State::new();
    state.set("DB", "old-value");
    let rotated = state.rotate(&["/nonexistent/rotate-hook"], HOOK_TIMEOUT);
    let Rotated::HookFailed {
        failure,
        new,
        restored,
    } = rotated
    else {
        panic!("the hook cannot run: {rotated:?}");
    };
    assert!(failure.summary.contains("cannot run"), "{failure:?}");
    assert_eq!(new.version, 2);
    assert_eq!(restored.map(|r| r.version), Some(3));
    assert_eq!(state.current("DB"), (3, "old-value".to_owned()));
    assert_eq!(
        state.actions(),
        [
            "secret.set",
            "secret.rotate_pending",
            "secret.rotate_failed"
        ]
    );
    let details = state.details("secret.rotate_failed");
    assert_eq!(details["failed_version"], 2);
    assert_eq!(details["version"], 3);
    assert!(details["reason"].as_str().unwrap().contains("cannot run"));
}

#[test]
fn a_hung_hook_is_killed_at_its_timeout_and_counts_as_failed() {
    let mut state = State::new();
    state.set("DB", "old-value");
    let started = Instant::now();
    // The echo keeps the shell from exec'ing sleep: the kill must reach the whole group.
    let rotated = state.rotate(
        &["sh", "-c", "echo started >&2; sleep 1000; echo done"],
        Duration::from_millis(300),
    );
    assert!(started.elapsed() < Duration::from_secs(30), "not killed");
    let Rotated::HookFailed {
        failure, restored, ..
    } = rotated
    else {
        panic!("the hook hung: {rotated:?}");
    };
    assert!(failure.summary.contains("timed out"), "{failure:?}");
    assert!(failure.report().contains("started"), "{}", failure.report());
    assert!(restored.is_some());
    assert_eq!(state.current("DB").1, "old-value");
    assert_eq!(
        state.actions(),
        [
            "secret.set",
            "secret.rotate_pending",
            "secret.rotate_failed"
        ]
    );
}

#[test]
fn a_hook_that_succeeds_sees_both_values_and_the_rotation_is_recorded() {
    let mut state = State::new();
    state.set("DB", "old-value");
    let rotated = state.rotate(
        &[
            "sh",
            "-c",
            r#"printf %s "$WHARF_SECRET_NEW" > new.txt; printf %s "$WHARF_SECRET_OLD" > old.txt"#,
        ],
        HOOK_TIMEOUT,
    );
    assert!(
        matches!(rotated, Rotated::Done { hook: true, .. }),
        "{rotated:?}"
    );
    let read = |file: &str| std::fs::read_to_string(state.dir.path().join(file)).unwrap();
    assert_eq!(read("old.txt"), "old-value");
    assert_eq!(read("new.txt"), state.current("DB").1);
    assert_eq!(
        state.actions(),
        ["secret.set", "secret.rotate_pending", "secret.rotate"]
    );
    let details = state.details("secret.rotate");
    assert_eq!(
        (details["hook"].clone(), details["reason"].clone()),
        (true.into(), "drill".into())
    );
}

#[test]
fn finish_refuses_what_was_never_begun_or_is_already_finished() {
    let mut state = State::new();
    state.set("DB", "old-value");
    let not_begun = state.finish(1, HookOutcome::Succeeded).unwrap_err();
    assert_eq!(not_begun.kind(), OpsErrorKind::NotFound, "{not_begun}");
    let version = state.begin("new-value");
    let finished = state.finish(version, HookOutcome::Succeeded).unwrap();
    assert_eq!(finished.result, FinishedAs::Rotated);
    assert_eq!(finished.in_force.version, version);
    for outcome in [HookOutcome::Succeeded, failed()] {
        let again = state.finish(version, outcome).unwrap_err();
        assert_eq!(again.kind(), OpsErrorKind::Conflict, "{again}");
    }
    assert_eq!(state.current("DB"), (version, "new-value".to_owned()));
}

#[test]
fn a_failed_hook_does_not_undo_a_change_made_after_the_rotation_began() {
    let mut state = State::new();
    state.set("DB", "old-value");
    let version = state.begin("new-value");
    state.set("DB", "someone-else");
    let refused = state.finish(version, failed()).unwrap_err();
    assert_eq!(refused.kind(), OpsErrorKind::Conflict, "{refused}");
    assert_eq!(state.current("DB").1, "someone-else");
}

#[test]
fn a_failed_first_rotation_keeps_the_only_value() {
    let mut state = State::new();
    let version = state.begin("first-value");
    let finished = state.finish(version, failed()).unwrap();
    assert_eq!(finished.result, FinishedAs::Kept);
    assert_eq!(state.current("DB"), (version, "first-value".to_owned()));
    let details = state.details("secret.rotate_failed");
    assert_eq!(details["kept"], true);
    assert_eq!(details["reason"], "exit status: 3");
}
