//! A backup in flight: the entries a driver streams (files read from a running tool or a
//! temp copy) and the step that completes it — waiting for the tool and yielding the record.
//! wharf's archiver (`archive`) reads them, so the data goes from the tool's pipe into chunks
//! and packs without ever being whole in memory.

use std::io::Read;
use std::path::PathBuf;

use rustic_core::repofile::Metadata;

use crate::error::Result;
use crate::record::Record;

/// A reader the archiver pulls from.
pub(crate) type Stream = Box<dyn Read + Send>;

/// One entry below the backup's `data/` folder.
pub(crate) enum Entry {
    Dir(PathBuf, Metadata),
    File(PathBuf, Metadata, Stream),
}

/// What a driver returns: entries to stream in path order, then the completion that waits for
/// its tool and returns the record (or the reason the backup is no good).
pub(crate) struct Capture {
    pub entries: Vec<Entry>,
    pub finish: Box<dyn FnOnce() -> Result<Record> + Send>,
}
