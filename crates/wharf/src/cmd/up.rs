//! `wharf up`: start the stack in dependency order and supervise it.
//!
//! In the foreground it behaves as compose users expect: instance logs stream to the terminal
//! and Ctrl-C stops the stack gracefully. `-d` runs the control plane detached (pid and log
//! file in the state directory) and returns once the stack has settled. A detached control
//! plane that receives SIGTERM exits and leaves the services running, so a new wharf can
//! adopt them (an upgrade of wharf itself); `wharf down` is how a stack is stopped.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use wharf_api::{ReloadAnswer, ReloadRequest, StatusReport};
use wharf_control::{Config, ControlPlane, Journal};
use wharf_runtime::{ProcessDriver, RestartLimits};
use wharf_server::tls::{ApiTls, CertOrigin};

use crate::cli::{Global, Output};
use crate::client;
use crate::exit::ExitStatus;
use crate::manifest_file::ManifestFile;

pub const PID_FILE: &str = "control.pid";
pub const LOG_FILE: &str = "control.log";

/// How long the detached control plane waits for `control.lock` (as `writer::route` does).
const LOCK_PATIENCE: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// The environment overlay to apply (default: `dev` when the manifest defines it).
    #[arg(long = "env", value_name = "ENV")]
    pub environment: Option<String>,
    /// Run the control plane in the background and return once the stack has settled.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// With -d: how long to wait for the stack to settle.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub wait_timeout: Duration,
    /// Also serve the API on TCP at ADDR (e.g. 127.0.0.1:7400), always over TLS; every
    /// request must carry `Authorization: Bearer TOKEN`: a person's token (`wharf token
    /// create NAME --role ROLE`, acting as NAME with that role), or `$WHARF_API_TOKEN` when
    /// set (at least 16 characters; a break-glass admin token, named `api-token` in the ledger).
    /// Without --tls-cert/--tls-key the certificate is a self-signed one kept in
    /// `.wharf/tls/`; its SHA-256 fingerprint is printed at start for clients to pin.
    #[arg(long, value_name = "ADDR")]
    pub api_listen: Option<std::net::SocketAddr>,
    /// With --api-listen: the TLS certificate chain to serve (PEM, leaf first).
    #[arg(long, value_name = "PATH", requires_all = ["tls_key", "api_listen"])]
    pub tls_cert: Option<PathBuf>,
    /// With --api-listen: the private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PATH", requires_all = ["tls_cert", "api_listen"])]
    pub tls_key: Option<PathBuf>,
    /// With --api-listen: how long a TCP client has for its TLS handshake, then for each
    /// request head (an idle or trickling connection is closed after it).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_positive_duration, requires = "api_listen")]
    pub api_header_timeout: Duration,
    /// With --api-listen: TCP connections open at once, all clients together; past it a new
    /// one is closed at once. The unix socket is not counted: it always answers.
    #[arg(long, value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..), requires = "api_listen")]
    pub api_max_connections: u32,
    /// With --api-listen: TCP connections open at once from one source address.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..), requires = "api_listen")]
    pub api_max_connections_per_client: u32,
    /// Also serve the public status page on plain HTTP at ADDR (e.g. 0.0.0.0:8090): read-only,
    /// no token, GET and HEAD only — `/` (HTML) and Statuspage's `/api/v2/summary.json`,
    /// `status.json`, `components.json`, `incidents/unresolved.json`. It shows components
    /// (the manifest's `status_page:`, else every service), their states, uptime leaving out
    /// maintenance, public incident updates; never a host, port, pid or error text. Put a TLS
    /// terminating proxy in front of it for the internet. Connections are bounded as the
    /// API's TCP listener's are (default budget: 512, 32 per client, 10 s header timeout).
    #[arg(long, value_name = "ADDR")]
    pub status_listen: Option<std::net::SocketAddr>,
    /// Also serve `/metrics` on plain HTTP at ADDR (e.g. 127.0.0.1:9464) for Prometheus to
    /// scrape: no token, GET and HEAD only, `/metrics` only. OpenMetrics when asked for, else
    /// Prometheus' text format. The same figures are on the API at `/metrics` (with a token).
    /// Connections are bounded as the status page's are.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Also serve the web dashboard on plain HTTP at ADDR, which must be a loopback address
    /// (e.g. 127.0.0.1:7480; reach it from elsewhere through an SSH tunnel, or use the TLS
    /// API listener, which serves it too). Log in with a token (`wharf token create NAME
    /// --role viewer`, or `$WHARF_API_TOKEN`); the browser then holds an HttpOnly,
    /// SameSite=Strict session cookie, and every action carries a CSRF token.
    #[arg(long, value_name = "ADDR", value_parser = parse_loopback)]
    pub dashboard_listen: Option<std::net::SocketAddr>,
    /// With the state in PostgreSQL (`WHARF_STATE_DSN`): how long the control lease lasts
    /// past each renewal (every third of it). A replica that does not hold the lease waits
    /// as a standby and takes over within this long of the leader's death. Default 5s.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub lease_ttl: Option<Duration>,
    /// Internal: this process is the detached control plane.
    #[arg(long, hide = true)]
    pub daemon: bool,
}

/// `30s`, `2m`, `500ms`: the manifest's duration syntax.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    text.parse::<wharf_manifest::values::Duration>()
        .map(|d| d.as_std())
        .map_err(|e| e.0)
}

/// A loopback socket address: the dashboard's plain-HTTP listener carries a session
/// cookie and must not be reachable from the network without TLS.
fn parse_loopback(text: &str) -> Result<std::net::SocketAddr, String> {
    let addr: std::net::SocketAddr = text
        .parse()
        .map_err(|e| format!("`{text}` is not an address like 127.0.0.1:7480 ({e})"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{addr} is not a loopback address: the dashboard listener speaks plain HTTP, so it serves 127.0.0.1 or [::1] only (reach it through an SSH tunnel, or use --api-listen, which serves it over TLS)"
        ));
    }
    Ok(addr)
}

/// A duration of more than zero (a zero deadline would close every connection at once).
fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err("must be more than 0s".to_owned()),
        d => Ok(d),
    }
}

/// The control lease's TTL when `--lease-ttl` is not given.
const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);

impl UpArgs {
    /// The control lease's TTL (replicas on PostgreSQL).
    fn lease_ttl(&self) -> Duration {
        self.lease_ttl.unwrap_or(DEFAULT_LEASE_TTL)
    }

    /// The TCP API's budget from the flags.
    fn api_limits(&self) -> wharf_server::ApiLimits {
        wharf_server::ApiLimits {
            header_timeout: self.api_header_timeout,
            max_connections: self.api_max_connections as usize,
            max_connections_per_client: self.api_max_connections_per_client as usize,
        }
    }
}

pub fn run(global: &Global, args: &UpArgs) -> anyhow::Result<ExitStatus> {
    // A lease is for replicas on PostgreSQL; asked for on a state directory, it is refused
    // before anything is read or created.
    if args.lease_ttl.is_some() && !wharf_ops::read::location(&global.state_dir())?.is_postgres() {
        eprintln!(
            "error: --lease-ttl: replicas need the state in PostgreSQL ({} is not set); on a state directory one control plane runs, chosen by {}",
            wharf_ops::lease::STATE_DSN_ENV,
            wharf_ops::LOCK_FILE
        );
        return Ok(ExitStatus::Invalid);
    }
    let manifest = ManifestFile::read(global)?;
    let loaded = manifest.load(args.environment.as_deref());
    let Some(stack) = loaded.stack else {
        manifest.print_diagnostics(&loaded.diagnostics, Output::Human)?;
        eprintln!("{}: not started, the manifest has errors", manifest.display);
        return Ok(ExitStatus::Invalid);
    };
    let manifest_dir = absolute(
        manifest
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )?;
    let plan = match plan_with_builds(&stack, &manifest_dir) {
        Ok(plan) => plan,
        Err(errors) => {
            for error in errors {
                eprintln!("error: {error}");
            }
            return Ok(ExitStatus::Invalid);
        }
    };
    if plan.services.iter().any(|s| s.proxied) && proxy_binary().is_none() {
        eprintln!(
            "error: services with a `port:` are served by wharf-proxy, which is neither beside {} nor on PATH; install it with wharf (`cargo build --release --bins`)",
            std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "wharf".to_owned())
        );
        return Ok(ExitStatus::Failed);
    }
    // Images first, before anything starts (the detached control plane's parent did it).
    if !args.daemon {
        let engine = wharf_container::Engine::new(None);
        if let Err(message) = crate::cmd::images::prepare(&plan, &engine)? {
            eprintln!("error: {message}");
            return Ok(ExitStatus::Failed);
        }
    }
    // Per-person tokens (`wharf token create`) are the TCP listener's identities; a
    // WHARF_API_TOKEN, when set, is a break-glass admin token besides them (`api-token`).
    let tcp_listen = args.api_listen.or(args.dashboard_listen);
    let api_token = match (tcp_listen, std::env::var("WHARF_API_TOKEN")) {
        (None, _) | (Some(_), Err(_)) => None,
        (Some(_), Ok(token)) if token.len() >= 16 => Some(token),
        (Some(addr), Ok(_)) => {
            eprintln!(
                "error: listening on {addr}: WHARF_API_TOKEN must be at least 16 characters (or unset it and use `wharf token create`)"
            );
            return Ok(ExitStatus::Invalid);
        }
    };
    // Given certificate files are checked before anything is created or started.
    let given_tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match ApiTls::from_files(cert, key) {
            Ok(tls) => Some(tls),
            Err(error) => {
                eprintln!("error: --tls-cert/--tls-key: {error}");
                return Ok(ExitStatus::Invalid);
            }
        },
        _ => None,
    };
    let state_dir = absolute(&global.state_dir())?;
    wharf_ops::private_dir(&state_dir)
        .with_context(|| format!("cannot create {}", state_dir.display()))?;
    // With the state in PostgreSQL, leadership is the control lease (see `crate::replica`):
    // every `wharf up` runs a replica, which waits as a standby while another leads, and
    // `control.lock` is only taken when free.
    let replica = wharf_ops::read::location(&state_dir)?.is_postgres();
    let lock = if replica {
        // A leader answers: it applies the manifest as it is now (as `wharf up` does on a state
        // directory), and this command goes on to add a replica beside it.
        let leader = std::os::unix::net::UnixStream::connect(client::socket_path(&state_dir));
        if !args.daemon && leader.is_ok() {
            let applied = apply_to_running(&state_dir, args.environment.as_deref())?;
            if applied != ExitStatus::Ok {
                return Ok(applied);
            }
        }
        wharf_ops::ControlLock::for_leader(&state_dir)?
    } else if args.daemon {
        // The `up -d` that started this process let go of the lock a moment ago, and another
        // short writer may hold it for a moment: wait for it rather than fail.
        let Some(lock) = wharf_ops::ControlLock::acquire_within(&state_dir, LOCK_PATIENCE)? else {
            anyhow::bail!(
                "{} in {} stayed held for {LOCK_PATIENCE:?}; is another control plane running?",
                wharf_ops::LOCK_FILE,
                state_dir.display()
            );
        };
        lock
    } else {
        // Held: a control plane that answers on its socket is running, and (like `docker
        // compose up`) takes the manifest as it is now. Held without an answering socket is one
        // going away (a `down` that just returned) or another short writer: wait for the lock.
        match crate::writer::route(&state_dir)? {
            crate::writer::Route::Local(lock) => lock,
            crate::writer::Route::Api => {
                if let Some(addr) = args.status_listen {
                    eprintln!(
                        "note: a control plane already runs; --status-listen {addr} applies when one starts (run `wharf down`, then `wharf up` with it)"
                    );
                }
                if let Some(addr) = args.metrics_listen {
                    eprintln!(
                        "note: a control plane already runs; --metrics-listen {addr} applies when one starts (run `wharf down`, then `wharf up` with it)"
                    );
                }
                if let Some(addr) = args.dashboard_listen {
                    eprintln!(
                        "note: a control plane already runs; --dashboard-listen {addr} applies when one starts (run `wharf down`, then `wharf up` with it)"
                    );
                }
                return apply_to_running(&state_dir, args.environment.as_deref());
            }
        }
    };
    if !args.daemon
        && let Some(message) = taken_ports(&lock, &plan)?
    {
        eprintln!("error: {message}");
        return Ok(ExitStatus::Failed);
    }
    // The master key is checked here, before anything starts (and before detaching, so a
    // wrong key is this command's error): a stack that uses secrets needs them unlocked.
    let uses_secrets = plan.uses_secrets();
    let unlocked = if uses_secrets {
        unlock_secrets(&lock, true).and_then(|secrets| {
            if plan.backs_up() {
                // The backup repository's password: generated once, kept as a secret.
                let mut store = wharf_ops::read::open(&lock)?;
                wharf_ops::secrets::ensure_generated(
                    &mut store,
                    &secrets,
                    &wharf_ops::Actor::from_environment(),
                    wharf_control::BACKUP_PASSWORD_SECRET,
                    "generated for the backup repository",
                )?;
            }
            Ok(())
        })
    } else {
        Ok(())
    };
    if let Err(error) = unlocked {
        eprintln!("error: {error:#}");
        // A key that does not open the secrets failed the check; anything else (a corrupt
        // or foreign state database, an unreadable key) is invalid input, as the docs say.
        let wrong_key = error
            .downcast_ref::<wharf_secrets::SecretsError>()
            .is_some_and(|e| matches!(e, wharf_secrets::SecretsError::WrongKey));
        return Ok(if wrong_key {
            ExitStatus::Failed
        } else {
            ExitStatus::Invalid
        });
    }
    let tcp = match (args.api_listen, api_token.clone()) {
        (Some(addr), token) => {
            let tls = match given_tls {
                Some(tls) => tls,
                None => ApiTls::self_signed(&state_dir, addr.ip())?,
            };
            announce_api(addr, &tls);
            Some(TcpApi {
                addr,
                token,
                tls,
                limits: args.api_limits(),
            })
        }
        _ => None,
    };
    if args.detach && !args.daemon {
        drop(lock);
        return detach(global, args, &state_dir, replica);
    }
    let workdir = absolute(
        manifest
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (status_setup, status_updates) =
        tokio::sync::watch::channel(status_page_setup(stack.status_page.as_ref()));
    let loader = plan_loader(
        absolute(&manifest.path)?,
        args.environment.clone(),
        status_setup,
    );
    let status = args.status_listen.map(|addr| (addr, status_updates));
    let (lock, leadership) = if replica {
        // A standby holds nothing of the leader's: not the flock, not the socket.
        drop(lock);
        let Some(leadership) =
            runtime.block_on(crate::replica::lead(&state_dir, args.lease_ttl()))?
        else {
            eprintln!("the stack was stopped (`wharf down`) while this replica waited; exiting");
            return Ok(ExitStatus::Ok);
        };
        (
            wharf_ops::ControlLock::for_leader(&state_dir)?,
            Some(leadership),
        )
    } else {
        (lock, None)
    };
    let lease = leadership.as_ref().map(|l| l.lease.clone());
    let result = runtime.block_on(run_control_plane(
        &lock,
        lease.as_ref(),
        plan,
        &state_dir,
        workdir,
        !args.daemon,
        Listeners {
            dashboard: args.dashboard_listen.map(|addr| (addr, api_token.clone())),
            tcp,
            status,
            metrics: args.metrics_listen,
        },
        loader,
    ));
    if let Some(leadership) = leadership {
        leadership.step_down();
    }
    result?;
    drop(lock);
    Ok(ExitStatus::Ok)
}

/// The listeners besides the unix socket: the API's TCP one, the public status page's (where,
/// and the manifest's `status_page:` as the control plane last loaded it).
struct Listeners {
    tcp: Option<TcpApi>,
    status: Option<(
        std::net::SocketAddr,
        tokio::sync::watch::Receiver<wharf_server::status_page::Setup>,
    )>,
    /// Where `/metrics` is served without a token.
    metrics: Option<std::net::SocketAddr>,
    /// Where the dashboard is served on plain HTTP (loopback), with the break-glass token.
    dashboard: Option<(std::net::SocketAddr, Option<String>)>,
}

/// The manifest's `status_page:` as the status page reads it.
fn status_page_setup(
    page: Option<&wharf_manifest::model::StatusPage>,
) -> wharf_server::status_page::Setup {
    let Some(page) = page else {
        return wharf_server::status_page::Setup::default();
    };
    wharf_server::status_page::Setup {
        title: page.title.clone(),
        components: page
            .components
            .iter()
            .map(|c| wharf_server::status_page::ComponentSpec {
                name: c.name.clone(),
                services: c.services.clone(),
                description: c.description.clone(),
            })
            .collect(),
        hide: page.hide.clone(),
    }
}

/// The API's TCP listener: where, the token every request needs, the TLS identity.
struct TcpApi {
    addr: std::net::SocketAddr,
    /// The break-glass admin token, when WHARF_API_TOKEN is set.
    token: Option<String>,
    tls: ApiTls,
    limits: wharf_server::ApiLimits,
}

/// Tells the user where the API is and how to pin its certificate (stderr).
fn announce_api(addr: std::net::SocketAddr, tls: &ApiTls) {
    let origin = match tls.origin() {
        CertOrigin::Given => "given",
        CertOrigin::Created => "self-signed, created now",
        CertOrigin::Reused => "self-signed",
    };
    eprintln!("API on https://{addr} (bearer token required)");
    eprintln!(
        "API certificate: {} ({origin}), fingerprint {}",
        tls.certificate().display(),
        tls.fingerprint()
    );
}

/// Loads the master key (`WHARF_MASTER_KEY`, else the key file; created on first use when
/// `create`, with a notice to back it up) and opens this state database's secrets with it.
fn unlock_secrets(
    lock: &wharf_ops::ControlLock,
    create: bool,
) -> anyhow::Result<wharf_secrets::Secrets> {
    let (key, _) = crate::cmd::secret::master_key(lock.state_dir(), create)?;
    let mut store = wharf_ops::read::open(lock)?;
    Ok(wharf_secrets::Secrets::unlock(&mut store, key)?)
}

/// A public port of an `image:` service that another process holds, as the error to show,
/// when nothing of the stack runs yet (a stack left running holds its own ports).
fn taken_ports(
    lock: &wharf_ops::ControlLock,
    plan: &wharf_control::StackPlan,
) -> anyhow::Result<Option<String>> {
    let taken = crate::cmd::images::taken_ports(plan);
    if taken.is_empty() || !wharf_ops::read::open(lock)?.instances()?.is_empty() {
        return Ok(None);
    }
    let each: Vec<String> = taken
        .iter()
        .map(|(service, port)| format!("`{service}`'s port {port}"))
        .collect();
    Ok(Some(format!(
        "{} already in use by another process; nothing was started (stop that process, or give the service another `port:`)",
        each.join(", ") + if taken.len() == 1 { " is" } else { " are" }
    )))
}

/// `wharf-proxy` beside this binary, else on PATH.
fn proxy_binary() -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name("wharf-proxy"))
        .filter(|p| p.is_file());
    beside.or_else(|| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("wharf-proxy"))
                .find(|p| p.is_file())
        })
    })
}

pub fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}

/// The running control plane re-reads the manifest (it was validated here first) and applies
/// what changed: rolling restarts through the proxy, added services started, removed stopped.
fn apply_to_running(state_dir: &Path, environment: Option<&str>) -> anyhow::Result<ExitStatus> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let request = ReloadRequest {
        manifest: true,
        environment: environment.map(str::to_owned),
    };
    let answer = match runtime.block_on(crate::client::call_ok(
        state_dir,
        "POST",
        "/v1/reload",
        Some(serde_json::to_value(&request)?),
    )) {
        Ok(answer) => answer,
        Err(error) if error.is::<crate::client::ApiRejected>() => {
            eprintln!("error: {error}");
            return Ok(ExitStatus::Failed);
        }
        Err(error) => return Err(error),
    };
    let answer: ReloadAnswer = serde_json::from_value(answer)?;
    let changes = answer.manifest.unwrap_or_default();
    let mut said = false;
    for (what, names) in [
        ("added", changes.added.join(", ")),
        ("changed", changes.changed.join(", ")),
        ("removed", changes.removed.join(", ")),
        (
            "deferred until its rollout ends (run `wharf up` again then)",
            changes.deferred.join(", "),
        ),
        ("restarting (rolling)", answer.restarting.join(", ")),
    ] {
        if !names.is_empty() {
            eprintln!("{what}: {names}");
            said = true;
        }
    }
    if !said {
        eprintln!("the running stack already matches the manifest");
    }
    Ok(ExitStatus::Ok)
}

/// How the control plane re-reads its manifest: the same file and environment it started with.
/// A manifest that plans also gives the status page its new `status_page:`.
fn plan_loader(
    manifest: PathBuf,
    environment: Option<String>,
    status_setup: tokio::sync::watch::Sender<wharf_server::status_page::Setup>,
) -> wharf_control::PlanLoader {
    let name = environment.clone();
    let load = std::sync::Arc::new(move || {
        let file = ManifestFile::read_path(&manifest).map_err(|e| e.to_string())?;
        let loaded = file.load(environment.as_deref());
        let stack = loaded.stack.ok_or_else(|| {
            format!(
                "{} has errors; run `wharf validate` to see them",
                manifest.display()
            )
        })?;
        let workdir = manifest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let plan = plan_with_builds(&stack, workdir).map_err(|errors| {
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        status_setup.send_replace(status_page_setup(stack.status_page.as_ref()));
        Ok(plan)
    });
    wharf_control::PlanLoader {
        load,
        environment: name,
    }
}

/// The stack's plan, each built service given its version from its build context (read here,
/// off the control plane's loop: the digest of what the engine would build).
pub(crate) fn plan_with_builds(
    stack: &wharf_manifest::ValidStack,
    workdir: &Path,
) -> Result<wharf_control::StackPlan, Vec<wharf_control::PlanError>> {
    let mut plan = wharf_control::plan(stack)?;
    wharf_control::plan::version_builds(&mut plan, workdir, wharf_container::context::version)?;
    Ok(plan)
}

#[expect(
    clippy::too_many_arguments,
    reason = "the control plane's whole setup, once"
)]
async fn run_control_plane(
    lock: &wharf_ops::ControlLock,
    lease: Option<&wharf_ops::lease::Lease>,
    plan: wharf_control::StackPlan,
    state_dir: &Path,
    workdir: PathBuf,
    foreground: bool,
    listeners: Listeners,
    loader: wharf_control::PlanLoader,
) -> anyhow::Result<()> {
    let Listeners {
        tcp,
        status,
        metrics,
        dashboard,
    } = listeners;
    let replica = lease.is_some();
    if !foreground {
        // A session of its own: the terminal that ran `wharf up -d` can close.
        let _ = rustix::process::setsid();
    }
    std::fs::write(state_dir.join(PID_FILE), std::process::id().to_string())?;
    let uses_secrets = plan.uses_secrets();
    let secrets = if uses_secrets {
        Some(unlock_secrets(lock, false)?)
    } else {
        None
    };
    // Decisions the control plane takes on its own (restarts, adoptions) are its own acts;
    // a replica's name says which replica took them.
    let journal = match lease {
        None => Journal::open(
            state_dir,
            format!("wharf-control@{}", crate::cmd::audit::actor()),
        )?,
        Some(lease) => {
            let mut journal = Journal::open_fenced(state_dir, lease.holder.clone(), Some(lease))?;
            crate::replica::record_leadership(&mut journal, lease);
            journal
        }
    };
    let config = Config {
        state_dir: state_dir.to_owned(),
        workdir,
        driver: std::sync::Arc::new(drivers()?),
        stop_grace: Duration::from_secs(10),
        limits: RestartLimits::default(),
        log_max_bytes: 10 << 20,
        log_keep: 3,
        proxy_binary: proxy_binary(),
        log_json: crate::log_format_is_json(),
        reload_plan: Some(loader),
    };
    let writer = journal.writer();
    let (control, handle) = ControlPlane::new(plan, config, journal);
    let control = match secrets {
        Some(secrets) => control.with_secrets(secrets),
        None => control,
    };
    let (api_stop, api_stopped) = tokio::sync::watch::channel(false);
    let stopped = move |mut receiver: tokio::sync::watch::Receiver<bool>| async move {
        let _ = receiver.wait_for(|stop| *stop).await;
    };
    let socket = client::socket_path(state_dir);
    let mut servers = tokio::task::JoinSet::new();
    // One token table for both listeners: a token made on the socket works on TCP at once.
    let tokens = wharf_server::TokenBook::new();
    // One session table for the dashboard on both listeners that serve it.
    let dashboard_sessions = wharf_server::Sessions::new();
    servers.spawn({
        let (socket, handle, shutdown) =
            (socket.clone(), handle.clone(), stopped(api_stopped.clone()));
        let tokens = tokens.clone();
        async move { wharf_server::serve_unix(&socket, handle, tokens, shutdown).await }
    });
    if let Some(TcpApi {
        addr,
        token,
        tls,
        limits,
    }) = tcp
    {
        let listener = Bound::bind(addr, "the API", replica).await?;
        tracing::info!(%addr, fingerprint = tls.fingerprint(), "API and dashboard on TCP over TLS (bearer token, or a dashboard session)");
        let shutdown = stopped(api_stopped.clone());
        let handle = handle.clone();
        let (tokens, sessions) = (tokens.clone(), dashboard_sessions.clone());
        servers.spawn(async move {
            let listener = listener.listener().await?;
            let access = wharf_server::Access::tcp(tokens, token).with_dashboard(sessions, true);
            wharf_server::serve_tcp(listener, &tls, handle, access, limits, shutdown).await
        });
    }
    if let Some((addr, token)) = dashboard {
        let listener = Bound::bind(addr, "the dashboard", replica).await?;
        tracing::info!(%addr, "dashboard on plain HTTP (loopback, token login)");
        eprintln!("dashboard on http://{addr}/");
        let access = wharf_server::Access::tcp(tokens.clone(), token)
            .with_dashboard(dashboard_sessions.clone(), false);
        let (handle, shutdown) = (handle.clone(), stopped(api_stopped.clone()));
        servers.spawn(async move {
            let listener = listener.listener().await?;
            wharf_server::serve_dashboard(
                listener,
                handle,
                access,
                wharf_server::ApiLimits::default(),
                shutdown,
            )
            .await
        });
    }
    if let Some((addr, setup)) = status {
        let listener = Bound::bind(addr, "the status page", replica).await?;
        tracing::info!(%addr, "status page on plain HTTP (public, read-only)");
        eprintln!("status page on http://{addr}/");
        let page = wharf_server::status_page::StatusPage::new(handle.clone(), setup);
        let shutdown = stopped(api_stopped.clone());
        servers.spawn(async move {
            let listener = listener.listener().await?;
            wharf_server::status_page::serve_status(
                listener,
                page,
                wharf_server::ApiLimits::default(),
                shutdown,
            )
            .await
        });
    }
    if let Some(addr) = metrics {
        let listener = Bound::bind(addr, "/metrics", replica).await?;
        tracing::info!(%addr, "/metrics on plain HTTP (no token)");
        eprintln!("metrics on http://{addr}/metrics");
        let (handle, shutdown) = (handle.clone(), stopped(api_stopped.clone()));
        servers.spawn(async move {
            let listener = listener.listener().await?;
            wharf_server::metrics::serve_metrics(
                listener,
                handle,
                wharf_server::ApiLimits::default(),
                shutdown,
            )
            .await
        });
    }
    let follower = foreground.then(|| {
        tokio::spawn(crate::cmd::logs::follow_all(
            state_dir.join("logs"),
            api_stopped.clone(),
        ))
    });
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stop_stack = async {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("stopping the stack (Ctrl-C again does not skip the graceful stop)");
    };
    if foreground {
        let stop_stack = async {
            tokio::select! {
                () = stop_stack => {}
                _ = terminate.recv() => {}
            }
        };
        control.run(stop_stack).await;
    } else {
        // Detached: SIGTERM ends the control plane only; the stack keeps running for the
        // next one to adopt (once the starts and stops under way have come back).
        let abandon = async move {
            let _ = terminate.recv().await;
            tracing::info!("SIGTERM: leaving the stack running for the next control plane");
        };
        control.run_until(stop_stack, abandon).await;
    }
    let _ = api_stop.send(true);
    while servers.join_next().await.is_some() {}
    // Whatever was queued for the disk (the last records of a SIGTERM'd control plane, the
    // API's last use cases) is written before the process exits.
    writer.run(|_| ()).await;
    if let Some(follower) = follower {
        let _ = follower.await;
    }
    // A replica deposed while it ran (paused, then stopped) finds its successor's pid here:
    // the socket and the pid file are the successor's then, and stay.
    let pid_file = state_dir.join(PID_FILE);
    let ours = std::fs::read_to_string(&pid_file)
        .is_ok_and(|pid| pid.trim() == std::process::id().to_string());
    if ours {
        let _ = std::fs::remove_file(&socket);
        let _ = std::fs::remove_file(&pid_file);
    }
    Ok(())
}

/// A TCP listener of the control plane, bound now or — for a replica that took over from a
/// leader still holding the address (paused, not yet exited) — as soon as it is free, while
/// the control plane already runs on its unix socket.
enum Bound {
    Now(tokio::net::TcpListener),
    Later(std::net::SocketAddr, &'static str),
}

impl Bound {
    /// Binds `addr`; a taken address is an error, but for a replica (see [`Bound`]).
    async fn bind(
        addr: std::net::SocketAddr,
        what: &'static str,
        replica: bool,
    ) -> anyhow::Result<Bound> {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => Ok(Bound::Now(listener)),
            Err(error) if replica && error.kind() == std::io::ErrorKind::AddrInUse => {
                tracing::warn!(%addr, what, "address in use (by the replica this one took over from?); serving it once it is free");
                Ok(Bound::Later(addr, what))
            }
            Err(error) => Err(error).with_context(|| format!("cannot serve {what} on {addr}")),
        }
    }

    /// The listener, waiting (polling twice a second) until the address is free.
    async fn listener(self) -> std::io::Result<tokio::net::TcpListener> {
        let (addr, what) = match self {
            Bound::Now(listener) => return Ok(listener),
            Bound::Later(addr, what) => (addr, what),
        };
        let mut poll = tokio::time::interval(Duration::from_millis(500));
        loop {
            poll.tick().await;
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => {
                    tracing::warn!(%addr, what, "address free again: serving it");
                    return Ok(listener);
                }
                Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {}
                Err(error) => return Err(error),
            }
        }
    }
}

/// Starts the control plane in the background and waits for the stack to settle.
fn detach(
    global: &Global,
    args: &UpArgs,
    state_dir: &Path,
    replica: bool,
) -> anyhow::Result<ExitStatus> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()?;
    let log = File::options()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(state_dir.join(LOG_FILE))?;
    let mut command = std::process::Command::new(exe);
    command
        .arg("up")
        .arg("--daemon")
        .arg("-f")
        .arg(absolute(&global.file)?)
        .arg("--state-dir")
        .arg(state_dir);
    if let Some(env) = &args.environment {
        command.arg("--env").arg(env);
    }
    if let Some(ttl) = args.lease_ttl {
        command
            .arg("--lease-ttl")
            .arg(format!("{}ms", ttl.as_millis()));
    }
    if let Some(addr) = &args.api_listen {
        command
            .arg("--api-listen")
            .arg(addr.to_string())
            .arg("--api-header-timeout")
            .arg(format!("{}ms", args.api_header_timeout.as_millis()))
            .arg("--api-max-connections")
            .arg(args.api_max_connections.to_string())
            .arg("--api-max-connections-per-client")
            .arg(args.api_max_connections_per_client.to_string());
    }
    if let Some(addr) = &args.status_listen {
        command.arg("--status-listen").arg(addr.to_string());
    }
    if let Some(addr) = &args.metrics_listen {
        command.arg("--metrics-listen").arg(addr.to_string());
    }
    if let Some(addr) = &args.dashboard_listen {
        command.arg("--dashboard-listen").arg(addr.to_string());
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        command
            .arg("--tls-cert")
            .arg(absolute(cert)?)
            .arg("--tls-key")
            .arg(absolute(key)?);
    }
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("cannot start the control plane")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let deadline = Instant::now() + args.wait_timeout;
    let report = runtime.block_on(async {
        let mut poll = tokio::time::interval(Duration::from_millis(100));
        loop {
            poll.tick().await;
            if let Ok(Some(status)) = child.try_wait() {
                return Err(anyhow::anyhow!(
                    "the control plane exited ({status}); see {}",
                    state_dir.join(LOG_FILE).display()
                ));
            }
            let role = replica.then(|| crate::replica::role(state_dir, child.id()));
            if let Some(Some(crate::replica::Role::Standby(leader))) = role {
                return Ok(Err(leader));
            }
            if replica && !matches!(role, Some(Some(crate::replica::Role::Leader))) {
                if Instant::now() >= deadline {
                    return Err(anyhow::anyhow!(
                        "the replica neither leads nor waits after {:?}; see {}",
                        args.wait_timeout,
                        state_dir.join(LOG_FILE).display()
                    ));
                }
                continue;
            }
            if let Ok(value) = client::call_ok(state_dir, "GET", "/v1/status", None).await {
                let report: StatusReport = serde_json::from_value(value)?;
                if report.settled || Instant::now() >= deadline {
                    return Ok(Ok(report));
                }
            } else if Instant::now() >= deadline {
                return Err(anyhow::anyhow!(
                    "the control plane did not answer within {:?}",
                    args.wait_timeout
                ));
            }
        }
    })?;
    let report = match report {
        Ok(report) => report,
        Err(leader) => {
            eprintln!(
                "standby: control plane replica pid {} waits for the control lease, held by {leader}; it takes over within {:?} of that leader's end; logs: {}",
                child.id(),
                args.lease_ttl(),
                state_dir.join(LOG_FILE).display()
            );
            return Ok(ExitStatus::Ok);
        }
    };
    crate::cmd::status::print_report(&report, global.output)?;
    if let Some(addr) = &args.dashboard_listen {
        eprintln!("dashboard on http://{addr}/");
    }
    eprintln!(
        "control plane pid {} detached; logs: {}",
        child.id(),
        state_dir.join(LOG_FILE).display()
    );
    Ok(if report.healthy {
        ExitStatus::Ok
    } else {
        ExitStatus::Failed
    })
}

/// Every driver an instance may have: processes, and containers for `image:` services (the
/// engine is contacted only when a container starts or a recorded one is looked for).
pub fn drivers() -> anyhow::Result<wharf_runtime::Drivers> {
    Ok(wharf_runtime::Drivers {
        process: std::sync::Arc::new(process_driver()?),
        container: Some(std::sync::Arc::new(wharf_container::ContainerDriver::new(
            None,
        ))),
    })
}

/// The process driver with its shim: the small dedicated `wharf-shim` when installed beside
/// wharf (2 MB per instance instead of 5), else wharf itself in its shim role.
pub fn process_driver() -> anyhow::Result<ProcessDriver> {
    let exe = std::env::current_exe().context("cannot find the wharf binary for the shim")?;
    let small_shim = exe.with_file_name("wharf-shim");
    let (shim_program, shim_args) = if small_shim.is_file() {
        (small_shim, Vec::new())
    } else {
        (exe, vec!["__shim".to_owned()])
    };
    Ok(ProcessDriver::new(shim_program, shim_args))
}
