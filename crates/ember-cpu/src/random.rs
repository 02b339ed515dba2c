//! Random-number kernels: the Threefry-2x32 (20 rounds) counter-based hash, MLX's layout of
//! random bits per key, and the two selection steps of the samplers (argmax along an axis for
//! `categorical`, a stable argsort of random bits for `permutation`).
//!
//! The bit layout matches MLX's CPU `RandomBits`: for `n` words and `h = n / 2`, counter
//! `(i, h + odd + i)` fills words `i` and `h + odd + i`, and an odd middle word `h` comes from
//! counter `(h, 0)`. The same key therefore gives the same bits as MLX.

use crate::scalar::Scalar;
use rayon::prelude::*;

use crate::strided::PARALLEL_THRESHOLD;

/// Threefry-2x32 with 20 rounds (Salmon et al., SC'11; the hash MLX and JAX use).
#[inline]
pub fn threefry2x32(key: [u32; 2], count: [u32; 2]) -> [u32; 2] {
    const ROTATIONS: [[u32; 4]; 2] = [[13, 15, 26, 6], [17, 29, 16, 24]];
    let ks = [key[0], key[1], key[0] ^ key[1] ^ 0x1BD1_1BDA];
    let mut x0 = count[0].wrapping_add(ks[0]);
    let mut x1 = count[1].wrapping_add(ks[1]);
    for i in 0..5 {
        for r in ROTATIONS[i % 2] {
            x0 = x0.wrapping_add(x1);
            x1 = x1.rotate_left(r) ^ x0;
        }
        x0 = x0.wrapping_add(ks[(i + 1) % 3]);
        x1 = x1.wrapping_add(ks[(i + 2) % 3]).wrapping_add(i as u32 + 1);
    }
    [x0, x1]
}

/// Fills `words` with the random words of `key`, in MLX's layout.
pub fn fill_words(key: [u32; 2], words: &mut [u32]) {
    let half = words.len() / 2;
    let odd = words.len() % 2;
    let (lo, rest) = words.split_at_mut(half);
    let (mid, hi) = rest.split_at_mut(odd);
    if let Some(m) = mid.first_mut() {
        *m = threefry2x32(key, [half as u32, 0])[0];
    }
    let second = (half + odd) as u32;
    let fill = |start: usize, lo: &mut [u32], hi: &mut [u32]| {
        for (k, (a, b)) in lo.iter_mut().zip(hi.iter_mut()).enumerate() {
            let i = (start + k) as u32;
            [*a, *b] = threefry2x32(key, [i, second.wrapping_add(i)]);
        }
    };
    if half >= PARALLEL_THRESHOLD / 4 {
        let chunk = PARALLEL_THRESHOLD / 8;
        lo.par_chunks_mut(chunk)
            .zip(hi.par_chunks_mut(chunk))
            .enumerate()
            .for_each(|(t, (lo, hi))| fill(t * chunk, lo, hi));
    } else {
        fill(0, lo, hi);
    }
}

/// Index of the largest value along the middle axis of a contiguous `(outer, n, inner)` array,
/// written to `out` as `(outer, inner)`. The first maximum wins; NaN counts as the largest.
pub fn argmax_axis<T: Scalar>(x: &[T], n: usize, inner: usize, out: &mut [u32]) {
    let row = |o: usize, dst: &mut [u32]| {
        let base = &x[o * n * inner..(o + 1) * n * inner];
        for (j, d) in dst.iter_mut().enumerate() {
            let mut best = base[j];
            let mut at = 0;
            for i in 1..n {
                let v = base[i * inner + j];
                if !best.is_nan() && (v > best || v.is_nan()) {
                    best = v;
                    at = i;
                }
            }
            *d = at as u32;
        }
    };
    if inner == 0 {
        return;
    }
    if x.len() >= PARALLEL_THRESHOLD {
        out.par_chunks_mut(inner).enumerate().for_each(|(o, dst)| row(o, dst));
    } else {
        out.chunks_mut(inner).enumerate().for_each(|(o, dst)| row(o, dst));
    }
}

/// The stable argsort of `bits`: the order MLX's `permutation` draws.
pub fn argsort_bits(bits: &[u32]) -> Vec<u32> {
    // Sorting (bits, index) pairs is a stable sort by bits that may run unstable and parallel.
    let mut pairs: Vec<(u32, u32)> = bits.iter().enumerate().map(|(i, &b)| (b, i as u32)).collect();
    if pairs.len() >= PARALLEL_THRESHOLD {
        pairs.par_sort_unstable();
    } else {
        pairs.sort_unstable();
    }
    pairs.into_iter().map(|(_, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threefry_matches_random123_known_answers() {
        // Random123's kat_vectors for threefry2x32_20: (counter, key) -> output.
        let kat = [
            ([0, 0], [0, 0], [0x6b20_0159, 0x99ba_4efe]),
            ([u32::MAX, u32::MAX], [u32::MAX, u32::MAX], [0x1cb9_96fc, 0xbb00_2be7]),
            ([0x243f_6a88, 0x85a3_08d3], [0x1319_8a2e, 0x0370_7344], [0xc492_3a9c, 0x483d_f7a0]),
        ];
        for (count, key, want) in kat {
            assert_eq!(threefry2x32(key, count), want);
        }
    }

    #[test]
    fn layout_pairs_first_and_second_halves() {
        let key = [7, 11];
        let mut w = [0u32; 5];
        fill_words(key, &mut w);
        // Odd count: (0, 3) -> words 0 and 3, (1, 4) -> words 1 and 4, (2, 0) -> word 2.
        assert_eq!([w[0], w[3]], threefry2x32(key, [0, 3]));
        assert_eq!([w[1], w[4]], threefry2x32(key, [1, 4]));
        assert_eq!(w[2], threefry2x32(key, [2, 0])[0]);
    }

    #[test]
    fn parallel_fill_matches_serial_definition() {
        let key = [1, 2];
        let n = PARALLEL_THRESHOLD + 6;
        let mut w = vec![0u32; n];
        fill_words(key, &mut w);
        let h = n / 2;
        for i in [0, 1, h / 2, h - 1] {
            assert_eq!([w[i], w[h + i]], threefry2x32(key, [i as u32, (h + i) as u32]));
        }
    }

    #[test]
    fn argmax_takes_first_maximum_and_nan() {
        // (outer 2, n 3, inner 2)
        let x = [1.0f32, 5.0, 3.0, 5.0, 3.0, 2.0, 0.0, f32::NAN, 9.0, 1.0, 9.0, f32::NAN];
        let mut out = [0u32; 4];
        argmax_axis(&x, 3, 2, &mut out);
        assert_eq!(out, [1, 0, 1, 0]);
    }
}
