//! A manifest that uses every feature of the schema loads cleanly, and `render` round-trips:
//! the rendered YAML loads back to the same stack, with secrets still symbolic.

mod common;

use wharf_manifest::{EnvironmentChoice, Stack, check_all, environment_names, load, render};

const FULL: &str = include_str!("valid/full.yaml");

fn load_clean(source: &str, environment: EnvironmentChoice<'_>) -> Stack {
    let loaded = load(source, environment, &common::variables);
    assert!(
        loaded.diagnostics.is_empty(),
        "{environment:?}: {:#?}\n{source}",
        loaded.diagnostics
    );
    loaded
        .stack
        .expect("no diagnostics means a stack")
        .into_inner()
}

#[test]
fn full_manifest_has_no_diagnostics() {
    assert_eq!(check_all(FULL, &common::variables), vec![]);
    assert_eq!(environment_names(FULL), ["dev", "staging", "prod"]);
}

#[test]
fn full_manifest_uses_every_feature() {
    let stack = load_clean(FULL, EnvironmentChoice::Named("prod"));
    assert_eq!(stack.environment.as_deref(), Some("prod"));
    let require = stack.require.as_ref().expect("prod has requirements");
    assert_eq!(
        require.backup_max_age.map(|d| d.0.as_secs()),
        Some(24 * 3600)
    );
    assert_eq!(
        require.drill_max_age.map(|d| d.0.as_secs()),
        Some(8 * 86400)
    );
    let promoted = require
        .promoted_from
        .as_ref()
        .expect("prod needs promotion");
    assert_eq!(promoted.env, "staging");
    assert!(promoted.key.starts_with("wharf/staging+f22fd127+"));
    assert_eq!(stack.services.len(), 8);
    assert_eq!(stack.services["api"].replicas, 4);
    assert_eq!(
        stack.alerts.len(),
        1,
        "the prod overlay replaces the alerts list"
    );
    assert_eq!(stack.smoke.len(), 3);
    let page = stack.status_page.as_ref().expect("a status page");
    assert_eq!(page.title.as_deref(), Some("Shop status"));
    assert_eq!(page.components[0].services, ["api", "web"]);
    assert_eq!(
        page.components[0].description.as_deref(),
        Some("Browsing and checkout")
    );
    assert_eq!(page.components[1].name, "Email");
    let release = &stack.gates["release"];
    let names: Vec<&str> = release.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "no serious findings",
            "no secrets",
            "tests pass",
            "load",
            "coverage"
        ]
    );
    assert_eq!(
        release[0].check,
        wharf_manifest::model::GateCheck::Sarif(wharf_manifest::model::SarifLimits {
            max_level: Some(wharf_manifest::model::SarifLevel::Warning),
            max_security_severity: Some(6.9),
            max_results: None,
        })
    );
    let wharf_manifest::model::GateCheck::K6(load) = &release[3].check else {
        panic!("load is a k6 condition: {:?}", release[3]);
    };
    assert_eq!(load.p95.map(|d| d.as_std().as_secs()), Some(3));
    assert_eq!(load.max_error_rate.map(|p| p.fraction()), Some(0.01));
    assert!(load.thresholds_pass);
    assert_eq!(stack.secrets.len(), 4);
    let api = &stack.services["api"];
    assert_eq!(api.env["LOG_LEVEL"], "info");
    assert_eq!(api.env["COST"], "5$");
    assert_eq!(api.env["LITERAL"], "$HOME");
    assert_eq!(
        api.command.as_deref().map(|c| c[2].as_str()),
        Some("${PORT}")
    );
    assert_eq!(api.version.as_deref(), Some("1.4.0"));
    let runbook = &stack.runbooks["recover-api"];
    assert_eq!(runbook.steps.len(), 9);
    assert_eq!(runbook.rate_limit.as_ref().map(|r| r.runs), Some(3));
    assert_eq!(
        runbook.steps[2].action,
        wharf_manifest::model::StepAction::Restart {
            service: "${param:target}".to_owned()
        },
        "parameters stay symbolic until a run fills them"
    );
    assert_eq!(runbook.params["wait"].default.as_deref(), Some("30s"));
    let proxy = api.proxy.as_ref().expect("api has proxy settings");
    assert_eq!(
        proxy.upstream_timeout.map(|d| d.as_std().as_secs()),
        Some(120)
    );
    assert_eq!(
        proxy.tunnel_idle_timeout.map(|d| d.as_std().as_secs()),
        Some(4 * 3600)
    );
    assert_eq!(proxy.client_timeout.map(|d| d.as_std().as_secs()), Some(20));
    assert_eq!(proxy.header_timeout.map(|d| d.as_std().as_secs()), Some(15));
    assert_eq!(proxy.max_connections, Some(5000));
    assert_eq!(proxy.max_connections_per_client, Some(50));
    let rollout = api.rollout.as_ref().expect("api has a rollout");
    assert_eq!(
        rollout
            .steps
            .iter()
            .map(|s| s.weight.get())
            .collect::<Vec<_>>(),
        [5, 25, 100]
    );
    let web = stack.services["web"]
        .container
        .as_ref()
        .expect("web runs an image");
    use wharf_manifest::model::{AppProtocol, PortHost, ServicePort};
    assert_eq!(
        web.ports,
        [
            ServicePort {
                published: 9229,
                target: 9229,
                host_ip: PortHost::Loopback,
                app_protocol: AppProtocol::Tcp
            },
            ServicePort {
                published: 3001,
                target: 3001,
                host_ip: PortHost::Any,
                app_protocol: AppProtocol::Http
            }
        ]
    );
    let worker = &stack.services["worker"];
    assert_eq!(worker.command.as_deref().map(<[String]>::len), Some(3));
    let dev = load_clean(FULL, EnvironmentChoice::Default);
    assert_eq!(dev.environment.as_deref(), Some("dev"));
    assert_eq!(dev.services["api"].env["LOG_LEVEL"], "debug");
}

#[test]
fn rendered_manifest_loads_back_to_the_same_stack() {
    for environment in [
        EnvironmentChoice::Base,
        EnvironmentChoice::Named("dev"),
        EnvironmentChoice::Named("prod"),
    ] {
        let stack = load(FULL, environment, &common::variables)
            .stack
            .expect("the full manifest loads");
        let rendered = render(&stack);
        assert!(rendered.contains("${secret:PG_PASS}"), "{rendered}");
        assert!(rendered.contains("${secret:STRIPE_KEY}"), "{rendered}");
        assert!(
            rendered.contains("${PORT}"),
            "instance variables stay symbolic:\n{rendered}"
        );
        let again = load_clean(&rendered, EnvironmentChoice::Base);
        let mut expected = stack.into_inner();
        // The rendered text is the effective manifest; it has no overlays left to choose from.
        expected.environment = None;
        assert_eq!(again, expected, "{environment:?}:\n{rendered}");
    }
}

/// compose's and Docker's `on-failure:N` is a restart policy with a retry limit; it renders
/// back as written, and a limit that is not a positive number is refused at its position.
#[test]
fn on_failure_with_a_retry_limit() {
    use wharf_manifest::model::RestartPolicy;
    let source = "name: shop\nservices:\n  job:\n    command: [migrate]\n    restart: on-failure:3\n  web:\n    command: [web]\n    restart: on-failure\n";
    let stack = load(source, EnvironmentChoice::Default, &common::variables)
        .stack
        .expect("valid");
    assert_eq!(
        stack.services["job"].restart,
        RestartPolicy::OnFailure {
            max_retries: Some(3)
        }
    );
    assert_eq!(
        stack.services["web"].restart,
        RestartPolicy::OnFailure { max_retries: None }
    );
    let rendered = render(&stack);
    assert!(rendered.contains("restart: on-failure:3"), "{rendered}");
    assert_eq!(load_clean(&rendered, EnvironmentChoice::Default), *stack);

    let broken = source.replace("on-failure:3", "on-failure:0");
    let loaded = load(&broken, EnvironmentChoice::Default, &common::variables);
    let errors: Vec<_> = loaded
        .diagnostics
        .iter()
        .map(|d| (d.span.line, d.message.clone()))
        .collect();
    assert_eq!(
        errors,
        [(
            5,
            "`services.job.restart`: `0` is not a retry limit".to_owned()
        )]
    );
}
