//! The engine's API as the driver uses it: each call one step, each failure an [`EngineError`]
//! a person can act on (the engine's own message, never an environment value).

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, Mount, MountType, NetworkConnectRequest,
    NetworkCreateRequest, NetworkingConfig, PortBinding, ResourcesUlimits, RestartPolicy,
    RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, KillContainerOptions, ListContainersOptions,
    ListVolumesOptions, RemoveContainerOptions, StopContainerOptions,
};
use futures_util::StreamExt;
use wharf_runtime::{
    BuildSpec, ContainerSpec, Executed, ExitStatus, InstanceSpec, NetworkSpec, PullPolicy,
    StopOutcome, VolumeSource,
};

use crate::labels;
use wharf_runtime::image::parse_image;

/// The API version spoken: Debian's docker.io (20.10) serves 1.41, and newer engines and
/// Podman still accept it.
const API_VERSION: bollard::ClientVersion = bollard::ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// How long the engine may take to answer a ping before it counts as not running.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a step against the engine failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "cannot reach the container engine at {socket}: {reason} (is dockerd, or podman's API socket, running?)"
    )]
    Unreachable { socket: String, reason: String },
    #[error("image `{image}` is not present and `pull_policy: never` forbids pulling it")]
    NotPresent { image: String },
    #[error("cannot pull image `{image}`: {reason}")]
    Pull { image: String, reason: String },
    #[error("cannot {step}: {reason}")]
    Step { step: &'static str, reason: String },
    /// A build failed; `at` names the Dockerfile step the engine was at (`Step 2/3 : COPY …`),
    /// or the context when it could not be sent.
    #[error("cannot build image `{image}` ({at}): {reason}")]
    Build {
        image: String,
        at: String,
        reason: String,
    },
}

/// One step of a pull, as the engine streams it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullProgress {
    /// A layer's state: `Waiting`, `Downloading` (with bytes so far and in all), `Extracting`,
    /// `Pull complete`, `Already exists`.
    Layer {
        id: String,
        status: String,
        current: Option<u64>,
        total: Option<u64>,
    },
    /// A line about the whole image: `Pulling from …`, `Digest: …`, `Status: …`.
    Status(String),
}

/// What [`Engine::prepare_image`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepared {
    /// The engine had the image and the policy asked for no pull.
    Present,
    Pulled,
}
/// How much of an exec's output is kept for a probe's reason (its end).
const EXEC_OUTPUT_KEPT: usize = 4096;

/// What a start made.
#[derive(Debug)]
pub(crate) struct Created {
    pub id: String,
    pub name: String,
    pub digest: String,
}

/// The engine behind one unix socket.
#[derive(Debug, Clone)]
pub struct Engine {
    socket: String,
    /// Held while a network or volume is looked for and made: the engine accepts two
    /// networks of the same name, so concurrent starts of one stack must not both create it
    /// (then no container could join it: "network … is ambiguous").
    making: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Held while a built image is looked for and built, so the replicas of a service that
    /// start at once build it once.
    building: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// The engine's message for an error, without bollard's wrapping.
/// Every container, running or not, that matches the engine's `filters`.
async fn list_containers(
    docker: &Docker,
    filters: HashMap<String, Vec<String>>,
) -> Result<Vec<bollard::models::ContainerSummary>, EngineError> {
    let options = ListContainersOptions {
        all: true,
        filters: Some(filters),
        ..Default::default()
    };
    docker
        .list_containers(Some(options))
        .await
        .map_err(|error| EngineError::Step {
            step: "list containers",
            reason: message(error),
        })
}

/// Pulls `image` by repository and tag, each step of the engine's stream to `progress`.
async fn pull_reporting(
    docker: &Docker,
    image: &str,
    progress: &mut (dyn FnMut(PullProgress) + Send),
) -> Result<(), EngineError> {
    let reference = parse_image(image);
    tracing::info!(image, "pulling");
    let options = CreateImageOptions {
        from_image: Some(reference.repository.clone()),
        tag: Some(reference.tag.clone()),
        ..Default::default()
    };
    let mut stream = docker.create_image(Some(options), None, None);
    while let Some(step) = stream.next().await {
        match step {
            Ok(info) => {
                let status = info.status.unwrap_or_default();
                match info.id {
                    // The stream names the tag itself as `id` on its first line.
                    Some(id) if !id.is_empty() && id != reference.tag => {
                        let detail = info.progress_detail.unwrap_or_default();
                        let bytes = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok());
                        progress(PullProgress::Layer {
                            id,
                            status,
                            current: bytes(detail.current),
                            total: bytes(detail.total),
                        });
                    }
                    _ if !status.is_empty() => progress(PullProgress::Status(status)),
                    _ => {}
                }
            }
            Err(error) => {
                return Err(EngineError::Pull {
                    image: image.to_owned(),
                    reason: match error {
                        bollard::errors::Error::DockerStreamError { error } => error,
                        other => message(other),
                    },
                });
            }
        }
    }
    Ok(())
}

fn message(error: bollard::errors::Error) -> String {
    match error {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message,
        other => other.to_string(),
    }
}

fn is_not_found(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

impl Engine {
    pub fn new(socket: Option<String>) -> Engine {
        let socket = socket
            .or_else(|| {
                std::env::var("DOCKER_HOST")
                    .ok()
                    .filter(|host| host.starts_with("unix://"))
            })
            .unwrap_or_else(|| "/var/run/docker.sock".to_owned());
        Engine {
            socket: socket.trim_start_matches("unix://").to_owned(),
            making: std::sync::Arc::default(),
            building: std::sync::Arc::default(),
        }
    }

    /// A client for the socket. Requests are not bounded here: a pull, a wait or a followed
    /// log lasts as long as it lasts; [`Engine::ping`] bounds the question whether anyone
    /// answers at all.
    pub(crate) fn client(&self) -> Result<Docker, EngineError> {
        Docker::connect_with_unix(&self.socket, 10 * 365 * 24 * 3600, &API_VERSION).map_err(
            |error| EngineError::Unreachable {
                socket: self.socket.clone(),
                reason: message(error),
            },
        )
    }

    /// Whether there is a socket at all (no engine installed or started: nothing to ask).
    pub fn socket_exists(&self) -> bool {
        std::path::Path::new(&self.socket).exists()
    }

    /// Whether the engine answers, as an error naming the socket when it does not.
    pub async fn ping(&self) -> Result<Docker, EngineError> {
        let docker = self.client()?;
        let unreachable = |reason: String| EngineError::Unreachable {
            socket: self.socket.clone(),
            reason,
        };
        match tokio::time::timeout(PING_TIMEOUT, docker.ping()).await {
            Ok(Ok(_)) => Ok(docker),
            Ok(Err(error)) => Err(unreachable(message(error))),
            Err(_) => Err(unreachable("no answer within 5 s".to_owned())),
        }
    }

    /// Makes and starts one container; on any failure after the create, removes what it
    /// made, so nothing half-started stays behind.
    pub(crate) async fn create_and_start(
        &self,
        spec: &InstanceSpec,
        container: &ContainerSpec,
    ) -> Result<Created, EngineError> {
        let docker = self.ping().await?;
        let digest = match &container.build {
            Some(build) => self.ensure_built(&docker, spec, container, build).await?,
            None => self.ensure_image(&docker, container).await?,
        };
        {
            let _making = self.making.lock().await;
            for network in container.all_networks() {
                self.ensure_network(&docker, container, &network).await?;
            }
            for mount in &container.volumes {
                if let VolumeSource::Named(name) = &mount.source {
                    ensure_volume(&docker, container, name).await?;
                }
            }
        }
        let name = container_name(spec, container);
        let options = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        let id = docker
            .create_container(Some(options), create_body(spec, container))
            .await
            .map_err(|error| EngineError::Step {
                step: "create the container",
                reason: message(error),
            })?
            .id;
        // API 1.41 attaches one network at create: the others are joined before the start.
        if let Err(error) = connect_more_networks(&docker, &id, container).await {
            self.remove(&id).await;
            return Err(error);
        }
        if let Err(error) = docker.start_container(&id, None).await {
            self.remove(&id).await;
            return Err(EngineError::Step {
                step: "start the container",
                reason: message(error),
            });
        }
        Ok(Created { id, name, digest })
    }

    /// Pulls the image as the policy says and answers its digest.
    async fn ensure_image(
        &self,
        docker: &Docker,
        container: &ContainerSpec,
    ) -> Result<String, EngineError> {
        let image = &container.image;
        let present = match docker.inspect_image(image).await {
            Ok(_) => true,
            Err(error) if is_not_found(&error) => false,
            Err(error) => {
                return Err(EngineError::Step {
                    step: "inspect the image",
                    reason: message(error),
                });
            }
        };
        match (present, container.pull) {
            (true, PullPolicy::Missing | PullPolicy::Never) => {}
            (false, PullPolicy::Never) => {
                return Err(EngineError::NotPresent {
                    image: image.clone(),
                });
            }
            (_, PullPolicy::Always) | (false, PullPolicy::Missing) => {
                self.pull(docker, image).await?
            }
        }
        let inspected = docker
            .inspect_image(image)
            .await
            .map_err(|error| EngineError::Step {
                step: "inspect the image",
                reason: message(error),
            })?;
        let repository = parse_image(image).repository;
        let digests = inspected.repo_digests.unwrap_or_default();
        Ok(digests
            .iter()
            .find(|d| d.starts_with(&format!("{repository}@")))
            .or(digests.first())
            .cloned()
            .or(inspected.id)
            .unwrap_or_default())
    }

    /// Builds the image of a built service unless the engine has it (its tag is the version,
    /// by default a digest of the context: present means built from this source), and answers
    /// its id. The build's output goes to the instance's log and to wharf's own. The context
    /// is read as it is now: an older version's image removed from the engine (a rollback
    /// after `docker image prune`) is rebuilt from today's source under its old tag.
    async fn ensure_built(
        &self,
        docker: &Docker,
        spec: &InstanceSpec,
        container: &ContainerSpec,
        build: &BuildSpec,
    ) -> Result<String, EngineError> {
        let image = &container.image;
        let _building = self.building.lock().await;
        let present = match docker.inspect_image(image).await {
            Ok(inspected) => inspected.id,
            Err(error) if is_not_found(&error) => None,
            Err(error) => {
                return Err(EngineError::Step {
                    step: "inspect the image",
                    reason: message(error),
                });
            }
        };
        if let Some(id) = present {
            return Ok(id);
        }
        let mut log = crate::build_log::BuildLog::open(spec, image);
        let failed = |at: String, reason: String| EngineError::Build {
            image: image.clone(),
            at,
            reason,
        };
        let archive = {
            let build = build.clone();
            tokio::task::spawn_blocking(move || crate::context::archive(&build))
                .await
                .map_err(|error| failed("the context".to_owned(), error.to_string()))?
                .map_err(|error| failed("the context".to_owned(), error.to_string()))?
        };
        let options = bollard::query_parameters::BuildImageOptions {
            dockerfile: crate::context::dockerfile(build).to_owned(),
            t: Some(image.clone()),
            rm: true,
            forcerm: true,
            buildargs: Some(build.args.iter().cloned().collect()),
            target: build.target.clone().unwrap_or_default(),
            // No labels: the engine would add a step for each, and the steps a failed build
            // names should be the Dockerfile's own.
            ..Default::default()
        };
        let mut output = docker.build_image(
            options,
            None,
            Some(bollard::body_full(bytes::Bytes::from(archive))),
        );
        while let Some(item) = output.next().await {
            let reason = match item {
                Ok(info) => {
                    if let Some(text) = &info.stream {
                        log.output(text);
                    }
                    match info.error_detail.and_then(|d| d.message) {
                        Some(reason) => reason,
                        None => continue,
                    }
                }
                Err(bollard::errors::Error::DockerStreamError { error }) => error,
                Err(error) => message(error),
            };
            log.line(&format!("build failed: {reason}"));
            return Err(failed(log.step(), reason.trim().to_owned()));
        }
        let inspected = docker
            .inspect_image(image)
            .await
            .map_err(|error| failed(log.step(), message(error)))?;
        for reference in &build.also_tag {
            let parsed = parse_image(reference);
            let options = bollard::query_parameters::TagImageOptions {
                repo: Some(parsed.repository),
                tag: Some(parsed.tag),
            };
            if let Err(error) = docker.tag_image(image, Some(options)).await {
                tracing::warn!(
                    image,
                    reference,
                    error = message(error),
                    "tagging a built image"
                );
            }
        }
        log.line(&format!("built {image}"));
        Ok(inspected.id.unwrap_or_default())
    }

    /// Runs `command` inside a running container to its end: its exit code and the end of
    /// its output. The engine has no way to stop an exec: a caller that gives up (a probe's
    /// timeout) drops the future and abandons the command.
    /// Whether exec `exec_id` still runs (an engine that cannot tell: no).
    pub(crate) async fn exec_running(&self, exec_id: &str) -> bool {
        let Ok(docker) = self.client() else {
            return false;
        };
        docker
            .inspect_exec(exec_id)
            .await
            .ok()
            .and_then(|inspected| inspected.running)
            .unwrap_or(false)
    }

    /// Runs `command` inside container `id`, recording the exec's id in `last` as soon as it
    /// exists (the caller may give up waiting; the exec goes on).
    pub(crate) async fn exec(
        &self,
        id: &str,
        command: Vec<String>,
        last: &std::sync::Mutex<Option<String>>,
    ) -> Result<Executed, String> {
        let docker = self.client().map_err(|error| error.to_string())?;
        let config = bollard::models::ExecConfig {
            cmd: Some(command),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let created = docker
            .create_exec(id, config)
            .await
            .map_err(|error| format!("cannot exec in the container: {}", message(error)))?;
        if let Ok(mut last) = last.lock() {
            *last = Some(created.id.clone());
        }
        let started = docker
            .start_exec(&created.id, None)
            .await
            .map_err(|error| format!("cannot exec in the container: {}", message(error)))?;
        let mut kept: Vec<u8> = Vec::new();
        if let bollard::exec::StartExecResults::Attached { mut output, .. } = started {
            while let Some(Ok(chunk)) = output.next().await {
                kept.extend_from_slice(&chunk.into_bytes());
                if kept.len() > 2 * EXEC_OUTPUT_KEPT {
                    kept.drain(..kept.len() - EXEC_OUTPUT_KEPT);
                }
            }
        }
        if kept.len() > EXEC_OUTPUT_KEPT {
            kept.drain(..kept.len() - EXEC_OUTPUT_KEPT);
        }
        let inspected = docker
            .inspect_exec(&created.id)
            .await
            .map_err(|error| format!("cannot read the exec's exit code: {}", message(error)))?;
        Ok(Executed {
            code: inspected.exit_code,
            output: String::from_utf8_lossy(&kept).into_owned(),
        })
    }

    async fn pull(&self, docker: &Docker, image: &str) -> Result<(), EngineError> {
        pull_reporting(docker, image, &mut |step| {
            if let PullProgress::Status(status) = step {
                tracing::info!(image, status, "pull");
            }
        })
        .await
    }

    /// Makes `image` present as `policy` says before anything starts (`wharf up`), reporting
    /// each step of a pull to `progress`: `Ok(Pulled)` after a pull, `Ok(Present)` when the
    /// engine had it and the policy did not ask for a pull, [`EngineError::NotPresent`] when
    /// `never` forbids the pull it needs.
    pub async fn prepare_image(
        &self,
        image: &str,
        policy: PullPolicy,
        progress: &mut (dyn FnMut(PullProgress) + Send),
    ) -> Result<Prepared, EngineError> {
        let docker = self.ping().await?;
        let present = match docker.inspect_image(image).await {
            Ok(_) => true,
            Err(error) if is_not_found(&error) => false,
            Err(error) => {
                return Err(EngineError::Step {
                    step: "inspect the image",
                    reason: message(error),
                });
            }
        };
        match (present, policy) {
            (true, PullPolicy::Missing | PullPolicy::Never) => Ok(Prepared::Present),
            (false, PullPolicy::Never) => Err(EngineError::NotPresent {
                image: image.to_owned(),
            }),
            (_, PullPolicy::Always) | (false, PullPolicy::Missing) => {
                pull_reporting(&docker, image, progress).await?;
                Ok(Prepared::Pulled)
            }
        }
    }

    /// A network of the stack, created the first time (service names resolve on it). One
    /// found with another `internal` setting is an error: the containers on it would not be
    /// isolated as the manifest says (a `down` removes it, the next `up` makes it anew).
    async fn ensure_network(
        &self,
        docker: &Docker,
        container: &ContainerSpec,
        network: &NetworkSpec,
    ) -> Result<(), EngineError> {
        match docker
            .inspect_network(
                &network.name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
        {
            Ok(found) if found.internal.unwrap_or(false) == network.internal => return Ok(()),
            Ok(_) => {
                return Err(EngineError::Step {
                    step: "join the stack's network",
                    reason: format!(
                        "network `{}` exists with `internal: {}`; run `wharf down` to remove it and `up` again",
                        network.name, !network.internal
                    ),
                });
            }
            Err(error) if is_not_found(&error) => {}
            Err(error) => {
                return Err(EngineError::Step {
                    step: "inspect the stack's network",
                    reason: message(error),
                });
            }
        }
        let request = NetworkCreateRequest {
            name: network.name.clone(),
            labels: Some(owner_labels(container)),
            internal: network.internal.then_some(true),
            ..Default::default()
        };
        match docker.create_network(request).await {
            Ok(_) => Ok(()),
            // Another instance of the stack created it meanwhile.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(error) => Err(EngineError::Step {
                step: "create the stack's network",
                reason: message(error),
            }),
        }
    }

    /// Waits for the container to end and reads how.
    pub(crate) async fn wait(&self, id: &str) -> Option<ExitStatus> {
        let docker = self.client().ok()?;
        let mut waiting = docker.wait_container(id, None);
        // The stream ends with the container: an error carrying a non-zero code is an exit too.
        let _ = waiting.next().await;
        self.exit_of(&docker, id).await
    }

    async fn exit_of(&self, docker: &Docker, id: &str) -> Option<ExitStatus> {
        let state = docker.inspect_container(id, None).await.ok()?.state?;
        if state.running == Some(true) {
            return None;
        }
        Some(exit_status(
            state.exit_code.unwrap_or(-1),
            state.finished_at.unwrap_or_default(),
        ))
    }

    /// SIGTERM (or the image's stop signal), `grace`, then SIGKILL — the engine's own stop.
    pub(crate) async fn stop(&self, id: &str, grace: Duration) -> StopOutcome {
        let Ok(docker) = self.client() else {
            return StopOutcome::AlreadyGone;
        };
        match docker.inspect_container(id, None).await {
            Ok(inspected) if inspected.state.as_ref().and_then(|s| s.running) == Some(true) => {}
            _ => return StopOutcome::AlreadyGone,
        }
        let seconds = i32::try_from(grace.as_millis().div_ceil(1000)).unwrap_or(i32::MAX);
        let options = StopContainerOptions {
            t: Some(seconds),
            ..Default::default()
        };
        if let Err(error) = docker.stop_container(id, Some(options)).await {
            tracing::warn!(id, error = message(error), "stopping a container");
        }
        match self.exit_of(&docker, id).await {
            Some(status) if status.signal == Some(9) => StopOutcome::Killed,
            _ => StopOutcome::Graceful,
        }
    }

    /// Removes a container (and its anonymous volumes, never a named one); a missing one is
    /// fine.
    pub(crate) async fn remove(&self, id: &str) {
        let Ok(docker) = self.client() else { return };
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        if let Err(error) = docker.remove_container(id, Some(options)).await
            && !is_not_found(&error)
        {
            tracing::warn!(id, error = message(error), "removing a container");
        }
    }

    pub(crate) async fn signal(&self, id: &str, signal: &str) {
        let Ok(docker) = self.client() else { return };
        let options = KillContainerOptions {
            signal: signal.to_owned(),
        };
        if let Err(error) = docker.kill_container(id, Some(options)).await {
            tracing::warn!(id, error = message(error), "signalling a container");
        }
    }

    /// Every wharf container the engine has, with its exit status when it has ended.
    pub(crate) async fn states(&self) -> Result<Vec<(String, Option<ExitStatus>)>, EngineError> {
        let docker = self.ping().await?;
        let listed = list_containers(
            &docker,
            HashMap::from([("label".to_owned(), vec![labels::INSTANCE.to_owned()])]),
        )
        .await?;
        Ok(listed
            .into_iter()
            .filter_map(|summary| {
                let id = summary.id?;
                let running =
                    summary.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING);
                let status = (!running).then(|| {
                    exit_status(
                        summary
                            .status
                            .as_deref()
                            .and_then(listed_code)
                            .unwrap_or(-1),
                        String::new(),
                    )
                });
                Some((id, status))
            })
            .collect())
    }

    /// Removes the named volumes of a stack this wharf owns (`down --volumes`); answers their
    /// names.
    pub async fn remove_volumes(
        &self,
        stack: &str,
        owner: &str,
    ) -> Result<Vec<String>, EngineError> {
        let docker = self.ping().await?;
        let options = ListVolumesOptions {
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![
                    format!("{}={stack}", labels::STACK),
                    format!("{}={owner}", labels::OWNER),
                ],
            )])),
        };
        let listed =
            docker
                .list_volumes(Some(options))
                .await
                .map_err(|error| EngineError::Step {
                    step: "list volumes",
                    reason: message(error),
                })?;
        let mut removed = Vec::new();
        for volume in listed.volumes.unwrap_or_default() {
            docker
                .remove_volume(
                    &volume.name,
                    None::<bollard::query_parameters::RemoveVolumeOptions>,
                )
                .await
                .map_err(|error| EngineError::Step {
                    step: "remove a volume",
                    reason: message(error),
                })?;
            removed.push(volume.name);
        }
        Ok(removed)
    }

    /// Removes the ended containers of a wharf (its state directory): after a `down` without
    /// a control plane, nobody watched them end. Answers how many.
    pub async fn remove_ended(&self, owner: &str) -> Result<usize, EngineError> {
        let docker = self.ping().await?;
        let listed = list_containers(
            &docker,
            HashMap::from([
                (
                    "label".to_owned(),
                    vec![format!("{}={owner}", labels::OWNER)],
                ),
                (
                    "status".to_owned(),
                    vec!["exited".to_owned(), "created".to_owned(), "dead".to_owned()],
                ),
            ]),
        )
        .await?;
        let ids: Vec<String> = listed.into_iter().filter_map(|c| c.id).collect();
        for id in &ids {
            self.remove(id).await;
        }
        Ok(ids.len())
    }

    /// Removes every network of a stack this wharf owns (after `down`: networks hold no
    /// data, the next `up` makes them again); best effort, one still in use stays.
    pub async fn remove_networks(&self, stack: &str, owner: &str) {
        let Ok(docker) = self.client() else { return };
        let options = bollard::query_parameters::ListNetworksOptions {
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![
                    format!("{}={stack}", labels::STACK),
                    format!("{}={owner}", labels::OWNER),
                ],
            )])),
        };
        let listed = match docker.list_networks(Some(options)).await {
            Ok(listed) => listed,
            Err(error) => {
                tracing::debug!(
                    stack,
                    error = message(error),
                    "cannot list the stack's networks"
                );
                return;
            }
        };
        for name in listed.into_iter().filter_map(|n| n.name) {
            self.remove_network(&name).await;
        }
    }

    /// Removes the stack's network once no container uses it (after `down`); best effort.
    pub async fn remove_network(&self, name: &str) {
        if let Ok(docker) = self.client()
            && let Err(error) = docker.remove_network(name).await
            && !is_not_found(&error)
        {
            tracing::debug!(name, error = message(error), "the stack's network stays");
        }
    }
}

async fn ensure_volume(
    docker: &Docker,
    container: &ContainerSpec,
    name: &str,
) -> Result<(), EngineError> {
    let request = VolumeCreateRequest {
        name: Some(name.to_owned()),
        labels: Some(owner_labels(container)),
        ..Default::default()
    };
    docker
        .create_volume(request)
        .await
        .map(|_| ())
        .map_err(|error| EngineError::Step {
            step: "create a volume",
            reason: message(error),
        })
}

fn owner_labels(container: &ContainerSpec) -> HashMap<String, String> {
    HashMap::from([
        (labels::STACK.to_owned(), container.stack.clone()),
        (labels::OWNER.to_owned(), container.owner.clone()),
    ])
}

/// `stack-service-ordinal-suffix`: readable in `docker ps`, unique across restarts.
fn container_name(spec: &InstanceSpec, container: &ContainerSpec) -> String {
    let suffix = jiff::Timestamp::now().as_millisecond() % 0x1_0000_0000;
    format!(
        "{}-{}-{}-{suffix:x}",
        container.stack, spec.service, spec.index
    )
}

fn create_body(spec: &InstanceSpec, container: &ContainerSpec) -> ContainerCreateBody {
    let mut labels = owner_labels(container);
    labels.extend([
        (labels::SERVICE.to_owned(), spec.service.clone()),
        (labels::VERSION.to_owned(), spec.version.clone()),
        (labels::ORDINAL.to_owned(), spec.index.to_string()),
        (
            labels::INSTANCE.to_owned(),
            format!("{}/{}/{}", container.stack, spec.service, spec.index),
        ),
    ]);
    let port_bindings = container
        .ports
        .iter()
        .map(|p| {
            (
                format!("{}/tcp", p.container),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".to_owned()),
                    host_port: Some(p.host.to_string()),
                }]),
            )
        })
        .collect();
    let mounts = container
        .volumes
        .iter()
        .map(|v| Mount {
            target: Some(v.target.clone()),
            source: Some(match &v.source {
                VolumeSource::Named(name) => name.clone(),
                VolumeSource::Bind(path) => path.display().to_string(),
            }),
            typ: Some(match v.source {
                VolumeSource::Named(_) => MountType::VOLUME,
                VolumeSource::Bind(_) => MountType::BIND,
            }),
            read_only: Some(v.read_only),
            ..Default::default()
        })
        .collect();
    let options = &container.options;
    let networks = container.all_networks();
    let first = networks
        .first()
        .map_or(container.network.clone(), |n| n.name.clone());
    ContainerCreateBody {
        image: Some(container.image.clone()),
        user: options.user.clone(),
        working_dir: options.working_dir.clone(),
        // `docker stop` (and so the driver's stop) sends it, then SIGKILL after the grace.
        stop_signal: spec.stop_signal.clone(),
        cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
        entrypoint: container.entrypoint.clone(),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(labels),
        exposed_ports: Some(
            container
                .ports
                .iter()
                .map(|p| format!("{}/tcp", p.container))
                .collect(),
        ),
        host_config: Some(HostConfig {
            port_bindings: Some(port_bindings),
            mounts: Some(mounts),
            // wharf restarts what exits, with its own policy and back-off.
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            ulimits: (!options.ulimits.is_empty()).then(|| {
                options
                    .ulimits
                    .iter()
                    .map(|u| ResourcesUlimits {
                        name: Some(u.name.clone()),
                        soft: Some(u.soft),
                        hard: Some(u.hard),
                    })
                    .collect()
            }),
            shm_size: options.shm_size.and_then(|s| i64::try_from(s).ok()),
            cap_add: (!options.cap_add.is_empty()).then(|| options.cap_add.clone()),
            cap_drop: (!options.cap_drop.is_empty()).then(|| options.cap_drop.clone()),
            readonly_rootfs: options.read_only.then_some(true),
            tmpfs: (!options.tmpfs.is_empty()).then(|| {
                options
                    .tmpfs
                    .iter()
                    .map(|t| match t.split_once(':') {
                        Some((path, mount)) => (path.to_owned(), mount.to_owned()),
                        None => (t.clone(), String::new()),
                    })
                    .collect()
            }),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                first,
                EndpointSettings {
                    aliases: Some(container.aliases.clone()),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    }
}

/// Joins the networks after the first (which the create attached), with the same aliases.
async fn connect_more_networks(
    docker: &Docker,
    id: &str,
    container: &ContainerSpec,
) -> Result<(), EngineError> {
    for network in container.all_networks().iter().skip(1) {
        let request = NetworkConnectRequest {
            container: id.to_owned(),
            endpoint_config: Some(EndpointSettings {
                aliases: Some(container.aliases.clone()),
                ..Default::default()
            }),
        };
        docker
            .connect_network(&network.name, request)
            .await
            .map_err(|error| EngineError::Step {
                step: "join a network of the stack",
                reason: message(error),
            })?;
    }
    Ok(())
}

/// An engine exit code as wharf's status: 128 + N is death by signal N, as shells report it.
fn exit_status(code: i64, finished_at: String) -> ExitStatus {
    let at = finished_at
        .parse::<jiff::Timestamp>()
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string();
    match code {
        129..=192 => ExitStatus {
            code: None,
            signal: i32::try_from(code - 128).ok(),
            at,
        },
        code if code >= 0 => ExitStatus {
            code: i32::try_from(code).ok(),
            signal: None,
            at,
        },
        _ => ExitStatus {
            code: None,
            signal: None,
            at,
        },
    }
}

/// The code in a listed container's status (`Exited (137) 3 seconds ago`).
fn listed_code(status: &str) -> Option<i64> {
    let rest = status.strip_prefix("Exited (")?;
    rest.split(')').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_become_statuses() {
        assert_eq!(exit_status(0, String::new()).code, Some(0));
        assert_eq!(exit_status(3, String::new()).code, Some(3));
        let killed = exit_status(137, "2026-12-05T21:00:00Z".to_owned());
        assert_eq!((killed.code, killed.signal), (None, Some(9)));
        assert_eq!(killed.at, "2026-12-05T21:00:00Z");
        assert_eq!(exit_status(-1, String::new()).code, None);
        assert_eq!(listed_code("Exited (137) 3 seconds ago"), Some(137));
        assert_eq!(listed_code("Up 2 minutes"), None);
    }
}
