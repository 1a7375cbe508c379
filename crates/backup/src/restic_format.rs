//! The files of restic's repository format that wharf writes itself (design.md: "Pack
//! Format", "Indexing", "Keys, Encryption and MAC"), with the repository's master key:
//! AES-256-CTR + Poly1305-AES around each blob, header and JSON file. rustic_core has no
//! public call that stores a blob; wharf's archiver (`archive`) writes data packs, their
//! index, the snapshot's tree pack and the snapshot through these.

use aes256ctr_poly1305aes::Aes256CtrPoly1305Aes;
use aes256ctr_poly1305aes::aead::AeadInPlace;
use rand::RngCore;
use std::num::NonZeroU32;

use rustic_core::repofile::{MasterKey, SnapshotFile};
use rustic_core::{FileType, Id, TreeId, WriteBackend};
use sha2::{Digest, Sha256};

use crate::error::{BackupError, Result};

/// A tree blob to store: its id and its serialized JSON.
pub(crate) type NewTree = (TreeId, Vec<u8>);

/// Encrypts as restic does: a random 16-byte nonce, the AES-256-CTR ciphertext, the
/// Poly1305-AES tag.
pub(crate) fn encrypt(location: &str, key: &MasterKey, plain: &[u8]) -> Result<Vec<u8>> {
    let material = cipher_key(key);
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

/// The cipher's key from the master key: the AES key, then Poly1305-AES's `k` and `r`.
fn cipher_key(key: &MasterKey) -> aes256ctr_poly1305aes::Key {
    let mut material = aes256ctr_poly1305aes::Key::default();
    material[..32].copy_from_slice(&key.encrypt);
    material[32..48].copy_from_slice(&key.mac.k);
    material[48..].copy_from_slice(&key.mac.r);
    material
}

/// Opens what [`encrypt`] sealed: checks the tag, then decrypts. Fails on a wrong key or
/// altered bytes.
pub(crate) fn decrypt(location: &str, key: &MasterKey, sealed: &[u8]) -> Result<Vec<u8>> {
    let fail = || BackupError::Repository {
        location: location.to_owned(),
        detail: "a sealed blob does not open with the repository's key".into(),
    };
    if sealed.len() < 32 {
        return Err(fail());
    }
    let material = cipher_key(key);
    let nonce = aes256ctr_poly1305aes::Nonce::clone_from_slice(&sealed[..16]);
    let tag = aes256ctr_poly1305aes::Tag::clone_from_slice(&sealed[sealed.len() - 16..]);
    let mut plain = sealed[16..sealed.len() - 16].to_vec();
    Aes256CtrPoly1305Aes::new(&material)
        .decrypt_in_place_detached(&nonce, &[], &mut plain, &tag)
        .map_err(|_| fail())?;
    Ok(plain)
}

/// Encrypts `value`'s JSON and writes it as a file of type `tpe` named by its hash (an
/// index, a snapshot).
pub(crate) fn save_json(
    be: &dyn WriteBackend,
    key: &MasterKey,
    tpe: FileType,
    value: &impl serde::Serialize,
) -> Result<Id> {
    let location = be.location();
    let fail = |detail: String| BackupError::Repository {
        location: location.clone(),
        detail,
    };
    let json = serde_json::to_vec(value).map_err(|e| fail(format!("{tpe:?}: {e}")))?;
    let bytes = encrypt(&location, key, &json)?;
    let id = Id::new(sha256(&bytes));
    be.write_bytes(tpe, &id, false, bytes.into())
        .map_err(|e| fail(format!("write {tpe:?}: {}", e.display_log())))?;
    Ok(id)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

pub(crate) fn id_bytes(id: &Id) -> [u8; 32] {
    let mut out = [0; 32];
    // A `TreeId` displays as 64 hex digits; decoding them cannot fail.
    let _ = hex::decode_to_slice(id.to_hex().as_str(), &mut out);
    out
}

/// What a blob in a pack holds: restic's pack header and index tell data from trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlobKind {
    Data,
    Tree,
}

/// A pack being filled (design.md "Pack Format"): the sealed blobs one after another, the
/// header entries, the index entries; `finish` seals the header behind them.
#[derive(Default)]
pub(crate) struct Pack {
    bytes: Vec<u8>,
    header: Vec<u8>,
    blobs: Vec<serde_json::Value>,
}

impl Pack {
    /// Bytes of sealed blobs so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }

    /// Appends `sealed` (blob `id`, encrypted; `uncompressed`: its length before zstd when it
    /// was compressed).
    pub fn add(
        &mut self,
        location: &str,
        kind: BlobKind,
        id: &Id,
        sealed: &[u8],
        uncompressed: Option<NonZeroU32>,
    ) -> Result<()> {
        let length = u32::try_from(sealed.len()).map_err(|_| BackupError::Repository {
            location: location.to_owned(),
            detail: format!("a sealed blob of {} bytes", sealed.len()),
        })?;
        let hex = id.to_hex();
        let mut entry = serde_json::json!({
            "id": hex.as_str(),
            "type": match kind { BlobKind::Data => "data", BlobKind::Tree => "tree" },
            "offset": self.bytes.len(),
            "length": length,
        });
        // Header entry: the type (0 data, 1 tree, 2 and 3 the same compressed), the stored
        // length, for a compressed blob its plain length, the blob id.
        let base = match kind {
            BlobKind::Data => 0u8,
            BlobKind::Tree => 1u8,
        };
        match uncompressed {
            Some(plain) => {
                self.header.push(base + 2);
                self.header.extend_from_slice(&length.to_le_bytes());
                self.header.extend_from_slice(&plain.get().to_le_bytes());
                entry["uncompressed_length"] = plain.get().into();
            }
            None => {
                self.header.push(base);
                self.header.extend_from_slice(&length.to_le_bytes());
            }
        }
        self.header.extend_from_slice(&id_bytes(id));
        self.bytes.extend_from_slice(sealed);
        self.blobs.push(entry);
        Ok(())
    }

    /// Seals the header behind the blobs: `(pack id, pack bytes, the pack's index entry)`.
    pub fn finish(
        mut self,
        location: &str,
        key: &MasterKey,
    ) -> Result<([u8; 32], Vec<u8>, serde_json::Value)> {
        let header = encrypt(location, key, &self.header)?;
        self.bytes.extend_from_slice(&header);
        self.bytes
            .extend_from_slice(&(header.len() as u32).to_le_bytes());
        let pack_id = sha256(&self.bytes);
        let entry = serde_json::json!({ "id": hex::encode(pack_id), "blobs": self.blobs });
        Ok((pack_id, self.bytes, entry))
    }

    /// Finishes the pack and writes it to `be`; returns its index entry. `what` names it in
    /// an error.
    pub fn write(
        self,
        be: &dyn WriteBackend,
        key: &MasterKey,
        location: &str,
        what: &str,
    ) -> Result<serde_json::Value> {
        let (pack_id, bytes, entry) = self.finish(location, key)?;
        be.write_bytes(FileType::Pack, &Id::new(pack_id), false, bytes.into())
            .map_err(|e| BackupError::Repository {
                location: location.to_owned(),
                detail: format!("write {what}: {}", e.display_log()),
            })?;
        Ok(entry)
    }
}

/// Stores `trees` (packs of at most `MAX_PACK_BLOBS`, each then its index) and `snap`
/// pointing to `root`, in that order, so no snapshot ever names a tree the repository lacks.
/// Returns the new snapshot's id.
pub(crate) fn store(
    be: &dyn WriteBackend,
    key: &MasterKey,
    trees: &[NewTree],
    mut snap: SnapshotFile,
    root: TreeId,
) -> Result<Id> {
    let location = be.location();
    for trees in trees.chunks(crate::archive::MAX_PACK_BLOBS) {
        let mut pack = Pack::default();
        for (id, bytes) in trees {
            pack.add(
                &location,
                BlobKind::Tree,
                id,
                &encrypt(&location, key, bytes)?,
                None,
            )?;
        }
        let entry = pack.write(be, key, &location, "a tree pack")?;
        save_json(
            be,
            key,
            FileType::Index,
            &serde_json::json!({ "packs": [entry] }),
        )?;
    }
    snap.tree = root;
    snap.id = Id::default().into();
    save_json(be, key, FileType::Snapshot, &snap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustic_core::repofile::{Metadata, Node, NodeType, Tree};

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

    fn tree(nodes: Vec<Node>) -> (TreeId, Tree) {
        let tree = Tree { nodes };
        (tree.serialize().unwrap().1, tree)
    }

    #[test]
    fn a_pack_holds_each_tree_encrypted_and_its_header_at_the_end() {
        let key = MasterKey::new();
        let (id, tree) = tree(vec![file("a", 1)]);
        let bytes = tree.serialize().unwrap().0;
        let mut builder = Pack::default();
        let sealed = encrypt("repo", &key, &bytes).unwrap();
        builder
            .add("repo", BlobKind::Tree, &id, &sealed, None)
            .unwrap();
        let (pack_id, pack, entry) = builder.finish("repo", &key).unwrap();
        let index = serde_json::json!({ "packs": [entry] });
        assert_eq!(pack_id, sha256(&pack));
        // Header entry type 1: a tree, uncompressed.
        let header = decrypt(
            "repo",
            &key,
            &pack[pack.len() - 4 - (16 + 37 + 16)..pack.len() - 4],
        )
        .unwrap();
        assert_eq!(header[0], 1);
        let header_len = u32::from_le_bytes(pack[pack.len() - 4..].try_into().unwrap()) as usize;
        // nonce + (1 + 4 + 32) + tag
        assert_eq!(header_len, 16 + 37 + 16);
        assert_eq!(pack.len(), bytes.len() + 32 + header_len + 4);
        let blob = &index["packs"][0]["blobs"][0];
        assert_eq!(blob["id"], id.to_hex().as_str());
        assert_eq!(blob["type"], "tree");
        assert_eq!(blob["length"], bytes.len() + 32);
        assert_eq!(index["packs"][0]["id"], hex::encode(pack_id));
    }

    #[test]
    fn what_is_sealed_opens_only_with_its_key_and_unaltered() {
        let key = MasterKey::new();
        let sealed = encrypt("repo", &key, b"row data").unwrap();
        assert_eq!(decrypt("repo", &key, &sealed).unwrap(), b"row data");
        assert!(decrypt("repo", &MasterKey::new(), &sealed).is_err());
        let mut altered = sealed.clone();
        altered[20] ^= 1;
        assert!(decrypt("repo", &key, &altered).is_err());
        assert!(decrypt("repo", &key, &sealed[..31]).is_err());
    }
}
