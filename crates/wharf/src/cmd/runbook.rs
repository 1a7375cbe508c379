//! `wharf runbook list|show|run|runs|status|resume|approve|cancel`: the manifest's runbooks,
//! run by the running control plane step by step. `run --dry-run` prints the resolved plan —
//! each step with its parameters filled in, what it touches, the blast-radius and rate-limit
//! verdicts — and changes nothing. Exit 0 when the run (or request) went well, 1 when the run
//! failed or was cancelled, 2 when the request was refused (unknown runbook, a parameter of the
//! wrong type, a limit exceeded): then nothing was started.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;
use wharf_api::{Run, RunList, RunPlan, RunStarted, RunState, RunbookList, StepState};

use crate::cli::{Global, Output};
use crate::client::{self, ApiRejected};
use crate::cmd::rollout::block_on;
use crate::exit::ExitStatus;

/// How often a run is asked about while `--wait` follows it.
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, clap::Subcommand)]
pub enum RunbookCommand {
    /// The manifest's runbooks, with their parameters and limits.
    List,
    /// One runbook: description, parameters, steps, limits.
    Show(ShowArgs),
    /// Run a runbook (--dry-run: print the plan and change nothing).
    Run(RunArgs),
    /// The recent runs, newest first.
    Runs,
    /// One run: its state and each step's result. Exit 1 when it failed or was cancelled.
    Status(RunIdArgs),
    /// Resume a failed run from its failed step.
    Resume(ResumeArgs),
    /// Approve the step a run waits at; who and why go to the ledger.
    Approve(ApproveArgs),
    /// Cancel a run; it does not resume.
    Cancel(CancelArgs),
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The runbook.
    pub name: String,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The runbook.
    pub name: String,
    /// A parameter, `NAME=VALUE` (checked against its declared type); repeatable.
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Print the plan (steps resolved, what they touch, the limits' verdicts); change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Follow the run to its end (through approvals someone else gives).
    #[arg(long)]
    pub wait: bool,
    /// How long --wait follows the run.
    #[arg(long, default_value = "1h", value_parser = crate::cmd::up::parse_duration)]
    pub wait_timeout: Duration,
}

#[derive(Debug, clap::Args)]
pub struct RunIdArgs {
    /// The run's number.
    pub run: u64,
}

#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    /// The run's number.
    pub run: u64,
    /// Follow the run to its end.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait follows the run.
    #[arg(long, default_value = "1h", value_parser = crate::cmd::up::parse_duration)]
    pub wait_timeout: Duration,
}

#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    /// The run's number.
    pub run: u64,
    /// Why the step may go on (recorded in the ledger with who approved).
    #[arg(long)]
    pub reason: String,
}

#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    /// The run's number.
    pub run: u64,
    /// Why (recorded in the ledger).
    #[arg(long)]
    pub reason: Option<String>,
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("`{text}` is not NAME=VALUE")),
    }
}

pub fn run(global: &Global, command: RunbookCommand) -> anyhow::Result<ExitStatus> {
    let state_dir = global.state_dir();
    let output = global.output;
    block_on(async move {
        match command {
            RunbookCommand::List => list(&state_dir, output, None).await,
            RunbookCommand::Show(args) => list(&state_dir, output, Some(&args.name)).await,
            RunbookCommand::Run(args) => start(&state_dir, output, &args).await,
            RunbookCommand::Runs => runs(&state_dir, output).await,
            RunbookCommand::Status(args) => {
                let run =
                    match request::<Run>(&state_dir, "GET", &run_path(args.run, ""), None).await? {
                        Ok(run) => run,
                        Err(status) => return Ok(status),
                    };
                show_run(output, &run)?;
                Ok(verdict(&run))
            }
            RunbookCommand::Resume(args) => {
                let path = run_path(args.run, "/resume");
                let run = match request::<Run>(&state_dir, "POST", &path, None).await? {
                    Ok(run) => run,
                    Err(status) => return Ok(status),
                };
                follow(&state_dir, output, run, args.wait, args.wait_timeout).await
            }
            RunbookCommand::Approve(args) => {
                let body = serde_json::json!({"reason": args.reason});
                let path = run_path(args.run, "/approve");
                let run = match request::<Run>(&state_dir, "POST", &path, Some(body)).await? {
                    Ok(run) => run,
                    Err(status) => return Ok(status),
                };
                show_run(output, &run)?;
                Ok(verdict(&run))
            }
            RunbookCommand::Cancel(args) => {
                let body = serde_json::json!({"reason": args.reason});
                let path = run_path(args.run, "/cancel");
                let run = match request::<Run>(&state_dir, "POST", &path, Some(body)).await? {
                    Ok(run) => run,
                    Err(status) => return Ok(status),
                };
                show_run(output, &run)?;
                Ok(ExitStatus::Ok)
            }
        }
    })
}

fn run_path(id: u64, tail: &str) -> String {
    format!("/v1/runbooks/runs/{id}{tail}")
}

/// Sends a request; a refusal (unknown runbook or run, a wrong parameter, a limit) is
/// printed and becomes exit 2, a control plane that is not running stays an error.
async fn request<T: serde::de::DeserializeOwned>(
    state_dir: &Path,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Result<T, ExitStatus>> {
    match client::call_ok(state_dir, method, path, body).await {
        Ok(value) => Ok(Ok(serde_json::from_value(value)
            .context("the control plane sent an answer this wharf cannot read")?)),
        Err(err) if err.is::<ApiRejected>() => {
            eprintln!("error: {err}");
            Ok(Err(ExitStatus::Invalid))
        }
        Err(err) => Err(err),
    }
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn list(state_dir: &Path, output: Output, name: Option<&str>) -> anyhow::Result<ExitStatus> {
    let list = match request::<RunbookList>(state_dir, "GET", "/v1/runbooks", None).await? {
        Ok(list) => list,
        Err(status) => return Ok(status),
    };
    let books: Vec<_> = list
        .runbooks
        .iter()
        .filter(|b| name.is_none_or(|n| b.name == n))
        .collect();
    if let Some(name) = name
        && books.is_empty()
    {
        let names: Vec<&str> = list.runbooks.iter().map(|b| b.name.as_str()).collect();
        eprintln!(
            "error: the manifest has no runbook `{name}` (runbooks: {})",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        );
        return Ok(ExitStatus::Invalid);
    }
    if output == Output::Json {
        match name {
            Some(_) => print_json(&books[0])?,
            None => print_json(&list)?,
        }
        return Ok(ExitStatus::Ok);
    }
    if books.is_empty() {
        println!("no runbooks (declare them under `runbooks:` in the manifest)");
    }
    for book in books {
        println!(
            "{}{}",
            book.name,
            book.description
                .as_deref()
                .map(|d| format!(" — {d}"))
                .unwrap_or_default()
        );
        if name.is_none() {
            continue;
        }
        for param in &book.params {
            println!(
                "  param {} ({}){}{}",
                param.name,
                param.kind,
                param
                    .default
                    .as_deref()
                    .map(|d| format!(", default {d}"))
                    .unwrap_or_default(),
                param
                    .description
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            );
        }
        for (number, step) in book.steps.iter().enumerate() {
            println!("  {}. {step}", number + 1);
        }
        if let Some(limit) = &book.rate_limit {
            println!("  rate limit: {limit}");
        }
        if let Some(cap) = &book.blast_radius {
            println!("  blast radius: at most {cap}");
        }
    }
    Ok(ExitStatus::Ok)
}

async fn start(state_dir: &Path, output: Output, args: &RunArgs) -> anyhow::Result<ExitStatus> {
    let params: BTreeMap<String, String> = args.params.iter().cloned().collect();
    let body = serde_json::json!({"params": params, "dry_run": args.dry_run});
    let path = format!("/v1/runbooks/{}/runs", args.name);
    let started = match request::<RunStarted>(state_dir, "POST", &path, Some(body)).await? {
        Ok(started) => started,
        Err(status) => return Ok(status),
    };
    if args.dry_run {
        if output == Output::Json {
            print_json(&started.plan)?;
        } else {
            show_plan(&started.plan);
        }
        let fits = started.plan.blast_radius.ok && started.plan.rate_limit.ok;
        return Ok(if fits {
            ExitStatus::Ok
        } else {
            ExitStatus::Invalid
        });
    }
    let run = started
        .run
        .context("the control plane answered a run request without the run")?;
    if output == Output::Human {
        eprintln!("run {} of {} started", run.id, run.runbook);
    }
    follow(state_dir, output, run, args.wait, args.wait_timeout).await
}

fn show_plan(plan: &RunPlan) {
    println!(
        "plan of runbook {} (dry run: nothing changes)",
        plan.runbook
    );
    for (name, value) in &plan.params {
        println!("  param {name} = {value}");
    }
    for step in &plan.steps {
        let touches = if step.touches.is_empty() {
            String::new()
        } else {
            format!(
                "  [touches {}: {} instance(s)]",
                step.touches.join(", "),
                step.instances
            )
        };
        println!("  {}. {}{touches}", step.number, step.detail);
    }
    let mark = |ok: bool| if ok { "ok" } else { "REFUSED" };
    println!(
        "blast radius: {} — {}",
        mark(plan.blast_radius.ok),
        plan.blast_radius.detail
    );
    println!(
        "rate limit: {} — {}",
        mark(plan.rate_limit.ok),
        plan.rate_limit.detail
    );
}

/// Prints the run; with `wait`, polls it until it ends (or the timeout passes).
async fn follow(
    state_dir: &Path,
    output: Output,
    mut run: Run,
    wait: bool,
    timeout: Duration,
) -> anyhow::Result<ExitStatus> {
    if wait {
        let deadline = Instant::now() + timeout;
        let mut told = false;
        while run.state.is_active() && Instant::now() < deadline {
            if run.state == RunState::WaitingApproval && !told && output == Output::Human {
                eprintln!(
                    "run {} waits for approval at step {}: `wharf runbook approve {} --reason TEXT`",
                    run.id,
                    run.current_step.unwrap_or_default(),
                    run.id
                );
                told = true;
            }
            tokio::time::sleep(POLL).await;
            run = match request::<Run>(state_dir, "GET", &run_path(run.id, ""), None).await? {
                Ok(run) => run,
                Err(status) => return Ok(status),
            };
        }
    }
    show_run(output, &run)?;
    Ok(verdict(&run))
}

fn verdict(run: &Run) -> ExitStatus {
    match run.state {
        RunState::Failed | RunState::Cancelled => ExitStatus::Failed,
        RunState::Running | RunState::WaitingApproval | RunState::Succeeded => ExitStatus::Ok,
    }
}

fn show_run(output: Output, run: &Run) -> anyhow::Result<()> {
    if output == Output::Json {
        return print_json(run);
    }
    println!(
        "run {} of {}: {} (by {}, {})",
        run.id,
        run.runbook,
        run.state.as_str(),
        run.actor,
        run.trigger
    );
    for (name, value) in &run.params {
        println!("  param {name} = {value}");
    }
    for step in &run.steps {
        let mark = match step.state {
            StepState::Succeeded => "ok",
            StepState::Failed => "FAILED",
            StepState::Running => "running",
            StepState::WaitingApproval => "waiting",
            StepState::Pending => "-",
            StepState::Cancelled => "cancelled",
        };
        println!(
            "  {}. [{mark}] {}{}",
            step.plan.number,
            step.plan.detail,
            step.result
                .as_deref()
                .map(|r| format!(" — {r}"))
                .unwrap_or_default()
        );
        if let Some(output) = &step.output {
            for line in output
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                println!("       | {line}");
            }
        }
    }
    if let Some(reason) = &run.reason {
        println!("  reason: {reason}");
    }
    if run.state == RunState::Failed {
        println!(
            "  resume it from its failed step: wharf runbook resume {}",
            run.id
        );
    }
    Ok(())
}

async fn runs(state_dir: &Path, output: Output) -> anyhow::Result<ExitStatus> {
    let list = match request::<RunList>(state_dir, "GET", "/v1/runbooks/runs", None).await? {
        Ok(list) => list,
        Err(status) => return Ok(status),
    };
    if output == Output::Json {
        print_json(&list)?;
        return Ok(ExitStatus::Ok);
    }
    if list.runs.is_empty() {
        println!("no runs");
    }
    for run in &list.runs {
        println!(
            "{:>4}  {:<20} {:<17} step {}/{}  {}  by {}",
            run.id,
            run.runbook,
            run.state.as_str(),
            run.current_step.unwrap_or(run.steps.len() as u32),
            run.steps.len(),
            run.started_at,
            run.actor
        );
    }
    Ok(ExitStatus::Ok)
}
