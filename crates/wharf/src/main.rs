//! The `wharf` binary: command-line parsing, terminal output and wiring of the domain crates.
//!
//! This is the only crate that prints to the terminal or decides exit codes; every command
//! lives in its own module under `cmd/` and returns an [`ExitStatus`].

mod cli;
mod client;
mod cmd;
mod exit;
mod manifest_file;
mod replica;
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
    if let Err(message) = init_tracing() {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    if let Some(timeout) = cli.global.timeout {
        client::set_timeout(timeout);
    }
    quiet_on_broken_pipe();
    match cmd::dispatch(cli) {
        Ok(status) => status.into(),
        Err(err) if is_broken_pipe(&err) => ExitCode::from(exit::BROKEN_PIPE),
        Err(err) => {
            eprintln!("error: {err:#}");
            exit::ExitStatus::Invalid.into()
        }
    }
}

/// Rust ignores SIGPIPE, so a write to a pipe whose reader went away fails with EPIPE, and
/// `println!` turns that into a panic ("failed printing to stdout: Broken pipe"). Every
/// command prints through `println!`/`eprintln!`, on any thread: this hook turns exactly that
/// panic into a quiet exit with [`exit::BROKEN_PIPE`], and leaves every other panic to the
/// default hook.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        let printing = payload.starts_with("failed printing to std");
        let epipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe).to_string();
        if printing && (payload.contains("os error 32") || payload.contains(&epipe)) {
            std::process::exit(i32::from(exit::BROKEN_PIPE));
        }
        default(info);
    }));
}

/// An error whose cause is a write to a closed pipe (a command that writes with `writeln!`).
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Whether `WHARF_LOG_FORMAT` asks for JSON lines (`json`), rather than the human format
/// (`human`, or unset); anything else is an error.
fn log_format() -> Result<bool, String> {
    match std::env::var("WHARF_LOG_FORMAT").as_deref() {
        Err(_) | Ok("" | "human") => Ok(false),
        Ok("json") => Ok(true),
        Ok(other) => Err(format!(
            "WHARF_LOG_FORMAT is `{other}`: it takes `human` (the default) or `json`"
        )),
    }
}

/// For the control plane's configuration: it hands the format on to the proxy it starts.
pub(crate) fn log_format_is_json() -> bool {
    log_format().unwrap_or(false)
}

/// Logs go to stderr, filtered by `WHARF_LOG` (default: warnings only) so stdout stays clean
/// for `render` and `import` output that users redirect into files. With
/// `WHARF_LOG_FORMAT=json`, one JSON object a line (`timestamp`, `level`, `target`, `fields`
/// with the `message`, and the `span` / `spans` it happened in) for a log pipeline to read.
fn init_tracing() -> Result<(), String> {
    let json = log_format()?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init();
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    Ok(())
}
