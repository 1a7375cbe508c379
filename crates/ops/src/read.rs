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
pub use wharf_store::{
    ConfigRevision, DB_FILE, EntryFilter, RolloutRow, STATE_DSN_ENV, StateLocation,
    Store as StateDb,
};

/// Where this process's state lives: the PostgreSQL database `WHARF_STATE_DSN` names, or
/// `state.db` in `state_dir` (see [`StateLocation::for_state_dir`]).
pub fn location(state_dir: &Path) -> Result<StateLocation, OpsError> {
    Ok(StateLocation::for_state_dir(state_dir)?)
}

/// Whether there is a state to read (a PostgreSQL state always is): commands that only read
/// say "nothing yet" instead of creating one.
pub fn state_exists(state_dir: &Path) -> Result<bool, OpsError> {
    Ok(location(state_dir)?.exists())
}

/// The state database when there is one; commands that only read never create it.
pub fn open_existing(state_dir: &Path) -> Result<Option<Store>, OpsError> {
    let location = location(state_dir)?;
    if !location.exists() {
        return Ok(None);
    }
    Ok(Some(Store::open_location(&location)?))
}

/// The state database, created when missing (the writers' entry point, under the lock);
/// a file that fails its integrity check is refused before anything is appended to it.
pub fn open(lock: &crate::ControlLock) -> Result<Store, OpsError> {
    let location = location(lock.state_dir())?;
    Ok(Store::open_location_for_writing(&location)?)
}

/// The ledger of this state, for reading, verifying and proving (creating an empty state when
/// there is none, whose empty ledger verifies).
pub fn open_ledger(state_dir: &Path) -> Result<Ledger<Store>, OpsError> {
    let location = location(state_dir)?;
    Ok(Ledger::new(Store::open_location(&location)?))
}
