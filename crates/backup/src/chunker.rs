//! TEMPORARY placeholder: rustic_core 0.13's Rabin loop over a slice (replaced by the fast one).
use rustic_cdc::{Rabin64, RollingHash64};

pub(crate) struct Chunker {
    rabin: Rabin64,
    min_size: usize,
    mask: u64,
    max_size: usize,
}

impl Chunker {
    pub(crate) fn new(
        polynomial: u64,
        min_size: usize,
        avg_size: usize,
        max_size: usize,
    ) -> Chunker {
        Chunker {
            rabin: Rabin64::new_with_polynom(6, &polynomial),
            min_size,
            mask: avg_size as u64 - 1,
            max_size,
        }
    }

    pub(crate) fn next_cut(&self, data: &[u8]) -> Option<usize> {
        if data.len() < self.min_size {
            return None;
        }
        let mut rabin = self.rabin.clone();
        rabin
            .reset_and_prefill_window(&mut data[self.min_size - 64..self.min_size].iter().copied());
        let mut len = self.min_size;
        loop {
            if len >= self.max_size || rabin.hash & self.mask == 0 {
                return Some(len);
            }
            if len == data.len() {
                return None;
            }
            rabin.slide(data[len]);
            len += 1;
        }
    }
}
