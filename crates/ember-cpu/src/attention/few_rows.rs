//! The two products of attention for a handful of query rows (a decode step: one position
//! times the query heads that share a key/value head), read straight from the cache's key and
//! value rows. A GEMM would first pack all of K and V, which costs more than the products.
//! f32 rows whose length is a multiple of 16 run on AVX-512 (`vfmadd` with the accumulators
//! in registers) when the CPU has it; everything else takes plain loops.

use crate::fast::Compute;

/// Key or value rows: row `j` is `data[offset + j * stride..][..len]`, contiguous.
#[derive(Clone, Copy)]
pub(super) struct Rows<'a, T> {
    pub(super) data: &'a [T],
    pub(super) offset: usize,
    pub(super) stride: isize,
}

impl<'a, T> Rows<'a, T> {
    fn row(&self, j: usize, len: usize) -> &'a [T] {
        let start = (self.offset as isize + j as isize * self.stride) as usize;
        &self.data[start..start + len]
    }

    fn as_f32(&self) -> Option<Rows<'a, f32>>
    where
        T: Compute,
    {
        Some(Rows { data: T::as_f32(self.data)?, offset: self.offset, stride: self.stride })
    }
}

/// `scores (rows x keys) = q (rows x d) K^T`.
pub(super) fn scores<T: Compute>(scores: &mut [T], q: &[T], k: Rows<T>, keys: usize, d: usize) {
    #[cfg(target_arch = "x86_64")]
    if d % 16 == 0 && avx512() {
        if let (Some(s), Some(q), Some(k)) = (T::as_f32_mut(scores), T::as_f32(q), k.as_f32()) {
            // SAFETY: the CPU has AVX-512F (checked just above) and `d` is a multiple of 16.
            return unsafe { avx512::scores(s, q, k, keys, d) };
        }
    }
    for j in 0..keys {
        let kj = k.row(j, d);
        for (r, qr) in q.chunks_exact(d).enumerate() {
            scores[r * keys + j] = qr.iter().zip(kj).fold(T::zero(), |s, (&x, &y)| s.add(x.mul(y)));
        }
    }
}

/// `out (rows x dv) = p (rows x keys) V`.
pub(super) fn weighted_sum<T: Compute>(out: &mut [T], p: &[T], v: Rows<T>, keys: usize, dv: usize) {
    #[cfg(target_arch = "x86_64")]
    if dv % 16 == 0 && avx512() {
        if let (Some(o), Some(p), Some(v)) = (T::as_f32_mut(out), T::as_f32(p), v.as_f32()) {
            // SAFETY: the CPU has AVX-512F (checked just above) and `dv` is a multiple of 16.
            return unsafe { avx512::weighted_sum(o, p, v, keys, dv) };
        }
    }
    out.fill(T::zero());
    for j in 0..keys {
        let vj = v.row(j, dv);
        for (r, o) in out.chunks_exact_mut(dv).enumerate() {
            let w = p[r * keys + j];
            o.iter_mut().zip(vj).for_each(|(o, &x)| *o = o.add(w.mul(x)));
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::Rows;
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must have AVX-512F and `d` must be a multiple of 16.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn scores(s: &mut [f32], q: &[f32], k: Rows<f32>, keys: usize, d: usize) {
        let rows = q.len() / d;
        for j in 0..keys {
            let kj = k.row(j, d).as_ptr();
            for r in 0..rows {
                let qr = q[r * d..][..d].as_ptr();
                let mut acc = _mm512_setzero_ps();
                for c in (0..d).step_by(16) {
                    // SAFETY: `c + 16 <= d` and both rows hold `d` values.
                    let (x, y) =
                        unsafe { (_mm512_loadu_ps(qr.add(c)), _mm512_loadu_ps(kj.add(c))) };
                    acc = _mm512_fmadd_ps(x, y, acc);
                }
                s[r * keys + j] = _mm512_reduce_add_ps(acc);
            }
        }
    }

    /// # Safety
    /// The CPU must have AVX-512F and `dv` must be a multiple of 16.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn weighted_sum(
        out: &mut [f32],
        p: &[f32],
        v: Rows<f32>,
        keys: usize,
        dv: usize,
    ) {
        for (r, o) in out.chunks_exact_mut(dv).enumerate() {
            let w = &p[r * keys..][..keys];
            // Blocks of up to 64 columns, accumulated over every key in registers.
            for c in (0..dv).step_by(64) {
                let o = &mut o[c..(c + 64).min(dv)];
                // SAFETY: the CPU has AVX-512F (the caller's contract); `o` has `16 * N`
                // elements and each value row `dv >= c + 16 * N`.
                unsafe {
                    match o.len() / 16 {
                        4 => block::<4>(o, w, v, c, dv),
                        3 => block::<3>(o, w, v, c, dv),
                        2 => block::<2>(o, w, v, c, dv),
                        _ => block::<1>(o, w, v, c, dv),
                    }
                }
            }
        }
    }

    /// `o (16 N columns from c) = sum_j w[j] v[j][c..]`.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `o` must hold `16 * N` values and `c + 16 * N <= dv`.
    #[target_feature(enable = "avx512f")]
    unsafe fn block<const N: usize>(o: &mut [f32], w: &[f32], v: Rows<f32>, c: usize, dv: usize) {
        let mut acc = [_mm512_setzero_ps(); N];
        for (j, &wj) in w.iter().enumerate() {
            let x = v.row(j, dv)[c..c + 16 * N].as_ptr();
            let wj = _mm512_set1_ps(wj);
            for (i, a) in acc.iter_mut().enumerate() {
                // SAFETY: the row slice above holds 16 * N values.
                *a = _mm512_fmadd_ps(wj, unsafe { _mm512_loadu_ps(x.add(16 * i)) }, *a);
            }
        }
        let o = o[..16 * N].as_mut_ptr();
        for (i, a) in acc.iter().enumerate() {
            // SAFETY: `o` holds 16 * N values.
            unsafe { _mm512_storeu_ps(o.add(16 * i), *a) };
        }
    }
}
