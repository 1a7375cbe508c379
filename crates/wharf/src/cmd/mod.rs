//! One module per subcommand; `dispatch` routes the parsed command line to it.

pub mod audit;
pub mod completions;
pub mod import;
pub mod init;
pub mod render;
pub mod validate;

use crate::cli::{Cli, Command};
use crate::exit::ExitStatus;

/// Runs the chosen subcommand.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitStatus> {
    let global = &cli.global;
    match cli.command {
        Command::Validate(args) => validate::run(global, &args),
        Command::Render(args) => render::run(global, &args),
        Command::Init(args) => init::run(global, &args),
        Command::Completions(args) => completions::run(&args),
        Command::Import(command) => import::run(global, command),
        Command::Audit(command) => audit::run(global, command),
    }
}
