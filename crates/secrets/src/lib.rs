//! wharf-secrets: secret values at rest in the state database, and nowhere else.
//!
//! **Envelope encryption.** Each version of each secret is encrypted with XChaCha20-Poly1305
//! under its own random data key; the data key is stored wrapped (encrypted) under the master
//! key. The AEAD's associated data binds a ciphertext to its secret name and version, so rows
//! cannot be swapped. `rekey` re-wraps the data keys only — values are never decrypted in bulk.
//!
//! **The master key** comes from `WHARF_MASTER_KEY` (64 hex characters) or the key file
//! `master.key` in the state directory (mode 0600). On the embedded default it is generated on
//! first use, and the caller shows a notice to back it up. A wrong key is detected before
//! anything is written: the database keeps a check value encrypted under the key it was
//! set up with.
//!
//! **Fingerprints** are HMAC-SHA256 of a value under a fingerprint key kept (wrapped) in the
//! database, so the ledger can show that a value changed, and equals another, without
//! revealing it. Fingerprints survive `rekey`.
//!
//! **Never leaked:** [`SecretValue`] zeroizes on drop and its `Debug` prints `[redacted]`; no
//! error message of this crate carries a value.

use std::path::{Path, PathBuf};

use wharf_store::Store;

/// The key file name inside the state directory.
pub const MASTER_KEY_FILE: &str = "master.key";
/// The environment variable that holds the master key (64 hex characters).
pub const MASTER_KEY_ENV: &str = "WHARF_MASTER_KEY";

/// Why a secrets operation failed. Messages name the secret, version or file, never a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(
        "the master key does not open this state database's secrets (it was set up with another key); use the original key or restore its key file"
    )]
    WrongKey,
    #[error("{source_name}: {reason}")]
    BadKey { source_name: String, reason: String },
    #[error("no secret named `{0}`")]
    Unknown(String),
    #[error("secret `{name}` has no version {version} (it has 1 to {latest})")]
    UnknownVersion {
        name: String,
        version: u32,
        latest: u32,
    },
    #[error("secret `{name}` version {version} does not decrypt: the stored row was altered")]
    Corrupt { name: String, version: u32 },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] wharf_store::StoreError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// 32 bytes that wrap every data key. Zeroized on drop.
pub struct MasterKey(/* Zeroizing<[u8; 32]> */ [u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

/// Where the master key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Env,
    File(PathBuf),
    /// Generated now and written to this file: tell the operator to back it up.
    Created(PathBuf),
}

impl MasterKey {
    /// `WHARF_MASTER_KEY` when set (passed in, so callers never mutate the environment), else
    /// the key file; with neither, and `create` true, a new key written to the key file.
    pub fn load(
        state_dir: &Path,
        env_value: Option<&str>,
        create: bool,
    ) -> Result<(MasterKey, KeySource), SecretsError> {
        let _ = (state_dir, env_value, create);
        todo!("helper")
    }

    /// A fresh random key (for `rekey`).
    pub fn generate() -> MasterKey {
        todo!("helper")
    }

    /// 64 hex characters, for the operator to store; zeroized when dropped.
    pub fn to_hex(&self) -> SecretValue {
        todo!("helper")
    }

    /// Writes the key file (mode 0600), replacing it atomically (for `rekey`).
    pub fn write_file(&self, state_dir: &Path) -> Result<PathBuf, SecretsError> {
        let _ = state_dir;
        todo!("helper")
    }
}

/// A secret value in memory: zeroized on drop, `[redacted]` in `Debug`, no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(/* Zeroizing<Vec<u8>> */ Vec<u8>);

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl SecretValue {
    pub fn new(bytes: Vec<u8>) -> SecretValue {
        SecretValue(bytes)
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
    /// The value as UTF-8 (environment variables and `${secret:…}` need text).
    pub fn expose_str(&self) -> Result<&str, SecretsError> {
        std::str::from_utf8(&self.0)
            .map_err(|_| SecretsError::Invalid("the secret value is not UTF-8 text".to_owned()))
    }
}

/// How a version came to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Set,
    Rotate,
    /// A copy of an earlier version's value.
    Rollback {
        to: u32,
    },
}

/// One version of a secret, without its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    pub name: String,
    pub version: u32,
    /// RFC 3339.
    pub created_at: String,
    pub actor: String,
    pub reason: Option<String>,
    /// `set`, `rotate`, `rollback:V`.
    pub origin: String,
    /// Keyed fingerprint (HMAC-SHA256, hex, 32 characters) of the value.
    pub fingerprint: String,
}

/// Unlocked secrets of one state database.
pub struct Secrets {
    master: MasterKey,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets([unlocked])")
    }
}

impl Secrets {
    /// Checks the key against the database (setting the check value up on first use) and
    /// unwraps the fingerprint key. A wrong key is [`SecretsError::WrongKey`], nothing written.
    pub fn unlock(store: &mut Store, master: MasterKey) -> Result<Secrets, SecretsError> {
        let _ = (store, &master);
        todo!("helper")
    }

    /// Stores a new version; it becomes the current one.
    pub fn put(
        &self,
        store: &mut Store,
        name: &str,
        value: &SecretValue,
        actor: &str,
        reason: Option<&str>,
        origin: Origin,
    ) -> Result<VersionInfo, SecretsError> {
        let _ = (store, name, value, actor, reason, origin, &self.master);
        todo!("helper")
    }

    /// The current (latest) version and its value.
    pub fn current(
        &self,
        store: &Store,
        name: &str,
    ) -> Result<Option<(VersionInfo, SecretValue)>, SecretsError> {
        let _ = (store, name);
        todo!("helper")
    }

    /// One version's value.
    pub fn value(
        &self,
        store: &Store,
        name: &str,
        version: u32,
    ) -> Result<SecretValue, SecretsError> {
        let _ = (store, name, version);
        todo!("helper")
    }

    /// A new version holding version `to`'s value.
    pub fn rollback(
        &self,
        store: &mut Store,
        name: &str,
        to: u32,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<VersionInfo, SecretsError> {
        let _ = (store, name, to, actor, reason);
        todo!("helper")
    }

    /// The keyed fingerprint of a value (what the ledger records).
    pub fn fingerprint(&self, value: &SecretValue) -> String {
        let _ = value;
        todo!("helper")
    }

    /// Re-wraps every data key (and the fingerprint key and check value) under `new`, in one
    /// transaction; returns the secrets unlocked with the new key.
    pub fn rekey(self, store: &mut Store, new: MasterKey) -> Result<Secrets, SecretsError> {
        let _ = (store, new);
        todo!("helper")
    }
}

/// Every secret's current version, without values (no key needed).
pub fn list(store: &Store) -> Result<Vec<VersionInfo>, SecretsError> {
    let _ = store;
    todo!("helper")
}

/// Every version of one secret, oldest first, without values (no key needed).
pub fn history(store: &Store, name: &str) -> Result<Vec<VersionInfo>, SecretsError> {
    let _ = (store, name);
    todo!("helper")
}

/// A random value of `length` characters drawn uniformly from `alphabet` (OS randomness,
/// rejection sampling: no modulo bias).
pub fn generate(length: usize, alphabet: &str) -> Result<SecretValue, SecretsError> {
    let _ = (length, alphabet);
    todo!("helper")
}

/// Where a secret stands against its rotation policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// No `max_age` in the manifest.
    NoPolicy,
    Ok {
        due_in_days: i64,
    },
    /// Due within the warning window (a tenth of `max_age`, at least a day).
    DueSoon {
        due_in_days: i64,
    },
    Overdue {
        by_days: i64,
    },
    /// Declared in the manifest but never set.
    Missing,
}

/// Pure: the rotation status of a version created at `created_at` under `max_age`, at `now`.
pub fn rotation(
    created_at: jiff::Timestamp,
    max_age: Option<std::time::Duration>,
    now: jiff::Timestamp,
) -> Rotation {
    let _ = (created_at, max_age, now);
    todo!("helper")
}
