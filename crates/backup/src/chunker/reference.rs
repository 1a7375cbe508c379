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
