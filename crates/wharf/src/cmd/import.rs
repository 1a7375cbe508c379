//! `wharf import …`: convert another tool's file into a wharf.yaml.

use std::path::PathBuf;

use crate::cli::Global;
use crate::exit::ExitStatus;

#[derive(Debug, clap::Subcommand)]
pub enum ImportCommand {
    /// Convert a docker-compose.yml; the wharf.yaml goes to stdout, warnings to stderr.
    Compose {
        /// The compose file to read.
        path: PathBuf,
    },
}

pub fn run(_global: &Global, command: ImportCommand) -> anyhow::Result<ExitStatus> {
    match command {
        ImportCommand::Compose { path } => {
            anyhow::bail!("`wharf import compose {}` is not wired yet", path.display())
        }
    }
}
