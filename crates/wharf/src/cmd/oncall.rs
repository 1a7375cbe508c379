//! `wharf silence add|list|expire` and `wharf incident declare|update|ack|assign|resolve|list|
//! show|postmortem`: the on-call loop. Changes go through the one writer (the running control
//! plane's API, or `wharf-ops` under `control.lock` when none runs), each with its ledger
//! entry; reads come from the state database directly, so `show` and `postmortem` work while
//! the stack is down.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use wharf_api::{
    AssignRoleRequest, CreateSilenceRequest, DeclareIncidentRequest, Incident, IncidentSeverity,
    IncidentStatus, IncidentStepRequest, IncidentUpdateRequest, Matcher, Silence,
};

use crate::cli::{Global, Output};
use crate::cmd::audit::actor;
use crate::exit::ExitStatus;
use crate::manifest_file::ManifestFile;
use crate::writer::{self, Route};

#[derive(Debug, clap::Subcommand)]
pub enum SilenceCommand {
    /// Hold back pages matching every --match until the silence ends (--for, at most 30d).
    /// A page already sent still gets its resolve; one held is sent if still open at the end.
    Add(SilenceAddArgs),
    /// The silences in force (--all: ended ones too).
    List(SilenceListArgs),
    /// End a silence now.
    Expire(SilenceExpireArgs),
}

#[derive(Debug, clap::Args)]
pub struct SilenceAddArgs {
    /// `label=value` or `label!=value`; labels: service, alert, severity, root, or one an alert
    /// sets. Repeat for more (all must match).
    #[arg(long = "match", value_name = "MATCHER", required = true)]
    pub matchers: Vec<String>,
    /// How long it lasts (`30m`, `2h`, `1d`).
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: String,
    /// Why (shown with it and in the ledger).
    #[arg(long)]
    pub reason: String,
    /// Who it is for (you when absent).
    #[arg(long)]
    pub owner: Option<String>,
    /// Declared maintenance: left out of the status page's uptime.
    #[arg(long)]
    pub maintenance: bool,
}

#[derive(Debug, clap::Args)]
pub struct SilenceListArgs {
    /// Ended silences too (the last 100).
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, clap::Args)]
pub struct SilenceExpireArgs {
    /// The silence (`s-3`).
    pub id: String,
}

#[derive(Debug, clap::Subcommand)]
pub enum IncidentCommand {
    /// Declare an incident; you are its commander unless --commander names someone.
    Declare(DeclareArgs),
    /// Post a status update (investigating, identified, monitoring, resolved).
    Update(UpdateArgs),
    /// Acknowledge: you take it on (MTTA counts to the first acknowledgement).
    Ack(StepArgs),
    /// Give a role (commander, comms, scribe…) to a person.
    Assign(AssignArgs),
    /// Resolve it (MTTR counts to here).
    Resolve(StepArgs),
    /// The open incidents (--all: every recent one).
    List(IncidentListArgs),
    /// One incident with its timeline from the ledger, MTTA and MTTR.
    Show(IncidentIdArgs),
    /// Write a postmortem draft in Markdown from the facts: timeline with times and actors,
    /// actions taken, affected services, signals around the window.
    Postmortem(PostmortemArgs),
}

#[derive(Debug, clap::Args)]
pub struct DeclareArgs {
    /// What is wrong, in a line.
    pub title: String,
    /// sev1 (critical) to sev4 (minor).
    #[arg(long, value_parser = parse_severity)]
    pub severity: IncidentSeverity,
    #[arg(long)]
    pub commander: Option<String>,
    /// A service concerned (repeat); its ledger entries join the timeline.
    #[arg(long = "service")]
    pub services: Vec<String>,
    /// A first status message.
    #[arg(long)]
    pub message: Option<String>,
    /// The message is shown on the public status page.
    #[arg(long)]
    pub public: bool,
}

#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// The incident (`INC-3`).
    pub id: String,
    #[arg(long)]
    pub message: String,
    #[arg(long, value_parser = parse_status)]
    pub status: Option<IncidentStatus>,
    #[arg(long, value_parser = parse_severity)]
    pub severity: Option<IncidentSeverity>,
    #[arg(long)]
    pub public: bool,
}

#[derive(Debug, clap::Args)]
pub struct StepArgs {
    /// The incident (`INC-3`).
    pub id: String,
    #[arg(long)]
    pub message: Option<String>,
    #[arg(long)]
    pub public: bool,
}

#[derive(Debug, clap::Args)]
pub struct AssignArgs {
    /// The incident (`INC-3`).
    pub id: String,
    #[arg(long)]
    pub role: String,
    #[arg(long)]
    pub person: String,
}

#[derive(Debug, clap::Args)]
pub struct IncidentListArgs {
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, clap::Args)]
pub struct IncidentIdArgs {
    /// The incident (`INC-3`).
    pub id: String,
}

#[derive(Debug, clap::Args)]
pub struct PostmortemArgs {
    /// The incident (`INC-3`).
    pub id: String,
    /// Write the draft to this file instead of stdout (refused if it exists).
    #[arg(long, value_name = "FILE")]
    pub to: Option<std::path::PathBuf>,
}

fn parse_severity(text: &str) -> Result<IncidentSeverity, String> {
    IncidentSeverity::parse(text).ok_or_else(|| format!("`{text}` is not sev1, sev2, sev3 or sev4"))
}

fn parse_status(text: &str) -> Result<IncidentStatus, String> {
    IncidentStatus::parse(text)
        .ok_or_else(|| format!("`{text}` is not investigating, identified, monitoring or resolved"))
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Runs one write: through the control plane's API when one runs, else the use case here.
fn write<T: serde::de::DeserializeOwned>(
    state_dir: &Path,
    method: &str,
    path: &str,
    body: &impl Serialize,
    local: impl FnOnce(
        &mut wharf_ops::read::StateDb,
        &wharf_ops::Actor,
    ) -> Result<T, wharf_ops::OpsError>,
) -> anyhow::Result<T> {
    match writer::route(state_dir)? {
        Route::Api => writer::call(state_dir, method, path, body),
        Route::Local(lock) => {
            let mut store = wharf_ops::read::open(&lock)?;
            Ok(local(&mut store, &wharf_ops::Actor(actor()))?)
        }
    }
}

/// The state database for reading, when the stack has one.
fn read_store(global: &Global) -> anyhow::Result<wharf_ops::read::StateDb> {
    let state_dir = global.state_dir();
    wharf_ops::read::open_existing(&state_dir)?.with_context(|| {
        format!(
            "no state in {}: nothing was silenced or declared here yet",
            state_dir.display()
        )
    })
}

pub fn silence(global: &Global, command: SilenceCommand) -> anyhow::Result<ExitStatus> {
    let state_dir = global.state_dir();
    match command {
        SilenceCommand::Add(args) => {
            let matchers = args
                .matchers
                .iter()
                .map(|m| Matcher::parse(m).map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let request = CreateSilenceRequest {
                matchers,
                owner: args.owner,
                reason: args.reason,
                duration: args.duration,
                maintenance: args.maintenance,
            };
            let silence: Silence = match writer::route(&state_dir)? {
                Route::Api => writer::call(&state_dir, "POST", "/v1/silences", &request)?,
                Route::Local(lock) => {
                    check_matchers(global, &request.matchers)?;
                    let mut store = wharf_ops::read::open(&lock)?;
                    wharf_ops::silences::create(
                        &mut store,
                        &wharf_ops::Actor(actor()),
                        &request,
                        jiff::Timestamp::now(),
                    )?
                }
            };
            match global.output {
                Output::Json => print_json(&silence)?,
                Output::Human => println!(
                    "silence {} until {} ({})",
                    silence.id,
                    silence.ends_at,
                    matchers_text(&silence)
                ),
            }
            Ok(ExitStatus::Ok)
        }
        SilenceCommand::Expire(args) => {
            let id = wharf_ops::silences::parse_id(&args.id)?;
            let path = format!("/v1/silences/{id}/expire");
            let silence: Silence = write(
                &state_dir,
                "POST",
                &path,
                &serde_json::json!({}),
                |store, actor| {
                    wharf_ops::silences::expire(store, actor, id, jiff::Timestamp::now())
                },
            )?;
            match global.output {
                Output::Json => print_json(&silence)?,
                Output::Human => println!("silence {} ended", silence.id),
            }
            Ok(ExitStatus::Ok)
        }
        SilenceCommand::List(args) => {
            let silences = match wharf_ops::read::open_existing(&state_dir)? {
                Some(store) => wharf_ops::silences::recent(&store, 100)?,
                None => Vec::new(),
            };
            let now = jiff::Timestamp::now();
            let silences: Vec<Silence> = silences
                .into_iter()
                .filter(|s| args.all || in_force(s, now))
                .collect();
            match global.output {
                Output::Json => print_json(&silences)?,
                Output::Human if silences.is_empty() => println!("no silences in force"),
                Output::Human => {
                    println!(
                        "{:<6} {:<28} {:<22} {:<12} REASON",
                        "ID", "MATCHERS", "ENDS", "OWNER"
                    );
                    for silence in &silences {
                        let ends = match &silence.expired_at {
                            Some(at) => format!("ended {}", short_time(at)),
                            None => short_time(&silence.ends_at),
                        };
                        println!(
                            "{:<6} {:<28} {:<22} {:<12} {}{}",
                            silence.id,
                            matchers_text(silence),
                            ends,
                            silence.owner,
                            silence.reason,
                            if silence.maintenance {
                                " [maintenance]"
                            } else {
                                ""
                            }
                        );
                    }
                }
            }
            Ok(ExitStatus::Ok)
        }
    }
}

fn in_force(silence: &Silence, now: jiff::Timestamp) -> bool {
    silence.expired_at.is_none()
        && silence
            .ends_at
            .parse::<jiff::Timestamp>()
            .is_ok_and(|end| now < end)
}

fn matchers_text(silence: &Silence) -> String {
    silence
        .matchers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// `2026-12-05T10:00:00.123Z` → `2026-12-05 10:00:00Z`.
fn short_time(text: &str) -> String {
    text.parse::<jiff::Timestamp>()
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|_| text.to_owned())
}

/// Whether the matchers could match a page of the manifest's stack (no control plane runs to
/// ask).
fn check_matchers(global: &Global, matchers: &[Matcher]) -> anyhow::Result<()> {
    let loaded = ManifestFile::read(global)?.load(None);
    let stack = loaded.stack.context(
        "cannot check the matchers: the manifest does not validate (see `wharf validate`)",
    )?;
    let services: Vec<&str> = stack.services.keys().map(String::as_str).collect();
    let alerts: Vec<&str> = stack.alerts.iter().map(|a| a.name.as_str()).collect();
    let labels: Vec<&str> = stack
        .alerts
        .iter()
        .flat_map(|a| a.labels.keys().map(String::as_str))
        .collect();
    wharf_api::silences::check_against(matchers, &services, &alerts, &labels)
        .map_err(anyhow::Error::msg)
}

/// The services the manifest declares, to check names when no control plane does.
fn check_services(global: &Global, services: &[String]) -> anyhow::Result<()> {
    if services.is_empty() {
        return Ok(());
    }
    let loaded = ManifestFile::read(global)?.load(None);
    let stack = loaded.stack.context(
        "cannot check the services: the manifest does not validate (see `wharf validate`)",
    )?;
    for service in services {
        if !stack.services.contains_key(service) {
            let known: Vec<&str> = stack.services.keys().map(String::as_str).collect();
            anyhow::bail!(
                "the stack has no service `{service}` (it has: {})",
                known.join(", ")
            );
        }
    }
    Ok(())
}

pub fn incident(global: &Global, command: IncidentCommand) -> anyhow::Result<ExitStatus> {
    let state_dir = global.state_dir();
    let now = jiff::Timestamp::now;
    let changed: Incident = match command {
        IncidentCommand::Declare(args) => {
            let request = DeclareIncidentRequest {
                title: args.title,
                severity: args.severity,
                commander: args.commander,
                services: args.services,
                message: args.message,
                public: args.public,
            };
            match writer::route(&state_dir)? {
                Route::Api => writer::call(&state_dir, "POST", "/v1/incidents", &request)?,
                Route::Local(lock) => {
                    check_services(global, &request.services)?;
                    let mut store = wharf_ops::read::open(&lock)?;
                    wharf_ops::incidents::declare(
                        &mut store,
                        &wharf_ops::Actor(actor()),
                        &request,
                        None,
                        now(),
                    )?
                }
            }
        }
        IncidentCommand::Update(args) => {
            let id = wharf_ops::incidents::parse_id(&args.id)?;
            let request = IncidentUpdateRequest {
                status: args.status,
                message: args.message,
                public: args.public,
                severity: args.severity,
            };
            write(
                &state_dir,
                "POST",
                &format!("/v1/incidents/{id}/updates"),
                &request,
                |store, actor| wharf_ops::incidents::update(store, actor, id, &request, now()),
            )?
        }
        IncidentCommand::Ack(args) => {
            let id = wharf_ops::incidents::parse_id(&args.id)?;
            let request = IncidentStepRequest {
                message: args.message,
                public: args.public,
            };
            write(
                &state_dir,
                "POST",
                &format!("/v1/incidents/{id}/ack"),
                &request,
                |store, actor| wharf_ops::incidents::ack(store, actor, id, &request, now()),
            )?
        }
        IncidentCommand::Assign(args) => {
            let id = wharf_ops::incidents::parse_id(&args.id)?;
            let request = AssignRoleRequest {
                role: args.role,
                person: args.person,
            };
            write(
                &state_dir,
                "POST",
                &format!("/v1/incidents/{id}/roles"),
                &request,
                |store, actor| {
                    wharf_ops::incidents::assign(store, actor, id, &request.role, &request.person)
                },
            )?
        }
        IncidentCommand::Resolve(args) => {
            let id = wharf_ops::incidents::parse_id(&args.id)?;
            let request = IncidentStepRequest {
                message: args.message,
                public: args.public,
            };
            write(
                &state_dir,
                "POST",
                &format!("/v1/incidents/{id}/resolve"),
                &request,
                |store, actor| wharf_ops::incidents::resolve(store, actor, id, &request, now()),
            )?
        }
        IncidentCommand::List(args) => return list(global, args.all),
        IncidentCommand::Show(args) => return show(global, &args.id),
        IncidentCommand::Postmortem(args) => return postmortem(global, &args),
    };
    match global.output {
        Output::Json => print_json(&changed)?,
        Output::Human => println!(
            "INC-{} {} [{}] {}",
            changed.id,
            changed.status.as_str(),
            changed.severity.as_str(),
            changed.title
        ),
    }
    Ok(ExitStatus::Ok)
}

fn list(global: &Global, all: bool) -> anyhow::Result<ExitStatus> {
    let incidents = match wharf_ops::read::open_existing(&global.state_dir())? {
        Some(store) => wharf_ops::incidents::list(&store, all)?,
        None => Vec::new(),
    };
    match global.output {
        Output::Json => print_json(&incidents)?,
        Output::Human if incidents.is_empty() => println!("no open incidents"),
        Output::Human => {
            println!(
                "{:<7} {:<5} {:<14} {:<22} {:<12} TITLE",
                "ID", "SEV", "STATUS", "DECLARED", "COMMANDER"
            );
            for incident in &incidents {
                println!(
                    "{:<7} {:<5} {:<14} {:<22} {:<12} {}",
                    format!("INC-{}", incident.id),
                    incident.severity.as_str(),
                    incident.status.as_str(),
                    short_time(&incident.declared_at),
                    incident.roles.get("commander").map_or("-", String::as_str),
                    incident.title
                );
            }
        }
    }
    Ok(ExitStatus::Ok)
}

fn show(global: &Global, id: &str) -> anyhow::Result<ExitStatus> {
    let id = wharf_ops::incidents::parse_id(id)?;
    let store = read_store(global)?;
    let incident = wharf_ops::incidents::get(&store, id)?;
    let timeline = wharf_ops::incidents::timeline(&store, &incident)?;
    let (mtta, mttr) = wharf_ops::incidents::mtta_mttr(&incident);
    match global.output {
        Output::Json => print_json(&serde_json::json!({
            "incident": incident,
            "mtta_seconds": mtta.map(|d| d.as_secs()),
            "mttr_seconds": mttr.map(|d| d.as_secs()),
            "timeline": timeline.iter().map(|e| e.to_json()).collect::<Vec<_>>(),
        }))?,
        Output::Human => {
            println!(
                "INC-{} [{}] {} — {}",
                incident.id,
                incident.severity.as_str(),
                incident.title,
                incident.status.as_str()
            );
            for (role, person) in &incident.roles {
                println!("  {role}: {person}");
            }
            if !incident.services.is_empty() {
                println!("  services: {}", incident.services.join(", "));
            }
            let human = |d: Option<jiff::SignedDuration>| {
                d.map_or("—".to_owned(), wharf_ops::incidents::human)
            };
            println!(
                "  time to acknowledge: {}   time to resolve: {}",
                human(mtta),
                human(mttr)
            );
            println!("\ntimeline:");
            for entry in &timeline {
                println!(
                    "  {}  {:<18} {:<20} {}  {}",
                    entry.time.strftime("%H:%M:%S"),
                    entry.action.as_str(),
                    entry.target,
                    entry.actor,
                    entry.details
                );
            }
        }
    }
    Ok(ExitStatus::Ok)
}

fn postmortem(global: &Global, args: &PostmortemArgs) -> anyhow::Result<ExitStatus> {
    let id = wharf_ops::incidents::parse_id(&args.id)?;
    let store = read_store(global)?;
    let incident = wharf_ops::incidents::get(&store, id)?;
    let timeline = wharf_ops::incidents::timeline(&store, &incident)?;
    let draft = wharf_ops::incidents::postmortem(&incident, &timeline);
    match &args.to {
        None => print!("{draft}"),
        Some(path) => {
            use std::io::Write as _;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            file.write_all(draft.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("postmortem draft written to {}", path.display());
        }
    }
    Ok(ExitStatus::Ok)
}
