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

/// A dense matrix of `rows × width` words.
#[derive(Debug, Clone, Default)]
pub(crate) struct BitMatrix {
    width: usize,
    rows: usize,
    words: Vec<u64>,
}

impl BitMatrix {
    pub(crate) fn new(rows: usize, width: usize) -> Self {
        Self {
            width,
            rows,
            words: vec![0; rows.saturating_mul(width)],
        }
    }

    /// Row width in words.
    pub(crate) fn width(&self) -> usize {
        self.width
    }

    pub(crate) fn row(&self, row: usize) -> &[u64] {
        let start = row.saturating_mul(self.width);
        self.words.get(start..start + self.width).unwrap_or(&[])
    }

    pub(crate) fn row_mut(&mut self, row: usize) -> &mut [u64] {
        let start = row.saturating_mul(self.width);
        self.words
            .get_mut(start..start + self.width)
            .unwrap_or(&mut [])
    }

    /// `row(dst) |= row(src)` for two different rows.
    pub(crate) fn or_row(&mut self, dst: usize, src: usize) {
        if dst == src || self.width == 0 {
            return;
        }
        let w = self.width;
        let (lo, hi, dst_is_lo) = if dst < src {
            (dst, src, true)
        } else {
            (src, dst, false)
        };
        let len = self.words.len();
        let (head, tail) = self.words.split_at_mut((hi * w).min(len));
        let lo_row = head.get_mut(lo * w..lo * w + w);
        let hi_row = tail.get_mut(..w);
        if let (Some(lo_row), Some(hi_row)) = (lo_row, hi_row) {
            if dst_is_lo {
                or_into(lo_row, hi_row);
            } else {
                or_into(hi_row, lo_row);
            }
        }
    }

    /// Number of rows.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// `rows` rows of `width` words: the rows kept (cut to the width), new
    /// rows and words zero.
    pub(crate) fn reshaped(&self, rows: usize, width: usize) -> Self {
        let mut out = Self::new(rows, width);
        for r in 0..rows.min(self.rows) {
            let src = self.row(r);
            let dst = out.row_mut(r);
            let k = src.len().min(dst.len());
            if let (Some(d), Some(s)) = (dst.get_mut(..k), src.get(..k)) {
                d.copy_from_slice(s);
            }
        }
        out
    }

    /// Clears bit `bit` in every row.
    pub(crate) fn clear_column(&mut self, bit: usize) {
        let (word, mask) = locate(bit);
        if self.width == 0 {
            return;
        }
        for row in self.words.chunks_exact_mut(self.width) {
            if let Some(w) = row.get_mut(word) {
                *w &= !mask;
            }
        }
    }

    /// Bytes held by the matrix.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.words.capacity() * std::mem::size_of::<u64>()
    }
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

    #[test]
    fn reshaping_keeps_rows_even_from_zero_width() {
        let m = BitMatrix::new(2, 0);
        let mut w = m.reshaped(3, 2);
        assert_eq!(w.rows(), 3);
        set(w.row_mut(2), 100);
        assert_eq!(ones(w.row(2)).collect::<Vec<_>>(), [100]);
        assert!(w.row(1).iter().all(|x| *x == 0));
        w.clear_column(100);
        assert!(w.row(2).iter().all(|x| *x == 0));
    }

    #[test]
    fn or_row_works_in_both_directions() {
        let mut m = BitMatrix::new(3, 2);
        set(m.row_mut(0), 1);
        set(m.row_mut(2), 70);
        m.or_row(1, 0);
        m.or_row(1, 2);
        m.or_row(0, 2);
        assert_eq!(ones(m.row(1)).collect::<Vec<_>>(), [1, 70]);
        assert_eq!(ones(m.row(0)).collect::<Vec<_>>(), [1, 70]);
        assert_eq!(ones(m.row(2)).collect::<Vec<_>>(), [70]);
        m.or_row(2, 2);
        assert!(m.row(3).is_empty());
    }
}
