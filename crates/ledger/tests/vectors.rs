//! Conformance with the RFC 6962 test vectors published by transparency-dev.
//!
//! Source of every constant below (copied verbatim):
//! - github.com/transparency-dev/merkle, `testonly/constants.go` (LeafInputs, RootHashes)
//! - github.com/transparency-dev/merkle, `proof/verify_test.go` (inclusionProofs,
//!   consistencyProofs; leaf numbers there are 1-based, converted to 0-based indices here)
//!
//! The same data is in google/certificate-transparency (merkle_tree_test.cc).

mod common;

use common::{Nodes, unwrap};
use wharf_ledger::tree::{consistency_path, inclusion_path, root};
use wharf_ledger::{Hash, empty_root, from_hex, leaf_hash, verify_consistency, verify_inclusion};

const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (0-based leaf index, tree size, proof) from verify_test.go `inclusionProofs`.
const INCLUSION: &[(u64, u64, &[&str])] = &[
    (0, 1, &[]),
    (
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// (size1, size2, proof) from verify_test.go `consistencyProofs`.
const CONSISTENCY: &[(u64, u64, &[&str])] = &[
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

fn h(hex: &str) -> Hash {
    from_hex(hex).unwrap().try_into().unwrap()
}

fn hashes(list: &[&str]) -> Vec<Hash> {
    list.iter().map(|x| h(x)).collect()
}

fn leaves() -> Vec<Vec<u8>> {
    LEAVES.iter().map(|x| from_hex(x).unwrap()).collect()
}

fn tree() -> Nodes {
    let leaves = leaves();
    Nodes::build(leaves.iter().map(Vec::as_slice))
}

#[test]
fn empty_tree_root_is_sha256_of_nothing() {
    assert_eq!(
        empty_root(),
        h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
}

#[test]
fn roots_for_sizes_1_to_8_match() {
    let nodes = tree();
    for (i, expected) in ROOTS.iter().enumerate() {
        let size = i as u64 + 1;
        assert_eq!(unwrap(root(size, &nodes.get())), h(expected), "size {size}");
    }
}

#[test]
fn inclusion_proofs_match_and_verify() {
    let nodes = tree();
    let leaves = leaves();
    for &(index, size, expected) in INCLUSION {
        let path = unwrap(inclusion_path(index, size, &nodes.get()));
        assert_eq!(path, hashes(expected), "index {index} size {size}");
        let leaf = leaf_hash(&leaves[index as usize]);
        let root = h(ROOTS[size as usize - 1]);
        verify_inclusion(index, size, &leaf, &path, &root).unwrap();
        assert!(verify_inclusion(index ^ 1, size, &leaf, &path, &root).is_err() || size == 1);
        assert!(verify_inclusion(index, size, &leaf, &path, &h(ROOTS[0])).is_err() || size == 1);
    }
}

#[test]
fn consistency_proofs_match_and_verify() {
    let nodes = tree();
    for &(first, second, expected) in CONSISTENCY {
        let path = unwrap(consistency_path(first, second, &nodes.get()));
        assert_eq!(path, hashes(expected), "{first} -> {second}");
        let (r1, r2) = (h(ROOTS[first as usize - 1]), h(ROOTS[second as usize - 1]));
        verify_consistency(first, second, &path, &r1, &r2).unwrap();
        if first != second {
            assert!(verify_consistency(first, second, &path, &r2, &r1).is_err());
            assert!(verify_consistency(first, second, &[], &r1, &r2).is_err());
        }
    }
}

#[test]
fn trivial_consistency_cases_follow_the_reference() {
    let (a, b) = ([1; 32], [2; 32]);
    assert!(verify_consistency(0, 0, &[], &a, &a).is_ok());
    assert!(verify_consistency(0, 1, &[], &a, &b).is_ok());
    assert!(verify_consistency(1, 1, &[], &b, &b).is_ok());
    assert!(verify_consistency(1, 1, &[], &a, &b).is_err());
    assert!(verify_consistency(1, 0, &[], &a, &b).is_err());
    assert!(verify_consistency(1, 2, &[], &a, &b).is_err());
    assert!(verify_consistency(1, 1, &[empty_root()], &a, &a).is_err());
}
