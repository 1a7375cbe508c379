//! The importer carries the container options (`user`, `working_dir`, `ulimits`, `shm_size`,
//! `cap_add` / `cap_drop`, `read_only`, `tmpfs`), `stop_grace_period` / `stop_signal` and the
//! networks (top-level with `internal`, and each service's) into a wharf.yaml that loads with
//! them; what it cannot carry is a warning at the line that sets it.

use std::io;
use std::path::Path;

use wharf_compose::{Imported, WarningKind, convert};
use wharf_manifest::model::{Network, Stack, Ulimit};

fn no_files(path: &str) -> io::Result<String> {
    Err(io::Error::new(io::ErrorKind::NotFound, path.to_owned()))
}

/// Imports `text` and loads the result as wharf would.
fn import(text: &str) -> (Imported, Stack) {
    let imported = convert(text, Path::new("/src/shop/docker-compose.yml"), &no_files)
        .unwrap_or_else(|err| panic!("{err}: {:?}", err.diagnostics()));
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
    let stack = loaded.stack.expect("a stack").into_inner();
    (imported, stack)
}

/// `(kind, key, line)` of every warning.
fn warnings(imported: &Imported) -> Vec<(WarningKind, String, usize)> {
    imported
        .warnings
        .iter()
        .map(|w| (w.kind, w.key.clone(), w.diagnostic.span.line))
        .collect()
}

#[test]
fn container_options_and_stop_are_carried_onto_an_image_service() {
    let (imported, stack) = import(
        r#"
services:
  db:
    image: postgres:16
    user: "999:999"
    working_dir: /var/lib/postgresql
    shm_size: 256mb
    ulimits:
      nofile: {soft: 20000, hard: 40000}
      nproc: 65535
    cap_add: [SYS_NICE]
    cap_drop: [ALL]
    read_only: true
    tmpfs: [/tmp, /run/postgresql]
    stop_grace_period: 1m30s
    stop_signal: SIGINT
"#,
    );
    assert_eq!(warnings(&imported), vec![], "{}", imported.yaml);
    let db = &stack.services["db"];
    let options = &db.container.as_ref().unwrap().options;
    assert_eq!(options.user.as_deref(), Some("999:999"));
    assert_eq!(options.working_dir.as_deref(), Some("/var/lib/postgresql"));
    assert_eq!(options.shm_size, Some(256 << 20));
    assert_eq!(
        options.ulimits["nofile"],
        Ulimit {
            soft: 20000,
            hard: 40000
        }
    );
    assert_eq!(
        options.ulimits["nproc"],
        Ulimit {
            soft: 65535,
            hard: 65535
        }
    );
    assert_eq!(options.cap_add, ["SYS_NICE"]);
    assert_eq!(options.cap_drop, ["ALL"]);
    assert!(options.read_only);
    assert_eq!(options.tmpfs, ["/tmp", "/run/postgresql"]);
    assert_eq!(db.stop.signal.as_deref(), Some("SIGINT"));
    assert_eq!(db.stop.grace.map(|g| g.0.as_secs()), Some(90));
}

#[test]
fn a_local_process_keeps_its_stop_and_is_warned_about_container_options() {
    let (imported, stack) = import(
        r#"
services:
  worker:
    command: ["./worker"]
    user: "1000"
    working_dir: /app
    networks: [default]
    stop_signal: SIGTERM
    stop_grace_period: 20s
"#,
    );
    let worker = &stack.services["worker"];
    assert_eq!(worker.stop.grace.map(|g| g.0.as_secs()), Some(20));
    let found = warnings(&imported);
    for (key, line) in [
        ("services.worker.user", 5),
        ("services.worker.working_dir", 6),
        ("services.worker.networks", 7),
    ] {
        assert!(
            found.contains(&(WarningKind::NotCarried, key.to_owned(), line)),
            "{key}: {found:?}"
        );
    }
}

#[test]
fn what_wharf_cannot_do_is_warned_at_its_line() {
    let (imported, stack) = import(
        r#"
services:
  app:
    image: app:1
    stop_signal: SIGRTMIN+3
    stop_grace_period: 2us
    ulimits:
      bogus: 1
"#,
    );
    assert!(stack.services["app"].stop.is_default());
    assert_eq!(
        warnings(&imported),
        vec![
            (
                WarningKind::NotCarried,
                "services.app.stop_signal".to_owned(),
                5
            ),
            (
                WarningKind::NotCarried,
                "services.app.stop_grace_period".to_owned(),
                6
            ),
            (
                WarningKind::NotCarried,
                "services.app.ulimits.bogus".to_owned(),
                8
            ),
        ]
    );
}

/// The mastodon shape: an internal network for the datastores, an external-facing one for
/// the web; settings wharf has no place for are warned at their line.
#[test]
fn networks_are_carried_with_internal_and_their_drivers_warned() {
    let (imported, stack) = import(
        r#"
services:
  db:
    image: postgres:16
    networks: [internal_network]
  web:
    image: web:1
    ports: ["127.0.0.1:3000:3000"]
    networks:
      external_network:
      internal_network:
        aliases: [app]
  queue:
    image: queue:1
    ports: ["8080:8080"]
    networks: [internal_network]
  proxy:
    image: proxy:1
    networks: [shared, default]
networks:
  external_network:
    driver: bridge
  internal_network:
    internal: true
  shared:
    external: true
"#,
    );
    assert_eq!(
        stack.networks["internal_network"],
        Network { internal: true }
    );
    assert_eq!(
        stack.networks["external_network"],
        Network { internal: false }
    );
    assert!(!stack.networks.contains_key("shared"));
    let networks = |service: &str| {
        stack.services[service]
            .container
            .as_ref()
            .unwrap()
            .options
            .networks
            .clone()
    };
    assert_eq!(networks("db"), ["internal_network"]);
    assert_eq!(networks("web"), ["external_network", "internal_network"]);
    // A published port needs a network that routes out: `default` is added, and said so.
    assert_eq!(networks("queue"), ["internal_network", "default"]);
    // The external network is left out.
    assert_eq!(networks("proxy"), ["default"]);
    assert_eq!(
        warnings(&imported),
        vec![
            // The host address of a published port (ports.rs).
            (WarningKind::NotCarried, "services.web.ports".to_owned(), 8),
            (
                WarningKind::NotCarried,
                "services.web.networks.internal_network.aliases".to_owned(),
                12
            ),
            (
                WarningKind::Changed,
                "services.queue.networks".to_owned(),
                16
            ),
            (
                WarningKind::NotCarried,
                "services.proxy.networks".to_owned(),
                19
            ),
            (
                WarningKind::NotCarried,
                "networks.external_network.driver".to_owned(),
                22
            ),
            (WarningKind::NotCarried, "networks.shared".to_owned(), 25),
        ]
    );
}

#[test]
fn a_service_naming_an_undeclared_network_is_an_error() {
    let err = convert(
        "services:\n  a:\n    image: a:1\n    networks: [nowhere]\n",
        Path::new("/src/shop/docker-compose.yml"),
        &no_files,
    )
    .unwrap_err();
    let diagnostics = err.diagnostics();
    assert_eq!(
        (diagnostics[0].span.line, diagnostics[0].span.column),
        (4, 16)
    );
    assert!(
        diagnostics[0].message.contains("`nowhere`"),
        "{}",
        diagnostics[0].message
    );
}
