//! A content-defined chunker that cuts exactly where rustic_core 0.13's Rabin chunker cuts, at
//! several times its speed.
//!
//! Why it exists: the archiver's one chunking thread is a backup's critical path (see
//! `scripts/bench/backup.sh`). rustic_core rolls its Rabin hash one byte per loop turn through a
//! ring buffer, each turn waiting on the table lookup of the one before. Chunks must stay where
//! restic and rustic put them — the same cuts are what lets a backup share blobs with the ones
//! before it — so this chunker reproduces rustic's cuts bit for bit, and is fast because of two
//! facts about them:
//!
//! - The Rabin fingerprint of a 64-byte window is linear and forgets everything older, so past
//!   the first 64 bytes after `min_size` whether a position is a cut depends only on the 64 bytes
//!   before it, not on where the chunk started. No ring buffer is needed (the outgoing byte is
//!   `data[p - 64]`), and the search for the first candidate can run several independent rolling
//!   hashes over interleaved segments in one loop, so the CPU overlaps their latency chains.
//! - For the 64 positions from `min_size` on, rustic's state is quirky (its prefill slides only
//!   63 bytes, so the byte at `min_size - 1` never enters the window and slot 63 holds a zero):
//!   those positions are emulated step by step, exactly.
#![cfg_attr(not(test), allow(dead_code))] // Until wharf's own data path calls it.

#[cfg(test)]
mod reference;

/// The window of rustic_cdc's `Rabin64::new_with_polynom(6, …)`, the one rustic_core uses.
const WINDOW: usize = 64;

/// Independent rolling hashes run side by side by the candidate search. Four hide most of the
/// latency of a hash step (a shift, a table load, two xors) on current x86 and ARM cores;
/// more spill registers.
const LANES: usize = 4;

/// rustic_core's Rabin chunker, as a function from bytes to the length of the next chunk.
///
/// Built once per repository configuration; `next_cut` takes `&self`, so one value serves
/// every file and thread.
pub(crate) struct Chunker {
    /// `out_table[b]`: `b · x^(8·63) mod P`, removes the byte leaving the window (rustic_cdc's).
    out_table: [u64; 256],
    /// `mod_table[b]`: `(b · x^deg mod P) | b · x^deg`, reduces the byte shifted past the degree.
    mod_table: [u64; 256],
    /// `deg(P) - 8`: where the byte that the next shift pushes past the degree sits.
    shift: u32,
    /// A cut where `hash & mask == 0` (`avg_size - 1`).
    mask: u64,
    min_size: usize,
    max_size: usize,
    /// Whether the hash is a pure function of the 64-byte window, which the fast search relies
    /// on: true when `8 <= deg(P) <= 56`, where every step is exact arithmetic mod P (a
    /// repository's polynomial has degree 53). Otherwise rustic's steps lose bits off the top
    /// of the u64 and are emulated one by one to the end of the chunk.
    window_pure: bool,
    /// Positions per lane per block of the search: large enough that each lane's 64-byte
    /// warm-up is cheap, small enough that the work past a cut found early in a block (at most
    /// a block) is small beside an average chunk.
    lane_len: usize,
}

impl std::fmt::Debug for Chunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunker")
            .field("mask", &self.mask)
            .field("min_size", &self.min_size)
            .field("max_size", &self.max_size)
            .finish_non_exhaustive()
    }
}

/// rustic_cdc's `Polynom64::degree`: -1 for 0.
fn degree(p: u64) -> i32 {
    63 - p.leading_zeros() as i32
}

/// rustic_cdc's `Polynom64::modulo`.
fn modulo(mut p: u64, m: u64) -> u64 {
    while degree(p) >= degree(m) {
        p ^= m << (degree(p) - degree(m));
    }
    p
}

impl Chunker {
    /// `polynomial`: the repository's (rustic_core `ConfigFile::poly()`), window 64 bytes;
    /// `avg_size` a power of two (split mask = `avg_size - 1`); the sizes as
    /// `ConfigFile::chunk_size` / `chunk_min_size` / `chunk_max_size`.
    ///
    /// # Panics
    /// On parameters rustic_core refuses (`check_rabin_params`: `avg_size` not a power of two,
    /// `min_size > avg_size`, `max_size < avg_size`) or would panic on (`min_size < 64`, a
    /// polynomial of degree below 8). A repository's configuration never has them; the caller
    /// has them checked by rustic_core when it opens the repository.
    pub(crate) fn new(
        polynomial: u64,
        min_size: usize,
        avg_size: usize,
        max_size: usize,
    ) -> Chunker {
        assert!(
            avg_size.is_power_of_two(),
            "chunk size {avg_size} is not a power of two"
        );
        assert!(
            min_size <= avg_size,
            "chunk min size {min_size} > chunk size {avg_size}"
        );
        assert!(
            max_size >= avg_size,
            "chunk max size {max_size} < chunk size {avg_size}"
        );
        assert!(
            min_size >= WINDOW,
            "chunk min size {min_size} < the 64-byte window"
        );
        let deg = degree(polynomial);
        assert!(
            deg >= 8,
            "chunker polynomial {polynomial:#x} has degree {deg} < 8"
        );

        // rustic_cdc's `calculate_out_table` and `calculate_mod_table`, step by step, so that
        // even a polynomial of degree above 56 gets the same (lossy) tables.
        let mut out_table = [0u64; 256];
        let mut mod_table = [0u64; 256];
        for b in 0..256u64 {
            let mut hash = modulo(b, polynomial);
            for _ in 0..WINDOW - 1 {
                hash <<= 8;
                hash = modulo(hash, polynomial);
            }
            out_table[b as usize] = hash;
            let p = b << deg;
            mod_table[b as usize] = modulo(p, polynomial) | p;
        }
        Chunker {
            out_table,
            mod_table,
            shift: (deg - 8) as u32,
            mask: avg_size as u64 - 1,
            min_size,
            max_size,
            window_pure: deg <= 56,
            lane_len: (avg_size / 64).clamp(64, 8192),
        }
    }

    /// The length of the chunk that starts at `data[0]`: `Some(len)` when a cut lies within
    /// `data` (or `data` reaches `max_size`: `Some(max_size)`); `None` when
    /// `data.len() < max_size` and no cut is in it (the caller then reads more, or at the end of
    /// input takes all of `data` as the last chunk).
    pub(crate) fn next_cut(&self, data: &[u8]) -> Option<usize> {
        if data.len() < self.min_size {
            return None;
        }
        // The last length whose hash can decide; at max_size the cut is made whatever the hash.
        let last = data.len().min(self.max_size);
        let quirky_last = if self.window_pure {
            last.min(self.min_size + WINDOW - 1)
        } else {
            last
        };
        if let Some(len) = self.scan_quirky(data, quirky_last) {
            return Some(len);
        }
        if quirky_last < last
            && let Some(len) = self.scan_pure(data, quirky_last + 1, last)
        {
            return Some(len);
        }
        (last == self.max_size).then_some(self.max_size)
    }

    /// One step of rustic_cdc's `Rabin64::slide`, the ring buffer's outgoing byte given.
    #[inline(always)]
    fn step(&self, hash: u64, out: u8, byte: u8) -> u64 {
        let hash = hash ^ self.out_table[out as usize];
        let index = (hash >> self.shift) & 255;
        ((hash << 8) | u64::from(byte)) ^ self.mod_table[index as usize]
    }

    /// rustic's state from `min_size` on, emulated: the first cut at a length in
    /// `min_size..=last`.
    ///
    /// rustic prefills with `data[min-64..min]` but slides only 63 of those bytes, so the
    /// window holds a zero and then `data[min-64..min-1]`; each later step pushes `data[len-1]`
    /// and takes out the zero first, then `data[min-64]`, `data[min-63]`, … — the byte at
    /// `min - 1` is never in it. From `min + 64` on the window is `data[len-64..len]`.
    fn scan_quirky(&self, data: &[u8], last: usize) -> Option<usize> {
        let min = self.min_size;
        let mut hash = 0;
        // The prefill takes nothing out (`out_table[0]` is 0 anyway).
        for &byte in &data[min - WINDOW..min - 1] {
            hash = self.step(hash, 0, byte);
        }
        if hash & self.mask == 0 {
            return Some(min);
        }
        for len in min + 1..=last {
            let out = match len - min {
                1 => 0,
                k if k <= WINDOW => data[len - WINDOW - 2],
                _ => data[len - WINDOW - 1],
            };
            hash = self.step(hash, out, data[len - 1]);
            if hash & self.mask == 0 {
                return Some(len);
            }
        }
        None
    }

    /// The first length in `first..=last` whose 64 bytes before it hash to a cut, when the
    /// hash is a function of the window alone (`first >= min_size + 64`).
    fn scan_pure(&self, data: &[u8], first: usize, last: usize) -> Option<usize> {
        let block = LANES * self.lane_len;
        let mut start = first;
        while last + 1 - start >= block {
            if let Some(len) = self.search_block(data, start) {
                return Some(len);
            }
            start += block;
        }
        if start <= last {
            self.search_lane(data, start, last + 1 - start)
        } else {
            None
        }
    }

    /// One lane alone: the first length in `start..start + count` that is a cut.
    fn search_lane(&self, data: &[u8], start: usize, count: usize) -> Option<usize> {
        // From `start - 65`: 64 bytes of warm-up give the hash at length `start - 1`; then each
        // step pushes `w[i + 64]` and takes out `w[i]`, giving the hash at `start + i`.
        let w = &data[start - WINDOW - 1..start + count - 1];
        let mut hash = 0;
        for &byte in &w[..WINDOW] {
            hash = self.step(hash, 0, byte);
        }
        for (i, (&out, &byte)) in w.iter().zip(&w[WINDOW..]).enumerate() {
            hash = self.step(hash, out, byte);
            if hash & self.mask == 0 {
                return Some(start + i);
            }
        }
        None
    }

    /// `LANES` lanes over consecutive segments of `lane_len` lengths from `start`, in one loop:
    /// the first cut among them.
    fn search_block(&self, data: &[u8], start: usize) -> Option<usize> {
        let n = self.lane_len;
        // Lane j's bytes, laid out as in `search_lane`.
        let lanes: [&[u8]; LANES] = std::array::from_fn(|j| {
            let s = start + j * n;
            &data[s - WINDOW - 1..s + n - 1]
        });
        let mut hash = [0u64; LANES];
        for i in 0..WINDOW {
            for j in 0..LANES {
                hash[j] = self.step(hash[j], 0, lanes[j][i]);
            }
        }
        // Each lane's first cut, as an offset into its segment.
        let mut found = [usize::MAX; LANES];
        for i in 0..n {
            for j in 0..LANES {
                let h = self.step(hash[j], lanes[j][i], lanes[j][i + WINDOW]);
                hash[j] = h;
                if h & self.mask == 0 && found[j] == usize::MAX {
                    found[j] = i;
                }
            }
        }
        (0..LANES)
            .find(|&j| found[j] != usize::MAX)
            .map(|j| start + j * n + found[j])
    }
}

#[cfg(test)]
mod tests;
