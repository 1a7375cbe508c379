//! Merkle tree math over complete subtrees (RFC 9162 §2.1): roots, proofs and appends.
//!
//! The tree is never rebuilt. Every complete subtree — `2^level` leaves starting at leaf
//! `index << level` — is stored once when it becomes complete, so a root or a proof for any
//! size needs O(log n) node reads and an append O(log n) hashes.

use crate::hash::{Hash, empty_root, node_hash};

/// A complete subtree: `2^level` leaves starting at leaf `index << level`. Level 0 is a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Height above the leaves.
    pub level: u8,
    /// Position among the nodes of this level, from the left.
    pub index: u64,
}

impl NodeId {
    /// The node at `level` and `index`.
    pub const fn new(level: u8, index: u64) -> Self {
        Self { level, index }
    }

    /// The first leaf this subtree covers.
    pub const fn first_leaf(self) -> u64 {
        self.index << self.level
    }

    /// The complete subtree covering `len` (a power of two) leaves from `start` (a multiple
    /// of `len`).
    fn covering(start: u64, len: u64) -> Self {
        let level = len.trailing_zeros() as u8;
        Self::new(level, start >> level)
    }
}

/// The largest power of two strictly below `n` (n ≥ 2): RFC 9162's split point `k`.
pub fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// MTH(D[start..start+len]) for a range the RFC recursion produces (the left part of every
/// split is complete, so only the right edge recurses: O(log n) reads).
pub fn subtree_hash<E>(
    start: u64,
    len: u64,
    node: &impl Fn(NodeId) -> Result<Hash, E>,
) -> Result<Hash, E> {
    if len.is_power_of_two() {
        return node(NodeId::covering(start, len));
    }
    let k = split(len);
    let left = node(NodeId::covering(start, k))?;
    let right = subtree_hash(start + k, len - k, node)?;
    Ok(node_hash(&left, &right))
}

/// The root of the tree of the first `size` leaves.
pub fn root<E>(size: u64, node: &impl Fn(NodeId) -> Result<Hash, E>) -> Result<Hash, E> {
    if size == 0 {
        return Ok(empty_root());
    }
    subtree_hash(0, size, node)
}

/// The audit path PATH(m, D[start..start+n]) of RFC 6962 §2.1.1, leaf-side first.
pub fn inclusion_path<E>(
    m: u64,
    size: u64,
    node: &impl Fn(NodeId) -> Result<Hash, E>,
) -> Result<Vec<Hash>, E> {
    let mut out = Vec::new();
    path(m, 0, size, node, &mut out)?;
    Ok(out)
}

fn path<E>(
    m: u64,
    start: u64,
    n: u64,
    node: &impl Fn(NodeId) -> Result<Hash, E>,
    out: &mut Vec<Hash>,
) -> Result<(), E> {
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path(m, start, k, node, out)?;
        out.push(subtree_hash(start + k, n - k, node)?);
    } else {
        path(m - k, start + k, n - k, node, out)?;
        out.push(subtree_hash(start, k, node)?);
    }
    Ok(())
}

/// The consistency proof PROOF(m, D[n]) of RFC 6962 §2.1.2 (empty when m is 0 or n).
pub fn consistency_path<E>(
    m: u64,
    n: u64,
    node: &impl Fn(NodeId) -> Result<Hash, E>,
) -> Result<Vec<Hash>, E> {
    let mut out = Vec::new();
    if 0 < m && m < n {
        subproof(m, 0, n, true, node, &mut out)?;
    }
    Ok(out)
}

fn subproof<E>(
    m: u64,
    start: u64,
    n: u64,
    whole: bool,
    node: &impl Fn(NodeId) -> Result<Hash, E>,
    out: &mut Vec<Hash>,
) -> Result<(), E> {
    if m == n {
        if !whole {
            out.push(subtree_hash(start, n, node)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(m, start, k, whole, node, out)?;
        out.push(subtree_hash(start + k, n - k, node)?);
    } else {
        subproof(m - k, start + k, n - k, false, node, out)?;
        out.push(subtree_hash(start, k, node)?);
    }
    Ok(())
}

/// The right border of a tree: its maximal complete subtrees, left to right. Appending a
/// leaf only touches this border, which is what makes appends O(log n).
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    size: u64,
    nodes: Vec<(NodeId, Hash)>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads the frontier of the tree of `size` leaves: one read per set bit of `size`.
    pub fn load<E>(size: u64, node: &impl Fn(NodeId) -> Result<Hash, E>) -> Result<Self, E> {
        let mut nodes = Vec::new();
        let mut start = 0;
        for level in (0..64u8).rev() {
            if size & (1 << level) != 0 {
                let id = NodeId::new(level, start >> level);
                nodes.push((id, node(id)?));
                start += 1 << level;
            }
        }
        Ok(Self { size, nodes })
    }

    /// The number of leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; `created` receives every subtree that became complete (the leaf
    /// itself first, then its ancestors upward).
    pub fn push(&mut self, leaf: Hash, created: &mut impl FnMut(NodeId, Hash)) {
        let mut id = NodeId::new(0, self.size);
        let mut hash = leaf;
        created(id, hash);
        while id.index % 2 == 1 {
            let (_, left) = self.nodes.pop().expect("an odd index has a left sibling");
            hash = node_hash(&left, &hash);
            id = NodeId::new(id.level + 1, id.index / 2);
            created(id, hash);
        }
        self.nodes.push((id, hash));
        self.size += 1;
    }

    /// The root of the tree so far, folding the border from the right.
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        let Some((_, last)) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |right, (_, left)| node_hash(left, &right))
    }
}
