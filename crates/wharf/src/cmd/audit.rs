//! `wharf audit …`: the tamper-evident ledger from the command line.

use crate::cli::Global;
use crate::exit::ExitStatus;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Append an operator note to the ledger.
    Note {
        /// The text of the note.
        text: String,
    },
}

pub fn run(_global: &Global, _command: AuditCommand) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("`wharf audit` is not wired yet")
}
