//! The reference the fast chunker is held to: rustic_core 0.13's `ChunkIter::next` loop
//! (`src/chunker/rabin.rs`) ported from a reader to a byte slice, over rustic_cdc's own
//! `Rabin64`. Only its IO is changed: the same reset, prefill, order of the max-size and hash
//! checks and one shared `Rabin64` for the whole input, as rustic keeps one per file.
//! Used by the unit tests and by `examples/chunker_bench.rs` (which includes this file by path).

use rustic_cdc::{Rabin64, RollingHash64};

/// The lengths of the chunks rustic_core 0.13 cuts `data` into, in order.
pub(crate) fn chunk_lengths(
    data: &[u8],
    polynomial: u64,
    min_size: usize,
    avg_size: usize,
    max_size: usize,
) -> Vec<usize> {
    let split_mask = avg_size as u64 - 1;
    let mut rabin = Rabin64::new_with_polynom(6, &polynomial);
    let mut lengths = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let rest = &data[pos..];
        // Fewer than min_size bytes left: rustic's `take(min_size).read_to_end` comes short and
        // the rest is the last chunk.
        if rest.len() < min_size {
            lengths.push(rest.len());
            break;
        }
        let mut len = min_size;
        rabin.reset_and_prefill_window(&mut rest[len - 64..len].iter().copied());
        loop {
            if len >= max_size {
                break;
            }
            if (rabin.hash & split_mask) == 0 {
                break;
            }
            // rustic's reader returns 0 here: the end of the input ends the chunk.
            if len == rest.len() {
                break;
            }
            let byte = rest[len];
            len += 1;
            rabin.slide(byte);
        }
        lengths.push(len);
        pos += len;
    }
    lengths
}

/// rustic_core 0.13's `ChunkIter` itself, ported verbatim but for its error type: chunks read
/// from `reader` through its 4 KiB buffer into a `Vec` a byte at a time. What a backup runs
/// today; the slice port above must agree with it. (Its `min_size -= open_buf_len` underflows
/// when `min_size` is below the 4 KiB buffer: only for repository-sized chunks.)
pub(crate) struct ChunkIter<R: std::io::Read> {
    buf: Vec<u8>,
    pos: usize,
    reader: R,
    split_mask: u64,
    rabin: Rabin64,
    size_hint: usize,
    min_size: usize,
    max_size: usize,
    finished: bool,
}

impl<R: std::io::Read> ChunkIter<R> {
    pub(crate) fn new(
        polynomial: u64,
        min_size: usize,
        avg_size: usize,
        max_size: usize,
        reader: R,
    ) -> Self {
        const BUF_SIZE: usize = 4 * 1024;
        Self {
            buf: vec![0; BUF_SIZE],
            pos: BUF_SIZE,
            reader,
            split_mask: avg_size as u64 - 1,
            rabin: Rabin64::new_with_polynom(6, &polynomial),
            size_hint: 0,
            min_size,
            max_size,
            finished: false,
        }
    }
}

impl<R: std::io::Read> Iterator for ChunkIter<R> {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        use std::io::Read;
        if self.finished {
            return None;
        }
        let mut min_size = self.min_size;
        let mut vec = Vec::with_capacity(self.size_hint.min(min_size));
        let open_buf_len = self.buf.len() - self.pos;
        if open_buf_len > 0 {
            vec.resize(open_buf_len, 0);
            vec.copy_from_slice(&self.buf[self.pos..]);
            self.pos = self.buf.len();
            min_size -= open_buf_len;
        }
        let size = match (&mut self.reader)
            .take(min_size as u64)
            .read_to_end(&mut vec)
        {
            Ok(size) => size,
            Err(err) => return Some(Err(err)),
        };
        if size < min_size {
            self.finished = true;
            vec.truncate(size + open_buf_len);
            return if vec.is_empty() { None } else { Some(Ok(vec)) };
        }
        _ = self
            .rabin
            .reset_and_prefill_window(&mut vec[vec.len() - 64..vec.len()].iter().copied());
        loop {
            if vec.len() >= self.max_size {
                break;
            }
            if (self.rabin.hash & self.split_mask) == 0 {
                break;
            }
            if self.buf.len() == self.pos {
                match self.reader.read(&mut self.buf[..]) {
                    Ok(0) => {
                        self.finished = true;
                        break;
                    }
                    Ok(size) => {
                        self.pos = 0;
                        self.buf.truncate(size);
                    }
                    Err(ref e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(err) => return Some(Err(err)),
                }
            }
            let byte = self.buf[self.pos];
            vec.push(byte);
            self.pos += 1;
            self.rabin.slide(byte);
        }
        self.size_hint = self.size_hint.saturating_sub(vec.len());
        Some(Ok(vec))
    }
}
