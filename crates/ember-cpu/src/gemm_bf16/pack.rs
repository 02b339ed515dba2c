//! Packing of bf16 operands into the pair-interleaved panels that `vdpbf16ps` consumes.
//!
//! `vdpbf16ps` multiplies 32-bit lanes holding two bf16 values (consecutive k) and adds both
//! products into one f32 lane. So both packed operands store *pairs*: the low half of a `u32`
//! is the element at an even k, the high half the next k (zero past the end, which makes odd k
//! harmless). A panel is a run of `kp = ceil(kc / 2)` pair steps; at each step it holds `w`
//! pairs, one per row (A panels, `w = MR`) or per column (B panels, `w = NR`), zero past the
//! matrix edge, so the microkernel always reads whole tiles. Packing absorbs any strides;
//! the common layouts have fast paths (a 16 x 16 SIMD transpose for rows contiguous along k,
//! interleaved runs for columns contiguous across rows).

use crate::matmul::MatRef;
use half::bf16;
use std::arch::x86_64::*;
use std::ops::Range;

/// A bf16 matrix as raw bits plus its strides; `at(i, j)` reads element `(i, j)`.
#[derive(Clone, Copy)]
pub(super) struct Bits<'a> {
    pub(super) data: &'a [u16],
    pub(super) offset: isize,
    pub(super) rs: isize,
    pub(super) cs: isize,
}

impl<'a> Bits<'a> {
    /// The bits of a bf16 view.
    pub(super) fn new(x: MatRef<'a, bf16>) -> Self {
        let data: &[u16] = bytemuck::cast_slice(x.data);
        Bits { data, offset: x.offset as isize, rs: x.row_stride, cs: x.col_stride }
    }

    /// The transposed matrix (same memory).
    pub(super) fn t(self) -> Self {
        Bits { rs: self.cs, cs: self.rs, ..self }
    }

    /// Element `(i, j)`.
    pub(super) fn at(&self, i: usize, j: usize) -> u16 {
        self.data[(self.offset + i as isize * self.rs + j as isize * self.cs) as usize]
    }

    /// Row `i`, columns `cols`, as a slice when the columns are contiguous.
    pub(super) fn row(&self, i: usize, cols: &Range<usize>) -> Option<&'a [u16]> {
        if self.cs != 1 || cols.is_empty() {
            return None;
        }
        let start = (self.offset + i as isize * self.rs) as usize + cols.start;
        Some(&self.data[start..start + cols.len()])
    }
}

/// Pair steps packed per pass over a panel's rows (one 64-byte line of each row).
const STEPS: usize = 16;
/// How many lines (transposes) or steps (interleaves) ahead packing prefetches its source.
const AHEAD: usize = 4;
/// Row runs up to this many elements are prefetched by hand when interleaving.
const SHORT_RUN: usize = 512;

fn pair(lo: u16, hi: u16) -> u32 {
    lo as u32 | (hi as u32) << 16
}

/// Packs rows `rows` x k-range `ks` of `x` into panels of `w` rows each: panel `p` covers rows
/// `rows.start + p*w ..`, step `s` of it holds `w` pairs `x[row, ks.start + 2s .. +2]`.
/// `dst` must hold `ceil(rows / w) * w * ceil(ks / 2)` pairs.
///
/// Used for A (rows of A) and for B (rows of B^T, i.e. columns of B).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) fn pack_pairs(dst: &mut [u32], x: Bits, rows: Range<usize>, ks: Range<usize>, w: usize) {
    let kp = ks.len().div_ceil(2);
    let dst = &mut dst[..rows.len().div_ceil(w) * w * kp];
    if x.rs == 1 {
        return pack_across(dst, x, rows, ks, w);
    }
    // Contiguous rows: whole runs of 16 steps (32 k values) go through a SIMD transpose.
    let fast = if x.cs == 1 { ks.len() / 32 * 16 } else { 0 };
    for (panel, r0) in dst.chunks_exact_mut(w * kp).zip(rows.clone().step_by(w)) {
        let live = w.min(rows.end - r0);
        for s0 in (0..fast).step_by(16) {
            transpose_steps(&mut panel[s0 * w..(s0 + 16) * w], x, r0..r0 + live, ks.start + 2 * s0);
        }
        // The rest a few steps at a time, so the panel lines being filled stay in L1 while
        // each row contributes its next run of pairs.
        for s0 in (fast..kp).step_by(STEPS) {
            let ks = ks.start + 2 * s0..(ks.start + 2 * (s0 + STEPS)).min(ks.end);
            let steps = &mut panel[s0 * w..(s0 + STEPS).min(kp) * w];
            for i in 0..w {
                let lane = steps[i..].iter_mut().step_by(w);
                if i < live {
                    pack_along(lane, x, r0 + i, ks.clone());
                } else {
                    lane.for_each(|d| *d = 0);
                }
            }
        }
    }
}

/// Fills 16 steps (`steps`, `16 * w` pairs) of a panel from rows `rows` (at most `w` of them,
/// zero beyond) with unit column stride, k values `k0..k0 + 32`: each group of 16 rows is
/// loaded as 16 pairs per row and transposed to 16 pairs per step.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn transpose_steps(steps: &mut [u32], x: Bits, rows: Range<usize>, k0: usize) {
    let w = steps.len() / 16;
    for g in (0..w).step_by(16) {
        let lanes = (w - g).min(16);
        let mut r = [_mm512_setzero_si512(); 16];
        for (i, v) in r.iter_mut().enumerate() {
            if let Some(run) = rows.clone().nth(g + i).and_then(|row| x.row(row, &(k0..k0 + 32))) {
                // SAFETY: `run` holds 32 bf16 values, the 64 bytes loaded.
                *v = unsafe { _mm512_loadu_si512(run.as_ptr() as *const _) };
                // Rows are read a line at a time, too many streams for the hardware
                // prefetcher: ask for this row's line AHEAD calls from now.
                _mm_prefetch::<_MM_HINT_T0>(run.as_ptr().wrapping_add(32 * AHEAD) as *const i8);
            }
        }
        let t = transpose16(r);
        let mask = ((1u32 << lanes) - 1) as u16;
        for (s, v) in t.iter().enumerate() {
            let d = &mut steps[s * w + g..][..lanes];
            // SAFETY: `d` holds the `lanes` u32 the mask writes.
            unsafe { _mm512_mask_storeu_epi32(d.as_mut_ptr() as *mut _, mask, *v) }
        }
    }
}

/// Transposes a 16 x 16 matrix of u32 held as 16 row vectors.
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose16(r: [__m512i; 16]) -> [__m512i; 16] {
    // Interleave pairs of rows, then pairs of pairs: afterwards, 128-bit lane L of t2[4q + c]
    // holds column 4L + c of rows 4q..4q + 4.
    let t1: [__m512i; 16] = std::array::from_fn(|i| {
        let (a, b) = (r[i & !1], r[i | 1]);
        let pick = i % 2 == 0;
        let (lo, hi) = (_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
        if pick {
            lo
        } else {
            hi
        }
    });
    let t2: [__m512i; 16] = std::array::from_fn(|i| {
        // i = 4q + c: rows 4q..4q+4, column c of each 128-bit lane.
        let (q, c) = (i / 4, i % 4);
        let (a, b) = (t1[4 * q + c / 2], t1[4 * q + 2 + c / 2]);
        if c % 2 == 0 {
            _mm512_unpacklo_epi64(a, b)
        } else {
            _mm512_unpackhi_epi64(a, b)
        }
    });
    // Gather the 128-bit lanes: column 4L + c comes from lane L of t2[c], t2[4 + c],
    // t2[8 + c], t2[12 + c].
    let mut out = [_mm512_setzero_si512(); 16];
    for c in 0..4 {
        let v02 = _mm512_shuffle_i32x4::<0x88>(t2[c], t2[4 + c]);
        let v13 = _mm512_shuffle_i32x4::<0xDD>(t2[c], t2[4 + c]);
        let w02 = _mm512_shuffle_i32x4::<0x88>(t2[8 + c], t2[12 + c]);
        let w13 = _mm512_shuffle_i32x4::<0xDD>(t2[8 + c], t2[12 + c]);
        out[c] = _mm512_shuffle_i32x4::<0x88>(v02, w02);
        out[8 + c] = _mm512_shuffle_i32x4::<0xDD>(v02, w02);
        out[4 + c] = _mm512_shuffle_i32x4::<0x88>(v13, w13);
        out[12 + c] = _mm512_shuffle_i32x4::<0xDD>(v13, w13);
    }
    out
}

/// `pack_pairs` when rows are adjacent in memory (unit row stride): each step interleaves two
/// contiguous runs, one per k, across all panels, so reads go along memory.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn pack_across(dst: &mut [u32], x: Bits, rows: Range<usize>, ks: Range<usize>, w: usize) {
    let kp = ks.len().div_ceil(2);
    let run = |k: usize| {
        let start = (x.offset + rows.start as isize + k as isize * x.cs) as usize;
        &x.data[start..start + rows.len()]
    };
    for (s, k0) in ks.clone().step_by(2).enumerate() {
        let lo = run(k0);
        let hi = (k0 + 1 < ks.end).then(|| run(k0 + 1));
        // Short runs defeat the hardware prefetcher: fetch the rows AHEAD steps down.
        for d in (0..2).filter(|_| rows.len() <= SHORT_RUN) {
            let ahead = lo.as_ptr().wrapping_offset((2 * AHEAD + d) as isize * x.cs);
            for line in (0..rows.len()).step_by(32) {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line) as *const i8);
            }
        }
        for (p, panel) in dst.chunks_exact_mut(w * kp).enumerate() {
            let step = &mut panel[s * w..][..w];
            let lo = &lo[p * w..lo.len().min((p + 1) * w)];
            let (d, pad) = step.split_at_mut(lo.len());
            match hi {
                Some(hi) => {
                    let hi = &hi[p * w..][..lo.len()];
                    d.iter_mut().zip(lo.iter().zip(hi)).for_each(|(d, (&l, &h))| *d = pair(l, h))
                }
                None => d.iter_mut().zip(lo).for_each(|(d, &l)| *d = pair(l, 0)),
            }
            pad.fill(0);
        }
    }
}

/// The pairs of row `r` over `ks`, one per step, into `lane`.
#[inline(always)]
fn pack_along<'d>(lane: impl Iterator<Item = &'d mut u32>, x: Bits, r: usize, ks: Range<usize>) {
    if let Some(src) = x.row(r, &ks) {
        // Contiguous k: pairs are adjacent elements.
        let (pairs, tail) = src.split_at(ks.len() / 2 * 2);
        let tail = tail.first().map(|&lo| pair(lo, 0));
        let vals = pairs.chunks_exact(2).map(|p| pair(p[0], p[1])).chain(tail);
        lane.zip(vals).for_each(|(d, v)| *d = v);
    } else {
        for (s, d) in lane.enumerate() {
            let k0 = ks.start + 2 * s;
            let hi = if k0 + 1 < ks.end { x.at(r, k0 + 1) } else { 0 };
            *d = pair(x.at(r, k0), hi);
        }
    }
}
