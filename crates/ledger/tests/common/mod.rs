//! Helpers shared by the ledger's integration tests: a tree of raw leaves kept in memory.

#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;

use wharf_ledger::tree::{Frontier, NodeId};
use wharf_ledger::{Hash, leaf_hash};

/// Every complete-subtree hash of a tree built from raw leaf inputs.
pub struct Nodes(pub HashMap<NodeId, Hash>);

impl Nodes {
    pub fn build<'a>(leaves: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut nodes = HashMap::new();
        let mut frontier = Frontier::new();
        for leaf in leaves {
            frontier.push(leaf_hash(leaf), &mut |id, hash| {
                nodes.insert(id, hash);
            });
        }
        Self(nodes)
    }

    /// A node getter for `wharf_ledger::tree` functions.
    pub fn get(&self) -> impl Fn(NodeId) -> Result<Hash, Infallible> + '_ {
        |id| Ok(self.0[&id])
    }
}

pub fn unwrap<T>(result: Result<T, Infallible>) -> T {
    match result {
        Ok(value) => value,
    }
}
