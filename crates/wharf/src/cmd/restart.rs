//! `wharf restart SERVICE`: replace every instance, one at a time, each new instance ready
//! before an old one stops (a service that binds its public port itself is recreated instead).

use std::time::{Duration, Instant};

use wharf_api::{InstancePhase, ServiceState, StatusReport};

use crate::cli::Global;
use crate::client::{self, ApiRejected};
use crate::exit::ExitStatus;

#[derive(Debug, clap::Args)]
pub struct RestartArgs {
    /// The service to restart.
    pub service: String,
    /// How long to wait for the restart to finish (the global --timeout bounds each API
    /// call within it).
    #[arg(long, default_value = "120s", value_parser = crate::cmd::up::parse_duration)]
    pub wait_timeout: Duration,
}

pub fn run(global: &Global, args: &RestartArgs) -> anyhow::Result<ExitStatus> {
    let state_dir = global.state_dir();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let before = jiff::Timestamp::now();
        let path = format!("/v1/services/{}/restart", args.service);
        match client::call_ok(&state_dir, "POST", &path, None).await {
            Ok(_) => {}
            Err(err) if err.is::<ApiRejected>() => {
                eprintln!("error: {err}");
                return Ok(ExitStatus::Invalid);
            }
            Err(err) => return Err(err),
        }
        let deadline = Instant::now() + args.wait_timeout;
        let mut poll = tokio::time::interval(Duration::from_millis(100));
        loop {
            poll.tick().await;
            let report: StatusReport = serde_json::from_value(
                client::call_ok(&state_dir, "GET", "/v1/status", None).await?,
            )?;
            let Some(service) = report.services.iter().find(|s| s.name == args.service) else {
                continue;
            };
            let fresh = service.instances.iter().all(|i| {
                i.phase == InstancePhase::Running
                    && i.ready != Some(false)
                    && i.started_at
                        .as_deref()
                        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                        .is_some_and(|t| t >= before)
            });
            if fresh && service.instances.len() as u32 == service.desired {
                eprintln!(
                    "restarted {} ({} instance(s))",
                    args.service,
                    service.instances.len()
                );
                return Ok(ExitStatus::Ok);
            }
            if service.state == ServiceState::Failed || Instant::now() >= deadline {
                eprintln!(
                    "restart of {} did not finish: {}",
                    args.service,
                    service.reason.as_deref().unwrap_or(service.state.as_str())
                );
                return Ok(ExitStatus::Failed);
            }
        }
    })
}
