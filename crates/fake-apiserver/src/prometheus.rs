//! A fake Prometheus for the rollout tests on a cluster: the Gateway implementation whose
//! per-version counters a real one would hold cannot run here. It answers the instant-query
//! API over real HTTP: every query for requests returns 40 more than the previous query did,
//! a query starting with `errors` returns 0 — a healthy canary with traffic on both versions.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;

/// The running fake; dropping it stops the server.
pub struct FakePrometheus {
    /// `http://127.0.0.1:PORT`, for `--prometheus`.
    pub url: String,
    /// How many queries it answered.
    pub queries: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakePrometheus {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakePrometheus {
    /// Starts on a free loopback port (inside the caller's tokio runtime).
    pub async fn start() -> FakePrometheus {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake Prometheus");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        let queries = Arc::new(AtomicU64::new(0));
        let counted = queries.clone();
        let app = axum::Router::new().route(
            "/api/v1/query",
            axum::routing::get(
                move |axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>| {
                    let n = counted.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let query = q.get("query").cloned().unwrap_or_default();
                        let value = if query.starts_with("errors") {
                            0
                        } else {
                            40 * (n + 1)
                        };
                        axum::Json(json!({
                            "status": "success",
                            "data": {"resultType": "vector", "result": [
                                {"metric": {}, "value": [1.0, value.to_string()]}
                            ]}
                        }))
                    }
                },
            ),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakePrometheus { url, queries, task }
    }
}
