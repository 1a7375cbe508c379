//! The route table: its JSON shape (an IPC boundary with the control plane) and validation
//! into a `ValidTable` the data plane can trust. Pure: no sockets, no files.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Header that pins a request to one version when that version exists in the table.
pub const PIN_HEADER: &str = "x-wharf-version";

/// The whole table, as the control plane PUTs it. Serialized on purpose: it is the wire type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTable {
    /// Monotonically increasing; an update with a revision not above the current one is refused.
    pub revision: u64,
    /// Services by name.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceRoute>,
}

/// One service: where it listens and how its traffic splits between versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceRoute {
    /// The public `address:port` the proxy listens on for this service.
    pub listen: String,
    /// How the port's connections are carried: HTTP (the default, so tables written before
    /// TCP ports existed read the same) or passed through at TCP level.
    #[serde(default, skip_serializing_if = "Mode::is_http")]
    pub mode: Mode,
    /// The versions and their weights.
    pub versions: Vec<VersionRoute>,
    /// Keeps a client on one version while the weights hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<Sticky>,
    /// How long in-flight requests to a removed instance or port may run on (default 30 s).
    #[serde(default = "default_drain_ms")]
    pub drain_timeout_ms: u64,
    /// Consecutive connection failures that eject an instance (default 3).
    #[serde(default = "default_eject_after")]
    pub eject_after: u32,
    /// How long an ejected instance is left out (default 10 s).
    #[serde(default = "default_cooldown_ms")]
    pub eject_cooldown_ms: u64,
    /// How long an upstream may take to start its answer, and one read or write of a body
    /// may wait, before the exchange is given up with a 504 (default 60 s, nginx's).
    #[serde(default = "default_upstream_timeout_ms")]
    pub upstream_timeout_ms: u64,
    /// How long a tunnel after a protocol switch (a WebSocket) may pass no byte either way
    /// before it is closed (default 1 h).
    #[serde(default = "default_tunnel_idle_ms")]
    pub tunnel_idle_timeout_ms: u64,
    /// How long one read of a request body from the client (then a 408), or over HTTP/1 one
    /// write of the response to it, may wait before the exchange is given up (default 60 s,
    /// nginx's `client_body_timeout` and `send_timeout`; h2 writes wait on the client's flow
    /// control instead). The client's side: kept apart from the upstream timeout so that a
    /// service with a short one does not cut off slow clients.
    #[serde(default = "default_client_timeout_ms")]
    pub client_timeout_ms: u64,
    /// How long a client has to send a whole request head, from the moment the connection
    /// waits for one (so an idle keep-alive connection, or one that never sends a byte, ends
    /// after it too; then a 408 if it had started); default 30 s.
    #[serde(default = "default_header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// Client connections open at once on this port, all clients together (default 10,000);
    /// past it a new one gets a 503 and is closed.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Client connections open at once on this port from one source address (default 1,000),
    /// so one client cannot take the whole budget.
    #[serde(default = "default_max_connections_per_client")]
    pub max_connections_per_client: u32,
}

/// How a port's connections are carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Parsed as HTTP: the version is chosen per request (weights, pin header, stickiness),
    /// and requests, statuses and latencies are counted.
    #[default]
    Http,
    /// Bytes passed through both ways: the version is chosen per connection by weight; a
    /// connection counts as one request (a 2xx once its upstream accepted it, a 5xx when no
    /// instance did), and its bytes are counted when it ends. The HTTP settings (timeouts
    /// of requests, stickiness) do not apply; drains and connection budgets do.
    Tcp,
}

impl Mode {
    fn is_http(&self) -> bool {
        *self == Mode::Http
    }
}

/// One version of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionRoute {
    /// The version name, e.g. `1.4.0`; what `X-Wharf-Version` names.
    pub name: String,
    /// Share of traffic in percent, 0 to 100.
    pub weight: u8,
    /// Upstream `address:port`s of this version's instances.
    #[serde(default)]
    pub instances: Vec<String>,
}

/// Where the stickiness key comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum Sticky {
    /// The value of this cookie.
    Cookie(String),
    /// The value of this request header.
    Header(String),
}

fn default_drain_ms() -> u64 {
    30_000
}
fn default_eject_after() -> u32 {
    3
}
fn default_cooldown_ms() -> u64 {
    10_000
}
/// The longest duration a route table may give (365 days): long enough to mean "never" for
/// any timeout, short enough that adding it to the clock cannot overflow.
pub const MAX_TIMEOUT_MS: u64 = 365 * 24 * 3600 * 1000;
/// The default of [`ServiceRoute::upstream_timeout_ms`].
pub const DEFAULT_UPSTREAM_TIMEOUT_MS: u64 = 60_000;
/// The default of [`ServiceRoute::tunnel_idle_timeout_ms`].
pub const DEFAULT_TUNNEL_IDLE_MS: u64 = 3_600_000;
fn default_upstream_timeout_ms() -> u64 {
    DEFAULT_UPSTREAM_TIMEOUT_MS
}
fn default_tunnel_idle_ms() -> u64 {
    DEFAULT_TUNNEL_IDLE_MS
}
/// The default of [`ServiceRoute::client_timeout_ms`].
pub const DEFAULT_CLIENT_TIMEOUT_MS: u64 = 60_000;
fn default_client_timeout_ms() -> u64 {
    DEFAULT_CLIENT_TIMEOUT_MS
}

/// The default of [`ServiceRoute::header_timeout_ms`].
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 30_000;
fn default_header_timeout_ms() -> u64 {
    DEFAULT_HEADER_TIMEOUT_MS
}

/// The default of [`ServiceRoute::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10_000;
fn default_max_connections() -> u32 {
    DEFAULT_MAX_CONNECTIONS
}

/// The default of [`ServiceRoute::max_connections_per_client`].
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: u32 = 1_000;
fn default_max_connections_per_client() -> u32 {
    DEFAULT_MAX_CONNECTIONS_PER_CLIENT
}

/// Why a table was refused. Each names the service, version or address at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The JSON did not decode.
    #[error("the route table is not valid JSON of the expected shape: {0}")]
    Json(String),
    /// Revision not above the current one.
    #[error("revision {offered} is not newer than the current revision {current}")]
    StaleRevision {
        /// The revision offered.
        offered: u64,
        /// The revision in force.
        current: u64,
    },
    /// A listen address did not parse.
    #[error("service `{service}`: listen address `{address}` is not ADDRESS:PORT")]
    BadListen {
        /// The service.
        service: String,
        /// The text given.
        address: String,
    },
    /// Two services share a listen address.
    #[error("services `{first}` and `{second}` both listen on {address}")]
    DuplicateListen {
        /// The earlier service.
        first: String,
        /// The later service.
        second: String,
        /// The shared address.
        address: SocketAddr,
    },
    /// An instance address did not parse.
    #[error("service `{service}` version `{version}`: instance `{address}` is not ADDRESS:PORT")]
    BadInstance {
        /// The service.
        service: String,
        /// The version.
        version: String,
        /// The text given.
        address: String,
    },
    /// A weight above 100.
    #[error("service `{service}` version `{version}`: weight {weight} is above 100")]
    WeightTooLarge {
        /// The service.
        service: String,
        /// The version.
        version: String,
        /// The weight given.
        weight: u8,
    },
    /// Weight on a version that has nowhere to send it.
    #[error("service `{service}` version `{version}`: weight {weight} but no instances")]
    WeightWithoutInstances {
        /// The service.
        service: String,
        /// The version.
        version: String,
        /// The weight given.
        weight: u8,
    },
    /// Weights over versions with instances do not add to 100.
    #[error("service `{service}`: weights of versions with instances sum to {sum}, not 100")]
    WeightSum {
        /// The service.
        service: String,
        /// The sum found.
        sum: u32,
    },
    /// The same version twice.
    #[error("service `{service}`: version `{version}` appears twice")]
    DuplicateVersion {
        /// The service.
        service: String,
        /// The version.
        version: String,
    },
    /// An empty name.
    #[error("service `{service}`: {what} must not be empty")]
    Empty {
        /// The service.
        service: String,
        /// What was empty.
        what: &'static str,
    },
    /// A timeout of zero, which would fail every request.
    #[error("service `{service}`: {field} must be above 0")]
    ZeroTimeout {
        /// The service.
        service: String,
        /// The field.
        field: &'static str,
    },
    /// A duration past [`MAX_TIMEOUT_MS`], which the proxy's clock arithmetic cannot hold.
    #[error("service `{service}`: {field} must be at most {MAX_TIMEOUT_MS} (365 days)")]
    TimeoutTooLong {
        /// The service.
        service: String,
        /// The field.
        field: &'static str,
    },
    /// Stickiness on a TCP port, which has no cookie or header to read it from.
    #[error("service `{service}`: a TCP port cannot be sticky (no cookie or header to read)")]
    StickyTcp {
        /// The service.
        service: String,
    },
    /// A port the proxy could not bind.
    #[error("service `{service}`: cannot listen on {address}: {reason}")]
    Bind {
        /// The service.
        service: String,
        /// The address.
        address: SocketAddr,
        /// The operating system's reason.
        reason: String,
    },
}

impl TableError {
    /// A stable code for the admin API.
    pub fn code(&self) -> &'static str {
        match self {
            TableError::Json(_) => "bad_json",
            TableError::StaleRevision { .. } => "stale_revision",
            TableError::Bind { .. } => "bind_failed",
            _ => "invalid_table",
        }
    }
}

/// A table that passed validation; the only kind the proxy applies.
#[derive(Debug, Clone)]
pub struct ValidTable {
    table: RouteTable,
    /// Per service, parsed addresses, in the table's order.
    pub(crate) services: Vec<ValidService>,
}

/// A validated service.
#[derive(Debug, Clone)]
pub(crate) struct ValidService {
    pub name: String,
    pub listen: SocketAddr,
    pub versions: Vec<(String, u8, Vec<SocketAddr>)>,
}

impl ValidTable {
    /// The table as given.
    pub fn table(&self) -> &RouteTable {
        &self.table
    }

    /// The revision.
    pub fn revision(&self) -> u64 {
        self.table.revision
    }
}

/// Decode JSON and validate it.
pub fn parse(json: &[u8]) -> Result<ValidTable, TableError> {
    let table: RouteTable =
        serde_json::from_slice(json).map_err(|err| TableError::Json(err.to_string()))?;
    validate(table)
}

/// Check every rule; the first problem found is returned.
pub fn validate(table: RouteTable) -> Result<ValidTable, TableError> {
    let mut listens: HashMap<SocketAddr, &str> = HashMap::new();
    let mut services = Vec::with_capacity(table.services.len());
    for (name, service) in &table.services {
        let valid = validate_service(name, service)?;
        if let Some(first) = listens.insert(valid.listen, name) {
            return Err(TableError::DuplicateListen {
                first: first.to_owned(),
                second: name.clone(),
                address: valid.listen,
            });
        }
        services.push(valid);
    }
    Ok(ValidTable { table, services })
}

fn validate_service(name: &str, service: &ServiceRoute) -> Result<ValidService, TableError> {
    let empty = |what| TableError::Empty {
        service: name.to_owned(),
        what,
    };
    if name.is_empty() {
        return Err(empty("the service name"));
    }
    if service.mode == Mode::Tcp && service.sticky.is_some() {
        return Err(TableError::StickyTcp {
            service: name.to_owned(),
        });
    }
    if let Some(Sticky::Cookie(key) | Sticky::Header(key)) = &service.sticky
        && key.is_empty()
    {
        return Err(empty("the sticky cookie or header name"));
    }
    for (field, value, may_be_zero) in [
        ("upstream_timeout_ms", service.upstream_timeout_ms, false),
        ("client_timeout_ms", service.client_timeout_ms, false),
        ("header_timeout_ms", service.header_timeout_ms, false),
        (
            "tunnel_idle_timeout_ms",
            service.tunnel_idle_timeout_ms,
            false,
        ),
        ("drain_timeout_ms", service.drain_timeout_ms, true),
        ("eject_cooldown_ms", service.eject_cooldown_ms, true),
    ] {
        if value == 0 && !may_be_zero {
            return Err(TableError::ZeroTimeout {
                service: name.to_owned(),
                field,
            });
        }
        if value > MAX_TIMEOUT_MS {
            return Err(TableError::TimeoutTooLong {
                service: name.to_owned(),
                field,
            });
        }
    }
    for (field, value) in [
        ("max_connections", service.max_connections),
        (
            "max_connections_per_client",
            service.max_connections_per_client,
        ),
    ] {
        if value == 0 {
            return Err(TableError::ZeroTimeout {
                service: name.to_owned(),
                field,
            });
        }
    }
    let listen = service.listen.parse().map_err(|_| TableError::BadListen {
        service: name.to_owned(),
        address: service.listen.clone(),
    })?;
    let mut seen = HashSet::new();
    let mut sum = 0u32;
    let mut versions = Vec::with_capacity(service.versions.len());
    for version in &service.versions {
        if version.name.is_empty() {
            return Err(empty("a version name"));
        }
        if !seen.insert(version.name.as_str()) {
            return Err(TableError::DuplicateVersion {
                service: name.to_owned(),
                version: version.name.clone(),
            });
        }
        let instances = validate_version(name, version)?;
        if !instances.is_empty() {
            sum += u32::from(version.weight);
        }
        versions.push((version.name.clone(), version.weight, instances));
    }
    let any_instances = versions.iter().any(|(_, _, i)| !i.is_empty());
    if any_instances && sum != 100 {
        return Err(TableError::WeightSum {
            service: name.to_owned(),
            sum,
        });
    }
    Ok(ValidService {
        name: name.to_owned(),
        listen,
        versions,
    })
}

fn validate_version(service: &str, version: &VersionRoute) -> Result<Vec<SocketAddr>, TableError> {
    if version.weight > 100 {
        return Err(TableError::WeightTooLarge {
            service: service.to_owned(),
            version: version.name.clone(),
            weight: version.weight,
        });
    }
    if version.weight > 0 && version.instances.is_empty() {
        return Err(TableError::WeightWithoutInstances {
            service: service.to_owned(),
            version: version.name.clone(),
            weight: version.weight,
        });
    }
    version
        .instances
        .iter()
        .map(|text| {
            text.parse().map_err(|_| TableError::BadInstance {
                service: service.to_owned(),
                version: version.name.clone(),
                address: text.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(json: &str) -> Result<ValidTable, TableError> {
        parse(json.as_bytes())
    }

    #[test]
    fn weights_must_sum_to_100_over_versions_with_instances() {
        let err = table(
            r#"{"revision":1,"services":{"api":{"listen":"127.0.0.1:1","versions":[
            {"name":"a","weight":90,"instances":["127.0.0.1:2"]},
            {"name":"b","weight":5,"instances":["127.0.0.1:3"]}]}}}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "service `api`: weights of versions with instances sum to 95, not 100"
        );
    }

    #[test]
    fn each_rule_names_what_is_wrong() {
        let cases = [
            (
                r#"{"revision":1,"services":{"api":{"listen":"nope","versions":[]}}}"#,
                "service `api`: listen address `nope` is not ADDRESS:PORT",
            ),
            (
                r#"{"revision":1,"services":{"api":{"listen":"127.0.0.1:1","versions":[{"name":"a","weight":100,"instances":["x:1"]}]}}}"#,
                "service `api` version `a`: instance `x:1` is not ADDRESS:PORT",
            ),
            (
                r#"{"revision":1,"services":{"api":{"listen":"127.0.0.1:1","versions":[{"name":"a","weight":100}]}}}"#,
                "service `api` version `a`: weight 100 but no instances",
            ),
            (
                r#"{"revision":1,"services":{"a":{"listen":"127.0.0.1:1","versions":[]},"b":{"listen":"127.0.0.1:1","versions":[]}}}"#,
                "services `a` and `b` both listen on 127.0.0.1:1",
            ),
            (
                r#"{"revision":1,"services":{"api":{"listen":"127.0.0.1:1","versions":[{"name":"a","weight":0},{"name":"a","weight":0}]}}}"#,
                "service `api`: version `a` appears twice",
            ),
            (
                r#"{"revision":1,"services":{"api":{"listen":"127.0.0.1:1","versions":[{"name":"a","weight":101,"instances":["127.0.0.1:2"]}]}}}"#,
                "service `api` version `a`: weight 101 is above 100",
            ),
            (
                r#"{"revision":1,"services":{"api":{"listen":"127.0.0.1:1","versions":[],"upstream_timeout_ms":0}}}"#,
                "service `api`: upstream_timeout_ms must be above 0",
            ),
            (
                r#"{"revision":1,"services":{"api":{"listen":"127.0.0.1:1","versions":[],"tunnel_idle_timeout_ms":0}}}"#,
                "service `api`: tunnel_idle_timeout_ms must be above 0",
            ),
            (
                r#"{"revision":1,"services":{"api":{"listen":"127.0.0.1:1","versions":[],"drain_timeout_ms":18446744073709551615}}}"#,
                "service `api`: drain_timeout_ms must be at most 31536000000 (365 days)",
            ),
            (
                r#"{"revision":1,"services":{"api":{"listen":"127.0.0.1:1","versions":[],"tunnel_idle_timeout_ms":31536000001}}}"#,
                "service `api`: tunnel_idle_timeout_ms must be at most 31536000000 (365 days)",
            ),
        ];
        for (json, message) in cases {
            assert_eq!(table(json).unwrap_err().to_string(), message, "{json}");
        }
    }

    #[test]
    fn a_table_without_mode_is_http_and_tcp_round_trips() {
        let old =
            table(r#"{"revision":1,"services":{"api":{"listen":"127.0.0.1:1","versions":[]}}}"#)
                .unwrap();
        assert_eq!(old.table().services["api"].mode, Mode::Http);
        assert!(!serde_json::to_string(old.table()).unwrap().contains("mode"));
        let tcp = table(r#"{"revision":1,"services":{"db":{"listen":"127.0.0.1:1","mode":"tcp","versions":[]}}}"#)
            .unwrap();
        assert_eq!(tcp.table().services["db"].mode, Mode::Tcp);
        assert!(
            serde_json::to_string(tcp.table())
                .unwrap()
                .contains(r#""mode":"tcp""#)
        );
        let sticky = table(r#"{"revision":1,"services":{"db":{"listen":"127.0.0.1:1","mode":"tcp","versions":[],"sticky":{"cookie":"s"}}}}"#)
            .unwrap_err();
        assert_eq!(
            sticky.to_string(),
            "service `db`: a TCP port cannot be sticky (no cookie or header to read)"
        );
    }

    #[test]
    fn a_service_without_instances_is_valid() {
        let valid = table(
            r#"{"revision":4,"services":{"api":{"listen":"127.0.0.1:1","versions":[{"name":"a","weight":0}],"sticky":{"cookie":"s"}}}}"#,
        )
        .unwrap();
        assert_eq!(valid.revision(), 4);
        assert_eq!(
            valid.table().services["api"].sticky,
            Some(Sticky::Cookie("s".into()))
        );
    }
}
