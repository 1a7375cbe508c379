//! The `wharf` binary: command-line parsing, terminal output and wiring of the domain crates.
//!
//! This is the only crate that prints to the terminal or decides exit codes; every command
//! lives in its own module under `cmd/` and returns an [`ExitStatus`].

mod cli;
mod client;
mod cmd;
mod exit;
mod manifest_file;
mod writer;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse_from(cli::rewrite_logs_follow(std::env::args_os())) {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help/version on stdout with exit 0, usage errors on stderr with 2.
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { 2 } else { 0 });
        }
    };
    init_tracing();
    if let Some(timeout) = cli.global.timeout {
        client::set_timeout(timeout);
    }
    match cmd::dispatch(cli) {
        Ok(status) => status.into(),
        Err(err) => {
            eprintln!("error: {err:#}");
            exit::ExitStatus::Invalid.into()
        }
    }
}

/// Logs go to stderr, filtered by `WHARF_LOG` (default: warnings only) so stdout stays clean
/// for `render` and `import` output that users redirect into files.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
