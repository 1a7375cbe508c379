//! The container options of an `image:` service (`user`, `working_dir`, `ulimits`,
//! `shm_size`, `cap_add` / `cap_drop`, `read_only`, `tmpfs`, `networks`), the stack's
//! `networks:` and every service's `stop:`: what a valid file becomes, that `render` gives it
//! back, and the errors (with their spans) for what is wrong.

mod common;

use wharf_manifest::model::{Network, Ulimit};
use wharf_manifest::{Diagnostic, EnvironmentChoice, Stack, check_all, load, render};

const VALID: &str = r#"
name: shop
networks:
  backend: {internal: true}
  edge: {}
services:
  api:
    image: registry.example.com/api:1.0
    port: 8080
    user: "1000:1000"
    working_dir: /srv
    ulimits:
      nofile: {soft: 1024, hard: 65535}
      core: 0
      memlock: -1
    shm_size: 64m
    cap_add: [CAP_NET_ADMIN]
    cap_drop: [all]
    read_only: true
    tmpfs: [/tmp, "/run:size=16m"]
    networks: [edge, backend]
    stop: {signal: quit, grace: 45s}
  db:
    image: registry.example.com/db:1
    networks: [backend]
    shm_size: 1gb
  worker:
    command: [./worker]
    stop: {signal: SIGUSR1, grace: 0s}
"#;

fn load_clean(source: &str) -> Stack {
    let loaded = load(source, EnvironmentChoice::Default, &common::variables);
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
    loaded.stack.expect("a stack").into_inner()
}

fn errors(source: &str) -> Vec<Diagnostic> {
    check_all(source, &common::variables)
}

/// Each diagnostic as `line:column message`, for assertions that pin the span.
fn located(source: &str) -> Vec<String> {
    errors(source)
        .iter()
        .map(|d| format!("{}:{} {}", d.span.line, d.span.column, d.message))
        .collect()
}

#[test]
fn every_option_reads_into_the_model() {
    let stack = load_clean(VALID);
    assert_eq!(stack.networks["backend"], Network { internal: true });
    assert_eq!(stack.networks["edge"], Network { internal: false });
    let api = &stack.services["api"];
    let options = &api.container.as_ref().unwrap().options;
    assert_eq!(options.user.as_deref(), Some("1000:1000"));
    assert_eq!(options.working_dir.as_deref(), Some("/srv"));
    assert_eq!(
        options.ulimits["nofile"],
        Ulimit {
            soft: 1024,
            hard: 65535
        }
    );
    assert_eq!(options.ulimits["core"], Ulimit { soft: 0, hard: 0 });
    assert_eq!(options.ulimits["memlock"], Ulimit { soft: -1, hard: -1 });
    assert_eq!(options.shm_size, Some(64 << 20));
    assert_eq!(options.cap_add, ["NET_ADMIN"]);
    assert_eq!(options.cap_drop, ["ALL"]);
    assert!(options.read_only);
    assert_eq!(options.tmpfs, ["/tmp", "/run:size=16m"]);
    assert_eq!(options.networks, ["edge", "backend"]);
    assert_eq!(api.stop.signal.as_deref(), Some("SIGQUIT"));
    assert_eq!(api.stop.grace.map(|g| g.0.as_secs()), Some(45));
    let db = stack.services["db"].container.as_ref().unwrap();
    assert_eq!(db.options.shm_size, Some(1 << 30));
    // `stop` applies to processes too.
    let worker = &stack.services["worker"];
    assert_eq!(worker.stop.signal.as_deref(), Some("SIGUSR1"));
    assert_eq!(worker.stop.grace.map(|g| g.0.as_millis()), Some(0));
}

#[test]
fn render_gives_back_the_same_stack() {
    let loaded = load(VALID, EnvironmentChoice::Default, &common::variables);
    let stack = loaded.stack.expect("valid");
    let rendered = render(&stack);
    let again = load_clean(&rendered);
    assert_eq!(again.services, stack.into_inner().services, "{rendered}");
    assert!(rendered.contains("networks:"), "{rendered}");
}

#[test]
fn names_are_checked_with_a_suggestion() {
    let source = r#"
name: shop
services:
  api:
    image: api:1
    ulimits: {nofiles: 10}
    cap_add: [NET_ADMN]
    cap_drop: [CAP_CHWON]
    stop: {signal: SIGTREM}
"#;
    let found = errors(source);
    let messages: Vec<String> = found
        .iter()
        .map(|d| format!("{} | {}", d.message, d.hint.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        located(source),
        [
            "6:15 `services.api.ulimits`: unknown limit `nofiles`",
            "7:15 `services.api.cap_add`: unknown capability `NET_ADMN`",
            "8:16 `services.api.cap_drop`: unknown capability `CAP_CHWON`",
            "9:20 `services.api.stop.signal`: `SIGTREM` is not a stop signal",
        ],
        "{messages:#?}"
    );
    for (message, wanted) in messages
        .iter()
        .zip(["nofile", "NET_ADMIN", "CHOWN", "SIGTERM"])
    {
        assert!(
            message.contains(&format!("did you mean `{wanted}`?")),
            "{message}"
        );
    }
}

#[test]
fn bad_values_are_errors_at_their_value() {
    let source = r#"
name: shop
services:
  api:
    image: api:1
    user: "a b"
    working_dir: srv
    ulimits:
      nofile: {soft: 10, hard: 5}
      nproc: {soft: 10}
    shm_size: 64x
    read_only: yes
    tmpfs: [tmp]
    stop: {grace: 10}
"#;
    assert_eq!(
        located(source),
        [
            "6:11 `services.api.user`: `a b` is not a user",
            "7:18 `services.api.working_dir`: `srv` is not an absolute path",
            "9:15 `services.api.ulimits.nofile`: the soft limit 10 is above the hard limit 5",
            "10:14 `services.api.ulimits.nproc` is missing `hard`",
            "11:15 `services.api.shm_size`: `64x` is not a size",
            "12:16 `services.api.read_only`: expected `true` or `false`, found a string",
            "13:13 `services.api.tmpfs`: `tmp` is not an absolute path",
            "14:19 `services.api.stop.grace`: `10` is not a valid duration",
        ]
    );
}

#[test]
fn container_options_on_a_process_are_errors() {
    let source = r#"
name: shop
services:
  worker:
    command: [./worker]
    user: "1000"
    networks: [default]
"#;
    assert_eq!(
        located(source),
        [
            "6:5 `services.worker.user` on a service without `image:`",
            "7:5 `services.worker.networks` on a service without `image:`",
        ]
    );
}

#[test]
fn an_undeclared_network_is_an_error_with_a_suggestion() {
    let source = r#"
name: shop
networks:
  backend: {internal: true}
services:
  api:
    image: api:1
    networks: [default, backnd]
"#;
    let found = errors(source);
    assert_eq!(
        located(source),
        ["8:25 service `api` names network `backnd`, which is not declared"]
    );
    assert_eq!(found[0].hint.as_deref(), Some("did you mean `backend`?"));
}

#[test]
fn a_published_port_needs_a_network_that_routes_out() {
    let source = r#"
name: shop
networks:
  backend: {internal: true}
services:
  api:
    image: api:1
    port: 8080
    networks: [backend]
  db:
    image: db:1
    networks: [backend]
"#;
    assert_eq!(
        located(source),
        ["9:5 service `api` has a `port:` but only internal networks"]
    );
    // With `default` beside it, the port is reachable.
    let fixed = source.replace(
        "networks: [backend]\n  db",
        "networks: [backend, default]\n  db",
    );
    assert_eq!(located(&fixed), Vec::<String>::new());
}

#[test]
fn network_declarations_are_checked() {
    let source = r#"
name: shop
networks:
  default: {internal: true}
  back.end: {}
  edge: {driver: overlay}
services:
  api:
    image: api:1
    networks: {edge: {aliases: [web]}}
  db:
    image: db:1
    networks: []
"#;
    assert_eq!(
        located(source),
        [
            "4:3 network `default` is the stack's own network and is not declared",
            "5:3 network name `back.end` has characters wharf cannot use",
            "6:10 unknown key `driver` in network `edge`",
            "10:15 `services.api.networks`: expected a list of network names",
            "13:15 `services.db.networks` is empty",
        ]
    );
}

#[test]
fn stop_on_a_service_wharf_does_not_run_is_an_error() {
    let source = r#"
name: shop
services:
  db:
    kind: postgres
    url: postgres://db/shop
    stop: {grace: 5s}
"#;
    assert_eq!(
        located(source),
        ["7:5 `services.db.stop` on a service wharf does not run"]
    );
}
