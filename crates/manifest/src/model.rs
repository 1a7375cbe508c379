//! The typed stack a valid manifest describes: what every later crate consumes.
//!
//! These types derive `Serialize` on purpose: `wharf render` prints them, and the control plane
//! stores the effective manifest of each deployment.

use indexmap::IndexMap;
use serde::Serialize;

use crate::values::{CronSchedule, Duration, Percent, Weight};

/// One stack: services, their dependencies and policies, after overlays and interpolation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stack {
    pub name: String,
    /// The environment whose overlay was applied, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require: Option<Requirements>,
    /// Where the datastores' backups go (`.wharf/backups` when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backups: Option<BackupRepository>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub secrets: IndexMap<String, SecretPolicy>,
    pub services: IndexMap<String, Service>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub smoke: Vec<SmokeCheck>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<Alert>,
    /// The runbooks an operator can run, by name.
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub runbooks: IndexMap<String, Runbook>,
    /// The public status page's title and components (`wharf up --status-listen`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_page: Option<StatusPage>,
    /// Release gates by name (`wharf gate check GATE`), each a list of conditions.
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub gates: IndexMap<String, Vec<GateCondition>>,
    /// The stack's own container networks by name (each made as `<stack>_<name>`), beside
    /// `default`, the stack's network every container joins unless it names others.
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub networks: IndexMap<String, Network>,
}

/// A container network of the stack (`networks.NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Network {
    /// No route out of the network (docker's `Internal`): its containers reach each other,
    /// nothing beyond it.
    pub internal: bool,
}

/// One condition of a release gate: a name and the limits on one kind of report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateCondition {
    pub name: String,
    #[serde(flatten)]
    pub check: GateCheck,
}

/// The kind of report a gate condition reads, with its limits. At least one limit is set
/// (the schema refuses a condition that would check nothing).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GateCheck {
    Sarif(SarifLimits),
    Junit(JunitLimits),
    K6(K6Limits),
    Coverage(CoverageLimits),
}

impl GateCheck {
    /// True when no limit is set.
    pub fn is_empty(&self) -> bool {
        match self {
            GateCheck::Sarif(l) => {
                l.max_level.is_none()
                    && l.max_security_severity.is_none()
                    && l.max_results.is_none()
            }
            GateCheck::Junit(l) => l.max_failures.is_none() && l.min_tests.is_none(),
            GateCheck::K6(l) => l.p95.is_none() && l.max_error_rate.is_none() && !l.thresholds_pass,
            GateCheck::Coverage(l) => l.min_lines.is_none() && l.min_branches.is_none(),
        }
    }
}

/// SARIF levels, ordered by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SarifLevel {
    None,
    Note,
    Warning,
    Error,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct SarifLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_level: Option<SarifLevel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_security_severity: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_results: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct JunitLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_failures: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_tests: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct K6Limits {
    /// `http_req_duration`'s p(95) at most this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p95: Option<Duration>,
    /// `http_req_failed`'s rate at most this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<Percent>,
    /// `thresholds: pass`: every k6 threshold passed.
    #[serde(
        rename = "thresholds",
        skip_serializing_if = "std::ops::Not::not",
        serialize_with = "thresholds_pass"
    )]
    pub thresholds_pass: bool,
}

/// `thresholds_pass` is written as the manifest spells it: `thresholds: pass`.
fn thresholds_pass<S: serde::Serializer>(_: &bool, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str("pass")
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct CoverageLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_lines: Option<Percent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_branches: Option<Percent>,
}

/// `status_page:` — what the public status page shows. Without `components`, every service is
/// a component of its own but those in `hide`; with it, exactly the listed components.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct StatusPage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<PublicComponent>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hide: Vec<String>,
}

/// One public component: a name the public reads, the services whose health it shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicComponent {
    pub name: String,
    pub services: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The backup repository: a folder (relative to the manifest) or S3-compatible storage in
/// restic's syntax (`s3:https://HOST/BUCKET/PREFIX`), whose keys come from secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupRepository {
    pub repository: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// A declared secret. Values never live in the manifest, only names and policy.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct SecretPolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Rotate at least this often (`90d`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
    /// What preflight does with an overdue secret (`fail` unless set to `warn`).
    pub overdue: Overdue,
    /// How `wharf secret rotate` makes a new value (default: 32 alphanumerics).
    pub generate: Generator,
    /// Run before services switch to a rotated value, to make it real (e.g. `ALTER ROLE`).
    /// It gets the new and old values in `WHARF_SECRET_NEW` / `WHARF_SECRET_OLD`, never in argv.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotate_command: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Overdue {
    #[default]
    Fail,
    Warn,
}

/// A random value's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Generator {
    pub length: u32,
    /// The characters to draw from; `alnum`, `hex` and `base64url` name the usual sets.
    pub alphabet: String,
}

impl Default for Generator {
    fn default() -> Self {
        Generator {
            length: 32,
            alphabet: "alnum".to_owned(),
        }
    }
}

impl Generator {
    /// The characters of the alphabet, with the named sets expanded.
    pub fn characters(&self) -> String {
        match self.alphabet.as_str() {
            "alnum" => "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789".to_owned(),
            "hex" => "0123456789abcdef".to_owned(),
            "base64url" => {
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".to_owned()
            }
            other => other.to_owned(),
        }
    }
}

/// What an environment demands before a deployment may proceed.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Requirements {
    /// A deploy is refused while a datastore's last good backup is older (or failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_max_age: Option<Duration>,
    /// A deploy is refused while a datastore's last passed restore drill is older.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drill_max_age: Option<Duration>,
    /// A deploy waits until this many distinct approvers other than its requester approve it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approvals: Option<u32>,
    /// How long such a request waits for its approvals before it expires (default 24 h).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approvals_within: Option<Duration>,
    /// A deploy of `SERVICE` at `VERSION` is refused unless each of these gates (names in
    /// `gates:`) has a passing `gate.check` for `SERVICE@VERSION` as its latest verdict.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<String>,
    /// A deploy of a version is refused until a promotion bundle from this environment,
    /// signed by its ledger's key, has been verified and imported (`wharf promote import`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promoted_from: Option<PromotedFrom>,
}

/// `require.promoted_from`: the environment a version must come from, and the verifier key of
/// that environment's ledger (the C2SP note form `NAME+KEYID+BASE64`, as `wharf audit key`
/// prints it). The key is the trust anchor; the environment name is checked against the
/// bundle's so a bundle from the wrong stage is refused with a clear reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromotedFrom {
    pub env: String,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<DatastoreKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Connection URL of a datastore (may hold `${secret:NAME}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Filesystem path of a `sqlite` or `directory` datastore.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub replicas: u32,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub env: IndexMap<String, String>,
    /// Secrets given to the service as environment variables of the same name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Secrets given as files `$WHARF_SECRETS_DIR/NAME` (mode 0400, removed when it stops).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secret_files: Vec<String>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub depends_on: IndexMap<String, Dependency>,
    #[serde(skip_serializing_if = "Probes::is_empty")]
    pub probes: Probes,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// Keeps a client on one version during a rollout (the proxy hashes the key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sticky: Option<Sticky>,
    /// How the wharf proxy treats the service's traffic (only for services it serves).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxySettings>,
    pub reload: Reload,
    pub restart: RestartPolicy,
    /// How an instance is asked to stop (`stop: {signal, grace}`); wharf's SIGTERM and the
    /// control plane's grace where absent.
    #[serde(skip_serializing_if = "Stop::is_default")]
    pub stop: Stop,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<Backup>,
    /// How an `image:` service's container is made (`None` for processes and datastores
    /// wharf does not run as a container).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
}

/// The container side of an `image:` service: what compose users rely on that this wharf
/// builds. (`image` itself stays on [`Service`]; `command` overrides the image's `CMD`.)
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Container {
    /// Replaces the image's `ENTRYPOINT`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// The port the service listens on inside the container; `port:` (the public one) when
    /// absent. Each instance publishes it on a loopback port of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_port: Option<u16>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    pub pull_policy: PullPolicy,
    /// The process and sandbox settings, and the networks it joins.
    #[serde(flatten)]
    pub options: ContainerOptions,
    /// Set when wharf builds the image from source (compose's `build:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
    /// More published ports beside the main `port:` (`ports:`), each a public port the wharf
    /// proxy listens on and the container port it reaches.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
}

/// One entry of `ports:`: a public port → a container port, served by the wharf proxy — at
/// TCP level (bytes passed through) unless it speaks HTTP (`app_protocol: http`), which the
/// proxy then serves as it serves `port:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ServicePort {
    /// The public port the proxy listens on.
    pub published: u16,
    /// The port inside the container.
    pub target: u16,
    /// Where the proxy binds the public port.
    pub host_ip: PortHost,
    /// How the proxy carries the port's connections.
    pub app_protocol: AppProtocol,
}

/// The address the proxy binds a public port on: every interface (compose's default), or
/// loopback only (`127.0.0.1:PUBLIC:CONTAINER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum PortHost {
    #[default]
    #[serde(rename = "0.0.0.0")]
    Any,
    #[serde(rename = "127.0.0.1")]
    Loopback,
}

/// How the proxy carries a port's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AppProtocol {
    /// Bytes passed through both ways; the version is chosen per connection.
    #[default]
    Tcp,
    /// Served at HTTP level like `port:` (per request: weights, pins, stickiness, stats).
    Http,
}

/// compose's `build:`: the image is built by the engine from a context directory.
///
/// The built image's reference is `REPOSITORY:VERSION`: the repository of `image:` when given
/// (the image is also tagged with `image:` as written, as compose tags it), else
/// `STACK-SERVICE`; the version is `version:` when given, else a digest of the context's
/// files (after `.dockerignore`), the Dockerfile's path, the build args and the target — so
/// a changed source is a new version, rolled out like any new tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Build {
    /// The context directory, relative to the manifest's directory (or absolute).
    pub context: String,
    /// The Dockerfile's path inside the context (`Dockerfile` when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    /// `ARG` values (compose's `args`).
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub args: IndexMap<String, String>,
    /// The stage of a multi-stage Dockerfile to build.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// How a service's instances are stopped: this signal, then this long, then SIGKILL.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Stop {
    /// The signal's name with its `SIG` prefix (`SIGQUIT`), one of [`STOP_SIGNALS`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace: Option<Duration>,
}

impl Stop {
    pub fn is_default(&self) -> bool {
        self.signal.is_none() && self.grace.is_none()
    }
}

/// The signals a `stop.signal` may name: the ones programs use for "shut down" (nginx's
/// SIGQUIT, php-fpm's SIGQUIT, postgres' SIGINT for a fast shutdown…), plus SIGKILL.
pub const STOP_SIGNALS: &[&str] = &[
    "SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGKILL",
];

/// The container settings compose users rely on beyond image and command: who the process
/// runs as, where, with which limits and privileges, on which filesystem and networks. Each
/// is applied when the container is created.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ContainerOptions {
    /// `name`, `uid` or `uid:gid` (docker's `--user`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// An absolute path inside the container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Resource limits by name (one of [`ULIMITS`]).
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub ulimits: IndexMap<String, Ulimit>,
    /// The size of `/dev/shm` in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<u64>,
    /// Capabilities by their name without `CAP_` (`NET_ADMIN`), or `ALL`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    /// The root filesystem is mounted read-only (`tmpfs:` gives writable directories).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// Absolute paths that get an empty in-memory filesystem each start.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tmpfs: Vec<String>,
    /// The stack networks it joins (`default` is the stack's own); only `default` when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
}

/// One resource limit: `nofile: 65535` sets both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

/// The limits `ulimits:` may set: the kernel's `RLIMIT_*` names as docker spells them.
pub const ULIMITS: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// The Linux capabilities (`capabilities(7)`), without `CAP_`.
pub const CAPABILITIES: &[&str] = &[
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYSLOG",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "WAKE_ALARM",
];

/// When an image is pulled (compose's `pull_policy`, its `missing` default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    #[default]
    Missing,
    Always,
    Never,
}

/// One mount, compose's short syntax: `NAME:/path[:ro]` or `./dir:/path[:ro]` (and rendered
/// back in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub source: VolumeSource,
    pub target: String,
    pub read_only: bool,
}

impl Serialize for Volume {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let source = match &self.source {
            VolumeSource::Named(name) => name,
            VolumeSource::Bind(path) => path,
        };
        let mode = if self.read_only { ":ro" } else { "" };
        serializer.serialize_str(&format!("{source}:{}{mode}", self.target))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeSource {
    /// A named volume of the stack, kept across `down`, removed by `down --volumes`.
    Named(String),
    /// A host path, relative to the manifest's directory unless absolute.
    Bind(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DatastoreKind {
    Postgres,
    Mariadb,
    Redis,
    Sqlite,
    Directory,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dependency {
    pub condition: DependencyCondition,
    /// A critical dependency that is down blocks this service; a non-critical one degrades it.
    pub critical: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DependencyCondition {
    /// The dependency's process has started.
    Started,
    /// The dependency passes its readiness probe.
    Ready,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Probes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<Probe>,
}

impl Probes {
    pub fn is_empty(&self) -> bool {
        self.live.is_none() && self.ready.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Probe {
    #[serde(flatten)]
    pub check: ProbeCheck,
    pub interval: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub start_period: Duration,
}

// A few probes per service, built once per load: boxing the HTTP check would save nothing
// that matters and make every match on it noisier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeCheck {
    Http(HttpCheck),
    Tcp(TcpCheck),
    Exec(ExecCheck),
    Postgres(ConnectCheck),
    Redis(ConnectCheck),
}

/// An HTTP request and what its answer must look like.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpCheck {
    pub method: String,
    /// A path on the instance (`/health`) or a full URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub headers: IndexMap<String, String>,
    /// Accepted statuses; empty means any 2xx or 3xx.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expect_status: Vec<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json: Option<JsonCondition>,
    /// Slower than this is a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_latency: Option<Duration>,
    /// Slower than this is a warning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warn_latency: Option<Duration>,
}

/// `{pointer: /status, equals: "ok"}`: an RFC 6901 JSON pointer into the body and its value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JsonCondition {
    pub pointer: String,
    pub equals: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TcpCheck {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Defaults to the instance's port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecCheck {
    pub command: Vec<String>,
    pub expect_exit: i32,
}

/// A datastore probe: connect and run the cheapest real query (`SELECT 1`, `PING`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectCheck {
    /// Defaults to the service's `url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rollout {
    pub strategy: Strategy,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<RolloutStep>,
    pub analysis: Analysis,
    /// How long each phase may take; unset ones keep wharf's defaults.
    #[serde(skip_serializing_if = "Deadlines::is_empty")]
    pub deadlines: Deadlines,
}

impl Rollout {
    /// The rollout of a service whose manifest has no `rollout` block: a canary of 10 % for
    /// 30 s, 50 % for a minute, then everything, with the default analysis (50 requests a step).
    pub fn default_canary() -> Rollout {
        Rollout {
            strategy: Strategy::Canary,
            steps: Rollout::default_canary_steps(),
            analysis: Analysis {
                min_requests: 50,
                ..Analysis::default()
            },
            deadlines: Deadlines::default(),
        }
    }

    /// 10 % for 30 s, 50 % for a minute, then everything: a cautious default a user can see in
    /// `wharf render` and override.
    pub fn default_canary_steps() -> Vec<RolloutStep> {
        [(10, Some(30)), (50, Some(60)), (100, None)]
            .into_iter()
            .filter_map(|(weight, pause)| {
                Some(RolloutStep {
                    weight: Weight::new(weight)?,
                    pause: pause.map(Duration::from_secs),
                })
            })
            .collect()
    }
}

/// Where the proxy finds a client's stickiness key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sticky {
    Cookie(String),
    Header(String),
}

/// The proxy's limits for one service; the proxy's defaults where absent.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ProxySettings {
    /// How long an instance may take to start its answer, and one read or write of a body may
    /// wait, before the client gets a 504 (default 60 s). Long-polling endpoints need more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_timeout: Option<Duration>,
    /// How long a WebSocket (any switched protocol) may pass no byte either way before the
    /// proxy closes it (default 1 h).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnel_idle_timeout: Option<Duration>,
    /// How long the proxy waits on a client mid-request (one read of its body; then a 408) or,
    /// over HTTP/1.1, mid-response (one write to it) before giving up (default 60 s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_timeout: Option<Duration>,
    /// How long a client has to send a whole request head, and how long an idle keep-alive
    /// connection stays open (default 30 s); a slow or silent client is closed after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_timeout: Option<Duration>,
    /// Client connections open at once on the service's port, all clients together (default
    /// 10,000); past it a new connection gets a 503.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// Client connections open at once from one source address (default 1,000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections_per_client: Option<u32>,
}

/// Deadlines of a rollout's phases, so no rollout waits forever.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Deadlines {
    /// New instances must be ready within this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<Duration>,
    /// A step short of `min_requests` runs on this long past its pause.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_extension: Option<Duration>,
    /// What a step deadline does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_step_deadline: Option<OnDeadline>,
    /// A blue-green preview waits this long for `promote`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<Duration>,
    /// In-flight requests may finish for this long before instances are stopped anyway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain: Option<Duration>,
}

impl Deadlines {
    pub fn is_empty(&self) -> bool {
        *self == Deadlines::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDeadline {
    Abort,
    Pause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    Canary,
    BlueGreen,
    Recreate,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutStep {
    pub weight: Weight,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause: Option<Duration>,
}

/// Bounds on live traffic that a new version must stay within.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Analysis {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<Percent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_latency_p95: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_latency_p99: Option<Duration>,
    pub min_requests: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reload {
    /// Config changes restart instances (rolling).
    Restart,
    /// Config changes send SIGHUP.
    Signal,
}

/// When an instance that exited is started again; written as compose and Docker write it
/// (`always`, `on-failure`, `on-failure:N`, `never`), so an imported file keeps its meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Whatever the exit status. An instance an operator stopped stays stopped (compose's
    /// `unless-stopped`: wharf has no daemon restart that would bring it back).
    Always,
    /// Only after a failed exit; with `max_retries`, at most that many times (`on-failure:N`),
    /// then the instance stays exited.
    OnFailure { max_retries: Option<u32> },
    /// Never: a one-shot job runs once (compose's default, `restart: "no"`).
    Never,
}

impl std::fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestartPolicy::Always => f.write_str("always"),
            RestartPolicy::OnFailure { max_retries: None } => f.write_str("on-failure"),
            RestartPolicy::OnFailure {
                max_retries: Some(n),
            } => write!(f, "on-failure:{n}"),
            RestartPolicy::Never => f.write_str("never"),
        }
    }
}

/// Serialized as written in the manifest (`"on-failure:3"`), so `wharf render` round-trips.
impl Serialize for RestartPolicy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Backup {
    pub schedule: CronSchedule,
    pub retain: Retention,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drill: Option<DrillSchedule>,
}

/// How many backups to keep, grandfather-father-son style.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Retention {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hourly: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weekly: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub yearly: Option<u32>,
}

/// How often a restore drill proves the backups restorable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum DrillSchedule {
    Every(DrillPeriod),
    Cron(CronSchedule),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DrillPeriod {
    Daily,
    Weekly,
    Monthly,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SmokeCheck {
    pub name: String,
    #[serde(flatten)]
    pub check: SmokeKind,
}

// Built once per load, like `ProbeCheck`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmokeKind {
    Http(HttpCheck),
    Exec(ExecCheck),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub name: String,
    pub webhook: Webhook,
    #[serde(skip_serializing_if = "AlertThresholds::is_empty")]
    pub thresholds: AlertThresholds,
    /// How the receiver ranks the page (PagerDuty's four levels); `critical` by default.
    pub severity: AlertSeverity,
    /// The services it watches; empty: every service.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// Attached to every page (routing, ownership).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Each page it opens also declares an incident of this severity (`incident: sev2`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<IncidentLevel>,
    /// The runbook its pages offer (named on each page), or run when `auto`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runbook: Option<AlertRunbook>,
}

/// A runbook attached to an alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRunbook {
    pub name: String,
    /// Run it when a page is sent (otherwise only offered on the page).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub auto: bool,
    /// Its parameters (checked against their types when it runs).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub params: std::collections::BTreeMap<String, String>,
    /// A `service` parameter given the page's root cause.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_param: Option<String>,
}

/// An incident's severity, `sev1` (all hands) to `sev4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentLevel {
    Sev1,
    Sev2,
    Sev3,
    Sev4,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertSeverity {
    Critical,
    Error,
    Warning,
    Info,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Webhook {
    /// Where notices go; `${secret:NAME}` when it carries a key.
    pub url: String,
    pub format: WebhookFormat,
    /// PagerDuty's integration key, always `${secret:NAME}`; without it, the `routing_key`
    /// query parameter of the URL (which is then a secret) is used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    Generic,
    Slack,
    Pagerduty,
}

/// When an alert fires: a service not serving for `down_for` (1 minute when absent), or its
/// error rate or p95 latency through the proxy over the last minute above a threshold for as
/// long.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct AlertThresholds {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<Percent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p95: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p99: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub down_for: Option<Duration>,
    /// Page on a degraded service too (serving, fewer instances ready than wanted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded: Option<bool>,
}

impl AlertThresholds {
    pub fn is_empty(&self) -> bool {
        self.error_rate.is_none()
            && self.latency_p95.is_none()
            && self.latency_p99.is_none()
            && self.down_for.is_none()
            && self.degraded.is_none()
    }
}

/// A runbook: typed steps an operator (or later an alert) runs as one audited run, with typed
/// parameters, a rate limit and a blast-radius cap. Fields that name things (`service`,
/// `version`, a command's words, a URL) may hold `${param:NAME}`, filled at run time with the
/// run's typed value; every reference names a declared parameter (checked at load).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Runbook {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub params: IndexMap<String, RunbookParam>,
    /// At most `runs` runs started within any `per`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// At most this many distinct services / instances touched by one run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blast_radius: Option<BlastRadius>,
    pub steps: Vec<RunbookStep>,
}

/// A declared parameter: its type, an optional default (already checked against the type).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunbookParam {
    #[serde(rename = "type")]
    pub kind: ParamType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Int,
    Bool,
    Duration,
    /// The name of a service of the stack.
    Service,
}

impl ParamType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Int => "int",
            ParamType::Bool => "bool",
            ParamType::Duration => "duration",
            ParamType::Service => "service",
        }
    }

    /// Checks `text` against the type, giving the canonical text (`1m30s`, `true`, `42`) or
    /// why it does not fit. A `service` is checked against the stack by the caller.
    pub fn check(self, text: &str) -> Result<String, String> {
        match self {
            ParamType::String | ParamType::Service => Ok(text.to_owned()),
            ParamType::Int => text
                .trim()
                .parse::<i64>()
                .map(|n| n.to_string())
                .map_err(|_| format!("`{text}` is not an integer")),
            ParamType::Bool => match text.trim() {
                "true" | "True" | "TRUE" => Ok("true".to_owned()),
                "false" | "False" | "FALSE" => Ok("false".to_owned()),
                _ => Err(format!("`{text}` is not `true` or `false`")),
            },
            ParamType::Duration => text
                .parse::<Duration>()
                .map(|d| d.to_string())
                .map_err(|e| format!("`{text}` is not a duration ({})", e.0)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateLimit {
    pub runs: u32,
    pub per: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct BlastRadius {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
}

/// One step: its action, an optional name and an optional bound on how long it may take.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunbookStep {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    #[serde(flatten)]
    pub action: StepAction,
}

/// What a step does. Each acts through the same paths as the API's commands.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepAction {
    /// A rolling restart; done when no old instance is left and the service serves.
    Restart { service: String },
    /// Roll back to the previous version; done when the rollout ends.
    Rollback { service: String },
    /// Deploy a version; done when the rollout completes.
    Deploy { service: String, version: String },
    /// Restore a datastore in place (its dependents held meanwhile); the latest snapshot when
    /// none is named.
    Restore {
        service: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        snapshot: Option<String>,
    },
    /// A restore drill into a sandbox.
    Drill { service: String },
    /// Rotate a secret that has no hook: a new generated value, then a reload.
    #[serde(rename = "secret.rotate")]
    SecretRotate { secret: String },
    /// A command run in the manifest's directory in its own process group, killed at its
    /// timeout; a non-zero exit fails the step.
    Exec {
        command: Vec<String>,
        timeout: Duration,
    },
    /// An HTTP request whose answer must have one of the statuses (any 2xx when empty).
    Http {
        url: String,
        method: String,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        expect_status: Vec<u16>,
    },
    /// Wait until a service reaches a health state, failing past `within`.
    WaitFor {
        service: String,
        state: WaitState,
        within: Duration,
    },
    /// Pause the run until a person approves it (`wharf runbook approve RUN --reason …`).
    Approve { prompt: String },
}

impl StepAction {
    /// The action's key in the manifest (`wait_for`, `secret.rotate`).
    pub fn key(&self) -> &'static str {
        match self {
            StepAction::Restart { .. } => "restart",
            StepAction::Rollback { .. } => "rollback",
            StepAction::Deploy { .. } => "deploy",
            StepAction::Restore { .. } => "restore",
            StepAction::Drill { .. } => "drill",
            StepAction::SecretRotate { .. } => "secret.rotate",
            StepAction::Exec { .. } => "exec",
            StepAction::Http { .. } => "http",
            StepAction::WaitFor { .. } => "wait_for",
            StepAction::Approve { .. } => "approve",
        }
    }
}

/// The health a `wait_for` step waits for, on the control plane's own health model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WaitState {
    /// The service's state is `running`: enough instances run and are ready.
    Running,
    /// The service serves its dependents: running, degraded or external and passing.
    Ready,
    /// The service is `degraded`.
    Degraded,
    /// The service is `down` (its instances fail their ready probe).
    Down,
    /// The service is `stopped`.
    Stopped,
}
