//! Reading the state without a control plane's help: `status`, `logs`, `audit log`, `secret
//! list`. Readers never take the lock (SQLite's WAL lets them read beside the writer) and
//! never write: every write goes through a use case of this crate.

use std::path::Path;

use wharf_ledger::Ledger;
use wharf_store::Store;

use crate::OpsError;

/// What readers need from the store, named here so the CLI depends on this crate alone: it
/// opens the state only through [`open_existing`] (reading) and [`open`] (writing, under the
/// lock).
pub use wharf_store::{ConfigRevision, DB_FILE, EntryFilter, RolloutRow, Store as StateDb};

/// The state database when there is one; commands that only read never create it.
pub fn open_existing(state_dir: &Path) -> Result<Option<Store>, OpsError> {
    if !state_dir.join(DB_FILE).exists() {
        return Ok(None);
    }
    Ok(Some(Store::open(state_dir)?))
}

/// The state database, created when missing (the writers' entry point, under the lock);
/// a file that fails its integrity check is refused before anything is appended to it.
pub fn open(lock: &crate::ControlLock) -> Result<Store, OpsError> {
    Ok(Store::open_for_writing(lock.state_dir())?)
}

/// The ledger of this state, for reading, verifying and proving (creating an empty state when
/// there is none, whose empty ledger verifies).
pub fn open_ledger(state_dir: &Path) -> Result<Ledger<Store>, OpsError> {
    Ok(Ledger::new(Store::open(state_dir)?))
}
