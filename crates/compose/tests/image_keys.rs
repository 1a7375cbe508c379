//! What an `image:` service carries over: `command`/`entrypoint` overrides (string and list
//! forms), volumes (short and long syntax, named and bind, `:ro`, top-level declarations) and
//! `pull_policy`; what it cannot carry is warned about at the service's own line.

use std::path::Path;

use wharf_compose::{Imported, WarningKind};
use wharf_manifest::EnvironmentChoice;
use wharf_manifest::model::{PullPolicy, Service, Volume, VolumeSource};

fn import(text: &str) -> Imported {
    let read = |_: &str| -> std::io::Result<String> {
        Err(std::io::Error::from(std::io::ErrorKind::NotFound))
    };
    wharf_compose::convert(text, Path::new("/srv/shop/docker-compose.yml"), &read)
        .unwrap_or_else(|err| panic!("{err}: {:?}", err.diagnostics()))
}

/// The imported wharf.yaml as wharf loads it (it must validate).
fn services(imported: &Imported) -> indexmap::IndexMap<String, Service> {
    let loaded = wharf_manifest::load(&imported.yaml, EnvironmentChoice::Default, &|_: &str| {
        None::<String>
    });
    assert!(
        !loaded.has_errors(),
        "{}\n{:#?}",
        imported.yaml,
        loaded.diagnostics
    );
    loaded.stack.expect("a valid stack").services.clone()
}

/// `(key, line)` of each warning of `kind`.
fn warned(imported: &Imported, kind: WarningKind) -> Vec<(String, usize)> {
    imported
        .warnings
        .iter()
        .filter(|w| w.kind == kind)
        .map(|w| (w.key.clone(), w.diagnostic.span.line))
        .collect()
}

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|w| (*w).to_owned()).collect()
}

#[test]
fn command_and_entrypoint_overrides_on_images_are_carried_in_both_forms() {
    let imported = import(
        r#"
services:
  db:
    image: postgres:16
    command: postgres -c wal_level=logical -c "max_connections=200"
  prom:
    image: prom/prometheus:v2.53.0
    command: ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.retention.time=15d"]
  geoip:
    image: ghcr.io/maxmind/geoipupdate:v6.1.0
    entrypoint: ["/usr/bin/geoipupdate", "-d", "/sentry"]
  cron:
    image: nextcloud:fpm-alpine
    entrypoint: /cron.sh
    command: ["--verbose"]
"#,
    );
    assert_eq!(warned(&imported, WarningKind::NotCarried), []);
    let services = services(&imported);
    assert_eq!(
        services["db"].command,
        Some(words(&[
            "postgres",
            "-c",
            "wal_level=logical",
            "-c",
            "max_connections=200"
        ]))
    );
    assert_eq!(services["db"].image.as_deref(), Some("postgres:16"));
    assert_eq!(
        services["prom"].command,
        Some(words(&[
            "--config.file=/etc/prometheus/prometheus.yml",
            "--storage.tsdb.retention.time=15d"
        ]))
    );
    let container = |name: &str| services[name].container.clone().unwrap_or_default();
    assert_eq!(
        container("geoip").entrypoint,
        Some(words(&["/usr/bin/geoipupdate", "-d", "/sentry"]))
    );
    assert_eq!(services["geoip"].command, None);
    assert_eq!(container("cron").entrypoint, Some(words(&["/cron.sh"])));
    assert_eq!(services["cron"].command, Some(words(&["--verbose"])));
}

#[test]
fn an_empty_entrypoint_is_warned_at_its_line() {
    let imported = import(
        r#"
services:
  app:
    image: busybox:1.36
    entrypoint: ""
    command: ["sleep", "1"]
"#,
    );
    assert_eq!(
        warned(&imported, WarningKind::NotCarried),
        [("services.app.entrypoint".to_owned(), 5)]
    );
    let services = services(&imported);
    assert_eq!(services["app"].container.clone().unwrap().entrypoint, None);
}

#[test]
fn volumes_named_and_bind_short_and_long_are_carried_relative_to_the_compose_file() {
    let imported = import(
        r#"
services:
  db:
    image: postgres:16
    volumes:
      - db-data:/var/lib/postgresql/data
      - ./init:/docker-entrypoint-initdb.d:ro
      - type: bind
        source: conf
        target: /etc/postgresql
        read_only: true
      - type: volume
        source: wal
        target: /wal
      - /etc/localtime:/etc/localtime:ro
      - ${DATA_DIR:-./data}:/extra
volumes:
  db-data:
  wal:
    driver: local
"#,
    );
    assert_eq!(warned(&imported, WarningKind::NotCarried), []);
    let services = services(&imported);
    let volumes = services["db"].container.clone().unwrap().volumes;
    let mount = |source: VolumeSource, target: &str, read_only: bool| Volume {
        source,
        target: target.to_owned(),
        read_only,
    };
    assert_eq!(
        volumes,
        [
            mount(
                VolumeSource::Named("db-data".into()),
                "/var/lib/postgresql/data",
                false
            ),
            mount(
                VolumeSource::Bind("./init".into()),
                "/docker-entrypoint-initdb.d",
                true
            ),
            // A long-syntax bind's source is a path even without `./`.
            mount(VolumeSource::Bind("./conf".into()), "/etc/postgresql", true),
            mount(VolumeSource::Named("wal".into()), "/wal", false),
            mount(
                VolumeSource::Bind("/etc/localtime".into()),
                "/etc/localtime",
                true
            ),
            mount(VolumeSource::Bind("./data".into()), "/extra", false),
        ]
    );
}

#[test]
fn anonymous_volumes_tmpfs_options_and_volume_drivers_are_warned_at_the_service() {
    let imported = import(
        r#"
x-defaults: &defaults
  volumes:
    - /cache
services:
  app:
    <<: *defaults
    image: nginx:1.27
  web:
    image: nginx:1.27
    volumes:
      - /var/cache/nginx
      - type: tmpfs
        target: /run
      - type: volume
        source: html
        target: /usr/share/nginx/html
        volume:
          nocopy: true
      - ./site:/srv:z
      - ~/certs:/certs:ro
  local:
    command: ["./run.sh"]
    volumes:
      - ./data:/data
volumes:
  html:
    driver: nfs
    driver_opts:
      type: nfs
  old:
    external: true
"#,
    );
    let not_carried = warned(&imported, WarningKind::NotCarried);
    let expected: Vec<(String, usize)> = [
        // The template's anonymous volume, at the service's `<<` line.
        ("services.app.volumes", 7),
        ("services.web.volumes", 12),
        ("services.web.volumes", 13),
        ("services.web.volumes.volume", 18),
        ("services.web.volumes", 20),
        ("services.web.volumes", 21),
        ("services.local.volumes", 24),
        ("volumes.html.driver", 28),
        ("volumes.html.driver_opts", 29),
        ("volumes.old.external", 32),
    ]
    .iter()
    .map(|(k, l)| ((*k).to_owned(), *l))
    .collect();
    assert_eq!(not_carried, expected);
    let services = services(&imported);
    let targets: Vec<String> = services["web"]
        .container
        .clone()
        .unwrap()
        .volumes
        .into_iter()
        .map(|v| v.target)
        .collect();
    assert_eq!(targets, ["/usr/share/nginx/html", "/srv"]);
    assert!(
        services["app"]
            .container
            .clone()
            .unwrap()
            .volumes
            .is_empty()
    );
    assert!(services["local"].container.is_none());
}

#[test]
fn pull_policies_map_to_the_manifests() {
    let imported = import(
        r#"
services:
  a:
    image: redis:7
    pull_policy: always
  b:
    image: redis:7
    pull_policy: if_not_present
  c:
    image: redis:7
    pull_policy: never
  d:
    image: redis:7
    pull_policy: daily
  e:
    command: ["./run"]
    pull_policy: always
"#,
    );
    assert_eq!(
        warned(&imported, WarningKind::NotCarried),
        [
            ("services.d.pull_policy".to_owned(), 14),
            ("services.e.pull_policy".to_owned(), 17),
        ]
    );
    let services = services(&imported);
    let policy = |name: &str| services[name].container.clone().unwrap().pull_policy;
    assert_eq!(policy("a"), PullPolicy::Always);
    assert_eq!(policy("b"), PullPolicy::Missing);
    assert_eq!(policy("c"), PullPolicy::Never);
    assert_eq!(policy("d"), PullPolicy::Missing);
}
