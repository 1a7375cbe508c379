//! A backup in flight: the entries a driver streams (files read from a running tool or a
//! temp copy) and the step that completes it — waiting for the tool and yielding the record.
//! `CaptureSource` hands them to `rustic_core`'s archiver as a `ReadSource`, so the data goes
//! from the tool's pipe into chunks and packs without ever being whole in memory.

use std::io::{Cursor, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustic_core::repofile::{Metadata, Node, NodeType};
use rustic_core::{ErrorKind, ReadSource, ReadSourceEntry, RusticError, RusticResult};

use crate::error::{BackupError, Result};
use crate::record::Record;
use crate::retree::Sizes;

/// A reader the archiver pulls from.
pub(crate) type Stream = Box<dyn Read + Send>;

/// A tool's output as the archiver should read it: through a 1 MiB buffer. rustic_core 0.13's
/// chunker reads 4 KiB at a time once a chunk has passed its minimum size — straight from a
/// pipe that is one system call per 4 KiB (~50,000 for a 200 MB dump, ~0.1 s of the chunking
/// thread, which is the backup's critical path); from the buffer they are copies, and the
/// pipe is drained in large reads. Only for tool pipes: a buffer is allocated when the entry
/// is made, and a directory's files are many.
pub(crate) fn piped(reader: impl Read + Send + 'static) -> Stream {
    Box::new(std::io::BufReader::with_capacity(1 << 20, reader))
}

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
    /// The record, when it is known before the data is read (then `record.json` gets its
    /// true size in the tree).
    pub record: Option<Record>,
    /// A file entry's size is unknown until it has been read (a tool's output).
    pub streamed: bool,
}

impl Capture {
    /// Whether the snapshot's tree will hold a size of 0 for a file that is not empty:
    /// rustic_core 0.13 keeps the size a `ReadSource` gave, and restic restores by it.
    pub fn needs_sizes(&self) -> bool {
        self.streamed || self.record.is_none()
    }
}

/// Where the outcome of `finish` lands once the archiver has read `record.json`.
pub(crate) type Outcome = Arc<Mutex<Option<Result<Record>>>>;

/// The capture laid out as `<prefix>/data/…` and `<prefix>/record.json`.
pub(crate) struct CaptureSource {
    entries: Mutex<Option<Vec<RusticResult<ReadSourceEntry<Stream>>>>>,
    /// Bytes the archiver read from each file, by its path in the snapshot.
    read: Vec<(PathBuf, Arc<AtomicU64>)>,
}

impl CaptureSource {
    pub fn new(prefix: &str, capture: Capture, outcome: Outcome) -> CaptureSource {
        let mut entries = Vec::new();
        let mut prefix_path = PathBuf::new();
        for part in prefix.split('/') {
            prefix_path.push(part);
            entries.push(dir_entry(prefix_path.clone(), Metadata::default()));
        }
        let data = prefix_path.join("data");
        entries.push(dir_entry(data.clone(), Metadata::default()));
        let mut read = Vec::new();
        let mut file_entry = |path: PathBuf, meta, stream| {
            let count = Arc::new(AtomicU64::new(0));
            read.push((path.clone(), count.clone()));
            file_entry(path, meta, stream, count)
        };
        for entry in capture.entries {
            entries.push(match entry {
                Entry::Dir(path, meta) => dir_entry(data.join(path), meta),
                Entry::File(path, meta, stream) => file_entry(data.join(path), meta, stream),
            });
        }
        let known = capture
            .record
            .as_ref()
            .and_then(|r| serde_json::to_vec_pretty(r).ok());
        let meta = Metadata {
            size: known.as_ref().map_or(0, |b| b.len() as u64),
            ..Metadata::default()
        };
        let record = DeferredRecord {
            finish: Some(capture.finish),
            outcome,
            bytes: None,
        };
        entries.push(file_entry(
            prefix_path.join("record.json"),
            meta,
            Box::new(record),
        ));
        CaptureSource {
            entries: Mutex::new(Some(entries)),
            read,
        }
    }

    /// How many bytes the archiver read from each file (after the archive: each file's size).
    pub fn sizes(&self) -> Sizes {
        self.read
            .iter()
            .map(|(path, count)| (path.clone(), count.load(Ordering::Relaxed)))
            .collect()
    }
}

fn dir_entry(path: PathBuf, mut meta: Metadata) -> RusticResult<ReadSourceEntry<Stream>> {
    if meta.mode.is_none() {
        meta.mode = Some(0o40755);
    }
    let node = Node::new_node(name(&path), NodeType::Dir, meta);
    Ok(ReadSourceEntry {
        path,
        node,
        open: None,
    })
}

fn file_entry(
    path: PathBuf,
    mut meta: Metadata,
    stream: Stream,
    count: Arc<AtomicU64>,
) -> RusticResult<ReadSourceEntry<Stream>> {
    if meta.mode.is_none() {
        meta.mode = Some(0o100600);
    }
    let node = Node::new_node(name(&path), NodeType::File, meta);
    Ok(ReadSourceEntry {
        path,
        node,
        open: Some(Box::new(Filling(stream, count))),
    })
}

fn name(path: &std::path::Path) -> &std::ffi::OsStr {
    path.file_name().unwrap_or(path.as_os_str())
}

/// Answers every read with a full buffer (short only at the end). rustic_core 0.13's rabin
/// chunker shrinks its read buffer to the length of a short read and never grows it back, so a
/// pipe's partial reads would leave it reading a few bytes per system call (measured: a 50 MB
/// pg_dump took 18 s instead of well under one). It also counts the bytes it hands over: the
/// file's size, which a tool's output does not tell before it ends.
struct Filling(Stream, Arc<AtomicU64>);

impl Read for Filling {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.0.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if filled > 0 => {
                    // Returned with the next call, which reads nothing before failing again.
                    tracing::debug!(error = %e, "read error after a partial read");
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        self.1.fetch_add(filled as u64, Ordering::Relaxed);
        Ok(filled)
    }
}

impl ReadSource for CaptureSource {
    type Open = Stream;
    type Iter = std::vec::IntoIter<RusticResult<ReadSourceEntry<Stream>>>;

    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(None)
    }

    fn entries(&self) -> Self::Iter {
        let taken = self.entries.lock().ok().and_then(|mut e| e.take());
        taken
            .unwrap_or_else(|| {
                vec![Err(RusticError::new(
                    ErrorKind::Internal,
                    "a wharf capture can be archived once",
                ))]
            })
            .into_iter()
    }
}

/// `record.json`: runs the driver's completion when first read (the archiver reads it after
/// the data entries; the archiver's other threads keep draining the tool meanwhile) and keeps
/// the outcome for the caller — the archiver only logs a read error, so the caller must see it.
struct DeferredRecord {
    finish: Option<Box<dyn FnOnce() -> Result<Record> + Send>>,
    outcome: Outcome,
    bytes: Option<Cursor<Vec<u8>>>,
}

impl Read for DeferredRecord {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.bytes.is_none() {
            let finish = self
                .finish
                .take()
                .ok_or_else(|| std::io::Error::other("finished"))?;
            let result = finish();
            let bytes = match &result {
                Ok(record) => serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?,
                Err(error) => {
                    let message = error.to_string();
                    self.store(result);
                    return Err(std::io::Error::other(message));
                }
            };
            self.store(result);
            self.bytes = Some(Cursor::new(bytes));
        }
        self.bytes.as_mut().map_or(Ok(0), |c| c.read(buf))
    }
}

impl DeferredRecord {
    fn store(&self, result: Result<Record>) {
        if let Ok(mut slot) = self.outcome.lock() {
            *slot = Some(result);
        }
    }
}

impl Drop for DeferredRecord {
    fn drop(&mut self) {
        // Never read (the archiver failed before it): dropping the completion drops the tool,
        // which is killed (`Running`'s Drop), and the caller learns why.
        if self.finish.take().is_some() {
            let result = Err(BackupError::Repository {
                location: String::new(),
                detail: "the archiver stopped before the backup's record was written".into(),
            });
            self.store(result);
        }
    }
}
