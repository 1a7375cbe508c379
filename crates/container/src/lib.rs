//! The container driver: instances of `image:` services as Docker containers, over the Docker
//! Engine API on its unix socket (Podman's compatible socket serves the same API).
//!
//! It implements the same [`Driver`] contract as the process driver, so the control plane
//! treats a container like any instance: the container is created with no restart policy of
//! its own (wharf restarts), labelled with its stack, service, version and ordinal, published
//! on a loopback port the proxy or a probe reaches, and found again after a control-plane
//! restart through its handle (the container id). Its output is followed into wharf's own CRI
//! log files, so `wharf logs` reads containers as it reads processes.

mod build_log;
pub mod context;
mod engine;
mod logs;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wharf_runtime::{
    BoxFuture, CONTAINER_DRIVER, Driver, ExecInside, Executed, ExitStatus, HandleSummary,
    InstanceHandle, InstanceSpec, Running, StartError, StopOutcome,
};

pub use engine::{Engine, EngineError, Prepared, PullProgress};
pub use wharf_runtime::image::{ImageRef, parse_image};

/// Labels every wharf container, network and volume carries.
pub mod labels {
    /// The owning wharf (its state directory).
    pub const OWNER: &str = "dev.wharf.owner";
    pub const STACK: &str = "dev.wharf.stack";
    pub const SERVICE: &str = "dev.wharf.service";
    pub const VERSION: &str = "dev.wharf.version";
    pub const ORDINAL: &str = "dev.wharf.ordinal";
    /// `stack/service/ordinal`: the instance the container is.
    pub const INSTANCE: &str = "dev.wharf.instance";
}

/// What the container driver keeps in an instance's handle: the container, the image it runs
/// (by digest) and where its log goes, so re-adoption needs nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ContainerHandle {
    id: String,
    name: String,
    /// The image reference and its digest at start.
    image: String,
    digest: String,
    log_path: PathBuf,
    log_max_bytes: u64,
    log_keep: u32,
    /// The ports published at start (host → container), so an adopting control plane knows
    /// them; absent in handles written before several ports existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ports: Vec<wharf_runtime::PortMapping>,
}

impl ContainerHandle {
    fn of(handle: &InstanceHandle, action: &'static str) -> Option<ContainerHandle> {
        handle
            .data(CONTAINER_DRIVER)
            .inspect_err(|error| tracing::error!(%error, action, "instance handle refused"))
            .ok()
    }

    fn short_id(&self) -> String {
        self.id.chars().take(12).collect()
    }
}

/// What the driver last learned about a container, for the synchronous questions.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Known {
    Running,
    Exited(ExitStatus),
    Gone,
}

/// Runs instances as containers of the engine behind `socket`.
#[derive(Debug, Clone)]
pub struct ContainerDriver {
    engine: Engine,
    known: Arc<Mutex<HashMap<String, Known>>>,
}

impl ContainerDriver {
    /// A driver for the engine at `socket` (`/var/run/docker.sock`, or `$DOCKER_HOST` when it
    /// names a unix socket). Nothing is contacted until the first container starts.
    pub fn new(socket: Option<String>) -> ContainerDriver {
        ContainerDriver {
            engine: Engine::new(socket),
            known: Arc::default(),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn learn(&self, id: &str, known: Known) {
        if let Ok(mut map) = self.known.lock() {
            map.insert(id.to_owned(), known);
        }
    }

    fn known(&self, id: &str) -> Option<Known> {
        self.known.lock().ok()?.get(id).cloned()
    }

    /// The future that resolves when a container has ended: its exit status is read, its log
    /// follower drained, and the container removed (wharf makes a new one for a restart).
    fn ended(&self, handle: ContainerHandle) -> BoxFuture<'static, Option<ExitStatus>> {
        let engine = self.engine.clone();
        let known = self.known.clone();
        Box::pin(async move {
            let follower = tokio::spawn(logs::follow(engine.clone(), handle.clone()));
            let status = engine.wait(&handle.id).await;
            // The log stream ends with the container; a bound keeps a stuck stream from
            // holding the exit back.
            let _ = tokio::time::timeout(Duration::from_secs(5), follower).await;
            engine.remove(&handle.id).await;
            if let Ok(mut map) = known.lock() {
                map.insert(
                    handle.id.clone(),
                    status.clone().map_or(Known::Gone, Known::Exited),
                );
            }
            status
        })
    }
}

impl Driver for ContainerDriver {
    fn start<'a>(&'a self, spec: &'a InstanceSpec) -> BoxFuture<'a, Result<Running, StartError>> {
        Box::pin(async move {
            let refused = |reason: String| StartError::Refused {
                service: spec.service.clone(),
                index: spec.index,
                reason,
            };
            let Some(container) = &spec.container else {
                return Err(refused("not a container spec".to_owned()));
            };
            let created = self
                .engine
                .create_and_start(spec, container)
                .await
                .map_err(|error| refused(error.to_string()))?;
            let handle = ContainerHandle {
                id: created.id,
                name: created.name,
                image: container.image.clone(),
                digest: created.digest,
                log_path: spec.log_path.clone(),
                log_max_bytes: spec.log_max_bytes,
                log_keep: spec.log_keep,
                ports: container.ports.clone(),
            };
            let instance = match InstanceHandle::new(CONTAINER_DRIVER, &handle) {
                Ok(instance) => instance,
                Err(error) => {
                    self.engine.remove(&handle.id).await;
                    return Err(refused(error.to_string()));
                }
            };
            self.learn(&handle.id, Known::Running);
            Ok(Running {
                handle: instance,
                ended: self.ended(handle),
            })
        })
    }

    fn is_running(&self, handle: &InstanceHandle) -> bool {
        ContainerHandle::of(handle, "is_running")
            .is_some_and(|c| self.known(&c.id) == Some(Known::Running))
    }

    fn watch(&self, handle: InstanceHandle) -> BoxFuture<'static, Option<ExitStatus>> {
        match ContainerHandle::of(&handle, "watch") {
            Some(container) => self.ended(container),
            None => Box::pin(std::future::ready(None)),
        }
    }

    fn exit_status(&self, handle: &InstanceHandle) -> Option<ExitStatus> {
        let container = ContainerHandle::of(handle, "exit_status")?;
        let status = match self.known(&container.id)? {
            Known::Exited(status) => Some(status),
            Known::Running | Known::Gone => None,
        };
        // A container that ended while no control plane watched it is removed now, as the
        // watch would have.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let engine = self.engine.clone();
            runtime.spawn(async move { engine.remove(&container.id).await });
        }
        status
    }

    fn stop(&self, handle: InstanceHandle, grace: Duration) -> BoxFuture<'static, StopOutcome> {
        let Some(container) = ContainerHandle::of(&handle, "stop") else {
            return Box::pin(std::future::ready(StopOutcome::Refused));
        };
        let engine = self.engine.clone();
        Box::pin(async move { engine.stop(&container.id, grace).await })
    }

    fn reload(&self, handle: &InstanceHandle) -> bool {
        let Some(container) = ContainerHandle::of(handle, "reload") else {
            return false;
        };
        if self.known(&container.id) != Some(Known::Running) {
            return false;
        }
        let engine = self.engine.clone();
        tokio::spawn(async move { engine.signal(&container.id, "SIGHUP").await });
        true
    }

    fn describe(&self, handle: &InstanceHandle) -> HandleSummary {
        match ContainerHandle::of(handle, "describe") {
            Some(container) => HandleSummary {
                pid: None,
                id: container.short_id(),
                image: Some(container.digest),
                ports: container.ports,
            },
            None => HandleSummary::default(),
        }
    }

    fn exec_inside(&self, handle: &InstanceHandle) -> Option<Arc<dyn ExecInside>> {
        let container = ContainerHandle::of(handle, "exec")?;
        Some(Arc::new(InContainer {
            engine: self.engine.clone(),
            id: container.id,
            last: Arc::default(),
        }))
    }

    fn refresh(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // No engine here: no container can run, and a machine without one is not an error.
            if !self.engine.socket_exists() {
                return;
            }
            match self.engine.states().await {
                Ok(states) => {
                    if let Ok(mut map) = self.known.lock() {
                        for (id, state) in states {
                            map.insert(
                                id,
                                match state {
                                    None => Known::Running,
                                    Some(status) => Known::Exited(status),
                                },
                            );
                        }
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "cannot list containers; recorded containers count as gone")
                }
            }
        })
    }
}

/// Commands run inside one container through the engine's exec API (exec probes).
///
/// The engine cannot kill an exec, so one a probe gave up on (its timeout) may still run; the
/// runner remembers its last exec and starts no other while that one runs, so a hung check
/// never piles up processes in the container, one per interval.
#[derive(Debug)]
struct InContainer {
    engine: Engine,
    id: String,
    last: Arc<std::sync::Mutex<Option<String>>>,
}

impl ExecInside for InContainer {
    fn run(&self, command: Vec<String>) -> BoxFuture<'static, Result<Executed, String>> {
        let (engine, id, last) = (self.engine.clone(), self.id.clone(), self.last.clone());
        Box::pin(async move {
            let previous = last.lock().map(|l| l.clone()).unwrap_or_default();
            if let Some(previous) = previous
                && engine.exec_running(&previous).await
            {
                return Err(
                    "the previous check is still running inside the container; no other is started until it ends"
                        .to_owned(),
                );
            }
            engine.exec(&id, command, &last).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle() -> InstanceHandle {
        InstanceHandle::new(
            CONTAINER_DRIVER,
            &ContainerHandle {
                id: "3f2a9c0b1d2e4f5a6b7c8d9e".to_owned(),
                name: "shop-api-0-1".to_owned(),
                image: "127.0.0.1:5000/testbed:v1".to_owned(),
                digest: "127.0.0.1:5000/testbed@sha256:abcd".to_owned(),
                log_path: PathBuf::from("/s/logs/api/0.log"),
                log_max_bytes: 1 << 20,
                log_keep: 3,
                ports: vec![wharf_runtime::PortMapping {
                    host: 41000,
                    container: 5432,
                }],
            },
        )
        .unwrap()
    }

    #[test]
    fn a_container_handle_round_trips_and_describes_its_id_and_digest() {
        let handle = handle();
        let again: InstanceHandle = handle.to_string().parse().unwrap();
        assert_eq!(again, handle);
        let driver = ContainerDriver::new(Some("/nonexistent.sock".to_owned()));
        assert_eq!(
            driver.describe(&again),
            HandleSummary {
                pid: None,
                id: "3f2a9c0b1d2e".to_owned(),
                image: Some("127.0.0.1:5000/testbed@sha256:abcd".to_owned()),
                ports: vec![wharf_runtime::PortMapping {
                    host: 41000,
                    container: 5432,
                }],
            }
        );
        // Nothing learned yet: not running, no exit status.
        assert!(!driver.is_running(&again));
    }

    #[tokio::test]
    async fn another_drivers_or_a_malformed_handle_is_refused_without_a_panic() {
        let driver = ContainerDriver::new(Some("/nonexistent.sock".to_owned()));
        let foreign = InstanceHandle::new("process", &serde_json::json!({"pid": 1})).unwrap();
        let malformed =
            InstanceHandle::new(CONTAINER_DRIVER, &serde_json::json!({"id": 7})).unwrap();
        for handle in [foreign, malformed] {
            assert!(!driver.is_running(&handle), "{handle}");
            assert!(!driver.reload(&handle), "{handle}");
            assert_eq!(driver.exit_status(&handle), None, "{handle}");
            assert_eq!(driver.describe(&handle), HandleSummary::default());
            assert_eq!(driver.watch(handle.clone()).await, None, "{handle}");
            assert_eq!(
                driver.stop(handle.clone(), Duration::ZERO).await,
                StopOutcome::Refused
            );
        }
    }
}
