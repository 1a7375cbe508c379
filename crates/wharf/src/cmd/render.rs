//! `wharf render` (placeholder until wired).

use crate::cli::Global;
use crate::exit::ExitStatus;

#[derive(Debug, clap::Args)]
pub struct RenderArgs {}

pub fn run(_global: &Global, _args: &RenderArgs) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("`wharf render` is not wired yet")
}
