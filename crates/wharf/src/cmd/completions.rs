//! `wharf completions` (placeholder until wired).


use crate::exit::ExitStatus;

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {}

pub fn run(_args: &CompletionsArgs) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("`wharf completions` is not wired yet")
}
