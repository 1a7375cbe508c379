//! The ledger's signing key file in the state directory: created on first use with mode
//! 0600, refused when its mode or content is wrong.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use rand::RngCore;
use wharf_ledger::SignerKey;

use crate::db::StoreError;

/// The key file name inside the state directory.
pub const KEY_FILE: &str = "ledger.key";

/// The meta key under which the database remembers its ledger's verifier key.
const PINNED_VERIFIER: &str = "ledger.verifier_key";

impl crate::Store {
    /// The signing key for this database's ledger, bound to it: the first key used is
    /// pinned in the database, and a key file that later disappears or holds another key is
    /// refused — instead of silently starting a new key whose checkpoints could not vouch for
    /// the old ones. (An outside copy of the verifier key remains the defence against someone
    /// who rewrites both.)
    pub fn ledger_signer(
        &mut self,
        state_dir: &Path,
        origin: impl FnOnce() -> String,
    ) -> Result<SignerKey, StoreError> {
        let path = state_dir.join(KEY_FILE);
        let pinned = self.meta(PINNED_VERIFIER)?;
        if pinned.is_some() && !path.exists() {
            return Err(key_error(
                &path,
                "the ledger key is missing, but this ledger was signed with one; restore the key file (its verifier key is pinned in the database)".to_owned(),
            ));
        }
        if pinned.is_none()
            && let Some(reason) = self.forgotten_ledger(state_dir)?
        {
            return Err(key_error(&path, reason));
        }
        let signer = load_or_create_signer(state_dir, origin)?;
        let verifier = signer.verifier().to_string();
        match pinned {
            None => self.set_meta(PINNED_VERIFIER, &verifier)?,
            Some(pinned) if pinned != verifier => {
                return Err(key_error(
                    &path,
                    format!(
                        "this key file holds {verifier}, but the ledger was signed by {pinned}; restore the original key file"
                    ),
                ));
            }
            Some(_) => {}
        }
        Ok(signer)
    }
}

impl crate::Store {
    /// The verifier key this ledger's checkpoints were signed with, as pinned when the key was
    /// made (`None`: no key yet). Read-only: a verification needs no key file.
    pub fn pinned_verifier(&self) -> Result<Option<String>, StoreError> {
        self.meta(PINNED_VERIFIER)
    }

    /// Why this database cannot be the ledger its state directory's key signed, if it cannot:
    /// the key file exists but the database pins no verifier key. The key is pinned the moment
    /// it is made, so only a database that was wiped, truncated or replaced since looks like
    /// this — and an empty ledger there must not pass for a new one. Read-only.
    pub fn forgotten_ledger(&self, state_dir: &Path) -> Result<Option<String>, StoreError> {
        let path = state_dir.join(KEY_FILE);
        if self.meta(PINNED_VERIFIER)?.is_some() || !path.exists() {
            return Ok(None);
        }
        Ok(Some(format!(
            "the ledger key {} exists, so this state had a ledger, but {} holds no record of it: \
             the database was wiped, truncated or replaced (check it against a checkpoint kept \
             outside with `wharf audit verify --checkpoint FILE`; to start a new state on purpose, \
             move the old key file away first)",
            path.display(),
            self.path.display()
        )))
    }
}

/// Loads the signing key, or creates one named `origin()` if there is none yet. The origin
/// is fixed at creation: it lives in the key file (`PRIVATE+KEY+<origin>+…`).
pub fn load_or_create_signer(
    state_dir: &Path,
    origin: impl FnOnce() -> String,
) -> Result<SignerKey, StoreError> {
    let path = state_dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            check_mode(&path)?;
            SignerKey::parse_private(&text).map_err(|e| key_error(&path, e.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(state_dir, &path, &origin()),
        Err(source) => Err(StoreError::Io {
            path,
            action: "cannot read the ledger key",
            source,
        }),
    }
}

fn key_error(path: &Path, reason: String) -> StoreError {
    StoreError::Key {
        path: path.to_owned(),
        reason,
    }
}

/// A private key others can read is no longer private: refuse it rather than sign with it.
#[cfg(unix)]
fn check_mode(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| StoreError::Io {
        path: path.to_owned(),
        action: "cannot stat the ledger key",
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode != 0o600 {
        return Err(key_error(
            path,
            format!("ledger key has mode {mode:o}; it must be 600 (chmod 600 it)"),
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_path: &Path) -> Result<(), StoreError> {
    Ok(())
}

/// Writes the key to a private temp file, then hard-links it into place: the link either
/// appears complete or fails because another process won the race, whose key is then used.
fn create(state_dir: &Path, path: &Path, origin: &str) -> Result<SignerKey, StoreError> {
    crate::db::private_dir(state_dir).map_err(|source| StoreError::Io {
        path: state_dir.to_owned(),
        action: "cannot create the state directory",
        source,
    })?;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let signer = SignerKey::from_seed(origin, seed).map_err(|e| key_error(path, e.to_string()))?;
    let temp = state_dir.join(format!("{KEY_FILE}.{}.tmp", std::process::id()));
    write_private(&temp, &signer.to_private_string())?;
    let linked = std::fs::hard_link(&temp, path);
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), origin, "ledger key created");
            Ok(signer)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            load_or_create_signer(state_dir, || origin.to_owned())
        }
        Err(source) => Err(StoreError::Io {
            path: path.to_owned(),
            action: "cannot create the ledger key",
            source,
        }),
    }
}

/// Creates `path` with mode 0600 (from the start, never wider) and syncs it.
fn write_private(path: &Path, text: &str) -> Result<(), StoreError> {
    let io = |action| {
        move |source| StoreError::Io {
            path: path.to_owned(),
            action,
            source,
        }
    };
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(io("cannot create the ledger key"))?;
    writeln!(file, "{text}").map_err(io("cannot write the ledger key"))?;
    file.sync_all().map_err(io("cannot sync the ledger key"))
}
