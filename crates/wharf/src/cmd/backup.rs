//! `wharf backup run|list|show|verify|prune|key export`, `wharf restore` and `wharf drill`: ask
//! the running control plane to start jobs (it owns the schedules, the repository's password
//! and the datastores' addresses), then follow them to their end. Exit 0 when every job
//! succeeded, 1 when one failed (a drill's failed check names what is broken), 2 when the
//! request was refused.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use wharf_api::{
    BackupOverview, BackupRequest, DrillRequest, Job, JobState, JobsStarted, PruneRequest,
    RestoreRequest, RestoreTarget, SnapshotList, VerifyRequest,
};

use crate::cli::{Global, Output};
use crate::client::{self, ApiRejected};
use crate::cmd::rollout::block_on;
use crate::exit::ExitStatus;

/// How often a job is asked about while it runs.
const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, clap::Subcommand)]
pub enum BackupCommand {
    /// Back up one datastore now, or every datastore with `backup:`; retention applies after.
    Run(RunArgs),
    /// The snapshots in the repository (newest first), and every datastore's backup health.
    List(ListArgs),
    /// One job (backup, drill, restore, prune, verify): outcome, checks, RTO / RPO.
    Show(ShowArgs),
    /// Check the repository's structure (and every pack with --read-data) and that the stored
    /// password decrypts the newest backup.
    Verify(VerifyArgs),
    /// Apply the manifest's `retain:` now (--dry-run: say what would be forgotten).
    Prune(PruneArgs),
    /// What to keep offline to restore without wharf: the repository and its password.
    #[command(subcommand)]
    Key(KeyCommand),
}

#[derive(Debug, clap::Subcommand)]
pub enum KeyCommand {
    /// Print the repository's location and password (needs --reveal; recorded in the ledger).
    Export(KeyExportArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The datastore (all with `backup:` when absent).
    pub service: Option<String>,
    /// Return once the jobs started instead of waiting for them.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only this datastore's snapshots.
    pub service: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The job's id (from `run`, `drill`, `restore` or `list`).
    pub id: u64,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Read and decrypt every pack, not only the structure (restic check --read-data).
    #[arg(long)]
    pub read_data: bool,
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// The datastore (all with `backup:` when absent).
    pub service: Option<String>,
    /// Say what would be forgotten; forget nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, clap::Args)]
pub struct KeyExportArgs {
    /// Really print the password (the reveal is recorded in the ledger).
    #[arg(long)]
    pub reveal: bool,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The datastore to restore.
    pub service: String,
    /// The snapshot (an id or its prefix; the latest when absent).
    #[arg(long, value_name = "ID")]
    pub backup: Option<String>,
    /// Into a throwaway server of the datastore's kind, checked like a drill.
    #[arg(long, conflicts_with_all = ["confirm", "to"])]
    pub sandbox: bool,
    /// Into another server of the datastore's kind; a password goes through a secret:
    /// `--to '${secret:STAGING_DB_URL}'` (argv is visible to every process).
    #[arg(long, value_name = "URL", conflicts_with = "confirm")]
    pub to: Option<String>,
    /// Into the running datastore, replacing its data; its dependents are stopped around it.
    #[arg(long)]
    pub confirm: bool,
}

#[derive(Debug, clap::Args)]
pub struct DrillArgs {
    /// The datastore whose backup to drill.
    pub service: String,
    /// The snapshot (an id or its prefix; the latest when absent).
    #[arg(long, value_name = "ID")]
    pub backup: Option<String>,
}

pub fn run(global: &Global, command: BackupCommand) -> anyhow::Result<ExitStatus> {
    match command {
        BackupCommand::Run(args) => {
            let request = BackupRequest {
                service: args.service,
            };
            start(global, "/v1/backups", &request, !args.no_wait)
        }
        BackupCommand::Prune(args) => {
            let request = PruneRequest {
                service: args.service,
                dry_run: args.dry_run,
            };
            start(global, "/v1/backups/prune", &request, true)
        }
        BackupCommand::Verify(args) => {
            let request = VerifyRequest {
                read_data: args.read_data,
            };
            start(global, "/v1/backups/verify", &request, true)
        }
        BackupCommand::Show(args) => show(global, args.id),
        BackupCommand::List(args) => list(global, args.service.as_deref()),
        BackupCommand::Key(KeyCommand::Export(args)) => key_export(global, args.reveal),
    }
}

/// `wharf restore`.
pub fn restore(global: &Global, args: RestoreArgs) -> anyhow::Result<ExitStatus> {
    if let Some(url) = &args.to
        && !url.contains("${secret:")
        && wharf_api::backups::url_holds_password(url)
    {
        eprintln!(
            "error: --to holds a password, which every process on this machine can read in argv; store the URL as a secret and pass --to '${{secret:NAME}}'"
        );
        return Ok(ExitStatus::Invalid);
    }
    if !args.sandbox && !args.confirm && args.to.is_none() {
        eprintln!(
            "error: say where to restore {}: --sandbox (a throwaway server, checked like a drill), --to URL (another server) or --confirm (into the running datastore, replacing its data)",
            args.service
        );
        return Ok(ExitStatus::Invalid);
    }
    let request = RestoreRequest {
        service: args.service,
        snapshot: args.backup,
        target: match (args.sandbox, args.to) {
            (true, _) => RestoreTarget::Sandbox,
            (false, Some(url)) => RestoreTarget::Url { url },
            (false, None) => RestoreTarget::InPlace { confirm: true },
        },
    };
    start(global, "/v1/restores", &request, true)
}

/// `wharf drill`.
pub fn drill(global: &Global, args: DrillArgs) -> anyhow::Result<ExitStatus> {
    let request = DrillRequest {
        service: args.service,
        snapshot: args.backup,
    };
    start(global, "/v1/drills", &request, true)
}

/// Sends the request; a refusal is printed and is exit 2.
async fn request<A: serde::de::DeserializeOwned>(
    state_dir: &Path,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<Result<A, ExitStatus>> {
    match client::call_ok(state_dir, method, path, body).await {
        Ok(value) => Ok(Ok(serde_json::from_value(value).with_context(|| {
            format!("the control plane's answer to {method} {path} is unreadable")
        })?)),
        Err(err) => match err.downcast_ref::<ApiRejected>() {
            Some(rejected) => {
                eprintln!("error: {rejected}");
                // The request was wrong (4xx): invalid input; the control plane or the
                // repository failed it (5xx): the checked thing failed.
                Ok(Err(if rejected.status >= 500 {
                    ExitStatus::Failed
                } else {
                    ExitStatus::Invalid
                }))
            }
            None => Err(err),
        },
    }
}

fn start(
    global: &Global,
    path: &str,
    body: &impl Serialize,
    wait: bool,
) -> anyhow::Result<ExitStatus> {
    let state_dir = global.state_dir();
    let body = serde_json::to_value(body)?;
    block_on(async {
        let answer: serde_json::Value = match request(&state_dir, "POST", path, Some(body)).await? {
            Ok(answer) => answer,
            Err(status) => return Ok(status),
        };
        // A restore over live data where the environment requires approvals waits for them.
        if answer.get("approvals_required").is_some() {
            let pending: wharf_api::PendingDeploy = serde_json::from_value(answer)?;
            match global.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&pending)?),
                Output::Human => {
                    crate::cmd::access::print_request(&pending);
                    eprintln!(
                        "waits for {} approval(s) by others: `wharf approve {} --reason …`",
                        pending.approvals_required, pending.id
                    );
                }
            }
            return Ok(ExitStatus::Ok);
        }
        let started: JobsStarted = serde_json::from_value(answer)
            .with_context(|| format!("the control plane's answer to POST {path} is unreadable"))?;
        let jobs = if wait {
            follow(&state_dir, started.jobs, global.output).await?
        } else {
            started.jobs
        };
        match global.output {
            Output::Json => println!("{}", serde_json::to_string_pretty(&jobs)?),
            Output::Human => {
                for job in &jobs {
                    println!("{}", describe(job));
                }
            }
        }
        Ok(if jobs.iter().any(|j| j.state == JobState::Failed) {
            ExitStatus::Failed
        } else {
            ExitStatus::Ok
        })
    })
}

/// Polls every job until it ends; a terminal sees a spinner per job.
async fn follow(state_dir: &Path, mut jobs: Vec<Job>, output: Output) -> anyhow::Result<Vec<Job>> {
    let live = output == Output::Human && std::io::stderr().is_terminal();
    let bars: Vec<ProgressBar> = jobs
        .iter()
        .map(|job| {
            let bar = if live {
                ProgressBar::new_spinner()
            } else {
                ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
            };
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message(format!("{} {}", job.kind.as_str(), subject(job)));
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        })
        .collect();
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while jobs.iter().any(|j| !j.finished()) {
        poll.tick().await;
        for (job, bar) in jobs.iter_mut().zip(&bars) {
            if job.finished() {
                continue;
            }
            let path = format!("/v1/backups/jobs/{}", job.id);
            match request::<Job>(state_dir, "GET", &path, None).await? {
                Ok(next) => {
                    if next.finished() {
                        bar.finish_and_clear();
                    }
                    *job = next;
                }
                Err(_) => {
                    bar.abandon();
                    anyhow::bail!("lost job {} (the control plane no longer knows it)", job.id);
                }
            }
        }
    }
    Ok(jobs)
}

fn subject(job: &Job) -> String {
    job.service
        .clone()
        .unwrap_or_else(|| "repository".to_owned())
}

fn bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

fn millis(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// One job in a few lines: what, on what, how it ended, and the figures it has.
fn describe(job: &Job) -> String {
    let state = match job.state {
        JobState::Running => "running",
        JobState::Succeeded => "ok",
        JobState::Failed => "FAILED",
    };
    let mut line = format!(
        "job {}  {} {}  {state}",
        job.id,
        job.kind.as_str(),
        subject(job)
    );
    if let Some(target) = &job.target {
        line.push_str(&format!("  → {target}"));
    }
    if let Some(snapshot) = &job.snapshot {
        line.push_str(&format!(
            "  snapshot {}",
            &snapshot[..snapshot.len().min(8)]
        ));
    }
    if let Some(n) = job.bytes {
        line.push_str(&format!("  {}", bytes(n)));
    }
    if let Some(n) = job.added {
        line.push_str(&format!(" ({} new)", bytes(n)));
    }
    if let Some(ms) = job.duration_ms {
        line.push_str(&format!("  in {}", millis(ms)));
    }
    if let Some(ms) = job.rto_ms {
        line.push_str(&format!("  RTO {}", millis(ms)));
    }
    if let Some(s) = job.rpo_s {
        line.push_str(&format!("  RPO {s} s"));
    }
    for check in &job.checks {
        let mark = if check.passed { "ok  " } else { "FAIL" };
        line.push_str(&format!("\n  {mark} {}", check.name));
        if !check.passed {
            line.push_str(&format!(
                ": expected {}, found {}",
                check.expected, check.found
            ));
        }
    }
    if !job.forgotten.is_empty() {
        let ids: Vec<&str> = job
            .forgotten
            .iter()
            .map(|id| &id[..id.len().min(8)])
            .collect();
        line.push_str(&format!("\n  forgotten: {}", ids.join(", ")));
    }
    if let Some(error) = &job.error {
        line.push_str(&format!("\n  error: {error}"));
    }
    line
}

fn show(global: &Global, id: u64) -> anyhow::Result<ExitStatus> {
    let state_dir = global.state_dir();
    block_on(async {
        let path = format!("/v1/backups/jobs/{id}");
        let job: Job = match request(&state_dir, "GET", &path, None).await? {
            Ok(job) => job,
            Err(status) => return Ok(status),
        };
        match global.output {
            Output::Json => println!("{}", serde_json::to_string_pretty(&job)?),
            Output::Human => println!("{}", describe(&job)),
        }
        Ok(if job.state == JobState::Failed {
            ExitStatus::Failed
        } else {
            ExitStatus::Ok
        })
    })
}

fn list(global: &Global, service: Option<&str>) -> anyhow::Result<ExitStatus> {
    let state_dir = global.state_dir();
    block_on(async {
        let mut snapshots: SnapshotList =
            match request(&state_dir, "GET", "/v1/backups/snapshots", None).await? {
                Ok(list) => list,
                Err(status) => return Ok(status),
            };
        let overview: BackupOverview = match request(&state_dir, "GET", "/v1/backups", None).await?
        {
            Ok(overview) => overview,
            Err(status) => return Ok(status),
        };
        if let Some(name) = service {
            if !overview.datastores.iter().any(|d| d.service == name) {
                eprintln!("error: `{name}` is not a datastore with `backup:` in the manifest");
                return Ok(ExitStatus::Invalid);
            }
            snapshots.snapshots.retain(|s| s.service == name);
        }
        let problem = overview
            .datastores
            .iter()
            .filter(|d| service.is_none_or(|name| name == d.service))
            .any(|d| d.health.is_problem());
        match global.output {
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "repository": snapshots.repository,
                    "datastores": overview.datastores,
                    "snapshots": snapshots.snapshots,
                }))?
            ),
            Output::Human => {
                println!("repository {}", snapshots.repository);
                let mut table = comfy_table::Table::new();
                table.load_preset(comfy_table::presets::NOTHING);
                table.set_header([
                    "DATASTORE",
                    "KIND",
                    "SCHEDULE",
                    "HEALTH",
                    "LAST GOOD",
                    "NEXT",
                ]);
                for d in &overview.datastores {
                    if service.is_some_and(|name| name != d.service) {
                        continue;
                    }
                    let health = d.health.as_str().to_owned();
                    table.add_row([
                        d.service.clone(),
                        d.kind.clone(),
                        d.schedule.clone(),
                        health,
                        d.last_success.clone().unwrap_or_else(|| "never".into()),
                        d.next_due.clone().unwrap_or_default(),
                    ]);
                }
                println!("{table}");
                for d in &overview.datastores {
                    if let Some(reason) = &d.reason {
                        println!("  {}: {reason}", d.service);
                    }
                }
                let mut table = comfy_table::Table::new();
                table.load_preset(comfy_table::presets::NOTHING);
                table.set_header(["SNAPSHOT", "TIME", "DATASTORE", "KIND", "SIZE", "ADDED"]);
                for s in &snapshots.snapshots {
                    table.add_row([
                        s.id[..s.id.len().min(8)].to_owned(),
                        s.time.clone(),
                        s.service.clone(),
                        s.kind.clone(),
                        bytes(s.bytes),
                        bytes(s.added),
                    ]);
                }
                println!();
                if snapshots.snapshots.is_empty() {
                    println!("no snapshots yet");
                } else {
                    println!("{table}");
                }
            }
        }
        Ok(if problem {
            ExitStatus::Failed
        } else {
            ExitStatus::Ok
        })
    })
}

fn key_export(global: &Global, reveal: bool) -> anyhow::Result<ExitStatus> {
    let state_dir = global.state_dir();
    // Where the manifest put it, as the running control plane says; else the default folder.
    let repository = block_on(async {
        Ok(
            match client::call_ok(&state_dir, "GET", "/v1/backups", None).await {
                Ok(value) => serde_json::from_value::<BackupOverview>(value)
                    .map(|o| o.repository)
                    .ok(),
                Err(_) => None,
            },
        )
    })?
    .unwrap_or_else(|| {
        // No control plane to ask: the manifest says where, else the default folder.
        let stack = crate::cmd::secret::load_stack(global)
            .ok()
            .and_then(Result::ok);
        wharf_control::backup_repository_text(
            &state_dir,
            &crate::cmd::secret::manifest_dir(global),
            stack.as_ref().and_then(|s| s.backups.as_ref()),
        )
    });
    if !reveal {
        eprintln!(
            "error: this prints the backup repository's password; add --reveal (the reveal is recorded in the ledger)"
        );
        return Ok(ExitStatus::Invalid);
    }
    eprintln!(
        "repository: {repository} (a restic repository: `restic -r {repository} snapshots` with this password{})",
        if repository.starts_with("s3:") {
            " and the S3 keys in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
        } else {
            ""
        }
    );
    crate::cmd::secret::run(
        global,
        crate::cmd::secret::SecretCommand::Get(crate::cmd::secret::GetArgs {
            name: wharf_control::BACKUP_PASSWORD_SECRET.to_owned(),
            reveal: true,
            version: None,
        }),
    )
}
