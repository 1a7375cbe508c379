//! Everything `wharf validate` accepts, the control plane runs (issue 20): every manifest of
//! the repository's corpora — the manifest crate's valid and broken ones that validate, the
//! examples — and manifests at the bounds of every duration field go through
//! `wharf_control::plan` and a control-plane start, for each of their environments, with no
//! panic anywhere (a spawned task's panic is caught by tokio, so a panic hook counts them).
//!
//! The driver is a fake (named so: nothing runs for real; the CLI tests run real processes):
//! every start succeeds at once and the instance runs until stopped. The probes are real
//! (they find nothing listening), under tokio's paused clock, so minutes pass in an instant.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use wharf_control::{Config, ControlPlane, Journal};
use wharf_manifest::{EnvironmentChoice, ValidStack, environment_names, load};
use wharf_runtime::{
    BoxFuture, Driver, ExitStatus, HandleSummary, InstanceHandle, InstanceSpec, RestartLimits,
    Running, StartError, StopOutcome,
};

/// A driver whose starts succeed at once; an instance "runs" until it is stopped.
#[derive(Debug, Default)]
struct FakeDriver {
    stopped: watch::Sender<Vec<(String, u32)>>,
}

impl Driver for FakeDriver {
    fn start<'a>(&'a self, spec: &'a InstanceSpec) -> BoxFuture<'a, Result<Running, StartError>> {
        let id = (spec.service.clone(), spec.index);
        let mut stopped = self.stopped.subscribe();
        Box::pin(async move {
            let handle = InstanceHandle::new("fake", &id).expect("a pair serializes");
            let ended = async move {
                let _ = stopped.wait_for(|s| s.contains(&id)).await;
                Some(ExitStatus {
                    code: Some(0),
                    signal: None,
                    at: "stopped".to_owned(),
                })
            };
            Ok(Running {
                handle,
                ended: Box::pin(ended),
            })
        })
    }

    fn is_running(&self, _: &InstanceHandle) -> bool {
        true
    }

    fn watch(&self, _: InstanceHandle) -> BoxFuture<'static, Option<ExitStatus>> {
        Box::pin(std::future::pending())
    }

    fn exit_status(&self, _: &InstanceHandle) -> Option<ExitStatus> {
        None
    }

    fn stop(&self, handle: InstanceHandle, _: Duration) -> BoxFuture<'static, StopOutcome> {
        if let Ok(id) = handle.data::<(String, u32)>("fake") {
            self.stopped.send_modify(|stopped| stopped.push(id));
        }
        Box::pin(std::future::ready(StopOutcome::Graceful))
    }

    fn reload(&self, _: &InstanceHandle) -> bool {
        true
    }

    fn describe(&self, handle: &InstanceHandle) -> HandleSummary {
        HandleSummary {
            pid: None,
            id: handle.to_string(),
            image: None,
            ports: Vec::new(),
        }
    }
}

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts every panic in the process, on any thread, before the default hook prints it.
fn count_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.yaml` under the manifest crate's corpora and `examples/`.
fn corpus() -> Vec<(String, String)> {
    let root = repository();
    let mut files = Vec::new();
    for dir in [
        "crates/manifest/tests/valid",
        "crates/manifest/tests/broken",
        "examples",
    ] {
        collect(&root.join(dir), &mut files);
    }
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            (path.display().to_string(), text)
        })
        .collect()
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            files.push(path);
        }
    }
}

/// Manifests at the bounds of the duration fields that reach timers: the smallest and
/// largest values `validate` accepts.
fn bounds() -> Vec<(String, String)> {
    let mut manifests = Vec::new();
    for (interval, timeout, start_period, pause) in [
        ("1ms", "1ms", "0s", "0s"),
        ("0.5ms", "0.1ms", "0ms", "1ms"),
        ("30d", "30d", "30d", "30d"),
        ("1ms", "30d", "29d23h59m59s", "720h"),
    ] {
        let text = format!(
            "name: bounds
services:
  api:
    command: [api]
    replicas: 2
    probes:
      live: {{tcp: {{port: 9}}, interval: {interval}, timeout: {timeout}, start_period: {start_period}}}
      ready: {{http: {{url: \"http://127.0.0.1:9/ready\", max_latency: {timeout}}}, interval: {interval}, timeout: {timeout}}}
    rollout:
      strategy: canary
      steps: [{{weight: 50, pause: {pause}}}, {{weight: 100}}]
      deadlines: {{ready: {interval}, step_extension: {pause}, drain: {pause}}}
  worker:
    command: [worker]
    depends_on: [api]
    probes:
      ready: {{exec: [\"true\"], interval: {interval}, timeout: {timeout}}}
"
        );
        manifests.push((format!("bounds {interval} {timeout} {pause}"), text));
    }
    manifests
}

/// The stacks a manifest validates to: its base and each of its environments.
fn stacks(text: &str) -> Vec<(String, ValidStack)> {
    let variables = |_: &str| None;
    let mut choices = vec![("base".to_owned(), EnvironmentChoice::Base)];
    let names = environment_names(text);
    choices.extend(
        names
            .iter()
            .map(|n| (n.clone(), EnvironmentChoice::Named(n.as_str()))),
    );
    choices
        .into_iter()
        .filter_map(|(name, choice)| load(text, choice, &variables).stack.map(|s| (name, s)))
        .collect()
}

/// Plans `stack` and runs a control plane over it for `seconds` of the paused clock, asking
/// its status every second (a stuck or dead loop does not answer).
async fn run(what: &str, stack: &ValidStack, seconds: u32) {
    // Refused by the plan with an error is an answer, not a crash.
    if let Ok(plan) = wharf_control::plan(stack) {
        run_plan(what, plan, seconds).await;
    }
}

async fn run_plan(what: &str, plan: wharf_control::StackPlan, seconds: u32) {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), "corpus".to_owned()).expect("a fresh store opens");
    let config = Config {
        state_dir: dir.path().to_owned(),
        workdir: dir.path().to_owned(),
        driver: Arc::new(FakeDriver::default()),
        stop_grace: Duration::from_secs(1),
        limits: RestartLimits::default(),
        log_max_bytes: 1 << 20,
        log_keep: 1,
        proxy_binary: None,
        log_json: false,
        reload_plan: None,
    };
    let (control, handle) = ControlPlane::new(plan, config, journal);
    let watch = async {
        for _ in 0..seconds {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let report = tokio::time::timeout(Duration::from_secs(5), handle.status()).await;
            assert!(
                matches!(report, Ok(Some(_))),
                "{what}: the control plane stopped answering"
            );
            assert_eq!(PANICS.load(Ordering::SeqCst), 0, "{what}: a task panicked");
        }
    };
    tokio::select! {
        () = control.run(std::future::pending::<()>()) => panic!("{what}: the loop ended by itself"),
        () = watch => {}
    }
}

#[tokio::test(start_paused = true)]
async fn every_corpus_manifest_that_validates_plans_and_runs_without_a_panic() {
    count_panics();
    let mut ran = 0;
    for (file, text) in corpus() {
        for (environment, stack) in stacks(&text) {
            run(&format!("{file} ({environment})"), &stack, 120).await;
            ran += 1;
        }
    }
    // full.yaml (base and three environments), the example, the warnings-only broken ones.
    assert!(
        ran >= 6,
        "only {ran} stacks validated: the corpus was not found"
    );
    assert_eq!(PANICS.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn durations_at_their_bounds_plan_and_run_without_a_panic() {
    count_panics();
    for (what, text) in bounds() {
        let stacks = stacks(&text);
        assert_eq!(stacks.len(), 1, "{what} validates");
        // Millisecond probes make every virtual second a thousand rounds: a few suffice.
        run(&what, &stacks[0].1, 3).await;
    }
    assert_eq!(PANICS.load(Ordering::SeqCst), 0);
}

// Before: `interval: 0s` validated with a warning and the probe task panicked in
// `tokio::time::interval` ("'period' must be non-zero"), leaving the service `starting`.
#[tokio::test(start_paused = true)]
async fn zero_probe_interval_never_reaches_a_timer() {
    count_panics();
    let text = "name: zero
services:
  api:
    command: [api]
    probes:
      ready: {tcp: {port: 9}, interval: 0s}
";
    assert!(stacks(text).is_empty(), "validate refuses a zero interval");
    // A plan made some other way (a future API, a test) with a zero period: the probe task
    // floors it rather than panic.
    let stack = stacks(&text.replace("0s", "1s")).remove(0).1;
    let mut plan = wharf_control::plan(&stack).unwrap();
    for service in &mut plan.services {
        for probe in [&mut service.ready, &mut service.live]
            .into_iter()
            .flatten()
        {
            probe.interval = Duration::ZERO;
        }
    }
    run_plan("zero interval", plan, 3).await;
    assert_eq!(PANICS.load(Ordering::SeqCst), 0);
}

/// xorshift64: a fixed sequence of edits, so a failure names its seed and replays.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// The full manifest with a few characters of YAML's syntax deleted, duplicated or swapped in:
/// what a fuzzer tries first. Those that still validate must plan, and the first few run.
#[tokio::test(start_paused = true)]
async fn damaged_manifests_that_still_validate_plan_and_run_without_a_panic() {
    count_panics();
    let full = std::fs::read_to_string(repository().join("crates/manifest/tests/valid/full.yaml"))
        .unwrap();
    let significant = [
        ':', '-', ' ', '\n', '0', '1', 's', 'm', '{', '}', '[', ']', ',',
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let (mut accepted, mut ran) = (0, 0);
    for case in 0..300 {
        let mut chars: Vec<char> = full.chars().collect();
        for _ in 0..1 + next(&mut state) % 3 {
            let at = (next(&mut state) % chars.len() as u64) as usize;
            let c = significant[(next(&mut state) % significant.len() as u64) as usize];
            match next(&mut state) % 3 {
                0 => {
                    chars.remove(at);
                }
                1 => chars.insert(at, c),
                _ => chars[at] = c,
            }
        }
        let text: String = chars.into_iter().collect();
        for (environment, stack) in stacks(&text) {
            accepted += 1;
            let what = format!("damaged case {case} ({environment})");
            if ran < 8 {
                run(&what, &stack, 5).await;
                ran += 1;
            } else {
                let _ = wharf_control::plan(&stack);
            }
        }
    }
    assert!(
        accepted > 0,
        "no damaged manifest validated: the edits test nothing"
    );
    assert_eq!(PANICS.load(Ordering::SeqCst), 0);
}
