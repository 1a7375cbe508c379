//! `directory`: the files themselves, walked in name order, each hashed while the archiver
//! reads it, so the record (file count and a digest over paths and contents) describes the
//! bytes stored. Symbolic links and special files are skipped with a warning.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustic_core::repofile::Metadata;
use sha2::{Digest, Sha256};
use wharf_manifest::model::DatastoreKind;

use crate::capture::{Capture, Entry};
use crate::error::{BackupError, Result};
use crate::record::{MultisetDigest, Record};

fn err(detail: impl Into<String>) -> BackupError {
    BackupError::store(DatastoreKind::Directory, detail)
}

type Seen = Arc<Mutex<Vec<(String, String)>>>;

fn metadata(meta: &std::fs::Metadata) -> Metadata {
    use std::os::unix::fs::MetadataExt;
    Metadata {
        mode: Some(meta.mode()),
        mtime: jiff::Timestamp::new(meta.mtime(), 0).ok(),
        size: if meta.is_file() { meta.len() } else { 0 },
        ..Metadata::default()
    }
}

fn walk(root: &Path) -> impl Iterator<Item = Result<walkdir::DirEntry>> {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.map_err(|e| err(e.to_string())))
}

pub(crate) fn capture(root: &Path) -> Result<Capture> {
    if !root.is_dir() {
        return Err(err(format!("{} is not a directory", root.display())));
    }
    // Hashed before the archiver reads: the record's size must be known for its tree node.
    // A file written in between makes the drill's content check fail, which is the truth.
    let recorded = record(root)?;
    let root_text = root.display().to_string();
    let seen: Seen = Arc::default();
    let mut entries = Vec::new();
    for entry in walk(root) {
        let entry = entry?;
        let relative = entry
            .path()
            .strip_prefix(root)
            .unwrap_or(entry.path())
            .to_owned();
        let meta = entry.metadata().map_err(|e| err(e.to_string()))?;
        if meta.is_dir() {
            entries.push(Entry::Dir(relative, metadata(&meta)));
        } else if meta.is_file() {
            let reader = Hashing {
                source: entry.path().to_owned(),
                file: None,
                path: relative.to_string_lossy().into_owned(),
                hash: Sha256::new(),
                seen: Some(seen.clone()),
            };
            entries.push(Entry::File(relative, metadata(&meta), Box::new(reader)));
        } else {
            tracing::warn!(path = %entry.path().display(), "not a file or directory: skipped");
        }
    }
    Ok(Capture {
        entries,
        finish: Box::new(move || {
            let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
            let archived = record_of(&seen);
            if archived != recorded {
                tracing::warn!(root = %root_text, "files changed while being backed up");
            }
            Ok(recorded)
        }),
    })
}

fn record_of(files: &[(String, String)]) -> Record {
    let mut digest = MultisetDigest::default();
    for (path, hash) in files {
        digest.add(format!("{path}\0{hash}").as_bytes());
    }
    Record::new([("files".to_owned(), digest.part())].into())
}

/// The record of the directory as it is now.
pub(crate) fn record(root: &Path) -> Result<Record> {
    let mut files = Vec::new();
    for entry in walk(root) {
        let entry = entry?;
        if entry.file_type().is_file() {
            let mut file =
                std::fs::File::open(entry.path()).map_err(|e| BackupError::io(entry.path(), e))?;
            let mut hash = Sha256::new();
            std::io::copy(&mut file, &mut hash).map_err(|e| BackupError::io(entry.path(), e))?;
            let relative: PathBuf = entry
                .path()
                .strip_prefix(root)
                .unwrap_or(entry.path())
                .to_owned();
            files.push((
                relative.to_string_lossy().into_owned(),
                hex::encode(hash.finalize()),
            ));
        }
    }
    Ok(record_of(&files))
}

/// A file read through a hash; at its end, its path and hash join the record.
struct Hashing {
    /// Opened at the first read, so a large tree does not hold a descriptor per file.
    source: PathBuf,
    file: Option<std::fs::File>,
    path: String,
    hash: Sha256,
    seen: Option<Seen>,
}

impl Read for Hashing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.file.is_none() {
            self.file = Some(std::fs::File::open(&self.source)?);
        }
        let n = self.file.as_mut().map_or(Ok(0), |f| f.read(buf))?;
        self.hash.update(&buf[..n]);
        if n == 0
            && let Some(seen) = self.seen.take()
        {
            let hash = hex::encode(std::mem::take(&mut self.hash).finalize());
            if let Ok(mut seen) = seen.lock() {
                seen.push((std::mem::take(&mut self.path), hash));
            }
        }
        Ok(n)
    }
}
