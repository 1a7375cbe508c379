//! Serving on TCP with bounded resources per client: a budget of connections per source
//! address and in total, and a deadline on each connection's TLS handshake and on every
//! request head, so that no client — idle, slow (slowloris) or many-socketed — can hold the
//! control plane's file descriptors. The API's listener serves over TLS; the public status
//! page's (`status_page`) is the same loop without TLS. The operator's unix socket is served apart
//! ([`crate::serve_unix`]) and never counts against this budget: it answers whatever TCP
//! clients do.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::tls::ApiTls;

/// The TCP API's budget (see the module docs); `wharf up --api-*` flags set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// How long a client has for its TLS handshake, and then for each request head (from the
    /// moment the connection waits for one, so an idle keep-alive connection ends too).
    pub header_timeout: Duration,
    /// Open connections at once, all clients together.
    pub max_connections: usize,
    /// Open connections at once from one source address.
    pub max_connections_per_client: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            header_timeout: Duration::from_secs(10),
            max_connections: 512,
            max_connections_per_client: 32,
        }
    }
}

/// Who holds how many connections; a [`Permit`] gives its slot back when dropped.
#[derive(Debug, Default)]
struct Budget {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
struct Permit {
    budget: Arc<Mutex<Budget>>,
    client: IpAddr,
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Total,
    Client,
}

fn admit(
    budget: &Arc<Mutex<Budget>>,
    limits: &ApiLimits,
    client: IpAddr,
) -> Result<Permit, Refusal> {
    let mut held = budget.lock().unwrap_or_else(|e| e.into_inner());
    if held.total >= limits.max_connections {
        return Err(Refusal::Total);
    }
    let mine = held.by_client.entry(client).or_default();
    if *mine >= limits.max_connections_per_client {
        return Err(Refusal::Client);
    }
    *mine += 1;
    held.total += 1;
    Ok(Permit {
        budget: budget.clone(),
        client,
    })
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut held = self.budget.lock().unwrap_or_else(|e| e.into_inner());
        held.total -= 1;
        if let Some(mine) = held.by_client.get_mut(&self.client) {
            *mine -= 1;
            if *mine == 0 {
                held.by_client.remove(&self.client);
            }
        }
    }
}

/// Accepts on `listener` until `shutdown` resolves, serving each admitted connection in its own
/// task: with `tls`, a TLS handshake within the header timeout; then HTTP/1 (or HTTP/2) with
/// hyper's header-read timeout. A connection past the budget is closed at once — it costs a
/// file descriptor for a moment, never for long. Connections in progress at shutdown finish.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<&ApiTls>,
    app: Router,
    limits: ApiLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = tls.map(|tls| TlsAcceptor::from(tls.config()));
    let budget = Arc::new(Mutex::new(Budget::default()));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(limits.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    crate::tls::accept_failed(error).await;
                    continue;
                }
            },
        };
        let permit = match admit(&budget, &limits, peer.ip()) {
            Ok(permit) => permit,
            Err(refusal) => {
                tracing::debug!(%peer, ?refusal, "API connection over budget; closed");
                drop(stream);
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let connection = match acceptor {
                Some(acceptor) => {
                    let Some(tls) =
                        crate::tls::handshake(acceptor, stream, peer, limits.header_timeout).await
                    else {
                        return;
                    };
                    watcher
                        .watch(
                            builder
                                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                                .into_owned(),
                        )
                        .await
                }
                None => {
                    watcher
                        .watch(
                            builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .into_owned(),
                        )
                        .await
                }
            };
            if let Err(error) = connection {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_counts_per_client_and_in_total_and_gives_slots_back() {
        let limits = ApiLimits {
            header_timeout: Duration::from_secs(1),
            max_connections: 3,
            max_connections_per_client: 2,
        };
        let budget = Arc::new(Mutex::new(Budget::default()));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = admit(&budget, &limits, a).unwrap();
        let _second = admit(&budget, &limits, a).unwrap();
        assert_eq!(admit(&budget, &limits, a).unwrap_err(), Refusal::Client);
        let _third = admit(&budget, &limits, b).unwrap();
        assert_eq!(admit(&budget, &limits, b).unwrap_err(), Refusal::Total);
        drop(first);
        let _again = admit(&budget, &limits, a).unwrap();
        drop(_again);
        drop(_second);
        drop(_third);
        let held = budget.lock().unwrap();
        assert_eq!(held.total, 0);
        assert!(held.by_client.is_empty());
    }
}
