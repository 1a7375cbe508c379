//! `wharf init` (placeholder until wired).

use crate::cli::Global;
use crate::exit::ExitStatus;

#[derive(Debug, clap::Args)]
pub struct InitArgs {}

pub fn run(_global: &Global, _args: &InitArgs) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("`wharf init` is not wired yet")
}
