//! One module per subcommand; `dispatch` routes the parsed command line to it.

pub mod access;
pub mod audit;
pub mod backup;
pub mod cluster;
pub mod cluster_serve;
pub mod completions;
pub mod config;
pub mod deploy;
pub mod down;
pub mod gate;
pub mod images;
pub mod import;
pub mod init;
pub mod logs;
pub mod oncall;
pub mod preflight;
pub mod promote;
pub mod render;
pub mod restart;
pub mod rollback;
pub mod rollout;
pub mod rollout_view;
pub mod runbook;
pub mod secret;
pub mod shim;
pub mod status;
pub mod up;
pub mod validate;

use crate::cli::{Cli, Command};
use crate::exit::ExitStatus;

/// Runs the chosen subcommand.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitStatus> {
    let global = &cli.global;
    match cli.command {
        Command::Validate(args) => validate::run(global, &args),
        Command::Render(args) => render::run(global, &args),
        Command::Cluster(command) => cluster::run(global, command),
        Command::Init(args) => init::run(global, &args),
        Command::Completions(args) => completions::run(&args),
        Command::Import(command) => import::run(global, command),
        Command::Audit(command) => audit::run(global, command),
        Command::Backup(command) => backup::run(global, command),
        Command::Restore(args) => backup::restore(global, args),
        Command::Drill(args) => backup::drill(global, args),
        Command::Silence(command) => oncall::silence(global, command),
        Command::Incident(command) => oncall::incident(global, command),
        Command::Up(args) => up::run(global, &args),
        Command::Down(args) => down::run(global, &args),
        Command::Status(args) => status::run(global, &args),
        Command::Logs(args) => logs::run(global, &args),
        Command::Preflight(args) => preflight::run(global, &args),
        Command::Gate(command) => gate::run(global, command),
        Command::Promote(command) => promote::run(global, command),
        Command::Restart(args) => restart::run(global, &args),
        Command::Deploy(args) => deploy::run(global, &args),
        Command::Rollout(command) => rollout::run(global, command),
        Command::Rollback(args) => rollback::run(global, &args),
        Command::Secret(command) => secret::run(global, command),
        Command::Config(command) => config::run(global, command),
        Command::Runbook(command) => runbook::run(global, command),
        Command::Token(command) => access::token(global, command),
        Command::Whoami => access::whoami(global),
        Command::Approvals => access::approvals(global),
        Command::Approve(args) => access::decide(global, &args, true),
        Command::Reject(args) => access::decide(global, &args, false),
        Command::Shim => shim::run(),
    }
}
