//! The importer on the shapes of ten-plus real compose projects (`tests/fixtures/README.md`):
//! the output validates with the manifest crate, every dropped service key is warned at a line
//! of the service that uses it (templates included), no secret value appears anywhere in what
//! the import returns, datastore images become their `kind`, and restart keeps compose's
//! meaning.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use wharf_compose::{Imported, WarningKind};
use wharf_manifest::model::{DatastoreKind, RestartPolicy};
use wharf_manifest::yaml::{self, Node, NodeKind};
use wharf_manifest::{EnvironmentChoice, Span, ValidStack};

/// Every fixture, with its compose file's name.
const FIXTURES: &[(&str, &str)] = &[
    ("sentry-style", "docker-compose.yml"),
    ("supabase", "docker-compose.yml"),
    ("immich", "docker-compose.yml"),
    ("mastodon", "docker-compose.yml"),
    ("gitea", "docker-compose.yml"),
    ("nextcloud", "docker-compose.yml"),
    ("airflow", "docker-compose.yaml"),
    ("plausible", "docker-compose.yml"),
    ("voting-app", "docker-compose.yml"),
    ("wordpress", "docker-compose.yml"),
    ("django-celery", "docker-compose.yml"),
    ("node-mongo", "docker-compose.yml"),
];

/// Service keys the importer carries into wharf.yaml (or folds into another key); any other
/// key of a service must come back as a warning naming it.
const CARRIED: &[&str] = &[
    "image",
    "build",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "depends_on",
    "healthcheck",
    "deploy",
    "restart",
    "scale",
    "volumes",
    "pull_policy",
    // Carried onto `image:` services (and warned on local processes), `options.rs`.
    "user",
    "working_dir",
    "ulimits",
    "shm_size",
    "cap_add",
    "cap_drop",
    "read_only",
    "tmpfs",
    "networks",
    "stop_grace_period",
    "stop_signal",
];

struct Fixture {
    name: &'static str,
    text: String,
    imported: Imported,
    stack: ValidStack,
}

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The `.env` beside the compose file, as compose and `wharf validate` read it.
fn dotenv(dir: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(dir.join(".env")).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn import(name: &'static str, file: &str) -> Fixture {
    let dir = dir(name);
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).expect("fixture exists");
    let read = |p: &str| std::fs::read_to_string(dir.join(p));
    let imported = wharf_compose::convert(&text, &path, &read)
        .unwrap_or_else(|err| panic!("{name}: {err}: {:?}", err.diagnostics()));
    let env = dotenv(&dir);
    let loaded = wharf_manifest::load(&imported.yaml, EnvironmentChoice::Default, &|var: &str| {
        env.get(var).cloned()
    });
    assert!(
        !loaded.has_errors(),
        "{name} does not validate:\n{}\n{:#?}",
        imported.yaml,
        loaded.diagnostics
    );
    let stack = loaded.stack.expect("a valid stack");
    Fixture {
        name,
        text,
        imported,
        stack,
    }
}

fn all() -> Vec<Fixture> {
    FIXTURES
        .iter()
        .map(|(name, file)| import(name, file))
        .collect()
}

fn one(name: &str) -> Fixture {
    let (name, file) = FIXTURES
        .iter()
        .find(|(n, _)| *n == name)
        .expect("a fixture");
    import(name, file)
}

/// Each compose service's mapping, parsed independently of the importer (merges resolved).
fn services(text: &str) -> Vec<(String, Span, Node)> {
    let (root, _) = yaml::parse(text);
    let root = root.expect("yaml");
    let NodeKind::Map(entries) = &root.get("services").expect("services").kind else {
        panic!("services mapping")
    };
    entries
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_owned(), k.span, v.clone()))
        .collect()
}

fn keys(node: &Node) -> Vec<&str> {
    match &node.kind {
        NodeKind::Map(entries) => entries.iter().filter_map(|(k, _)| k.as_str()).collect(),
        _ => Vec::new(),
    }
}

/// The lines of each service: from its name up to the next service's name (the last one to
/// the end of the file, which may hold top-level keys, but no service's).
fn service_lines(text: &str) -> BTreeMap<String, std::ops::Range<usize>> {
    let services = services(text);
    let end = text.lines().count() + 1;
    services
        .iter()
        .enumerate()
        .map(|(i, (name, span, _))| {
            let next = services.get(i + 1).map_or(end, |(_, s, _)| s.line);
            (name.clone(), span.line..next)
        })
        .collect()
}

#[test]
fn every_fixture_imports_into_a_manifest_the_manifest_crate_accepts() {
    let fixtures = all();
    assert!(fixtures.len() >= 10);
    for fixture in &fixtures {
        assert!(!fixture.stack.services.is_empty(), "{}", fixture.name);
    }
}

/// Regression: keys a service took from an `x-*` template (`<<: *defaults`) were warned once,
/// at the template's line; every service must get its own warning inside its own lines.
#[test]
fn every_dropped_service_key_is_warned_at_a_line_of_that_service() {
    for fixture in all() {
        let all_lines = service_lines(&fixture.text);
        for (service, _, node) in services(&fixture.text) {
            let lines = all_lines[&service].clone();
            for key in keys(&node) {
                if CARRIED.contains(&key) || key.starts_with("x-") {
                    continue;
                }
                let path = format!("services.{service}.{key}");
                let warning = fixture
                    .imported
                    .warnings
                    .iter()
                    .find(|w| w.key == path)
                    .unwrap_or_else(|| {
                        panic!("{}: `{path}` dropped without a warning", fixture.name)
                    });
                assert!(
                    lines.contains(&warning.diagnostic.span.line),
                    "{}: `{path}` warned at line {}, outside the service's lines {lines:?}",
                    fixture.name,
                    warning.diagnostic.span.line
                );
            }
            // Every warning about the service, whatever its key, points into the service.
            let prefix = format!("services.{service}.");
            for warning in &fixture.imported.warnings {
                if warning.key.starts_with(&prefix) || warning.key == format!("services.{service}")
                {
                    assert!(
                        lines.contains(&warning.diagnostic.span.line),
                        "{}: {} at line {}, outside {lines:?}: {}",
                        fixture.name,
                        warning.key,
                        warning.diagnostic.span.line,
                        warning.diagnostic.message
                    );
                }
            }
        }
    }
}

/// Values the fixtures hold in clear (in the compose file or its env files): none may appear
/// anywhere in what the import returns — the wharf.yaml, a warning, a secret's description.
const SECRET_VALUES: &[(&str, &[&str])] = &[
    (
        "supabase",
        &[
            "supabase-pg-pw-3Vq8",
            "supabase-jwt-secret-9Xk2",
            "supabase-anon-key-J7w1",
            "supabaserealtime",
        ],
    ),
    ("immich", &["immichDbPw5Kd81"]),
    (
        "mastodon",
        &[
            "mastodonDbPass4Gh2",
            "mastodon-secret-key-base-0f9e8d7c6b5a",
            "mastodon-otp-secret-1a2b3c4d5e6f",
            "mastodon-vapid-private-Yt5Rk",
            "mastodon-ar-deterministic-Kq3",
            "mastodon-ar-salt-Pz8",
            "mastodon-ar-primary-Vb6",
            "mastodon-smtp-password-Ww2",
            "AKIAMASTODONEXAMPLE7",
            "mastodon-aws-secret-Nn1",
        ],
    ),
    ("gitea", &["giteaDbPw2Tz7", "giteaRootPw9Lm4"]),
    ("nextcloud", &["nextcloudRootPw8Hs3", "nextcloudDbPw6Qa1"]),
    ("airflow", &["airflowPgPw4Rt", "airflowWebPw7Jc"]),
    (
        "plausible",
        &[
            "plausiblePgPw1Xv",
            "plausible-secret-key-base-Ee4Uu9Ii",
            "plausible-totp-vault-key-Oo3Pp",
        ],
    ),
];

#[test]
fn no_secret_value_appears_anywhere_in_the_import() {
    for (name, values) in SECRET_VALUES {
        let fixture = one(name);
        // What the CLI prints: the wharf.yaml, the rendered warnings (each with its compose
        // source line), the secrets to store.
        let warnings: Vec<_> = fixture
            .imported
            .warnings
            .iter()
            .map(|w| w.diagnostic.clone())
            .collect();
        let rendered = wharf_manifest::diagnostic::render(
            &warnings,
            "docker-compose.yml",
            &fixture.text,
            false,
        );
        let everything = format!("{:?}\n{rendered}", fixture.imported);
        for value in *values {
            assert!(
                !everything.contains(value),
                "{name}: `{value}` is in the import:\n{}",
                fixture.imported.yaml
            );
        }
        assert!(
            !fixture.imported.secrets.is_empty(),
            "{name}: its credentials are secrets"
        );
        for secret in &fixture.imported.secrets {
            let declared = &fixture.stack.secrets;
            assert!(
                declared.contains_key(&secret.name),
                "{name}: {} declared",
                secret.name
            );
            assert!(
                fixture
                    .imported
                    .yaml
                    .contains(&format!("${{secret:{}}}", secret.name)),
                "{name}: {} used",
                secret.name
            );
            assert!(
                fixture
                    .imported
                    .yaml
                    .contains(&format!("#   wharf secret set {}", secret.name)),
                "{name}: the header says how to store {}",
                secret.name
            );
        }
    }
}

fn secret_names(fixture: &Fixture) -> Vec<&str> {
    fixture
        .imported
        .secrets
        .iter()
        .map(|s| s.name.as_str())
        .collect()
}

fn env<'a>(fixture: &'a Fixture, service: &str, var: &str) -> &'a str {
    &fixture.stack.services[service].env[var]
}

#[test]
fn one_value_is_one_secret_wherever_compose_repeats_it() {
    let supabase = one("supabase");
    assert_eq!(
        secret_names(&supabase),
        [
            "POSTGRES_PASSWORD",
            "ANON_KEY",
            "SERVICE_ROLE_KEY",
            "JWT_SECRET",
            "LOGFLARE_PRIVATE_ACCESS_TOKEN",
            "DASHBOARD_PASSWORD",
            "SMTP_PASS",
            "DB_ENC_KEY",
            "SECRET_KEY_BASE",
            "LOGFLARE_PUBLIC_ACCESS_TOKEN",
            "VAULT_ENC_KEY",
        ]
    );
    assert_eq!(
        env(&supabase, "auth", "GOTRUE_DB_DATABASE_URL"),
        "postgres://supabase_auth_admin:${secret:POSTGRES_PASSWORD}@db:5432/postgres",
        "only the password of a URL becomes a secret; the rest is interpolated from .env"
    );
    assert_eq!(
        env(&supabase, "realtime", "DB_PASSWORD"),
        "${secret:POSTGRES_PASSWORD}"
    );
    assert!(
        supabase
            .imported
            .yaml
            .contains("OPENAI_API_KEY: ${OPENAI_API_KEY:-}"),
        "an optional, empty-by-default host variable is no secret to set before `up`"
    );
    let postgres = &supabase.imported.secrets[0];
    assert!(postgres.sources.len() > 5, "{postgres:?}");

    // Immich: the `.env` is both the env_file and where `${DB_PASSWORD}` comes from.
    let immich = one("immich");
    assert_eq!(secret_names(&immich), ["DB_PASSWORD"]);
    assert_eq!(
        env(&immich, "database", "POSTGRES_PASSWORD"),
        "${secret:DB_PASSWORD}"
    );
    assert_eq!(
        env(&immich, "immich-server", "DB_PASSWORD"),
        "${secret:DB_PASSWORD}"
    );
    assert_eq!(env(&immich, "immich-server", "DB_USERNAME"), "postgres");

    // Gitea: the same password under two names; the root password is another secret.
    let gitea = one("gitea");
    assert_eq!(
        secret_names(&gitea),
        ["GITEA__DATABASE__PASSWD", "MYSQL_ROOT_PASSWORD"]
    );
    assert_eq!(
        env(&gitea, "db", "MYSQL_PASSWORD"),
        "${secret:GITEA__DATABASE__PASSWD}"
    );

    // Airflow: the password inside SQLAlchemy URLs is the postgres service's password, and
    // a literal default of a host variable is not copied either.
    let airflow = one("airflow");
    assert_eq!(
        secret_names(&airflow),
        ["POSTGRES_PASSWORD", "_AIRFLOW_WWW_USER_PASSWORD"]
    );
    assert_eq!(
        env(
            &airflow,
            "airflow-scheduler",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"
        ),
        "postgresql+psycopg2://airflow:${secret:POSTGRES_PASSWORD}@postgres/airflow"
    );
    assert_eq!(
        env(&airflow, "airflow-worker", "AIRFLOW__CELERY__BROKER_URL"),
        "redis://:@redis:6379/0",
        "no password, nothing to hide"
    );

    let mastodon = one("mastodon");
    assert_eq!(
        secret_names(&mastodon),
        [
            "DB_PASS",
            "SECRET_KEY_BASE",
            "OTP_SECRET",
            "VAPID_PRIVATE_KEY",
            "ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY",
            "ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT",
            "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY",
            "SMTP_PASSWORD",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        ]
    );
    assert_eq!(
        env(&mastodon, "web", "VAPID_PUBLIC_KEY"),
        "BPublicVapidKeyIsMeantToBeShared",
        "a public key is configuration"
    );
    let description = mastodon.imported.secrets[0].origin();
    assert!(
        description
            .starts_with("the value of `DB_PASS` in .env.production (env_file of web, line 34)"),
        "{description}"
    );
}

#[test]
fn datastore_images_become_their_kind_with_the_image_kept() {
    let expected: &[(&str, &[(&str, DatastoreKind)])] = &[
        (
            "sentry-style",
            &[
                ("postgres", DatastoreKind::Postgres),
                ("redis", DatastoreKind::Redis),
            ],
        ),
        ("supabase", &[("db", DatastoreKind::Postgres)]),
        (
            "immich",
            &[
                ("database", DatastoreKind::Postgres),
                ("redis", DatastoreKind::Redis),
            ],
        ),
        (
            "mastodon",
            &[
                ("db", DatastoreKind::Postgres),
                ("redis", DatastoreKind::Redis),
            ],
        ),
        ("gitea", &[("db", DatastoreKind::Mariadb)]),
        (
            "nextcloud",
            &[
                ("db", DatastoreKind::Mariadb),
                ("redis", DatastoreKind::Redis),
            ],
        ),
        (
            "airflow",
            &[
                ("postgres", DatastoreKind::Postgres),
                ("redis", DatastoreKind::Redis),
            ],
        ),
        ("plausible", &[("plausible_db", DatastoreKind::Postgres)]),
        ("wordpress", &[("db", DatastoreKind::Mariadb)]),
    ];
    for (name, kinds) in expected {
        let fixture = one(name);
        let found: BTreeMap<&str, DatastoreKind> = fixture
            .stack
            .services
            .iter()
            .filter_map(|(s, service)| Some((s.as_str(), service.kind?)))
            .collect();
        let wanted: BTreeMap<&str, DatastoreKind> = kinds.iter().copied().collect();
        assert_eq!(found, wanted, "{name}");
        for service in wanted.keys() {
            assert!(
                fixture.stack.services[*service].image.is_some(),
                "{name}: {service} keeps its image"
            );
        }
    }
    let immich = one("immich");
    assert!(
        immich.stack.services["redis"]
            .image
            .as_deref()
            .unwrap()
            .starts_with("docker.io/valkey/valkey:8-bookworm@sha256:")
    );
    let gitea = one("gitea");
    let mysql = gitea
        .imported
        .warnings
        .iter()
        .find(|w| w.key == "services.db.image")
        .expect("MySQL as MariaDB is said");
    assert_eq!(mysql.kind, WarningKind::Changed);
}

fn restart(fixture: &Fixture, service: &str) -> RestartPolicy {
    fixture.stack.services[service].restart
}

#[test]
fn restart_keeps_composes_meaning_and_default() {
    let sentry = one("sentry-style");
    assert_eq!(
        restart(&sentry, "geoipupdate"),
        RestartPolicy::Never,
        "a one-shot job without `restart:` runs once, as in compose"
    );
    assert_eq!(
        restart(&sentry, "web"),
        RestartPolicy::Always,
        "unless-stopped"
    );
    let airflow = one("airflow");
    assert_eq!(restart(&airflow, "airflow-init"), RestartPolicy::Never);
    assert_eq!(restart(&airflow, "airflow-cli"), RestartPolicy::Never);
    assert_eq!(
        restart(&airflow, "airflow-webserver"),
        RestartPolicy::Always
    );
    let immich = one("immich");
    assert_eq!(restart(&immich, "database"), RestartPolicy::Always);
    for fixture in all() {
        assert!(
            !fixture.imported.yaml.contains("restarts"),
            "{}: the policy is on each service, not in a header notice",
            fixture.name
        );
        for (service, _, node) in services(&fixture.text) {
            if node.get("restart").is_none() && node.get("deploy").is_none() {
                let wharf = wharf_name(&service);
                assert_eq!(
                    restart(&fixture, &wharf),
                    RestartPolicy::Never,
                    "{}: {service} has no `restart:`",
                    fixture.name
                );
            }
        }
    }
}

fn wharf_name(compose: &str) -> String {
    compose.replace('.', "-")
}

/// Regression: `"$SENTRY_BIND:80/tcp"` became `port: $SENTRY_BIND` and the 80 vanished.
#[test]
fn every_published_port_is_kept_or_warned_and_the_container_side_is_said() {
    let sentry = one("sentry-style");
    assert!(sentry.imported.yaml.contains("port: $SENTRY_BIND\n"));
    assert_eq!(sentry.stack.services["nginx"].port, Some(9000));
    let container = |fixture: &Fixture, service: &str| {
        fixture.stack.services[service]
            .container
            .clone()
            .unwrap_or_default()
    };
    assert_eq!(container(&sentry, "nginx").container_port, Some(80));
    let nginx: Vec<&str> = sentry
        .imported
        .warnings
        .iter()
        .filter(|w| w.key == "services.nginx.ports")
        .map(|w| w.diagnostic.message.as_str())
        .collect();
    assert_eq!(
        nginx,
        [
            "`services.nginx.ports`: `$SENTRY_BIND` is carried as the public port; the variable must hold a port number only (no address)"
        ]
    );
    // Each published port of each fixture is carried (the service's `port`, or an entry of
    // its `ports`) or has its own warning: the ports on lines without one are no more than
    // those carried.
    for fixture in all() {
        for (service, _, node) in services(&fixture.text) {
            let Some(NodeKind::Seq(ports)) = node.get("ports").map(|p| &p.kind) else {
                continue;
            };
            let name = wharf_name(&service);
            let carried = usize::from(fixture.stack.services[&name].port.is_some())
                + container(&fixture, &name).ports.len();
            let warned: Vec<usize> = fixture
                .imported
                .warnings
                .iter()
                .filter(|w| w.key == format!("services.{service}.ports"))
                .map(|w| w.diagnostic.span.line)
                .collect();
            let silent = ports
                .iter()
                .filter(|p| !warned.contains(&p.span.line))
                .count();
            assert!(
                silent <= carried,
                "{}: {service} has {silent} ports without a warning and {carried} carried",
                fixture.name
            );
        }
    }
    let supabase = one("supabase");
    let kong: Vec<&str> = supabase
        .imported
        .warnings
        .iter()
        .filter(|w| w.key == "services.kong.ports")
        .map(|w| w.diagnostic.message.as_str())
        .collect();
    assert_eq!(
        kong,
        [
            "`services.kong.ports`: `${KONG_HTTP_PORT}` is carried as the public port; the variable must hold a port number only (no address)"
        ]
    );
    let kong = container(&supabase, "kong");
    assert_eq!(kong.container_port, Some(8000));
    assert_eq!(
        kong.ports.iter().map(|p| p.target).collect::<Vec<_>>(),
        [8443]
    );
}

/// The template case in detail. Django's `x-django` brings a `depends_on` on the one-shot
/// `migrate` with `service_completed_successfully` into three services: each gets its own
/// warning, at its own `<<:` line, labelled with the template's line. Airflow's
/// `x-airflow-common` brings `user` and `volumes` into seven services, both carried: each
/// service runs as the template's user (or its own) with the template's mounts, unwarned.
#[test]
fn template_keys_are_warned_once_per_service_at_its_own_line() {
    let django = one("django-celery");
    let text = &django.text;
    let line_of = |needle: &str, after: &str| -> usize {
        let start = text.find(after).expect(after);
        let at = start + text[start..].find(needle).expect(needle);
        text[..at].matches('\n').count() + 1
    };
    let waits: Vec<(String, usize)> = django
        .imported
        .warnings
        .iter()
        .filter(|w| w.key.ends_with(".depends_on.migrate.condition"))
        .map(|w| (w.key.clone(), w.diagnostic.span.line))
        .collect();
    let expected: Vec<(String, usize)> = ["django", "celeryworker", "celerybeat"]
        .iter()
        .map(|service| {
            (
                format!("services.{service}.depends_on.migrate.condition"),
                line_of("<<: *django\n", &format!("  {service}:\n")),
            )
        })
        .collect();
    assert_eq!(waits, expected);
    let template_line = line_of("condition: service_completed_successfully", "x-django");
    for warning in django
        .imported
        .warnings
        .iter()
        .filter(|w| w.key.ends_with(".depends_on.migrate.condition"))
    {
        assert_eq!(
            warning.diagnostic.label.as_deref(),
            Some(format!("set by the template on line {template_line}").as_str())
        );
    }

    let airflow = one("airflow");
    let services = [
        "airflow-webserver",
        "airflow-scheduler",
        "airflow-worker",
        "airflow-triggerer",
        "airflow-init",
        "airflow-cli",
        "flower",
    ];
    for service in services {
        let container = airflow.stack.services[service].container.as_ref().unwrap();
        let wanted = if service == "airflow-init" {
            "0:0"
        } else {
            "50000:0"
        };
        assert_eq!(container.options.user.as_deref(), Some(wanted), "{service}");
        // The template's mounts, or `airflow-init`'s own.
        let target = if service == "airflow-init" {
            "/sources"
        } else {
            "/opt/airflow/dags"
        };
        assert!(
            container.volumes.iter().any(|v| v.target == target),
            "{service}"
        );
    }
    let template_warnings: Vec<_> = airflow
        .imported
        .warnings
        .iter()
        .filter(|w| w.key.ends_with(".user") || w.key.ends_with(".volumes"))
        .map(|w| w.key.clone())
        .collect();
    assert!(template_warnings.is_empty(), "{template_warnings:?}");
}

#[test]
fn the_obsolete_version_key_is_accepted_silently() {
    for name in ["mastodon", "gitea"] {
        let fixture = one(name);
        assert!(fixture.text.starts_with("#") && fixture.text.contains("\nversion:"));
        assert!(
            fixture.imported.warnings.iter().all(|w| w.key != "version"),
            "{name}"
        );
    }
}
