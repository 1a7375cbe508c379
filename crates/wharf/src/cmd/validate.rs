//! `wharf validate` (placeholder until wired).

use crate::cli::Global;
use crate::exit::ExitStatus;

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {}

pub fn run(_global: &Global, _args: &ValidateArgs) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("`wharf validate` is not wired yet")
}
