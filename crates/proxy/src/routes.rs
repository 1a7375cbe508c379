//! The routing state the request path reads: services by listen address, versions with their
//! weights and instances, and the choice of version and instance for one request.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::header::HeaderValue;
use hyper::{HeaderMap, header};
use rand::Rng;

use crate::stats::{SHARDS, VersionStats, shard_index};
use crate::table::{PIN_HEADER, Sticky, ValidTable};

/// One upstream address, shared by every table revision that names it, so its failure count,
/// ejection and drain survive updates.
#[derive(Debug)]
pub struct Instance {
    /// Where it listens.
    pub address: SocketAddr,
    /// `address` as a `Host` header value, for requests that name no host.
    pub(crate) host: HeaderValue,
    failures: AtomicU32,
    ejections: AtomicU64,
    /// Milliseconds since the proxy's clock origin until which the instance is left out; 0 if not.
    ejected_until_ms: AtomicU64,
    /// Bumped each time a table names the instance, so a pending drain timer knows it is back.
    pub(crate) generation: AtomicU64,
    /// Set when the drain timeout after its removal has passed: in-flight requests are cut.
    pub(crate) cut: tokio::sync::watch::Sender<bool>,
    /// Requests sent to it whose response has not finished streaming, per stats shard so
    /// the workers do not share a cache line; see [`InFlight`].
    in_flight: [PaddedCounter; SHARDS],
}

impl Instance {
    pub(crate) fn new(address: SocketAddr) -> Instance {
        Instance {
            address,
            host: HeaderValue::try_from(address.to_string())
                .expect("a socket address is a header value"),
            failures: AtomicU32::new(0),
            ejections: AtomicU64::new(0),
            ejected_until_ms: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            cut: tokio::sync::watch::Sender::new(false),
            in_flight: Default::default(),
        }
    }

    /// Requests dispatched to it whose response has not completed.
    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight
            .iter()
            .map(|shard| shard.0.load(Ordering::Relaxed))
            .sum()
    }

    fn ejected(&self, clock: &Clock) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && clock.now_ms() < until
    }

    /// A connection attempt failed; eject after `after` in a row.
    pub(crate) fn failed(&self, clock: &Clock, after: u32, cooldown: Duration) {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= after.max(1) {
            self.failures.store(0, Ordering::Relaxed);
            let until = clock.now_ms() + u64::try_from(cooldown.as_millis()).unwrap_or(u64::MAX);
            self.ejected_until_ms.store(until.max(1), Ordering::Relaxed);
            self.ejections.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(instance = %self.address, failures, ?cooldown, "instance ejected");
        }
    }

    /// A connection succeeded: the run of failures is over.
    pub(crate) fn succeeded(&self) {
        // Read first so the common case writes nothing to a shared cache line.
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// State for `/v1/stats`.
    pub fn report(&self, clock: &Clock) -> InstanceReport {
        InstanceReport {
            ejected: self.ejected(clock),
            consecutive_failures: self.failures.load(Ordering::Relaxed),
            ejections: self.ejections.load(Ordering::Relaxed),
            in_flight: self.in_flight(),
        }
    }
}

/// One request in flight to an instance: counted from when it is sent upstream until the
/// guard drops — when the response body has been streamed to the end, or the attempt failed,
/// was cut, or the client went away (hyper drops the body and with it the guard).
/// The guard takes the count off the shard it was added to, so no shard goes below zero.
#[derive(Debug)]
pub(crate) struct InFlight {
    instance: Arc<Instance>,
    shard: usize,
}

impl InFlight {
    pub(crate) fn start(instance: &Arc<Instance>) -> InFlight {
        let shard = shard_index();
        instance.in_flight[shard].0.fetch_add(1, Ordering::Relaxed);
        InFlight {
            instance: instance.clone(),
            shard,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.instance.in_flight[self.shard]
            .0
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// A counter on its own cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct PaddedCounter(AtomicU64);

/// An instance in `/v1/stats`.
#[derive(Debug, serde::Serialize)]
pub struct InstanceReport {
    /// Left out after consecutive connection failures, until its cool-down ends.
    pub ejected: bool,
    /// Connection failures in a row.
    pub consecutive_failures: u32,
    /// Times it was ejected since start.
    pub ejections: u64,
    /// Requests sent to it whose response has not finished streaming to the client. An
    /// instance removed from the table is listed while this is above 0; once it is absent
    /// from the report, nothing is in flight to it.
    pub in_flight: u64,
}

/// A monotonic millisecond clock shared by the request path.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock(Instant::now())
    }
    fn now_ms(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// One version as the request path sees it.
#[derive(Debug)]
pub(crate) struct VersionRt {
    pub name: String,
    pub weight: u8,
    pub instances: Vec<Arc<Instance>>,
    next: AtomicUsize,
    pub stats: Arc<VersionStats>,
}

impl VersionRt {
    /// Round-robin over instances not ejected and not already tried; when every untried one
    /// is ejected, an ejected one is tried rather than failing without trying.
    pub fn pick(&self, clock: &Clock, tried: &[SocketAddr]) -> Option<&Arc<Instance>> {
        let count = self.instances.len();
        // One instance (the common case) needs no turn-taking, and no shared write.
        let start = if count == 1 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed)
        };
        let untried = |i: &&Arc<Instance>| !tried.contains(&i.address);
        let mut fallback = None;
        for offset in 0..count {
            let instance = &self.instances[(start + offset) % count];
            if !untried(&instance) {
                continue;
            }
            if !instance.ejected(clock) {
                return Some(instance);
            }
            fallback.get_or_insert(instance);
        }
        fallback
    }
}

/// One service as the request path sees it.
#[derive(Debug)]
pub(crate) struct ServiceRt {
    pub name: String,
    /// HTTP, or TCP pass-through.
    pub mode: crate::table::Mode,
    pub versions: Vec<VersionRt>,
    sticky: Option<Sticky>,
    pub drain: Duration,
    pub eject_after: u32,
    pub cooldown: Duration,
    /// See `ServiceRoute::upstream_timeout_ms`.
    pub upstream_timeout: Duration,
    /// See `ServiceRoute::tunnel_idle_timeout_ms`.
    pub tunnel_idle: Duration,
    /// See `ServiceRoute::client_timeout_ms`.
    pub client_timeout: Duration,
    /// See `ServiceRoute::header_timeout_ms`.
    pub header_timeout: Duration,
    /// See `ServiceRoute::max_connections` and `max_connections_per_client`.
    pub limits: crate::budget::Limits,
}

impl ServiceRt {
    /// The pinned version if the pin header names one with instances, else a weighted choice:
    /// by the hash of the sticky key when there is one, at random otherwise.
    pub fn choose(&self, headers: &HeaderMap) -> Option<&VersionRt> {
        let pin = headers.get(PIN_HEADER).map(HeaderValue::as_bytes);
        self.choose_by(pin, self.sticky_key(headers))
    }

    /// [`ServiceRt::choose`] from the pin header's value and the sticky key, however the
    /// caller found them in the request.
    pub fn choose_by(&self, pin: Option<&[u8]>, sticky_key: Option<&[u8]>) -> Option<&VersionRt> {
        if let Some(pin) = pin {
            let pinned = self
                .versions
                .iter()
                .find(|v| v.name.as_bytes() == pin && !v.instances.is_empty());
            if pinned.is_some() {
                return pinned;
            }
        }
        let point = match sticky_key {
            Some(key) => {
                let mut hasher = std::hash::DefaultHasher::new();
                key.hash(&mut hasher);
                (hasher.finish() % 100) as u32
            }
            None => rand::thread_rng().gen_range(0..100),
        };
        let mut upper = 0u32;
        for version in &self.versions {
            if version.instances.is_empty() || version.weight == 0 {
                continue;
            }
            upper += u32::from(version.weight);
            if point < upper {
                return Some(version);
            }
        }
        None
    }

    /// How requests are kept on one version, if they are.
    pub fn sticky(&self) -> Option<&Sticky> {
        self.sticky.as_ref()
    }

    fn sticky_key<'h>(&self, headers: &'h HeaderMap) -> Option<&'h [u8]> {
        match self.sticky.as_ref()? {
            Sticky::Header(name) => headers.get(name.as_str()).map(|v| v.as_bytes()),
            Sticky::Cookie(name) => headers
                .get_all(header::COOKIE)
                .iter()
                .find_map(|v| cookie_value(v.as_bytes(), name)),
        }
    }
}

/// The value of cookie `name` in one `Cookie` header's value.
pub(crate) fn cookie_value<'h>(header: &'h [u8], name: &str) -> Option<&'h [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let at = pair.iter().position(|&b| b == b'=')?;
        (&pair[..at] == name.as_bytes()).then_some(&pair[at + 1..])
    })
}

/// A table made ready for the request path.
#[derive(Debug)]
pub(crate) struct Routes {
    pub table: Option<ValidTable>,
    pub by_listen: HashMap<SocketAddr, Arc<ServiceRt>>,
}

impl Routes {
    pub fn empty() -> Routes {
        Routes {
            table: None,
            by_listen: HashMap::new(),
        }
    }

    pub fn revision(&self) -> u64 {
        self.table.as_ref().map_or(0, ValidTable::revision)
    }

    /// Build from a table, taking instances and stats from the shared registries.
    pub fn build(
        table: ValidTable,
        instance: &mut dyn FnMut(SocketAddr) -> Arc<Instance>,
        stats: &dyn Fn(&str, &str) -> Arc<VersionStats>,
    ) -> Routes {
        let mut by_listen = HashMap::new();
        for service in &table.services {
            let route = &table.table().services[&service.name];
            let versions = service
                .versions
                .iter()
                .map(|(name, weight, addresses)| VersionRt {
                    name: name.clone(),
                    weight: *weight,
                    instances: addresses.iter().map(|a| instance(*a)).collect(),
                    next: AtomicUsize::new(0),
                    stats: stats(&service.name, name),
                })
                .collect();
            let rt = ServiceRt {
                name: service.name.clone(),
                mode: route.mode,
                versions,
                sticky: route.sticky.clone(),
                drain: Duration::from_millis(route.drain_timeout_ms),
                eject_after: route.eject_after,
                cooldown: Duration::from_millis(route.eject_cooldown_ms),
                upstream_timeout: Duration::from_millis(route.upstream_timeout_ms),
                tunnel_idle: Duration::from_millis(route.tunnel_idle_timeout_ms),
                client_timeout: Duration::from_millis(route.client_timeout_ms),
                header_timeout: Duration::from_millis(route.header_timeout_ms),
                limits: crate::budget::Limits {
                    total: route.max_connections as usize,
                    per_client: route.max_connections_per_client as usize,
                },
            };
            by_listen.insert(service.listen, Arc::new(rt));
        }
        Routes {
            table: Some(table),
            by_listen,
        }
    }

    /// Every instance the table names.
    pub fn instances(&self) -> impl Iterator<Item = &Arc<Instance>> {
        self.by_listen
            .values()
            .flat_map(|s| s.versions.iter())
            .flat_map(|v| v.instances.iter())
    }
}
