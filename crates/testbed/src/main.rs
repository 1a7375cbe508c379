//! The `wharf-testbed` binary: parse flags, bind, serve until SIGTERM or Ctrl-C, drain, exit.

use std::process::ExitCode;

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

fn main() -> ExitCode {
    let config = wharf_testbed::Config::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("wharf-testbed: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("wharf-testbed: {message}");
            ExitCode::from(2)
        }
    }
}

async fn run(config: wharf_testbed::Config) -> Result<(), String> {
    let address = format!("{}:{}", config.host, config.port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|err| match err.kind() {
            std::io::ErrorKind::AddrInUse => {
                format!("cannot listen on {address}: the port is already in use")
            }
            _ => format!("cannot listen on {address}: {err}"),
        })?;
    let bound = listener
        .local_addr()
        .map_err(|err| format!("cannot read the bound address: {err}"))?;
    // One line on stdout with the real address, so `--port 0` users learn the port.
    println!("listening on {bound}");
    tracing::info!(%bound, version = %config.service_version, "listening");
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|err| format!("cannot watch SIGTERM: {err}"))?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        }
    };
    wharf_testbed::serve(config, listener, shutdown)
        .await
        .map_err(|err| err.to_string())
}
