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

#[cfg(test)]
mod reference;
#[cfg(test)]
mod samples;

/// The window of rustic_cdc's `Rabin64::new_with_polynom(6, …)`, the one rustic_core uses.
const WINDOW: usize = 64;

/// Independent rolling hashes run side by side by the candidate search. Four hide most of the
/// latency of a hash step (a shift, a table load, two xors) on current x86 and ARM cores;
/// more spill registers.
const LANES: usize = 4;

/// Lengths per lane in a block of the candidate search, for an average chunk of 16 KiB or
/// more (restic's is 1 MiB): each lane's 64-byte warm-up is 1.5 % of its work, and the work
/// past a cut found early in a block (at most a block, 16 KiB) is small beside a chunk.
const LONG_LANE: usize = 4096;
/// The same for smaller averages (which restic never uses, and the tests do).
const SHORT_LANE: usize = 64;

/// rustic_core's Rabin chunker, as a function from bytes to the length of the next chunk.
///
/// Built once per repository configuration; `next_cut` takes `&self`, so one value serves
/// every file and thread.
pub(crate) struct Chunker {
    /// `out_table[b]`: `b · x^(8·63) mod P`, removes the byte leaving the window (rustic_cdc's).
    out_table: [u64; 256],
    /// `mod_table[b]`: `(b · x^deg mod P) | b · x^deg`, reduces the byte shifted past the degree.
    mod_table: [u64; 256],
    /// `out_shifted[b]`: `b · x^(8·64) mod P`, the outgoing byte's term after the step's shift,
    /// for `step_pure`.
    out_shifted: [u64; 256],
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
    /// Refuses, saying which, parameters rustic_core refuses (`check_rabin_params`: `avg_size`
    /// not a power of two, `min_size > avg_size`, `max_size < avg_size`) or would panic on
    /// (`min_size < 64`, a polynomial of degree below 8): they come from a repository's config
    /// file, which may be damaged.
    pub(crate) fn new(
        polynomial: u64,
        min_size: usize,
        avg_size: usize,
        max_size: usize,
    ) -> Result<Chunker, String> {
        if !avg_size.is_power_of_two() {
            return Err(format!("chunk size {avg_size} is not a power of two"));
        }
        if min_size > avg_size {
            return Err(format!("chunk min size {min_size} > chunk size {avg_size}"));
        }
        if max_size < avg_size {
            return Err(format!("chunk max size {max_size} < chunk size {avg_size}"));
        }
        if min_size < WINDOW {
            return Err(format!("chunk min size {min_size} < the 64-byte window"));
        }
        let deg = degree(polynomial);
        if deg < 8 {
            return Err(format!(
                "chunker polynomial {polynomial:#x} has degree {deg} < 8"
            ));
        }

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
        let out_shifted = std::array::from_fn(|b| {
            let o = out_table[b];
            (o << 8) ^ mod_table[((o >> (deg - 8)) & 255) as usize]
        });
        Ok(Chunker {
            out_table,
            mod_table,
            out_shifted,
            shift: (deg - 8) as u32,
            mask: avg_size as u64 - 1,
            min_size,
            max_size,
            window_pure: deg <= 56,
            lane_len: if avg_size >= 16 * 1024 {
                LONG_LANE
            } else {
                SHORT_LANE
            },
        })
    }

    /// The length of the chunk that starts at `data[0]`: `Some(len)` when a cut lies within
    /// `data` (or `data` reaches `max_size`: `Some(max_size)`); `None` when
    /// `data.len() < max_size` and no cut is in it (the caller then reads more, or at the end of
    /// input takes all of `data` as the last chunk).
    ///
    /// Each call scans from `min_size` again: a caller should hold `max_size` bytes (or the
    /// rest of the input) when it calls, so that every call decides, rather than call again
    /// after each small read.
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
        self.step_by(self.shift, hash, out, byte)
    }

    /// `step` with the shift given: a constant one compiles to an immediate shift, which
    /// saves the search a uop or two per byte (a shift by `cl` costs more on x86).
    #[inline(always)]
    fn step_by(&self, shift: u32, hash: u64, out: u8, byte: u8) -> u64 {
        let hash = hash ^ self.out_table[out as usize];
        let index = (hash >> shift) & 255;
        ((hash << 8) | u64::from(byte)) ^ self.mod_table[index as usize]
    }

    /// `step_by`, rearranged for when the hash is exact arithmetic mod P (`window_pure`): the
    /// tables are linear, so the outgoing byte's removal can follow the shift instead of
    /// preceding it. Same value; but the chain from one hash to the next is then a shift, a
    /// load and two xors, and the outgoing byte's lookup runs beside it.
    #[inline(always)]
    fn step_pure(&self, shift: u32, hash: u64, out: u8, byte: u8) -> u64 {
        let index = (hash >> shift) & 255;
        (hash << 8)
            ^ self.mod_table[index as usize]
            ^ (self.out_shifted[out as usize] ^ u64::from(byte))
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
        // Every repository's polynomial has degree 53 (its shift is compiled in) and an
        // average chunk of 1 MiB (long lanes); the others take the generic copies.
        match (self.shift, self.lane_len) {
            (45, LONG_LANE) => self.scan_pure_by::<45, LONG_LANE>(data, first, last),
            (45, _) => self.scan_pure_by::<45, SHORT_LANE>(data, first, last),
            (_, LONG_LANE) => self.scan_pure_by::<0, LONG_LANE>(data, first, last),
            (_, _) => self.scan_pure_by::<0, SHORT_LANE>(data, first, last),
        }
    }

    /// `scan_pure` with the shift `SHIFT` (`self.shift` when 0) and lanes of `N` lengths.
    fn scan_pure_by<const SHIFT: u32, const N: usize>(
        &self,
        data: &[u8],
        first: usize,
        last: usize,
    ) -> Option<usize> {
        let shift = if SHIFT == 0 { self.shift } else { SHIFT };
        let mut start = first;
        while last + 1 - start >= LANES * N {
            if let Some(len) = self.search_block::<N>(shift, data, start) {
                return Some(len);
            }
            start += LANES * N;
        }
        if start <= last {
            self.search_lane(shift, data, start, last + 1 - start)
        } else {
            None
        }
    }

    /// One lane alone: the first length in `start..start + count` that is a cut.
    #[inline(always)]
    fn search_lane(&self, shift: u32, data: &[u8], start: usize, count: usize) -> Option<usize> {
        // From `start - 65`: 64 bytes of warm-up give the hash at length `start - 1`; then each
        // step pushes `w[i + 64]` and takes out `w[i]`, giving the hash at `start + i`.
        let w = &data[start - WINDOW - 1..start + count - 1];
        let mut hash = 0;
        for &byte in &w[..WINDOW] {
            hash = self.step_pure(shift, hash, 0, byte);
        }
        self.continue_lane(shift, hash, w, 0, count)
            .map(|i| start + i)
    }

    /// A lane's hash at its `from - 1`th length rolled on over `w` (laid out as in
    /// `search_lane`): the offset of its first cut in `from..to`.
    #[inline(always)]
    fn continue_lane(
        &self,
        shift: u32,
        mut hash: u64,
        w: &[u8],
        from: usize,
        to: usize,
    ) -> Option<usize> {
        for (i, (&out, &byte)) in w[from..to]
            .iter()
            .zip(&w[from + WINDOW..to + WINDOW])
            .enumerate()
        {
            hash = self.step_pure(shift, hash, out, byte);
            if hash & self.mask == 0 {
                return Some(from + i);
            }
        }
        None
    }

    /// `LANES` lanes over consecutive segments of `N` lengths from `start`, in one loop: the
    /// first cut among them.
    #[inline(always)]
    fn search_block<const N: usize>(&self, shift: u32, data: &[u8], start: usize) -> Option<usize> {
        // Lane j's bytes are `block[j * N..j * N + N + 64]`, laid out as in `search_lane`. The
        // lengths being constants, the compiler drops every bounds check in the loop and
        // addresses all lanes from one pointer.
        let block = &data[start - WINDOW - 1..start - WINDOW - 1 + LANES * N + WINDOW];
        let mut hash = [0u64; LANES];
        for i in 0..WINDOW {
            for j in 0..LANES {
                hash[j] = self.step_pure(shift, hash[j], 0, block[j * N + i]);
            }
        }
        // The first cut in time; then lanes before it may still cut later in their segments.
        let mut hit = None;
        'roll: for i in 0..N {
            for j in 0..LANES {
                let h = self.step_pure(shift, hash[j], block[j * N + i], block[j * N + i + WINDOW]);
                hash[j] = h;
                // Taken about once per chunk: a branch, not a conditional move, keeps the
                // loop's state in registers.
                if h & self.mask == 0 {
                    hit = Some((j, i));
                    break 'roll;
                }
            }
        }
        let (lane, i) = hit?;
        // Lanes before `lane` have rolled through `i` without a cut: the rest of theirs, in
        // order, come first.
        for j in 0..lane {
            let w = &block[j * N..j * N + N + WINDOW];
            if let Some(k) = self.continue_lane(shift, hash[j], w, i + 1, N) {
                return Some(start + j * N + k);
            }
        }
        Some(start + lane * N + i)
    }
}

#[cfg(test)]
mod tests;
