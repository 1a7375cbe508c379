//! Listening sockets handed over from the control plane to a proxy it starts.
//!
//! The control plane keeps a copy of every listening socket the proxy opens (taken from the
//! proxy with `pidfd_getfd`), so a proxy that dies leaves its ports listening: the kernel keeps
//! completing handshakes into their backlogs, and nothing is refused. The next proxy is told
//! where those copies are (`WHARF_PROXY_INHERIT=PID;ADDR=FD,FD;…`: the control plane's pid and,
//! per address, its descriptors) and takes them the same way, then serves the backlog — as
//! nginx's master keeps its listeners across worker restarts. No descriptor crosses `exec`,
//! so nothing here needs `unsafe`.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};

/// The environment variable naming the sockets to take.
pub const ENV: &str = "WHARF_PROXY_INHERIT";

/// The exit status of a proxy that could not take the sockets it was offered: its starter
/// should drop its copies and start it without (then it binds the ports itself).
pub const EXIT_CANNOT_INHERIT: u8 = 3;

/// Where the sockets are: the holder's pid and, per address, its descriptors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub pid: i32,
    pub sockets: Vec<(SocketAddr, Vec<i32>)>,
}

/// Why the sockets could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum InheritError {
    #[error("{ENV} is malformed: {0}")]
    Malformed(String),
    #[error("cannot reach process {pid} to take its sockets: {source}")]
    Holder { pid: i32, source: std::io::Error },
    #[error("cannot take descriptor {fd} ({address}) from process {pid}: {source}")]
    Take {
        pid: i32,
        fd: i32,
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("descriptor {fd} of process {pid} is not a socket listening on {address}")]
    NotTheListener {
        pid: i32,
        fd: i32,
        address: SocketAddr,
    },
}

impl InheritError {
    /// Whether it says this process may not take another's descriptors at all (ptrace
    /// rights), rather than that one was gone or changed.
    pub fn is_permission(&self) -> bool {
        let source = match self {
            InheritError::Holder { source, .. } | InheritError::Take { source, .. } => source,
            _ => return false,
        };
        source.kind() == std::io::ErrorKind::PermissionDenied
    }
}

/// Reads `PID;ADDR=FD,FD;ADDR=FD` (pure).
pub fn parse(text: &str) -> Result<Offer, InheritError> {
    let malformed = |what: &str| InheritError::Malformed(what.to_owned());
    let mut parts = text.split(';');
    let pid = parts
        .next()
        .and_then(|p| p.trim().parse::<i32>().ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| malformed("it must start with the holder's pid"))?;
    let mut sockets = Vec::new();
    for part in parts.filter(|p| !p.trim().is_empty()) {
        let (address, fds) = part
            .split_once('=')
            .ok_or_else(|| malformed("each address is ADDR=FD,FD"))?;
        let address: SocketAddr = address
            .trim()
            .parse()
            .map_err(|_| malformed(&format!("`{address}` is not an address")))?;
        let fds = fds
            .split(',')
            .map(|fd| fd.trim().parse::<i32>().ok().filter(|fd| *fd >= 0))
            .collect::<Option<Vec<i32>>>()
            .filter(|fds| !fds.is_empty())
            .ok_or_else(|| malformed(&format!("`{part}` does not list descriptors")))?;
        sockets.push((address, fds));
    }
    Ok(Offer { pid, sockets })
}

/// Writes an offer the way [`parse`] reads it.
pub fn render(offer: &Offer) -> String {
    let mut text = offer.pid.to_string();
    for (address, fds) in &offer.sockets {
        let fds: Vec<String> = fds.iter().map(ToString::to_string).collect();
        text.push_str(&format!(";{address}={}", fds.join(",")));
    }
    text
}

/// Takes a copy of each offered socket from its holder, checking each listens on the address
/// it was offered for; made non-blocking for the runtime.
pub fn take(offer: &Offer) -> Result<HashMap<SocketAddr, Vec<TcpListener>>, InheritError> {
    let holder = rustix::process::Pid::from_raw(offer.pid).ok_or(InheritError::Malformed(
        "the holder's pid is not a pid".to_owned(),
    ))?;
    let pidfd =
        rustix::process::pidfd_open(holder, rustix::process::PidfdFlags::empty()).map_err(|e| {
            InheritError::Holder {
                pid: offer.pid,
                source: e.into(),
            }
        })?;
    let mut taken = HashMap::new();
    for (address, fds) in &offer.sockets {
        let mut sockets = Vec::with_capacity(fds.len());
        for fd in fds {
            let owned = rustix::process::pidfd_getfd(
                &pidfd,
                *fd,
                rustix::process::PidfdGetfdFlags::empty(),
            )
            .map_err(|e| InheritError::Take {
                pid: offer.pid,
                fd: *fd,
                address: *address,
                source: e.into(),
            })?;
            let not_it = || InheritError::NotTheListener {
                pid: offer.pid,
                fd: *fd,
                address: *address,
            };
            // A descriptor number can be reused: it must still be a listening socket...
            if !rustix::net::sockopt::socket_acceptconn(&owned).unwrap_or(false) {
                return Err(not_it());
            }
            let listener = TcpListener::from(owned);
            // ...on the address it was offered for.
            if listener.local_addr().map_err(|_| not_it())? != *address {
                return Err(not_it());
            }
            listener.set_nonblocking(true).map_err(|_| not_it())?;
            sockets.push(listener);
        }
        taken.insert(*address, sockets);
    }
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offer_reads_back_as_written_and_garbage_is_refused() {
        let offer = Offer {
            pid: 4242,
            sockets: vec![
                ("127.0.0.1:8080".parse().unwrap(), vec![7, 8]),
                ("[::1]:9090".parse().unwrap(), vec![9]),
            ],
        };
        let text = render(&offer);
        assert_eq!(text, "4242;127.0.0.1:8080=7,8;[::1]:9090=9");
        assert_eq!(parse(&text).unwrap(), offer);
        assert_eq!(parse("17").unwrap().sockets, []);
        for bad in [
            "",
            "x;1.2.3.4:5=6",
            "0",
            "17;1.2.3.4:5",
            "17;nowhere=3",
            "17;1.2.3.4:5=",
            "17;1.2.3.4:5=-1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_socket_is_taken_from_a_process_and_still_listens_on_its_port() {
        // This process is the holder: a copy of its own listener comes back, same port.
        let original = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = original.local_addr().unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&original);
        let offer = Offer {
            pid: std::process::id() as i32,
            sockets: vec![(address, vec![fd])],
        };
        let mut taken = take(&offer).unwrap();
        let copy = taken.remove(&address).unwrap().pop().unwrap();
        drop(original);
        // The original is gone; the copy still accepts on the port.
        let client = std::net::TcpStream::connect(address).unwrap();
        copy.set_nonblocking(false).unwrap();
        let (accepted, _) = copy.accept().unwrap();
        assert_eq!(accepted.peer_addr().unwrap(), client.local_addr().unwrap());
        // A socket that is not listening (a connected one) is refused.
        let connected = std::net::TcpStream::connect(address);
        drop(connected);
        let not_listening = Offer {
            pid: std::process::id() as i32,
            sockets: vec![(address, vec![std::os::fd::AsRawFd::as_raw_fd(&client)])],
        };
        assert!(matches!(
            take(&not_listening),
            Err(InheritError::NotTheListener { .. })
        ));
        // Offered for another address: refused.
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let wrong = Offer {
            pid: std::process::id() as i32,
            sockets: vec![(address, vec![std::os::fd::AsRawFd::as_raw_fd(&other)])],
        };
        assert!(matches!(
            take(&wrong),
            Err(InheritError::NotTheListener { .. })
        ));
    }
}
