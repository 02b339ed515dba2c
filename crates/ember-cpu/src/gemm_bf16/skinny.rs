//! Skinny products on AVX512-BF16: at most `MAX_ROWS` rows of output (or columns, computed as
//! the transposed product `C^T = B^T A^T`), as in matrix-vector products and LLM decoding.
//! Each element of the big operand is used by only a few rows, so packing it would cost more
//! than the product: these kernels read it in place as contiguous columns (dot products along
//! k), or, for row-major B, pack a chunk of k at a time that every row then uses from cache.
//! `GROUP` rows of the small operand go through each kernel call.

use super::kernel::{pairs, with_scratch, IntoBh, Scratch};
use super::pack::{pack_pairs, Bits};
use super::{OutPtr, PARALLEL_WORK};
use rayon::prelude::*;
use std::arch::x86_64::*;
use std::ops::Range;

/// Most rows (after orienting) a product may have to take this path: up to here, reading the
/// big operand in place beats packing it.
const MAX_ROWS: usize = 64;
/// Rows per kernel call.
const GROUP: usize = 4;
/// Columns of B per dot-product tile.
const DOT_COLS: usize = 4;
/// Columns of B per packed row-major panel.
const ROW_COLS: usize = 64;
/// Rows of row-major B per packed chunk.
const ROW_K: usize = 128;

/// Where output element `(i, j)` goes: `ptr + i * rs + j * cs`.
#[derive(Clone, Copy)]
struct Dst {
    ptr: OutPtr,
    rs: usize,
    cs: usize,
}

impl Dst {
    /// Writes one value.
    ///
    /// # Safety
    /// `(i, j)` is inside the output and no other thread writes it.
    unsafe fn put(self, i: usize, j: usize, v: f32) {
        let at = i * self.rs + j * self.cs;
        // SAFETY: by the caller's contract.
        unsafe {
            match self.ptr {
                OutPtr::F32(p) => *p.add(at) = v,
                OutPtr::Bf16(p) => *p.add(at) = half::bf16::from_f32(v).to_bits(),
            }
        }
    }
}

/// Computes `out = a @ b` (m x n, row-major, `k > 0`) when m or n is at most `MAX_ROWS` and the
/// long operand has unit stride along one axis; returns false, writing nothing, otherwise.
///
/// # Safety
/// `kernel::available()` is true; `out` holds `m * n` elements, not accessed elsewhere during
/// the call; `a` is a valid `m x k` view and `b` a valid `k x n` view of their slices.
pub(super) unsafe fn skinny(out: OutPtr, a: Bits, b: Bits, m: usize, n: usize, k: usize) -> bool {
    // Orient so the few outputs are rows.
    let (a, b, m, n, dst) = if m <= MAX_ROWS {
        (a, b, m, n, Dst { ptr: out, rs: n, cs: 1 })
    } else if n <= MAX_ROWS {
        (b.t(), a.t(), n, m, Dst { ptr: out, rs: 1, cs: n })
    } else {
        return false;
    };
    let dots = b.rs == 1;
    if !dots && b.cs != 1 {
        return false;
    }
    let parts = if m * n * k >= PARALLEL_WORK { rayon::current_num_threads() } else { 1 };
    if dots {
        // The few rows of A, contiguous along k (copied when strided).
        let copy: Vec<u16> = if a.cs == 1 {
            Vec::new()
        } else {
            (0..m).flat_map(|i| (0..k).map(move |p| a.at(i, p))).collect()
        };
        let rows: Vec<&[u16]> = (0..m)
            .map(|i| match a.row(i, &(0..k)) {
                Some(r) => r,
                None => &copy[i * k..(i + 1) * k],
            })
            .collect();
        let per = n.div_ceil(DOT_COLS).div_ceil(parts) * DOT_COLS;
        (0..n).into_par_iter().step_by(per).for_each(|j0| {
            // SAFETY: the column ranges are disjoint, so each output element has one writer;
            // the rows hold k elements; `b` is a valid k x n view with unit row stride.
            unsafe { dot_cols(&rows, b, k, j0..(j0 + per).min(n), dst) }
        });
    } else {
        let per = n.div_ceil(ROW_COLS).div_ceil(parts) * ROW_COLS;
        (0..n).into_par_iter().step_by(per).for_each(|j0| {
            // SAFETY: the column ranges are disjoint, so each output element has one writer;
            // `a` is m x k and `b` a valid k x n view with unit column stride.
            with_scratch(|s| unsafe { row_cols(s, a, m, b, k, j0..(j0 + per).min(n), dst) })
        });
    }
    true
}

/// Columns `cols` of the output for B with contiguous columns (unit row stride): each tile of
/// `DOT_COLS` columns (k long, so it stays in L1/L2) serves all the row groups in turn.
///
/// # Safety
/// As for `skinny`, with `b.rs == 1`; every row holds k elements.
unsafe fn dot_cols(rows: &[&[u16]], b: Bits, k: usize, cols: Range<usize>, dst: Dst) {
    for j0 in cols.clone().step_by(DOT_COLS) {
        // Columns past the end repeat the last one; their results are dropped.
        let col = |j: usize| {
            let start = (b.offset + (j0 + j).min(cols.end - 1) as isize * b.cs) as usize;
            b.data[start..start + k].as_ptr()
        };
        let bp: [*const u16; DOT_COLS] = std::array::from_fn(col);
        let live = DOT_COLS.min(cols.end - j0);
        for (g, group) in rows.chunks(GROUP).enumerate() {
            let at = (GROUP * g, j0, live);
            // SAFETY: the column pointers address k elements, the rows hold k elements, and
            // the group's outputs lie in this call's columns.
            unsafe {
                match group.len() {
                    1 => dot_group::<1>(group, bp, k, at, dst),
                    2 => dot_group::<2>(group, bp, k, at, dst),
                    3 => dot_group::<3>(group, bp, k, at, dst),
                    _ => dot_group::<4>(group, bp, k, at, dst),
                }
            }
        }
    }
}

/// Output rows `i0..i0 + M`, columns `j0..j0 + live`, from the rows `group` and columns `b`.
///
/// # Safety
/// As for `dot_tile`, and those outputs are this thread's to write.
unsafe fn dot_group<const M: usize>(
    group: &[&[u16]],
    b: [*const u16; DOT_COLS],
    k: usize,
    (i0, j0, live): (usize, usize, usize),
    dst: Dst,
) {
    let a: [*const u16; M] = std::array::from_fn(|i| group[i].as_ptr());
    // SAFETY: by the caller's contract.
    let sums = unsafe { dot_tile::<M>(a, b, k) };
    for (i, row) in sums.iter().enumerate() {
        for (j, &v) in row.iter().enumerate().take(live) {
            // SAFETY: by the caller's contract.
            unsafe { dst.put(i0 + i, j0 + j, v) }
        }
    }
}

/// `M x DOT_COLS` dot products of length `k`.
///
/// # Safety
/// The CPU has AVX512F/BW/BF16; every pointer addresses `k` readable bf16 values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn dot_tile<const M: usize>(
    a: [*const u16; M],
    b: [*const u16; DOT_COLS],
    k: usize,
) -> [[f32; DOT_COLS]; M] {
    let mut acc = [[_mm512_setzero_ps(); DOT_COLS]; M];
    for p in (0..k).step_by(32) {
        // Lanes past k are masked off: not read, and zero in the product.
        let mask = if k - p >= 32 { u32::MAX } else { (1u32 << (k - p)) - 1 };
        let mut bv = [_mm512_setzero_si512().into_bh(); DOT_COLS];
        for (v, col) in bv.iter_mut().zip(b) {
            // SAFETY: p < k, so the pointer is in bounds; masked lanes are not accessed.
            *v = unsafe { _mm512_maskz_loadu_epi16(mask, col.add(p) as *const i16) }.into_bh();
        }
        for (row, ap) in acc.iter_mut().zip(a) {
            // SAFETY: as above.
            let av = unsafe { _mm512_maskz_loadu_epi16(mask, ap.add(p) as *const i16) }.into_bh();
            for (c, &bv) in row.iter_mut().zip(&bv) {
                *c = _mm512_dpbf16_ps(*c, av, bv);
            }
        }
    }
    let mut sums = [[0f32; DOT_COLS]; M];
    for (s, c) in sums.iter_mut().zip(&acc) {
        for (s, &c) in s.iter_mut().zip(c) {
            *s = _mm512_reduce_add_ps(c);
        }
    }
    sums
}

/// Columns `cols` of the output for row-major B (unit column stride).
///
/// k is walked in chunks of `ROW_K`: each chunk of B, across this thread's columns, is packed
/// into pair-interleaved panels `ROW_COLS` wide (reading B two rows at a time, along memory),
/// then serves every row group from cache. Partial sums over chunks wait in `partial`.
///
/// # Safety
/// As for `skinny`, with `b.cs == 1`; `a` is a valid `m x k` view.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn row_cols(
    s: &mut Scratch,
    a: Bits,
    m: usize,
    b: Bits,
    k: usize,
    cols: Range<usize>,
    dst: Dst,
) {
    let Scratch { a: abuf, b: bbuf, .. } = s;
    let kp = k.div_ceil(2);
    // Row i's k pairs at ap[i * kp..].
    let ap = pairs(abuf, m * kp);
    pack_pairs(ap, a, 0..m, 0..k, 1);
    let mut partial = vec![0f32; if k > ROW_K { m * cols.len() } else { 0 }];
    let tiles = cols.len().div_ceil(ROW_COLS);
    for k0 in (0..k).step_by(ROW_K) {
        let ks = k0..(k0 + ROW_K).min(k);
        let steps = ks.len().div_ceil(2);
        let bp = pairs(bbuf, tiles * ROW_COLS * steps);
        pack_pairs(bp, b.t(), cols.clone(), ks.clone(), ROW_COLS);
        for (t, panel) in bp.chunks_exact(ROW_COLS * steps).enumerate() {
            let j0 = cols.start + t * ROW_COLS;
            let nc = ROW_COLS.min(cols.end - j0);
            for i0 in (0..m).step_by(GROUP) {
                let tile = RowTile { i0, j0, nc, ks: ks.clone(), k, cols: cols.clone() };
                let at = |i: usize| ap[(i0 + i).min(m - 1) * kp + k0 / 2..].as_ptr();
                // SAFETY: each row pointer has `steps` pairs after it (ks ends by k), the
                // panel holds `steps` aligned steps, and the tile's outputs are this call's.
                unsafe {
                    match m - i0 {
                        1 => {
                            row_group::<1>(std::array::from_fn(at), panel, &tile, &mut partial, dst)
                        }
                        2 => {
                            row_group::<2>(std::array::from_fn(at), panel, &tile, &mut partial, dst)
                        }
                        3 => {
                            row_group::<3>(std::array::from_fn(at), panel, &tile, &mut partial, dst)
                        }
                        _ => {
                            row_group::<4>(std::array::from_fn(at), panel, &tile, &mut partial, dst)
                        }
                    }
                }
            }
        }
    }
}

/// Where one `row_group` call works: output rows from `i0`, columns `j0..j0 + nc`, B rows `ks`
/// of `0..k`, inside the thread's columns `cols`.
struct RowTile {
    i0: usize,
    j0: usize,
    nc: usize,
    ks: Range<usize>,
    k: usize,
    cols: Range<usize>,
}

/// One k chunk of one tile for `M` rows (`a`: their pairs for the chunk): adds the partial
/// sums of earlier chunks, then keeps the result in `partial`, or after the last chunk writes
/// it out.
///
/// # Safety
/// The CPU has AVX512F/BW/VL/BF16; each `a[i]` has the chunk's `panel.len() / ROW_COLS` pairs;
/// `panel` is 64-byte aligned; the tile's outputs are this thread's to write; `partial` holds
/// `m x cols.len()` sums when `k > ROW_K`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn row_group<const M: usize>(
    a: [*const u32; M],
    panel: &[u32],
    t: &RowTile,
    partial: &mut [f32],
    dst: Dst,
) {
    let mut acc = [[_mm512_setzero_ps(); ROW_COLS / 16]; M];
    for step in panel.chunks_exact(ROW_COLS).enumerate() {
        let (s, step) = step;
        let mut bv = [_mm512_setzero_si512().into_bh(); ROW_COLS / 16];
        for (v, x) in bv.iter_mut().enumerate() {
            // SAFETY: 16 pairs of this step, 64-byte aligned (steps are 256 bytes).
            *x = unsafe { _mm512_load_si512(step[16 * v..].as_ptr() as *const _) }.into_bh();
        }
        for (row, ap) in acc.iter_mut().zip(a) {
            // SAFETY: `ap` has a pair for every step.
            let av = _mm512_set1_epi32(unsafe { *ap.add(s) } as i32).into_bh();
            for (c, &bv) in row.iter_mut().zip(&bv) {
                *c = _mm512_dpbf16_ps(*c, av, bv);
            }
        }
    }
    let width = t.cols.len();
    for (i, vecs) in acc.iter().enumerate() {
        for (v, &x) in vecs.iter().enumerate() {
            let (c0, live) = (t.j0 + 16 * v, t.nc.saturating_sub(16 * v).min(16));
            if live == 0 {
                break;
            }
            let mask = ((1u32 << live) - 1) as u16;
            let at = ((t.i0 + i) * width + c0 - t.cols.start).min(partial.len());
            let keep = &mut partial[at..];
            let mut x = x;
            if t.ks.start > 0 {
                // SAFETY: `live` sums of this row start at `keep` (k > ROW_K here).
                x = _mm512_add_ps(x, unsafe { _mm512_maskz_loadu_ps(mask, keep.as_ptr()) });
            }
            if t.ks.end < t.k {
                // SAFETY: as above, writable.
                unsafe { _mm512_mask_storeu_ps(keep.as_mut_ptr(), mask, x) }
            } else {
                // SAFETY: columns c0..c0 + live of this row are the thread's to write.
                unsafe { store16(dst, t.i0 + i, c0, live, x) }
            }
        }
    }
}

/// Stores the first `live` lanes of `x` as output row `i`, columns `c0..c0 + live`.
///
/// # Safety
/// The CPU has AVX512F/BW/VL/BF16; those elements are inside the output, with no other writer.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn store16(dst: Dst, i: usize, c0: usize, live: usize, x: __m512) {
    let mask = ((1u32 << live) - 1) as u16;
    let at = i * dst.rs + c0 * dst.cs;
    // SAFETY: by the caller's contract; with unit column stride the masked lanes are the
    // elements c0..c0 + live of row i.
    unsafe {
        match dst.ptr {
            OutPtr::F32(p) if dst.cs == 1 => _mm512_mask_storeu_ps(p.add(at), mask, x),
            OutPtr::Bf16(p) if dst.cs == 1 => {
                let h: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(x));
                _mm256_mask_storeu_epi16(p.add(at) as *mut i16, mask, h)
            }
            _ => {
                let v: [f32; 16] = std::mem::transmute(x);
                for (j, &v) in v.iter().enumerate().take(live) {
                    dst.put(i, c0 + j, v);
                }
            }
        }
    }
}
