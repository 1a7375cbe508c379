//! Random values from an alphabet: uniform by construction (rejection sampling, never a
//! plain modulo of a random word), from the operating system's randomness.

use rand::RngCore;
use rand::rngs::OsRng;
use zeroize::Zeroizing;

use crate::{SecretValue, SecretsError};

/// The distinct characters of `alphabet`, in first-seen order.
pub(crate) fn distinct(alphabet: &str) -> Vec<char> {
    let mut chars: Vec<char> = Vec::new();
    for c in alphabet.chars() {
        if !chars.contains(&c) {
            chars.push(c);
        }
    }
    chars
}

/// A uniform index below `n` (`1 <= n <= 2^32`) from uniform 32-bit draws. Draws at or above
/// the largest multiple of `n` that fits in 2^32 are rejected, so every index is hit by
/// exactly `limit / n` draw values: no modulo bias.
pub(crate) fn uniform_index(n: u64, mut draw: impl FnMut() -> u32) -> usize {
    const RANGE: u64 = 1 << 32;
    let limit = RANGE - RANGE % n;
    loop {
        let x = u64::from(draw());
        if x < limit {
            return (x % n) as usize;
        }
    }
}

pub(crate) fn generate(length: usize, alphabet: &str) -> Result<SecretValue, SecretsError> {
    if length == 0 {
        return Err(SecretsError::Invalid(
            "a generated value needs a length of at least 1".to_owned(),
        ));
    }
    let chars = distinct(alphabet);
    if chars.len() < 2 {
        return Err(SecretsError::Invalid(format!(
            "the alphabet needs at least 2 distinct characters; it has {}",
            chars.len()
        )));
    }
    if chars.len() as u64 > 1 << 32 {
        return Err(SecretsError::Invalid(
            "the alphabet is too large".to_owned(),
        ));
    }
    let n = chars.len() as u64;
    // Allocated once at its final size, so no reallocation leaves a copy behind.
    let mut out = Zeroizing::new(Vec::with_capacity(length * 4));
    let mut buf = [0u8; 4];
    for _ in 0..length {
        let c = chars[uniform_index(n, || OsRng.next_u32())];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
    Ok(SecretValue(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_above_the_last_whole_multiple_are_rejected() {
        // n = 3: 2^32 = 3 * 1431655765 + 1, so exactly one draw value (u32::MAX) is rejected.
        let mut draws = [u32::MAX, u32::MAX, 7].into_iter();
        assert_eq!(uniform_index(3, || draws.next().unwrap()), 1);
        assert_eq!(draws.next(), None);
        // A power of two rejects nothing.
        assert_eq!(uniform_index(4, || u32::MAX), 3);
        // Every index below the limit maps to each residue equally often.
        let limit = (1u64 << 32) - (1u64 << 32) % 3;
        let mut last = limit - 1;
        assert_eq!(uniform_index(3, || last as u32), ((limit - 1) % 3) as usize);
        last = 0;
        assert_eq!(uniform_index(3, || last as u32), 0);
    }

    #[test]
    fn alphabets_are_deduplicated_in_order() {
        assert_eq!(distinct("abca€b€"), vec!['a', 'b', 'c', '€']);
    }
}
