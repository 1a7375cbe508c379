//! Property tests: for random tree sizes every inclusion and consistency proof verifies,
//! and any flipped bit (in the proof, the leaf or a root) or a wrong leaf index makes it fail.

mod common;

use common::{Nodes, unwrap};
use proptest::prelude::*;
use wharf_ledger::tree::{Frontier, consistency_path, inclusion_path, root};
use wharf_ledger::{Hash, leaf_hash, node_hash, verify_consistency, verify_inclusion};

fn leaves(n: u64) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("leaf {i}").into_bytes()).collect()
}

/// The textbook recursive MTH, as an oracle for the O(log n) implementation.
fn reference_root(leaves: &[Vec<u8>]) -> Hash {
    match leaves.len() {
        0 => wharf_ledger::empty_root(),
        1 => leaf_hash(&leaves[0]),
        n => {
            let k = 1 << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
        }
    }
}

fn flip(path: &[Hash], which: usize, bit: u8) -> Vec<Hash> {
    let mut path = path.to_vec();
    path[which][usize::from(bit / 8) % 32] ^= 1 << (bit % 8);
    path
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn roots_match_the_reference_and_the_frontier(n in 0u64..300) {
        let data = leaves(n);
        let nodes = Nodes::build(data.iter().map(Vec::as_slice));
        let mut frontier = Frontier::new();
        for leaf in &data {
            frontier.push(leaf_hash(leaf), &mut |_, _| {});
        }
        let expected = reference_root(&data);
        prop_assert_eq!(unwrap(root(n, &nodes.get())), expected);
        prop_assert_eq!(frontier.root(), expected);
    }

    #[test]
    fn every_inclusion_proof_verifies_and_tampering_fails(
        n in 1u64..200, pick in any::<prop::sample::Index>(), bit in any::<u8>(), which in any::<prop::sample::Index>()
    ) {
        let data = leaves(n);
        let nodes = Nodes::build(data.iter().map(Vec::as_slice));
        let m = pick.index(n as usize) as u64;
        let size = m + 1 + pick.index((n - m) as usize) as u64;
        let size = size.min(n);
        let root_hash = unwrap(root(size, &nodes.get()));
        let leaf = leaf_hash(&data[m as usize]);
        let path = unwrap(inclusion_path(m, size, &nodes.get()));
        prop_assert!(verify_inclusion(m, size, &leaf, &path, &root_hash).is_ok());
        if !path.is_empty() {
            let bad = flip(&path, which.index(path.len()), bit);
            prop_assert!(verify_inclusion(m, size, &leaf, &bad, &root_hash).is_err());
        }
        if size > 1 {
            let other = (m + 1) % size;
            prop_assert!(verify_inclusion(other, size, &leaf, &path, &root_hash).is_err());
        }
        let mut bad_leaf = leaf;
        bad_leaf[usize::from(bit) % 32] ^= 1;
        prop_assert!(verify_inclusion(m, size, &bad_leaf, &path, &root_hash).is_err());
        let mut bad_root = root_hash;
        bad_root[usize::from(bit) % 32] ^= 1;
        prop_assert!(verify_inclusion(m, size, &leaf, &path, &bad_root).is_err());
    }

    #[test]
    fn every_consistency_proof_verifies_and_tampering_fails(
        n in 1u64..200, a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>(),
        bit in any::<u8>(), which in any::<prop::sample::Index>()
    ) {
        let data = leaves(n);
        let nodes = Nodes::build(data.iter().map(Vec::as_slice));
        let second = 1 + b.index(n as usize) as u64;
        let first = 1 + a.index(second as usize) as u64;
        let (r1, r2) = (unwrap(root(first, &nodes.get())), unwrap(root(second, &nodes.get())));
        let path = unwrap(consistency_path(first, second, &nodes.get()));
        prop_assert!(verify_consistency(first, second, &path, &r1, &r2).is_ok());
        if first < second {
            let bad = flip(&path, which.index(path.len()), bit);
            prop_assert!(verify_consistency(first, second, &bad, &r1, &r2).is_err());
            prop_assert!(verify_consistency(first, second, &path, &r2, &r1).is_err());
            let mut bad_root = r1;
            bad_root[usize::from(bit) % 32] ^= 1;
            prop_assert!(verify_consistency(first, second, &path, &bad_root, &r2).is_err());
            prop_assert!(verify_consistency(first, second, &path[..path.len() - 1], &r1, &r2).is_err());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Verification hashes leaf bytes assembled from stored columns; they must be exactly the
    /// RFC 8785 canonical JSON of the entry for any text, or outside verifiers would disagree.
    #[test]
    fn leaf_bytes_are_the_canonical_json_of_the_entry(
        actor in "\\PC{1,20}", target in any::<String>(), key in any::<String>(),
        text in any::<String>(), number in any::<i64>(), real in -1e30f64..1e30, seq in any::<u32>(),
        nanos in 0i64..4_000_000_000_000_000_000,
    ) {
        let entry = wharf_ledger::Entry {
            seq: u64::from(seq),
            time: jiff::Timestamp::from_nanosecond(i128::from(nanos)).unwrap(),
            actor,
            action: "deploy.step".parse().unwrap(),
            target,
            details: serde_json::json!({ key: [text, number, real, null, true] }),
        };
        let canonical = serde_json_canonicalizer::to_vec(&entry.to_json()).unwrap();
        prop_assert_eq!(entry.leaf_bytes(), canonical);
    }
}
