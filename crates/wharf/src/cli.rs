//! The command-line surface: global options and the subcommand tree (clap derive).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::cmd;

const EXIT_CODES: &str = "\
Exit codes:
  0  ok
  1  the checked thing failed (verification, preflight, probe)
  2  invalid input or usage (broken manifest, wrong flag, corrupt file)

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
    #[arg(short = 'f', long = "file", global = true, default_value = "wharf.yaml")]
    pub file: PathBuf,
    /// Where wharf keeps its state (database, keys, logs); default `.wharf/` beside the manifest.
    #[arg(long, global = true, env = "WHARF_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Human)]
    pub output: Output,
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
    /// Print the effective manifest after overlays and interpolation (secrets stay masked).
    Render(cmd::render::RenderArgs),
    /// Write a commented starter wharf.yaml that validates.
    Init(cmd::init::InitArgs),
    /// Print a shell completion script.
    Completions(cmd::completions::CompletionsArgs),
    /// Convert another tool's file into a wharf.yaml (printed on stdout).
    #[command(subcommand)]
    Import(cmd::import::ImportCommand),
    /// The tamper-evident audit ledger: log, verify, checkpoint, prove, export, note.
    #[command(subcommand)]
    Audit(cmd::audit::AuditCommand),
}
