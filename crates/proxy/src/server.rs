//! The proxy as a whole: the current routes behind an `ArcSwap`, the listeners it binds and
//! closes as tables change, the shared instance and stats registries, applying a table
//! atomically, persisting it, and a graceful shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::budget::{Budget, Limits, Refusal};
use crate::forward;
use crate::persist;
use crate::routes::{Clock, Instance, InstanceReport, Routes};
use crate::stats::{Stats, StatsReport};
use crate::table::{Mode, RouteTable, TableError, ValidTable};

/// The largest request head (request line plus headers) the proxy accepts.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// What can go wrong applying a table.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The table was refused; nothing changed.
    #[error(transparent)]
    Table(#[from] TableError),
    /// The state file could not be written; nothing changed.
    #[error("cannot write the state file {path}: {source}")]
    Persist {
        /// The state file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Shared by every connection task.
#[derive(Debug)]
pub(crate) struct Inner {
    pub routes: ArcSwap<Routes>,
    workers: Workers,
    pub clock: Clock,
    pub stats: Arc<Stats>,
    instances: Mutex<HashMap<SocketAddr, Arc<Instance>>>,
    /// Instances dropped from `instances` after their drain timeout while requests to them
    /// were still in flight (a response body still streaming); reported until those finish.
    retired: Mutex<Vec<Arc<Instance>>>,
    listeners: Mutex<HashMap<SocketAddr, Listener>>,
    /// Listening sockets handed over at start (by the control plane, which keeps a copy of
    /// each so that connections wait in their backlog while a proxy restarts), taken by the
    /// first table that names their address instead of binding anew.
    inherited: Mutex<HashMap<SocketAddr, Bound>>,
    /// Serialises table updates; the request path never takes it.
    apply: Mutex<()>,
    state_file: Option<PathBuf>,
}

#[derive(Debug)]
struct Listener {
    /// Sends the drain timeout when the listener must close.
    stop: watch::Sender<Option<Duration>>,
    task: JoinHandle<()>,
    /// The sockets' descriptors in this process, reported in `/v1/stats` so the control
    /// plane can keep a copy of each (`pidfd_getfd`).
    fds: Vec<i32>,
}

/// The data-plane proxy. Cheap to clone; every clone is the same proxy.
#[derive(Debug, Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

impl Proxy {
    /// A proxy with no routes, persisting applied tables to `state_file` when given, with
    /// one connection worker per core.
    pub fn new(state_file: Option<PathBuf>) -> Proxy {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Proxy::with_workers(state_file, cores)
    }

    /// As [`Proxy::new`] with `workers` connection threads. Each runs a single-threaded Tokio
    /// runtime with its own upstream pool, so a request, its upstream exchange and both
    /// connections stay on one thread, as in nginx's worker model; the threads live as long
    /// as the process.
    pub fn with_workers(state_file: Option<PathBuf>, workers: usize) -> Proxy {
        Proxy {
            inner: Arc::new(Inner {
                routes: ArcSwap::from_pointee(Routes::empty()),
                workers: Workers::start(workers.max(1)),
                clock: Clock::new(),
                stats: Arc::new(Stats::default()),
                instances: Mutex::default(),
                retired: Mutex::default(),
                listeners: Mutex::default(),
                inherited: Mutex::default(),
                apply: Mutex::new(()),
                state_file,
            }),
        }
    }

    /// Listening sockets to serve instead of binding their addresses (handed over by the
    /// control plane at start); those no table names are closed after the next table.
    pub fn inherit(&self, sockets: HashMap<SocketAddr, Vec<std::net::TcpListener>>) {
        let mut inherited = self
            .inner
            .inherited
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        inherited.extend(sockets);
    }

    /// Load the state file, if it exists, and apply the table in it.
    pub fn restore(&self) -> Result<Option<u64>, persist::RestoreError> {
        let Some(path) = &self.inner.state_file else {
            return Ok(None);
        };
        let Some(table) = persist::load(path)? else {
            return Ok(None);
        };
        let revision = table.revision();
        self.install(table, false)
            .map_err(|source| persist::RestoreError::Apply {
                path: path.clone(),
                source,
            })?;
        Ok(Some(revision))
    }

    /// Validate and apply a table from JSON. Must run inside a Tokio runtime.
    pub fn apply_json(&self, json: &[u8]) -> Result<u64, ApplyError> {
        self.apply(crate::table::parse(json)?)
    }

    /// Apply a validated table: refused unless its revision is newer; binds new ports first
    /// (refused, with nothing changed, if one cannot be bound), persists it, swaps it in for
    /// new requests at once, then closes the ports no longer named.
    pub fn apply(&self, table: ValidTable) -> Result<u64, ApplyError> {
        self.install(table, true)
    }

    fn install(&self, table: ValidTable, persist: bool) -> Result<u64, ApplyError> {
        let inner = &self.inner;
        let _serial = inner.apply.lock().unwrap_or_else(|e| e.into_inner());
        let current = inner.routes.load_full();
        if table.revision() <= current.revision() && current.table.is_some() {
            return Err(TableError::StaleRevision {
                offered: table.revision(),
                current: current.revision(),
            }
            .into());
        }
        let bound = self.bind_new(&table)?;
        if persist && let Some(path) = &inner.state_file {
            persist::store(path, table.table()).map_err(|source| ApplyError::Persist {
                path: path.clone(),
                source,
            })?;
        }
        let revision = table.revision();
        let routes = {
            let mut registry = inner.instances.lock().unwrap_or_else(|e| e.into_inner());
            let mut instance = |address| {
                registry
                    .entry(address)
                    .or_insert_with(|| Arc::new(Instance::new(address)))
                    .clone()
            };
            let stats = |service: &str, version: &str| inner.stats.version(service, version);
            Routes::build(table, &mut instance, &stats)
        };
        for instance in routes.instances() {
            instance.generation.fetch_add(1, Ordering::Relaxed);
            instance
                .cut
                .send_if_modified(|cut| std::mem::replace(cut, false));
        }
        let routes = Arc::new(routes);
        inner.routes.store(routes.clone());
        tracing::info!(
            revision,
            services = routes.by_listen.len(),
            "route table applied"
        );
        self.drain_removed(&current, &routes);
        self.start_listeners(bound);
        self.close_removed(&current, &routes);
        Ok(revision)
    }

    fn bind_new(&self, table: &ValidTable) -> Result<Vec<(SocketAddr, Bound)>, TableError> {
        let listeners = self
            .inner
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut bound = Vec::new();
        let mut inherited = self
            .inner
            .inherited
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for service in &table.services {
            if listeners.contains_key(&service.listen) {
                continue;
            }
            if let Some(sockets) = inherited.remove(&service.listen) {
                tracing::info!(address = %service.listen, sockets = sockets.len(), "serving a handed-over port");
                bound.push((service.listen, sockets));
                continue;
            }
            let listener =
                bind(service.listen, self.inner.workers.handles.len()).map_err(|err| {
                    TableError::Bind {
                        service: service.name.clone(),
                        address: service.listen,
                        reason: match err.kind() {
                            std::io::ErrorKind::AddrInUse => {
                                "the port is already in use".to_owned()
                            }
                            _ => err.to_string(),
                        },
                    }
                })?;
            bound.push((service.listen, listener));
        }
        // Handed-over ports no table wants are closed (their waiting connections refused).
        inherited.clear();
        Ok(bound)
    }

    fn start_listeners(&self, bound: Vec<(SocketAddr, Bound)>) {
        let mut listeners = self
            .inner
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (address, listener) in bound {
            let fds = listener
                .iter()
                .map(std::os::fd::AsRawFd::as_raw_fd)
                .collect();
            let (stop, stopped) = watch::channel(None);
            let task = tokio::spawn(serve(self.inner.clone(), address, listener, stopped));
            tracing::info!(%address, "listening");
            listeners.insert(address, Listener { stop, task, fds });
        }
    }

    fn close_removed(&self, old: &Routes, new: &Routes) {
        let mut listeners = self
            .inner
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (address, service) in &old.by_listen {
            if new.by_listen.contains_key(address) {
                continue;
            }
            if let Some(listener) = listeners.remove(address) {
                tracing::info!(%address, service = %service.name, "closing port");
                listener.stop.send_replace(Some(service.drain));
            }
        }
    }

    /// Instances in the old table but not the new get no new requests already (the new table
    /// does not name them); after the drain timeout their in-flight requests are cut.
    fn drain_removed(&self, old: &Routes, new: &Routes) {
        let kept: std::collections::HashSet<SocketAddr> =
            new.instances().map(|i| i.address).collect();
        for service in old.by_listen.values() {
            for instance in service.versions.iter().flat_map(|v| v.instances.iter()) {
                if kept.contains(&instance.address) {
                    continue;
                }
                let generation = instance.generation.load(Ordering::Relaxed);
                let instance = instance.clone();
                let inner = self.inner.clone();
                let drain = service.drain;
                tracing::info!(instance = %instance.address, ?drain, "draining instance");
                tokio::spawn(async move {
                    tokio::time::sleep(drain).await;
                    if instance.generation.load(Ordering::Relaxed) == generation {
                        instance.cut.send_replace(true);
                        let mut registry =
                            inner.instances.lock().unwrap_or_else(|e| e.into_inner());
                        registry.remove(&instance.address);
                        drop(registry);
                        if instance.in_flight() > 0 {
                            let mut retired =
                                inner.retired.lock().unwrap_or_else(|e| e.into_inner());
                            retired.push(instance);
                        }
                    }
                });
            }
        }
    }

    /// The table in force, if any.
    pub fn table(&self) -> Option<RouteTable> {
        self.inner
            .routes
            .load()
            .table
            .as_ref()
            .map(|t| t.table().clone())
    }

    /// The revision in force (0 before the first table).
    pub fn revision(&self) -> u64 {
        self.inner.routes.load().revision()
    }

    /// Per-version counters and latency summaries, plus the state of every instance.
    pub fn stats(&self) -> FullStats {
        let registry = self
            .inner
            .instances
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut instances: std::collections::BTreeMap<String, InstanceReport> = registry
            .iter()
            .map(|(address, instance)| (address.to_string(), instance.report(&self.inner.clock)))
            .collect();
        drop(registry);
        let mut retired = self.inner.retired.lock().unwrap_or_else(|e| e.into_inner());
        retired.retain(|instance| instance.in_flight() > 0);
        for instance in retired.iter() {
            let report = instance.report(&self.inner.clock);
            instances
                .entry(instance.address.to_string())
                .and_modify(|current| current.in_flight += report.in_flight)
                .or_insert(report);
        }
        drop(retired);
        let listeners = self
            .inner
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(address, listener)| (address.to_string(), listener.fds.clone()))
            .collect();
        FullStats {
            revision: self.revision(),
            stats: self.inner.stats.report(),
            instances,
            pid: std::process::id(),
            listeners,
        }
    }

    /// The OpenMetrics text for `/metrics`.
    pub fn metrics(&self) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(crate::stats::StatsCollector(
            self.inner.stats.clone(),
        )));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }

    /// Stop accepting on every port, then wait for in-flight requests, each port bounded by
    /// its service's drain timeout.
    pub async fn shutdown(&self) {
        let drains: Vec<(Listener, Duration)> = {
            let routes = self.inner.routes.load_full();
            let mut listeners = self
                .inner
                .listeners
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            listeners
                .drain()
                .map(|(address, listener)| {
                    let drain = routes
                        .by_listen
                        .get(&address)
                        .map_or(Duration::from_secs(30), |s| s.drain);
                    (listener, drain)
                })
                .collect()
        };
        for (listener, drain) in &drains {
            listener.stop.send_replace(Some(*drain));
        }
        for (listener, _) in drains {
            let _ = listener.task.await;
        }
    }
}

/// `/v1/stats`.
#[derive(Debug, serde::Serialize)]
pub struct FullStats {
    /// The revision in force.
    pub revision: u64,
    /// Counters by service and version.
    #[serde(flatten)]
    pub stats: StatsReport,
    /// Instances by address.
    pub instances: std::collections::BTreeMap<String, InstanceReport>,
    /// This process, whose descriptors `listeners` names.
    pub pid: u32,
    /// The open ports: each one's listening sockets' descriptors in this process.
    pub listeners: std::collections::BTreeMap<String, Vec<i32>>,
}

/// The connection threads, each with a single-threaded runtime and its own socket on every
/// port.
#[derive(Debug)]
struct Workers {
    handles: Vec<tokio::runtime::Handle>,
}

impl Workers {
    fn start(count: usize) -> Workers {
        let (sender, receiver) = std::sync::mpsc::channel();
        for index in 0..count {
            let sender = sender.clone();
            std::thread::Builder::new()
                .name(format!("wharf-proxy-worker-{index}"))
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a worker runtime starts");
                    let _ = sender.send(runtime.handle().clone());
                    drop(sender);
                    // The worker's own task: close upstream connections idle too long.
                    runtime.block_on(async {
                        let mut sweep = tokio::time::interval(crate::h1::pool::IDLE_TIMEOUT / 3);
                        loop {
                            sweep.tick().await;
                            crate::upstream::sweep();
                            crate::h1::pool::sweep();
                        }
                    });
                })
                .expect("a worker thread starts");
        }
        drop(sender);
        Workers {
            handles: receiver.iter().take(count).collect(),
        }
    }
}

/// One port's sockets: one per worker, all bound with `SO_REUSEPORT`, so the kernel spreads
/// new connections over the workers and each accepts on its own runtime.
type Bound = Vec<std::net::TcpListener>;

fn bind(address: SocketAddr, workers: usize) -> std::io::Result<Bound> {
    // SO_REUSEPORT would let another process that also sets it (another proxy of another
    // stack, say) share the port and split its traffic silently. An exclusive bind first
    // fails on any port somebody holds, reuseport group or not.
    if address.port() != 0 {
        drop(std::net::TcpListener::bind(address)?);
    }
    let mut sockets = Vec::with_capacity(workers);
    for _ in 0..workers {
        let socket = match address {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        // Port 0 picks a port once; the other workers join that one.
        let target = sockets
            .first()
            .map_or(Ok(address), std::net::TcpListener::local_addr)?;
        socket.bind(target)?;
        sockets.push(socket.listen(1024)?.into_std()?);
    }
    Ok(sockets)
}

/// Accept on one port with every worker until told to stop, then let its connections finish
/// within the drain.
async fn serve(
    inner: Arc<Inner>,
    address: SocketAddr,
    bound: Bound,
    stop: watch::Receiver<Option<Duration>>,
) {
    let mut loops = Vec::with_capacity(bound.len());
    // One budget per port, whichever worker accepted the connection.
    let budget = Arc::new(Budget::default());
    // Handed-over sockets may outnumber the workers: every one is served (one left out would
    // strand the connections in its backlog).
    for (listener, worker) in bound.into_iter().zip(inner.workers.handles.iter().cycle()) {
        let inner = inner.clone();
        let stop = stop.clone();
        let budget = budget.clone();
        loops.push(worker.spawn(async move {
            match TcpListener::from_std(listener) {
                Ok(listener) => accept_loop(inner, address, listener, budget, stop).await,
                Err(err) => tracing::error!(%address, error = %err, "cannot register the listener"),
            }
        }));
    }
    for accept in loops {
        let _ = accept.await;
    }
}

/// Serves an HTTP/2 connection until it ends. It gets a GOAWAY (its open streams finish,
/// no new one starts) when the port closes, and when it has been idle — no request started
/// and none being handled — for the service's header timeout, the bound HTTP/1 puts on an
/// idle keep-alive connection: a client that opens connections and never asks anything
/// cannot hold them (one that sends a HEADERS frame it never finishes starts no request).
async fn serve_http2(
    inner: Arc<Inner>,
    address: SocketAddr,
    peer: SocketAddr,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
    read: bytes::BytesMut,
    stream: tokio::net::TcpStream,
    mut closing: watch::Receiver<bool>,
) {
    use std::sync::atomic::AtomicUsize;
    let idle_after = inner.routes.load().by_listen.get(&address).map_or(
        Duration::from_millis(crate::table::DEFAULT_HEADER_TIMEOUT_MS),
        |s| s.header_timeout,
    );
    let handling = Arc::new(AtomicUsize::new(0));
    let activity = Arc::new(crate::activity::Activity::new());
    let connection = Arc::new(forward::Connection::new(inner, address, peer));
    let service = {
        let (handling, activity) = (handling.clone(), activity.clone());
        service_fn(move |request| {
            let connection = connection.clone();
            // Held from the request's start until its response body ends — or until hyper
            // drops the exchange (a reset stream): a streaming response is not idleness.
            let guard = Handling::enter(handling.clone(), activity.clone());
            async move {
                let answer = forward::handle(connection, request).await;
                answer.map(|response| {
                    response.map(|body| HeldBody {
                        body,
                        guard: Some(guard),
                    })
                })
            }
        })
    };
    let io = TokioIo::new(crate::h1::Prefixed::new(read, stream));
    let connection = http2.serve_connection(io, service);
    tokio::pin!(connection);
    let mut going_away = false;
    // After a GOAWAY, h2 waits for the client to answer a PING before its final one; a client
    // that never answers is cut when this passes.
    let mut cut_at: Option<tokio::time::Instant> = None;
    loop {
        let idle_for = activity.last().elapsed();
        let check_in = idle_after
            .saturating_sub(idle_for)
            .max(Duration::from_millis(10));
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(err) = ended {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                }
                return;
            }
            () = until_closing(&mut closing), if !going_away => {
                going_away = true;
                connection.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(cut_at.unwrap_or_else(tokio::time::Instant::now)), if cut_at.is_some() => {
                if handling.load(Ordering::Relaxed) == 0 {
                    tracing::debug!(%peer, "HTTP/2 client silent after GOAWAY: closed");
                    return;
                }
                // A stream began before the GOAWAY took: it finishes (the port's drain
                // bounds it when the port closes).
                cut_at = None;
            }
            () = tokio::time::sleep(check_in), if !going_away => {
                if handling.load(Ordering::Relaxed) == 0 && activity.last().elapsed() >= idle_after {
                    tracing::debug!(%peer, ?idle_after, "idle HTTP/2 connection: GOAWAY");
                    going_away = true;
                    cut_at = Some(tokio::time::Instant::now() + idle_after.min(Duration::from_secs(5)));
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// One exchange of an HTTP/2 connection in progress: counted while it lives.
struct Handling {
    count: Arc<std::sync::atomic::AtomicUsize>,
    activity: Arc<crate::activity::Activity>,
}

impl Handling {
    fn enter(
        count: Arc<std::sync::atomic::AtomicUsize>,
        activity: Arc<crate::activity::Activity>,
    ) -> Handling {
        count.fetch_add(1, Ordering::Relaxed);
        activity.mark();
        Handling { count, activity }
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.activity.mark();
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its exchange counted until its last frame (or an error).
struct HeldBody {
    body: forward::DownBody,
    guard: Option<Handling>,
}

impl hyper::body::Body for HeldBody {
    type Data = bytes::Bytes;
    type Error = forward::BodyError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            std::task::Poll::Ready(None | Some(Err(_))) => self.guard = None,
            std::task::Poll::Ready(Some(Ok(_))) => {
                if let Some(guard) = &self.guard {
                    guard.activity.mark();
                }
            }
            std::task::Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Resolves once `closing` is true (never, if its sender is gone while false).
async fn until_closing(closing: &mut watch::Receiver<bool>) {
    if closing.wait_for(|closing| *closing).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// One worker's accept loop on its own socket of a port: serves each connection on this
/// worker until told to stop, then lets them finish within the drain.
async fn accept_loop(
    inner: Arc<Inner>,
    address: SocketAddr,
    listener: TcpListener,
    budget: Arc<Budget>,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .timer(TokioTimer::new());
    // HTTP/1 connections end once idle after `closing` turns true, HTTP/2 ones get a GOAWAY
    // then (and finish their streams). Every connection is a task in `connections`: the port's drain waits for
    // them all, and dropping the set at its timeout aborts what is left (in-flight requests,
    // tunnels), so nothing on a closed port outlives the drain.
    let (closing_tx, closing) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => break,
            // Reap finished connections so the set holds only live ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (mut stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(%address, error = %err, "accept failed");
                // Out of file descriptors and similar: back off briefly instead of spinning.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let (limits, mode) = inner
            .routes
            .load()
            .by_listen
            .get(&address)
            .map_or((Limits::default(), Mode::Http), |service| {
                (service.limits, service.mode)
            });
        let permit = match budget.admit(limits, peer.ip()) {
            Ok(permit) => permit,
            // A TCP client is not sent an HTTP answer: the close says it.
            Err(_) if mode == Mode::Tcp => continue,
            Err(refusal) => {
                refuse(stream, address, peer, refusal);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let inner = inner.clone();
        let http2 = http2.clone();
        let closing = closing.clone();
        // On this worker's runtime, like everything the connection leads to.
        if mode == Mode::Tcp {
            connections.spawn(async move {
                let _permit = permit;
                crate::tcp::serve(inner, address, peer, stream).await;
            });
            continue;
        }
        connections.spawn(async move {
            let _permit = permit;
            let end = crate::h1::serve(&inner, address, peer, &mut stream, closing.clone()).await;
            if let crate::h1::End::Http2(read) = end {
                serve_http2(inner, address, peer, http2, read, stream, closing).await;
            }
        });
    }
    drop(listener);
    closing_tx.send_replace(true);
    let drain = (*stop.borrow()).unwrap_or(Duration::from_secs(30));
    let drained = async { while connections.join_next().await.is_some() {} };
    tokio::select! {
        () = drained => tracing::info!(%address, "port closed, connections drained"),
        () = tokio::time::sleep(drain) => {
            tracing::warn!(%address, ?drain, left = connections.len(), "port closed, drain timeout passed: connections cut");
        }
    }
    // Dropping the set aborts the connections still in it.
}

/// What a connection past the port's budget gets: a 503 if the socket takes it at once (an
/// HTTP/1 client sees why; nothing waits on a client that does not read), then the close.
fn refuse(stream: tokio::net::TcpStream, address: SocketAddr, peer: SocketAddr, refusal: Refusal) {
    tracing::debug!(%address, %peer, ?refusal, "connection over the port's budget; refused");
    let body = match refusal {
        Refusal::Total => "too many connections to this port\n",
        Refusal::Client => "too many connections from this address\n",
    };
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(answer.as_bytes());
}
