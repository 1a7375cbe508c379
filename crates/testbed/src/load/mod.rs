//! An open-loop HTTP load generator for wharf's rollout tests and benchmarks: requests leave on
//! a fixed schedule (one every 1/rate seconds) whatever the responses do, so a slow or failing
//! upstream cannot slow the load down and hide its own latency (no coordinated omission).
//!
//! The generator runs on its own thread with its own tokio runtime, so plain `#[test]`
//! functions drive it: [`start`], then poll [`LoadRun::snapshot`] with a deadline, then
//! [`LoadRun::stop`] or [`LoadRun::wait`].

mod report;

pub use report::{LoadReport, Reply, Sample};

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::{Semaphore, watch};

/// What to send, how fast and for how long.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// `http://HOST:PORT/path?query`; every request is a GET of this URL.
    pub url: String,
    /// Requests per second, on a fixed schedule.
    pub rate_per_sec: f64,
    /// Stop after sending this many requests.
    pub max_requests: Option<u64>,
    /// Stop sending once this much time has passed since the start.
    pub max_duration: Duration,
    /// Keep-alive connections kept open between requests. When all are busy a request opens
    /// another one rather than wait, so the schedule holds.
    pub connections: usize,
    /// Requests in flight at most; a request due beyond this waits (and its lag shows it).
    pub max_in_flight: usize,
    /// Per request, until the whole body has arrived.
    pub timeout: Duration,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
}

impl LoadPlan {
    /// A plan with the defaults: 10 s, no request limit, 8 connections, 512 in flight, 5 s
    /// timeout, no extra headers.
    pub fn new(url: impl Into<String>, rate_per_sec: f64) -> LoadPlan {
        LoadPlan {
            url: url.into(),
            rate_per_sec,
            max_requests: None,
            max_duration: Duration::from_secs(10),
            connections: 8,
            max_in_flight: 512,
            timeout: Duration::from_secs(5),
            headers: Vec::new(),
        }
    }
}

/// Why a plan cannot run.
#[derive(Debug)]
pub enum LoadError {
    /// The URL does not parse, or is not `http://` with a host.
    Url { url: String, reason: String },
    /// The rate is not a positive finite number.
    Rate(f64),
    /// A header name or value is not valid HTTP.
    Header { name: String },
    /// `connections` or `max_in_flight` is zero.
    Zero(&'static str),
    /// The generator's runtime or thread could not start.
    Start(std::io::Error),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Url { url, reason } => write!(f, "`{url}` is not a usable URL: {reason}"),
            LoadError::Rate(rate) => write!(f, "the rate must be above zero, not {rate}"),
            LoadError::Header { name } => write!(f, "the header `{name}` is not valid HTTP"),
            LoadError::Zero(what) => write!(f, "{what} must be at least 1"),
            LoadError::Start(err) => write!(f, "cannot start the load generator: {err}"),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Start(err) => Some(err),
            _ => None,
        }
    }
}

/// A plan checked and turned into what the generator sends.
struct Prepared {
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    interval: f64,
    max_requests: u64,
    max_duration: Duration,
    connections: usize,
    max_in_flight: usize,
    timeout: Duration,
}

fn prepare(plan: &LoadPlan) -> Result<Prepared, LoadError> {
    let url_error = |reason: &str| LoadError::Url {
        url: plan.url.clone(),
        reason: reason.to_owned(),
    };
    let uri: Uri = plan
        .url
        .parse()
        .map_err(|err| url_error(&format!("{err}")))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(url_error("only http://HOST[:PORT]/PATH is supported"));
    }
    if !(plan.rate_per_sec.is_finite() && plan.rate_per_sec > 0.0) {
        return Err(LoadError::Rate(plan.rate_per_sec));
    }
    if plan.connections == 0 {
        return Err(LoadError::Zero("connections"));
    }
    if plan.max_in_flight == 0 {
        return Err(LoadError::Zero("max_in_flight"));
    }
    let headers = plan
        .headers
        .iter()
        .map(|(name, value)| {
            let invalid = || LoadError::Header { name: name.clone() };
            Ok((
                HeaderName::try_from(name.as_str()).map_err(|_| invalid())?,
                HeaderValue::try_from(value.as_str()).map_err(|_| invalid())?,
            ))
        })
        .collect::<Result<_, LoadError>>()?;
    Ok(Prepared {
        uri,
        headers,
        interval: 1.0 / plan.rate_per_sec,
        max_requests: plan.max_requests.unwrap_or(u64::MAX),
        max_duration: plan.max_duration,
        connections: plan.connections,
        max_in_flight: plan.max_in_flight,
        timeout: plan.timeout,
    })
}

/// What the generator thread and the test thread share.
struct Shared {
    started_at: SystemTime,
    started: Instant,
    sent: AtomicU64,
    finished: AtomicBool,
    /// Set once the run is over, so the final report's `elapsed` ends at the last answer.
    ended: Mutex<Option<Instant>>,
    samples: Mutex<Vec<Sample>>,
}

impl Shared {
    fn report(&self) -> LoadReport {
        // Read `finished` first: if it is true, every sample is already recorded.
        let finished = self.finished.load(Ordering::Acquire);
        let mut samples = lock(&self.samples).clone();
        samples.sort_by_key(|s| s.sent_at);
        let end = lock(&self.ended).unwrap_or_else(Instant::now);
        LoadReport {
            started_at: self.started_at,
            started: self.started,
            elapsed: end.duration_since(self.started),
            sent: self.sent.load(Ordering::Relaxed),
            finished,
            samples,
        }
    }
}

/// A poisoned lock only means a sample push panicked; the data is still a valid list.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Stops a run from anywhere (another thread, a signal handler task).
#[derive(Clone)]
pub struct Stopper(Arc<watch::Sender<bool>>);

impl Stopper {
    /// Sends no more requests; those in flight still finish (each within the timeout).
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

/// A running load generator. Dropping it stops it without waiting.
pub struct LoadRun {
    shared: Arc<Shared>,
    stopper: Stopper,
    thread: Option<JoinHandle<()>>,
}

/// Starts sending at once on a thread of its own and returns.
pub fn start(plan: LoadPlan) -> Result<LoadRun, LoadError> {
    let prepared = prepare(&plan)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("wharf-load")
        .enable_all()
        .build()
        .map_err(LoadError::Start)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        started_at: SystemTime::now(),
        started: Instant::now(),
        sent: AtomicU64::new(0),
        finished: AtomicBool::new(false),
        ended: Mutex::new(None),
        samples: Mutex::new(Vec::new()),
    });
    let thread = std::thread::Builder::new()
        .name("wharf-load".to_owned())
        .spawn({
            let shared = shared.clone();
            move || runtime.block_on(generate(prepared, shared, stop_rx))
        })
        .map_err(LoadError::Start)?;
    Ok(LoadRun {
        shared,
        stopper: Stopper(Arc::new(stop_tx)),
        thread: Some(thread),
    })
}

impl LoadRun {
    /// A copy of everything answered so far.
    pub fn snapshot(&self) -> LoadReport {
        self.shared.report()
    }

    /// Whether the run has ended (by count, duration or stop) and every answer is in.
    pub fn is_finished(&self) -> bool {
        self.shared.finished.load(Ordering::Acquire)
    }

    /// A handle that stops this run from elsewhere.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Sends no more requests, waits for those in flight (each within the timeout) and returns
    /// the report.
    pub fn stop(self) -> LoadReport {
        self.stopper.stop();
        self.wait()
    }

    /// Waits until the run ends by its request count or duration (or a [`Stopper`]).
    pub fn wait(mut self) -> LoadReport {
        if let Some(Err(panic)) = self.thread.take().map(JoinHandle::join) {
            std::panic::resume_unwind(panic);
        }
        self.shared.report()
    }
}

impl Drop for LoadRun {
    fn drop(&mut self) {
        // A test that fails half-way must not leave a generator hammering the next test.
        self.stopper.stop();
    }
}

/// The schedule: request `i` is due `i / rate` seconds after the start. Every due request is
/// sent as its own task, so a slow response never delays the next one.
async fn generate(plan: Prepared, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let client = client(&plan);
    let plan = Arc::new(plan);
    let permits = Arc::new(Semaphore::new(plan.max_in_flight));
    let mut tasks = tokio::task::JoinSet::new();
    let start = tokio::time::Instant::from_std(shared.started);
    let mut next = 0u64;
    while next < plan.max_requests {
        let due = Duration::from_secs_f64(next as f64 * plan.interval);
        if due >= plan.max_duration {
            break;
        }
        tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => break,
            () = tokio::time::sleep_until(start + due) => {}
        }
        let request = Pending {
            due,
            plan: plan.clone(),
            client: client.clone(),
            permits: permits.clone(),
            shared: shared.clone(),
        };
        shared.sent.fetch_add(1, Ordering::Relaxed);
        tasks.spawn(request.run());
        next += 1;
        // Reap finished tasks so a long run does not keep every handle.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    *lock(&shared.ended) = Some(Instant::now());
    shared.finished.store(true, Ordering::Release);
}

fn client(plan: &Prepared) -> Client<HttpConnector, Empty<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(plan.timeout));
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(plan.connections)
        .pool_timer(TokioTimer::new())
        .build(connector)
}

/// One request, due at `due`.
struct Pending {
    due: Duration,
    plan: Arc<Prepared>,
    client: Client<HttpConnector, Empty<Bytes>>,
    permits: Arc<Semaphore>,
    shared: Arc<Shared>,
}

impl Pending {
    async fn run(self) {
        // The semaphore is never closed, so acquiring only waits.
        let _permit = self.permits.acquire().await;
        let lag = self.shared.started.elapsed().saturating_sub(self.due);
        let result = tokio::time::timeout(self.plan.timeout, self.send())
            .await
            .unwrap_or_else(|_| Err(format!("timed out after {:?}", self.plan.timeout)));
        let latency = self.shared.started.elapsed().saturating_sub(self.due);
        let sample = Sample {
            sent_at: self.due,
            lag,
            latency,
            result,
        };
        lock(&self.shared.samples).push(sample);
    }

    async fn send(&self) -> Result<Reply, String> {
        let mut request = Request::get(self.plan.uri.clone());
        for (name, value) in &self.plan.headers {
            request = request.header(name, value);
        }
        let request = request.body(Empty::new()).map_err(|err| err.to_string())?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|err| innermost(&err))?;
        let status = response.status().as_u16();
        let version = response
            .headers()
            .get("x-version")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // Read the whole body so the connection goes back to the pool.
        response
            .into_body()
            .collect()
            .await
            .map_err(|err| innermost(&err))?;
        Ok(Reply { status, version })
    }
}

/// "connection refused" rather than hyper's layered "client error (Connect)".
fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}
