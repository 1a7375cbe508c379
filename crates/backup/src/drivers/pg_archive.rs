//! The record of a PostgreSQL backup taken from the dump itself, as it streams past: pg_dump's
//! custom-format archive is parsed on the fly (header, table of contents, data blocks) and
//! each table's COPY rows are counted and digested. The second scan the record once needed
//! (a query over every table beside pg_dump, in the same snapshot) cost a 2-core server as
//! much as the dump's own COPY; hashing rows that pass anyway costs a few percent of it.
//!
//! A drill digests the restored tables the same way: `COPY … TO STDOUT` of the columns pg_dump
//! copies, under pg_dump's output settings, so equal rows give equal bytes ([`CopyDigest`]).
//!
//! Archive layout (PostgreSQL's `pg_backup_archiver.c` / `pg_backup_custom.c`, versions 1.14
//! to 1.16): "PGDMP", version bytes, int and offset sizes, format, compression, creation
//! time, names; the TOC (`ReadToc`); then per entry with data a block: `BLK_DATA`, the dump
//! id, length-prefixed chunks ending with a zero length (large objects: `BLK_BLOBS`, then per
//! object its oid and chunks, a zero oid ending them). An int is a sign byte and `intSize`
//! little-endian bytes; a string an int length (-1: null) and its bytes.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use crate::record::Part;

const MAGIC: &[u8] = b"PGDMP";
const FORMAT_CUSTOM: u8 = 1;
const BLK_DATA: u8 = 1;
const BLK_BLOBS: u8 = 3;

/// Archive versions this parser reads: 1.14 (pg_dump 12) to 1.16 (pg_dump 17). Older pg_dumps
/// set `search_path` to each table's schema while copying (`reg*` columns print otherwise than
/// a drill's COPY), so their backups keep the query record.
const OLDEST: (u8, u8) = (1, 14);
const NEWEST: (u8, u8) = (1, 16);

/// The most header and TOC bytes held while looking for the TOC's end (a TOC of a database
/// with a hundred thousand objects is tens of MB).
const MAX_TOC: usize = 512 << 20;

/// The digest prefix of a format-4 table record.
pub(crate) const COPY_TAG: &str = "copy:";

/// An order-independent digest of COPY text rows: their count and the wrapping sum of each
/// row's 128-bit XXH3 (the row's bytes without its newline). Rows may arrive split anywhere.
/// pg_dump ends a table's rows with COPY's end marker (a `\.` line, then blank lines); the
/// protocol's `COPY TO STDOUT` sends none: rows end at the marker or the end. (A row that
/// is `\.` is written `\\.`, so the marker is never a row.)
#[derive(Default, Clone)]
pub(crate) struct CopyDigest {
    sum: u128,
    count: u64,
    /// The row begun in an earlier piece: its hash so far (a row of any size is never held
    /// whole), its first bytes (to tell the end marker) and its length.
    partial: Option<Box<xxhash_rust::xxh3::Xxh3>>,
    head: Vec<u8>,
    partial_len: u64,
    ended: bool,
}

impl std::fmt::Debug for CopyDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyDigest")
            .field("count", &self.count)
            .field("partial_len", &self.partial_len)
            .finish()
    }
}

impl CopyDigest {
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !self.ended
            && let Some(end) = memchr::memchr(b'\n', bytes)
        {
            let row = &bytes[..end];
            let (hash, marker) = match self.partial.take() {
                None => (xxhash_rust::xxh3::xxh3_128(row), row == b"\\."),
                Some(mut hasher) => {
                    hasher.update(row);
                    self.remember(row);
                    let marker = self.head == b"\\." && self.partial_len + row.len() as u64 == 2;
                    self.head.clear();
                    self.partial_len = 0;
                    (hasher.digest128(), marker)
                }
            };
            if marker {
                self.ended = true;
            } else {
                self.sum = self.sum.wrapping_add(hash);
                self.count += 1;
            }
            bytes = &bytes[end + 1..];
        }
        if !self.ended && !bytes.is_empty() {
            self.remember(bytes);
            self.partial
                .get_or_insert_with(|| Box::new(xxhash_rust::xxh3::Xxh3::new()))
                .update(bytes);
            self.partial_len += bytes.len() as u64;
        }
    }

    /// Keeps a split row's first bytes, enough to tell the two-byte end marker.
    fn remember(&mut self, bytes: &[u8]) {
        let room = 3usize.saturating_sub(self.head.len());
        self.head.extend_from_slice(&bytes[..room.min(bytes.len())]);
    }

    /// Adds `other`'s rows (another part of the same table's rows, both whole).
    pub fn merge(&mut self, other: &CopyDigest) -> Result<(), String> {
        other.part()?;
        self.sum = self.sum.wrapping_add(other.sum);
        self.count += other.count;
        Ok(())
    }

    /// The part, or the reason the rows are not whole (a last row without its newline).
    pub fn part(&self) -> Result<Part, String> {
        if self.partial.is_some() {
            return Err(format!(
                "the COPY data ends inside a row ({} bytes without a newline)",
                self.partial_len
            ));
        }
        Ok(Part {
            count: self.count,
            digest: format!("{COPY_TAG}{:032x}", self.sum),
        })
    }
}

/// What the archive's table of contents said, and the digests of its tables' data.
#[derive(Debug, Default)]
pub(crate) struct ArchiveRecord {
    /// `client_encoding` the rows were written in (the TOC's ENCODING entry).
    pub encoding: Option<String>,
    /// `schema.table` → digest, for every TABLE DATA entry (empty tables included).
    pub tables: BTreeMap<String, CopyDigest>,
    /// `schema.table` → the column list pg_dump copied (`(a, b, c)`, empty for none): a
    /// restored table may order its columns otherwise (an inherited column added later).
    pub columns: BTreeMap<String, String>,
}

/// Where the parser is in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Collecting the header and TOC (parsed again from the start as bytes arrive).
    Toc,
    BlockType,
    BlockId {
        blobs: bool,
    },
    ChunkLen {
        table: Option<usize>,
        blobs: bool,
    },
    Chunk {
        table: Option<usize>,
        blobs: bool,
        left: usize,
    },
    BlobOid,
    /// A block type byte that is no block: the rest is not parsed (an error at the end).
    Broken,
}

/// The push parser: fed every byte of pg_dump's output, in order, in pieces of any size.
#[derive(Debug)]
pub(crate) struct ArchiveParser {
    step: Step,
    /// Header and TOC bytes until the TOC is complete; then the bytes of a split int.
    held: Vec<u8>,
    int_size: usize,
    /// Dump id → index into `names` for TABLE DATA entries.
    data_ids: BTreeMap<i64, usize>,
    names: Vec<String>,
    columns: Vec<String>,
    digests: Vec<CopyDigest>,
    encoding: Option<String>,
    error: Option<String>,
    /// The TOC is parsed again from the start once `held` reaches this length (doubling:
    /// the work stays linear in the TOC's size).
    next_try: usize,
}

impl Default for ArchiveParser {
    fn default() -> Self {
        ArchiveParser {
            step: Step::Toc,
            held: Vec::new(),
            int_size: 4,
            data_ids: BTreeMap::new(),
            names: Vec::new(),
            columns: Vec::new(),
            digests: Vec::new(),
            encoding: None,
            error: None,
            next_try: 0,
        }
    }
}

impl ArchiveParser {
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && self.error.is_none() {
            match self.step {
                Step::Toc => {
                    self.held.extend_from_slice(bytes);
                    bytes = &[];
                    if self.held.len() >= self.next_try {
                        self.next_try = (self.held.len() * 2).min(MAX_TOC + 1);
                        if let Some(rest) = self.try_toc() {
                            self.feed(&rest);
                            return;
                        }
                    }
                }
                Step::BlockType => {
                    self.step = match bytes[0] {
                        BLK_DATA => Step::BlockId { blobs: false },
                        BLK_BLOBS => Step::BlockId { blobs: true },
                        other => {
                            self.error = Some(format!("a data block of unknown type {other}"));
                            Step::Broken
                        }
                    };
                    bytes = &bytes[1..];
                }
                Step::BlockId { blobs } => {
                    let Some(id) = self.int(&mut bytes) else {
                        continue;
                    };
                    self.step = if blobs {
                        Step::BlobOid
                    } else {
                        Step::ChunkLen {
                            table: self.data_ids.get(&id).copied(),
                            blobs: false,
                        }
                    };
                }
                Step::ChunkLen { table, blobs } => {
                    let Some(len) = self.int(&mut bytes) else {
                        continue;
                    };
                    self.step = match (len, blobs) {
                        (0, false) => Step::BlockType,
                        (0, true) => Step::BlobOid,
                        (n, _) if n > 0 => Step::Chunk {
                            table,
                            blobs,
                            left: n as usize,
                        },
                        (n, _) => {
                            self.error = Some(format!("a data chunk of length {n}"));
                            Step::Broken
                        }
                    };
                }
                Step::Chunk { table, blobs, left } => {
                    let take = left.min(bytes.len());
                    if let Some(t) = table {
                        self.digests[t].feed(&bytes[..take]);
                    }
                    bytes = &bytes[take..];
                    self.step = if take == left {
                        Step::ChunkLen { table, blobs }
                    } else {
                        Step::Chunk {
                            table,
                            blobs,
                            left: left - take,
                        }
                    };
                }
                Step::BlobOid => {
                    let Some(oid) = self.int(&mut bytes) else {
                        continue;
                    };
                    self.step = if oid == 0 {
                        Step::BlockType
                    } else {
                        Step::ChunkLen {
                            table: None,
                            blobs: true,
                        }
                    };
                }
                Step::Broken => return,
            }
        }
    }

    /// Parses the held header and TOC; when they are complete, moves on to the data blocks
    /// and returns the bytes after them.
    fn try_toc(&mut self) -> Option<Vec<u8>> {
        match parse_toc(&self.held) {
            Ok(Some(toc)) => {
                let rest = self.held.split_off(toc.end);
                self.held.clear();
                self.int_size = toc.int_size;
                self.encoding = toc.encoding;
                for (id, name, columns) in toc.data {
                    self.data_ids.insert(id, self.names.len());
                    self.names.push(name);
                    self.columns.push(columns);
                    self.digests.push(CopyDigest::default());
                }
                self.step = Step::BlockType;
                Some(rest)
            }
            Ok(None) if self.held.len() > MAX_TOC => {
                self.error = Some(format!(
                    "no end of the table of contents in the archive's first {MAX_TOC} bytes"
                ));
                None
            }
            Ok(None) => None,
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }

    /// Reads an int (sign byte + `int_size` bytes), holding a split one until it is whole.
    fn int(&mut self, bytes: &mut &[u8]) -> Option<i64> {
        let need = 1 + self.int_size;
        let take = (need - self.held.len()).min(bytes.len());
        self.held.extend_from_slice(&bytes[..take]);
        *bytes = &bytes[take..];
        if self.held.len() < need {
            return None;
        }
        let value = int_value(&self.held, self.int_size);
        self.held.clear();
        Some(value)
    }

    /// The record once the archive has ended, or why the archive was not understood.
    pub fn finish(mut self) -> Result<ArchiveRecord, String> {
        if self.step == Step::Toc
            && self.error.is_none()
            && let Some(rest) = self.try_toc()
        {
            self.feed(&rest);
        }
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.step != Step::BlockType {
            return Err("the archive ended inside its table of contents or a data block".into());
        }
        let mut tables = BTreeMap::new();
        let mut columns = BTreeMap::new();
        for ((name, digest), list) in self.names.into_iter().zip(self.digests).zip(self.columns) {
            digest.part()?;
            columns.insert(name.clone(), list);
            tables.insert(name, digest);
        }
        Ok(ArchiveRecord {
            encoding: self.encoding,
            tables,
            columns,
        })
    }
}

fn int_value(bytes: &[u8], int_size: usize) -> i64 {
    let mut value: i64 = 0;
    for (i, b) in bytes[1..=int_size].iter().enumerate().take(8) {
        value |= i64::from(*b) << (8 * i);
    }
    if bytes[0] != 0 {
        value.wrapping_neg()
    } else {
        value
    }
}

/// The parsed header and TOC: where the data blocks start, the int size, the TABLE DATA
/// entries (dump id, `schema.table`, the copied column list), the dump's encoding.
struct Toc {
    end: usize,
    int_size: usize,
    data: Vec<(i64, String, String)>,
    encoding: Option<String>,
}

/// A cursor over the held bytes; `None` from a read means "not here yet".
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    int_size: usize,
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(slice)
    }

    fn int(&mut self) -> Option<i64> {
        let raw = self.take(1 + self.int_size)?;
        Some(int_value(raw, self.int_size))
    }

    fn string(&mut self) -> Option<Result<Option<String>, String>> {
        let len = self.int()?;
        if len < 0 {
            return Some(Ok(None));
        }
        if len > (1 << 30) {
            return Some(Err(format!("a string of {len} bytes in the TOC")));
        }
        let raw = self.take(len as usize)?;
        Some(Ok(Some(String::from_utf8_lossy(raw).into_owned())))
    }
}

/// `Ok(None)`: more bytes are needed.
fn parse_toc(bytes: &[u8]) -> Result<Option<Toc>, String> {
    let mut c = Cursor {
        bytes,
        at: 0,
        int_size: 4,
    };
    macro_rules! need {
        ($e:expr) => {
            match $e {
                Some(v) => v,
                None => return Ok(None),
            }
        };
    }
    macro_rules! string {
        () => {
            need!(c.string())?
        };
    }
    let magic = need!(c.take(MAGIC.len()));
    if magic != MAGIC {
        return Err("not a pg_dump custom-format archive (no PGDMP header)".into());
    }
    let (major, minor, _revision) = (need!(c.byte()), need!(c.byte()), need!(c.byte()));
    if (major, minor) < OLDEST || (major, minor) > NEWEST {
        return Err(format!(
            "pg_dump archive version {major}.{minor} (this reader knows {}.{} to {}.{})",
            OLDEST.0, OLDEST.1, NEWEST.0, NEWEST.1
        ));
    }
    let at_least = |m: u8| minor >= m;
    c.int_size = usize::from(need!(c.byte()));
    if !(1..=8).contains(&c.int_size) {
        return Err(format!("an int size of {} bytes", c.int_size));
    }
    let offset_size = usize::from(need!(c.byte()));
    if need!(c.byte()) != FORMAT_CUSTOM {
        return Err("not pg_dump's custom format".into());
    }
    if at_least(15) {
        let algorithm = need!(c.byte());
        if algorithm != 0 {
            return Err("a compressed pg_dump archive (wharf dumps with --compress=0)".into());
        }
    } else if need!(c.int()) != 0 {
        return Err("a compressed pg_dump archive (wharf dumps with --compress=0)".into());
    }
    for _ in 0..7 {
        need!(c.int()); // creation time
    }
    string!(); // database name
    string!(); // server version
    string!(); // pg_dump version
    let count = need!(c.int());
    let mut data = Vec::new();
    let mut encoding = None;
    for _ in 0..count {
        let id = need!(c.int());
        need!(c.int()); // had a dumper
        string!(); // table oid
        string!(); // oid
        let tag = string!().unwrap_or_default();
        let desc = string!().unwrap_or_default();
        need!(c.int()); // section
        let defn = string!();
        string!(); // drop statement
        let copy = string!();
        let namespace = string!().unwrap_or_default();
        string!(); // tablespace
        if at_least(14) {
            string!(); // table access method
        }
        if at_least(16) {
            need!(c.int()); // relkind
        }
        string!(); // owner
        string!(); // "false": no OIDs
        while string!().is_some() {} // dependencies, ended by a null
        need!(c.take(1 + offset_size)); // custom format: data state and offset
        match desc.as_str() {
            "TABLE DATA" => {
                let columns = copy.as_deref().map(column_list).unwrap_or_default();
                data.push((id, format!("{namespace}.{tag}"), columns));
            }
            "ENCODING" => {
                // `SET client_encoding = 'UTF8';`
                encoding = defn
                    .as_deref()
                    .and_then(|d| d.split('\'').nth(1))
                    .map(str::to_owned);
            }
            _ => {}
        }
    }
    Ok(Some(Toc {
        end: c.at,
        int_size: c.int_size,
        data,
        encoding,
    }))
}

/// The column list of pg_dump's `COPY schema.table (a, "B c") FROM stdin;` (empty when the
/// statement names none): what follows the qualified name, whose parts may be quoted.
fn column_list(copy: &str) -> String {
    let Some(rest) = copy.strip_prefix("COPY ") else {
        return String::new();
    };
    let mut quoted = false;
    let mut end = rest.len();
    for (at, ch) in rest.char_indices() {
        match ch {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                end = at;
                break;
            }
            _ => {}
        }
    }
    let after = rest[end..].trim_start();
    let list = after
        .strip_suffix('\n')
        .unwrap_or(after)
        .strip_suffix("FROM stdin;")
        .unwrap_or("")
        .trim();
    list.to_owned()
}

/// A tool's stream that feeds every byte it hands over to the shared parser.
pub(crate) struct Tapped<R> {
    inner: R,
    parser: Arc<Mutex<ArchiveParser>>,
}

impl<R> Tapped<R> {
    pub fn new(inner: R, parser: Arc<Mutex<ArchiveParser>>) -> Tapped<R> {
        Tapped { inner, parser }
    }
}

impl<R: Read> Read for Tapped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Ok(mut parser) = self.parser.lock() {
            parser.feed(&buf[..n]);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_split_anywhere_digest_alike_and_order_does_not_matter() {
        let rows = b"1\ta\n2\tb\n3\t\\N\n";
        let mut whole = CopyDigest::default();
        whole.feed(rows);
        for split in 0..rows.len() {
            let mut parts = CopyDigest::default();
            parts.feed(&rows[..split]);
            parts.feed(&rows[split..]);
            assert_eq!(parts.part(), whole.part(), "split at {split}");
        }
        let mut reordered = CopyDigest::default();
        reordered.feed(b"3\t\\N\n1\ta\n2\tb\n");
        assert_eq!(reordered.part(), whole.part());
        let mut changed = CopyDigest::default();
        changed.feed(b"1\ta\n2\tc\n3\t\\N\n");
        assert_ne!(changed.part().unwrap().digest, whole.part().unwrap().digest);
        assert_eq!(whole.part().unwrap().count, 3);
        let mut cut = CopyDigest::default();
        cut.feed(b"1\ta\n2\t");
        assert!(cut.part().is_err());
        // pg_dump's end marker and the blank lines after it are no rows.
        let mut marked = CopyDigest::default();
        marked.feed(b"1\ta\n2\tb\n3\t\\N\n\\.\n\n\n");
        assert_eq!(marked.part(), whole.part());
        let mut escaped = CopyDigest::default();
        escaped.feed(b"\\\\.\n");
        assert_eq!(
            escaped.part().unwrap().count,
            1,
            "an escaped backslash-dot is a row"
        );
    }

    /// A header as pg_dump writes it: version, int size 4, offset size 8, custom format.
    fn header(minor: u8, compression: u8) -> Vec<u8> {
        let mut h = b"PGDMP".to_vec();
        h.extend_from_slice(&[1, minor, 0, 4, 8, FORMAT_CUSTOM]);
        if minor >= 15 {
            h.push(compression);
        } else {
            h.extend_from_slice(&[0, compression, 0, 0, 0]);
        }
        h
    }

    fn refusal(bytes: &[u8]) -> String {
        let mut parser = ArchiveParser::default();
        parser.feed(bytes);
        parser.finish().unwrap_err()
    }

    #[test]
    fn archives_the_reader_does_not_know_are_refused_with_the_reason() {
        assert!(refusal(b"-- plain SQL dump\n").contains("no PGDMP header"));
        assert!(refusal(&header(17, 0)).contains("version 1.17"));
        assert!(refusal(&header(15, 1)).contains("compressed"));
        assert!(refusal(&header(14, 6)).contains("compressed"));
        // A header cut short is not an archive that ended well.
        assert!(refusal(&header(15, 0)).contains("ended inside"));
        let mut bad_block = header(14, 0);
        for _ in 0..7 {
            bad_block.extend_from_slice(&[0, 0, 0, 0, 0]);
        }
        for _ in 0..3 {
            bad_block.extend_from_slice(&[1, 1, 0, 0, 0]); // null strings
        }
        bad_block.extend_from_slice(&[0, 0, 0, 0, 0]); // no TOC entries
        bad_block.push(9); // no such block type
        assert!(refusal(&bad_block).contains("unknown type 9"));
    }

    #[test]
    fn the_copied_columns_are_read_from_pg_dumps_copy_statement() {
        assert_eq!(
            column_list("COPY public.users (id, name, note) FROM stdin;\n"),
            "(id, name, note)"
        );
        assert_eq!(
            column_list("COPY \"my schema\".\"a (b)\" (\"x y\", z) FROM stdin;\n"),
            "(\"x y\", z)"
        );
        assert_eq!(column_list("COPY public.empty  FROM stdin;\n"), "");
        assert_eq!(column_list("not a copy"), "");
    }
}
