//! The `wharf-proxy` binary: serve the saved route table at once (or a newer seed table), open
//! the admin socket (and, in a cluster, a token-guarded TCP admin listener), run until SIGTERM
//! or Ctrl-C, then stop accepting and drain in-flight requests.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use wharf_proxy::Proxy;

/// wharf's data-plane proxy.
#[derive(Debug, Parser)]
#[command(name = "wharf-proxy", version)]
struct Args {
    /// Unix socket for the admin API (created with mode 0600).
    #[arg(long, value_name = "PATH")]
    admin_socket: PathBuf,
    /// Where the last applied route table is kept; served at start when present.
    #[arg(long, value_name = "FILE")]
    state: PathBuf,
    /// Connection worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Also serve the admin API on this TCP address (a router pod on a cluster, reached
    /// through the API server's pod proxy). Every request must carry the token from
    /// `WHARF_PROXY_ADMIN_TOKEN`; the proxy refuses to start without one.
    #[arg(long, value_name = "ADDRESS:PORT")]
    admin_listen: Option<std::net::SocketAddr>,
    /// A route table to serve at start when it is newer than the saved one (a router pod's
    /// ConfigMap, which `wharf cluster` keeps current, so a new pod serves the split in force).
    #[arg(long, value_name = "FILE")]
    seed: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Checked before anything starts: a TCP admin listener without a token would hand the
    // routing of every request to whoever reaches the port.
    let token = match args.admin_listen {
        Some(_) => match wharf_proxy::admin::AdminToken::from_env() {
            Ok(token) => Some(token),
            Err(err) => {
                eprintln!("wharf-proxy: {err}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `WHARF_LOG_FORMAT=json` (the control plane passes its own on): one JSON object a line.
    match std::env::var("WHARF_LOG_FORMAT").as_deref() {
        Ok("json") => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
        Err(_) | Ok("" | "human") => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        Ok(other) => {
            eprintln!("wharf-proxy: WHARF_LOG_FORMAT is `{other}`: it takes `human` or `json`");
            return ExitCode::from(2);
        }
    }
    // This runtime serves the admin API and runs drain timers; connections are accepted and
    // served on the proxy's own worker threads.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("wharf-proxy: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    // Ports a previous proxy listened on, kept open by the control plane: taken before
    // anything binds. A proxy that cannot take them says so with its own status, and its
    // starter retries without.
    let inherited = match std::env::var(wharf_proxy::inherit::ENV) {
        Ok(text) => match wharf_proxy::inherit::parse(&text)
            .and_then(|offer| wharf_proxy::inherit::take(&offer))
        {
            Ok(sockets) => sockets,
            Err(err) => {
                eprintln!("wharf-proxy: {err}");
                return ExitCode::from(wharf_proxy::inherit::EXIT_CANNOT_INHERIT);
            }
        },
        Err(_) => Default::default(),
    };
    match runtime.block_on(run(args, inherited, token)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Every error message here already names its cause.
            eprintln!("wharf-proxy: {err}");
            ExitCode::from(2)
        }
    }
}

async fn run(
    args: Args,
    inherited: std::collections::HashMap<std::net::SocketAddr, Vec<std::net::TcpListener>>,
    token: Option<wharf_proxy::admin::AdminToken>,
) -> anyhow::Result<()> {
    let proxy = match args.workers {
        Some(workers) => Proxy::with_workers(Some(args.state.clone()), workers),
        None => Proxy::new(Some(args.state.clone())),
    };
    if !inherited.is_empty() {
        tracing::info!(ports = inherited.len(), "took over the listening ports");
        proxy.inherit(inherited);
    }
    match proxy.restore()? {
        Some(revision) => {
            tracing::info!(revision, state = %args.state.display(), "serving the saved table")
        }
        None => tracing::info!(state = %args.state.display(), "no saved table yet"),
    }
    if let Some(seed) = &args.seed {
        seed_from(&proxy, seed)?;
    }
    let tcp_admin = match (args.admin_listen, token) {
        (Some(address), Some(token)) => {
            let listener = wharf_proxy::admin::bind_tcp(address).await?;
            println!("admin listen {}", listener.local_addr()?);
            Some(tokio::spawn(wharf_proxy::admin::serve_tcp(
                proxy.clone(),
                listener,
                token,
            )))
        }
        _ => None,
    };
    let admin = wharf_proxy::admin::bind(&args.admin_socket)?;
    // One line on stdout once the admin socket accepts, for scripts and tests to wait on.
    println!("admin socket {}", args.admin_socket.display());
    let admin_task = tokio::spawn(wharf_proxy::admin::serve(proxy.clone(), admin));
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
    }
    proxy.shutdown().await;
    admin_task.abort();
    if let Some(task) = tcp_admin {
        task.abort();
    }
    let _ = std::fs::remove_file(&args.admin_socket);
    tracing::info!("stopped");
    Ok(())
}

/// Serves the seed table when it is newer than what the proxy serves (a seed at or below the
/// saved revision is older news: the saved table stays).
fn seed_from(proxy: &Proxy, seed: &std::path::Path) -> anyhow::Result<()> {
    let Some(table) = wharf_proxy::persist::load(seed)? else {
        tracing::info!(seed = %seed.display(), "no seed table");
        return Ok(());
    };
    let revision = table.revision();
    if proxy.table().is_some() && revision <= proxy.revision() {
        tracing::info!(
            seed = %seed.display(),
            revision,
            serving = proxy.revision(),
            "the seed table is not newer than the saved one"
        );
        return Ok(());
    }
    proxy
        .apply(table)
        .map_err(|err| anyhow::anyhow!("cannot serve the seed table {}: {err}", seed.display()))?;
    tracing::info!(seed = %seed.display(), revision, "serving the seed table");
    Ok(())
}
