//! Reading the state without a control plane's help: `status`, `logs`, `audit log`, `secret
//! list`. Readers never take the lock (SQLite's WAL lets them read beside the writer) and
//! never write: every write goes through a use case of this crate.

use std::path::Path;

use wharf_store::{DB_FILE, Store};

use crate::OpsError;

/// The state database when there is one; commands that only read never create it.
pub fn open_existing(state_dir: &Path) -> Result<Option<Store>, OpsError> {
    if !state_dir.join(DB_FILE).exists() {
        return Ok(None);
    }
    Ok(Some(Store::open(state_dir)?))
}

/// The state database, created when missing (the writers' entry point, under the lock).
pub fn open(lock: &crate::ControlLock) -> Result<Store, OpsError> {
    Ok(Store::open(lock.state_dir())?)
}
