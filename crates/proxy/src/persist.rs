//! The state file: the last applied table, written atomically (temporary file, fsync, rename,
//! fsync of the directory) so a restarted proxy serves it before any control plane speaks.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::server::ApplyError;
use crate::table::{RouteTable, TableError, ValidTable};

/// Why the saved table could not be served.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The file exists but cannot be read.
    #[error("cannot read the state file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not hold a valid table.
    #[error("the state file {path} holds no valid route table: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        source: TableError,
    },
    /// The table could not be applied (a port in use, most likely).
    #[error("cannot serve the table from {path}: {source}")]
    Apply {
        /// The file.
        path: PathBuf,
        /// Why.
        source: ApplyError,
    },
}

/// The table saved in `path`, or `None` when there is no file yet.
pub fn load(path: &Path) -> Result<Option<ValidTable>, RestoreError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(RestoreError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    crate::table::parse(&bytes)
        .map(Some)
        .map_err(|source| RestoreError::Invalid {
            path: path.to_owned(),
            source,
        })
}

/// Replace the file's content with `table`, atomically.
pub fn store(path: &Path, table: &RouteTable) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(table).map_err(std::io::Error::other)?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&json)?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path)?;
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::File::open(directory)?.sync_all()
}
