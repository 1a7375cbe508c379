//! The fast chunker against rustic_core 0.13's own loop (`reference`), length for length.

use proptest::prelude::*;

use super::samples::{fast_lengths, random_bytes};
use super::{Chunker, WINDOW, reference};

/// rustic_cdc's `MOD_POLYNOM`, also restic's chunker test polynomial.
const POLY_RESTIC_TEST: u64 = 0x003D_A335_8B4D_C173;
/// Other degree-53 polynomials (the equality does not depend on irreducibility, only on the
/// degree, which all repositories share).
const POLYS_53: [u64; 3] = [
    POLY_RESTIC_TEST,
    0x0023_5A0F_77C1_9E4B,
    0x0030_0000_0000_0001,
];
/// Degree 39: another shift than 53's, which the search has a copy of its own for.
const POLY_39: u64 = 0x00F5_2F3C_9A1D;
/// Degree 60: rustic's steps lose bits off the top of the u64; the chunker must follow them.
const POLY_60: u64 = 0x1B2C_3D4E_5F60_7183;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Text shaped like pgbench's dump: lines of numbers, each followed by a long run of blanks.
fn pgbench_like(len: usize, seed: u64) -> Vec<u8> {
    let noise = random_bytes(len / 8 + 64, seed);
    let mut out = Vec::with_capacity(len + 128);
    let mut i = 0;
    while out.len() < len {
        let n = u64::from_le_bytes(noise[i..i + 8].try_into().unwrap());
        i = (i + 8) % (noise.len() - 8);
        out.extend_from_slice(
            format!("{}\t{}\t{}\t", n % 100_000, n >> 40, (n >> 20) & 0xFFFF).as_bytes(),
        );
        out.extend(std::iter::repeat_n(b' ', 84));
        out.push(b'\n');
    }
    out.truncate(len);
    out
}

/// A streaming caller: input arrives in pieces of the given sizes; on None it appends the next
/// piece, and at the end takes what is left.
fn streamed_lengths(chunker: &Chunker, data: &[u8], pieces: &[usize]) -> Vec<usize> {
    let mut lengths = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut piece = pieces.iter().cycle();
    loop {
        match chunker.next_cut(&buf) {
            Some(len) => {
                lengths.push(len);
                buf.drain(..len);
            }
            None if fed < data.len() => {
                let n = (*piece.next().unwrap()).max(1).min(data.len() - fed);
                buf.extend_from_slice(&data[fed..fed + n]);
                fed += n;
            }
            None => {
                if !buf.is_empty() {
                    lengths.push(buf.len());
                }
                return lengths;
            }
        }
    }
}

fn assert_same(data: &[u8], poly: u64, min: usize, avg: usize, max: usize) -> Vec<usize> {
    let expected = reference::chunk_lengths(data, poly, min, avg, max);
    let chunker = Chunker::new(poly, min, avg, max).expect("valid chunker parameters");
    let got = fast_lengths(&chunker, data);
    if got != expected {
        let at = got
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(expected.len()));
        panic!(
            "poly {poly:#x} min {min} avg {avg} max {max}, {} bytes: chunk {at} differs: fast {:?} vs rustic {:?}",
            data.len(),
            &got[at..got.len().min(at + 3)],
            &expected[at..expected.len().min(at + 3)],
        );
    }
    expected
}

/// What a chunker that ignored rustic's prefill quirk would cut: the hash of the contiguous
/// 64 bytes before each length from min_size on.
fn naive_lengths(data: &[u8], poly: u64, min: usize, avg: usize, max: usize) -> Vec<usize> {
    let c = Chunker::new(poly, min, avg, max).expect("valid chunker parameters");
    let mut lengths = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let rest = &data[pos..];
        let mut len = rest.len();
        if rest.len() >= min {
            len = (min..=rest.len().min(max))
                .find(|&l| {
                    l == max
                        || rest[l - WINDOW..l].iter().fold(0, |h, &b| c.step(h, 0, b)) & c.mask == 0
                })
                .unwrap_or(rest.len());
        }
        lengths.push(len);
        pos += len;
    }
    lengths
}

#[test]
fn small_sizes_on_random_data_cut_where_rustic_cuts() {
    let data = random_bytes(3 * MIB, 1);
    for poly in POLYS_53 {
        let lengths = assert_same(&data, poly, 256, 512, 4096);
        // Thousands of cuts, some inside the 64 quirky positions after min_size.
        assert!(lengths.len() > 3000, "{} chunks", lengths.len());
        assert!(lengths.iter().any(|&l| (257..256 + 64).contains(&l)));
        assert!(lengths.contains(&256));
    }
}

#[test]
fn the_tests_would_see_a_chunker_that_ignores_the_prefill_quirk() {
    let data = random_bytes(MIB, 2);
    let expected = reference::chunk_lengths(&data, POLY_RESTIC_TEST, 256, 512, 4096);
    assert_ne!(
        naive_lengths(&data, POLY_RESTIC_TEST, 256, 512, 4096),
        expected
    );
}

#[test]
fn small_max_size_cuts_at_max_where_rustic_does() {
    let data = random_bytes(MIB, 3);
    let lengths = assert_same(&data, POLY_RESTIC_TEST, 128, 4096, 4096 + 300);
    assert!(lengths.iter().filter(|&&l| l == 4096 + 300).count() > 10);
    // min == avg == max: every chunk is min_size long.
    let lengths = assert_same(&data, POLY_RESTIC_TEST, 1024, 1024, 1024);
    assert!(lengths[..lengths.len() - 1].iter().all(|&l| l == 1024));
}

#[test]
fn a_polynomial_of_degree_above_56_follows_rustic_too() {
    let data = random_bytes(MIB, 4);
    assert_same(&data, POLY_60, 256, 512, 4096);
    assert_same(&pgbench_like(MIB, 4), POLY_60, 256, 512, 4096);
}

#[test]
fn a_polynomial_of_another_degree_below_57_follows_rustic_too() {
    let data = random_bytes(MIB, 12);
    assert_same(&data, POLY_39, 256, 512, 4096);
    assert_same(&data, POLY_39, 4 * KIB, 16 * KIB, 64 * KIB);
}

#[test]
fn restic_default_sizes_on_40_mib_of_random_data() {
    let data = random_bytes(40 * MIB, 5);
    let lengths = assert_same(&data, POLY_RESTIC_TEST, 512 * KIB, MIB, 8 * MIB);
    assert!(lengths.len() > 20, "{} chunks", lengths.len());
    // The slice port of rustic's loop agrees with rustic's reader-driven iterator itself.
    let mut text = pgbench_like(20 * MIB, 13);
    text.extend_from_slice(&data[..20 * MIB]);
    for data in [&data[..], &text[..]] {
        let iter: Vec<usize> =
            reference::ChunkIter::new(POLY_RESTIC_TEST, 512 * KIB, MIB, 8 * MIB, data)
                .map(|chunk| chunk.unwrap().len())
                .collect();
        assert_eq!(
            iter,
            assert_same(data, POLY_RESTIC_TEST, 512 * KIB, MIB, 8 * MIB)
        );
    }
}

#[test]
fn constant_runs_run_to_max_size() {
    // A window of blanks hashes the same everywhere: no cut until max_size.
    let blanks = vec![b' '; 50 * KIB];
    let lengths = assert_same(&blanks, POLY_RESTIC_TEST, 256, 512, 4096);
    assert!(
        lengths[..lengths.len() - 1].iter().all(|&l| l == 4096),
        "{lengths:?}"
    );
    let zeros = vec![0u8; 50 * KIB];
    // Zeros hash to 0: a cut at every min_size.
    let lengths = assert_same(&zeros, POLY_RESTIC_TEST, 256, 512, 4096);
    assert!(lengths.iter().all(|&l| l == 256));
}

#[test]
fn pgbench_like_and_mixed_data_cut_where_rustic_cuts() {
    let text = pgbench_like(2 * MIB, 6);
    for poly in POLYS_53 {
        assert_same(&text, poly, 256, 512, 4096);
        assert_same(&text, poly, 4 * KIB, 16 * KIB, 64 * KIB);
    }
    let mut mixed = random_bytes(300 * KIB, 7);
    mixed.extend(vec![b' '; 70 * KIB]);
    mixed.extend(pgbench_like(300 * KIB, 8));
    mixed.extend(vec![0u8; 9 * KIB]);
    mixed.extend(random_bytes(300 * KIB, 9));
    assert_same(&mixed, POLY_RESTIC_TEST, 256, 512, 4096);
    assert_same(&mixed, POLY_RESTIC_TEST, 2 * KIB, 8 * KIB, 32 * KIB);
}

#[test]
fn short_inputs_around_min_and_max() {
    let (min, avg, max) = (256, 512, 4096);
    let chunker = Chunker::new(POLY_RESTIC_TEST, min, avg, max).expect("valid chunker parameters");
    for seed in 0..40 {
        let data = random_bytes(max + 100, 100 + seed);
        for len in [
            0,
            1,
            63,
            64,
            min - 1,
            min,
            min + 1,
            min + 63,
            min + 64,
            min + 65,
            max - 1,
            max,
            max + 1,
            max + 99,
        ] {
            assert_same(&data[..len], POLY_RESTIC_TEST, min, avg, max);
            let cut = chunker.next_cut(&data[..len]);
            if len < min {
                assert_eq!(cut, None, "len {len}");
            } else if len >= max {
                assert!(
                    cut.is_some_and(|c| (min..=max).contains(&c)),
                    "len {len}: {cut:?}"
                );
            }
        }
    }
    // Exactly max_size of blanks: the cut is at max_size, not None.
    assert_eq!(chunker.next_cut(&[b' '; 4096]), Some(4096));
    assert_eq!(chunker.next_cut(&[b' '; 4095]), None);
    assert_eq!(chunker.next_cut(&[0; 256]), Some(256));
}

#[test]
fn cuts_over_pieces_equal_cuts_over_the_whole() {
    let mut data = random_bytes(MIB, 10);
    data.extend(pgbench_like(MIB, 11));
    let (min, avg, max) = (256, 512, 4096);
    let chunker = Chunker::new(POLY_RESTIC_TEST, min, avg, max).expect("valid chunker parameters");
    let whole = fast_lengths(&chunker, &data);
    assert_eq!(
        whole,
        reference::chunk_lengths(&data, POLY_RESTIC_TEST, min, avg, max)
    );
    for pieces in [&[7usize, 300, 64, 4096][..], &[4095, 1], &[100_000]] {
        assert_eq!(
            streamed_lengths(&chunker, &data, pieces),
            whole,
            "pieces {pieces:?}"
        );
    }
    // A byte at a time (quadratic in the chunk size: on a shorter input).
    let short = &data[..256 * KIB];
    assert_eq!(
        streamed_lengths(&chunker, short, &[1]),
        fast_lengths(&chunker, short)
    );
}

fn params() -> impl Strategy<Value = (usize, usize, usize)> {
    (6u32..13).prop_flat_map(|avg_bits| {
        let avg = 1usize << avg_bits;
        (64..=avg, Just(avg), avg..=4 * avg + 100)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_params_and_data_cut_where_rustic_cuts(
        (min, avg, max) in params(),
        poly in prop::sample::select(vec![POLYS_53[0], POLYS_53[1], POLYS_53[2], POLY_39, POLY_60]),
        seed in any::<u64>(),
        len in 0usize..40_000,
        runs in prop::collection::vec((0usize..40_000, 1usize..3000, prop::sample::select(vec![0u8, b' ', b'7'])), 0..4),
        pieces in prop::collection::vec(1usize..5000, 1..4),
    ) {
        let mut data = random_bytes(len, seed);
        for (at, run, byte) in runs {
            let end = (at + run).min(data.len());
            if at < end {
                data[at..end].fill(byte);
            }
        }
        let expected = reference::chunk_lengths(&data, poly, min, avg, max);
        let chunker = Chunker::new(poly, min, avg, max).expect("valid chunker parameters");
        prop_assert_eq!(&fast_lengths(&chunker, &data), &expected);
        prop_assert_eq!(&streamed_lengths(&chunker, &data, &pieces), &expected);
    }
}

#[test]
fn parameters_rustic_refuses_are_refused_with_the_reason() {
    let poly = 0x3DA3358B4DC173;
    let refused = |min, avg, max, poly| Chunker::new(poly, min, avg, max).err().unwrap();
    assert!(refused(512, 1000, 4096, poly).contains("power of two"));
    assert!(refused(2048, 1024, 4096, poly).contains("min size"));
    assert!(refused(256, 1024, 512, poly).contains("max size"));
    assert!(refused(32, 64, 128, poly).contains("64-byte window"));
    assert!(refused(256, 512, 4096, 0x7f).contains("degree"));
    assert!(Chunker::new(poly, 256, 512, 4096).is_ok());
}
