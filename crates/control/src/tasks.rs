//! The control plane's helper tasks: they watch and probe, and only ever send events to the
//! loop, which alone changes state.

use std::time::Duration;

use tokio::sync::mpsc;
use wharf_probe::Prober;
use wharf_runtime::{BoxFuture, ExitStatus};

use crate::events::{Event, ProbeKind};
use crate::plan::ProbePlan;

/// Sends `Exited` once `ended` resolves (the driver knows how to wait for its instances).
pub(crate) async fn watch_ended(
    events: mpsc::Sender<Event>,
    service: String,
    ordinal: u32,
    generation: u64,
    ended: BoxFuture<'static, Option<ExitStatus>>,
) {
    let status = ended.await;
    let _ = events
        .send(Event::Exited {
            service,
            ordinal,
            generation,
            status,
        })
        .await;
}

/// The shortest period a probe loop runs at, whatever its plan says.
const MIN_PROBE_INTERVAL: Duration = Duration::from_millis(1);

/// Runs one probe of one instance forever, reporting every result to the loop.
#[allow(clippy::too_many_arguments)] // each is one fact about the probe; a struct would only rename them
pub(crate) async fn probe_loop(
    events: mpsc::Sender<Event>,
    prober: Prober,
    service: String,
    ordinal: u32,
    generation: u64,
    kind: ProbeKind,
    check: wharf_probe::Check,
    plan: ProbePlan,
) {
    if !plan.start_period.is_zero() {
        tokio::time::sleep(plan.start_period).await;
    }
    // tokio's interval panics on a zero period. The manifest refuses one, but this task must
    // not trust every path a plan can come from (tests, a future API): a floor of 1 ms.
    let period = plan.interval.max(MIN_PROBE_INTERVAL);
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Until the first success, probe quickly so a dependent does not wait a whole interval.
    let mut fast = true;
    loop {
        let outcome = prober.run(&check, plan.timeout).await;
        let passed = outcome.passed();
        let event = Event::Probe {
            service: service.clone(),
            ordinal,
            generation,
            kind,
            outcome,
        };
        if events.send(event).await.is_err() {
            return;
        }
        if fast && passed {
            fast = false;
            interval.reset();
        }
        if fast {
            tokio::time::sleep(period.min(Duration::from_millis(100))).await;
        } else {
            interval.tick().await;
        }
    }
}

/// An instance's [`ExecInside`](wharf_runtime::ExecInside) as the probe crate's runner: the
/// driver knows where the instance runs, the probe only that its command runs there.
#[derive(Debug)]
pub(crate) struct InstanceRunner(pub std::sync::Arc<dyn wharf_runtime::ExecInside>);

impl wharf_probe::Runner for InstanceRunner {
    fn run(
        &self,
        command: Vec<String>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<wharf_probe::Ran, String>> + Send>>
    {
        let running = self.0.run(command);
        Box::pin(async move {
            running.await.map(|executed| wharf_probe::Ran {
                code: executed.code,
                output: executed.output,
            })
        })
    }
}
