//! The two products of attention for a handful of query rows (a decode step: one position
//! times the query heads that share a key/value head), read straight from the cache's key and
//! value rows. A GEMM would first pack all of K and V, which costs more than the products.
//! f32 attention over f32 or f16 rows whose length is a multiple of 16 runs on AVX-512
//! (`vfmadd` with the accumulators in registers, f16 widened by `vcvtph2ps` as loaded) when
//! the CPU has it; everything else takes plain loops.

use super::KvElement;
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

    /// The same rows over the same elements seen as `U` (`as_u` gives `None` when they are
    /// not).
    #[cfg(target_arch = "x86_64")]
    fn cast<U>(self, as_u: impl FnOnce(&'a [T]) -> Option<&'a [U]>) -> Option<Rows<'a, U>> {
        Some(Rows { data: as_u(self.data)?, offset: self.offset, stride: self.stride })
    }
}

/// `scores (rows x keys) = q (rows x d) K^T`.
pub(super) fn scores<T: Compute, K: KvElement<T>>(
    scores: &mut [T],
    q: &[T],
    k: Rows<K>,
    keys: usize,
    d: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if d.is_multiple_of(16) && avx512() {
        if let (Some(s), Some(q)) = (T::as_f32_mut(scores), T::as_f32(q)) {
            // SAFETY (both calls): the CPU has AVX-512F (checked above) and `d` is a multiple
            // of 16.
            if let Some(k) = k.cast(|x| T::as_f32(K::as_compute(x)?)) {
                return unsafe { avx512::scores(s, q, k, keys, d) };
            }
            if let Some(k) = k.cast(K::as_f16) {
                return unsafe { avx512::scores(s, q, k, keys, d) };
            }
        }
    }
    for j in 0..keys {
        let kj = k.row(j, d);
        for (r, qr) in q.chunks_exact(d).enumerate() {
            scores[r * keys + j] =
                qr.iter().zip(kj).fold(T::zero(), |s, (&x, &y)| s.add(x.mul(y.widen())));
        }
    }
}

/// `out (rows x dv) = p (rows x keys) V`.
pub(super) fn weighted_sum<T: Compute, V: KvElement<T>>(
    out: &mut [T],
    p: &[T],
    v: Rows<V>,
    keys: usize,
    dv: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if dv.is_multiple_of(16) && avx512() {
        if let (Some(o), Some(p)) = (T::as_f32_mut(out), T::as_f32(p)) {
            // SAFETY (both calls): the CPU has AVX-512F (checked above) and `dv` is a multiple
            // of 16.
            if let Some(v) = v.cast(|x| T::as_f32(V::as_compute(x)?)) {
                return unsafe { avx512::weighted_sum(o, p, v, keys, dv) };
            }
            if let Some(v) = v.cast(V::as_f16) {
                return unsafe { avx512::weighted_sum(o, p, v, keys, dv) };
            }
        }
    }
    out.fill(T::zero());
    for j in 0..keys {
        let vj = v.row(j, dv);
        for (r, o) in out.chunks_exact_mut(dv).enumerate() {
            let w = p[r * keys + j];
            o.iter_mut().zip(vj).for_each(|(o, &x)| *o = o.add(w.mul(x.widen())));
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
    use half::f16;
    use std::arch::x86_64::*;

    /// Elements loaded 16 at a time as f32 lanes.
    pub(super) trait Lanes: Copy {
        /// # Safety
        /// The CPU must have AVX-512F and `p` must point to 16 readable elements.
        unsafe fn load16(p: *const Self) -> __m512;
    }

    impl Lanes for f32 {
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn load16(p: *const f32) -> __m512 {
            // SAFETY: the caller's contract; the load has no alignment requirement.
            unsafe { _mm512_loadu_ps(p) }
        }
    }

    impl Lanes for f16 {
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn load16(p: *const f16) -> __m512 {
            // SAFETY: the caller's contract: 16 f16 are the 32 bytes loaded, unaligned.
            unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)) }
        }
    }

    /// # Safety
    /// The CPU must have AVX-512F and `d` must be a multiple of 16.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn scores<K: Lanes>(
        s: &mut [f32],
        q: &[f32],
        k: Rows<K>,
        keys: usize,
        d: usize,
    ) {
        let rows = q.len() / d;
        for j in 0..keys {
            let kj = k.row(j, d).as_ptr();
            for r in 0..rows {
                let qr = q[r * d..][..d].as_ptr();
                let mut acc = _mm512_setzero_ps();
                for c in (0..d).step_by(16) {
                    // SAFETY: `c + 16 <= d` and both rows hold `d` values.
                    let (x, y) = unsafe { (_mm512_loadu_ps(qr.add(c)), K::load16(kj.add(c))) };
                    acc = _mm512_fmadd_ps(x, y, acc);
                }
                s[r * keys + j] = _mm512_reduce_add_ps(acc);
            }
        }
    }

    /// # Safety
    /// The CPU must have AVX-512F and `dv` must be a multiple of 16.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn weighted_sum<V: Lanes>(
        out: &mut [f32],
        p: &[f32],
        v: Rows<V>,
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
                        4 => block::<4, V>(o, w, v, c, dv),
                        3 => block::<3, V>(o, w, v, c, dv),
                        2 => block::<2, V>(o, w, v, c, dv),
                        _ => block::<1, V>(o, w, v, c, dv),
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
    unsafe fn block<const N: usize, V: Lanes>(
        o: &mut [f32],
        w: &[f32],
        v: Rows<V>,
        c: usize,
        dv: usize,
    ) {
        let mut acc = [_mm512_setzero_ps(); N];
        for (j, &wj) in w.iter().enumerate() {
            let x = v.row(j, dv)[c..c + 16 * N].as_ptr();
            let wj = _mm512_set1_ps(wj);
            for (i, a) in acc.iter_mut().enumerate() {
                // SAFETY: the row slice above holds 16 * N values.
                *a = _mm512_fmadd_ps(wj, unsafe { V::load16(x.add(16 * i)) }, *a);
            }
        }
        let o = o[..16 * N].as_mut_ptr();
        for (i, a) in acc.iter().enumerate() {
            // SAFETY: `o` holds 16 * N values.
            unsafe { _mm512_storeu_ps(o.add(16 * i), *a) };
        }
    }
}
