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

mod crypto;
mod generate;
mod key;
mod rotation;

use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wharf_store::{RewrappedKey, SecretVersionRow, Store};
use zeroize::Zeroizing;

use crate::crypto::KeyBytes;

/// The key file name inside the state directory.
pub const MASTER_KEY_FILE: &str = "master.key";
/// The environment variable that holds the master key (64 hex characters).
pub const MASTER_KEY_ENV: &str = "WHARF_MASTER_KEY";

/// Meta key of the check value: a known constant sealed under the master key.
const META_CHECK: &str = "secrets.check";
/// Meta key of the fingerprint key, sealed under the master key.
const META_FINGERPRINT_KEY: &str = "secrets.fingerprint_key";
/// The check value's plaintext and associated data.
const CHECK_PLAINTEXT: &[u8] = b"wharf master key check v1";
const CHECK_AAD: &[u8] = b"wharf-secrets-check";
const FINGERPRINT_KEY_AAD: &[u8] = b"wharf-secrets-fingerprint-key";

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
pub struct MasterKey(KeyBytes);

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
        if let Some(value) = env_value {
            return Ok((MasterKey(key::from_env(value)?), KeySource::Env));
        }
        let path = state_dir.join(MASTER_KEY_FILE);
        if let Some(key) = key::read_file(&path)? {
            return Ok((MasterKey(key), KeySource::File(path)));
        }
        if !create {
            return Err(SecretsError::BadKey {
                source_name: MASTER_KEY_ENV.to_owned(),
                reason: format!(
                    "not set, and there is no key file {}; set it or restore the key file",
                    path.display()
                ),
            });
        }
        let (key, created) = key::create(state_dir, &path, crypto::random_key())?;
        let source = if created {
            KeySource::Created(path)
        } else {
            KeySource::File(path)
        };
        Ok((MasterKey(key), source))
    }

    /// A fresh random key (for `rekey`).
    pub fn generate() -> MasterKey {
        MasterKey(crypto::random_key())
    }

    /// 64 hex characters, for the operator to store; zeroized when dropped.
    pub fn to_hex(&self) -> SecretValue {
        SecretValue::new(hex::encode(self.0.as_ref()).into_bytes())
    }

    /// Writes the key file (mode 0600), replacing it atomically (for `rekey`).
    pub fn write_file(&self, state_dir: &Path) -> Result<PathBuf, SecretsError> {
        key::replace(state_dir, &self.0)
    }
}

/// A secret value in memory: zeroized on drop, `[redacted]` in `Debug`, no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl SecretValue {
    pub fn new(bytes: Vec<u8>) -> SecretValue {
        SecretValue(Zeroizing::new(bytes))
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

impl Origin {
    /// The text stored and shown: `set`, `rotate`, `rollback:V`.
    pub fn as_text(&self) -> String {
        match self {
            Origin::Set => "set".to_owned(),
            Origin::Rotate => "rotate".to_owned(),
            Origin::Rollback { to } => format!("rollback:{to}"),
        }
    }
}

impl VersionInfo {
    fn from_row(row: &SecretVersionRow) -> VersionInfo {
        VersionInfo {
            name: row.name.clone(),
            version: row.version,
            created_at: row.created_at.clone(),
            actor: row.actor.clone(),
            reason: row.reason.clone(),
            origin: row.origin.clone(),
            fingerprint: row.fingerprint.clone(),
        }
    }
}

/// Unlocked secrets of one state database.
pub struct Secrets {
    master: MasterKey,
    fingerprint_key: KeyBytes,
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
        let check = store.meta(META_CHECK)?;
        let wrapped = store.meta(META_FINGERPRINT_KEY)?;
        match (check, wrapped) {
            (Some(check), Some(wrapped)) => {
                let check = crypto::sealed_from_hex(&check).ok_or_else(|| damaged(META_CHECK))?;
                let opened = crypto::open(&master.0, &check.nonce, &check.ciphertext, CHECK_AAD)
                    .ok_or(SecretsError::WrongKey)?;
                if opened.as_slice() != CHECK_PLAINTEXT {
                    return Err(SecretsError::WrongKey);
                }
                let fingerprint_key = crypto::sealed_from_hex(&wrapped)
                    .and_then(|w| {
                        crypto::open_key(&master.0, &w.nonce, &w.ciphertext, FINGERPRINT_KEY_AAD)
                    })
                    .ok_or_else(|| damaged(META_FINGERPRINT_KEY))?;
                Ok(Secrets {
                    master,
                    fingerprint_key,
                })
            }
            (None, None) => Self::set_up(store, master),
            _ => Err(SecretsError::Invalid(format!(
                "the state database has only one of `{META_CHECK}` and `{META_FINGERPRINT_KEY}` in its meta table: it was altered; restore it from a backup"
            ))),
        }
    }

    /// First use of a database: a new fingerprint key, and both meta values in one write.
    fn set_up(store: &mut Store, master: MasterKey) -> Result<Secrets, SecretsError> {
        if !store.latest_secret_versions()?.is_empty() {
            return Err(SecretsError::Invalid(format!(
                "the state database holds secrets but no `{META_CHECK}` in its meta table: it was altered; restore it from a backup"
            )));
        }
        let secrets = Secrets {
            master,
            fingerprint_key: crypto::random_key(),
        };
        let (check, wrapped) = secrets.sealed_meta()?;
        store.set_meta_values(&[(META_CHECK, &check), (META_FINGERPRINT_KEY, &wrapped)])?;
        Ok(secrets)
    }

    /// The check value and the wrapped fingerprint key under this master key, as meta text.
    fn sealed_meta(&self) -> Result<(String, String), SecretsError> {
        let check =
            crypto::seal(&self.master.0, CHECK_PLAINTEXT, CHECK_AAD).ok_or_else(too_large)?;
        let wrapped = crypto::seal(
            &self.master.0,
            self.fingerprint_key.as_ref(),
            FINGERPRINT_KEY_AAD,
        )
        .ok_or_else(too_large)?;
        Ok((
            crypto::sealed_to_hex(&check),
            crypto::sealed_to_hex(&wrapped),
        ))
    }

    /// Unwraps a row's data key and decrypts its value; any mismatch is [`SecretsError::Corrupt`]
    /// (the key was checked at unlock, so a failure means the row was altered).
    fn decrypt(&self, row: &SecretVersionRow) -> Result<SecretValue, SecretsError> {
        let data_key = self.unwrap_data_key(row)?;
        crypto::open(
            &data_key,
            &row.nonce,
            &row.ciphertext,
            &crypto::value_aad(&row.name, row.version),
        )
        .map(SecretValue)
        .ok_or_else(|| corrupt(row))
    }

    fn unwrap_data_key(&self, row: &SecretVersionRow) -> Result<KeyBytes, SecretsError> {
        crypto::open_key(
            &self.master.0,
            &row.key_nonce,
            &row.wrapped_key,
            &crypto::key_aad(&row.name, row.version),
        )
        .ok_or_else(|| corrupt(row))
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
        check_name(name)?;
        let latest = store
            .latest_secret_version(name)?
            .map_or(0, |row| row.version);
        let version = latest.checked_add(1).ok_or_else(|| {
            SecretsError::Invalid(format!("secret `{name}` has too many versions"))
        })?;
        let data_key = crypto::random_key();
        let sealed = crypto::seal(&data_key, value.expose(), &crypto::value_aad(name, version))
            .ok_or_else(too_large)?;
        let wrapped = crypto::seal(
            &self.master.0,
            data_key.as_ref(),
            &crypto::key_aad(name, version),
        )
        .ok_or_else(too_large)?;
        let row = SecretVersionRow {
            name: name.to_owned(),
            version,
            created_at: jiff::Timestamp::now().to_string(),
            actor: actor.to_owned(),
            reason: reason.map(str::to_owned),
            origin: origin.as_text(),
            fingerprint: self.fingerprint(value),
            wrapped_key: wrapped.ciphertext,
            key_nonce: wrapped.nonce,
            nonce: sealed.nonce,
            ciphertext: sealed.ciphertext,
        };
        store.insert_secret_version(&row)?;
        Ok(VersionInfo::from_row(&row))
    }

    /// The current (latest) version and its value.
    pub fn current(
        &self,
        store: &Store,
        name: &str,
    ) -> Result<Option<(VersionInfo, SecretValue)>, SecretsError> {
        let Some(row) = store.latest_secret_version(name)? else {
            return Ok(None);
        };
        let value = self.decrypt(&row)?;
        Ok(Some((VersionInfo::from_row(&row), value)))
    }

    /// One version's value.
    pub fn value(
        &self,
        store: &Store,
        name: &str,
        version: u32,
    ) -> Result<SecretValue, SecretsError> {
        match store.secret_version(name, version)? {
            Some(row) => self.decrypt(&row),
            None => Err(missing_version(store, name, version)?),
        }
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
        let value = self.value(store, name, to)?;
        self.put(store, name, &value, actor, reason, Origin::Rollback { to })
    }

    /// The keyed fingerprint of a value (what the ledger records).
    pub fn fingerprint(&self, value: &SecretValue) -> String {
        // A 32-byte key is always a valid HMAC key.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.fingerprint_key.as_ref())
            .expect("HMAC takes keys of any length");
        mac.update(value.expose());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// Re-wraps every data key (and the fingerprint key and check value) under `new`, in one
    /// transaction; returns the secrets unlocked with the new key.
    pub fn rekey(self, store: &mut Store, new: MasterKey) -> Result<Secrets, SecretsError> {
        let mut rewrapped = Vec::new();
        for row in store.all_secret_versions()? {
            let data_key = self.unwrap_data_key(&row)?;
            let sealed = crypto::seal(
                &new.0,
                data_key.as_ref(),
                &crypto::key_aad(&row.name, row.version),
            )
            .ok_or_else(too_large)?;
            rewrapped.push(RewrappedKey {
                name: row.name,
                version: row.version,
                wrapped_key: sealed.ciphertext,
                key_nonce: sealed.nonce,
            });
        }
        let secrets = Secrets {
            master: new,
            fingerprint_key: self.fingerprint_key,
        };
        let (check, wrapped) = secrets.sealed_meta()?;
        store.rewrap_secrets(
            &rewrapped,
            &[(META_CHECK, &check), (META_FINGERPRINT_KEY, &wrapped)],
        )?;
        Ok(secrets)
    }
}

/// Every secret's current version, without values (no key needed).
pub fn list(store: &Store) -> Result<Vec<VersionInfo>, SecretsError> {
    Ok(store
        .latest_secret_versions()?
        .iter()
        .map(VersionInfo::from_row)
        .collect())
}

/// Every version of one secret, oldest first, without values (no key needed); empty for a
/// name that was never set.
pub fn history(store: &Store, name: &str) -> Result<Vec<VersionInfo>, SecretsError> {
    Ok(store
        .secret_versions(name)?
        .iter()
        .map(VersionInfo::from_row)
        .collect())
}

/// A random value of `length` characters drawn uniformly from `alphabet` (OS randomness,
/// rejection sampling: no modulo bias).
pub fn generate(length: usize, alphabet: &str) -> Result<SecretValue, SecretsError> {
    generate::generate(length, alphabet)
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
    rotation::rotation(created_at, max_age, now)
}

/// The error for a version that does not exist: which versions do.
fn missing_version(store: &Store, name: &str, version: u32) -> Result<SecretsError, SecretsError> {
    Ok(match store.latest_secret_version(name)? {
        None => SecretsError::Unknown(name.to_owned()),
        Some(latest) => SecretsError::UnknownVersion {
            name: name.to_owned(),
            version,
            latest: latest.version,
        },
    })
}

/// Names are part of the associated data (`\0`-separated) and appear in messages.
fn check_name(name: &str) -> Result<(), SecretsError> {
    if name.is_empty() || name.contains('\0') {
        return Err(SecretsError::Invalid(
            "a secret name must be non-empty and contain no NUL character".to_owned(),
        ));
    }
    Ok(())
}

fn corrupt(row: &SecretVersionRow) -> SecretsError {
    SecretsError::Corrupt {
        name: row.name.clone(),
        version: row.version,
    }
}

fn damaged(meta_key: &str) -> SecretsError {
    SecretsError::Invalid(format!(
        "meta value `{meta_key}` of the state database is damaged; restore it from a backup"
    ))
}

fn too_large() -> SecretsError {
    SecretsError::Invalid("the value is too large to encrypt".to_owned())
}

/// The directory of one instance's secret files: on tmpfs when there is one, never in the state
/// directory (which is backed up and copied around). Named by a digest of the state directory,
/// so two stacks on one machine never share it, and whoever stops an instance — the control
/// plane, or `wharf down` without one — finds and removes it.
pub fn files_dir(state_dir: &Path, service: &str, ordinal: u32) -> PathBuf {
    let shm = Path::new("/dev/shm");
    let root = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    // The digest is of the absolute path: the control plane names the directory from the
    // absolute state dir `up` resolved, while a CLI command (offline `down`) holds the relative
    // `.wharf`, and two names for one directory must give one digest.
    let state_dir = std::path::absolute(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
    // The same digest as ever (sha256 of the path as a JSON string, 16 bytes hex, first 12
    // characters), so directories made by an earlier wharf are still found.
    let material = serde_json::Value::String(state_dir.display().to_string()).to_string();
    let digest = <Sha256 as sha2::Digest>::digest(material.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    root.join(format!("wharf-{hex}"))
        .join(format!("{service}-{ordinal}"))
}

/// Removes an instance's secret files, if any (the plaintext must not outlive its user).
pub fn remove_files(state_dir: &Path, service: &str, ordinal: u32) -> std::io::Result<()> {
    let dir = files_dir(state_dir, service, ordinal);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // The stack's own directory (`wharf-<digest>`) goes with its last instance's: removing it
    // fails, harmlessly, while another instance still has files there.
    if let Some(stack_dir) = dir.parent() {
        let _ = std::fs::remove_dir(stack_dir);
    }
    Ok(())
}
