//! The command-line surface: global options and the subcommand tree (clap derive).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::cmd;

const EXIT_CODES: &str = "\
Exit codes:
  0  ok
  1  the checked thing failed (verification, preflight, probe)
  2  invalid input or usage (broken manifest, wrong flag, corrupt file)
  141  the reader of the output went away (`wharf … | head`): wharf stops quietly,
       with the status a shell gives a program ended by SIGPIPE

Logs go to stderr; set WHARF_LOG (e.g. WHARF_LOG=debug) to see more.";

/// Run, ship and prove a multi-service stack from one wharf.yaml.
#[derive(Debug, Parser)]
#[command(name = "wharf", version, after_help = EXIT_CODES, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command understands.
#[derive(Debug, clap::Args)]
pub struct Global {
    /// The manifest to read.
    #[arg(
        short = 'f',
        long = "file",
        global = true,
        default_value = "wharf.yaml"
    )]
    pub file: PathBuf,
    /// Where wharf keeps its state (database, keys, logs); default `.wharf/` beside the manifest.
    #[arg(long, global = true, env = "WHARF_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Human)]
    pub output: Output,
    /// How long to wait for the control plane's answer to each API call, e.g. `5s`, `2m`
    /// (default 30s); `down`'s wait for the stack to stop is not bounded by it.
    #[arg(
        long,
        global = true,
        value_name = "DURATION",
        env = crate::client::TIMEOUT_ENV,
        value_parser = crate::cmd::up::parse_duration
    )]
    pub timeout: Option<std::time::Duration>,
}

impl Global {
    /// The state directory: `--state-dir`, else `.wharf/` next to the manifest.
    pub fn state_dir(&self) -> PathBuf {
        if let Some(dir) = &self.state_dir {
            return dir.clone();
        }
        let parent = self.file.parent().filter(|p| !p.as_os_str().is_empty());
        parent.map_or_else(|| PathBuf::from(".wharf"), |p| p.join(".wharf"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the manifest and report every problem with file:line:column.
    Validate(cmd::validate::ValidateArgs),
    /// Print the effective manifest after overlays and interpolation (secrets stay masked), or
    /// with `--target kubernetes` the Kubernetes objects that run it.
    Render(cmd::render::RenderArgs),
    /// The stack on a Kubernetes cluster: `apply` (server-side apply, field manager `wharf`),
    /// `deploy SERVICE --version V` (a canary through the HTTPRoute's weights, resumed when run
    /// again after a crash), `pause | resume | promote | abort SERVICE`, `status`.
    #[command(subcommand)]
    Cluster(cmd::cluster::ClusterCommand),
    /// Write a commented starter wharf.yaml that validates.
    Init(cmd::init::InitArgs),
    /// Print a shell completion script.
    Completions(cmd::completions::CompletionsArgs),
    /// Convert another tool's file into a wharf.yaml (printed on stdout).
    #[command(subcommand)]
    Import(cmd::import::ImportCommand),
    /// Start the stack in dependency order and supervise it (-d: in the background).
    Up(cmd::up::UpArgs),
    /// Stop the stack, or one service, gracefully (dependents first).
    Down(cmd::down::DownArgs),
    /// Services and instances: state, readiness, restarts, uptime, last exit.
    Status(cmd::status::StatusArgs),
    /// Prove the stack works: manifest, services live and ready, dependencies, smoke checks,
    /// ledger. Exit 1 on any failure; --junit for CI.
    Preflight(cmd::preflight::PreflightArgs),
    /// Release gates on CI tool output: `check GATE --version V --service S --input FILE…`
    /// judges the manifest's gate, prints and records the verdict. Exit 0 pass, 1 fail, 2 bad
    /// input.
    #[command(subcommand)]
    Gate(cmd::gate::GateCommand),
    /// Promotion evidence between environments: `export SERVICE VERSION` writes a bundle of
    /// a version's successful rollout (ledger entries with inclusion proofs against a signed
    /// checkpoint); `verify BUNDLE [--key K]` checks one; `import BUNDLE` verifies and records
    /// it for `require.promoted_from`. Exit 0 ok, 1 not verified, 2 unreadable input.
    #[command(subcommand)]
    Promote(cmd::promote::PromoteCommand),
    /// Show (and follow) a service's output.
    Logs(cmd::logs::LogsArgs),
    /// Restart a service's instances one at a time, each new one ready before an old one stops.
    Restart(cmd::restart::RestartArgs),
    /// Roll out a new version of a service (canary, blue-green or recreate) with automatic
    /// analysis and rollback; --watch follows it (exit 0 succeeded, 1 rolled back).
    #[command(disable_version_flag = true)]
    Deploy(cmd::deploy::DeployArgs),
    /// A service's rollout: status, and pause / resume / promote / abort.
    #[command(subcommand)]
    Rollout(cmd::rollout::RolloutSubcommand),
    /// Roll the previous stable version of a service out again; --watch follows it.
    Rollback(cmd::rollback::RollbackArgs),
    /// The stack's secrets: set (stdin or file), list, get --reveal, history, rollback, rotate,
    /// rekey. Values never go through argv, and every change and reveal is in the ledger.
    #[command(subcommand)]
    Secret(cmd::secret::SecretCommand),
    /// A service's configuration overrides as revisions: set, unset, show, history, diff,
    /// rollback; each with a reason, recorded in the ledger.
    #[command(subcommand)]
    Config(cmd::config::ConfigCommand),
    /// Internal: the per-instance shim.
    #[command(name = "__shim", hide = true)]
    Shim,
    /// The tamper-evident audit ledger: log, verify, checkpoint, prove, export, note.
    #[command(subcommand)]
    Audit(cmd::audit::AuditCommand),
    /// The datastores' backups (a restic repository): run, list, show, verify, prune, key
    /// export. Jobs run in the control plane; each outcome is in the ledger.
    #[command(subcommand)]
    Backup(cmd::backup::BackupCommand),
    /// Restore a datastore's backup into a sandbox (--sandbox, checked like a drill), another
    /// server (--to URL), or the running datastore (--confirm; its dependents are stopped
    /// around it).
    Restore(cmd::backup::RestoreArgs),
    /// Restore a datastore's latest backup into a sandbox and prove it: row counts and content
    /// per table against the backup's record, RTO and RPO. Exit 1 when a check fails.
    Drill(cmd::backup::DrillArgs),
    /// Silences: hold back pages matching labels until a set end (mandatory), each one audited;
    /// a page already sent still gets its resolve.
    #[command(subcommand)]
    Silence(cmd::oncall::SilenceCommand),
    /// Incidents: declare, update, ack, assign, resolve, list, show (timeline from the
    /// ledger, MTTA / MTTR), postmortem (a Markdown draft from the facts).
    #[command(subcommand)]
    Incident(cmd::oncall::IncidentCommand),
    /// The manifest's runbooks: list, show, run (--dry-run prints the plan and changes
    /// nothing), runs, status, resume a failed run, approve a waiting step, cancel. Every step's
    /// start, end and result is in the ledger.
    #[command(subcommand)]
    Runbook(cmd::runbook::RunbookCommand),
    /// Per-person API tokens with a role (viewer, operator, approver, admin): create (shown
    /// once), list, revoke. Each is a ledger entry; the token never is.
    #[command(subcommand)]
    Token(cmd::access::TokenCommand),
    /// Who the control plane takes you for: the OS user, or `$WHARF_TOKEN`'s holder.
    Whoami,
    /// Deploy requests waiting for approval (the environment's `require.approvals`), then
    /// recent ones.
    Approvals,
    /// Approve a deploy request (approver or admin; never your own). The last approval it
    /// needs starts the deploy (exit 1 if it cannot start then).
    Approve(cmd::access::DecideArgs),
    /// Reject a deploy request: it will not start.
    Reject(cmd::access::DecideArgs),
}

/// `wharf logs -f` means follow, as in docker compose and kubectl, while `-f` everywhere
/// else names the manifest: after a `logs` subcommand, `-f` is rewritten to `--follow`
/// (`--file` still names the manifest there).
pub fn rewrite_logs_follow(
    args: impl Iterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    let mut seen_logs = false;
    let mut skip_value = false;
    args.enumerate()
        .map(|(i, arg)| {
            if i == 0 || skip_value {
                skip_value = false;
                return arg;
            }
            if !seen_logs {
                // Options before the subcommand that take a value.
                skip_value = matches!(
                    arg.to_str(),
                    Some("-f" | "--file" | "--state-dir" | "--output")
                );
                seen_logs = arg == "logs" && !skip_value;
                return arg;
            }
            if arg == "-f" { "--follow".into() } else { arg }
        })
        .collect()
}
