//! `wharf rollout status|pause|resume|promote|abort SERVICE`, and what `deploy` and
//! `rollback` share: starting a rollout through the API and following it to its end.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use wharf_api::{RolloutOutcome, RolloutView};

use crate::cli::{Global, Output};
use crate::client::{self, ApiRejected};
use crate::cmd::rollout_view;
use crate::exit::ExitStatus;

/// How many history entries `rollout status` shows.
const HISTORY_SHOWN: usize = 10;

/// How often `--watch` asks for the rollout.
const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, clap::Subcommand)]
pub enum RolloutSubcommand {
    /// The service's current or latest rollout: phase, step, weights, traffic per version,
    /// the latest verdict and recent history. Exit 1 when it rolled back or there is none.
    Status(ServiceArg),
    /// Hold the rollout where it is (weights stay; deadlines stop counting).
    Pause(ServiceArg),
    /// Continue a paused rollout.
    Resume(ServiceArg),
    /// Skip the remaining canary steps, or switch a blue-green preview now.
    Promote(ServiceArg),
    /// Stop the rollout and send all traffic back to the stable version.
    Abort(ServiceArg),
}

#[derive(Debug, clap::Args)]
pub struct ServiceArg {
    /// The service whose rollout to act on.
    pub service: String,
}

pub fn run(global: &Global, command: RolloutSubcommand) -> anyhow::Result<ExitStatus> {
    let (service, word) = match &command {
        RolloutSubcommand::Status(arg) => return block_on(status(global, &arg.service)),
        RolloutSubcommand::Pause(arg) => (&arg.service, "pause"),
        RolloutSubcommand::Resume(arg) => (&arg.service, "resume"),
        RolloutSubcommand::Promote(arg) => (&arg.service, "promote"),
        RolloutSubcommand::Abort(arg) => (&arg.service, "abort"),
    };
    let path = format!("/v1/services/{service}/rollout/{word}");
    block_on(async {
        let view = match request_view(&global.state_dir(), "POST", &path, None).await? {
            Ok(view) => view,
            Err(status) => return Ok(status),
        };
        match global.output {
            Output::Json => print_json(&view)?,
            Output::Human => println!(
                "{}: rollout #{} is now {}",
                view.service, view.id, view.phase
            ),
        }
        Ok(ExitStatus::Ok)
    })
}

/// A current-thread runtime for one command.
pub(crate) fn block_on<T>(
    future: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

/// Sends a request answered by a [`RolloutView`]. A refusal (unknown service, a rollout
/// already running, nothing to roll back) is printed and becomes exit 2; a control plane that
/// is not running stays an error, worded as `wharf restart` words it.
pub(crate) async fn request_view(
    state_dir: &Path,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Result<RolloutView, ExitStatus>> {
    match client::call_ok(state_dir, method, path, body).await {
        Ok(value) => Ok(Ok(decode(value)?)),
        Err(err) if err.is::<ApiRejected>() => {
            eprintln!("error: {err}");
            Ok(Err(ExitStatus::Invalid))
        }
        Err(err) => Err(err),
    }
}

fn decode(value: Value) -> anyhow::Result<RolloutView> {
    serde_json::from_value(value).context("the control plane sent a rollout this wharf cannot read")
}

fn print_json(view: &RolloutView) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(view)?);
    Ok(())
}

async fn status(global: &Global, service: &str) -> anyhow::Result<ExitStatus> {
    let path = format!("/v1/services/{service}/rollout");
    let view = match client::call_ok(&global.state_dir(), "GET", &path, None).await {
        Ok(value) => decode(value)?,
        Err(err) => {
            let Some(rejected) = err.downcast_ref::<ApiRejected>() else {
                return Err(err);
            };
            eprintln!("error: {rejected}");
            return Ok(if rejected.code == Some(wharf_api::ErrorCode::NoRollout) {
                ExitStatus::Failed
            } else {
                ExitStatus::Invalid
            });
        }
    };
    match global.output {
        Output::Json => print_json(&view)?,
        Output::Human => println!(
            "{}",
            rollout_view::status(&view, jiff::Timestamp::now(), HISTORY_SHOWN)
        ),
    }
    Ok(match view.outcome {
        None | Some(RolloutOutcome::Succeeded) => ExitStatus::Ok,
        Some(RolloutOutcome::RolledBack) => ExitStatus::Failed,
    })
}

/// After a deploy or rollback was accepted: without `--watch` one summary line (or the view
/// as JSON) and exit 0; with it, follow the rollout to its end.
pub(crate) async fn started(
    global: &Global,
    view: RolloutView,
    watch: bool,
) -> anyhow::Result<ExitStatus> {
    if watch {
        return follow(&global.state_dir(), view, global.output).await;
    }
    match global.output {
        Output::Json => print_json(&view)?,
        Output::Human => println!("{}", rollout_view::summary(&view)),
    }
    Ok(ExitStatus::Ok)
}

/// Polls the service's rollout until it has an outcome: exit 0 when it succeeded, 1 when it
/// rolled back (or another rollout replaced it). A terminal gets a live view with a progress
/// bar; a pipe gets one line per change; `--output json` prints the final view on stdout.
async fn follow(
    state_dir: &Path,
    first: RolloutView,
    output: Output,
) -> anyhow::Result<ExitStatus> {
    let path = format!("/v1/services/{}/rollout", first.service);
    let mut display = Display::new(output, &first);
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut view = first;
    loop {
        display.show(&view);
        if view.is_done() {
            break;
        }
        poll.tick().await;
        let next = match client::call_ok(state_dir, "GET", &path, None).await {
            Ok(value) => decode(value)?,
            Err(err) if err.is::<ApiRejected>() => {
                display.abandon();
                eprintln!("error: lost the rollout: {err}");
                return Ok(ExitStatus::Failed);
            }
            Err(err) => {
                display.abandon();
                return Err(err);
            }
        };
        if next.id != view.id {
            display.abandon();
            eprintln!(
                "rollout #{} of {} was replaced by rollout #{}",
                view.id, view.service, next.id
            );
            return Ok(ExitStatus::Failed);
        }
        view = next;
    }
    display.finish(&view)?;
    Ok(if view.outcome == Some(RolloutOutcome::Succeeded) {
        ExitStatus::Ok
    } else {
        ExitStatus::Failed
    })
}

/// Where `--watch` shows the rollout.
enum Display {
    /// A terminal: the live view redrawn in place above a progress bar.
    Live(ProgressBar),
    /// A pipe or a log: one line each time the phase, step, weights or verdict change (on
    /// stderr with `--output json`, which keeps stdout for the final view).
    Lines { last: Option<String>, json: bool },
}

impl Display {
    fn new(output: Output, first: &RolloutView) -> Display {
        if output == Output::Human && std::io::stdout().is_terminal() {
            let (_, len) = rollout_view::progress(first);
            let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stdout());
            let style = ProgressStyle::with_template("{msg}\n  [{bar:40}] {prefix}")
                .expect("the template is valid")
                .progress_chars("=> ");
            bar.set_style(style);
            Display::Live(bar)
        } else {
            Display::Lines {
                last: None,
                json: output == Output::Json,
            }
        }
    }

    fn show(&mut self, view: &RolloutView) {
        match self {
            Display::Live(bar) => {
                let (pos, len) = rollout_view::progress(view);
                bar.set_length(len);
                bar.set_position(pos);
                bar.set_prefix(
                    rollout_view::step_text(view).unwrap_or_else(|| view.phase.to_string()),
                );
                bar.set_message(rollout_view::live(view, jiff::Timestamp::now()));
            }
            Display::Lines { last, json } => {
                let line = rollout_view::state_line(view);
                if last.as_deref() != Some(line.as_str()) {
                    if *json {
                        eprintln!("{line}");
                    } else {
                        println!("{line}");
                    }
                    *last = Some(line);
                }
            }
        }
    }

    /// Leaves the last frame on screen and says how the rollout ended.
    fn finish(self, view: &RolloutView) -> anyhow::Result<()> {
        let outcome = rollout_view::outcome_line(view).unwrap_or_default();
        match self {
            Display::Live(bar) => {
                bar.finish();
                println!("{outcome}");
            }
            Display::Lines { json: false, .. } => println!("{outcome}"),
            Display::Lines { json: true, .. } => {
                eprintln!("{outcome}");
                print_json(view)?;
            }
        }
        Ok(())
    }

    /// Stops redrawing so an error printed next is not overwritten.
    fn abandon(&self) {
        if let Display::Live(bar) = self {
            bar.abandon();
        }
    }
}
