//! What the control plane hands the shim to start one instance.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One instance to start: its command line and environment with `${PORT}`, `${INSTANCE}`,
/// `${VERSION}` and `${SERVICE}` already substituted, and where its logs and exit status go.
///
/// The spec reaches the shim on its stdin, never in argv or a file, because its environment
/// may hold secret values (`Debug` prints only the variable names for the same reason).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InstanceSpec {
    pub service: String,
    pub index: u32,
    pub version: String,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: PathBuf,
    pub log_path: PathBuf,
    /// Where the shim writes the exit status, so a control plane that was down when the
    /// instance exited still learns how it ended.
    pub exit_path: PathBuf,
    pub log_max_bytes: u64,
    /// Rotated files kept besides the current one.
    pub log_keep: u32,
    /// Set for a service with `image:`: what the container driver needs beyond the above
    /// (`command` is then the image's arguments, empty for the image's own `CMD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerSpec>,
    /// The signal that asks the instance to stop (`SIGQUIT`…); SIGTERM when `None`. The
    /// process driver keeps it in its handle, a container has it as its stop signal, so a
    /// stop after adoption sends the same one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

/// How a container instance is made: image, ports, volumes, network. Names and paths only —
/// the values of secrets travel in [`InstanceSpec::env`], never here.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContainerSpec {
    /// The stack's name: containers, the network and named volumes are labelled with it.
    pub stack: String,
    /// Which wharf owns the container (its state directory), so two stacks of the same name
    /// in different directories never adopt each other's containers.
    pub owner: String,
    pub image: String,
    pub pull: PullPolicy,
    /// Replaces the image's `ENTRYPOINT` when set.
    pub entrypoint: Option<Vec<String>>,
    /// Ports published on loopback: the host port the proxy or a probe reaches, and the
    /// port inside the container.
    pub ports: Vec<PortMapping>,
    pub volumes: Vec<VolumeMount>,
    /// The stack's network, on which the container answers to `aliases` (its service name).
    pub network: String,
    pub aliases: Vec<String>,
    /// The networks the service names, when it names its own: the container joins each
    /// (the first at create, the others before it starts) with the same aliases, instead of
    /// `network` alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkSpec>,
    /// Who the process runs as, where, with which limits, privileges and filesystem.
    #[serde(default)]
    pub options: ContainerOptions,
    /// Set when wharf builds `image` itself (compose's `build:`): the driver builds it from
    /// this context when the engine does not have it, instead of pulling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildSpec>,
}

impl ContainerSpec {
    /// Every network the container joins, in order (the first at create).
    pub fn all_networks(&self) -> Vec<NetworkSpec> {
        if self.networks.is_empty() {
            vec![NetworkSpec {
                name: self.network.clone(),
                internal: false,
            }]
        } else {
            self.networks.clone()
        }
    }
}

/// An engine network of the stack (its full name, stack-prefixed).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetworkSpec {
    pub name: String,
    /// No route out (docker's `Internal`).
    #[serde(default)]
    pub internal: bool,
}

/// The manifest's container options, as the engine applies them at create.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContainerOptions {
    /// `name`, `uid` or `uid:gid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit>,
    /// Bytes of `/dev/shm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<u64>,
    /// Capability names as docker takes them (`NET_ADMIN`, `ALL`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(default)]
    pub read_only: bool,
    /// `PATH` or `PATH:OPTIONS` (docker's tmpfs mount options).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tmpfs: Vec<String>,
}

/// One resource limit (`nofile`, …); -1 is unlimited.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// How the image of a built service is made: a context directory sent to the engine's build
/// API (minus what its `.dockerignore` excludes).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BuildSpec {
    /// The context directory (absolute: resolved against the manifest's directory).
    pub context: PathBuf,
    /// The Dockerfile's path inside the context.
    pub dockerfile: String,
    /// `ARG` values, in the manifest's order.
    pub args: Vec<(String, String)>,
    /// The stage to build, for a multi-stage Dockerfile.
    pub target: Option<String>,
    /// Further references to tag the built image with (`image:` as the manifest writes it,
    /// as compose tags it).
    pub also_tag: Vec<String>,
}

/// When the image is pulled from its registry.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Only when the engine does not have it (the default, as compose).
    #[default]
    Missing,
    /// At every start, so a moved tag is followed.
    Always,
    /// Never: the image must be present (built or loaded beforehand).
    Never,
}

/// A host port (on 127.0.0.1) published to a container port (TCP).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct PortMapping {
    pub host: u16,
    pub container: u16,
}

/// A volume mounted into a container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeMount {
    pub source: VolumeSource,
    /// The absolute path inside the container.
    pub target: String,
    pub read_only: bool,
}

/// Where a mount's data lives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum VolumeSource {
    /// A named volume of the engine (its full name, stack-prefixed), created when missing and
    /// kept across `down`; only `down --volumes` removes it.
    Named(String),
    /// A directory or file of the host (absolute: resolved against the manifest's directory).
    Bind(PathBuf),
}

impl fmt::Debug for InstanceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env_names: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("InstanceSpec")
            .field("service", &self.service)
            .field("index", &self.index)
            .field("version", &self.version)
            .field("command", &self.command)
            .field("env", &env_names)
            .field("workdir", &self.workdir)
            .field("log_path", &self.log_path)
            .finish_non_exhaustive()
    }
}

/// How an instance ended, as the shim saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit code, when it exited by itself.
    pub code: Option<i32>,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    /// RFC 3339 UTC.
    pub at: String,
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exit code {code}"),
            (None, Some(9)) => f.write_str("killed (SIGKILL)"),
            (None, Some(15)) => f.write_str("terminated (SIGTERM)"),
            (None, Some(signal)) => write!(f, "killed by signal {signal}"),
            (None, None) => f.write_str("exited"),
        }
    }
}
