//! Where a CLI write goes: to the running control plane's API (it is the one writer), or —
//! when none runs — into this process, which then holds `control.lock` and runs the same
//! `wharf-ops` use case itself.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use wharf_ops::ControlLock;

use crate::client::{self, NotRunning};

/// The one writer this command goes through.
pub enum Route {
    /// A control plane runs: send the request to it.
    Api,
    /// None runs: this process holds the lock and writes itself.
    Local(ControlLock),
}

/// Takes the lock if it is free. If it is held and the control plane's socket accepts, the
/// request goes to it; held without a live socket means another CLI writer holds it for a
/// moment, a control plane is starting, or a killed one is being torn down: wait for one or
/// the other, up to the store's own 10 s.
pub fn route(state_dir: &Path) -> anyhow::Result<Route> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let socket = client::socket_path(state_dir);
    // With replicas on PostgreSQL the lease decides who leads, and a leader may run without
    // the flock (a paused, deposed one holds it): the leader's socket is asked first.
    let replicas = wharf_ops::read::location(state_dir)?.is_postgres();
    loop {
        if replicas && std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            return Ok(Route::Api);
        }
        if let Some(lock) = ControlLock::try_acquire(state_dir)? {
            return Ok(Route::Local(lock));
        }
        // A socket that accepts is a live control plane; a stale one (left by a killed
        // control plane whose lock is a moment from being released) is not.
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            return Ok(Route::Api);
        }
        if std::time::Instant::now() >= deadline {
            anyhow::bail!(
                "{} in {} stays held by another process that serves no API; is a wharf command stuck?",
                wharf_ops::LOCK_FILE,
                state_dir.display()
            );
        }
        #[expect(
            clippy::disallowed_methods,
            reason = "a backoff while another short-lived writer holds the lock, not synchronisation"
        )]
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// One API call to the running control plane; non-2xx comes back as `ApiRejected`. A control
/// plane that holds the lock but does not answer is an error that says so.
pub fn api(
    state_dir: &Path,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime
        .block_on(client::call_ok(state_dir, method, path, body))
        .map_err(|err| {
            if err.is::<NotRunning>() {
                anyhow::anyhow!(
                    "a control plane holds {} in {} but does not answer on its socket; is it starting or stuck?",
                    wharf_ops::LOCK_FILE,
                    state_dir.display()
                )
            } else {
                err
            }
        })
}

/// One typed API call: `request` is the JSON body, the answer decodes as `A` (a `wharf-api`
/// type); non-2xx comes back as `ApiRejected`, like [`api`].
pub fn call<A: DeserializeOwned>(
    state_dir: &Path,
    method: &str,
    path: &str,
    request: &impl Serialize,
) -> anyhow::Result<A> {
    let body = serde_json::to_value(request)?;
    let answer = api(state_dir, method, path, Some(body))?;
    serde_json::from_value(answer)
        .with_context(|| format!("unreadable answer of the control plane to {method} {path}"))
}

/// `/v1/secrets/{name}`-style paths with the name escaped for a URL.
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
