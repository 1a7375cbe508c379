//! wharf's own archiver: a capture's files into a new snapshot of the restic repository.
//!
//! rustic_core 0.13's archiver chunks each file on one thread, one byte per loop turn through
//! a rolling hash whose every step waits on the last, then hashes each chunk on that same
//! thread: for a database dump that thread alone took as long as `pg_dump -Fc` did for the
//! whole dump. Here the chunker ([`Chunker`]) finds the very cuts rustic's does several lanes
//! at a time, so a backup's chunks are the ones rustic (and wharf before) made and still dedup
//! against earlier backups; hashing, compression and encryption run on every core; one thread
//! writes packs. The files are restic's format (design.md: "Pack Format", "Indexing", "Trees
//! and Data"): data blobs zstd-compressed when that makes them smaller, each encrypted, in
//! packs of the repository's pack size; an index of the new packs; the trees; the snapshot.
//!
//! Written in that order — packs, index, trees, snapshot — so no snapshot names a blob the
//! repository lacks, and a backup whose tool failed writes no snapshot at all (its packs are
//! indexed and unreferenced: `prune` removes them).

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::io::Read;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, bounded};
use rustic_core::repofile::{
    ConfigFile, MasterKey, Metadata, Node, NodeType, SnapshotFile, SnapshotSummary, Tree,
};
use rustic_core::{DataId, FileType, Id, TreeId, WriteBackend};
use sha2::{Digest, Sha256};

use crate::capture::{Capture, Entry, Stream};
use crate::chunker::Chunker;
use crate::error::{BackupError, Result};
use crate::record::Record;
use crate::restic_format::{self, BlobKind, NewTree, Pack};

/// Bytes read ahead beyond a maximal chunk (a pipe gives at most its size per read, 1 MiB
/// for a tool's).
const READ_SIZE: usize = 1 << 20;

/// rustic_core's cap on a pack's size (`packer::constants::MAX_SIZE`).
const MAX_PACK_SIZE: u64 = 4076 * 1024 * 1024;

/// Blobs per pack at most: rustic_core's `MAX_COUNT` (restic reads no pack header over 16 MiB,
/// some 400,000 entries; rustic keeps packs far below it, and so does wharf).
pub(crate) const MAX_PACK_BLOBS: usize = 10_000;

/// Packs per index file: written as the backup goes, so a backup that dies leaves few packs
/// the index does not know, and the entries held stay few.
const PACKS_PER_INDEX: usize = 64;

/// Sealing threads at most: each holds a few chunks' worth of buffers.
const MAX_SEALERS: usize = 8;

/// The blobs the repository holds already: data (a chunk among them is not stored again)
/// with their stored bytes (a backup's pack size is set from it by rustic_core's `PackSizer`
/// formula),
/// and trees (an unchanged folder's tree is not stored again).
#[derive(Debug, Default)]
pub(crate) struct Known {
    pub data: HashSet<Id>,
    pub stored_bytes: u64,
    pub trees: HashSet<Id>,
}

/// One backup's writer into the repository `be`, with its master key and config.
pub(crate) struct Archiver<'a> {
    be: &'a dyn WriteBackend,
    key: &'a MasterKey,
    location: &'a str,
    chunker: Chunker,
    /// The chunker's maximum chunk: `read_file` keeps this many bytes ahead of each cut.
    max_chunk: usize,
    /// zstd level (0 = zstd's default); `None` for a format-1 repository or compression off.
    zstd: Option<i32>,
    /// Decrypt and decompress each sealed blob and compare it before it is written, as
    /// rustic_core does unless the repository's config turns `extra_verify` off.
    verify: bool,
    pack_size: usize,
    /// Data blob ids stored or claimed: a worker that inserts an id seals it, the others skip
    /// it.
    claimed: Mutex<HashSet<Id>>,
    known_trees: HashSet<Id>,
}

/// A chunk on its way: which file (in entry order), where in it, the bytes.
struct Chunk {
    file: usize,
    seq: usize,
    data: Bytes,
}

/// A new blob, sealed: its id, plain length, stored bytes and, when compressed, the length
/// before compression (restic's `uncompressed_length`).
struct Sealed {
    id: Id,
    plain: u64,
    stored: Vec<u8>,
    uncompressed: Option<NonZeroU32>,
}

/// What the packing thread did: its totals, how packing went, how the last index write went.
struct Packed {
    added: Added,
    packing: Result<()>,
    indexed: Result<()>,
}

/// What each chunk became: (file, seq, blob id, length).
type Placed = Vec<(usize, usize, Id, u64)>;

/// Totals for the snapshot's summary.
#[derive(Debug, Default)]
struct Added {
    blobs: u64,
    plain: u64,
    stored: u64,
}

impl<'a> Archiver<'a> {
    pub fn new(
        be: &'a dyn WriteBackend,
        key: &'a MasterKey,
        config: &ConfigFile,
        known: Known,
        location: &'a str,
    ) -> Result<Archiver<'a>> {
        let fail = |detail: String| BackupError::Repository {
            location: location.to_owned(),
            detail,
        };
        if config.chunker() != rustic_core::repofile::Chunker::Rabin {
            return Err(fail(
                "the repository's chunker is not restic's Rabin chunker".into(),
            ));
        }
        let polynomial = config
            .poly()
            .map_err(|e| fail(format!("the chunker polynomial: {}", e.display_log())))?;
        let zstd = config
            .zstd()
            .map_err(|e| fail(format!("the compression: {}", e.display_log())))?;
        let (default_size, grow_factor, size_limit) =
            config.packsize(rustic_core::repofile::BlobType::Data);
        let pack_size = (u64::from(default_size)
            + known.stored_bytes.isqrt() * u64::from(grow_factor))
        .min(u64::from(size_limit))
        .min(MAX_PACK_SIZE);
        Ok(Archiver {
            be,
            key,
            location,
            chunker: Chunker::new(
                polynomial,
                config.chunk_min_size(),
                config.chunk_size(),
                config.chunk_max_size(),
            )
            .map_err(|e| fail(format!("the repository's chunker: {e}")))?,
            max_chunk: config.chunk_max_size(),
            zstd,
            verify: config.extra_verify(),
            pack_size: usize::try_from(pack_size).unwrap_or(usize::MAX),
            claimed: Mutex::new(known.data),
            known_trees: known.trees,
        })
    }

    fn fail(&self, detail: String) -> BackupError {
        BackupError::Repository {
            location: self.location.to_owned(),
            detail,
        }
    }

    /// Stores `capture` below `prefix` (`prefix/data/…`, then `prefix/record.json` once the
    /// capture's tool has finished and its record is known) and saves `snap` for it. Returns
    /// the saved snapshot and the record. A failed tool or record saves no snapshot.
    pub fn archive(
        &self,
        prefix: &str,
        capture: Capture,
        mut snap: SnapshotFile,
    ) -> Result<(SnapshotFile, Record)> {
        let started = rustic_core::jiff::Zoned::now();
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(MAX_SEALERS);
        let stop = AtomicBool::new(false);
        let placed = Mutex::new(Placed::new());
        let Capture {
            entries, finish, ..
        } = capture;

        let (outcome, sealing, packed) = std::thread::scope(|scope| {
            let (chunk_tx, chunk_rx) = bounded::<Chunk>(workers * 2);
            let (sealed_tx, sealed_rx) = bounded::<Sealed>(workers * 2);
            let sealers: Vec<_> = (0..workers)
                .map(|_| {
                    let (rx, tx) = (chunk_rx.clone(), sealed_tx.clone());
                    let (stop, placed) = (&stop, &placed);
                    scope.spawn(move || self.seal_all(&rx, &tx, stop, placed))
                })
                .collect();
            drop((chunk_rx, sealed_tx));
            let stop_ref = &stop;
            let packer = scope.spawn(move || self.pack_all(&sealed_rx, stop_ref));

            let outcome = self.read_all(entries, finish, &chunk_tx, &stop);
            if outcome.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
            drop(chunk_tx);
            let mut sealing = Ok(());
            for sealer in sealers {
                let result = sealer
                    .join()
                    .unwrap_or_else(|_| Err(self.fail("a sealing thread panicked".into())));
                if sealing.is_ok() {
                    sealing = result;
                }
            }
            let packed = packer.join().unwrap_or_else(|_| Packed {
                added: Added::default(),
                packing: Err(self.fail("the packing thread panicked".into())),
                indexed: Ok(()),
            });
            (outcome, sealing, packed)
        });
        let Packed {
            added,
            packing,
            indexed,
        } = packed;
        // A sealing or packing error stops the reader (which then fails with "stopped"), so
        // it is the cause when there is one; a sealer or the packer stopped by the reader's
        // failure (the tool's, the record's) ends without an error of its own. The index's
        // write comes last: it only matters once all else went well.
        sealing?;
        packing?;
        let (files, record) = outcome?;
        indexed?;

        let placed = placed.into_inner().unwrap_or_default();
        let (root, mut trees) = self.trees(prefix, files, placed)?;
        trees.retain(|(id, _)| !self.known_trees.contains(&**id));
        let tree_bytes: u64 = trees.iter().map(|(_, bytes)| bytes.len() as u64).sum();
        let ended = rustic_core::jiff::Zoned::now();
        let mut summary = SnapshotSummary::default();
        summary.data_blobs = added.blobs;
        summary.tree_blobs = trees.len() as u64;
        summary.data_added = added.plain + tree_bytes;
        summary.data_added_packed = added.stored + tree_bytes;
        summary.data_added_files = added.plain;
        summary.data_added_files_packed = added.stored;
        summary.data_added_trees = tree_bytes;
        summary.data_added_trees_packed = tree_bytes;
        summary.command = "wharf backup".into();
        summary.backup_duration = (&ended - &started)
            .total(rustic_core::jiff::Unit::Second)
            .unwrap_or(0.0);
        summary.backup_start = started;
        summary.backup_end = ended;
        summary.total_duration = summary.backup_duration;
        root.count(&mut summary);
        snap.summary = Some(summary);
        snap.paths.add(prefix.to_owned());
        let root_id = root.id;
        let id = restic_format::store(self.be, self.key, &trees, snap.clone(), root_id)?;
        snap.tree = root_id;
        snap.id = id.into();
        Ok((snap, record))
    }

    /// Reads every entry into chunks for the sealers, then waits for the capture's tool and
    /// adds its record as `record.json`. Returns the tree's layout and the record.
    fn read_all(
        &self,
        entries: Vec<Entry>,
        finish: Box<dyn FnOnce() -> Result<Record> + Send>,
        out: &Sender<Chunk>,
        stop: &AtomicBool,
    ) -> Result<(Vec<Layout>, Record)> {
        let mut files = Vec::new();
        // One read buffer for every file: it grows to the largest's need once.
        let mut buf = Vec::new();
        for entry in entries {
            match entry {
                Entry::Dir(path, meta) => {
                    files.push(Layout::Dir(PathBuf::from("data").join(path), meta))
                }
                Entry::File(path, meta, stream) => {
                    let file = files.len();
                    let path = PathBuf::from("data").join(path);
                    let size = self
                        .read_file(file, stream, &mut buf, out, stop)
                        .map_err(|e| self.fail(format!("read {}: {e}", path.display())))?;
                    files.push(Layout::File(path, meta, size));
                }
            }
        }
        let record = finish()?;
        let bytes = serde_json::to_vec_pretty(&record)
            .map_err(|e| self.fail(format!("the record: {e}")))?;
        let file = files.len();
        let size = self
            .read_file(
                file,
                Box::new(std::io::Cursor::new(bytes)),
                &mut buf,
                out,
                stop,
            )
            .map_err(|e| self.fail(format!("store record.json: {e}")))?;
        files.push(Layout::File(
            "record.json".into(),
            Metadata::default(),
            size,
        ));
        Ok((files, record))
    }

    /// Cuts one stream into chunks (keeping at least a maximal chunk's bytes ahead, so each
    /// cut is found in one pass) and queues them. Returns the stream's length.
    ///
    /// The stream is read into one buffer (`read_to_end` fills it without zeroing it first);
    /// each chunk is copied out of it once, and what is left is moved to the front only when
    /// the buffer's front half has been cut away, so each byte is moved at most once more.
    fn read_file(
        &self,
        file: usize,
        mut stream: Stream,
        buf: &mut Vec<u8>,
        out: &Sender<Chunk>,
        stop: &AtomicBool,
    ) -> std::io::Result<u64> {
        let ahead = self.max_chunk;
        buf.clear();
        let mut at = 0;
        let mut eof = false;
        let mut size = 0u64;
        for seq in 0.. {
            if !eof && buf.len() - at < ahead {
                if at >= ahead {
                    buf.drain(..at);
                    at = 0;
                }
                while !eof && buf.len() - at < ahead {
                    let want = (ahead + READ_SIZE - (buf.len() - at)) as u64;
                    eof = (&mut stream).take(want).read_to_end(buf)? == 0;
                }
            }
            let rest = &buf[at..];
            if rest.is_empty() {
                break;
            }
            let cut = self.chunker.next_cut(rest).unwrap_or(rest.len());
            let data = Bytes::copy_from_slice(&rest[..cut]);
            at += cut;
            size += cut as u64;
            if stop.load(Ordering::Relaxed) || out.send(Chunk { file, seq, data }).is_err() {
                return Err(std::io::Error::other("the backup stopped"));
            }
        }
        Ok(size)
    }

    /// A sealing thread: hashes each chunk; seals and passes on the ones the repository lacks.
    fn seal_all(
        &self,
        chunks: &Receiver<Chunk>,
        out: &Sender<Sealed>,
        stop: &AtomicBool,
        placed: &Mutex<Placed>,
    ) -> Result<()> {
        let mut compressor = match self.zstd {
            Some(level) => Some(
                zstd::bulk::Compressor::new(level)
                    .map_err(|e| self.fail(format!("zstd level {level}: {e}")))
                    .inspect_err(|_| stop.store(true, Ordering::Relaxed))?,
            ),
            None => None,
        };
        let mut mine = Placed::new();
        for chunk in chunks {
            let id = Id::new(Sha256::digest(&chunk.data).into());
            let plain = chunk.data.len() as u64;
            mine.push((chunk.file, chunk.seq, id, plain));
            let new = self
                .claimed
                .lock()
                .map(|mut c| c.insert(id))
                .unwrap_or(false);
            if !new || stop.load(Ordering::Relaxed) {
                continue;
            }
            let sealed = self.seal(id, &chunk.data, compressor.as_mut());
            let sealed = sealed.inspect_err(|_| stop.store(true, Ordering::Relaxed))?;
            if out.send(sealed).is_err() {
                break;
            }
        }
        if let Ok(mut all) = placed.lock() {
            all.append(&mut mine);
        }
        Ok(())
    }

    fn seal(
        &self,
        id: Id,
        data: &[u8],
        compressor: Option<&mut zstd::bulk::Compressor<'_>>,
    ) -> Result<Sealed> {
        let plain = data.len() as u64;
        let length = u32::try_from(data.len())
            .map_err(|_| self.fail(format!("a chunk of {plain} bytes")))?;
        let compressed = match compressor {
            Some(c) => Some(
                c.compress(data)
                    .map_err(|e| self.fail(format!("zstd: {e}")))?,
            )
            .filter(|z| z.len() < data.len()),
            None => None,
        };
        let (stored, uncompressed) = match &compressed {
            Some(z) => (
                restic_format::encrypt(self.location, self.key, z)?,
                NonZeroU32::new(length),
            ),
            None => (restic_format::encrypt(self.location, self.key, data)?, None),
        };
        if self.verify {
            let opened = restic_format::decrypt(self.location, self.key, &stored)?;
            let same = match uncompressed {
                Some(_) => {
                    zstd::bulk::decompress(&opened, data.len()).is_ok_and(|back| back == data)
                }
                None => opened == data,
            };
            if !same {
                return Err(self.fail(format!(
                    "blob {}: what was sealed does not open to the same bytes",
                    id.to_hex().as_str()
                )));
            }
        }
        Ok(Sealed {
            id,
            plain,
            stored,
            uncompressed,
        })
    }

    /// The packing thread: appends sealed blobs to the current pack and writes each pack once
    /// it reaches the pack size or blob count, and an index file for every few packs. The
    /// packs written are indexed whatever happens after them — a failed backup leaves no pack
    /// the index does not know (only unreferenced blobs, which `prune` removes); after a
    /// failure that index is written as best it can be.
    fn pack_all(&self, sealed: &Receiver<Sealed>, stop: &AtomicBool) -> Packed {
        let mut pack = Pack::default();
        let mut packs = Vec::new();
        let mut added = Added::default();
        let result = (|| {
            for blob in sealed {
                added.blobs += 1;
                added.plain += blob.plain;
                added.stored += blob.stored.len() as u64;
                pack.add(
                    self.location,
                    BlobKind::Data,
                    &blob.id,
                    &blob.stored,
                    blob.uncompressed,
                )?;
                if pack.len() >= self.pack_size || pack.blob_count() >= MAX_PACK_BLOBS {
                    packs.push(self.write_pack(std::mem::take(&mut pack))?);
                    if packs.len() >= PACKS_PER_INDEX {
                        // Cleared only once indexed: if this write fails, the last index
                        // attempt below still lists them.
                        self.save_index(&packs)?;
                        packs.clear();
                    }
                }
            }
            if pack.blob_count() > 0 {
                packs.push(self.write_pack(pack)?);
            }
            Ok(())
        })();
        if result.is_err() {
            stop.store(true, Ordering::Relaxed);
            // Drain, so no sealer waits on a full queue.
            for _ in sealed {}
        }
        let indexed = if packs.is_empty() {
            Ok(())
        } else {
            self.save_index(&packs)
        };
        if result.is_err()
            && let Err(lost) = &indexed
        {
            tracing::warn!(error = %lost, packs = packs.len(), "the packs of a failed backup were not indexed");
        }
        Packed {
            added,
            packing: result,
            indexed,
        }
    }

    fn write_pack(&self, pack: Pack) -> Result<serde_json::Value> {
        pack.write(self.be, self.key, self.location, "a data pack")
    }

    fn save_index(&self, packs: &[serde_json::Value]) -> Result<()> {
        let index = serde_json::json!({ "packs": packs });
        restic_format::save_json(self.be, self.key, FileType::Index, &index).map(|_| ())
    }

    /// The trees of the snapshot: `prefix`'s folders, `data/` and the capture's entries,
    /// `record.json`. Returns the root and the tree blobs to store (children first).
    fn trees(
        &self,
        prefix: &str,
        files: Vec<Layout>,
        mut placed: Placed,
    ) -> Result<(Built, Vec<NewTree>)> {
        placed.sort_unstable_by_key(|&(file, seq, ..)| (file, seq));
        let mut contents: BTreeMap<usize, Vec<DataId>> = BTreeMap::new();
        for (file, _, id, _) in placed {
            contents.entry(file).or_default().push(DataId::from(id));
        }
        let mut top = Folder::default();
        let base: PathBuf = prefix.split('/').collect();
        let conflict = |e: String| self.fail(format!("lay out the snapshot: {e}"));
        top.folder(&base, None).map_err(conflict)?;
        top.folder(&base.join("data"), None).map_err(conflict)?;
        for (number, item) in files.into_iter().enumerate() {
            match item {
                Layout::Dir(path, meta) => {
                    top.folder(&base.join(path), Some(meta)).map_err(conflict)?
                }
                Layout::File(path, mut meta, size) => {
                    let path = base.join(path);
                    meta.size = size;
                    if meta.mode.is_none() {
                        meta.mode = Some(0o100600);
                    }
                    let mut node = Node::new_node(name(&path), NodeType::File, meta);
                    node.content = Some(contents.remove(&number).unwrap_or_default());
                    let parent = path.parent().unwrap_or(Path::new(""));
                    top.folder(parent, None).map_err(conflict)?;
                    top.insert(&path, Item::File(node)).map_err(conflict)?;
                }
            }
        }
        let mut trees = Vec::new();
        let root = top.build(self.location, &mut trees)?;
        // Equal folders give equal trees: each is stored once.
        let mut seen = HashSet::new();
        trees.retain(|(id, _)| seen.insert(*id));
        Ok((root, trees))
    }
}

/// What `read_all` saw, in order: folders and files (path below the prefix, size).
enum Layout {
    Dir(PathBuf, Metadata),
    File(PathBuf, Metadata, u64),
}

fn name(path: &Path) -> &std::ffi::OsStr {
    path.file_name().unwrap_or(path.as_os_str())
}

/// A folder of the snapshot while it is laid out.
#[derive(Default)]
struct Folder {
    meta: Option<Metadata>,
    items: BTreeMap<OsString, Item>,
}

enum Item {
    Folder(Folder),
    File(Node),
}

/// A built tree: its id and how many files, folders and bytes it holds.
struct Built {
    id: TreeId,
    files: u64,
    dirs: u64,
    bytes: u64,
}

impl Built {
    fn count(&self, summary: &mut SnapshotSummary) {
        summary.files_new = self.files;
        summary.total_files_processed = self.files;
        summary.dirs_new = self.dirs;
        summary.total_dirs_processed = self.dirs;
        summary.total_bytes_processed = self.bytes;
    }
}

impl Folder {
    /// Makes the folder at `path` (and those above it); gives it `meta` when known. A file
    /// already at one of those places is a conflict, named.
    fn folder(&mut self, path: &Path, meta: Option<Metadata>) -> std::result::Result<(), String> {
        let mut at = self;
        for part in path.iter() {
            let item = at
                .items
                .entry(part.to_owned())
                .or_insert_with(|| Item::Folder(Folder::default()));
            at = match item {
                Item::Folder(folder) => folder,
                Item::File(_) => {
                    return Err(format!("{} is both a file and a folder", path.display()));
                }
            };
        }
        if meta.is_some() {
            if at.meta.is_some() {
                return Err(format!("the folder {} appears twice", path.display()));
            }
            at.meta = meta;
        }
        Ok(())
    }

    /// Puts the file at `path`, whose folder exists; a file or folder there already is a
    /// conflict, named.
    fn insert(&mut self, path: &Path, item: Item) -> std::result::Result<(), String> {
        let conflict = || format!("{} appears twice in the backup", path.display());
        let mut at = self;
        let last = path.file_name().ok_or_else(conflict)?;
        for part in path.parent().into_iter().flat_map(Path::iter) {
            match at.items.get_mut(part) {
                Some(Item::Folder(folder)) => at = folder,
                _ => return Err(conflict()),
            }
        }
        match at.items.get(last) {
            Some(Item::Folder(_)) => Err(format!("{} is both a file and a folder", path.display())),
            Some(Item::File(_)) => Err(conflict()),
            None => {
                at.items.insert(last.to_owned(), item);
                Ok(())
            }
        }
    }

    /// Serializes this folder's tree after its subfolders' (pushed to `trees`); restic wants
    /// a tree's nodes sorted by name, as the map keeps them.
    fn build(self, location: &str, trees: &mut Vec<NewTree>) -> Result<Built> {
        let mut nodes = Vec::new();
        let (mut files, mut dirs, mut bytes) = (0, 0, 0);
        for (name, item) in self.items {
            match item {
                Item::Folder(folder) => {
                    let mut meta = folder.meta.clone().unwrap_or_default();
                    if meta.mode.is_none() {
                        meta.mode = Some(0o40755);
                    }
                    let built = folder.build(location, trees)?;
                    files += built.files;
                    dirs += built.dirs + 1;
                    bytes += built.bytes;
                    let mut node = Node::new_node(&name, NodeType::Dir, meta);
                    node.subtree = Some(built.id);
                    nodes.push(node);
                }
                Item::File(node) => {
                    files += 1;
                    bytes += node.meta.size;
                    nodes.push(node);
                }
            }
        }
        let (json, id) = Tree { nodes }
            .serialize()
            .map_err(|e| BackupError::Repository {
                location: location.to_owned(),
                detail: format!("serialize a tree: {e}"),
            })?;
        trees.push((id, json));
        Ok(Built {
            id,
            files,
            dirs,
            bytes,
        })
    }
}
