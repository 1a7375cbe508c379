//! Gives a streamed backup's files their true sizes in the snapshot's tree without reading the
//! data again.
//!
//! rustic_core 0.13 keeps the size a `ReadSource` gave for a file (0 for a tool's output, whose
//! length is unknown until it ends), and restic's restorer writes a file of that size. The
//! capture counts the bytes the archiver read from each file; here the trees on the paths to
//! those files are rebuilt with the counted sizes (same content blobs), stored as one new pack
//! of tree blobs with its index, and a snapshot pointing to the new root is saved. rustic_core
//! has no public call that stores a tree blob, so the pack, index and snapshot files are
//! written in restic's format (design.md: "Pack Format", "Indexing") with the repository's
//! master key: AES-256-CTR + Poly1305-AES, uncompressed blobs and JSON, which format v2 allows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aes256ctr_poly1305aes::Aes256CtrPoly1305Aes;
use aes256ctr_poly1305aes::aead::AeadInPlace;
use rand::RngCore;
use rustic_core::repofile::{MasterKey, SnapshotFile, Tree};
use rustic_core::{FileType, Id, TreeId, WriteBackend};
use sha2::{Digest, Sha256};

use crate::error::{BackupError, Result};

/// Bytes read per file, by its path in the snapshot (`stack/service/data/postgres.dump`).
pub(crate) type Sizes = BTreeMap<PathBuf, u64>;

/// A tree blob to store: its id and its serialized JSON.
pub(crate) type NewTree = (TreeId, Vec<u8>);

/// Rebuilds the tree `id` (at `at` in the snapshot) with every file named in `sizes` given its
/// size, loading trees through `load`; the rebuilt trees whose id changed are pushed to `new`
/// (children before parents). Returns the new id (the old one when nothing changed).
pub(crate) fn resize(
    location: &str,
    load: &mut dyn FnMut(TreeId) -> Result<Tree>,
    id: TreeId,
    at: &Path,
    sizes: &Sizes,
    new: &mut Vec<NewTree>,
) -> Result<TreeId> {
    let mut tree = load(id)?;
    for node in &mut tree.nodes {
        let path = at.join(node.name());
        if node.is_file() {
            if let Some(&size) = sizes.get(&path) {
                node.meta.size = size;
            }
        } else if let Some(subtree) = node.subtree
            && node.is_dir()
            && sizes.keys().any(|p| p.starts_with(&path))
        {
            node.subtree = Some(resize(location, load, subtree, &path, sizes, new)?);
        }
    }
    let (bytes, new_id) = tree.serialize().map_err(|e| BackupError::Repository {
        location: location.to_owned(),
        detail: format!("serialize the tree at {}: {e}", at.display()),
    })?;
    if new_id != id {
        new.push((new_id, bytes));
    }
    Ok(new_id)
}

/// Encrypts as restic does: a random 16-byte nonce, the AES-256-CTR ciphertext, the
/// Poly1305-AES tag.
fn encrypt(location: &str, key: &MasterKey, plain: &[u8]) -> Result<Vec<u8>> {
    let mut material = aes256ctr_poly1305aes::Key::default();
    material[..32].copy_from_slice(&key.encrypt);
    material[32..48].copy_from_slice(&key.mac.k);
    material[48..].copy_from_slice(&key.mac.r);
    let mut nonce = aes256ctr_poly1305aes::Nonce::default();
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let mut out = Vec::with_capacity(plain.len() + 32);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plain);
    let tag = Aes256CtrPoly1305Aes::new(&material)
        .encrypt_in_place_detached(&nonce, &[], &mut out[16..])
        .map_err(|_| BackupError::Repository {
            location: location.to_owned(),
            detail: "encryption failed".into(),
        })?;
    out.extend_from_slice(&tag);
    Ok(out)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn id_bytes(id: &Id) -> [u8; 32] {
    let mut out = [0; 32];
    // A `TreeId` displays as 64 hex digits; decoding them cannot fail.
    let _ = hex::decode_to_slice(id.to_hex().as_str(), &mut out);
    out
}

/// One pack holding `trees` (uncompressed tree blobs) and the index file listing them, in
/// restic's format: `(pack id, pack bytes, index JSON)`.
pub(crate) fn pack(
    location: &str,
    key: &MasterKey,
    trees: &[NewTree],
) -> Result<([u8; 32], Vec<u8>, Vec<u8>)> {
    let fail = |detail: String| BackupError::Repository {
        location: location.to_owned(),
        detail,
    };
    let mut pack = Vec::new();
    let mut header = Vec::new();
    let mut blobs = Vec::new();
    for (id, bytes) in trees {
        let sealed = encrypt(location, key, bytes)?;
        let length = u32::try_from(sealed.len())
            .map_err(|_| fail(format!("tree {}: more than 4 GiB", id.to_hex().as_str())))?;
        // Header entry: type 1 (tree, uncompressed), the stored length, the blob id.
        header.push(1u8);
        header.extend_from_slice(&length.to_le_bytes());
        header.extend_from_slice(&id_bytes(id));
        blobs.push(serde_json::json!({
            "id": id.to_hex().as_str(),
            "type": "tree",
            "offset": pack.len(),
            "length": length,
        }));
        pack.extend_from_slice(&sealed);
    }
    let sealed_header = encrypt(location, key, &header)?;
    pack.extend_from_slice(&sealed_header);
    pack.extend_from_slice(&(sealed_header.len() as u32).to_le_bytes());
    let pack_id = sha256(&pack);
    let index = serde_json::json!({
        "packs": [{ "id": hex::encode(pack_id), "blobs": blobs }],
    });
    let index = serde_json::to_vec(&index).map_err(|e| fail(format!("index: {e}")))?;
    Ok((pack_id, pack, index))
}

/// Stores `trees` (pack, then index) and `snap` pointing to `root`, in that order, so no
/// snapshot ever names a tree the repository lacks. Returns the new snapshot's id.
pub(crate) fn store(
    be: &dyn WriteBackend,
    key: &MasterKey,
    trees: &[NewTree],
    mut snap: SnapshotFile,
    root: TreeId,
) -> Result<Id> {
    let location = be.location();
    let fail = |detail: String| BackupError::Repository {
        location: location.clone(),
        detail,
    };
    let write = |tpe: FileType, bytes: Vec<u8>| -> Result<Id> {
        let id = Id::new(sha256(&bytes));
        be.write_bytes(tpe, &id, false, bytes.into())
            .map_err(|e| fail(format!("write {tpe:?}: {}", e.display_log())))?;
        Ok(id)
    };
    if !trees.is_empty() {
        let (pack_id, pack, index) = pack(&location, key, trees)?;
        be.write_bytes(FileType::Pack, &Id::new(pack_id), false, pack.into())
            .map_err(|e| fail(format!("write the tree pack: {}", e.display_log())))?;
        write(FileType::Index, encrypt(&location, key, &index)?)?;
    }
    snap.tree = root;
    snap.id = Id::default().into();
    let json = serde_json::to_vec(&snap).map_err(|e| fail(format!("snapshot: {e}")))?;
    write(FileType::Snapshot, encrypt(&location, key, &json)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustic_core::repofile::{Metadata, Node, NodeType};

    fn file(name: &str, size: u64) -> Node {
        Node::new_node(
            std::ffi::OsStr::new(name),
            NodeType::File,
            Metadata {
                size,
                ..Metadata::default()
            },
        )
    }

    fn dir(name: &str, subtree: TreeId) -> Node {
        let mut node = Node::new_node(
            std::ffi::OsStr::new(name),
            NodeType::Dir,
            Metadata::default(),
        );
        node.subtree = Some(subtree);
        node
    }

    fn tree(nodes: Vec<Node>) -> (TreeId, Tree) {
        let tree = Tree { nodes };
        (tree.serialize().unwrap().1, tree)
    }

    #[test]
    fn only_the_trees_on_the_paths_to_resized_files_are_rebuilt() {
        let (data_id, data) = tree(vec![file("postgres.dump", 0)]);
        let (other_id, other) = tree(vec![file("kept", 5)]);
        let (svc_id, svc) = tree(vec![
            dir("data", data_id),
            dir("other", other_id),
            file("record.json", 0),
        ]);
        let (root_id, root) = tree(vec![dir("db", svc_id)]);
        let store: BTreeMap<TreeId, Tree> = [
            (data_id, data),
            (other_id, other),
            (svc_id, svc),
            (root_id, root),
        ]
        .into();
        let mut loaded = Vec::new();
        let mut load = |id: TreeId| -> Result<Tree> {
            loaded.push(id);
            Ok(store[&id].clone())
        };
        let sizes: Sizes = [
            (PathBuf::from("db/data/postgres.dump"), 1234),
            (PathBuf::from("db/record.json"), 56),
        ]
        .into();
        let mut new = Vec::new();
        let new_root = resize("repo", &mut load, root_id, Path::new(""), &sizes, &mut new).unwrap();
        assert!(!loaded.contains(&other_id), "an unrelated tree was read");
        assert_eq!(new.len(), 3, "data, db and the root are new");
        assert_eq!(new.last().unwrap().0, new_root);
        let trees: BTreeMap<TreeId, Tree> = new
            .iter()
            .map(|(id, bytes)| (*id, serde_json::from_slice(bytes).unwrap()))
            .collect();
        let svc = &trees[&trees[&new_root].nodes[0].subtree.unwrap()];
        assert_eq!(svc.nodes[1].subtree, Some(other_id));
        assert_eq!(svc.nodes[2].meta.size, 56);
        let data = &trees[&svc.nodes[0].subtree.unwrap()];
        assert_eq!(data.nodes[0].meta.size, 1234);
    }

    #[test]
    fn a_pack_holds_each_tree_encrypted_and_its_header_at_the_end() {
        let key = MasterKey::new();
        let (id, tree) = tree(vec![file("a", 1)]);
        let bytes = tree.serialize().unwrap().0;
        let (pack_id, pack, index) = super::pack("repo", &key, &[(id, bytes.clone())]).unwrap();
        assert_eq!(pack_id, sha256(&pack));
        let header_len = u32::from_le_bytes(pack[pack.len() - 4..].try_into().unwrap()) as usize;
        // nonce + (1 + 4 + 32) + tag
        assert_eq!(header_len, 16 + 37 + 16);
        assert_eq!(pack.len(), bytes.len() + 32 + header_len + 4);
        let index: serde_json::Value = serde_json::from_slice(&index).unwrap();
        let blob = &index["packs"][0]["blobs"][0];
        assert_eq!(blob["id"], id.to_hex().as_str());
        assert_eq!(blob["length"], bytes.len() + 32);
        assert_eq!(index["packs"][0]["id"], hex::encode(pack_id));
    }
}
