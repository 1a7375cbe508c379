//! A port's connection budget: how many client connections are open at once, in total and per
//! source address, so that one client (a flood of idle sockets, a slowloris) cannot take the
//! file descriptors every other client needs. Shared by the port's workers; a [`Permit`]
//! gives its slot back when its connection ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The caps of one port (the service's `max_connections` and `max_connections_per_client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub total: usize,
    pub per_client: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            total: crate::table::DEFAULT_MAX_CONNECTIONS as usize,
            per_client: crate::table::DEFAULT_MAX_CONNECTIONS_PER_CLIENT as usize,
        }
    }
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The port holds `total` connections.
    Total,
    /// This source address holds `per_client`.
    Client,
}

/// Who holds how many connections on one port.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// One admitted connection's slot.
#[derive(Debug)]
pub(crate) struct Permit {
    budget: Arc<Budget>,
    client: IpAddr,
}

impl Budget {
    /// A slot for a new connection from `client` within `limits`, or why not.
    pub fn admit(self: &Arc<Self>, limits: Limits, client: IpAddr) -> Result<Permit, Refusal> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.total >= limits.total {
            return Err(Refusal::Total);
        }
        let mine = held.by_client.entry(client).or_default();
        if *mine >= limits.per_client {
            return Err(Refusal::Client);
        }
        *mine += 1;
        held.total += 1;
        Ok(Permit {
            budget: self.clone(),
            client,
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut held = self.budget.held.lock().unwrap_or_else(|e| e.into_inner());
        held.total -= 1;
        if let Some(mine) = held.by_client.get_mut(&self.client) {
            *mine -= 1;
            if *mine == 0 {
                held.by_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_counts_per_client_and_in_total_and_gives_slots_back() {
        let limits = Limits {
            total: 3,
            per_client: 2,
        };
        let budget = Arc::new(Budget::default());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "::1".parse().unwrap());
        let first = budget.admit(limits, a).unwrap();
        let second = budget.admit(limits, a).unwrap();
        assert_eq!(budget.admit(limits, a).unwrap_err(), Refusal::Client);
        let third = budget.admit(limits, b).unwrap();
        assert_eq!(budget.admit(limits, b).unwrap_err(), Refusal::Total);
        drop(first);
        let again = budget.admit(limits, a).unwrap();
        drop((again, second, third));
        let held = budget.held.lock().unwrap();
        assert_eq!(held.total, 0);
        assert!(
            held.by_client.is_empty(),
            "no address is remembered for nothing"
        );
    }
}
