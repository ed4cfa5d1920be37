//! Fixed-width permission bitsets: one row of `u64` words per role.
//!
//! Plain words rather than a bit-vector crate: the hot path is "load one word,
//! test one mask", and rows are OR-ed whole; `bitvec` measured no faster for
//! either and would put its types next to ours.

/// Bits per word.
pub(crate) const WORD_BITS: usize = 64;

/// Words needed for `bits` bits.
pub(crate) fn words_for(bits: usize) -> usize {
    bits.div_ceil(WORD_BITS)
}

/// The word index and mask of bit `bit`.
#[inline]
pub(crate) fn locate(bit: usize) -> (usize, u64) {
    (bit / WORD_BITS, 1u64 << (bit % WORD_BITS))
}

/// Sets bit `bit` in `row` (ignored when out of range).
pub(crate) fn set(row: &mut [u64], bit: usize) {
    let (word, mask) = locate(bit);
    if let Some(w) = row.get_mut(word) {
        *w |= mask;
    }
}

/// Whether bit `bit` is set in `row` (false when out of range).
#[inline]
pub(crate) fn test(row: &[u64], bit: usize) -> bool {
    let (word, mask) = locate(bit);
    row.get(word).is_some_and(|w| w & mask != 0)
}

/// `dst |= src`, word by word, over the shorter of the two.
#[inline]
pub(crate) fn or_into(dst: &mut [u64], src: &[u64]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d |= *s;
    }
}

/// Iterates the indexes of the set bits of `row`, in increasing order.
pub(crate) fn ones(row: &[u64]) -> impl Iterator<Item = usize> + '_ {
    row.iter().enumerate().flat_map(|(i, &word)| {
        let mut w = word;
        std::iter::from_fn(move || {
            if w == 0 {
                return None;
            }
            let bit = w.trailing_zeros() as usize;
            w &= w - 1;
            Some(i * WORD_BITS + bit)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_test_and_ones_agree() {
        let mut row = vec![0u64; 3];
        for bit in [0, 63, 64, 130, 191, 500] {
            set(&mut row, bit);
        }
        assert!(test(&row, 130));
        assert!(!test(&row, 129));
        assert!(!test(&row, 500), "out of range bits are never set");
        assert_eq!(ones(&row).collect::<Vec<_>>(), [0, 63, 64, 130, 191]);
        assert_eq!(words_for(0), 0);
        assert_eq!(words_for(64), 1);
        assert_eq!(words_for(65), 2);
    }
}
