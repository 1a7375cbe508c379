//! Traffic: the wharf proxy as the control plane runs it — one supervised process (started
//! through the driver like any instance, so it survives the control plane and is re-adopted),
//! the route table computed from what is ready ([`Traffic`] owns the process and what was last
//! asked of it) — and drains, where traffic meets the supervisor: an instance leaves the table
//! first, finishes its requests in flight, and only then is stopped.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::watch;
use wharf_ledger::KnownAction;
use wharf_proxy::table::{
    DEFAULT_CLIENT_TIMEOUT_MS, DEFAULT_TUNNEL_IDLE_MS, DEFAULT_UPSTREAM_TIMEOUT_MS, MAX_TIMEOUT_MS,
    Mode, RouteTable, ServiceRoute, Sticky, VersionRoute,
};
use wharf_runtime::{InstanceHandle, InstanceSpec, StartError};
use wharf_store::InstanceRow;

use super::{ControlPlane, Core};
use crate::proxy_link::{Desired, Rejection, Snapshot};
use crate::state::{Drain, Phase, ServiceState};
use crate::tasks::watch_ended;

pub use wharf_store::PROXY_ROW;

/// In-flight requests may finish for this long when no rollout deadline says otherwise.
const DEFAULT_DRAIN: Duration = Duration::from_secs(30);

/// The traffic subsystem's state: the proxy process and what was last asked of it.
pub struct Traffic {
    pub binary: Option<PathBuf>,
    /// The proxy logs JSON lines, as the control plane does.
    pub log_json: bool,
    pub socket: PathBuf,
    pub state_file: PathBuf,
    /// How the driver finds the proxy process while it runs (opaque).
    pub handle: Option<InstanceHandle>,
    pub generation: u64,
    /// The driver is starting it (in a task).
    pub starting: bool,
    /// Set by a whole-stack down once the services are gone.
    pub stopping: bool,
    pub restart_at: Option<Instant>,
    pub restarts: u32,
    pub desired: watch::Sender<Option<Desired>>,
    pub seq: u64,
    /// The latest table the proxy confirmed.
    pub applied_seq: u64,
    pub last_table: Option<RouteTable>,
    /// Addresses in the latest table: an instance not among them has nothing to drain.
    pub routed: HashSet<String>,
    pub last_stats: Option<Snapshot>,
    /// Publish the route table even if it looks unchanged (weights moved, a refusal).
    pub routes_dirty: bool,
    /// A copy of each listening socket the proxy opened, so that a proxy that dies leaves its
    /// ports listening (the kernel queues connections in their backlog, nothing is refused)
    /// and the next proxy takes them over (`wharf_proxy::inherit`).
    pub kept: KeptListeners,
}

/// The proxy's listening sockets, kept by the control plane.
#[derive(Debug, Default)]
pub struct KeptListeners {
    sockets: std::collections::BTreeMap<std::net::SocketAddr, Vec<std::net::TcpListener>>,
    /// Taking another process's descriptors needs ptrace rights over it: root, or Yama's
    /// `ptrace_scope` 0. Without them wharf keeps nothing (and a killed proxy's ports refuse
    /// connections until the next one binds them).
    allowed: Option<bool>,
}

impl KeptListeners {
    fn allowed(&mut self) -> bool {
        *self.allowed.get_or_insert_with(|| {
            rustix::process::geteuid().is_root()
                || std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
                    .map_or(true, |scope| scope.trim() == "0")
        })
    }

    /// Takes a copy of each port the proxy reports and the table still names; forgets the
    /// ones it no longer names. A copy that cannot be taken is logged and left (the port
    /// then behaves as without).
    fn follow(&mut self, snapshot: &Snapshot, table: Option<&RouteTable>) {
        let Some(pid) = snapshot.pid else {
            return;
        };
        let wanted: HashSet<std::net::SocketAddr> = table
            .map(|t| {
                t.services
                    .values()
                    .filter_map(|s| s.listen.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        self.sockets.retain(|address, _| wanted.contains(address));
        if !self.allowed() {
            return;
        }
        let missing: Vec<(std::net::SocketAddr, &Vec<i32>)> = snapshot
            .listeners
            .iter()
            .filter_map(|(address, fds)| Some((address.parse().ok()?, fds)))
            .filter(|(address, _)| wanted.contains(address) && !self.sockets.contains_key(address))
            .collect();
        if missing.is_empty() {
            return;
        }
        let offer = wharf_proxy::inherit::Offer {
            pid,
            sockets: missing
                .into_iter()
                .map(|(a, fds)| (a, fds.clone()))
                .collect(),
        };
        match wharf_proxy::inherit::take(&offer) {
            Ok(taken) => {
                for (address, sockets) in taken {
                    tracing::debug!(%address, "keeping a copy of the proxy's listener");
                    self.sockets.insert(address, sockets);
                }
            }
            // Not allowed at all: said once, then not tried again.
            Err(error) if error.is_permission() => {
                tracing::warn!(%error, "cannot keep the proxy's listeners; a proxy restart will refuse connections meanwhile");
                self.allowed = Some(false);
            }
            // A port closed or a proxy gone since the report: the next report tells.
            Err(error) => tracing::debug!(%error, "a proxy listener changed before it was kept"),
        }
    }

    /// Forgets the ports no table names any more.
    fn retain_table(&mut self, table: &RouteTable) {
        let wanted: HashSet<std::net::SocketAddr> = table
            .services
            .values()
            .filter_map(|s| s.listen.parse().ok())
            .collect();
        self.sockets.retain(|address, _| wanted.contains(address));
    }

    /// The offer for the next proxy, when there is anything to hand over.
    fn offer(&self) -> Option<String> {
        if self.sockets.is_empty() {
            return None;
        }
        Some(wharf_proxy::inherit::render(&wharf_proxy::inherit::Offer {
            pid: std::process::id() as i32,
            sockets: self
                .sockets
                .iter()
                .map(|(address, sockets)| {
                    (
                        *address,
                        sockets
                            .iter()
                            .map(std::os::fd::AsRawFd::as_raw_fd)
                            .collect(),
                    )
                })
                .collect(),
        }))
    }

    fn clear(&mut self) {
        self.sockets.clear();
    }
}

impl Traffic {
    pub fn new(state_dir: &std::path::Path, binary: Option<PathBuf>, log_json: bool) -> Traffic {
        let (desired, _) = watch::channel(None);
        Traffic {
            routes_dirty: false,
            binary,
            log_json,
            socket: state_dir.join("run").join("proxy.sock"),
            state_file: state_dir.join(wharf_store::PROXY_ROUTES_FILE),
            handle: None,
            generation: 0,
            starting: false,
            stopping: false,
            restart_at: None,
            restarts: 0,
            desired,
            seq: 0,
            applied_seq: 0,
            last_table: None,
            routed: HashSet::new(),
            last_stats: None,
            kept: KeptListeners::default(),
        }
    }
}

pub fn address(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// Every instance address a table routes to (any version, any weight: a pinned request can
/// reach a weight-0 version).
fn routed_addresses(table: &RouteTable) -> HashSet<String> {
    table
        .services
        .values()
        .flat_map(|s| s.versions.iter().flat_map(|v| v.instances.iter().cloned()))
        .collect()
}

impl Traffic {
    /// Whether any service has a public port the proxy serves.
    pub(super) fn needed(services: &[ServiceState]) -> bool {
        services.iter().any(|s| s.plan.proxied)
    }

    fn spec(&self, core: &Core) -> Option<InstanceSpec> {
        let binary = self.binary.as_ref()?;
        Some(InstanceSpec {
            service: PROXY_ROW.to_owned(),
            index: 0,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            command: vec![
                binary.display().to_string(),
                "--admin-socket".to_owned(),
                self.socket.display().to_string(),
                "--state".to_owned(),
                self.state_file.display().to_string(),
            ],
            env: std::iter::once(("WHARF_LOG".to_owned(), "info".to_owned()))
                .chain(
                    self.log_json
                        .then(|| ("WHARF_LOG_FORMAT".to_owned(), "json".to_owned())),
                )
                .chain(
                    self.kept
                        .offer()
                        .map(|offer| (wharf_proxy::inherit::ENV.to_owned(), offer)),
                )
                .collect(),
            workdir: core.config.state_dir.clone(),
            log_path: core.log_path(PROXY_ROW, 0),
            exit_path: core.exit_path(PROXY_ROW, 0),
            log_max_bytes: core.config.log_max_bytes,
            log_keep: core.config.log_keep,
            container: None,
            stop_signal: None,
        })
    }

    /// Starts the proxy when the stack needs one and it is not running (or restarts it after
    /// a crash, with a short backoff). A restarted proxy serves its saved table at once.
    pub(super) fn ensure_running(&mut self, core: &mut Core, needed: bool) {
        if !needed || self.handle.is_some() || self.starting || self.stopping {
            return;
        }
        if self.restart_at.is_some_and(|at| at > Instant::now()) {
            return;
        }
        let Some(spec) = self.spec(core) else {
            return;
        };
        let _ = std::fs::create_dir_all(core.config.state_dir.join("run"));
        // Like an instance, the start runs in a task and answers with `Event::Started`.
        self.generation += 1;
        self.starting = true;
        core.start(PROXY_ROW.to_owned(), 0, self.generation, spec);
    }

    /// The driver's answer to [`Self::ensure_running`].
    pub(super) fn on_started(
        &mut self,
        core: &mut Core,
        generation: u64,
        result: Result<wharf_runtime::Running, StartError>,
    ) {
        if generation != self.generation || !self.starting {
            return core.undo_start(result);
        }
        self.starting = false;
        match result {
            Ok(running) => {
                let started = core.config.driver.describe(&running.handle);
                let handle_text = running.handle.to_string();
                self.handle = Some(running.handle);
                self.restart_at = None;
                tokio::spawn(watch_ended(
                    core.events.clone(),
                    PROXY_ROW.to_owned(),
                    0,
                    generation,
                    running.ended,
                ));
                core.journal.save_instance(&InstanceRow {
                    service: PROXY_ROW.to_owned(),
                    index: 0,
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    handle: handle_text,
                    port: None,
                    started_at: jiff::Timestamp::now().to_string(),
                    restarts: self.restarts,
                    spec_hash: String::new(),
                });
                core.journal.record(
                    KnownAction::ProxyStart,
                    "proxy",
                    json!({"pid": started.pid, "restarts": self.restarts}),
                );
                if self.stopping
                    && let Some(handle) = self.handle.clone()
                {
                    // Asked to stop while it was starting.
                    core.stop(handle);
                    core.journal
                        .record(KnownAction::ProxyStop, "proxy", json!({}));
                }
            }
            Err(StartError::Refused { reason, .. } | StartError::Shim { reason, .. }) => {
                tracing::error!(reason, "the proxy could not start");
                core.journal.record(
                    KnownAction::ProxyStartFailed,
                    "proxy",
                    json!({"reason": reason}),
                );
                self.backoff();
            }
        }
    }

    fn backoff(&mut self) {
        self.restarts += 1;
        let exponent = self.restarts.min(6);
        let delay = Duration::from_millis(100 * (1 << exponent)).min(Duration::from_secs(5));
        self.restart_at = Some(Instant::now() + delay);
    }

    pub(super) fn on_exit(
        &mut self,
        core: &mut Core,
        generation: u64,
        status: Option<wharf_runtime::ExitStatus>,
    ) {
        if generation != self.generation || self.handle.is_none() {
            return;
        }
        self.handle = None;
        core.journal.remove_instance(PROXY_ROW, 0);
        let cannot_inherit = status.as_ref().and_then(|s| s.code)
            == Some(i32::from(wharf_proxy::inherit::EXIT_CANNOT_INHERIT));
        let status = status.map_or_else(|| "unknown".to_owned(), |s| s.to_string());
        if self.stopping {
            // A clean stop: the next proxy starts empty rather than listening on the ports of
            // instances that are gone.
            let _ = std::fs::remove_file(&self.state_file);
            core.journal.record(
                KnownAction::ProxyStopped,
                "proxy",
                json!({"status": status}),
            );
            return;
        }
        if cannot_inherit {
            // It could not take the kept ports: the next one binds them itself.
            tracing::warn!("the proxy could not take over the kept listeners; dropping them");
            self.kept.clear();
        }
        tracing::warn!(status, "the proxy exited; restarting it");
        core.journal.record(
            KnownAction::ProxyExit,
            "proxy",
            json!({"status": status, "action": "restart"}),
        );
        self.backoff();
    }

    /// Adopts a proxy a previous control plane left running, and learns which instances it
    /// routes to: those are ready (they were when it was last told), so the first table this
    /// control plane sends changes nothing for traffic.
    pub(super) async fn adopt(&mut self, core: &mut Core, row: &InstanceRow) -> bool {
        let handle = match row.handle.parse::<InstanceHandle>() {
            Ok(handle) => handle,
            Err(error) => {
                tracing::error!(%error, "unreadable proxy handle; starting a new proxy");
                core.journal.remove_instance(PROXY_ROW, 0);
                return false;
            }
        };
        if !core.config.driver.is_running(&handle) {
            core.journal.remove_instance(PROXY_ROW, 0);
            return false;
        }
        self.generation += 1;
        self.restarts = row.restarts;
        tokio::spawn(watch_ended(
            core.events.clone(),
            PROXY_ROW.to_owned(),
            0,
            self.generation,
            core.config.driver.watch(handle.clone()),
        ));
        let pid = core.config.driver.describe(&handle).pid;
        self.handle = Some(handle);
        core.journal
            .record(KnownAction::ProxyAdopt, "proxy", json!({"pid": pid}));
        true
    }

    /// The addresses the running proxy routes to now (empty if it cannot be asked).
    pub(super) async fn routed_now(&self) -> HashSet<String> {
        match crate::proxy_link::current_table(&self.socket).await {
            Ok(table) => routed_addresses(&table),
            Err(error) => {
                tracing::warn!(error, "cannot read the adopted proxy's table");
                HashSet::new()
            }
        }
    }

    /// The table for what is ready now: per service, its `port:` under the service's name
    /// and each entry of `ports:` under `SERVICE:PUBLIC`, all with the same versions and
    /// weights, so a rollout moves every port of the service together.
    pub(super) fn route_table(services: &[ServiceState]) -> RouteTable {
        let mut routes = BTreeMap::new();
        for service in services {
            let plan = &service.plan;
            let (true, Some(port), true, None) = (
                plan.proxied,
                plan.public_port,
                service.wanted,
                &service.listen_error,
            ) else {
                continue;
            };
            let main = Self::port_route(service, format!("0.0.0.0:{port}"), Mode::Http, None);
            routes.insert(plan.name.clone(), main);
            for extra in plan.container.iter().flat_map(|c| &c.ports) {
                let host = match extra.host_ip {
                    wharf_manifest::model::PortHost::Any => "0.0.0.0",
                    wharf_manifest::model::PortHost::Loopback => "127.0.0.1",
                };
                let mode = match extra.app_protocol {
                    wharf_manifest::model::AppProtocol::Tcp => Mode::Tcp,
                    wharf_manifest::model::AppProtocol::Http => Mode::Http,
                };
                let mut route = Self::port_route(
                    service,
                    format!("{host}:{}", extra.published),
                    mode,
                    Some(extra.target),
                );
                if mode == Mode::Tcp {
                    route.sticky = None;
                }
                routes.insert(port_route_name(&plan.name, extra.published), route);
            }
        }
        RouteTable {
            revision: 0,
            services: routes,
        }
    }

    /// One public port's route: the instances' loopback ports for container port `target`
    /// (`None`: the main port).
    fn port_route(
        service: &ServiceState,
        listen: String,
        mode: Mode,
        target: Option<u16>,
    ) -> ServiceRoute {
        let plan = &service.plan;
        let port_of = |i: &crate::state::Instance| match target {
            None => i.port,
            Some(target) => i
                .extra_ports
                .iter()
                .find(|m| m.container == target)
                .map(|m| m.host),
        };
        let routable = |version: &str| -> Vec<String> {
            service
                .instances
                .values()
                .filter(|i| i.version == version && i.is_routable())
                .filter_map(|i| port_of(i).map(address))
                .collect()
        };
        let rollout = service.active_rollout();
        // The stable route also keeps instances of a replaced version (a manifest change)
        // until their successors are ready: a rolling replacement, not a gap.
        let new_version = rollout.map(|r| r.new.version.as_str());
        let stable: Vec<String> = service
            .instances
            .values()
            .filter(|i| Some(i.version.as_str()) != new_version && i.is_routable())
            .filter_map(|i| port_of(i).map(address))
            .collect();
        let (mut weight_stable, mut weight_new) = rollout.map_or((100, 0), |r| r.weights);
        let new = rollout.map(|r| (r.new.version.clone(), routable(&r.new.version)));
        let new_count = new.as_ref().map_or(0, |(_, i)| i.len());
        // The proxy refuses weight on a version without instances: the other takes it.
        if new_count == 0 {
            (weight_stable, weight_new) = (100, 0);
        } else if stable.is_empty() {
            (weight_stable, weight_new) = (0, 100);
        }
        if stable.is_empty() && new_count == 0 {
            weight_stable = 0;
        }
        let mut versions = vec![VersionRoute {
            name: service.stable.version.clone(),
            weight: weight_stable,
            instances: stable,
        }];
        if let Some((name, instances)) = new {
            versions.push(VersionRoute {
                name,
                weight: weight_new,
                instances,
            });
        }
        let drain = plan
            .rollout
            .as_ref()
            .and_then(|r| r.deadlines.drain)
            .map_or(DEFAULT_DRAIN, |d| d.as_std());
        ServiceRoute {
            listen,
            mode,
            versions,
            sticky: plan.sticky.as_ref().map(|sticky| match sticky {
                wharf_manifest::model::Sticky::Cookie(name) => Sticky::Cookie(name.clone()),
                wharf_manifest::model::Sticky::Header(name) => Sticky::Header(name.clone()),
            }),
            drain_timeout_ms: std_millis(drain),
            eject_after: 3,
            eject_cooldown_ms: 10_000,
            upstream_timeout_ms: plan
                .proxy
                .upstream_timeout
                .map_or(DEFAULT_UPSTREAM_TIMEOUT_MS, millis),
            tunnel_idle_timeout_ms: plan
                .proxy
                .tunnel_idle_timeout
                .map_or(DEFAULT_TUNNEL_IDLE_MS, millis),
            client_timeout_ms: plan
                .proxy
                .client_timeout
                .map_or(DEFAULT_CLIENT_TIMEOUT_MS, millis),
            header_timeout_ms: plan
                .proxy
                .header_timeout
                .map_or(wharf_proxy::table::DEFAULT_HEADER_TIMEOUT_MS, millis),
            max_connections: plan
                .proxy
                .max_connections
                .unwrap_or(wharf_proxy::table::DEFAULT_MAX_CONNECTIONS),
            max_connections_per_client: plan
                .proxy
                .max_connections_per_client
                .unwrap_or(wharf_proxy::table::DEFAULT_MAX_CONNECTIONS_PER_CLIENT),
        }
    }

    /// Whole-stack down: once every service is gone, the proxy goes too.
    pub(super) fn stop(&mut self, core: &mut Core) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        // A stopping stack's ports close with its proxy.
        self.kept.clear();
        if let Some(handle) = self.handle.clone() {
            core.stop(handle);
            core.journal
                .record(KnownAction::ProxyStop, "proxy", json!({}));
        }
    }
}

impl ControlPlane {
    /// Sends the table to the proxy link when it changed; drains and weight changes learn the
    /// sequence number from which they are in force.
    pub(super) fn publish_routes(&mut self) {
        if !Traffic::needed(&self.supervisor.services) {
            return;
        }
        let table = Traffic::route_table(&self.supervisor.services);
        let changed = self.traffic.last_table.as_ref() != Some(&table) || self.traffic.routes_dirty;
        self.traffic.routes_dirty = false;
        if !changed {
            return;
        }
        self.traffic.seq += 1;
        let seq = self.traffic.seq;
        self.traffic.routed = routed_addresses(&table);
        for service in &mut self.supervisor.services {
            for instance in service.instances.values_mut() {
                if let Some(drain) = instance.draining.as_mut()
                    && drain.seq == 0
                {
                    drain.seq = seq;
                }
            }
            if let Some(rollout) = service.rollout.as_mut()
                && rollout.weights_seq == u64::MAX
            {
                rollout.weights_seq = seq;
            }
        }
        self.traffic.kept.retain_table(&table);
        self.traffic.last_table = Some(table.clone());
        self.traffic
            .desired
            .send_replace(Some(Desired { seq, table }));
    }

    /// Takes an instance out of service: a routed one drains first, anything else stops now.
    pub(super) fn retire_instance(&mut self, index: usize, ordinal: u32, why: &str) {
        let proxied = self.supervisor.services[index].plan.proxied;
        let name = self.supervisor.services[index].plan.name.clone();
        let Some(instance) = self.supervisor.services[index].instances.get_mut(&ordinal) else {
            return;
        };
        if instance.is_leaving() {
            return;
        }
        if instance.phase == Phase::Starting {
            // Its start is in the driver's hands: stopped once it comes back (`on_started`),
            // so whatever the driver started is never left without a record.
            self.supervisor
                .stop_instance(&mut self.core, index, ordinal, why);
            return;
        }
        if instance.phase != Phase::Running {
            // Backing off or ended: nothing runs, nothing to drain.
            instance.abort_tasks();
            self.supervisor.services[index].instances.remove(&ordinal);
            self.core.journal.remove_instance(&name, ordinal);
            return;
        }
        let routed = instance
            .port
            .is_some_and(|port| self.traffic.routed.contains(&address(port)));
        if proxied && self.traffic.handle.is_some() && self.traffic.seq > 0 {
            // Out of the latest table already: drained once that table is applied and nothing
            // is in flight (it may still be in the table the proxy serves). Still in it: the
            // next table leaves it out.
            let seq = if routed { 0 } else { self.traffic.seq };
            instance.draining = Some(Drain {
                since: Instant::now(),
                seq,
                why: why.to_owned(),
            });
            self.core.journal.record(
                KnownAction::InstanceDrain,
                &format!("{name}/{ordinal}"),
                json!({"reason": why, "version": instance.version}),
            );
        } else {
            self.supervisor
                .stop_instance(&mut self.core, index, ordinal, why);
        }
    }

    /// Takes every instance of one version out of service.
    pub(super) fn retire_version(&mut self, index: usize, version: &str, why: &str) {
        let ordinals: Vec<u32> = self.supervisor.services[index]
            .instances
            .values()
            .filter(|i| i.version == version)
            .map(|i| i.ordinal)
            .collect();
        for ordinal in ordinals {
            self.retire_instance(index, ordinal, why);
        }
    }

    /// Stops drained instances: out of an applied table and nothing in flight, or past the
    /// drain deadline.
    pub(super) fn finish_drains(&mut self, snapshot: Option<&Snapshot>) {
        let now = Instant::now();
        let mut done = Vec::new();
        for (index, service) in self.supervisor.services.iter().enumerate() {
            let limit = service
                .plan
                .rollout
                .as_ref()
                .and_then(|r| r.deadlines.drain)
                .map_or(DEFAULT_DRAIN, |d| d.as_std());
            for instance in service.instances.values() {
                let Some(drain) = &instance.draining else {
                    continue;
                };
                let drained = snapshot.is_some_and(|s| {
                    drain.seq != 0
                        && s.applied_seq >= drain.seq
                        && instance
                            .port
                            .into_iter()
                            .chain(instance.extra_ports.iter().map(|m| m.host))
                            .all(|port| {
                                s.instances
                                    .get(&address(port))
                                    .is_none_or(|c| c.in_flight == 0)
                            })
                });
                let overdue = now.duration_since(drain.since) >= limit;
                if drained || overdue || self.traffic.handle.is_none() {
                    done.push((index, instance.ordinal, drain.why.clone()));
                }
            }
        }
        for (index, ordinal, why) in done {
            self.supervisor
                .stop_instance(&mut self.core, index, ordinal, &why);
        }
    }

    pub(super) fn on_proxy_stats(&mut self, snapshot: Snapshot) {
        self.traffic
            .kept
            .follow(&snapshot, self.traffic.last_table.as_ref());
        let previous = self.traffic.last_stats.take();
        self.finish_drains(Some(&snapshot));
        self.rollout_stats(previous.as_ref(), &snapshot);
        self.traffic.last_stats = Some(snapshot);
    }

    pub(super) fn on_proxy_rejected(&mut self, rejection: Rejection) {
        tracing::error!(
            message = rejection.message,
            "the proxy refused the route table"
        );
        let target = rejection
            .service
            .clone()
            .unwrap_or_else(|| "proxy".to_owned());
        self.core.journal.record(
            KnownAction::ProxyRejected,
            &target,
            json!({"reason": rejection.message}),
        );
        // Only a port the proxy cannot bind is the service's fault: it is left out and the
        // rest sent again. Any other refusal is a bug here; the table is not resent as is (a
        // later change sends a new one), so nothing loops.
        let bind_failed = rejection.code.as_deref() == Some("bind_failed");
        // A port of `ports:` is routed as `SERVICE:PUBLIC`: the service is at fault.
        let at_fault = rejection
            .service
            .as_deref()
            .and_then(|s| self.supervisor.index(route_service(s)))
            .filter(|_| bind_failed);
        if let Some(index) = at_fault {
            let port = self.supervisor.services[index].plan.public_port;
            let port = rejection
                .service
                .as_deref()
                .and_then(|s| s.split_once(':'))
                .and_then(|(_, p)| p.parse().ok())
                .or(port);
            let reason = match port {
                Some(port) if rejection.message.contains("in use") => {
                    format!("port {port} is already in use by another process")
                }
                _ => rejection.message.clone(),
            };
            self.supervisor.services[index].listen_error = Some(reason);
            self.traffic.routes_dirty = true;
        }
    }
}

/// The route-table name of a service's extra public port: `SERVICE:PUBLIC` (a service name
/// has no `:`, so it never collides with a service's own route).
pub(super) fn port_route_name(service: &str, published: u16) -> String {
    format!("{service}:{published}")
}

/// The service a route-table name belongs to (its own, or one of its `ports:`).
pub(super) fn route_service(route: &str) -> &str {
    route.split_once(':').map_or(route, |(service, _)| service)
}

/// A manifest duration as the route table's milliseconds.
fn millis(duration: wharf_manifest::values::Duration) -> u64 {
    std_millis(duration.as_std())
}

/// Milliseconds for the route table, where a longer duration than it holds means "never" and
/// is given as its longest.
fn std_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).map_or(MAX_TIMEOUT_MS, |ms| ms.min(MAX_TIMEOUT_MS))
}

#[cfg(test)]
mod tests {
    //! The route table is a function of the supervisor's services: tested without a proxy.

    use super::Traffic;
    use crate::state::{Instance, Phase, ServiceState};

    const MANIFEST: &str = "\
name: unit
services:
  web:
    command: [web]
    port: 8080
    replicas: 3
  worker:
    command: [worker]
";

    fn services() -> Vec<ServiceState> {
        let loaded = wharf_manifest::load(MANIFEST, Default::default(), &|_: &str| None);
        let stack = loaded.stack.expect("the test manifest is valid");
        let plan = crate::plan(&stack).expect("the test manifest plans");
        plan.services.into_iter().map(ServiceState::new).collect()
    }

    fn instance(ordinal: u32, port: u16, ready: bool) -> Instance {
        let mut instance = Instance::new(ordinal, Some(port), "latest".to_owned());
        instance.phase = Phase::Running;
        instance.ready = ready;
        instance
    }

    #[test]
    fn the_table_routes_ready_instances_of_proxied_services_only() {
        let mut services = services();
        let web = services.iter().position(|s| s.plan.name == "web").unwrap();
        assert!(Traffic::needed(&services));
        services[web].instances.insert(0, instance(0, 4000, true));
        services[web].instances.insert(1, instance(1, 4001, false));
        let mut draining = instance(2, 4002, true);
        draining.draining = Some(crate::state::Drain {
            since: std::time::Instant::now(),
            seq: 0,
            why: "test".to_owned(),
        });
        services[web].instances.insert(2, draining);
        let table = Traffic::route_table(&services);
        assert_eq!(table.services.len(), 1, "only `web` has a public port");
        let route = &table.services["web"];
        assert_eq!(route.listen, "0.0.0.0:8080");
        assert_eq!(route.versions.len(), 1);
        assert_eq!(route.versions[0].weight, 100);
        assert_eq!(route.versions[0].instances, ["127.0.0.1:4000"]);
    }

    #[test]
    fn each_port_of_an_image_service_is_a_route_to_the_instances_own_loopback_port() {
        let manifest = "name: unit\nservices:\n  app:\n    image: example/app:v1\n    port: 8080\n    container_port: 80\n    ports: [\"127.0.0.1:5432:5432\", {published: 8443, target: 8443, app_protocol: http}]\n";
        let loaded = wharf_manifest::load(manifest, Default::default(), &|_: &str| None);
        let stack = loaded.stack.expect("the test manifest is valid");
        let plan = crate::plan(&stack).expect("the test manifest plans");
        let mut services: Vec<ServiceState> =
            plan.services.into_iter().map(ServiceState::new).collect();
        let mut ready = instance(0, 4000, true);
        ready.extra_ports = vec![
            wharf_runtime::PortMapping {
                host: 4100,
                container: 5432,
            },
            wharf_runtime::PortMapping {
                host: 4101,
                container: 8443,
            },
        ];
        services[0].instances.insert(0, ready);
        services[0].instances.insert(1, instance(1, 4001, false));
        let table = Traffic::route_table(&services);
        let names: Vec<&str> = table.services.keys().map(String::as_str).collect();
        assert_eq!(names, ["app", "app:5432", "app:8443"]);
        let tcp = &table.services["app:5432"];
        assert_eq!(tcp.mode, wharf_proxy::Mode::Tcp);
        assert_eq!(tcp.listen, "127.0.0.1:5432");
        assert_eq!(tcp.versions[0].instances, ["127.0.0.1:4100"]);
        assert_eq!(tcp.versions[0].weight, 100);
        let http = &table.services["app:8443"];
        assert_eq!(http.mode, wharf_proxy::Mode::Http);
        assert_eq!(http.listen, "0.0.0.0:8443");
        assert_eq!(http.versions[0].instances, ["127.0.0.1:4101"]);
        assert_eq!(
            table.services["app"].versions[0].instances,
            ["127.0.0.1:4000"]
        );
        assert_eq!(super::route_service("app:5432"), "app");
        assert_eq!(super::route_service("app"), "app");
    }

    #[test]
    fn a_service_whose_port_is_taken_or_that_was_stopped_leaves_the_table() {
        let mut services = services();
        let web = services.iter().position(|s| s.plan.name == "web").unwrap();
        services[web].instances.insert(0, instance(0, 4000, true));
        services[web].listen_error = Some("port 8080 is already in use".to_owned());
        assert!(Traffic::route_table(&services).services.is_empty());
        services[web].listen_error = None;
        services[web].wanted = false;
        assert!(Traffic::route_table(&services).services.is_empty());
    }
}
