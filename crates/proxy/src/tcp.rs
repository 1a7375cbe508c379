//! TCP pass-through: a port whose route is `mode: tcp` (a datastore's protocol, TLS the
//! proxy does not end) gets its bytes spliced both ways to one instance. The version is
//! chosen per connection by the route's weights, as the HTTP path does per request; an
//! instance that refuses the connection is counted as a failure (ejection) and the next one
//! of the same version is tried.
//!
//! A connection counts as in flight on its instance while it is open, so the control plane
//! stops a drained instance only once its connections ended; the drain cut (the instance's
//! `cut`, or the port's closing) ends those that outlive the drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::routes::InFlight;
use crate::server::Inner;

/// Serves one client connection on a TCP port until either side closes it or the drain cut
/// comes.
pub(crate) async fn serve(
    inner: Arc<Inner>,
    address: SocketAddr,
    peer: SocketAddr,
    mut client: TcpStream,
) {
    let Some(service) = inner.routes.load().by_listen.get(&address).cloned() else {
        return;
    };
    let Some(version) = service.choose_by(None, None) else {
        tracing::debug!(%address, %peer, "no version with instances: connection closed");
        return;
    };
    version.stats.request();
    let started = Instant::now();
    let mut tried = Vec::new();
    let (mut upstream, instance, _in_flight) = loop {
        let Some(instance) = version.pick(&inner.clock, &tried) else {
            // Every instance refused: the client sees the connection closed at once.
            version.stats.response(502, started.elapsed());
            tracing::debug!(%address, %peer, "no instance took the connection");
            return;
        };
        if !tried.is_empty() {
            version.stats.retry();
        }
        tried.push(instance.address);
        // Counted from the attempt on, so an instance being drained is not stopped while a
        // connection to it is being made.
        let in_flight = InFlight::start(instance);
        match crate::h1::pool::connect(instance.address).await {
            Ok(stream) => {
                instance.succeeded();
                break (stream, instance.clone(), in_flight);
            }
            Err(error) => {
                tracing::debug!(instance = %instance.address, %error, "upstream refused a TCP connection");
                version.stats.upstream_error();
                instance.failed(&inner.clock, service.eject_after, service.cooldown);
            }
        }
    };
    // A connection made is a success; its time is the time to connect.
    version.stats.response(200, started.elapsed());
    let mut cut = instance.cut.subscribe();
    let _ = client.set_nodelay(true);
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => match copied {
            Ok((up, down)) => version.stats.bytes(up, down),
            Err(error) => tracing::debug!(%peer, %error, "TCP pass-through ended with an error"),
        },
        () = until_cut(&mut cut) => {
            tracing::debug!(%peer, instance = %instance.address, "drain timeout passed: TCP connection cut");
        }
    }
}

/// Resolves once the flag is set (never, if its sender is gone while unset).
async fn until_cut(cut: &mut watch::Receiver<bool>) {
    if cut.wait_for(|cut| *cut).await.is_err() {
        std::future::pending::<()>().await;
    }
}
