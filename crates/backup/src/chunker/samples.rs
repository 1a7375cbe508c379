//! Inputs and the caller's loop shared by the chunker's tests and `examples/chunker_bench.rs`
//! (which compiles this file by path beside the chunker).

use crate::chunker::Chunker;

/// Deterministic bytes (splitmix64), so a failure reproduces.
pub(crate) fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The caller's loop: `next_cut` on what is left; the rest is the last chunk when it says None.
pub(crate) fn fast_lengths(chunker: &Chunker, data: &[u8]) -> Vec<usize> {
    let mut lengths = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let len = chunker.next_cut(&data[pos..]).unwrap_or(data.len() - pos);
        assert!(
            len > 0 && pos + len <= data.len(),
            "cut {len} at {pos} out of range"
        );
        lengths.push(len);
        pos += len;
    }
    lengths
}
