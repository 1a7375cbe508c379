//! The master key's sources: the environment variable's text and the key file (mode 0600,
//! 64 hex characters and a newline). No error here ever repeats the key text.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::crypto::KeyBytes;
use crate::{MASTER_KEY_ENV, SecretsError};

/// Parses 64 hex characters (surrounding whitespace ignored); the error is a reason in words
/// that never quotes the text.
pub(crate) fn parse_hex(text: &str) -> Result<KeyBytes, String> {
    let text = text.trim();
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(
            "must be 64 hexadecimal characters (0-9, a-f); it contains other characters".to_owned(),
        );
    }
    if text.len() != 64 {
        return Err(format!(
            "must be 64 hexadecimal characters (32 bytes); it has {}",
            text.len()
        ));
    }
    let mut key = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text, key.as_mut())
        .map_err(|_| "must be 64 hexadecimal characters".to_owned())?;
    Ok(key)
}

/// The key from the environment variable's value.
pub(crate) fn from_env(value: &str) -> Result<KeyBytes, SecretsError> {
    parse_hex(value).map_err(|reason| SecretsError::BadKey {
        source_name: MASTER_KEY_ENV.to_owned(),
        reason,
    })
}

fn bad_file(path: &Path, reason: String) -> SecretsError {
    SecretsError::BadKey {
        source_name: path.display().to_string(),
        reason,
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SecretsError {
    let path = path.to_owned();
    move |source| SecretsError::Io { path, source }
}

/// Reads the key file; `Ok(None)` when it does not exist. Refuses a file whose mode is not
/// exactly 0600: a key others can read is no longer a secret.
pub(crate) fn read_file(path: &Path) -> Result<Option<KeyBytes>, SecretsError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    let mode = file.metadata().map_err(io(path))?.permissions().mode() & 0o777;
    if mode != 0o600 {
        return Err(bad_file(
            path,
            format!(
                "the key file has mode {mode:04o}; it must be 0600 (run `chmod 600 {}`)",
                path.display()
            ),
        ));
    }
    // Room for the key, a newline and a little more, allocated once so that no copy of the
    // key is left behind by a reallocation.
    let mut text = Zeroizing::new(String::with_capacity(130));
    Read::by_ref(&mut file)
        .take(128)
        .read_to_string(&mut text)
        .map_err(|_| bad_file(path, "the key file is not text".to_owned()))?;
    parse_hex(&text)
        .map(Some)
        .map_err(|reason| bad_file(path, format!("the key file {reason}")))
}

/// Writes `key` as hex and a newline to a new file of mode 0600; fails if `path` exists.
pub(crate) fn write_new(path: &Path, key: &[u8; 32]) -> Result<(), SecretsError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    // The umask may have removed bits; make the mode exact.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io(path))?;
    let text = Zeroizing::new(hex::encode(key));
    file.write_all(text.as_bytes()).map_err(io(path))?;
    file.write_all(b"\n").map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

/// Creates the key file with a new key; if another process created it meanwhile, reads
/// that one instead (the bool says whether this call created it).
pub(crate) fn create(
    state_dir: &Path,
    path: &Path,
    key: KeyBytes,
) -> Result<(KeyBytes, bool), SecretsError> {
    wharf_store::private_dir(state_dir).map_err(io(state_dir))?;
    match write_new(path, &key) {
        Ok(()) => {
            sync_dir(state_dir);
            Ok((key, true))
        }
        Err(SecretsError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::AlreadyExists =>
        {
            let existing = read_file(path)?.ok_or_else(|| io(path)(source))?;
            Ok((existing, false))
        }
        Err(e) => Err(e),
    }
}

/// Replaces the key file atomically: a temporary file of mode 0600, synced, renamed over it.
pub(crate) fn replace(state_dir: &Path, key: &[u8; 32]) -> Result<PathBuf, SecretsError> {
    wharf_store::private_dir(state_dir).map_err(io(state_dir))?;
    let path = state_dir.join(crate::MASTER_KEY_FILE);
    let tmp = state_dir.join(format!("{}.tmp", crate::MASTER_KEY_FILE));
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&tmp)(e)),
    }
    write_new(&tmp, key)?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    sync_dir(state_dir);
    Ok(path)
}

/// Makes a new directory entry durable. Best effort: some filesystems refuse to sync a
/// directory, and the file itself is already synced.
fn sync_dir(dir: &Path) {
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_keys_parse_and_bad_ones_are_explained_without_echo() {
        let good = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF\n";
        assert_eq!(parse_hex(good).unwrap()[1], 0x11);
        for bad in ["abc", &good[..62], "g".repeat(64).as_str(), ""] {
            let reason = parse_hex(bad).unwrap_err();
            assert!(reason.contains("64 hexadecimal"), "{reason}");
            if !bad.is_empty() {
                assert!(!reason.contains(bad), "{reason}");
            }
        }
    }
}
