//! The converter on small inline compose files: what is an error (with its position), what is
//! a warning, and the edge cases of each carried key.

use std::io;
use std::path::Path;

use wharf_compose::{ImportError, Imported, convert};

fn no_files(path: &str) -> io::Result<String> {
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("{path}: no such file"),
    ))
}

fn import(text: &str) -> Result<Imported, ImportError> {
    convert(text, Path::new("/src/myshop/docker-compose.yml"), &no_files)
}

fn imported(text: &str) -> Imported {
    let imported = import(text).unwrap_or_else(|err| panic!("{err}: {:?}", err.diagnostics()));
    let loaded = wharf_manifest::load(
        &imported.yaml,
        wharf_manifest::EnvironmentChoice::Default,
        &|_: &str| None,
    );
    assert!(
        !loaded.has_errors(),
        "{}\n{:#?}",
        imported.yaml,
        loaded.diagnostics
    );
    imported
}

fn position(err: &ImportError) -> (usize, usize) {
    let diagnostics = err.diagnostics();
    let first = diagnostics.first().expect("a diagnostic");
    (first.span.line, first.span.column)
}

fn keys(imported: &Imported) -> Vec<&str> {
    imported.warnings.iter().map(|w| w.key.as_str()).collect()
}

#[test]
fn invalid_yaml_is_an_error_with_its_position() {
    let err = import("services:\n  web:\n    image: [nginx\n").unwrap_err();
    assert!(matches!(err, ImportError::Yaml { .. }), "{err:?}");
    assert_eq!(position(&err).0, 4, "{:?}", err.diagnostics());
}

#[test]
fn duplicate_keys_are_invalid_yaml() {
    let err = import("services:\n  web:\n    image: a\n    image: b\n").unwrap_err();
    assert!(matches!(err, ImportError::Yaml { .. }));
    assert_eq!(position(&err), (4, 5));
}

#[test]
fn files_without_services_are_not_compose_files() {
    for (text, at) in [
        ("volumes: {}\n", (1, 1)),
        ("- a\n- b\n", (1, 1)),
        ("services: {}\n", (1, 11)),
        ("services: [web]\n", (1, 11)),
        ("", (1, 1)),
    ] {
        let err = import(text).unwrap_err();
        assert!(
            matches!(err, ImportError::NotCompose { .. }),
            "{text:?}: {err:?}"
        );
        assert_eq!(position(&err), at, "{text:?}");
    }
}

#[test]
fn values_compose_would_reject_are_errors_with_positions() {
    let text = "services:\n  web:\n    image: nginx\n    ports: [\"a:b:c:d\"]\n    depends_on: [cache]\n    restart: sometimes\n";
    let err = import(text).unwrap_err();
    let ImportError::Invalid { diagnostics } = &err else {
        panic!("{err:?}")
    };
    let at: Vec<(usize, usize)> = diagnostics
        .iter()
        .map(|d| (d.span.line, d.span.column))
        .collect();
    assert_eq!(at, [(4, 13), (5, 18), (6, 14)], "{diagnostics:#?}");
    assert!(
        diagnostics[1]
            .message
            .contains("`cache`, which is not a service")
    );
}

#[test]
fn a_missing_env_file_names_it_and_its_position() {
    let err =
        import("services:\n  web:\n    image: nginx\n    env_file: [./web.env]\n").unwrap_err();
    let ImportError::EnvFile { path, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(path, "./web.env");
    assert_eq!(position(&err), (4, 16));
    let optional = "services:\n  web:\n    image: nginx\n    env_file:\n      - path: ./web.env\n        required: false\n";
    assert!(imported(optional).warnings.is_empty());
}

#[test]
fn env_files_come_before_environment() {
    let read = |path: &str| match path {
        "a.env" => Ok("X=from-a\nY=from-a\n".to_owned()),
        "b.env" => Ok("Y=from-b\nZ=from-b\n".to_owned()),
        other => no_files(other),
    };
    let text = "services:\n  web:\n    image: nginx\n    env_file: [a.env, b.env]\n    environment: [Z=inline]\n";
    let imported = convert(text, Path::new("docker-compose.yml"), &read).unwrap();
    assert!(
        imported
            .yaml
            .contains("X: from-a\n      Y: from-b\n      Z: inline\n"),
        "{}",
        imported.yaml
    );
}

#[test]
fn build_only_services_are_built_by_wharf_from_their_context() {
    let built = imported("services:\n  api:\n    build: ./api\n");
    assert!(built.yaml.contains("name: myshop\n"), "{}", built.yaml);
    assert!(built.yaml.contains("    build: ./api\n"), "{}", built.yaml);
    assert!(!built.yaml.contains("image:"), "{}", built.yaml);
    assert!(keys(&built).is_empty(), "{:?}", keys(&built));
    // The mapping form: what wharf builds with is carried, the rest warned at its key.
    let text = "services:\n  api:\n    image: shop/api:dev\n    build:\n      context: ./api\n      dockerfile: Dockerfile.dev\n      target: dev\n      args: {GO_VERSION: \"1.22\", FROM_SHELL: null}\n      cache_from: [shop/api:cache]\n  remote:\n    build: https://github.com/example/app.git\n";
    let mapped = imported(text);
    assert!(
        mapped.yaml.contains("    image: shop/api:dev\n    build:\n      context: ./api\n      dockerfile: Dockerfile.dev\n      target: dev\n      args:\n        GO_VERSION: \"1.22\"\n"),
        "{}",
        mapped.yaml
    );
    assert_eq!(
        keys(&mapped),
        [
            "services.api.build.args.FROM_SHELL",
            "services.api.build.cache_from",
            "services.remote.build"
        ]
    );
}

#[test]
fn project_and_service_names_are_sanitized() {
    let text = "name: My_Shop\nservices:\n  web.api:\n    image: nginx\n  client:\n    image: curl\n    depends_on: [web.api]\n";
    let imported = imported(text);
    assert!(
        imported.yaml.contains("name: my_shop\n"),
        "{}",
        imported.yaml
    );
    assert!(imported.yaml.contains("  web-api:\n"), "{}", imported.yaml);
    assert!(
        imported
            .yaml
            .contains("      web-api:\n        condition: started\n"),
        "{}",
        imported.yaml
    );
    assert_eq!(keys(&imported), ["services.web.api"]);
}

#[test]
fn entrypoint_and_command_of_built_services_keep_composes_meaning() {
    let text = "services:\n  app:\n    build: .\n    entrypoint: [\"/bin/entry\", \"--verbose\"]\n    command: serve --port 80\n";
    let imported = imported(text);
    assert!(
        imported
            .yaml
            .contains("entrypoint:\n      - /bin/entry\n      - \"--verbose\"\n"),
        "{}",
        imported.yaml
    );
    assert!(
        imported
            .yaml
            .contains("command:\n      - serve\n      - \"--port\"\n      - \"80\"\n"),
        "{}",
        imported.yaml
    );
    assert!(keys(&imported).is_empty(), "{:?}", keys(&imported));
    // A command alone replaces the image's CMD, in compose as in wharf.
    let alone = imported_command_only();
    assert!(keys(&alone).is_empty(), "{:?}", keys(&alone));
}

fn imported_command_only() -> Imported {
    imported("services:\n  app:\n    build: .\n    command: [serve]\n")
}

#[test]
fn healthcheck_forms() {
    let text = "\
services:
  a:
    image: x
    healthcheck: {test: [\"CMD\", \"true\"], interval: 1m, timeout: 1500ms, retries: 2, start_period: 1m30s}
  b:
    image: x
    healthcheck: {test: [\"CMD-SHELL\", \"curl -f localhost || exit 1\"]}
  c:
    image: x
    healthcheck: {test: \"pg_isready\", disable: true}
  d:
    image: x
    healthcheck: {test: [\"NONE\"]}
  e:
    image: x
    healthcheck: {test: check, interval: 250us, timeout: 100us}
";
    let imported = imported(text);
    let yaml = &imported.yaml;
    assert!(yaml.contains("command:\n            - \"true\"\n        interval: 1m\n        timeout: 1s500ms\n        failure_threshold: 2\n        start_period: 1m30s\n"), "{yaml}");
    assert!(yaml.contains("- sh\n            - \"-c\"\n            - curl -f localhost || exit 1\n        interval: 30s\n        timeout: 30s\n"), "{yaml}");
    assert!(
        !yaml.contains("pg_isready"),
        "disable: true drops the check: {yaml}"
    );
    assert!(
        yaml.contains("  d:\n    image: x\n    restart: never\n  e:"),
        "NONE drops the check: {yaml}"
    );
    assert!(
        yaml.contains("interval: 1ms\n        timeout: 1ms\n"),
        "{yaml}"
    );
    assert_eq!(
        keys(&imported),
        [
            "services.e.healthcheck.interval",
            "services.e.healthcheck.timeout"
        ]
    );
}

/// Each of compose's restart policies keeps its meaning, and no `restart:` at all is compose's
/// default — nothing restarts — written out, because wharf's own default is `always`.
#[test]
fn restart_policies() {
    let text = "\
services:
  a: {image: x, restart: \"no\"}
  b: {image: x, restart: always}
  c: {image: x, restart: unless-stopped}
  d: {image: x, restart: on-failure}
  e: {image: x, restart: \"on-failure:5\"}
  f: {image: x, deploy: {restart_policy: {condition: none, max_attempts: 3}}}
  g: {image: x}
  h: {image: x, deploy: {restart_policy: {condition: on-failure, max_attempts: 3, delay: 5s}}}
  i: {image: x, deploy: {restart_policy: {}}}
  j: {image: x, restart: \"on-failure:0\"}
";
    let imported = imported(text);
    let policies: Vec<&str> = imported
        .yaml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("restart: "))
        .collect();
    assert_eq!(
        policies,
        [
            "never",
            "always",
            "always",
            "on-failure",
            "on-failure:5",
            "never",
            "never",
            "on-failure:3",
            "always",
            "on-failure"
        ]
    );
    assert_eq!(
        keys(&imported),
        [
            "services.f.deploy.restart_policy.max_attempts",
            "services.h.deploy.restart_policy.delay"
        ]
    );
    assert!(
        !imported.yaml.contains("restarts"),
        "no file-header notice stands in for the policies: {}",
        imported.yaml
    );
}

#[test]
fn ports_carry_every_fixed_tcp_port_and_warn_on_the_rest() {
    let text = "\
services:
  web:
    image: x
    ports:
      - \"80\"
      - \"9000-9001:9000-9001\"
      - \"127.0.0.1:8080:8080/tcp\"
      - \"8443:443\"
      - {target: 53, published: 5353, protocol: udp}
      - \"127.0.0.1:5433:5432\"
      - {target: 9090, published: 9091, app_protocol: http}
";
    let imported = imported(text);
    // The HTTP-looking port is the main one; the other fixed TCP ports go to `ports:`.
    assert!(imported.yaml.contains("port: 8080\n"), "{}", imported.yaml);
    assert!(imported.yaml.contains("- 8443:443\n"), "{}", imported.yaml);
    assert!(
        imported.yaml.contains("- 127.0.0.1:5433:5432\n"),
        "{}",
        imported.yaml
    );
    assert!(
        imported.yaml.contains("app_protocol: http"),
        "{}",
        imported.yaml
    );
    let lines: Vec<usize> = imported
        .warnings
        .iter()
        .map(|w| w.diagnostic.span.line)
        .collect();
    assert_eq!(
        lines,
        [5, 6, 7, 9],
        "a random host port, a range, the main port's host address, UDP"
    );
    assert!(
        imported
            .warnings
            .iter()
            .all(|w| w.key == "services.web.ports")
    );
}

#[test]
fn extension_keys_are_skipped_silently_and_merges_resolved() {
    let text = "\
x-common: &common
  image: busybox
  environment: {A: \"1\"}
services:
  one:
    <<: *common
    x-note: internal
    environment: {B: \"2\"}
";
    let imported = imported(text);
    assert!(imported.warnings.is_empty(), "{:?}", imported.warnings);
    assert!(
        imported
            .yaml
            .contains("image: busybox\n    env:\n      B: \"2\"\n"),
        "{}",
        imported.yaml
    );
}

/// Regression: a one-shot job (Sentry's `geoipupdate`, a migration) without `restart:` was
/// imported with wharf's default `always` and rerun forever.
#[test]
fn one_shot_jobs_without_restart_are_not_restarted() {
    let text = "\
services:
  migrate: {build: ., command: migrate}
  geoipupdate: {image: ghcr.io/maxmind/geoipupdate:v6.0.0}
  web:
    image: x
    restart: unless-stopped
    depends_on:
      migrate: {condition: service_completed_successfully}
";
    let imported = imported(text);
    let stack = wharf_manifest::load(
        &imported.yaml,
        wharf_manifest::EnvironmentChoice::Default,
        &|_: &str| None,
    )
    .stack
    .expect("valid");
    use wharf_manifest::model::RestartPolicy;
    assert_eq!(stack.services["migrate"].restart, RestartPolicy::Never);
    assert_eq!(stack.services["geoipupdate"].restart, RestartPolicy::Never);
    assert_eq!(stack.services["web"].restart, RestartPolicy::Always);
    assert!(keys(&imported).contains(&"services.web.depends_on.migrate.condition"));
}

#[test]
fn instance_variables_are_flagged_because_wharf_fills_them() {
    let text = "services:\n  api:\n    build: .\n    command: [\"serve\", \"--port\", \"${PORT}\"]\n    environment: [\"LISTEN=${PORT:-3000}\"]\n";
    let imported = imported(text);
    let flagged: Vec<(&str, usize)> = imported
        .warnings
        .iter()
        .filter(|w| {
            w.diagnostic
                .message
                .contains("changes meaning: compose reads it")
        })
        .map(|w| (w.key.as_str(), w.diagnostic.span.line))
        .collect();
    assert_eq!(
        flagged,
        [("services.api.command", 4)],
        "a default keeps the host's meaning"
    );
    assert!(imported.yaml.contains("- ${PORT}\n"), "{}", imported.yaml);
}

/// A credential also written into a command cannot become a secret there (wharf refuses
/// `${secret:…}` in argv): the import says so, at the service's name, whose line shows no value.
#[test]
fn a_secret_also_in_a_command_is_warned_about_without_showing_it() {
    let text = "\
services:
  cache:
    build: .
    command: [\"redis-server\", \"--requirepass\", \"cache-pw-8Hq2\"]
    environment:
      REDIS_PASSWORD: cache-pw-8Hq2
";
    let imported = imported(text);
    let warning = imported
        .warnings
        .iter()
        .find(|w| {
            w.key == "services.cache.command" && w.diagnostic.message.contains("REDIS_PASSWORD")
        })
        .expect("warned");
    assert_eq!(warning.diagnostic.span.line, 2, "the service's name");
    assert!(!warning.diagnostic.message.contains("cache-pw"));
    assert!(
        imported
            .yaml
            .contains("REDIS_PASSWORD: ${secret:REDIS_PASSWORD}")
    );
}
