//! The control loop driven through a fake driver (named so: it starts nothing; a real driver
//! is exercised by the CLI tests) under tokio's paused clock. It proves the loop never waits
//! on a driver: while a start hangs, the loop keeps answering; the start's outcome arrives as
//! an event.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use wharf_api::{InstancePhase, StatusReport};
use wharf_control::{Config, ControlPlane, Handle, Journal};
use wharf_runtime::{
    BoxFuture, Driver, ExitStatus, HandleSummary, InstanceHandle, InstanceSpec, RestartLimits,
    Running, StartError, StopOutcome,
};

/// A driver whose starts wait until the test opens the gate, and whose instances run until
/// stopped (then their `ended` resolves, as a process's exit would). Nothing runs for real.
#[derive(Debug, Default)]
struct FakeDriver {
    open: watch::Sender<bool>,
    /// Ordinals of the instances stopped so far.
    stopped: watch::Sender<Vec<u32>>,
    starts: AtomicUsize,
}

impl FakeDriver {
    fn open_gate(&self) {
        self.open.send_replace(true);
    }
}

impl Driver for FakeDriver {
    fn start<'a>(&'a self, spec: &'a InstanceSpec) -> BoxFuture<'a, Result<Running, StartError>> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.subscribe();
        let mut stopped = self.stopped.subscribe();
        let index = spec.index;
        Box::pin(async move {
            // Hangs like a container pull that takes minutes, until the test says so.
            let _ = open.wait_for(|open| *open).await;
            let handle = InstanceHandle::new("fake", &index).expect("a number serializes");
            let ended = async move {
                let _ = stopped.wait_for(|s| s.contains(&index)).await;
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
        if let Ok(index) = handle.data::<u32>("fake") {
            self.stopped.send_modify(|stopped| stopped.push(index));
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

const MANIFEST: &str = "\
name: fake
services:
  worker:
    command: [worker]
    replicas: 2
";

/// A control plane over `driver` in a fresh state directory.
fn control_plane(driver: Arc<FakeDriver>, dir: &std::path::Path) -> (ControlPlane, Handle) {
    let loaded = wharf_manifest::load(MANIFEST, Default::default(), &|_: &str| None);
    let stack = loaded.stack.expect("the test manifest is valid");
    let plan = wharf_control::plan(&stack).expect("the test manifest plans");
    let journal = Journal::open(dir, "test".to_owned()).expect("a fresh store opens");
    let config = Config {
        state_dir: dir.to_owned(),
        workdir: dir.to_owned(),
        driver,
        stop_grace: Duration::from_secs(1),
        limits: RestartLimits::default(),
        log_max_bytes: 1 << 20,
        log_keep: 1,
        proxy_binary: None,
        log_json: false,
        reload_plan: None,
    };
    ControlPlane::new(plan, config, journal)
}

/// Runs `test` beside the control plane's loop (on this thread: the loop holds its reading
/// connection, which is not `Sync`), ending when the test does.
async fn beside_the_loop(control: ControlPlane, test: impl std::future::Future<Output = ()>) {
    tokio::select! {
        () = control.run(std::future::pending::<()>()) => panic!("the loop ended by itself"),
        () = test => {}
    }
}

/// The status, which the loop itself answers; `None` if it does not within `within` of the
/// (paused, auto-advancing) clock — i.e. the loop is stuck.
async fn status_within(handle: &Handle, within: Duration) -> Option<StatusReport> {
    tokio::time::timeout(within, handle.status())
        .await
        .ok()
        .flatten()
}

fn phases(report: &StatusReport) -> Vec<InstancePhase> {
    report.services[0]
        .instances
        .iter()
        .map(|i| i.phase)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_loop_answers_while_a_driver_start_hangs_and_takes_the_outcome_as_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let driver = Arc::new(FakeDriver::default());
    let (control, handle) = control_plane(driver.clone(), dir.path());
    beside_the_loop(control, hanging_starts_do_not_block(driver, handle)).await;
}

async fn hanging_starts_do_not_block(driver: Arc<FakeDriver>, handle: Handle) {
    // Both replicas are handed to the driver, whose starts hang.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while driver.starts.load(Ordering::SeqCst) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the driver was never asked to start"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Seconds of (virtual) time later the loop still answers at once, with both instances
    // reported as starting. A loop that awaited the driver would never answer: the timeout
    // would fire as soon as everything else is idle.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let report = status_within(&handle, Duration::from_millis(50))
            .await
            .expect("the loop answers while the driver's starts hang");
        assert_eq!(phases(&report), [InstancePhase::Starting; 2], "{report:?}");
    }
    assert_eq!(
        driver.starts.load(Ordering::SeqCst),
        2,
        "no start is repeated"
    );

    // The starts complete: the outcome reaches the loop as an event.
    driver.open_gate();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let report = status_within(&handle, Duration::from_millis(50))
            .await
            .expect("the loop answers");
        if phases(&report) == [InstancePhase::Running; 2] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{report:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_service_stopped_while_its_start_hangs_ends_once_the_start_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let driver = Arc::new(FakeDriver::default());
    let (control, handle) = control_plane(driver.clone(), dir.path());
    beside_the_loop(control, stopped_while_starting(driver, handle)).await;
}

async fn stopped_while_starting(driver: Arc<FakeDriver>, handle: Handle) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while driver.starts.load(Ordering::SeqCst) < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // `down` of the service is accepted while its instances are still starting…
    let down = {
        let handle = handle.clone();
        tokio::spawn(async move { handle.down(Some("worker".to_owned())).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let report = status_within(&handle, Duration::from_millis(50))
        .await
        .expect("the loop answers during the down");
    assert_eq!(phases(&report), [InstancePhase::Stopping; 2], "{report:?}");
    assert!(
        !down.is_finished(),
        "the down waits for the starts to come back"
    );
    // …and completes once the driver answers and the started instances are stopped.
    driver.open_gate();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while driver.stopped.borrow().len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "what was started is stopped"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let answered = tokio::time::timeout(Duration::from_secs(30), down)
        .await
        .expect("the down completes")
        .expect("the task ran");
    assert!(answered.is_ok(), "{answered:?}");
}

/// Drives `run` to its end, failing after 10 s of real time. (The loop's last step waits for
/// the store writer, a real thread: a virtual-time timeout would fire while it writes, since
/// the paused clock jumps whenever the runtime is idle.)
async fn finishes(mut run: std::pin::Pin<&mut impl std::future::Future<Output = ()>>, why: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        tokio::select! {
            () = run.as_mut() => return,
            () = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the loop did not end {why}"
        );
    }
}

/// Polls until the driver was asked for `n` starts, driving `run` meanwhile.
async fn until_starts(
    driver: &FakeDriver,
    n: usize,
    run: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) {
    let wait = async {
        while driver.starts.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        () = run.as_mut() => panic!("the loop ended before the starts"),
        () = wait => {}
        () = tokio::time::sleep(Duration::from_secs(30)) => panic!("no start"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_whole_stack_down_waits_for_hanging_starts_and_stops_what_they_started() {
    let dir = tempfile::tempdir().unwrap();
    let driver = Arc::new(FakeDriver::default());
    let (control, handle) = control_plane(driver.clone(), dir.path());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = control.run(async {
        let _ = stopped.await;
    });
    let mut run = std::pin::pin!(run);
    until_starts(&driver, 2, &mut run).await;
    // A restart retires the instances still starting (the roll's path), then the whole
    // stack goes down: neither may forget a start the driver still has in hand.
    tokio::select! {
        () = run.as_mut() => panic!("the loop ended"),
        answer = handle.restart("worker".to_owned()) => assert!(answer.is_ok(), "{answer:?}"),
    }
    stop.send(()).unwrap();
    tokio::select! {
        () = run.as_mut() => panic!("the loop ended while starts were still in the driver's hands"),
        () = tokio::time::sleep(Duration::from_secs(5)) => {}
    }
    driver.open_gate();
    finishes(run.as_mut(), "once the starts came back and were stopped").await;
    let started = driver.starts.load(Ordering::SeqCst);
    let stopped = driver.stopped.borrow().len();
    assert_eq!(stopped, started, "every start the driver made was stopped");
}

#[tokio::test(start_paused = true)]
async fn a_control_plane_leaving_the_stack_running_records_the_starts_in_flight_first() {
    let dir = tempfile::tempdir().unwrap();
    let driver = Arc::new(FakeDriver::default());
    let (control, _handle) = control_plane(driver.clone(), dir.path());
    let (leave, left) = tokio::sync::oneshot::channel::<()>();
    let run = control.run_until(std::future::pending(), async {
        let _ = left.await;
    });
    let mut run = std::pin::pin!(run);
    until_starts(&driver, 2, &mut run).await;
    leave.send(()).unwrap();
    tokio::select! {
        () = run.as_mut() => panic!("the loop left with starts in the driver's hands"),
        () = tokio::time::sleep(Duration::from_millis(500)) => {}
    }
    driver.open_gate();
    finishes(run.as_mut(), "once the starts came back").await;
    // Both are recorded for the next control plane to adopt, and left running.
    let rows = wharf_store::Store::open(dir.path())
        .unwrap()
        .instances()
        .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        driver.stopped.borrow().is_empty(),
        "nothing is stopped when leaving"
    );
}
