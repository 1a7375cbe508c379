//! The Kubernetes rendering of manifests loaded as `wharf` loads them.

use serde_json::{Value, json};
use wharf_kube::{GatewayRef, RenderError, Target, render};
use wharf_manifest::{EnvironmentChoice, Stack, load};

fn stack(yaml: &str) -> Stack {
    let loaded = load(yaml, EnvironmentChoice::Default, &|_: &str| None);
    let errors: Vec<_> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == wharf_manifest::Severity::Error)
        .map(|d| d.message.clone())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    (*loaded.stack.expect("a valid stack")).clone()
}

fn find<'a>(objects: &'a [wharf_kube::Object], kind: &str, name: &str) -> &'a Value {
    &objects
        .iter()
        .find(|o| o.kind == kind && o.name == name)
        .unwrap_or_else(|| {
            let all: Vec<_> = objects.iter().map(|o| (o.kind, &o.name)).collect();
            panic!("no {kind} {name} in {all:?}")
        })
        .value
}

const SHOP: &str = r#"
name: shop
secrets:
  DB_PASSWORD: {}
  TLS_KEY: {}
  API_TOKEN: {}
services:
  api:
    image: registry.example.com/api:1.4.0
    command: [serve, --port, "${PORT}", --cost, "$$5"]
    port: 8080
    container_port: 3000
    replicas: 3
    env:
      LOG_LEVEL: info
      DATABASE_URL: "postgres://app:${secret:DB_PASSWORD}@db:5432/app"
    secrets: [API_TOKEN]
    secret_files: [TLS_KEY]
    probes:
      live: {http: {path: /health}, interval: 5s, start_period: 30s}
      ready: {http: {path: /ready, expect_status: [200]}, interval: 1500ms, timeout: 500ms, failure_threshold: 3}
  db:
    kind: postgres
    image: postgres:16
    port: 5432
    volumes: ["pgdata:/var/lib/postgresql/data"]
    probes:
      ready: {exec: {command: [pg_isready, -U, app]}, interval: 2s}
  migrate:
    image: registry.example.com/api:1.4.0
    command: [migrate]
    restart: never
  cache:
    kind: redis
    url: redis://cache.internal:6379
"#;

#[test]
fn a_stack_becomes_deployments_services_and_a_secret_without_values() {
    let rendered = render(&stack(SHOP), &Target::default()).unwrap();
    let objects = &rendered.objects;

    let deployment = find(objects, "Deployment", "api-1-4-0");
    assert_eq!(deployment["apiVersion"], "apps/v1");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/name"], "api");
    assert_eq!(labels["app.kubernetes.io/version"], "1.4.0");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "wharf");
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"],
        json!({"app.kubernetes.io/name": "api", "app.kubernetes.io/part-of": "shop", "app.kubernetes.io/version": "1.4.0"})
    );
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.example.com/api:1.4.0");
    // wharf's `command` replaces the image's CMD: Kubernetes' `args`. Literal `$` doubled.
    assert_eq!(
        container["args"],
        json!(["serve", "--port", "$(PORT)", "--cost", "$$5"])
    );
    assert!(container.get("command").is_none());
    assert_eq!(container["ports"][0]["containerPort"], 3000);

    let env = container["env"].as_array().unwrap();
    let position = |name: &str| env.iter().position(|e| e["name"] == name).unwrap();
    assert_eq!(env[position("PORT")]["value"], "3000");
    assert_eq!(env[position("VERSION")]["value"], "1.4.0");
    // A secret inside a value: its own variable first, then the value that splices it.
    let secret_var = position("WHARF_SECRET_DB_PASSWORD");
    let url = position("DATABASE_URL");
    assert!(secret_var < url);
    assert_eq!(
        env[secret_var]["valueFrom"]["secretKeyRef"],
        json!({"name": "shop-secrets", "key": "DB_PASSWORD"})
    );
    assert_eq!(
        env[url]["value"],
        "postgres://app:$(WHARF_SECRET_DB_PASSWORD)@db:5432/app"
    );
    assert_eq!(
        env[position("API_TOKEN")]["valueFrom"]["secretKeyRef"]["key"],
        "API_TOKEN"
    );
    // Plain values go through the version's ConfigMap.
    assert_eq!(
        container["envFrom"][0]["configMapRef"]["name"],
        "api-1-4-0-env"
    );
    let config = find(objects, "ConfigMap", "api-1-4-0-env");
    assert_eq!(config["data"], json!({"LOG_LEVEL": "info"}));

    // Secret files: mounted read-only from the stack's Secret.
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][0]["secret"]["secretName"], "shop-secrets");
    assert_eq!(pod["volumes"][0]["secret"]["items"][0]["key"], "TLS_KEY");
    assert_eq!(
        container["volumeMounts"][0]["mountPath"],
        "/run/secrets/wharf"
    );

    // The one Secret names every key and holds no value.
    let secret = find(objects, "Secret", "shop-secrets");
    assert!(secret.get("data").is_none() && secret.get("stringData").is_none());
    assert_eq!(
        secret["metadata"]["annotations"]["wharf.dev/keys"],
        "DB_PASSWORD,API_TOKEN,TLS_KEY"
    );

    // Probes: periods in whole seconds (rounded up), a startup probe for the start period.
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/health");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], 3000);
    assert_eq!(container["startupProbe"]["periodSeconds"], 5);
    assert_eq!(container["startupProbe"]["failureThreshold"], 6 + 3);
    assert_eq!(container["readinessProbe"]["periodSeconds"], 2);
    assert_eq!(container["readinessProbe"]["timeoutSeconds"], 1);
    assert!(
        rendered
            .notes
            .iter()
            .any(|n| n.contains("`api`, probe `ready`") && n.contains("200 to 399"))
    );

    // Three replicas: a budget of one pod away at a time.
    let budget = find(objects, "PodDisruptionBudget", "api-1-4-0");
    assert_eq!(budget["spec"]["maxUnavailable"], 1);

    // The Service selects every version, on the public port, to the container's.
    let service = find(objects, "Service", "api");
    assert_eq!(service["spec"]["ports"][0]["port"], 8080);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], 3000);
    assert!(
        service["spec"]["selector"]
            .get("app.kubernetes.io/version")
            .is_none()
    );
}

#[test]
fn datastores_one_shot_jobs_and_volumes() {
    let rendered = render(&stack(SHOP), &Target::default()).unwrap();
    let objects = &rendered.objects;

    let db = find(objects, "Deployment", "db-16");
    assert_eq!(db["spec"]["strategy"]["type"], "Recreate");
    let pod = &db["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "shop-pgdata"
    );
    assert_eq!(
        pod["containers"][0]["readinessProbe"]["exec"]["command"],
        json!(["pg_isready", "-U", "app"])
    );
    let claim = find(objects, "PersistentVolumeClaim", "shop-pgdata");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "1Gi");

    let job = find(objects, "Job", "migrate-1-4-0");
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");

    // The external redis is not rendered, and the operator is told.
    assert!(objects.iter().all(|o| !o.name.starts_with("cache")));
    assert!(rendered.notes.iter().any(|n| n.contains("`cache`")));

    // Claims and the Secret come before what uses them.
    let index = |kind: &str| objects.iter().position(|o| o.kind == kind).unwrap();
    assert!(index("Secret") < index("Deployment"));
    assert!(index("PersistentVolumeClaim") < index("Deployment"));
}

#[test]
fn with_a_gateway_each_version_gets_a_service_and_the_route_weights_it() {
    let target = Target {
        namespace: Some("shop-prod".into()),
        gateway: Some(GatewayRef {
            name: "edge".into(),
            namespace: Some("infra".into()),
        }),
        router: None,
    };
    let rendered = render(&stack(SHOP), &target).unwrap();
    let objects = &rendered.objects;
    let route = find(objects, "HTTPRoute", "api");
    assert_eq!(route["apiVersion"], "gateway.networking.k8s.io/v1");
    assert_eq!(route["metadata"]["namespace"], "shop-prod");
    assert_eq!(
        route["spec"]["parentRefs"][0],
        json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "edge", "namespace": "infra", "port": 8080})
    );
    assert_eq!(
        route["spec"]["rules"][0]["backendRefs"],
        json!([{"group": "", "kind": "Service", "name": "api-1-4-0", "port": 8080, "weight": 100}])
    );
    let version_service = find(objects, "Service", "api-1-4-0");
    assert_eq!(
        version_service["spec"]["selector"]["app.kubernetes.io/version"],
        "1.4.0"
    );
    assert!(
        objects
            .iter()
            .all(|o| o.value["metadata"]["namespace"] == "shop-prod")
    );
    // Routes come last: their backends exist when they are applied.
    assert_eq!(objects.last().unwrap().kind, "HTTPRoute");
}

#[test]
fn with_wharfs_router_each_service_gets_router_pods_in_front_of_its_versions() {
    let target = Target {
        namespace: Some("shop-prod".into()),
        gateway: None,
        router: Some(wharf_kube::RouterSpec {
            image: "registry.example.com/wharf-proxy:0.1".into(),
        }),
    };
    let rendered = render(&stack(SHOP), &target).unwrap();
    let objects = &rendered.objects;
    assert!(objects.iter().all(|o| o.kind != "HTTPRoute"));
    // The service's own Service selects the router pods, never a version's.
    let front = find(objects, "Service", "api");
    assert_eq!(
        front["spec"]["selector"],
        json!({"app.kubernetes.io/component": "router", "app.kubernetes.io/name": "api", "app.kubernetes.io/part-of": "shop"})
    );
    assert_eq!(front["spec"]["ports"][0]["port"], 8080);
    assert_eq!(front["spec"]["ports"][0]["targetPort"], 8080);
    // The version's Service, which only the router reaches: on the container's port.
    let version = find(objects, "Service", "api-1-4-0");
    assert_eq!(
        version["spec"]["selector"]["app.kubernetes.io/version"],
        "1.4.0"
    );
    assert_eq!(version["spec"]["ports"][0]["port"], 3000);
    let router = find(objects, "Deployment", "api-router");
    assert_eq!(router["spec"]["replicas"], 2);
    assert_eq!(
        router["spec"]["selector"]["matchLabels"],
        front["spec"]["selector"]
    );
    let pod = &router["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "registry.example.com/wharf-proxy:0.1");
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for expected in [
        "--admin-listen",
        "0.0.0.0:9901",
        "--seed",
        "/etc/wharf-router/table.json",
    ] {
        assert!(args.contains(&expected), "{args:?}");
    }
    // The token from the stack's router Secret, never in the object.
    assert_eq!(
        container["env"][0],
        json!({"name": "WHARF_PROXY_ADMIN_TOKEN", "valueFrom": {"secretKeyRef": {"name": "shop-router", "key": "admin-token"}}})
    );
    assert_eq!(container["readinessProbe"]["tcpSocket"]["port"], 8080);
    assert_eq!(
        container["ports"][1],
        json!({"containerPort": 9901, "name": "admin", "protocol": "TCP"})
    );
    assert_eq!(pod["volumes"][2]["configMap"]["name"], "api-router");
    let budget = find(objects, "PodDisruptionBudget", "api-router");
    assert_eq!(
        budget["spec"]["selector"]["matchLabels"],
        front["spec"]["selector"]
    );
    // The table is the cluster's to fill (its Services' IPs): empty as rendered, and said so.
    let table: Value = serde_json::from_str(
        find(objects, "ConfigMap", "api-router")["data"]["table.json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(table, json!({"revision": 0, "services": {}}));
    assert_eq!(rendered.unfilled_tables, ["api"]);
    let secret = find(objects, "Secret", "shop-router");
    assert!(secret.get("data").is_none(), "no token in a rendered file");
    // Neither the one-shot `migrate` nor the database `db` (not HTTP, one version at a time)
    // gets a router: `db`'s Service selects its pods.
    assert!(
        objects
            .iter()
            .all(|o| o.name != "migrate-router" && o.name != "db-router")
    );
    assert!(
        find(objects, "Service", "db")["spec"]["selector"]["app.kubernetes.io/component"].is_null()
    );

    // A Gateway and the router both split: refused, whichever service.
    let both = Target {
        gateway: Some(GatewayRef {
            name: "edge".into(),
            namespace: None,
        }),
        ..target
    };
    assert_eq!(
        render(&stack(SHOP), &both).unwrap_err(),
        vec![RenderError::TwoRouters]
    );
}

#[test]
fn what_a_cluster_cannot_run_is_refused_with_every_service_named() {
    let errors = render(
        &stack(
            r#"
name: local
services:
  web:
    command: [./serve]
    port: 8080
  files:
    image: nginx:1.27
    volumes: ["./site:/usr/share/nginx/html:ro"]
  web-front:
    image: nginx:1.27
  Web_Front:
    image: nginx:1.27
"#,
        ),
        &Target::default(),
    )
    .unwrap_err();
    assert!(errors.contains(&RenderError::NoImage {
        service: "web".into()
    }));
    assert!(errors.contains(&RenderError::BindMount {
        service: "files".into(),
        source_path: "./site".into()
    }));
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, RenderError::NameClash { name, .. } if name == "web-front"))
    );
    let message = RenderError::NoImage {
        service: "web".into(),
    }
    .to_string();
    assert!(message.contains("service `web`") && message.contains("`image:`"));
}

#[test]
fn the_yaml_stream_reads_back_to_the_same_objects() {
    let rendered = render(&stack(SHOP), &Target::default()).unwrap();
    let text = rendered.to_yaml();
    let documents: Vec<&str> = text.split("---\n").filter(|d| !d.is_empty()).collect();
    assert_eq!(documents.len(), rendered.objects.len());
    for (document, object) in documents.iter().zip(&rendered.objects) {
        let (node, diagnostics) = wharf_manifest::yaml::parse(document);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        assert_eq!(to_json(&node.unwrap()), object.value, "{}", object.name);
    }
    assert!(!text.contains("supabase") && !text.contains("password:"));
}

/// A parsed YAML node as JSON, with YAML 1.2's core schema for plain scalars.
fn to_json(node: &wharf_manifest::yaml::Node) -> Value {
    use wharf_manifest::yaml::NodeKind;
    match &node.kind {
        NodeKind::Null => Value::Null,
        NodeKind::Scalar {
            value,
            quoted: true,
        } => Value::String(value.clone()),
        NodeKind::Scalar { value, .. } => match value.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "null" | "~" => Value::Null,
            text => text
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(text.to_owned())),
        },
        NodeKind::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
        NodeKind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.as_str().unwrap().to_owned(), to_json(v)))
                .collect(),
        ),
    }
}

#[test]
fn container_options_ports_and_stop_reach_the_pod_and_what_has_no_equivalent_is_said() {
    let rendered = render(
        &stack(
            r#"
name: data
networks:
  back: {internal: true}
services:
  cache:
    image: registry.example.com/cache:2
    port: 8080
    ports: ["6379:6379"]
    user: "999:998"
    working_dir: /srv
    read_only: true
    cap_drop: [ALL]
    cap_add: [CAP_NET_BIND_SERVICE]
    tmpfs: ["/tmp"]
    shm_size: 64m
    ulimits: {nofile: 4096}
    networks: [default, back]
    stop: {signal: SIGQUIT, grace: 45s}
"#,
        ),
        &Target::default(),
    )
    .unwrap();
    let objects = &rendered.objects;
    let pod = &find(objects, "Deployment", "cache-2")["spec"]["template"]["spec"];
    assert_eq!(pod["terminationGracePeriodSeconds"], 45);
    let container = &pod["containers"][0];
    assert_eq!(container["workingDir"], "/srv");
    assert_eq!(
        container["securityContext"],
        json!({
            "runAsUser": 999,
            "runAsGroup": 998,
            "readOnlyRootFilesystem": true,
            "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}
        })
    );
    assert_eq!(container["ports"][1]["containerPort"], 6379);
    let mounts = container["volumeMounts"].as_array().unwrap();
    assert!(mounts.iter().any(|m| m["mountPath"] == "/tmp"));
    assert!(mounts.iter().any(|m| m["mountPath"] == "/dev/shm"));
    let shm = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "shm")
        .unwrap();
    assert_eq!(
        shm["emptyDir"],
        json!({"medium": "Memory", "sizeLimit": "67108864"})
    );
    let service = find(objects, "Service", "cache");
    assert_eq!(service["spec"]["ports"][1]["port"], 6379);
    assert_eq!(service["spec"]["ports"][1]["targetPort"], 6379);
    for said in ["`ulimits`", "`networks`", "`stop.signal`"] {
        assert!(
            rendered.notes.iter().any(|n| n.contains(said)),
            "{said}: {:?}",
            rendered.notes
        );
    }
}

#[test]
fn a_service_built_here_without_an_image_is_refused() {
    let errors = render(
        &stack("name: app\nservices:\n  web:\n    build: .\n    port: 8080\n"),
        &Target::default(),
    )
    .unwrap_err();
    assert_eq!(
        errors,
        [RenderError::BuiltHere {
            service: "web".into()
        }]
    );
    assert!(errors[0].to_string().contains("build and push it"));
}
