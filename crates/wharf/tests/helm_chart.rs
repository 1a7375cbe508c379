//! The Helm chart of wharf's cluster controller (`packaging/helm/wharf`), through Helm's own Go
//! SDK — PyPI `helm-python-sdk`, Helm v4, driven by `tests/helm_chart.py` — and every rendered
//! object through `kubernetes-validate --strict`; both installed by `scripts/test`. The chart is
//! linted strictly, rendered with its credentials inline and from existing Secrets, and refused
//! with bad values. No cluster is involved: these check what Helm renders, not how a cluster
//! runs it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{free_port, kubernetes_validate, postgres_database};
use serde_json::Value;

const DSN: &str = "postgres://wharf:dsn-password-3141@db.ops.svc:5432/wharf";
const MASTER_KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const API_TOKEN: &str = "api-token-2718281828459045";

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/helm/wharf")
}

/// Runs `tests/helm_chart.py ACTION` on the chart with `values` as its values file.
fn helm(action: &str, values: &str, extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.yaml");
    std::fs::write(&file, values).unwrap();
    let output = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helm_chart.py"))
        .arg(action)
        .arg(chart())
        .arg(&file)
        .args(extra)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "tests/helm_chart.py {action} failed (scripts/test installs helm-python-sdk): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// What Helm rendered for release `wharf` in namespace `ops`.
struct Rendered {
    answer: Value,
}

impl Rendered {
    fn objects(&self) -> impl Iterator<Item = &Value> {
        self.answer["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| &o["object"])
    }

    fn kinds(&self) -> BTreeSet<&str> {
        self.objects()
            .map(|o| o["kind"].as_str().unwrap())
            .collect()
    }

    fn one(&self, kind: &str) -> &Value {
        let mut found = self.objects().filter(|o| o["kind"] == kind);
        let object = found
            .next()
            .unwrap_or_else(|| panic!("no {kind} in {:?}", self.kinds()));
        assert!(found.next().is_none(), "more than one {kind}");
        object
    }

    fn container(&self) -> &Value {
        let containers = &self.one("Deployment")["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers.as_array().unwrap().len(), 1);
        &containers[0]
    }

    /// The container's command line, command then args.
    fn command_line(&self) -> Vec<String> {
        let container = self.container();
        let words = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default()
        };
        [words(&container["command"]), words(&container["args"])].concat()
    }

    fn env(&self, name: &str) -> &Value {
        self.container()["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no env {name}"))
    }

    fn pod_annotation(&self, name: &str) -> String {
        self.one("Deployment")["spec"]["template"]["metadata"]["annotations"][name]
            .as_str()
            .unwrap_or_else(|| panic!("no pod annotation {name}"))
            .to_owned()
    }
}

fn render(values: &str) -> Result<Rendered, String> {
    let answer = helm("render", values, &["wharf", "ops"]);
    if answer["ok"] == true {
        Ok(Rendered { answer })
    } else {
        Err(answer["message"].as_str().unwrap().to_owned())
    }
}

fn rendered(values: &str) -> Rendered {
    render(values).unwrap_or_else(|message| panic!("{message}\nvalues:\n{values}"))
}

fn refusal(values: &str) -> String {
    match render(values) {
        Ok(r) => panic!("rendered {:?} from bad values:\n{values}", r.kinds()),
        Err(message) => message,
    }
}

fn manifest(name: &str) -> String {
    format!(
        "manifest:\n  content: |\n    name: {name}\n    services:\n      api:\n        image: registry.example/api:1.0\n        port: 8080\n"
    )
}

/// Every credential and the manifest inline: the chart creates the Secret and the ConfigMap.
fn inline_values() -> String {
    inline_values_with(DSN, MASTER_KEY, API_TOKEN)
}

fn inline_values_with(dsn: &str, master_key: &str, api_token: &str) -> String {
    format!(
        "state:\n  dsn: {dsn:?}\nmasterKey:\n  value: {master_key:?}\napiToken:\n  value: {api_token:?}\n{}",
        manifest("shop")
    )
}

/// Every credential and the manifest from objects the operator manages.
const EXISTING_VALUES: &str = "
state: {existingSecret: wharf-db, existingSecretKey: url}
masterKey: {existingSecret: wharf-keys, existingSecretKey: master}
apiToken: {existingSecret: wharf-keys}
manifest: {existingConfigMap: shop-manifest, existingConfigMapKey: stack.yaml}
targetNamespace: shop
spreadAcrossNodes: hard
controller:
  env: prod
  prometheus: http://prometheus.monitoring.svc:9090
  requestsQuery: sum(requests{version=\"{version}\"})
";

#[test]
fn the_chart_passes_helms_strict_lint() {
    for values in [inline_values(), EXISTING_VALUES.to_owned(), "{}".to_owned()] {
        let report = helm("lint", &values, &[]);
        let problems: Vec<&Value> = report["messages"]
            .as_array()
            .unwrap()
            .iter()
            // 1 is information ("icon is recommended"); 2 a warning, 3 an error.
            .filter(|m| m["severity"].as_i64().unwrap() >= 2)
            .collect();
        assert!(problems.is_empty(), "{problems:#?}\nvalues:\n{values}");
        assert_eq!(report["errors"], serde_json::json!([]), "{report:#}");
    }
    // Lint checks the values against the schema (not the chart's own `fail`s, which Helm's
    // lint mode lets pass: rendering refuses those, below).
    let report = helm("lint", "replicas: two\n", &[]);
    assert!(
        report["errors"].to_string().contains("/replicas"),
        "{report:#}"
    );
}

#[test]
fn every_rendered_object_passes_the_strict_kubernetes_schemas() {
    for values in [inline_values(), EXISTING_VALUES.to_owned()] {
        let rendered = rendered(&values);
        let yaml = rendered.answer["yaml"].as_str().unwrap();
        let (valid, report) = kubernetes_validate(yaml);
        assert!(valid, "{report}\n{yaml}");
    }
    let inline = rendered(&inline_values());
    assert_eq!(
        inline.kinds(),
        BTreeSet::from([
            "ConfigMap",
            "Deployment",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Secret",
            "Service",
            "ServiceAccount"
        ])
    );
    // The validator is strict: one unknown field in the Deployment fails the stream.
    let yaml = inline.answer["yaml"].as_str().unwrap();
    let broken = yaml.replacen("  replicas: 2\n", "  replicas: 2\n  replicaz: 2\n", 1);
    assert_ne!(broken, yaml);
    let (valid, report) = kubernetes_validate(&broken);
    assert!(!valid && report.contains("replicaz"), "{report}");
}

#[test]
fn the_deployment_runs_two_replicas_of_cluster_serve_with_its_credentials_from_secret_refs() {
    let rendered = rendered(&inline_values());
    let deployment = rendered.one("Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let strategy = &deployment["spec"]["strategy"];
    assert_eq!(strategy["type"], "RollingUpdate");
    assert_eq!(strategy["rollingUpdate"]["maxUnavailable"], 0);

    let line = rendered.command_line();
    let text = line.join(" ");
    assert!(
        text.starts_with("wharf --file /etc/wharf/wharf.yaml --state-dir /var/lib/wharf cluster serve --listen 0.0.0.0:7070 "),
        "{text}"
    );
    // The release namespace drives its own stack unless targetNamespace says otherwise.
    for flag in [
        "--namespace ops",
        "--lease-ttl 10s",
        "--interval 1s",
        "--drain-grace 10s",
    ] {
        assert!(text.contains(flag), "no {flag} in {text}");
    }
    for absent in [
        "--env",
        "--prometheus",
        "--requests-query",
        "--errors-query",
    ] {
        assert!(!line.iter().any(|w| w == absent), "{absent} in {text}");
    }

    for (name, key) in [
        ("WHARF_STATE_DSN", "state-dsn"),
        ("WHARF_MASTER_KEY", "master-key"),
        ("WHARF_API_TOKEN", "api-token"),
    ] {
        let env = rendered.env(name);
        assert!(env.get("value").is_none(), "{name} has a literal value");
        assert_eq!(
            env["valueFrom"]["secretKeyRef"],
            serde_json::json!({"name": "wharf", "key": key}),
            "{name}"
        );
    }
    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_IP", "status.podIP"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        assert_eq!(
            rendered.env(name)["valueFrom"]["fieldRef"]["fieldPath"],
            field
        );
    }

    let container = rendered.container();
    // The image's default tag is the chart's appVersion, which is the workspace's version.
    assert_eq!(
        container["image"],
        format!("wharf:{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(container["ports"][0]["containerPort"], 7070);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/health");
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"],
        "/health/ready"
    );
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    // A Service named `wharf` would otherwise put WHARF_PORT & co. into wharf's environment.
    assert_eq!(pod["enableServiceLinks"], false);
    assert_eq!(pod["serviceAccountName"], "wharf");
    // The state directory is writable scratch space on the read-only root.
    let mounts = container["volumeMounts"].as_array().unwrap();
    let state = mounts
        .iter()
        .find(|m| m["mountPath"] == "/var/lib/wharf")
        .expect("/var/lib/wharf is mounted");
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == state["name"])
        .unwrap();
    assert!(volume["emptyDir"].is_object(), "{volume}");
    let manifest = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["configMap"].is_object())
        .unwrap();
    assert_eq!(manifest["configMap"]["name"], "wharf");
    assert_eq!(
        manifest["configMap"]["items"][0],
        serde_json::json!({"key": "wharf.yaml", "path": "wharf.yaml"})
    );
    // The two replicas are spread across nodes, preferably.
    let spread = &pod["topologySpreadConstraints"][0];
    assert_eq!(spread["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(spread["whenUnsatisfiable"], "ScheduleAnyway");
    assert_eq!(
        spread["labelSelector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );

    // The Service selects the pods on the controller's port.
    let service = rendered.one("Service");
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(service["spec"]["ports"][0]["port"], 7070);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
}

#[test]
fn existing_secrets_and_config_map_are_referenced_and_nothing_is_copied() {
    let rendered = rendered(EXISTING_VALUES);
    // The chart creates no Secret and no ConfigMap of its own.
    assert!(
        !rendered.kinds().contains("Secret"),
        "{:?}",
        rendered.kinds()
    );
    assert!(!rendered.kinds().contains("ConfigMap"));
    for (name, secret, key) in [
        ("WHARF_STATE_DSN", "wharf-db", "url"),
        ("WHARF_MASTER_KEY", "wharf-keys", "master"),
        ("WHARF_API_TOKEN", "wharf-keys", "api-token"),
    ] {
        assert_eq!(
            rendered.env(name)["valueFrom"]["secretKeyRef"],
            serde_json::json!({"name": secret, "key": key}),
            "{name}"
        );
    }
    let volumes = &rendered.one("Deployment")["spec"]["template"]["spec"]["volumes"];
    let manifest = volumes
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["configMap"].is_object())
        .unwrap();
    assert_eq!(
        manifest["configMap"],
        serde_json::json!({"name": "shop-manifest", "items": [{"key": "stack.yaml", "path": "wharf.yaml"}]})
    );
    let text = rendered.command_line().join(" ");
    for flag in [
        "--namespace shop",
        "--env prod",
        "--prometheus http://prometheus.monitoring.svc:9090",
        "--requests-query sum(requests{version=\"{version}\"})",
    ] {
        assert!(text.contains(flag), "no {flag} in {text}");
    }
    // `hard`: never two replicas on one node.
    let pod = &rendered.one("Deployment")["spec"]["template"]["spec"];
    assert_eq!(
        pod["topologySpreadConstraints"][0]["whenUnsatisfiable"],
        "DoNotSchedule"
    );
    // Nothing of the chart's to watch: no checksum annotations.
    let template = &rendered.one("Deployment")["spec"]["template"]["metadata"];
    assert!(template.get("annotations").is_none(), "{template}");
    // The notes tell how to read the token from the operator's Secret.
    let notes = rendered.answer["notes"].as_str().unwrap();
    assert!(
        notes.contains("get secret wharf-keys -o jsonpath='{.data.api-token}'"),
        "{notes}"
    );
}

#[test]
fn a_credential_from_an_existing_secret_beside_inline_ones_stays_out_of_the_charts_secret() {
    let values = inline_values().replace(
        &format!("state:\n  dsn: {DSN:?}\n"),
        "state:\n  existingSecret: wharf-db\n",
    );
    let rendered = rendered(&values);
    let data = rendered.one("Secret")["data"].as_object().unwrap();
    assert_eq!(
        data.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from(["api-token", "master-key"])
    );
    assert_eq!(
        rendered.env("WHARF_STATE_DSN")["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "wharf-db", "key": "dsn"})
    );
    assert_eq!(
        rendered.env("WHARF_MASTER_KEY")["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "wharf", "key": "master-key"})
    );
}

#[test]
fn the_credentials_appear_only_in_the_secret_and_never_in_an_error() {
    use base64::Engine as _;
    let rendered = rendered(&inline_values());
    let secret = rendered.one("Secret");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    assert_eq!(
        secret["data"],
        serde_json::json!({"state-dsn": b64(DSN), "master-key": b64(MASTER_KEY), "api-token": b64(API_TOKEN)})
    );
    for value in [DSN, MASTER_KEY, API_TOKEN, "dsn-password-3141"] {
        for object in rendered.objects() {
            let text = object.to_string();
            let kind = object["kind"].as_str().unwrap();
            assert!(!text.contains(value), "{kind} holds a credential in clear");
            if kind != "Secret" {
                assert!(!text.contains(&b64(value)), "{kind} holds a credential");
            }
        }
        assert!(!rendered.answer["notes"].as_str().unwrap().contains(value));
    }

    // A malformed credential is refused without repeating it.
    for (values, says) in [
        (
            inline_values_with(DSN, "not-hex-key-material-7777", API_TOKEN),
            "masterKey.value must be 64 hex characters",
        ),
        (
            inline_values_with("mysql://root:hunter2-7777@db/wharf", MASTER_KEY, API_TOKEN),
            "state.dsn is not a PostgreSQL DSN",
        ),
        (
            inline_values_with(DSN, MASTER_KEY, "short-7777"),
            "apiToken.value must be at least 16 characters",
        ),
    ] {
        let message = refusal(&values);
        assert!(message.contains(says), "{message}");
        assert!(
            !message.contains("7777"),
            "the error repeats the value: {message}"
        );
    }
}

/// The API resources each kind in `crates/kube/src/cluster.rs`'s `resource()` maps to
/// (group, plural): the kinds wharf's cluster code can ask the API server about.
fn kinds_crates_kube_knows() -> BTreeSet<(String, String)> {
    let source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../kube/src/cluster.rs"),
    )
    .unwrap();
    let body = source
        .split("pub fn resource(kind: &str)")
        .nth(1)
        .expect("cluster.rs has resource()")
        .split("other =>")
        .next()
        .unwrap();
    body.lines()
        .filter_map(|line| {
            let (_, tuple) = line.split_once("=> (")?;
            let parts: Vec<&str> = tuple
                .trim_end_matches("),")
                .split(',')
                .map(|p| p.trim().trim_matches('"'))
                .collect();
            Some((parts[0].to_owned(), parts[2].to_owned()))
        })
        .collect()
}

#[test]
fn the_role_grants_exactly_the_verbs_wharfs_cluster_code_uses_in_the_target_namespace() {
    let values = format!("{}targetNamespace: shop\n", inline_values());
    let rendered = rendered(&values);
    let role = rendered.one("Role");
    assert_eq!(role["metadata"]["namespace"], "shop");
    let mut granted: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for rule in role["rules"].as_array().unwrap() {
        assert!(rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none());
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                let verbs = granted
                    .entry((
                        group.as_str().unwrap().to_owned(),
                        resource.as_str().unwrap().to_owned(),
                    ))
                    .or_default();
                for verb in rule["verbs"].as_array().unwrap() {
                    assert_ne!(verb, "*", "a wildcard verb");
                    verbs.insert(verb.as_str().unwrap().to_owned());
                }
            }
        }
    }
    // Where each verb comes from (crates/kube/src): create + patch, `Cluster::apply`'s
    // server-side apply (a create when the object is new) of every rendered kind, and
    // `patch_route`'s JSON patch; get, `Cluster::get`; list, `managed` and `pods`; watch,
    // `wait_available`; delete, `deploy.rs`'s `delete_version`; pods/proxy, `pod_request`'s GET
    // (get) and PUT (update) of router tables.
    let expected: BTreeMap<(String, String), BTreeSet<String>> = [
        (
            "apps",
            "deployments",
            &["get", "list", "watch", "create", "patch", "delete"][..],
        ),
        (
            "",
            "services",
            &["get", "list", "create", "patch", "delete"],
        ),
        (
            "",
            "configmaps",
            &["get", "list", "create", "patch", "delete"],
        ),
        ("", "secrets", &["get", "create", "patch"]),
        (
            "policy",
            "poddisruptionbudgets",
            &["list", "create", "patch", "delete"],
        ),
        (
            "gateway.networking.k8s.io",
            "httproutes",
            &["get", "list", "create", "patch"],
        ),
        ("batch", "jobs", &["create", "patch"]),
        ("", "persistentvolumeclaims", &["create", "patch"]),
        ("", "pods", &["list"]),
        ("", "pods/proxy", &["get", "update"]),
    ]
    .into_iter()
    .map(|(group, resource, verbs)| {
        (
            (group.to_owned(), resource.to_owned()),
            verbs.iter().map(|v| (*v).to_owned()).collect(),
        )
    })
    .collect();
    assert_eq!(granted, expected);
    // A kind added to crates/kube wants a rule here; a rule for a kind it dropped goes.
    let mut resources: BTreeSet<(String, String)> = granted.into_keys().collect();
    resources.remove(&(String::new(), "pods/proxy".to_owned()));
    assert_eq!(resources, kinds_crates_kube_knows());

    let binding = rendered.one("RoleBinding");
    assert_eq!(binding["metadata"]["namespace"], "shop");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(
        binding["subjects"][0],
        serde_json::json!({"kind": "ServiceAccount", "name": "wharf", "namespace": "ops"})
    );
    assert_eq!(
        rendered.one("ServiceAccount")["metadata"]["namespace"],
        "ops"
    );
    assert!(
        rendered
            .command_line()
            .join(" ")
            .contains("--namespace shop")
    );
}

#[test]
fn a_pod_disruption_budget_keeps_one_replica_through_a_drain() {
    let rendered = rendered(&inline_values());
    let pdb = rendered.one("PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        rendered.one("Deployment")["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn a_changed_manifest_or_credential_changes_the_pod_template_so_the_pods_roll() {
    let before = rendered(&inline_values());
    let manifest_changed = rendered(&inline_values().replace("name: shop", "name: shop2"));
    assert_ne!(
        before.pod_annotation("checksum/manifest"),
        manifest_changed.pod_annotation("checksum/manifest")
    );
    assert_eq!(
        before.pod_annotation("checksum/secret"),
        manifest_changed.pod_annotation("checksum/secret")
    );
    let token_changed = rendered(&inline_values().replace(API_TOKEN, "another-token-161803398874"));
    assert_ne!(
        before.pod_annotation("checksum/secret"),
        token_changed.pod_annotation("checksum/secret")
    );
    assert_eq!(
        before.pod_annotation("checksum/manifest"),
        token_changed.pod_annotation("checksum/manifest")
    );
    // The same values render the same template: an upgrade with nothing changed rolls nothing.
    assert_eq!(
        before.one("Deployment"),
        rendered(&inline_values()).one("Deployment")
    );
}

#[test]
fn bad_values_fail_rendering_with_a_message_naming_the_value() {
    // A values file with two mistakes: the schema check answers first, naming the field.
    let message = refusal(&format!(
        "replicas: two\nmasterKey: {{value: {MASTER_KEY:?}}}\napiToken: {{value: {API_TOKEN:?}}}\n{}",
        manifest("shop")
    ));
    assert!(
        message.contains("/replicas") && message.contains("want integer"),
        "{message}"
    );
    for (values, says) in [
        (
            inline_values().replace(&format!("state:\n  dsn: {DSN:?}\n"), ""),
            "state.dsn or state.existingSecret is required",
        ),
        (format!("{}replicas: 0\n", inline_values()), "/replicas"),
        (
            inline_values().replace("state:\n", "state:\n  existingSecret: db\n"),
            "state.dsn and state.existingSecret are both set",
        ),
        (
            inline_values().replace(&manifest("shop"), ""),
            "manifest.content or manifest.existingConfigMap is required",
        ),
        (
            format!("{}controller: {{leaseTtl: \"10\"}}\n", inline_values()),
            "/controller/leaseTtl",
        ),
        (format!("{}replicaz: 2\n", inline_values()), "replicaz"),
        (
            format!("{}spreadAcrossNodes: always\n", inline_values()),
            "/spreadAcrossNodes",
        ),
    ] {
        let message = refusal(&values);
        assert!(message.contains(says), "wanted {says:?} in: {message}");
    }
    // Nothing in this chart renders without its three credentials and a manifest.
    let message = refusal("{}");
    assert!(
        message.contains("state.dsn or state.existingSecret is required"),
        "{message}"
    );
}

/// The value an env entry of the container takes, as the kubelet would give it: from the
/// chart's Secret through its `secretKeyRef`, or from the pod through the downward API.
fn env_value(rendered: &Rendered, entry: &Value, pod: &str) -> String {
    use base64::Engine as _;
    if let Some(value) = entry["value"].as_str() {
        return value.to_owned();
    }
    if let Some(reference) = entry["valueFrom"]["secretKeyRef"].as_object() {
        let secret = rendered.one("Secret");
        assert_eq!(secret["metadata"]["name"], reference["name"]);
        let encoded = secret["data"][reference["key"].as_str().unwrap()]
            .as_str()
            .unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        return String::from_utf8(bytes).unwrap();
    }
    match entry["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
        Some("metadata.name") => pod.to_owned(),
        Some("status.podIP") => "127.0.0.1".to_owned(),
        Some("metadata.namespace") => "ops".to_owned(),
        other => panic!("an env source the test does not know: {other:?} in {entry}"),
    }
}

/// GET `path` on `port` with `token`: the status and the JSON body.
fn http_get(port: u16, path: &str, token: Option<&str>) -> Option<(u16, Value)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{auth}\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    let status = raw.split(' ').nth(1)?.parse().ok()?;
    Some((
        status,
        serde_json::from_str(raw.split_once("\r\n\r\n")?.1).unwrap_or(Value::Null),
    ))
}

/// The chart's own command line, environment and probes, run as two replicas the way the
/// kubelet would run its pods (the mounted manifest and emptyDir swapped for temp paths, the
/// listen port for a free one, the in-cluster account for a fake API server's kubeconfig):
/// one leads, the other stands by and answers the chart's probes and reads; when the leader
/// is killed, the other takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_command_line_runs_two_replicas_that_elect_a_leader_against_fake_apiserver() {
    let fake = wharf_fake_apiserver::FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kubeconfig"), fake.kubeconfig("shop")).unwrap();
    let (server, dsn) = tokio::task::spawn_blocking(postgres_database)
        .await
        .unwrap();
    let values = format!(
        "{}targetNamespace: shop\ncontroller:\n  leaseTtl: 2s\n",
        inline_values_with(&dsn, MASTER_KEY, API_TOKEN)
    );
    let rendered = rendered(&values);
    let manifest = rendered.one("ConfigMap")["data"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    std::fs::write(dir.path().join("wharf.yaml"), &manifest).unwrap();
    let container = rendered.container().clone();
    let probe = |name: &str| {
        container[name]["httpGet"]["path"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (liveness, readiness) = (probe("livenessProbe"), probe("readinessProbe"));

    let start = |pod: &str| {
        let port = free_port();
        let state = dir.path().join(pod);
        let mut words = rendered.command_line().into_iter();
        assert_eq!(words.next().as_deref(), Some("wharf"));
        let args: Vec<String> = words
            .map(|word| match word.as_str() {
                "/etc/wharf/wharf.yaml" => dir.path().join("wharf.yaml").display().to_string(),
                "/var/lib/wharf" => state.display().to_string(),
                "0.0.0.0:7070" => format!("0.0.0.0:{port}"),
                _ => word,
            })
            .collect();
        let mut command = Command::new(env!("CARGO_BIN_EXE_wharf"));
        command
            .args(&args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBECONFIG", dir.path().join("kubeconfig"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join(format!("{pod}.log"))).unwrap());
        for entry in container["env"].as_array().unwrap() {
            command.env(
                entry["name"].as_str().unwrap(),
                env_value(&rendered, entry, pod),
            );
        }
        (command.spawn().unwrap(), port)
    };
    let role = |port: u16| -> Option<String> {
        let (status, health) = http_get(port, &liveness, None)?;
        (status == 200).then(|| health["role"].as_str().unwrap_or("").to_owned())
    };
    let eventually = |what: &str, mut check: Box<dyn FnMut() -> bool + '_>| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !check() {
            let logs: Vec<String> = ["wharf-0", "wharf-1"]
                .iter()
                .map(|p| {
                    std::fs::read_to_string(dir.path().join(format!("{p}.log"))).unwrap_or_default()
                })
                .collect();
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}; logs: {logs:#?}"
            );
            std::thread::park_timeout(std::time::Duration::from_millis(50));
        }
    };

    let (mut first, first_port) = start("wharf-0");
    eventually(
        "wharf-0 to lead",
        Box::new(|| role(first_port).as_deref() == Some("leader")),
    );
    let (mut second, second_port) = start("wharf-1");
    eventually(
        "wharf-1 to stand by",
        Box::new(|| role(second_port).as_deref() == Some("standby")),
    );
    // Both pass the chart's readiness probe; the standby serves reads with the chart's token.
    for port in [first_port, second_port] {
        assert_eq!(http_get(port, &readiness, None).map(|r| r.0), Some(200));
    }
    let (status, view) = http_get(second_port, "/v1/cluster/status", Some(API_TOKEN)).unwrap();
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["namespace"], "shop", "{view}");
    assert_eq!(
        http_get(second_port, "/v1/cluster/status", None).map(|r| r.0),
        Some(401)
    );
    // The leader dies: the other takes over within the chart's lease TTL (plus a poll).
    first.kill().unwrap();
    first.wait().unwrap();
    eventually(
        "wharf-1 to take over",
        Box::new(|| role(second_port).as_deref() == Some("leader")),
    );
    second.kill().unwrap();
    second.wait().unwrap();
    drop(server);
}
