//! `wharf status`: every service and instance, from the running control plane.

use std::time::Duration;

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use wharf_api::{InstancePhase, ServiceState, StatusReport};
use wharf_runtime::Driver;

use crate::cli::{Global, Output};
use crate::client;
use crate::exit::ExitStatus;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Refresh every second until interrupted.
    #[arg(long)]
    pub watch: bool,
}

pub fn run(global: &Global, args: &StatusArgs) -> anyhow::Result<ExitStatus> {
    let state_dir = global.state_dir();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        loop {
            let value = match client::call_ok(&state_dir, "GET", "/v1/status", None).await {
                Ok(value) => value,
                // No control plane answers: none runs, or a killed one reset the connection
                // while it was torn down. What it recorded is what runs.
                Err(err) if !err.is::<client::ApiRejected>() => {
                    if err.is::<client::NotRunning>() {
                        eprintln!("{err}");
                    } else {
                        eprintln!(
                            "the control plane did not answer ({err:#}); showing what it recorded"
                        );
                    }
                    print_recorded(&state_dir, global.output).await?;
                    return Ok(ExitStatus::Failed);
                }
                Err(err) => return Err(err),
            };
            let report: StatusReport = serde_json::from_value(value)?;
            if args.watch {
                // Clear the screen and home the cursor, like `watch`.
                print!("\x1b[2J\x1b[H");
            }
            print_report(&report, global.output)?;
            if !args.watch {
                return Ok(if report.healthy {
                    ExitStatus::Ok
                } else {
                    ExitStatus::Failed
                });
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// Without a control plane, what the store says was running and whether each process still
/// runs: services outlive the control plane, and this is how an operator sees them.
async fn print_recorded(state_dir: &std::path::Path, output: Output) -> anyhow::Result<()> {
    let Some(store) = wharf_ops::read::open_existing(state_dir)? else {
        return Ok(());
    };
    let rows = store.instances()?;
    // Each handle is read by the driver that made it; the container driver first learns which
    // containers run.
    let driver = crate::cmd::up::drivers()?;
    driver.refresh().await;
    let records: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let handle = row.handle.parse::<wharf_runtime::InstanceHandle>().ok();
            let pid = handle.as_ref().and_then(|h| driver.describe(h).pid);
            let running = handle.as_ref().is_some_and(|h| driver.is_running(h));
            serde_json::json!({
                "service": row.service,
                "ordinal": row.index,
                "version": row.version,
                "pid": pid,
                "port": row.port,
                "started_at": row.started_at,
                "running": running,
            })
        })
        .collect();
    if output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"control_plane": null, "instances": records})
            )?
        );
        return Ok(());
    }
    if records.is_empty() {
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header(["INSTANCE", "VERSION", "PID", "PORT", "PROCESS", "STARTED"]);
    for record in &records {
        table.add_row([
            format!(
                "{}/{}",
                record["service"].as_str().unwrap_or_default(),
                record["ordinal"]
            ),
            record["version"].as_str().unwrap_or_default().to_owned(),
            record["pid"]
                .as_u64()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            record["port"]
                .as_u64()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            if record["running"] == true {
                "running (adoptable by `wharf up`)"
            } else {
                "gone"
            }
            .to_owned(),
            record["started_at"].as_str().unwrap_or_default().to_owned(),
        ]);
    }
    println!("recorded instances (no control plane):");
    println!("{table}");
    Ok(())
}

/// Prints a report as a table (one row per service, instances beneath) or as JSON.
pub fn print_report(report: &StatusReport, output: Output) -> anyhow::Result<()> {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header([
        "SERVICE",
        "VERSION",
        "STATE",
        "READY",
        "RESTARTS",
        "UPTIME",
        "PID",
        "PORT",
        "LIVE/READY",
        "LAST EXIT / REASON",
    ]);
    for service in &report.services {
        let ready = if service.state == ServiceState::External {
            "-".to_owned()
        } else {
            format!("{}/{}", service.ready, service.desired)
        };
        let latency = service
            .probe_latency_ms
            .map(|ms| format!("probe {ms}ms"))
            .unwrap_or_default();
        // A rollout under way shows in place of a reason (`1.5.0 step 2/3 (25%)`).
        let reason = match (&service.reason, &service.rollout) {
            (Some(reason), _) => reason.clone(),
            (None, Some(rollout)) => format!("rollout: {rollout}"),
            (None, None) => String::new(),
        };
        table.add_row([
            service.name.clone(),
            service.version.clone(),
            service.state.to_string(),
            ready,
            service.restarts.to_string(),
            String::new(),
            String::new(),
            // The public port, served by the proxy; instances have their own below.
            service
                .public_port
                .map(|p| format!(":{p}"))
                .unwrap_or_default(),
            latency,
            reason,
        ]);
        for instance in &service.instances {
            let live = match instance.live {
                Some(true) => "live",
                Some(false) => "NOT LIVE",
                None => "-",
            };
            let ready = match (instance.ready, instance.probe_latency_ms) {
                (Some(true), Some(ms)) => format!("ready {ms}ms"),
                (Some(true), None) => "ready".to_owned(),
                (Some(false), _) => "not ready".to_owned(),
                (None, _) => "-".to_owned(),
            };
            let probe = format!("{live} / {ready}");
            let phase = if instance.crash_looping && instance.phase != InstancePhase::Running {
                "crash-loop".to_owned()
            } else {
                instance.phase.to_string()
            };
            // An instance's version shows when it differs from the service's (a rollout).
            let version = if instance.version != service.version && !instance.version.is_empty() {
                instance.version.clone()
            } else {
                String::new()
            };
            table.add_row([
                format!("  {}/{}", service.name, instance.ordinal),
                version,
                phase,
                String::new(),
                instance.restarts.to_string(),
                instance.uptime_secs.map(human_secs).unwrap_or_default(),
                instance.pid.map(|p| p.to_string()).unwrap_or_default(),
                instance.port.map(|p| p.to_string()).unwrap_or_default(),
                probe,
                instance
                    .error
                    .clone()
                    .or_else(|| instance.probe_reason.clone())
                    .or_else(|| instance.last_exit.clone())
                    .unwrap_or_default(),
            ]);
        }
    }
    println!(
        "stack {}: {} (control plane pid {})",
        report.stack, report.status, report.control_pid
    );
    println!("{table}");
    for page in &report.pages {
        let affected = if page.affected.is_empty() {
            String::new()
        } else {
            format!(" (affects {})", page.affected.join(", "))
        };
        let held = page
            .silenced_by
            .as_ref()
            .map(|id| format!(" [held by silence {id}]"))
            .unwrap_or_default();
        println!(
            "page open → {}: {} since {}{affected}{held}",
            page.alert, page.root_cause, page.since
        );
    }
    for silence in &report.silences {
        let matchers: Vec<String> = silence.matchers.iter().map(ToString::to_string).collect();
        println!(
            "silence {} ({}) until {} — {} (owner {})",
            silence.id,
            matchers.join(", "),
            silence.ends_at,
            silence.reason,
            silence.owner
        );
    }
    for incident in &report.incidents {
        println!(
            "incident INC-{} [{}] {}: {} (commander {})",
            incident.id,
            incident.severity.as_str(),
            incident.status.as_str(),
            incident.title,
            incident.roles.get("commander").map_or("-", String::as_str)
        );
    }
    for service in &report.services {
        let Some(backups) = &service.backups else {
            continue;
        };
        let health = backups.health.as_str();
        let last = backups.last_success.as_deref().unwrap_or("never");
        let mut line = format!("backup {}: {health} (last good: {last}", service.name);
        if let Some(next) = &backups.next_due {
            line.push_str(&format!(", next: {next}"));
        }
        line.push(')');
        if let Some(reason) = &backups.reason {
            line.push_str(&format!(" — {reason}"));
        }
        println!("{line}");
    }
    Ok(())
}

fn human_secs(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{}s", secs / 60, secs % 60),
        3600..86_400 => format!("{}h{}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{}h", secs / 86_400, secs % 86_400 / 3600),
    }
}
