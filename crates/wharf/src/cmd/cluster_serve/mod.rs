//! `wharf cluster serve`: the stack's controller on a Kubernetes cluster, a long-running
//! process (two replicas from wharf's Helm chart) in place of a `wharf cluster deploy` in an
//! operator's terminal.
//!
//! - **Leadership**: with the state in PostgreSQL (`WHARF_STATE_DSN`) each replica contends
//!   for its namespace's lease (`cluster/NAMESPACE`: controllers of several namespaces, and a
//!   `wharf up` stack, can share one database); the holder leads, its store fenced by the lease's token, and
//!   renews every third of the TTL — a failed renewal ends the process at once (another
//!   replica leads, and this one's writes are refused anyway). On a state directory's SQLite
//!   there is one replica, chosen by `control.lock`.
//! - **Leading**: the new leader records `control.leader`, then resumes every unfinished
//!   rollout of its namespace from the saved state (the step the old leader journaled before
//!   acting: no step is repeated), and takes new ones over its API. A rollout whose cluster
//!   calls fail is resumed again from its saved state after a backoff, not abandoned.
//! - **Standing by**: a standby serves the reads (status, a rollout, the audit log and its
//!   verification) from the shared state, and forwards writes to the leader at the URL the
//!   leader advertised in its lease, so either replica behind one Service answers everything.
//! - **Stopping** (SIGTERM, as in a rolling update of the controller itself): the lease is
//!   given up and the rollouts are left where their state says; the other replica resumes
//!   them at once. Unlike `wharf cluster deploy`'s Ctrl-C, a controller's stop never aborts.

mod api;
pub mod client;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;
use wharf_kube::cluster::Cluster;
use wharf_kube::deploy::ClusterRollout;
use wharf_ops::lease::{Candidate, Lease};
use wharf_ops::read::StateDb;
use wharf_rollout::{Event, Outcome};

use super::cluster::{AnalysisArgs, Begun, ConnectArgs, OpsJournal, PacingArgs};
use crate::cli::Global;
use crate::exit::ExitStatus;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Where the controller's HTTP API listens.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// The URL the other replica reaches this one at (a standby forwards writes to the
    /// leader's). Default: `http://$POD_IP:PORT` in a pod, else `http://LISTEN`.
    #[arg(long, value_name = "URL")]
    pub advertise: Option<String>,
    /// How long the control lease lasts past each renewal: a killed leader is replaced
    /// within it.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::cmd::up::parse_duration)]
    pub lease_ttl: Duration,
    #[command(flatten)]
    pub analysis: AnalysisArgs,
    #[command(flatten)]
    pub pacing: PacingArgs,
}

/// What this replica is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// Connecting to the state, not yet contending.
    Starting,
    /// Waiting for the lease, held by `leader` (its holder text, URL last) when known.
    Standby {
        leader: Option<String>,
    },
    /// Holds the lease and is resuming the saved rollouts: writes wait for it to lead.
    TakingOver,
    Leader,
    /// SIGTERM: taking no more writes, stopping its rollouts, then giving the lease up.
    Stopping,
}

/// A rollout this leader runs: where its operator commands go, and its task.
struct Running {
    version: String,
    commands: mpsc::Sender<Event>,
    /// Which start this is: a task ending removes its own entry only.
    generation: u64,
    task: tokio::task::AbortHandle,
}

/// What the API and the rollouts share.
pub(crate) struct Controller {
    pub(crate) stack: wharf_manifest::Stack,
    pub(crate) cluster: Cluster,
    pub(crate) state_dir: PathBuf,
    /// This replica's name in the lease and the ledger, its advertised URL last.
    pub(crate) holder: String,
    /// `WHARF_API_TOKEN`: the break-glass admin token, when set.
    pub(crate) api_token: Option<String>,
    analysis: AnalysisArgs,
    pacing: PacingArgs,
    role: Mutex<Role>,
    /// The lease this replica leads under (`None` on SQLite, where the flock decides).
    lease: Mutex<Option<Lease>>,
    running: Mutex<HashMap<String, Running>>,
    /// The kept reading connection ([`Controller::read`]).
    reading: Mutex<Option<StateDb>>,
    /// The next [`Running::generation`].
    generations: std::sync::atomic::AtomicU64,
    /// Held while a deploy request is decided and started: two requests for one service at
    /// once must not both find it idle and start two rollouts.
    deciding: tokio::sync::Mutex<()>,
}

/// Why a deploy request or an operator command is refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    #[error("service `{0}` is not in the manifest")]
    UnknownService(String),
    #[error("no rollout of `{0}` is under way")]
    NoRollout(String),
    #[error("{0}")]
    Rejected(String),
    #[error("this replica does not lead (the leader is {leader})")]
    NotLeader { leader: String },
    #[error("{0:#}")]
    Internal(anyhow::Error),
}

impl Controller {
    pub(crate) fn role(&self) -> Role {
        self.role
            .lock()
            .map(|r| r.clone())
            .unwrap_or(Role::Starting)
    }

    /// `Err(NotLeader)` unless this replica leads now.
    fn leading(&self) -> Result<(), RequestError> {
        match self.role() {
            Role::Leader => Ok(()),
            Role::Standby { leader } => Err(RequestError::NotLeader {
                leader: leader.unwrap_or_else(|| "not known yet".to_owned()),
            }),
            Role::Starting | Role::TakingOver => Err(RequestError::NotLeader {
                leader: "being elected".to_owned(),
            }),
            Role::Stopping => Err(RequestError::NotLeader {
                leader: "being handed over (this replica is stopping)".to_owned(),
            }),
        }
    }

    fn set_role(&self, role: Role) {
        if let Ok(mut current) = self.role.lock() {
            *current = role;
        }
    }

    /// The namespace the stack runs in.
    pub(crate) fn namespace(&self) -> &str {
        self.cluster.namespace()
    }

    /// Runs `read` on this replica's reading connection to the state (standbys read too:
    /// the state is shared), opened on first use and kept: a following client asks four
    /// times a second, and a PostgreSQL connection is a handshake and a thread. A read that
    /// fails drops the connection, so one broken by a database restart is made again. `None`
    /// while there is no state yet. Blocking: call it off the runtime's threads.
    pub(crate) fn read<T>(
        &self,
        read: impl FnOnce(&mut StateDb) -> anyhow::Result<T>,
    ) -> anyhow::Result<Option<T>> {
        let mut kept = self
            .reading
            .lock()
            .map_err(|_| anyhow::anyhow!("the state's reading connection was poisoned"))?;
        if kept.is_none() {
            *kept = wharf_ops::read::open_existing(&self.state_dir)?;
        }
        let Some(store) = kept.as_mut() else {
            return Ok(None);
        };
        match read(store) {
            Ok(value) => Ok(Some(value)),
            Err(error) => {
                *kept = None;
                Err(error)
            }
        }
    }

    /// A writing connection, fenced by this leader's lease: once another replica holds the
    /// lease, every write through it is refused (and recorded as refused).
    fn writer(&self) -> anyhow::Result<StateDb> {
        let location = wharf_ops::read::location(&self.state_dir)?;
        let mut store = StateDb::open_location_for_writing(&location)?;
        if let Some(lease) = self.lease.lock().ok().and_then(|l| l.clone()) {
            store.fence(&lease);
        }
        Ok(store)
    }

    /// [`Controller::writer`] off the runtime's threads (a PostgreSQL connection is made).
    async fn open_writer(self: &Arc<Self>) -> anyhow::Result<StateDb> {
        let controller = self.clone();
        tokio::task::spawn_blocking(move || controller.writer()).await?
    }

    /// Starts a rollout of `service` to `version` (or resumes the saved one to that version),
    /// recorded as `actor`'s. `Ok(false)` when this leader already runs it.
    pub(crate) async fn deploy(
        self: &Arc<Self>,
        service: &str,
        version: &str,
        actor: wharf_ops::Actor,
    ) -> Result<(u64, bool), RequestError> {
        if !self.stack.services.contains_key(service) {
            return Err(RequestError::UnknownService(service.to_owned()));
        }
        let _deciding = self.deciding.lock().await;
        // Checked under the lock: a take-over resumes the saved rollouts holding it.
        self.leading()?;
        if let Some(running) = self.running.lock().ok().and_then(|r| {
            r.get(service)
                .map(|running| (running.version.clone(), running.commands.is_closed()))
        }) && !running.1
        {
            if running.0 == version {
                let controller = self.clone();
                let name = service.to_owned();
                let saved = tokio::task::spawn_blocking(move || controller.saved(&name))
                    .await
                    .map_err(|e| RequestError::Internal(e.into()))?
                    .map_err(RequestError::Internal)?;
                return Ok((saved.map_or(0, |(id, _)| id), false));
            }
            return Err(RequestError::Rejected(format!(
                "a rollout of `{service}` to {} is under way; wait for it or abort it first",
                running.0
            )));
        }
        let refused = |error| match error {
            super::cluster::BeginError::State(error) => RequestError::Internal(error),
            refused => RequestError::Rejected(refused.to_string()),
        };
        let store = self.open_writer().await.map_err(RequestError::Internal)?;
        let start = super::cluster::start_point(&store, self.namespace(), service, version)
            .map_err(refused)?;
        let begun = super::cluster::begin(&self.cluster, &self.stack, start, service, version)
            .await
            .map_err(refused)?;
        if let Err(message) = self.analysis.check(begun.rollout.split, service) {
            return Err(RequestError::Rejected(format!(
                "the controller cannot judge this rollout: {message} (on `wharf cluster serve`)"
            )));
        }
        let id = begun.id;
        self.start(begun, store, actor);
        Ok((id, true))
    }

    /// Sends an operator command to the running rollout of `service`.
    pub(crate) async fn command(&self, service: &str, event: Event) -> Result<(), RequestError> {
        self.leading()?;
        let sender = self
            .running
            .lock()
            .ok()
            .and_then(|r| r.get(service).map(|running| running.commands.clone()));
        match sender {
            Some(sender) => sender
                .send(event)
                .await
                .map_err(|_| RequestError::NoRollout(service.to_owned())),
            None => Err(RequestError::NoRollout(service.to_owned())),
        }
    }

    /// Runs `begun` in its own task until it ends: after a failure (the API server away,
    /// a Prometheus that does not answer, the database restarted) it is resumed from its
    /// saved state, through a new connection, after a backoff; a lost lease ends the whole
    /// process (see `replica::renew`). Callers hold `deciding`; a service whose rollout
    /// already runs here is left to it.
    fn start(self: &Arc<Self>, begun: Begun, store: StateDb, actor: wharf_ops::Actor) {
        let service = begun.rollout.service.clone();
        let version = begun.rollout.new.version.clone();
        let Ok(mut running) = self.running.lock() else {
            return;
        };
        if running
            .get(&service)
            .is_some_and(|r| !r.commands.is_closed() && !r.task.is_finished())
        {
            return;
        }
        let generation = self
            .generations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (commands_tx, mut commands) = mpsc::channel(8);
        let controller = self.clone();
        let task_service = service.clone();
        let task_version = version.clone();
        let task = tokio::spawn(async move {
            let (service, version) = (task_service, task_version);
            let mut journal = OpsJournal {
                store: Mutex::new(store),
                actor,
                key: wharf_ops::cluster::key(controller.namespace(), &service),
                id: begun.id,
            };
            let mut next = Some(begun);
            let mut backoff = Duration::from_secs(1);
            while let Some(begun) = next.take() {
                let mut progress = |line: &str| {
                    tracing::info!(service = %service, "{line}");
                    eprintln!("{service}: {line}");
                };
                let outcome = super::cluster::run_rollout(
                    &controller.cluster,
                    &controller.stack,
                    &controller.analysis,
                    controller.pacing.options(),
                    begun,
                    &mut journal,
                    &mut commands,
                    &mut progress,
                )
                .await;
                let error = match outcome {
                    Ok(Outcome::Succeeded) => {
                        eprintln!("{service} {version}: succeeded");
                        break;
                    }
                    Ok(Outcome::RolledBack { reason }) => {
                        eprintln!("{service} {version}: rolled back ({reason})");
                        break;
                    }
                    Err(error) => error,
                };
                tracing::warn!(service = %service, error = %format!("{error:#}"), "the rollout stopped; resuming it from its saved state");
                eprintln!(
                    "{service} {version}: {error:#}; resuming from the saved state in {backoff:?}"
                );
                // Until the saved state is read again through a new connection (the old
                // one may be what failed), the rollout is not given up.
                loop {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    let reading = controller.clone();
                    let name = service.clone();
                    let resumed = tokio::task::spawn_blocking(move || {
                        let saved = reading.saved(&name)?;
                        let store = reading.writer()?;
                        anyhow::Ok((saved, store))
                    })
                    .await
                    .map_err(anyhow::Error::from)
                    .and_then(|read| read);
                    match resumed {
                        Ok((Some((id, rollout)), store)) if !rollout.machine.is_done() => {
                            journal.id = id;
                            journal.store = Mutex::new(store);
                            next = Some(Begun {
                                rollout,
                                resumed: true,
                                id,
                            });
                            break;
                        }
                        // Ended (an operator's abort through another way) or gone.
                        Ok(_) => break,
                        Err(error) => eprintln!(
                            "{service}: cannot read its saved rollout ({error:#}); trying again in {backoff:?}"
                        ),
                    }
                }
            }
            if let Ok(mut running) = controller.running.lock()
                && running
                    .get(&service)
                    .is_some_and(|r| r.generation == generation)
            {
                running.remove(&service);
            }
        });
        running.insert(
            service,
            Running {
                version,
                commands: commands_tx,
                generation,
                task: task.abort_handle(),
            },
        );
    }

    /// Stops every rollout task here (their state stays as last saved; the next leader
    /// resumes them) and waits until none runs.
    async fn stop_rollouts(&self) {
        let tasks: Vec<tokio::task::AbortHandle> = self
            .running
            .lock()
            .map(|mut running| running.drain().map(|(_, r)| r.task).collect())
            .unwrap_or_default();
        for task in &tasks {
            task.abort();
        }
        let mut poll = tokio::time::interval(Duration::from_millis(10));
        while tasks.iter().any(|t| !t.is_finished()) {
            poll.tick().await;
        }
    }

    /// The latest saved rollout of `service` in this namespace.
    pub(crate) fn saved(&self, service: &str) -> anyhow::Result<Option<(u64, ClusterRollout)>> {
        let row = self.read(|store| {
            Ok(wharf_ops::cluster::latest(
                store,
                self.namespace(),
                service,
            )?)
        })?;
        let Some(row) = row.flatten() else {
            return Ok(None);
        };
        let rollout: ClusterRollout = serde_json::from_str(&row.state)
            .with_context(|| format!("the saved rollout of {} is unreadable", row.service))?;
        Ok(Some((row.id, rollout)))
    }

    /// Takes office: records `control.leader` (under the lease, fenced), then resumes every
    /// unfinished rollout of this namespace where its saved state left it — holding
    /// `deciding`, so no deploy request starts one of them a second time meanwhile. A saved
    /// rollout that does not read (another wharf's, a damaged row) is named and skipped, not
    /// a reason for no replica ever to lead.
    async fn take_office(self: &Arc<Self>) -> anyhow::Result<()> {
        let _deciding = self.deciding.lock().await;
        let lease = self.lease.lock().ok().and_then(|l| l.clone());
        let controller = self.clone();
        let unfinished = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let mut store = controller.writer()?;
            if let Some(lease) = &lease {
                wharf_ops::lease::record_leadership(&mut store, &controller.actor(), lease)?;
            }
            let prefix = wharf_ops::cluster::key(controller.namespace(), "");
            let mut seen = Vec::new();
            let mut unfinished = Vec::new();
            // Newest first: the first row of a key is its latest rollout.
            for row in store.rollouts()? {
                let Some(service) = row.service.strip_prefix(&prefix) else {
                    continue;
                };
                if seen.iter().any(|s| s == service) {
                    continue;
                }
                seen.push(service.to_owned());
                match serde_json::from_str::<ClusterRollout>(&row.state) {
                    Ok(rollout) if !rollout.machine.is_done() => {
                        unfinished.push((row.id, rollout));
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::error!(rollout = %row.service, %error, "a saved rollout does not read: skipped");
                        eprintln!(
                            "error: the saved rollout {} (id {}) does not read ({error}); not resuming it",
                            row.service, row.id
                        );
                    }
                }
            }
            Ok(unfinished)
        })
        .await??;
        for (id, rollout) in unfinished {
            eprintln!(
                "resuming the rollout of {} to {} (rollout {id})",
                rollout.service, rollout.new.version
            );
            let store = self.open_writer().await?;
            self.start(
                Begun {
                    rollout,
                    resumed: true,
                    id,
                },
                store,
                self.actor(),
            );
        }
        self.set_role(Role::Leader);
        Ok(())
    }

    /// The controller's own name in the ledger (what it does unasked: resuming, leading).
    fn actor(&self) -> wharf_ops::Actor {
        wharf_ops::Actor(
            self.holder
                .split_once(' ')
                .map_or(self.holder.as_str(), |(name, _)| name)
                .to_owned(),
        )
    }
}

/// The leader's URL in its holder text (`NAME URL`), for a standby to forward writes to.
pub(crate) fn leader_url(holder: &str) -> Option<&str> {
    holder
        .rsplit_once(' ')
        .map(|(_, url)| url)
        .filter(|url| url.starts_with("http://"))
}

/// The URL this replica advertises: `--advertise`, else `http://$POD_IP:PORT` in a pod,
/// else the listen address itself.
fn advertised(args: &ServeArgs) -> Result<String, String> {
    let url = match (&args.advertise, std::env::var("POD_IP")) {
        (Some(url), _) => url.trim_end_matches('/').to_owned(),
        (None, Ok(ip)) if !ip.trim().is_empty() => {
            let ip: std::net::IpAddr = ip
                .trim()
                .parse()
                .map_err(|_| format!("POD_IP `{ip}` is not an IP address"))?;
            format!("http://{}", SocketAddr::new(ip, args.listen.port()))
        }
        _ if args.listen.ip().is_unspecified() => {
            return Err(format!(
                "listening on {} (every address): give --advertise URL (or POD_IP) so the other replica can reach this one",
                args.listen
            ));
        }
        _ => format!("http://{}", args.listen),
    };
    if !url.starts_with("http://") || url.contains(' ') {
        return Err(format!(
            "--advertise `{url}`: an http:// URL without spaces is needed (replicas talk plain HTTP inside the cluster)"
        ));
    }
    Ok(url)
}

/// Runs the controller until SIGTERM or Ctrl-C.
pub(crate) async fn serve(global: &Global, mut args: ServeArgs) -> anyhow::Result<ExitStatus> {
    let api_token = match std::env::var("WHARF_API_TOKEN") {
        Ok(token) if token.len() < 16 => {
            eprintln!(
                "error: WHARF_API_TOKEN must be at least 16 characters (or unset it and use `wharf token create` tokens)"
            );
            return Ok(ExitStatus::Invalid);
        }
        Ok(token) => Some(token),
        Err(_) => None,
    };
    let advertise = match advertised(&args) {
        Ok(url) => url,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitStatus::Invalid);
        }
    };
    if args.connect.namespace.is_none()
        && let Ok(namespace) = std::env::var("POD_NAMESPACE")
        && !namespace.trim().is_empty()
    {
        args.connect.namespace = Some(namespace.trim().to_owned());
    }
    let Some(stack) = super::cluster::load_stack(global, args.connect.environment.as_deref())?
    else {
        return Ok(ExitStatus::Invalid);
    };
    let cluster = super::cluster::connect(&args.connect).await?;
    let state_dir = global.state_dir();
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("cannot create {}", state_dir.display()))?;
    let postgres = wharf_ops::read::location(&state_dir)?.is_postgres();
    let name = std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(crate::cmd::audit::actor);
    let holder = format!(
        "wharf-cluster@{}#{} {advertise}",
        name.trim(),
        std::process::id()
    );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let controller = Arc::new(Controller {
        stack,
        cluster,
        state_dir: state_dir.clone(),
        holder: holder.clone(),
        api_token,
        analysis: args.analysis.clone(),
        pacing: args.pacing.clone(),
        role: Mutex::new(Role::Starting),
        lease: Mutex::new(None),
        running: Mutex::new(HashMap::new()),
        reading: Mutex::new(None),
        generations: std::sync::atomic::AtomicU64::new(0),
        deciding: tokio::sync::Mutex::new(()),
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = {
        let mut stop = stop_rx.clone();
        let app = api::routes(controller.clone());
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        })
    };
    eprintln!(
        "wharf cluster serve: {holder} on namespace {}, API on {}",
        controller.namespace(),
        args.listen
    );
    let terminate = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    tokio::pin!(terminate);
    let mut leadership = None;
    let _lock;
    if postgres {
        let candidate = Candidate::connect_for(
            &state_dir,
            &wharf_ops::lease::cluster_lease(controller.namespace()),
            holder.clone(),
            args.lease_ttl,
        )?;
        let candidate = Arc::new(Mutex::new(candidate));
        let lease = tokio::select! {
            lease = contend(&controller, &candidate, args.lease_ttl) => lease?,
            _ = &mut terminate => {
                let _ = stop_tx.send(true);
                let _ = server.await;
                return Ok(ExitStatus::Ok);
            }
        };
        eprintln!(
            "{} leads: took the control lease under token {}",
            lease.holder,
            lease.token.value()
        );
        controller.set_role(Role::TakingOver);
        if let Ok(mut held) = controller.lease.lock() {
            *held = Some(lease.clone());
        }
        let renewer = tokio::spawn(crate::replica::renew(
            candidate.clone(),
            lease.clone(),
            args.lease_ttl,
        ));
        leadership = Some((candidate, lease, renewer));
    } else {
        _lock = wharf_ops::ControlLock::acquire_or_refuse(&state_dir, "`wharf cluster serve`")?;
        eprintln!("{holder} leads (one replica: the state is this directory's SQLite)");
    }
    let took = controller.take_office().await;
    if let Err(error) = &took {
        eprintln!("error: cannot take office: {error:#}");
    } else {
        (&mut terminate).await;
        eprintln!(
            "stopping: the rollouts stay where their saved state is; the other replica resumes them"
        );
    }
    // Writes refused first, then this replica's rollouts stopped, and only then the lease
    // given up: nothing acts here once another replica may.
    controller.set_role(Role::Stopping);
    controller.stop_rollouts().await;
    if let Some((candidate, lease, renewer)) = leadership {
        renewer.abort();
        let released = crate::replica::blocking(&candidate, move |c| Ok(c.release(&lease)?)).await;
        if let Err(error) = released {
            eprintln!(
                "warning: cannot give the control lease up ({error:#}); it runs out by itself"
            );
        }
    }
    let _ = stop_tx.send(true);
    let _ = server.await;
    took.map(|()| ExitStatus::Ok)
}

/// Waits for the control lease as a standby, keeping the leader's name (and URL) for the API.
async fn contend(
    controller: &Controller,
    candidate: &Arc<Mutex<Candidate>>,
    ttl: Duration,
) -> anyhow::Result<Lease> {
    // Polling a few times per TTL bounds a takeover at TTL plus one poll.
    let mut poll = tokio::time::interval((ttl / 10).max(Duration::from_millis(20)));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut announced: Option<String> = None;
    loop {
        poll.tick().await;
        let (taken, current) =
            crate::replica::blocking(candidate, |c| Ok((c.try_take()?, c.current_holder()?)))
                .await
                .context("cannot contend for the control lease")?;
        if let Some(lease) = taken {
            return Ok(lease);
        }
        let leader = current.map(|(holder, _)| holder);
        controller.set_role(Role::Standby {
            leader: leader.clone(),
        });
        if announced != leader {
            eprintln!(
                "standby: waits for the control lease, held by {}",
                leader.as_deref().unwrap_or("nobody yet")
            );
            announced = leader;
        }
    }
}
