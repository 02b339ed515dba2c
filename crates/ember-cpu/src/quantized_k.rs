//! Row dot products of the K-quant blocks (Q4_K, Q6_K; 256 values each) with 8-bit
//! activations ([`BlockQ8`], blocks of 32), for [`crate::quantized`]'s row-layout kernels.
//!
//! A weight block meets eight activation blocks, which share one scale (the activations of
//! K-quant products are quantized per 256 values, as llama.cpp's Q8_K). Each 32-value piece
//! is an integer dot of unsigned codes (Q4_K's 4-bit, Q6_K's 6-bit before their `-32`) with
//! the activations, weighted by its sub-block scale in integers, so the SIMD kernels convert
//! and scale once per weight block:
//! - Q4_K: `sum d sc_j q x - dmin m_j x` = `d d_x sum_j sc_j dot_j - dmin d_x sum_j m_j sum_j(x)`.
//! - Q6_K: each 32-value piece has two sub-block scales (one per 16):
//!   `d d_x sum_pieces (sc_a dot_a + sc_b dot_b)` with `dot = sum (q - 32) x`.
//!
//! The portable dots scale each piece by its own block's `d_x`, so they hold for activations
//! with a scale per 32 as well.

use crate::ggml::{half, q6k_code, BlockQ4K, BlockQ6K};
use crate::quantized::BlockQ8;

/// The eight 6-bit scales and minimums of a Q4_K block ([`crate::ggml::scale_min_k4`] for
/// all eight at once, four bytes per u32 operation).
fn scales_mins(q: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let word = |i: usize| u32::from_le_bytes([q[4 * i], q[4 * i + 1], q[4 * i + 2], q[4 * i + 3]]);
    let (a0, a1, a2) = (word(0), word(1), word(2));
    let (low6, low4, low2) = (0x3f3f_3f3f, 0x0f0f_0f0f, 0x0303_0303);
    // Sub-blocks 4..8: a nibble of bytes 8..12 below the top two bits of bytes 0..4 (scales)
    // or 4..8 (minimums).
    let sc_hi = (a2 & low4) | ((a0 >> 6) & low2) << 4;
    let mn_hi = ((a2 >> 4) & low4) | ((a1 >> 6) & low2) << 4;
    let join = |lo: u32, hi: u32| (lo as u64 | (hi as u64) << 32).to_le_bytes();
    (join(a0 & low6, sc_hi), join(a1 & low6, mn_hi))
}

/// Portable Q4_K row dot: `w` one row of blocks, `x` eight activation blocks per block.
pub(crate) fn dot_q4_k(w: &[BlockQ4K], x: &[BlockQ8]) -> f32 {
    let mut acc = 0f32;
    for (b, xs) in w.iter().zip(x.chunks_exact(8)) {
        let (d, dmin) = (half(b.d), half(b.dmin));
        let (sc, mn) = scales_mins(&b.scales);
        for (j, xb) in xs.iter().enumerate() {
            let (qs, shift) = (&b.qs[32 * (j / 2)..][..32], 4 * (j % 2));
            let dot: i32 =
                qs.iter().zip(&xb.qs).map(|(&q, &v)| (q >> shift & 0xF) as i32 * v as i32).sum();
            acc += d * sc[j] as f32 * xb.d * dot as f32 - dmin * mn[j] as f32 * xb.s;
        }
    }
    acc
}

/// Portable Q6_K row dot: `w` one row of blocks, `x` eight activation blocks per block.
pub(crate) fn dot_q6_k(w: &[BlockQ6K], x: &[BlockQ8]) -> f32 {
    let mut acc = 0f32;
    for (b, xs) in w.iter().zip(x.chunks_exact(8)) {
        let d = half(b.d);
        for (j, xb) in xs.iter().enumerate() {
            let dot: i32 = (0..32)
                .map(|i| {
                    let q = q6k_code(b, 32 * j + i) as i32 - 32;
                    b.scales[2 * j + i / 16] as i32 * q * xb.qs[i] as i32
                })
                .sum();
            acc += d * xb.d * dot as f32;
        }
    }
    acc
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    //! The K-quant dots with AVX2, tiled as the 32-value types' kernels: `R` activation rows
    //! by `C` weight rows of accumulators, each unpacked weight piece serving all `R` rows.
    //! They rely on the eight activation blocks of a weight block sharing one scale.
    use super::scales_mins;
    use crate::ggml::{BlockQ4K, BlockQ6K};
    use crate::quantized::avx2::{halves, hsum, load32, tile_kernel};
    use crate::quantized::BlockQ8;
    use std::arch::x86_64::*;

    /// 32 bytes of `bytes` from `at`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn load_at(bytes: &[u8], at: usize) -> __m256i {
        let s = &bytes[at..at + 32];
        // SAFETY: `s` is 32 readable bytes; loadu has no alignment requirement.
        unsafe { _mm256_loadu_si256(s.as_ptr() as *const __m256i) }
    }

    // Q4_K: the low and high nibbles of each 32 bytes are two sub-blocks. `maddubs` sums
    // code * activation pairs (|.| <= 2 * 15 * 127), `madd` with the 6-bit scale sums pairs to
    // i32: at most 8 * 2 * 3810 * 63 over a block, no overflow. The minimums meet the
    // activations' integer sums.
    tile_kernel!(q4_k, BlockQ4K, 8, |blk, xs, acc, off| {
        let m4 = _mm256_set1_epi8(0xF);
        let (d, dmin) = halves(blk.d, blk.dmin);
        let (sc, mn) = scales_mins(&blk.scales);
        let mut isum = [_mm256_setzero_si256(); R];
        for h in 0..4 {
            let q = load_at(&blk.qs, 32 * h);
            let lo = _mm256_and_si256(q, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            for (s, codes) in [(2 * h, lo), (2 * h + 1, hi)] {
                let scale = _mm256_set1_epi16(sc[s] as i16);
                for r in 0..R {
                    let p16 = _mm256_maddubs_epi16(codes, load32(&xs[r][s].qs));
                    isum[r] = _mm256_add_epi32(isum[r], _mm256_madd_epi16(p16, scale));
                }
            }
        }
        for r in 0..R {
            let xd = xs[r][0].d;
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * xd), _mm256_cvtepi32_ps(isum[r]), acc[r]);
            let msum: i32 = (0..8).map(|s| mn[s] as i32 * xs[r][s].sum).sum();
            off[r] -= dmin * xd * msum as f32;
        }
    });

    // Q6_K: codes `q` (0..64) from a nibble of `ql` and two bits of `qh`; `maddubs(q, x)
    // - maddubs(32, x)` is `(q - 32) x` summed in pairs (|.| <= 2 * 32 * 127), then `madd`
    // with the two sub-block scales (|.| <= 128) sums to i32: at most 8 * 2 * 8128 * 128
    // over a block, no overflow.
    tile_kernel!(q6_k, BlockQ6K, 8, |blk, xs, acc, _off| {
        let (m4, m2, k32) = (_mm256_set1_epi8(0xF), _mm256_set1_epi8(3), _mm256_set1_epi8(32));
        let d = halves(blk.d, [0, 0]).0;
        let mut isum = [_mm256_setzero_si256(); R];
        for h in 0..2 {
            let (ql0, ql1) = (load_at(&blk.ql, 64 * h), load_at(&blk.ql, 64 * h + 32));
            let mut qh = load_at(&blk.qh, 32 * h);
            let lows = [
                _mm256_and_si256(ql0, m4),
                _mm256_and_si256(ql1, m4),
                _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
            ];
            for (t, low) in lows.into_iter().enumerate() {
                let high = _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4);
                qh = _mm256_srli_epi16(qh, 2);
                let codes = _mm256_or_si256(low, high);
                let s = 8 * h + 2 * t;
                let scales = _mm256_set_m128i(
                    _mm_set1_epi16(blk.scales[s + 1] as i16),
                    _mm_set1_epi16(blk.scales[s] as i16),
                );
                for r in 0..R {
                    let xq = load32(&xs[r][4 * h + t].qs);
                    let p16 = _mm256_sub_epi16(
                        _mm256_maddubs_epi16(codes, xq),
                        _mm256_maddubs_epi16(k32, xq),
                    );
                    isum[r] = _mm256_add_epi32(isum[r], _mm256_madd_epi16(p16, scales));
                }
            }
        }
        for r in 0..R {
            let p = _mm256_cvtepi32_ps(isum[r]);
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * xs[r][0].d), p, acc[r]);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ggml::scale_min_k4;

    #[test]
    fn scales_and_minimums_unpack_as_ggml_does() {
        let mut seed = 3u64;
        for _ in 0..200 {
            let q: [u8; 12] =
                std::array::from_fn(|_| crate::quantized::tests::lcg(&mut seed) as u8);
            let (sc, mn) = scales_mins(&q);
            for j in 0..8 {
                assert_eq!((sc[j], mn[j]), scale_min_k4(j, &q), "{q:?} sub-block {j}");
            }
        }
    }
}
