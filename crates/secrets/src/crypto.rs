//! The AEAD primitives behind envelope encryption: XChaCha20-Poly1305 with random 24-byte
//! nonces (safe to draw at random: 192 bits never collide in practice), and the associated
//! data that binds every ciphertext to what it is.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use rand::rngs::OsRng;
use zeroize::Zeroizing;

/// Nonce length of XChaCha20-Poly1305.
pub(crate) const NONCE_LEN: usize = 24;

/// A 256-bit key, zeroized on drop.
pub(crate) type KeyBytes = Zeroizing<[u8; 32]>;

/// A ciphertext and the nonce it was sealed with.
pub(crate) struct Sealed {
    pub(crate) nonce: Vec<u8>,
    pub(crate) ciphertext: Vec<u8>,
}

/// 32 bytes from the operating system.
pub(crate) fn random_key() -> KeyBytes {
    let mut key = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(key.as_mut());
    key
}

/// Encrypts `plaintext` under `key` with a fresh random nonce. Fails only for a plaintext
/// too large for the AEAD (about 256 GiB).
pub(crate) fn seal(key: &[u8; 32], plaintext: &[u8], aad: &[u8]) -> Option<Sealed> {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key));
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .ok()?;
    Some(Sealed {
        nonce: nonce.to_vec(),
        ciphertext,
    })
}

/// Decrypts and authenticates; `None` when the key, nonce, associated data or ciphertext do
/// not match (a wrong key and an altered row look the same to an AEAD).
pub(crate) fn open(
    key: &[u8; 32],
    nonce: &[u8],
    ciphertext: &[u8],
    aad: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    if nonce.len() != NONCE_LEN {
        return None;
    }
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key));
    cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
        .map(Zeroizing::new)
}

/// Opens a 32-byte key (a data key or the fingerprint key).
pub(crate) fn open_key(
    key: &[u8; 32],
    nonce: &[u8],
    ciphertext: &[u8],
    aad: &[u8],
) -> Option<KeyBytes> {
    let plain = open(key, nonce, ciphertext, aad)?;
    let mut out = Zeroizing::new([0u8; 32]);
    if plain.len() != out.len() {
        return None;
    }
    out.copy_from_slice(&plain);
    Some(out)
}

/// Associated data of a value: `wharf-secret\0NAME\0VERSION`.
pub(crate) fn value_aad(name: &str, version: u32) -> Vec<u8> {
    format!("wharf-secret\0{name}\0{version}").into_bytes()
}

/// Associated data of a wrapped data key: a different domain from the value's, so a wrapped
/// key can never be passed off as a value or the other way round.
pub(crate) fn key_aad(name: &str, version: u32) -> Vec<u8> {
    format!("wharf-secret-key\0{name}\0{version}").into_bytes()
}

/// A sealed meta value as text: hex of nonce followed by ciphertext.
pub(crate) fn sealed_to_hex(sealed: &Sealed) -> String {
    let mut bytes = sealed.nonce.clone();
    bytes.extend_from_slice(&sealed.ciphertext);
    hex::encode(bytes)
}

/// The inverse of [`sealed_to_hex`]; `None` for malformed text.
pub(crate) fn sealed_from_hex(text: &str) -> Option<Sealed> {
    let bytes = hex::decode(text).ok()?;
    if bytes.len() <= NONCE_LEN {
        return None;
    }
    let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
    Some(Sealed {
        nonce: nonce.to_vec(),
        ciphertext: ciphertext.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_needs_the_same_key_nonce_and_associated_data() {
        let key = random_key();
        let sealed = seal(&key, b"hello", b"ad").unwrap();
        assert_eq!(
            open(&key, &sealed.nonce, &sealed.ciphertext, b"ad")
                .unwrap()
                .as_slice(),
            b"hello"
        );
        assert!(open(&key, &sealed.nonce, &sealed.ciphertext, b"other").is_none());
        assert!(open(&random_key(), &sealed.nonce, &sealed.ciphertext, b"ad").is_none());
        assert!(open(&key, &sealed.nonce[1..], &sealed.ciphertext, b"ad").is_none());
        let text = sealed_to_hex(&sealed);
        let back = sealed_from_hex(&text).unwrap();
        assert_eq!(
            (back.nonce, back.ciphertext),
            (sealed.nonce, sealed.ciphertext)
        );
        assert!(sealed_from_hex("zz").is_none());
    }

    #[test]
    fn values_and_keys_of_different_versions_have_different_associated_data() {
        assert_ne!(value_aad("a", 1), value_aad("a", 2));
        assert_ne!(value_aad("a", 1), key_aad("a", 1));
        assert_eq!(value_aad("db", 3), b"wharf-secret\x00db\x003");
    }
}
