//! Throughput of wharf's chunker against rustic_core 0.13's loop over rustic_cdc's `Rabin64`,
//! side by side, on ~256 MiB of random bytes and of pgbench-like text, with restic's default
//! sizes (min 512 KiB, average 1 MiB, max 8 MiB). Two references: rustic's `ChunkIter` as
//! backups run it (a reader, its 4 KiB buffer, a `Vec` push per byte) and its loop alone over
//! a slice (rustic_cdc's `Rabin64::slide` per byte); the ratios are wharf's speed-up over each.
//! Checks that all three cut the same.
//!
//! `cargo run --release -p wharf-backup --example chunker_bench [MIB]`
//! (`scripts/bench/chunker.sh` runs it.)

// The chunker is crate-private: the example compiles the module itself.
#[path = "../src/chunker.rs"]
#[rustfmt::skip]
mod chunker;
#[path = "../src/chunker/reference.rs"]
mod reference;
#[path = "../src/chunker/samples.rs"]
mod samples;

use std::time::Instant;

use samples::{fast_lengths, random_bytes};

const POLY: u64 = 0x003D_A335_8B4D_C173;
const MIB: usize = 1024 * 1024;
const MIN: usize = 512 * 1024;
const AVG: usize = MIB;
const MAX: usize = 8 * MIB;

/// pgbench_accounts as `COPY` writes it: numbers, then the blank-padded `filler` column.
fn pgbench_like(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 128);
    let mut aid = 1u64;
    while out.len() < len {
        let balance = aid.wrapping_mul(2_654_435_761) % 10_000;
        out.extend_from_slice(format!("{aid}\t{}\t{balance}\t", 1 + aid / 100_000).as_bytes());
        out.extend(std::iter::repeat_n(b' ', 84));
        out.push(b'\n');
        aid += 1;
    }
    out.truncate(len);
    out
}

/// The shortest of three runs of `f`, in seconds, and its result.
fn best_of_3<T>(mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::MAX;
    let mut out = None;
    for _ in 0..3 {
        let t = Instant::now();
        let result = f();
        best = best.min(t.elapsed().as_secs_f64());
        out = Some(result);
    }
    (best, out.expect("three runs"))
}

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .map_or(256, |a| a.parse().expect("MIB: a number"));
    let chunker = chunker::Chunker::new(POLY, MIN, AVG, MAX).expect("valid chunker parameters");
    for (name, data) in [
        ("random", random_bytes(mib * MIB, 42)),
        ("pgbench-like", pgbench_like(mib * MIB)),
    ] {
        // The best of three runs each: the figures are for a shared machine.
        let (rustic_iter, iter) = best_of_3(|| {
            reference::ChunkIter::new(POLY, MIN, AVG, MAX, &data[..])
                .map(|chunk| chunk.expect("reading a slice").len())
                .collect::<Vec<usize>>()
        });
        let (rustic, expected) = best_of_3(|| reference::chunk_lengths(&data, POLY, MIN, AVG, MAX));
        let (wharf, got) = best_of_3(|| fast_lengths(&chunker, &data));
        assert_eq!(
            iter, expected,
            "{name}: rustic's iterator and its loop over a slice differ"
        );
        assert_eq!(got, expected, "{name}: the chunkers cut differently");
        let mbs = |secs: f64| data.len() as f64 / 1e6 / secs;
        println!(
            "{name:>13} {mib} MiB, {} chunks: rustic ChunkIter {:5.0} MB/s  rustic_cdc loop {:5.0} MB/s  wharf {:5.0} MB/s  ratio {:.2}x / {:.2}x",
            got.len(),
            mbs(rustic_iter),
            mbs(rustic),
            mbs(wharf),
            rustic_iter / wharf,
            rustic / wharf,
        );
    }
}
