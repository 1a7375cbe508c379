//! Well-known database images → the datastore `kind` wharf backs up and probes.
//!
//! Compose knows only images; wharf treats a PostgreSQL, MariaDB or Redis service as a datastore
//! (backups with the engine's own tool, drills, the `postgres` / `redis` probes). The image is
//! recognised by its repository's last path component, whatever the registry, namespace, tag or
//! digest: `docker.io/library/postgres:16-alpine`, `bitnami/redis`, `ghcr.io/x/postgres@sha256:…`.

/// What an image is, as far as wharf's datastore kinds go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Engine {
    /// The manifest's `kind:` value.
    pub kind: &'static str,
    /// The engine's own name when it differs from the kind (MySQL backed up as MariaDB).
    pub served_as: Option<&'static str>,
}

/// The datastore an image runs, if it is one wharf knows.
pub(crate) fn engine(image: &str) -> Option<Engine> {
    let repository = repository(image);
    let kind = |kind| Engine {
        kind,
        served_as: None,
    };
    match repository {
        "postgres" | "postgresql" | "postgis" | "pgvector" | "timescaledb" | "timescaledb-ha" => {
            Some(kind("postgres"))
        }
        "mariadb" => Some(kind("mariadb")),
        "mysql" | "percona-server" => Some(Engine {
            kind: "mariadb",
            served_as: Some("MySQL"),
        }),
        "redis" | "redis-stack-server" => Some(kind("redis")),
        "valkey" | "keydb" => Some(Engine {
            kind: "redis",
            served_as: Some(if repository == "valkey" {
                "Valkey"
            } else {
                "KeyDB"
            }),
        }),
        _ => None,
    }
}

/// The last path component of an image reference, without tag or digest, lowercased:
/// `docker.io/library/postgres:16-alpine@sha256:…` → `postgres`.
fn repository(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_by_repository_whatever_the_registry_tag_or_digest() {
        let kind = |image: &str| engine(image).map(|e| e.kind);
        assert_eq!(kind("postgres"), Some("postgres"));
        assert_eq!(
            kind("docker.io/library/postgres:16-alpine"),
            Some("postgres")
        );
        assert_eq!(kind("bitnami/postgresql:16"), Some("postgres"));
        assert_eq!(
            kind("ghcr.io/immich-app/postgres:14-vectorchord0.4.3@sha256:0123abcd"),
            Some("postgres")
        );
        assert_eq!(kind("localhost:5000/postgres:16"), Some("postgres"));
        assert_eq!(kind("mariadb:10.11"), Some("mariadb"));
        assert_eq!(kind("mysql:8"), Some("mariadb"));
        assert_eq!(kind("bitnami/redis"), Some("redis"));
        assert_eq!(kind("redis:6.2.14-alpine"), Some("redis"));
        assert_eq!(
            kind("docker.io/valkey/valkey:8-bookworm@sha256:ff"),
            Some("redis")
        );
        assert_eq!(kind("nginx:1.25"), None);
        assert_eq!(kind("postgres-exporter"), None);
        assert_eq!(kind("registry:5000/redisinsight"), None);
        assert_eq!(engine("mysql:8").unwrap().served_as, Some("MySQL"));
    }
}
