//! Checkpoints (C2SP tlog-checkpoint) signed as C2SP signed notes with Ed25519.
//!
//! A checkpoint body is `origin\nsize\nbase64(root)\n`; the signed note appends an empty line
//! and one line per signature, `— <key name> <base64(key id ‖ signature)>` (an em dash).
//! Keys use the note formats too: the verifier key `<name>+<hex key id>+<base64(0x01 ‖ pub)>`
//! and the signer key `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 ‖ seed)>`, so the key
//! file also records the origin chosen when the key was created.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::hash::{Hash, hash_from_slice, to_hex};

/// The algorithm byte C2SP signed notes assign to Ed25519.
const ALG_ED25519: u8 = 0x01;
/// The prefix of every signature line: an em dash (U+2014) and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a key, a checkpoint or a note is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// A key name (the origin) is empty or holds a space or a `+`.
    #[error("invalid key name {0:?}: it must be non-empty, without spaces or '+'")]
    KeyName(String),
    /// A key string does not have the expected shape.
    #[error("malformed {kind} key: {reason}")]
    MalformedKey { kind: &'static str, reason: String },
    /// The checkpoint body is not origin, size and root lines.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(String),
    /// The note has no signature block.
    #[error("malformed signed note: {0}")]
    MalformedNote(String),
    /// No signature line carries the verifier's name and key ID.
    #[error("the note has no signature by key {0}")]
    NoSignature(String),
    /// A signature line by the verifier's key does not verify.
    #[error("the signature by key {0} does not verify")]
    BadSignature(String),
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
        return Err(NoteError::KeyName(name.to_owned()));
    }
    Ok(())
}

/// The key ID: the first 4 bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key).
pub fn key_id(name: &str, public: &VerifyingKey) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([ALG_ED25519]);
    hasher.update(public.as_bytes());
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// The private half: signs checkpoints. Deliberately has no `Debug` that shows the seed.
pub struct SignerKey {
    name: String,
    key: SigningKey,
}

impl fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignerKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SignerKey {
    /// A key named `name` (the log's origin) from a 32-byte seed the caller draws from a
    /// CSPRNG (the ledger does no IO, so it takes randomness as input).
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        check_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// The key name, which is also the checkpoint origin.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 ‖ seed)>`, the form kept in the key file.
    pub fn to_private_string(&self) -> String {
        let mut bytes = vec![ALG_ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        let id = key_id(&self.name, &self.key.verifying_key());
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            to_hex(&id),
            B64.encode(bytes)
        )
    }

    /// Parses the key file form; the key ID must match the name and key.
    pub fn parse_private(text: &str) -> Result<Self, NoteError> {
        let bad = |reason: &str| NoteError::MalformedKey {
            kind: "signer",
            reason: reason.into(),
        };
        let rest = text
            .trim_end_matches('\n')
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| bad("it does not start with PRIVATE+KEY+"))?;
        let (name, id, key) = split_key(rest).ok_or_else(|| bad("expected name+id+key"))?;
        check_name(name)?;
        let bytes = B64.decode(key).map_err(|e| bad(&e.to_string()))?;
        let seed: [u8; 32] = match bytes.split_first() {
            Some((&ALG_ED25519, seed)) => {
                seed.try_into().map_err(|_| bad("seed is not 32 bytes"))?
            }
            _ => return Err(bad("not an Ed25519 key")),
        };
        let signer = Self {
            name: name.to_owned(),
            key: SigningKey::from_bytes(&seed),
        };
        if to_hex(&key_id(name, &signer.key.verifying_key())) != id.to_ascii_lowercase() {
            return Err(bad("key ID does not match the key"));
        }
        Ok(signer)
    }

    /// The matching public key.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey::new(&self.name, self.key.verifying_key())
    }

    /// Signs `text` (which must end in a newline) as a signed note.
    pub fn sign_note(&self, text: &str) -> String {
        debug_assert!(text.ends_with('\n'));
        let signature = self.key.sign(text.as_bytes());
        let mut blob = key_id(&self.name, &self.key.verifying_key()).to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        format!("{text}\n{SIG_PREFIX}{} {}\n", self.name, B64.encode(blob))
    }
}

fn split_key(text: &str) -> Option<(&str, &str, &str)> {
    let mut parts = text.splitn(3, '+');
    let parts = (parts.next()?, parts.next()?, parts.next()?);
    (parts.1.len() == 8).then_some(parts)
}

/// The public half: what an outside verifier needs to check checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl VerifierKey {
    fn new(name: &str, key: VerifyingKey) -> Self {
        Self {
            name: name.to_owned(),
            id: key_id(name, &key),
            key,
        }
    }

    /// The key name (the origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Parses `<name>+<hex id>+<base64(0x01 ‖ pub)>`.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let bad = |reason: &str| NoteError::MalformedKey {
            kind: "verifier",
            reason: reason.into(),
        };
        let (name, id, key) = split_key(text.trim()).ok_or_else(|| bad("expected name+id+key"))?;
        check_name(name)?;
        let bytes = B64.decode(key).map_err(|e| bad(&e.to_string()))?;
        let public: [u8; 32] = match bytes.split_first() {
            Some((&ALG_ED25519, key)) => key.try_into().map_err(|_| bad("key is not 32 bytes"))?,
            _ => return Err(bad("not an Ed25519 key")),
        };
        let key = VerifyingKey::from_bytes(&public).map_err(|e| bad(&e.to_string()))?;
        let verifier = Self::new(name, key);
        if to_hex(&verifier.id) != id.to_ascii_lowercase() {
            return Err(bad("key ID does not match the key"));
        }
        Ok(verifier)
    }

    /// Checks the note's signature by this key and returns the signed text.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let split = note.rfind("\n\n").ok_or_else(|| {
            NoteError::MalformedNote("no empty line before the signatures".into())
        })?;
        let (text, signatures) = (&note[..=split], &note[split + 2..]);
        for line in signatures.lines() {
            if let Some(signature) = self.signature_in(line)? {
                self.key
                    .verify(text.as_bytes(), &signature)
                    .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
                return Ok(text);
            }
        }
        Err(NoteError::NoSignature(self.name.clone()))
    }

    /// The signature in `line` if it is by this key (same name and key ID).
    fn signature_in(&self, line: &str) -> Result<Option<Signature>, NoteError> {
        let malformed = || NoteError::MalformedNote(format!("bad signature line {line:?}"));
        let rest = line.strip_prefix(SIG_PREFIX).ok_or_else(malformed)?;
        let (name, blob) = rest.split_once(' ').ok_or_else(malformed)?;
        let blob = B64.decode(blob).map_err(|_| malformed())?;
        if name != self.name || blob.len() < 4 || blob[..4] != self.id {
            return Ok(None);
        }
        let signature = Signature::from_slice(&blob[4..])
            .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
        Ok(Some(signature))
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = vec![ALG_ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{}+{}",
            self.name,
            to_hex(&self.id),
            B64.encode(bytes)
        )
    }
}

/// A tlog checkpoint: the log's origin, its size and its root hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The checkpoint body: three lines, each ending in `\n`.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parses a checkpoint body (extension lines after the root are allowed and ignored).
    pub fn parse(body: &str) -> Result<Self, NoteError> {
        let bad = |reason: &str| NoteError::MalformedCheckpoint(reason.into());
        let mut lines = body.split_terminator('\n');
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| bad("no origin line"))?;
        let size = lines.next().ok_or_else(|| bad("no size line"))?;
        let root = lines.next().ok_or_else(|| bad("no root line"))?;
        let size_ok = !size.is_empty() && size.bytes().all(|b| b.is_ascii_digit());
        let size = size
            .parse()
            .ok()
            .filter(|_| size_ok)
            .ok_or_else(|| bad("bad tree size"))?;
        let root = B64.decode(root).ok().and_then(|r| hash_from_slice(&r));
        let root = root.ok_or_else(|| bad("the root is not a base64 SHA-256 hash"))?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }

    /// Opens a signed checkpoint note with `verifier`; the origin must be the key name.
    pub fn open(note: &str, verifier: &VerifierKey) -> Result<Self, NoteError> {
        let checkpoint = Self::parse(verifier.open(note)?)?;
        if checkpoint.origin != verifier.name {
            return Err(NoteError::MalformedCheckpoint(format!(
                "origin {:?} is not the key name {:?}",
                checkpoint.origin, verifier.name
            )));
        }
        Ok(checkpoint)
    }

    /// Parses the checkpoint inside a signed note without checking the signature.
    pub fn peek(note: &str) -> Result<Self, NoteError> {
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| NoteError::MalformedNote("no signatures".into()))?;
        Self::parse(&note[..=split])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> SignerKey {
        SignerKey::from_seed("wharf/demo", rand::random()).unwrap()
    }

    #[test]
    fn private_and_verifier_keys_round_trip() {
        let key = signer();
        let again = SignerKey::parse_private(&key.to_private_string()).unwrap();
        assert_eq!(again.verifier(), key.verifier());
        let text = key.verifier().to_string();
        assert_eq!(VerifierKey::parse(&text).unwrap(), key.verifier());
        assert!(text.starts_with("wharf/demo+"));
    }

    #[test]
    fn signed_checkpoint_opens_and_tampering_is_caught() {
        let key = signer();
        let checkpoint = Checkpoint {
            origin: "wharf/demo".into(),
            size: 3,
            root: [7; 32],
        };
        let note = key.sign_note(&checkpoint.body());
        assert!(note.contains("\n\n\u{2014} wharf/demo "));
        assert_eq!(
            Checkpoint::open(&note, &key.verifier()).unwrap(),
            checkpoint
        );
        let tampered = note.replacen("\n3\n", "\n4\n", 1);
        assert_eq!(
            Checkpoint::open(&tampered, &key.verifier()),
            Err(NoteError::BadSignature("wharf/demo".into()))
        );
        let other = signer();
        assert!(matches!(
            Checkpoint::open(&note, &other.verifier()),
            Err(NoteError::NoSignature(_))
        ));
    }

    #[test]
    fn malformed_keys_are_refused() {
        for bad in [
            "",
            "PRIVATE+KEY+x",
            "PRIVATE+KEY+a+00000000+AAAA",
            "nonsense",
        ] {
            assert!(SignerKey::parse_private(bad).is_err(), "{bad}");
        }
        assert!(VerifierKey::parse("a+zz+AAAA").is_err());
    }
}
