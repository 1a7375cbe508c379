//! One driver per datastore kind: capture (stream a consistent copy out of the engine with its
//! own tool and take the record of the same state), record (the same record from a live
//! copy, for drills) and restore (feed a backup's data file back through the engine's tool).

pub(crate) mod directory;
pub(crate) mod mariadb;
pub(crate) mod pg_archive;
pub(crate) mod postgres;
pub(crate) mod redis;
pub(crate) mod resp;
pub(crate) mod sqlite;

use std::io::Write;

use crate::error::Result;

/// Writes a backup's data file (from the repository) into the given writer.
pub(crate) type Feed<'a> = &'a mut dyn FnMut(&mut dyn Write) -> Result<()>;
