//! A fake Kubernetes API server for wharf's tests. No API server can run on the machines the
//! tests run on, so this one stands in for it — and every test that uses it says so in its name
//! (`…_against_fake_apiserver`).
//!
//! What it does, over real HTTP on a loopback port (what `kube`'s client speaks):
//! - stores namespaced objects of any kind under `/api/v1/…` and `/apis/GROUP/VERSION/…`, with
//!   `resourceVersion` (one counter for the whole server) and `metadata.generation` (bumped when
//!   `spec` changes), and answers get, list (`labelSelector`, `fieldSelector=metadata.name=…`),
//!   watch (`watch=true`, events after the given `resourceVersion`, then live), create,
//!   replace, delete and patch;
//! - server-side apply (`application/apply-patch+yaml`) with field managers recorded in
//!   `metadata.managedFields` as FieldsV1: an apply owns the fields it sends, removes the fields
//!   it owned before and no longer sends (unless another manager owns them too), and conflicts
//!   with another manager's differing value unless `force=true`. Simplified against the real
//!   one: maps merge key by key, lists are atomic (owned whole by their last writer);
//! - JSON patch (RFC 6902, `test` ops included, all or nothing) and JSON merge patch, whose
//!   changed fields become their `fieldManager`'s;
//! - the `status` subresource by merge patch (the test plays the controllers), and optionally
//!   a built-in "deployment controller" that marks every Deployment available as soon as it is
//!   written, except those the test holds;
//! - a log of every request that changed something, for the tests to assert the exact sequence;
//! - cluster IPs: a Service created without one gets one (`10.96.0.N`, or the address the test
//!   reserved for it with [`FakeApiServer::reserve_cluster_ip`] — a loopback address where a
//!   real process listens, since nothing here plays kube-proxy);
//! - the pods' `proxy` subresource (`/api/v1/namespaces/NS/pods/NAME[:PORT]/proxy/PATH`):
//!   the request forwarded over real HTTP to the stored pod's `status.podIP` and port (a pod the
//!   test wrote with `podIP: 127.0.0.1` and the port its process listens on), its answer passed
//!   back, as the API server does — `Authorization` removed first (the real one consumes it
//!   authenticating the caller), 503 when nothing answers. Each is kept in [`FakeApiServer::proxied`].

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

pub mod prometheus;

/// One request that changed (or tried to change) an object.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub method: String,
    /// `apply`, `json-patch`, `merge-patch`, `create`, `replace`, `delete`, `status`.
    pub kind: String,
    /// The object's path without the namespace prefix: `deployments/api-1`.
    pub resource: String,
    pub field_manager: Option<String>,
    pub force: bool,
    pub body: Value,
    /// The HTTP status answered.
    pub status: u16,
}

/// The JSON patches of the HTTPRoute `route` in `log`, each as the (backend, weight) list its
/// `replace` sets. Each must have been answered 200 and sent under field manager `wharf`.
pub fn route_patches(log: &[Recorded], route: &str) -> Vec<Vec<(String, u64)>> {
    let resource = format!("httproutes/{route}");
    log.iter()
        .filter(|r| r.kind == "json-patch" && r.resource == resource)
        .map(|r| {
            assert_eq!(r.status, 200, "{r:?}");
            assert_eq!(r.field_manager.as_deref(), Some("wharf"));
            let replace = r
                .body
                .as_array()
                .and_then(|ops| ops.iter().find(|op| op["op"] == "replace"))
                .unwrap_or_else(|| panic!("no replace in {r:?}"));
            replace["value"]
                .as_array()
                .unwrap_or_else(|| panic!("no backends in {r:?}"))
                .iter()
                .map(|b| {
                    (
                        b["name"].as_str().unwrap_or_default().to_owned(),
                        b["weight"].as_u64().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .collect()
}

/// Where an object lives: `apis/apps/v1` (or `api/v1`), namespace, plural, name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Key {
    group_version: String,
    namespace: String,
    plural: String,
    name: String,
}

#[derive(Debug, Clone)]
struct Change {
    resource_version: u64,
    kind: &'static str,
    key: Key,
    object: Value,
}

/// One request forwarded through a pod's `proxy` subresource, and its answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Proxied {
    pub method: String,
    pub pod: String,
    pub port: u16,
    /// The path on the pod, with its query: `/v1/routes`.
    pub path: String,
    pub body: String,
    pub status: u16,
    /// The headers that reached the pod (names lowercase).
    pub headers: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    objects: BTreeMap<Key, Value>,
    resource_version: u64,
    history: Vec<Change>,
    log: Vec<Recorded>,
    auto_available: bool,
    held: HashSet<String>,
    watches: Vec<String>,
    proxied: Vec<Proxied>,
    /// Cluster IPs reserved by the test, by `namespace/name`.
    cluster_ips: BTreeMap<String, String>,
    next_cluster_ip: u32,
}

/// The running fake; dropping it stops the server.
pub struct FakeApiServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    changes: broadcast::Sender<Change>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<State>>,
    changes: broadcast::Sender<Change>,
}

impl FakeApiServer {
    /// Starts on a free loopback port (inside the caller's tokio runtime).
    pub async fn start() -> FakeApiServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake API server");
        let addr = listener.local_addr().expect("its address");
        let state = Arc::new(Mutex::new(State {
            resource_version: 1000,
            ..State::default()
        }));
        let (changes, _) = broadcast::channel(1024);
        let shared = Shared {
            state: state.clone(),
            changes: changes.clone(),
        };
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let shared = shared.clone();
                async move { handle(shared, method, uri, headers, body).await }
            },
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeApiServer {
            addr,
            state,
            changes,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig naming this server (no credentials: it asks for none), for `--kubeconfig`.
    pub fn kubeconfig(&self, namespace: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {namespace}\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            self.url()
        )
    }

    /// Plays the deployment controller: every Deployment written from now on reports all its
    /// replicas available at once, unless its name is held ([`FakeApiServer::hold`]).
    pub fn auto_available(&self, on: bool) {
        self.state.lock().unwrap().auto_available = on;
    }

    /// Holds a Deployment unavailable (0 available) until [`FakeApiServer::release`].
    pub fn hold(&self, namespace: &str, name: &str) {
        let mut state = self.state.lock().unwrap();
        state.held.insert(name.to_owned());
        let key = deployment_key(namespace, name);
        if state.objects.contains_key(&key) {
            set_status(&mut state, &self.changes, &key, Some(0));
        }
    }

    /// Lets a held Deployment become available (all its replicas).
    pub fn release(&self, namespace: &str, name: &str) {
        let mut state = self.state.lock().unwrap();
        state.held.remove(name);
        let key = deployment_key(namespace, name);
        if state.objects.contains_key(&key) {
            set_status(&mut state, &self.changes, &key, None);
        }
    }

    /// The stored object, if any. `group_version` is `api/v1` or `apis/GROUP/VERSION`.
    pub fn get(
        &self,
        group_version: &str,
        namespace: &str,
        plural: &str,
        name: &str,
    ) -> Option<Value> {
        let key = Key {
            group_version: group_version.to_owned(),
            namespace: namespace.to_owned(),
            plural: plural.to_owned(),
            name: name.to_owned(),
        };
        self.state.lock().unwrap().objects.get(&key).cloned()
    }

    /// Names of the stored objects of one plural in a namespace.
    pub fn names(&self, namespace: &str, plural: &str) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .objects
            .keys()
            .filter(|k| k.namespace == namespace && k.plural == plural)
            .map(|k| k.name.clone())
            .collect()
    }

    /// Every watch opened so far: `deployments?metadata.name=api-1`.
    pub fn watches(&self) -> Vec<String> {
        self.state.lock().unwrap().watches.clone()
    }

    /// Every request forwarded to a pod so far, in order.
    pub fn proxied(&self) -> Vec<Proxied> {
        self.state.lock().unwrap().proxied.clone()
    }

    /// The cluster IP the Service `name` gets when it is created (a loopback address where
    /// the test runs what the Service stands for).
    pub fn reserve_cluster_ip(&self, namespace: &str, name: &str, ip: &str) {
        self.state
            .lock()
            .unwrap()
            .cluster_ips
            .insert(format!("{namespace}/{name}"), ip.to_owned());
    }

    /// Every changing request so far, in order.
    pub fn log(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().log.clone()
    }

    /// Stores `object` whole, status included, as a controller writes it — a Pod as the
    /// scheduler and kubelet would report it (`status.podIP`, `status.phase`).
    pub fn put(&self, group_version: &str, plural: &str, object: Value) {
        let key = Key {
            group_version: group_version.to_owned(),
            namespace: object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_owned(),
            plural: plural.to_owned(),
            name: object["metadata"]["name"].as_str().unwrap_or("").to_owned(),
        };
        let mut state = self.state.lock().unwrap();
        let created = !state.objects.contains_key(&key);
        store(&mut state, &self.changes, &key, object, created);
    }

    /// Writes an object as another field manager would (e.g. a GitOps tool), by server-side
    /// apply under `manager`.
    pub fn apply_as(&self, manager: &str, group_version: &str, plural: &str, object: Value) {
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_owned();
        let name = object["metadata"]["name"].as_str().unwrap_or("").to_owned();
        let key = Key {
            group_version: group_version.to_owned(),
            namespace,
            plural: plural.to_owned(),
            name,
        };
        let mut state = self.state.lock().unwrap();
        apply(&mut state, &self.changes, &key, object, manager, true).expect("apply as");
    }
}

fn deployment_key(namespace: &str, name: &str) -> Key {
    Key {
        group_version: "apis/apps/v1".to_owned(),
        namespace: namespace.to_owned(),
        plural: "deployments".to_owned(),
        name: name.to_owned(),
    }
}

/// The request's path as a key (name empty for a collection) and a subresource.
fn parse_path(path: &str) -> Option<(Key, Option<String>)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group_version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => (format!("api/{version}"), rest),
        ["apis", group, version, rest @ ..] => (format!("apis/{group}/{version}"), rest),
        _ => return None,
    };
    let ["namespaces", namespace, plural, tail @ ..] = rest else {
        return None;
    };
    let (name, sub) = match tail {
        [] => (String::new(), None),
        [name] => ((*name).to_owned(), None),
        [name, sub] => ((*name).to_owned(), Some((*sub).to_owned())),
        _ => return None,
    };
    Some((
        Key {
            group_version,
            namespace: (*namespace).to_owned(),
            plural: (*plural).to_owned(),
            name,
        },
        sub,
    ))
}

fn query_map(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                if let Ok(b) = u8::from_str_radix(hex, 16) {
                    out.push(b);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
    });
    (code, axum::Json(body)).into_response()
}

fn ok(value: &Value) -> Response {
    (StatusCode::OK, axum::Json(value.clone())).into_response()
}

type Failure = (StatusCode, &'static str, String);

async fn handle(
    shared: Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(target) = pod_proxy_path(uri.path()) {
        return pod_proxy(&shared, target, method, &uri, headers, body).await;
    }
    let Some((key, sub)) = parse_path(uri.path()) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("no route {}", uri.path()),
        );
    };
    let query = query_map(&uri);
    if method == Method::GET && key.name.is_empty() {
        if matches!(query.get("watch").map(String::as_str), Some("true" | "1")) {
            let selector = query.get("fieldSelector").cloned().unwrap_or_default();
            shared
                .state
                .lock()
                .unwrap()
                .watches
                .push(format!("{}?{selector}", key.plural));
            return watch(shared, key, query);
        }
        return list(&shared, &key, &query);
    }
    if method == Method::GET {
        let state = shared.state.lock().unwrap();
        return match state.objects.get(&key) {
            Some(object) => ok(object),
            None => not_found(&key),
        };
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let manager = query.get("fieldManager").cloned();
    let force = query.get("force").is_some_and(|v| v == "true");
    let parsed: Result<Value, String> = if body.is_empty() {
        Ok(Value::Null)
    } else {
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    };
    let mut state = shared.state.lock().unwrap();
    let (kind, result): (&str, Result<Value, Failure>) = match parsed {
        Err(e) => (
            "invalid",
            Err((StatusCode::BAD_REQUEST, "BadRequest", format!("body: {e}"))),
        ),
        Ok(body) => match (&method, sub.as_deref(), content_type.as_str()) {
            (&Method::PATCH, Some("status"), _) => (
                "status",
                patch_status(&mut state, &shared.changes, &key, &body),
            ),
            (&Method::PATCH, None, ct) if ct.starts_with("application/apply-patch") => {
                match &manager {
                    None => (
                        "apply",
                        Err((
                            StatusCode::BAD_REQUEST,
                            "BadRequest",
                            "fieldManager is required for apply patch".to_owned(),
                        )),
                    ),
                    Some(manager) => (
                        "apply",
                        apply(
                            &mut state,
                            &shared.changes,
                            &key,
                            body.clone(),
                            manager,
                            force,
                        ),
                    ),
                }
            }
            (&Method::PATCH, None, ct) if ct.starts_with("application/json-patch") => (
                "json-patch",
                json_patch(&mut state, &shared.changes, &key, &body, manager.as_deref()),
            ),
            (&Method::PATCH, None, ct) if ct.starts_with("application/merge-patch") => (
                "merge-patch",
                merge_patch(&mut state, &shared.changes, &key, &body, manager.as_deref()),
            ),
            (&Method::DELETE, None, _) => ("delete", delete(&mut state, &shared.changes, &key)),
            (&Method::POST, None, _) => {
                let mut key = key.clone();
                key.name = body["metadata"]["name"].as_str().unwrap_or("").to_owned();
                (
                    "create",
                    create(
                        &mut state,
                        &shared.changes,
                        &key,
                        body.clone(),
                        manager.as_deref(),
                    ),
                )
            }
            (&Method::PUT, None, _) => (
                "replace",
                replace(
                    &mut state,
                    &shared.changes,
                    &key,
                    body.clone(),
                    manager.as_deref(),
                ),
            ),
            _ => (
                "unsupported",
                Err((
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    format!("{method} {} ({content_type})", uri.path()),
                )),
            ),
        },
    };
    let code = match &result {
        Ok(_) => StatusCode::OK,
        Err((code, ..)) => *code,
    };
    state.log.push(Recorded {
        method: method.to_string(),
        kind: kind.to_owned(),
        resource: format!("{}/{}", key.plural, key.name),
        field_manager: manager,
        force,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        status: code.as_u16(),
    });
    match result {
        Ok(object) => ok(&object),
        Err((code, reason, message)) => status(code, reason, message),
    }
}

/// The API server's answer for an object that is not there.
fn missing(key: &Key) -> Failure {
    (
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{} \"{}\" not found", key.plural, key.name),
    )
}

fn not_found(key: &Key) -> Response {
    let (code, reason, message) = missing(key);
    status(code, reason, message)
}

/// The stored object, or [`missing`].
fn existing(state: &State, key: &Key) -> Result<Value, Failure> {
    state.objects.get(key).cloned().ok_or_else(|| missing(key))
}

fn selected(object: &Value, query: &BTreeMap<String, String>) -> bool {
    if let Some(selector) = query.get("labelSelector").filter(|s| !s.is_empty()) {
        let labels = &object["metadata"]["labels"];
        for term in selector.split(',') {
            let matched = match term.split_once('=') {
                Some((k, v)) => labels[k.trim_end_matches('=')].as_str() == Some(v),
                None => !labels[term].is_null(),
            };
            if !matched {
                return false;
            }
        }
    }
    if let Some(selector) = query.get("fieldSelector").filter(|s| !s.is_empty()) {
        for term in selector.split(',') {
            if let Some(("metadata.name", name)) = term.split_once('=')
                && object["metadata"]["name"].as_str() != Some(name.trim_start_matches('='))
            {
                return false;
            }
        }
    }
    true
}

fn same_collection(a: &Key, b: &Key) -> bool {
    a.group_version == b.group_version && a.namespace == b.namespace && a.plural == b.plural
}

fn list(shared: &Shared, key: &Key, query: &BTreeMap<String, String>) -> Response {
    let state = shared.state.lock().unwrap();
    let items: Vec<Value> = state
        .objects
        .iter()
        .filter(|(k, v)| same_collection(k, key) && selected(v, query))
        .map(|(_, v)| v.clone())
        .collect();
    ok(&json!({
        "kind": "List", "apiVersion": "v1",
        "metadata": {"resourceVersion": state.resource_version.to_string()},
        "items": items,
    }))
}

/// A watch: the stored changes after `resourceVersion`, then live ones, as JSON lines, until
/// `timeoutSeconds` (default 60) or the client goes away.
fn watch(shared: Shared, key: Key, query: BTreeMap<String, String>) -> Response {
    let since: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(60u64);
    let mut live = shared.changes.subscribe();
    let backlog: Vec<Change> = {
        let state = shared.state.lock().unwrap();
        state
            .history
            .iter()
            .filter(|c| c.resource_version > since)
            .cloned()
            .collect()
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        let line = |change: &Change| {
            let mut text =
                serde_json::to_vec(&json!({"type": change.kind, "object": change.object}))
                    .unwrap_or_default();
            text.push(b'\n');
            Bytes::from(text)
        };
        let mut last = since;
        for change in &backlog {
            if same_collection(&change.key, &key)
                && selected(&change.object, &query)
                && tx.send(Ok(line(change))).await.is_err()
            {
                return;
            }
            last = last.max(change.resource_version);
        }
        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                change = live.recv() => match change {
                    Ok(change) => {
                        if change.resource_version <= last {
                            continue;
                        }
                        last = change.resource_version;
                        if same_collection(&change.key, &key)
                            && selected(&change.object, &query)
                            && tx.send(Ok(line(&change))).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("a watch response")
}

/// Keeps the change at the current resource version for later watches and tells the
/// watchers that are open.
fn publish(
    state: &mut State,
    changes: &broadcast::Sender<Change>,
    kind: &'static str,
    key: &Key,
    object: &Value,
) {
    let change = Change {
        resource_version: state.resource_version,
        kind,
        key: key.clone(),
        object: object.clone(),
    };
    state.history.push(change.clone());
    let _ = changes.send(change);
}

/// Stores `object` under `key`: bumps the resource version, the generation when `spec`
/// changed, plays the deployment controller, and tells the watchers.
fn store(
    state: &mut State,
    changes: &broadcast::Sender<Change>,
    key: &Key,
    mut object: Value,
    created: bool,
) -> Value {
    state.resource_version += 1;
    let rv = state.resource_version;
    let previous = state.objects.get(key);
    let generation = match previous {
        None => 1,
        Some(old) => {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
            if old.get("spec") != object.get("spec") {
                g + 1
            } else {
                g
            }
        }
    };
    let uid = previous
        .and_then(|o| o["metadata"]["uid"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("uid-{rv}"));
    let meta = object
        .as_object_mut()
        .expect("an object")
        .entry("metadata")
        .or_insert_with(|| json!({}));
    meta["resourceVersion"] = json!(rv.to_string());
    meta["generation"] = json!(generation);
    meta["uid"] = json!(uid);
    meta["namespace"] = json!(key.namespace);
    meta["name"] = json!(key.name);
    // The API server allocates a Service's cluster IP when it is created.
    if key.plural == "services"
        && object["spec"].is_object()
        && object["spec"]["clusterIP"].is_null()
    {
        let reserved = state
            .cluster_ips
            .get(&format!("{}/{}", key.namespace, key.name))
            .cloned();
        let ip = reserved.unwrap_or_else(|| {
            state.next_cluster_ip += 1;
            format!(
                "10.96.{}.{}",
                state.next_cluster_ip / 250,
                state.next_cluster_ip % 250 + 1
            )
        });
        object["spec"]["clusterIP"] = json!(ip);
    }
    state.objects.insert(key.clone(), object.clone());
    publish(
        state,
        changes,
        if created { "ADDED" } else { "MODIFIED" },
        key,
        &object,
    );
    if key.plural == "deployments" && state.auto_available && !state.held.contains(&key.name) {
        return set_status(state, changes, key, None);
    }
    if key.plural == "deployments" && state.held.contains(&key.name) {
        return set_status(state, changes, key, Some(0));
    }
    object
}

/// The Deployment's status as its controller would write it: observed its generation, all
/// replicas updated, `available` of them available (all when `None`).
fn set_status(
    state: &mut State,
    changes: &broadcast::Sender<Change>,
    key: &Key,
    available: Option<i64>,
) -> Value {
    let Some(object) = state.objects.get(key).cloned() else {
        return Value::Null;
    };
    let replicas = object["spec"]["replicas"].as_i64().unwrap_or(1);
    let available = available.unwrap_or(replicas);
    let mut object = object;
    object["status"] = json!({
        "observedGeneration": object["metadata"]["generation"],
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": available,
        "availableReplicas": available,
    });
    state.resource_version += 1;
    let rv = state.resource_version;
    object["metadata"]["resourceVersion"] = json!(rv.to_string());
    state.objects.insert(key.clone(), object.clone());
    publish(state, changes, "MODIFIED", key, &object);
    object
}

fn delete(
    state: &mut State,
    changes: &broadcast::Sender<Change>,
    key: &Key,
) -> Result<Value, Failure> {
    let object = state.objects.remove(key).ok_or_else(|| missing(key))?;
    state.resource_version += 1;
    publish(state, changes, "DELETED", key, &object);
    Ok(
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": {"name": key.name}}),
    )
}

fn create(
    state: &mut State,
    changes: &broadcast::Sender<Change>,
    key: &Key,
    object: Value,
    manager: Option<&str>,
) -> Result<Value, Failure> {
    if state.objects.contains_key(key) {
        return Err((
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{} \"{}\" already exists", key.plural, key.name),
        ));
    }
    let mut object = object;
    record_update(&Value::Null, &mut object, manager.unwrap_or("unknown"));
    Ok(store(state, changes, key, object, true))
}

fn replace(
    state: &mut State,
    changes: &broadcast::Sender<Change>,
    key: &Key,
    object: Value,
    manager: Option<&str>,
) -> Result<Value, Failure> {
    let old = existing(state, key)?;
    let mut object = object;
    object["metadata"]["managedFields"] = old["metadata"]["managedFields"].clone();
    record_update(&old, &mut object, manager.unwrap_or("unknown"));
    Ok(store(state, changes, key, object, false))
}

fn patch_status(
    state: &mut State,
    changes: &broadcast::Sender<Change>,
    key: &Key,
    body: &Value,
) -> Result<Value, Failure> {
    let mut object = existing(state, key)?;
    let mut status = object["status"].take();
    json_patch::merge(&mut status, &body["status"]);
    object["status"] = status;
    state.resource_version += 1;
    object["metadata"]["resourceVersion"] = json!(state.resource_version.to_string());
    state.objects.insert(key.clone(), object.clone());
    publish(state, changes, "MODIFIED", key, &object);
    Ok(object)
}

fn json_patch(
    state: &mut State,
    changes: &broadcast::Sender<Change>,
    key: &Key,
    body: &Value,
    manager: Option<&str>,
) -> Result<Value, Failure> {
    let old = existing(state, key)?;
    let patch: json_patch::Patch = serde_json::from_value(body.clone()).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("not a JSON patch: {e}"),
        )
    })?;
    let mut object = old.clone();
    // All or nothing: a failed `test` (or any op) leaves the object as it was.
    json_patch::patch(&mut object, &patch).map_err(|e| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("the patch did not apply: {e}"),
        )
    })?;
    record_update(&old, &mut object, manager.unwrap_or("unknown"));
    Ok(store(state, changes, key, object, false))
}

fn merge_patch(
    state: &mut State,
    changes: &broadcast::Sender<Change>,
    key: &Key,
    body: &Value,
    manager: Option<&str>,
) -> Result<Value, Failure> {
    let old = existing(state, key)?;
    let mut object = old.clone();
    json_patch::merge(&mut object, body);
    record_update(&old, &mut object, manager.unwrap_or("unknown"));
    Ok(store(state, changes, key, object, false))
}

/// A field path (`["spec", "replicas"]`).
type FieldPath = Vec<String>;

/// Fields not tracked by managers: identity, bookkeeping and status.
fn tracked(path: &[String]) -> bool {
    match path {
        [first, ..] if first == "apiVersion" || first == "kind" || first == "status" => false,
        [meta, second, ..] if meta == "metadata" => !matches!(
            second.as_str(),
            "name"
                | "namespace"
                | "resourceVersion"
                | "generation"
                | "uid"
                | "managedFields"
                | "creationTimestamp"
        ),
        _ => true,
    }
}

/// The leaf fields of `value`: scalars, lists (atomic) and empty maps.
fn leaves(value: &Value) -> BTreeSet<FieldPath> {
    fn walk(value: &Value, path: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    path.push(k.clone());
                    walk(v, path, out);
                    path.pop();
                }
            }
            _ => {
                if !path.is_empty() && tracked(path) {
                    out.insert(path.clone());
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

fn lookup<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, k| v.get(k))
}

fn set_path(value: &mut Value, path: &[String], leaf: Value) {
    let mut at = value;
    for (i, k) in path.iter().enumerate() {
        if !at.is_object() {
            *at = json!({});
        }
        let map = at.as_object_mut().expect("an object");
        if i + 1 == path.len() {
            map.insert(k.clone(), leaf);
            return;
        }
        at = map.entry(k.clone()).or_insert_with(|| json!({}));
    }
}

fn remove_path(value: &mut Value, path: &[String]) {
    fn go(value: &mut Value, path: &[String]) {
        let Some(map) = value.as_object_mut() else {
            return;
        };
        match path {
            [] => {}
            [last] => {
                map.remove(last);
            }
            [first, rest @ ..] => {
                if let Some(child) = map.get_mut(first) {
                    go(child, rest);
                    if child.as_object().is_some_and(Map::is_empty) {
                        map.remove(first);
                    }
                }
            }
        }
    }
    go(value, path);
}

/// FieldsV1 (`{"f:spec":{"f:replicas":{}}}`) from paths, and back.
fn to_fields(paths: &BTreeSet<FieldPath>) -> Value {
    let mut out = json!({});
    for path in paths {
        let keyed: Vec<String> = path.iter().map(|k| format!("f:{k}")).collect();
        set_path(&mut out, &keyed, json!({}));
    }
    out
}

fn from_fields(fields: &Value) -> BTreeSet<FieldPath> {
    leaves(fields)
        .into_iter()
        .map(|p| {
            p.into_iter()
                .map(|k| k.trim_start_matches("f:").to_owned())
                .collect()
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Manager {
    name: String,
    operation: String,
    fields: BTreeSet<FieldPath>,
}

fn managers(object: &Value) -> Vec<Manager> {
    object["metadata"]["managedFields"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|m| Manager {
                    name: m["manager"].as_str().unwrap_or("").to_owned(),
                    operation: m["operation"].as_str().unwrap_or("").to_owned(),
                    fields: from_fields(&m["fieldsV1"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn write_managers(object: &mut Value, managers: &[Manager]) {
    let list: Vec<Value> = managers
        .iter()
        .filter(|m| !m.fields.is_empty())
        .map(|m| {
            json!({
                "manager": m.name, "operation": m.operation, "fieldsType": "FieldsV1",
                "fieldsV1": to_fields(&m.fields),
            })
        })
        .collect();
    object["metadata"]["managedFields"] = Value::Array(list);
}

/// An update (patch, replace) by `manager`: the fields whose value changed become its own.
fn record_update(old: &Value, new: &mut Value, manager: &str) {
    let mut list = managers(old);
    let changed: BTreeSet<FieldPath> = leaves(new)
        .into_iter()
        .filter(|p| lookup(old, p) != lookup(new, p))
        .collect();
    for m in &mut list {
        m.fields.retain(|p| !changed.contains(p));
    }
    match list
        .iter_mut()
        .find(|m| m.name == manager && m.operation == "Update")
    {
        Some(m) => m.fields.extend(changed),
        None => list.push(Manager {
            name: manager.to_owned(),
            operation: "Update".to_owned(),
            fields: changed,
        }),
    }
    write_managers(new, &list);
}

/// Server-side apply of `applied` by `manager` (see the crate docs for the simplifications).
fn apply(
    state: &mut State,
    changes: &broadcast::Sender<Change>,
    key: &Key,
    applied: Value,
    manager: &str,
    force: bool,
) -> Result<Value, Failure> {
    let existing = state.objects.get(key).cloned();
    let created = existing.is_none();
    let mut object = existing.unwrap_or_else(
        || json!({"apiVersion": applied["apiVersion"], "kind": applied["kind"], "metadata": {}}),
    );
    let mut list = managers(&object);
    let sent = leaves(&applied);
    // Conflicts: a field another manager owns, with a value this apply would change.
    let mut conflicts = Vec::new();
    for other in list.iter().filter(|m| m.name != manager) {
        for path in other.fields.intersection(&sent) {
            if lookup(&object, path) != lookup(&applied, path) {
                conflicts.push(format!("{} (owned by {})", path.join("."), other.name));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err((
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Apply failed with {} conflicts: {}",
                conflicts.len(),
                conflicts.join(", ")
            ),
        ));
    }
    if force {
        for other in list.iter_mut().filter(|m| m.name != manager) {
            other
                .fields
                .retain(|p| !(sent.contains(p) && lookup(&object, p) != lookup(&applied, p)));
        }
    }
    let before: BTreeSet<FieldPath> = list
        .iter()
        .filter(|m| m.name == manager && m.operation == "Apply")
        .flat_map(|m| m.fields.iter().cloned())
        .collect();
    let others: BTreeSet<FieldPath> = list
        .iter()
        .filter(|m| !(m.name == manager && m.operation == "Apply"))
        .flat_map(|m| m.fields.iter().cloned())
        .collect();
    for dropped in before.difference(&sent) {
        if !others.contains(dropped) {
            remove_path(&mut object, dropped);
        }
    }
    for path in &sent {
        if let Some(value) = lookup(&applied, path) {
            set_path(&mut object, path, value.clone());
        }
    }
    // Shared fields with the same value are co-owned: both managers keep them.
    list.retain(|m| !(m.name == manager && m.operation == "Apply"));
    list.push(Manager {
        name: manager.to_owned(),
        operation: "Apply".to_owned(),
        fields: sent,
    });
    write_managers(&mut object, &list);
    Ok(store(state, changes, key, object, created))
}

/// A pod's `proxy` subresource: namespace, pod, port (when named) and the path on the pod.
struct PodTarget {
    namespace: String,
    pod: String,
    port: Option<u16>,
    path: String,
}

fn pod_proxy_path(path: &str) -> Option<PodTarget> {
    let rest = path.strip_prefix("/api/v1/namespaces/")?;
    let (namespace, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("pods/")?;
    let (pod, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("proxy")?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let (pod, port) = match pod.split_once(':') {
        Some((pod, port)) => (pod, Some(port.parse().ok()?)),
        None => (pod, None),
    };
    Some(PodTarget {
        namespace: namespace.to_owned(),
        pod: pod.to_owned(),
        port,
        path: if rest.is_empty() { "/" } else { rest }.to_owned(),
    })
}

/// Headers the API server does not pass to the pod: its own credentials and hop-by-hop ones.
const NOT_FORWARDED: [&str; 6] = [
    "authorization",
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "upgrade",
];

async fn pod_proxy(
    shared: &Shared,
    target: PodTarget,
    method: Method,
    uri: &Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use http_body_util::BodyExt;
    let key = Key {
        group_version: "api/v1".to_owned(),
        namespace: target.namespace.clone(),
        plural: "pods".to_owned(),
        name: target.pod.clone(),
    };
    let pod = shared.state.lock().unwrap().objects.get(&key).cloned();
    let Some(pod) = pod else {
        return not_found(&key);
    };
    let Some(ip) = pod["status"]["podIP"].as_str().map(str::to_owned) else {
        return status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            format!("pod {} has no IP yet", target.pod),
        );
    };
    let port = target.port.or_else(|| {
        pod["spec"]["containers"][0]["ports"][0]["containerPort"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
    });
    let Some(port) = port else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("pod {} declares no port", target.pod),
        );
    };
    let path = match uri.query() {
        Some(query) => format!("{}?{query}", target.path),
        None => target.path.clone(),
    };
    let mut request = hyper::Request::builder()
        .method(method.clone())
        .uri(format!("http://{ip}:{port}{path}"));
    let mut forwarded = Vec::new();
    for (name, value) in &headers {
        if NOT_FORWARDED.contains(&name.as_str()) {
            continue;
        }
        forwarded.push(name.as_str().to_owned());
        request = request.header(name, value);
    }
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let sent = request
        .body(http_body_util::Full::new(body.clone()))
        .expect("a forwarded request");
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        let response = client.request(sent).await.map_err(|e| e.to_string())?;
        let code = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((code, content_type, bytes))
    })
    .await
    .unwrap_or_else(|_| Err("no answer within 10 s".to_owned()));
    let code = match &answer {
        Ok((code, ..)) => code.as_u16(),
        Err(_) => 503,
    };
    shared.state.lock().unwrap().proxied.push(Proxied {
        method: method.to_string(),
        pod: target.pod.clone(),
        port,
        path,
        body: String::from_utf8_lossy(&body).into_owned(),
        status: code,
        headers: forwarded,
    });
    match answer {
        Ok((code, content_type, bytes)) => {
            let mut response = Response::new(Body::from(bytes));
            *response.status_mut() = code;
            if let Some(content_type) = content_type {
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, content_type);
            }
            response
        }
        Err(reason) => status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            format!("error trying to reach service: {reason}"),
        ),
    }
}
