//! Each worker thread's pool of keep-alive HTTP/1.1 connections to upstreams.
//!
//! A worker serves a request, its upstream exchange and both connections on one thread, so
//! the pool is thread-local: checking a connection out and back in takes no lock, no shared
//! counter and no extra task. A connection goes back to the pool when the response body has
//! been read to the end (or was empty), never while a body is still streaming; a connection
//! whose body was abandoned is closed instead.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::forward::UpBody;

use crate::h1::pool::{ConnectError, IDLE_TIMEOUT, MAX_IDLE};

/// Why no response came back.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// The connection could not be opened (refused, unreachable, …); nothing was sent.
    #[error("cannot connect: {0}")]
    Connect(#[source] std::io::Error),
    /// Connecting took longer than the connect timeout; nothing was sent.
    #[error("connecting timed out")]
    ConnectTimeout,
    /// The exchange failed after the connection was open.
    #[error(transparent)]
    Upstream(#[from] hyper::Error),
}

struct Idle {
    sender: SendRequest<UpBody>,
    since: Instant,
}

thread_local! {
    static POOL: RefCell<HashMap<SocketAddr, Vec<Idle>>> = RefCell::new(HashMap::new());
}

/// A connection lent to one exchange; [`Lease::release`] gives it back to the pool.
#[derive(Debug)]
pub(crate) struct Lease {
    address: SocketAddr,
    sender: SendRequest<UpBody>,
}

impl Lease {
    /// The response was read to its end: the connection can carry the next request.
    pub(crate) fn release(self) {
        if self.sender.is_closed() {
            return;
        }
        let now = Instant::now();
        POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            let idle = pool.entry(self.address).or_default();
            // The oldest sit at the front; a busy address keeps reusing the newest.
            let stale = idle
                .iter()
                .take_while(|i| now.duration_since(i.since) > IDLE_TIMEOUT)
                .count();
            idle.drain(..stale);
            if idle.len() < MAX_IDLE {
                idle.push(Idle {
                    sender: self.sender,
                    since: now,
                });
            }
        });
    }
}

/// Close this thread's idle connections that waited longer than [`IDLE_TIMEOUT`], and forget
/// addresses with none left.
pub(crate) fn sweep() {
    let now = Instant::now();
    POOL.with(|pool| {
        pool.borrow_mut().retain(|_, idle| {
            idle.retain(|i| !i.sender.is_closed() && now.duration_since(i.since) <= IDLE_TIMEOUT);
            !idle.is_empty()
        });
    });
}

fn checkout(address: SocketAddr) -> Option<SendRequest<UpBody>> {
    POOL.with(|pool| pool.borrow_mut().get_mut(&address)?.pop())
        .map(|idle| idle.sender)
}

/// Send `request` to `address` over a pooled connection, or a new one. A pooled connection
/// that turns out closed before the request went out is skipped, as the request was not sent.
pub(crate) async fn send(
    address: SocketAddr,
    mut request: Request<UpBody>,
) -> Result<(Response<Incoming>, Lease), SendError> {
    while let Some(mut sender) = checkout(address) {
        if sender.ready().await.is_err() {
            continue;
        }
        match sender.try_send_request(request).await {
            Ok(response) => return Ok((response, Lease { address, sender })),
            Err(mut err) => match err.take_message() {
                Some(unsent) => request = unsent,
                None => return Err(SendError::Upstream(err.into_error())),
            },
        }
    }
    let mut sender = connect(address).await?;
    let response = sender.send_request(request).await?;
    Ok((response, Lease { address, sender }))
}

async fn connect(address: SocketAddr) -> Result<SendRequest<UpBody>, SendError> {
    // The same socket set-up and connect timeout as the HTTP/1 path's raw connections.
    let stream = crate::h1::pool::connect(address)
        .await
        .map_err(|err| match err {
            ConnectError::Io(io) => SendError::Connect(io),
            ConnectError::TimedOut => SendError::ConnectTimeout,
        })?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    // The connection runs on this worker's runtime, beside the requests that use it.
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(%address, error = %err, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}
