//! Each worker thread's idle keep-alive connections to upstreams, for the HTTP/1 path, and
//! how any upstream connection is opened (the HTTP/2 path's hyper pool opens them here too).
//!
//! Thread-local like the worker's requests: checking a connection out and back in takes no
//! lock. A connection is checked back in only after a response read to its end with nothing
//! left over, so the next request on it starts on a clean stream.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::{TcpSocket, TcpStream};

/// How long a new connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// An idle connection older than this is closed.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// At most this many idle connections are kept per upstream address and thread.
pub(crate) const MAX_IDLE: usize = 1024;

thread_local! {
    static IDLE: RefCell<HashMap<SocketAddr, Vec<(TcpStream, Instant)>>> = RefCell::new(HashMap::new());
}

/// Whether an idle connection can carry a request: nothing arrived on it while it waited (an
/// upstream that closed it sent an end of stream). Costs no system call unless the reactor
/// saw the socket become readable.
fn usable(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(err) if err.kind() == std::io::ErrorKind::WouldBlock)
}

/// The newest idle connection to `address` that is still open.
pub(crate) fn checkout(address: SocketAddr) -> Option<TcpStream> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.get_mut(&address)?;
        while let Some((stream, _)) = list.pop() {
            if usable(&stream) {
                return Some(stream);
            }
        }
        None
    })
}

/// Keep `stream` for the next request to `address`.
pub(crate) fn checkin(address: SocketAddr, stream: TcpStream) {
    let now = Instant::now();
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.entry(address).or_default();
        // The oldest sit at the front; a busy address keeps reusing the newest.
        let stale = list
            .iter()
            .take_while(|(_, since)| now.duration_since(*since) > IDLE_TIMEOUT)
            .count();
        list.drain(..stale);
        if list.len() < MAX_IDLE {
            list.push((stream, now));
        }
    });
}

/// Close this thread's idle connections that waited too long or that the upstream closed.
pub(crate) fn sweep() {
    let now = Instant::now();
    IDLE.with(|idle| {
        idle.borrow_mut().retain(|_, list| {
            list.retain(|(stream, since)| {
                now.duration_since(*since) <= IDLE_TIMEOUT && usable(stream)
            });
            !list.is_empty()
        });
    });
}

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("cannot connect: {0}")]
    Io(#[source] std::io::Error),
    #[error("connecting timed out")]
    TimedOut,
}

/// A new connection to `address`.
pub(crate) async fn connect(address: SocketAddr) -> Result<TcpStream, ConnectError> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(ConnectError::Io)?;
    // Keep-alive probes find upstreams that vanished while a connection sat idle.
    let _ = socket.set_keepalive(true);
    let _ = socket.set_nodelay(true);
    match tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(address)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(err)) if err.kind() == std::io::ErrorKind::TimedOut => Err(ConnectError::TimedOut),
        Ok(Err(err)) => Err(ConnectError::Io(err)),
        Err(_) => Err(ConnectError::TimedOut),
    }
}
