//! Real-world-style compose files under `tests/fixtures/`: each imports, validates with the
//! manifest crate, keeps its key fields, and warns about exactly the keys it could not carry.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use wharf_compose::{Imported, WarningKind};
use wharf_manifest::model::{
    DatastoreKind, DependencyCondition, ProbeCheck, RestartPolicy, Service,
};
use wharf_manifest::{EnvironmentChoice, ValidStack};

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Imports `tests/fixtures/<name>/docker-compose.yml` and loads the result as wharf does.
fn import(name: &str) -> (Imported, ValidStack) {
    let dir = fixture_dir(name);
    let file = dir.join("docker-compose.yml");
    let text = std::fs::read_to_string(&file).expect("fixture exists");
    let read = |path: &str| std::fs::read_to_string(dir.join(path));
    let imported = wharf_compose::convert(&text, &file, &read)
        .unwrap_or_else(|err| panic!("{name}: {err}: {:?}", err.diagnostics()));
    // As `wharf validate` reads it: the environment, then the `.env` beside the file.
    let dotenv = std::fs::read_to_string(dir.join(".env")).unwrap_or_default();
    let from_dotenv = |var: &str| {
        dotenv
            .lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == var)
            .map(|(_, v)| v.trim().to_owned())
    };
    let loaded = wharf_manifest::load(&imported.yaml, EnvironmentChoice::Default, &|var: &str| {
        std::env::var(var).ok().or_else(|| from_dotenv(var))
    });
    assert!(
        !loaded.has_errors(),
        "{name}:\n{}\n{:#?}",
        imported.yaml,
        loaded.diagnostics
    );
    let stack = loaded.stack.expect("a valid stack");
    (imported, stack)
}

/// The compose keys warned about with `kind`.
fn keys(imported: &Imported, kind: WarningKind) -> BTreeSet<String> {
    let of_kind = imported.warnings.iter().filter(|w| w.kind == kind);
    of_kind.map(|w| w.key.clone()).collect()
}

fn not_carried(imported: &Imported) -> BTreeSet<String> {
    keys(imported, WarningKind::NotCarried)
}

fn changed(imported: &Imported) -> BTreeSet<String> {
    keys(imported, WarningKind::Changed)
}

/// The compose keys whose values became secrets (reported with the secrets, not as warnings:
/// a warning's rendering shows its source line, which holds the value).
fn secret_keys(imported: &Imported) -> BTreeSet<String> {
    let sources = imported.secrets.iter().flat_map(|s| &s.sources);
    sources.map(|s| s.key.clone()).collect()
}

fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| (*k).to_owned()).collect()
}

fn exec_command(service: &Service) -> Vec<&str> {
    let probe = service.probes.ready.as_ref().expect("a ready probe");
    match &probe.check {
        ProbeCheck::Exec(exec) => exec.command.iter().map(String::as_str).collect(),
        other => panic!("expected an exec probe, got {other:?}"),
    }
}

fn condition(service: &Service, dependency: &str) -> DependencyCondition {
    service.depends_on[dependency].condition
}

#[test]
fn voting_app() {
    let (imported, stack) = import("voting-app");
    assert!(
        imported
            .yaml
            .starts_with("# imported from docker-compose.yml by wharf import compose\n")
    );
    assert_eq!(
        stack.name, "voting-app",
        "the directory name is the project name"
    );
    let vote = &stack.services["vote"];
    assert_eq!(
        vote.image, None,
        "built by wharf, tagged STACK-SERVICE:VERSION"
    );
    let build = vote.container.as_ref().unwrap().build.as_ref().unwrap();
    assert_eq!(
        (build.context.as_str(), build.target.as_deref()),
        ("./vote", Some("dev"))
    );
    assert_eq!(vote.port, Some(8080));
    assert_eq!(exec_command(vote), ["curl", "-f", "http://localhost"]);
    let probe = vote.probes.ready.as_ref().unwrap();
    assert_eq!(
        (
            probe.interval.to_string(),
            probe.timeout.to_string(),
            probe.failure_threshold,
            probe.start_period.to_string()
        ),
        ("15s".to_owned(), "5s".to_owned(), 3, "10s".to_owned())
    );
    assert_eq!(condition(vote, "redis"), DependencyCondition::Ready);
    let result = &stack.services["result"];
    assert_eq!(
        result
            .container
            .as_ref()
            .unwrap()
            .entrypoint
            .as_deref()
            .unwrap(),
        ["nodemon", "--inspect=0.0.0.0", "server.js"]
    );
    assert_eq!(result.port, Some(5001));
    assert_eq!(
        exec_command(&stack.services["redis"]),
        ["sh", "-c", "/healthchecks/redis.sh"]
    );
    let redis_probe = stack.services["redis"].probes.ready.as_ref().unwrap();
    assert_eq!(
        redis_probe.timeout.to_string(),
        "5s",
        "compose's 30s default is capped at the interval"
    );
    assert_eq!(stack.services["db"].env["POSTGRES_USER"], "postgres");
    assert_eq!(stack.services["seed"].restart, RestartPolicy::Never);
    // Built services run as containers: their volumes, networks (`front-tier`, `back-tier`)
    // and every port (`result`'s debugger on 127.0.0.1:9229 too) are carried.
    assert_eq!(result.container.as_ref().unwrap().ports.len(), 1);
    let expected = set(&["services.seed.profiles"]);
    assert_eq!(not_carried(&imported), expected);
    assert_eq!(changed(&imported), set(&[]));
    let secret = set(&["services.db.environment.POSTGRES_PASSWORD"]);
    assert_eq!(secret_keys(&imported), secret, "a password is a secret");
}

#[test]
fn django_celery_with_anchors_and_env_files() {
    let (imported, stack) = import("django-celery");
    assert_eq!(
        stack.name, "bakery",
        "compose's `name:` wins over the directory"
    );
    let django = &stack.services["django"];
    assert_eq!(django.command.as_deref().unwrap(), ["/start"]);
    assert_eq!(
        django.port,
        Some(8000),
        "`${{DJANGO_PORT:-8000}}` is passed through and interpolated"
    );
    assert!(
        imported.yaml.contains("port: ${DJANGO_PORT:-8000}"),
        "{}",
        imported.yaml
    );
    assert_eq!(
        exec_command(django),
        [
            "sh",
            "-c",
            "curl -fsS http://localhost:8000/healthz/ || exit 1"
        ]
    );
    let probe = django.probes.ready.as_ref().unwrap();
    assert_eq!(
        (probe.failure_threshold, probe.start_period.to_string()),
        (5, "1m30s".to_owned())
    );
    assert_eq!(condition(django, "postgres"), DependencyCondition::Ready);
    assert_eq!(condition(django, "migrate"), DependencyCondition::Started);
    assert_eq!(
        stack.services["migrate"].restart,
        RestartPolicy::Never,
        "a one-shot job is not rerun: compose's default, no restart"
    );
    assert_eq!(
        stack.services["migrate"]
            .depends_on
            .keys()
            .collect::<Vec<_>>(),
        ["postgres"],
        "the service's own depends_on wins over the merged anchor"
    );
    // Both env files, in order; single quotes keep `$` literal.
    let env = &django.env;
    assert_eq!(env["DJANGO_SETTINGS_MODULE"], "config.settings.local");
    assert_eq!(env["POSTGRES_USER"], "bakery");
    assert_eq!(env["CELERY_FLOWER_USER"], "flower$admin");
    assert_eq!(
        exec_command(&stack.services["postgres"]),
        [
            "sh",
            "-c",
            "pg_isready -U ${POSTGRES_USER} -d ${POSTGRES_DB}"
        ],
        "`$$` escapes mean the same in wharf as in compose"
    );
    assert_eq!(
        exec_command(&stack.services["redis"]),
        ["redis-cli", "ping"]
    );
    let worker = &stack.services["celeryworker"];
    assert_eq!(
        worker.command.as_deref().unwrap(),
        ["celery", "-A", "config.celery_app", "worker", "-l", "INFO"]
    );
    assert_eq!(worker.replicas, 2);
    assert_eq!(
        stack.services["celerybeat"].restart,
        RestartPolicy::OnFailure {
            max_retries: Some(3)
        },
        "`on-failure:3` keeps its retry limit"
    );
    let mut expected = set(&[
        "services.postgres.container_name",
        "services.redis.container_name",
    ]);
    // `${DJANGO_PORT:-8000}:8000`: carried, the variable said to hold a port number only.
    let mut meaning = set(&["services.django.ports"]);
    let mut secrets = set(&["services.postgres.env_file"]);
    for service in ["migrate", "django", "celeryworker", "celerybeat"] {
        expected.insert(format!("services.{service}.volumes"));
        if service != "migrate" {
            expected.insert(format!("services.{service}.container_name"));
            meaning.insert(format!("services.{service}.depends_on.migrate.condition"));
        }
        // The env files hold a password.
        secrets.insert(format!("services.{service}.env_file"));
    }
    assert_eq!(not_carried(&imported), expected);
    assert_eq!(changed(&imported), meaning);
    assert_eq!(secret_keys(&imported), secrets);
}

#[test]
fn wordpress_and_mariadb() {
    let (imported, stack) = import("wordpress");
    let db = &stack.services["db"];
    assert_eq!(
        db.image.as_deref(),
        Some("mariadb:10.11"),
        "an off-the-shelf image stays an image"
    );
    assert_eq!(
        db.command.as_deref(),
        Some(&["--default-authentication-plugin=mysql_native_password".to_owned()][..]),
        "a command override on an image is carried"
    );
    assert_eq!(
        exec_command(db),
        ["healthcheck.sh", "--connect", "--innodb_initialized"]
    );
    assert_eq!(db.restart, RestartPolicy::Always, "unless-stopped");
    let wordpress = &stack.services["wordpress"];
    assert_eq!(wordpress.port, Some(80));
    assert_eq!(condition(wordpress, "db"), DependencyCondition::Started);
    assert!(wordpress.depends_on["db"].critical);
    assert_eq!(wordpress.env["WORDPRESS_DB_HOST"], "db");
    assert!(
        imported
            .yaml
            .contains("WORDPRESS_DEBUG: ${WORDPRESS_DEBUG:-}"),
        "a bare name takes the host's value"
    );
    let expected = set(&["services.db.expose"]);
    assert_eq!(not_carried(&imported), expected);
    assert_eq!(db.kind, Some(DatastoreKind::Mariadb));
    assert_eq!(changed(&imported), set(&[]));
    let secrets = set(&[
        "services.db.environment.MYSQL_ROOT_PASSWORD",
        "services.db.environment.MYSQL_PASSWORD",
        "services.wordpress.environment.WORDPRESS_DB_PASSWORD",
    ]);
    assert_eq!(secret_keys(&imported), secrets);
}

#[test]
fn sentry_style_extension_anchors_and_merges() {
    let (imported, stack) = import("sentry-style");
    let web = &stack.services["web"];
    assert_eq!(web.command.as_deref().unwrap(), ["run", "web"]);
    assert_eq!(
        web.container
            .as_ref()
            .unwrap()
            .entrypoint
            .as_deref()
            .unwrap(),
        ["/etc/sentry/entrypoint.sh"],
        "a built image's entrypoint, as compose's"
    );
    assert_eq!(condition(web, "redis"), DependencyCondition::Ready);
    assert_eq!(condition(web, "memcached"), DependencyCondition::Started);
    assert!(!web.depends_on["smtp"].critical, "`required: false`");
    assert_eq!(
        web.env["REQUESTS_CA_BUNDLE"], "/etc/ssl/certs/ca-certificates.crt",
        "aliases resolve"
    );
    assert_eq!(web.restart, RestartPolicy::Always);
    assert_eq!(exec_command(web)[..2], ["/bin/bash", "-c"]);
    assert_eq!(
        exec_command(&stack.services["postgres"]),
        ["sh", "-c", "pg_isready -U postgres"]
    );
    assert_eq!(
        exec_command(&stack.services["redis"]),
        ["sh", "-c", "redis-cli ping | grep PONG"]
    );
    assert_eq!(
        stack.services["redis"]
            .probes
            .ready
            .as_ref()
            .unwrap()
            .interval
            .to_string(),
        "30s"
    );
    assert_eq!(
        stack.services["worker"].command.as_deref().unwrap(),
        ["run", "worker"]
    );
    assert_eq!(stack.services["worker"].replicas, 3);
    let nginx = &stack.services["nginx"];
    assert_eq!(nginx.port, Some(9000));
    assert!(
        nginx.probes.ready.is_none(),
        "`test: [\"NONE\"]` disables the check"
    );
    assert!(
        !imported.yaml.contains("x-"),
        "extension keys are not copied"
    );
    let mut expected = set(&[
        // `external: true`: wharf makes the stack's own volume instead.
        "volumes.sentry-data.external",
        "volumes.sentry-postgres.external",
        "volumes.sentry-redis.external",
        "services.smtp.logging",
        "services.smtp.hostname",
        "services.worker.deploy.resources",
    ]);
    for service in ["web", "cron", "worker"] {
        // Built by wharf, volumes and all; the build arg without a value is compose's
        // shell's.
        expected.insert(format!("services.{service}.build.args.SENTRY_IMAGE"));
    }
    assert_eq!(not_carried(&imported), expected);
    assert_eq!(
        changed(&imported),
        set(&["services.nginx.ports"]),
        "entrypoint + command keep their meaning; `$SENTRY_BIND:80/tcp` keeps both sides"
    );
    assert!(
        imported.yaml.contains("container_port: 80\n"),
        "{}",
        imported.yaml
    );
}

#[test]
fn node_mongo_with_env_files_and_long_ports() {
    let (imported, stack) = import("node-mongo");
    let api = &stack.services["api"];
    assert_eq!(api.command.as_deref().unwrap(), ["npm", "run", "dev"]);
    assert_eq!(api.port, Some(3000), "long syntax, published as a string");
    assert_eq!(api.replicas, 2);
    assert_eq!(
        api.env["GREETING"], "dev \"quoted\" value",
        ".env double quotes and escapes"
    );
    assert_eq!(
        api.env["SESSION_SECRET"], "${secret:SESSION_SECRET}",
        "a credential from an env file is a secret"
    );
    assert_eq!(
        api.env["FEATURE_FLAGS"], "search,export",
        "`export` prefix and trailing comment"
    );
    assert_eq!(api.env["DEBUG"], "true");
    assert_eq!(condition(api, "mongo"), DependencyCondition::Ready);
    assert_eq!(
        api.probes.ready.as_ref().unwrap().interval.to_string(),
        "1m30s"
    );
    let mongo = &stack.services["mongo"];
    assert_eq!(mongo.port, Some(27017));
    assert_eq!(
        mongo.env["MONGO_INITDB_DATABASE"], "todos",
        "env_file as a plain string"
    );
    let mongo_probe = mongo.probes.ready.as_ref().unwrap();
    assert_eq!(
        mongo_probe.timeout.to_string(),
        "3ms",
        "2500us rounds to the nearest millisecond"
    );
    assert_eq!(mongo_probe.start_period.to_string(), "500ms");
    assert_eq!(
        exec_command(mongo)[2],
        "echo 'db.runCommand(\"ping\").ok' | mongosh localhost:27017/test --quiet"
    );
    let express = &stack.services["mongo-express"];
    assert_eq!(express.port, Some(8081));
    assert_eq!(
        express.restart,
        RestartPolicy::OnFailure { max_retries: None }
    );
    let expected = set(&[
        "services.api.ports",
        "services.api.depends_on.mongo.restart",
        "services.api.deploy.resources",
        "services.api.healthcheck.start_interval",
        "services.mongo.ports",
        "services.mongo-express.ports",
        "services.mongo-express.profiles",
    ]);
    assert_eq!(not_carried(&imported), expected);
    let meaning = set(&["services.mongo.healthcheck.timeout"]);
    assert_eq!(changed(&imported), meaning);
    let secrets = set(&["services.api.env_file", "services.mongo.env_file"]);
    assert_eq!(secret_keys(&imported), secrets);
}

#[test]
fn every_warning_points_into_the_compose_file() {
    for name in [
        "voting-app",
        "django-celery",
        "wordpress",
        "sentry-style",
        "node-mongo",
    ] {
        let (imported, _) = import(name);
        let text = std::fs::read_to_string(fixture_dir(name).join("docker-compose.yml")).unwrap();
        for warning in &imported.warnings {
            let span = warning.diagnostic.span;
            let line = text
                .lines()
                .nth(span.line - 1)
                .unwrap_or_else(|| panic!("{name}: {warning:?}"));
            assert!(
                span.column >= 1 && span.column <= line.len() + 1,
                "{name}: {warning:?}"
            );
        }
    }
}
