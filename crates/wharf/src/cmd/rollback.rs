//! `wharf rollback SERVICE`: roll the previous stable version out again, as a deploy of it
//! would; `--watch` follows it to its end.

use crate::cli::Global;
use crate::cmd::rollout;
use crate::exit::ExitStatus;

#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The service to roll back.
    pub service: String,
    /// Follow the rollback until it ends: exit 0 when it succeeds, 1 when it rolls back.
    #[arg(long)]
    pub watch: bool,
}

pub fn run(global: &Global, args: &RollbackArgs) -> anyhow::Result<ExitStatus> {
    let path = format!("/v1/services/{}/rollback", args.service);
    rollout::block_on(async {
        match rollout::request_view(&global.state_dir(), "POST", &path, None).await? {
            Ok(view) => rollout::started(global, view, args.watch).await,
            Err(status) => Ok(status),
        }
    })
}
