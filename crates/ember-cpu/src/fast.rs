//! Fused row kernels: softmax, RMS norm, layer norm and RoPE over the last axis of contiguous
//! data. Each row is read once into a scratch row of the compute type (f32 for half types,
//! so that sums accumulate in f32), worked on there while it sits in L1, and written once.
//! Rows are split across threads above `PARALLEL_THRESHOLD` elements.

use crate::scalar::num_like::FloatMath;
use crate::scalar::{Float, FloatElem, Scalar};
use crate::strided::PARALLEL_THRESHOLD;
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use rayon::prelude::*;

/// The compute types of the fused kernels (f32 and f64).
pub trait Compute: Float {
    /// Replaces each `s[i]` by `exp(s[i] - shift)` and returns their sum. Meant for
    /// `shift >= max(s)`: the f32 version flushes results below `e^-87` to zero.
    fn exp_shifted_sum(s: &mut [Self], shift: Self) -> Self;
    /// The slice as f32, when `Self` is f32 (for kernels written for f32 only).
    fn as_f32(s: &[Self]) -> Option<&[f32]>;
    fn as_f32_mut(s: &mut [Self]) -> Option<&mut [f32]>;
}

/// The storage types of the fused kernels, with bulk conversion to and from their compute type.
pub trait FastFloat: FloatElem<Acc: Compute> {
    fn widen_slice(src: &[Self], dst: &mut [Self::Acc]);
    fn narrow_slice(src: &[Self::Acc], dst: &mut [Self]);
}

impl FastFloat for f32 {
    fn widen_slice(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src)
    }
    fn narrow_slice(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src)
    }
}

impl FastFloat for f64 {
    fn widen_slice(src: &[f64], dst: &mut [f64]) {
        dst.copy_from_slice(src)
    }
    fn narrow_slice(src: &[f64], dst: &mut [f64]) {
        dst.copy_from_slice(src)
    }
}

impl FastFloat for f16 {
    /// 16 values per `vcvtph2ps` where the CPU has AVX-512 (`half`'s conversion is narrower),
    /// through the widening of little-endian f16 bytes that F16 weights use.
    fn widen_slice(src: &[f16], dst: &mut [f32]) {
        if cfg!(target_endian = "little") {
            crate::half_weights::widen_row(dst, bytemuck::cast_slice(src))
        } else {
            src.convert_to_f32_slice(dst)
        }
    }
    fn narrow_slice(src: &[f32], dst: &mut [f16]) {
        dst.convert_from_f32_slice(src)
    }
}

impl FastFloat for bf16 {
    fn widen_slice(src: &[bf16], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst)
    }
    fn narrow_slice(src: &[f32], dst: &mut [bf16]) {
        dst.convert_from_f32_slice(src)
    }
}

/// `e^x` for f32 by Cody-Waite range reduction and a degree-6 polynomial (about 1 ulp), in
/// straight-line code that the compiler vectorises; results below `e^-87` become zero. `FMA`
/// fuses the multiply-adds: only for code compiled with the `fma` target feature, as
/// `mul_add` is a slow library call elsewhere.
#[inline(always)]
fn exp_f32<const FMA: bool>(x: f32) -> f32 {
    let madd = |a: f32, b: f32, c: f32| if FMA { a.mul_add(b, c) } else { a * b + c };
    // Adding 1.5 * 2^23 rounds to an integer that then sits in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let xc = x.clamp(-87.0, 88.0);
    let t = madd(xc, std::f32::consts::LOG2_E, ROUND);
    let n = t - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = madd(p, r, 1.398_199_9e-3);
    p = madd(p, r, 8.333_452e-3);
    p = madd(p, r, 4.166_579_6e-2);
    p = madd(p, r, 1.666_666_5e-1);
    p = madd(p, r, 0.5);
    p = p * r * r + r + 1.0;
    let k = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let pow2 = f32::from_bits(((k + 127) << 23) as u32);
    if x < -87.0 {
        0.0
    } else {
        p * pow2
    }
}

const LANES: usize = 16;

#[inline(always)]
fn exp_shifted_sum_f32<const FMA: bool>(s: &mut [f32], shift: f32) -> f32 {
    // Independent partial sums per lane so the loop vectorises.
    let mut acc = [0f32; LANES];
    let mut chunks = s.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            let e = exp_f32::<FMA>(c[i] - shift);
            c[i] = e;
            acc[i] += e;
        }
    }
    let mut total = 0f32;
    for v in chunks.into_remainder() {
        *v = exp_f32::<FMA>(*v - shift);
        total += *v;
    }
    acc.iter().sum::<f32>() + total
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_shifted_sum_avx2(s: &mut [f32], shift: f32) -> f32 {
    exp_shifted_sum_f32::<true>(s, shift)
}

impl Compute for f32 {
    fn as_f32(s: &[f32]) -> Option<&[f32]> {
        Some(s)
    }
    fn as_f32_mut(s: &mut [f32]) -> Option<&mut [f32]> {
        Some(s)
    }
    fn exp_shifted_sum(s: &mut [f32], shift: f32) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above), which is all that
            // `exp_shifted_sum_avx2` requires; it is otherwise safe code.
            return unsafe { exp_shifted_sum_avx2(s, shift) };
        }
        exp_shifted_sum_f32::<false>(s, shift)
    }
}

impl Compute for f64 {
    fn as_f32(_: &[f64]) -> Option<&[f32]> {
        None
    }
    fn as_f32_mut(_: &mut [f64]) -> Option<&mut [f32]> {
        None
    }
    fn exp_shifted_sum(s: &mut [f64], shift: f64) -> f64 {
        let mut total = 0.0;
        for v in s {
            *v = (*v - shift).exp();
            total += *v;
        }
        total
    }
}

/// The largest element, ignoring NaNs (`lowest` for an empty or all-NaN slice).
pub fn max_of<F: Scalar>(s: &[F]) -> F {
    let mut m = [F::lowest(); LANES];
    let mut chunks = s.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            if c[i] > m[i] {
                m[i] = c[i];
            }
        }
    }
    let mut best = F::lowest();
    for &v in m.iter().chain(chunks.remainder()) {
        if v > best {
            best = v;
        }
    }
    best
}

/// The sum of `f(s[i])`, accumulated in lanes (vectorised and more accurate than one chain).
#[inline(always)]
fn sum_map<F: Scalar>(s: &[F], f: impl Fn(F) -> F) -> F {
    let mut acc = [F::zero(); LANES];
    let mut chunks = s.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            acc[i] = acc[i].add(f(c[i]));
        }
    }
    let tail = chunks.remainder().iter().fold(F::zero(), |a, &v| a.add(f(v)));
    acc.iter().fold(tail, |a, &v| a.add(v))
}

/// Runs `f(row, out_row, scratch)` for each `row_len`-element row of `out`, in parallel when
/// large; each task keeps one scratch value.
pub fn for_rows<T, S, F>(out: &mut [T], row_len: usize, f: F)
where
    T: Send,
    S: Default + Send,
    F: Fn(usize, &mut [T], &mut S) + Sync,
{
    if row_len == 0 {
        return;
    }
    if out.len() >= PARALLEL_THRESHOLD && out.len() > row_len {
        let per_task = (PARALLEL_THRESHOLD / 4).div_ceil(row_len);
        out.par_chunks_mut(per_task * row_len).enumerate().for_each_init(
            S::default,
            |s, (t, c)| {
                for (k, row) in c.chunks_mut(row_len).enumerate() {
                    f(t * per_task + k, row, s);
                }
            },
        );
    } else {
        let mut s = S::default();
        for (r, row) in out.chunks_mut(row_len).enumerate() {
            f(r, row, &mut s);
        }
    }
}

/// `src` widened into `scratch` (resized to fit).
fn widen_into<'s, T: FastFloat>(scratch: &'s mut Vec<T::Acc>, src: &[T]) -> &'s mut [T::Acc] {
    scratch.resize(src.len(), <T::Acc as Scalar>::zero());
    T::widen_slice(src, scratch);
    scratch
}

/// Softmax of each contiguous `row_len`-element row of `x`: subtract the row's max, exponentiate
/// and sum in one pass, scale by the reciprocal sum.
pub fn softmax_rows<T: FastFloat>(out: &mut [T], x: &[T], row_len: usize) {
    for_rows(out, row_len, |r, dst, scratch: &mut Vec<T::Acc>| {
        let s = widen_into(scratch, &x[r * row_len..][..row_len]);
        let sum = T::Acc::exp_shifted_sum(s, max_of(s));
        let inv = <T::Acc as Scalar>::one().div(sum);
        s.iter_mut().for_each(|v| *v = v.mul(inv));
        T::narrow_slice(s, dst);
    });
}

/// Converts an optional per-feature vector to the compute type once.
fn widen_vec<T: FastFloat>(v: Option<&[T]>) -> Option<Vec<T::Acc>> {
    v.map(|v| {
        let mut out = Vec::new();
        widen_into(&mut out, v);
        out
    })
}

/// `x * rsqrt(mean(x^2) + eps) * weight` over rows of `d` elements.
pub fn rms_norm_rows<T: FastFloat>(
    out: &mut [T],
    x: &[T],
    weight: Option<&[T]>,
    eps: f64,
    d: usize,
) {
    let w = widen_vec(weight);
    let (n, eps) = (<T::Acc as Scalar>::from_f64(d as f64), <T::Acc as Scalar>::from_f64(eps));
    for_rows(out, d, |r, dst, scratch: &mut Vec<T::Acc>| {
        let s = widen_into(scratch, &x[r * d..][..d]);
        let k = <T::Acc as Scalar>::one().div(sum_map(s, |v| v.mul(v)).div(n).add(eps).sqrt());
        match &w {
            Some(w) => s.iter_mut().zip(w).for_each(|(v, &w)| *v = v.mul(k).mul(w)),
            None => s.iter_mut().for_each(|v| *v = v.mul(k)),
        }
        T::narrow_slice(s, dst);
    });
}

/// `(x - mean) * rsqrt(var + eps) * weight + bias` over rows of `d` elements (two-pass
/// variance, on the row in cache).
pub fn layer_norm_rows<T: FastFloat>(
    out: &mut [T],
    x: &[T],
    weight: Option<&[T]>,
    bias: Option<&[T]>,
    eps: f64,
    d: usize,
) {
    let (w, b) = (widen_vec(weight), widen_vec(bias));
    let (n, eps) = (<T::Acc as Scalar>::from_f64(d as f64), <T::Acc as Scalar>::from_f64(eps));
    for_rows(out, d, |r, dst, scratch: &mut Vec<T::Acc>| {
        let s = widen_into(scratch, &x[r * d..][..d]);
        let mean = sum_map(s, |v| v).div(n);
        let var = sum_map(s, |v| v.sub(mean).mul(v.sub(mean))).div(n);
        let k = <T::Acc as Scalar>::one().div(var.add(eps).sqrt());
        s.iter_mut().for_each(|v| *v = v.sub(mean).mul(k));
        if let Some(w) = &w {
            s.iter_mut().zip(w).for_each(|(v, &w)| *v = v.mul(w));
        }
        if let Some(b) = &b {
            s.iter_mut().zip(b).for_each(|(v, &b)| *v = v.add(b));
        }
        T::narrow_slice(s, dst);
    });
}

/// RoPE angles as MLX computes them, in f32: `cos` and `sin` of
/// `(offset + l) * scale * inv_freq[i]` for positions `l < len`, each `(len, inv_freq.len())`.
pub fn rope_table(len: usize, offset: usize, scale: f32, inv_freq: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut cos = Vec::with_capacity(len * inv_freq.len());
    let mut sin = Vec::with_capacity(len * inv_freq.len());
    for l in 0..len {
        let pos = (l as f32 + offset as f32) * scale;
        for &f in inv_freq {
            let (s, c) = (pos * f).sin_cos();
            cos.push(c);
            sin.push(s);
        }
    }
    (cos, sin)
}

/// Layout of the rotated pairs in RoPE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopePairs {
    /// `(x[2i], x[2i + 1])`: the original, interleaved layout.
    Interleaved,
    /// `(x[i], x[i + dims/2])`: the half-split layout.
    HalfSplit,
}

/// Rotates the first `dims` features of each `d`-element row of `x` (rows ordered
/// `(..., seq_len)`) by the angles of the row's position from [`rope_table`]; the other
/// features are copied.
pub fn rope_rows<T: FastFloat>(
    out: &mut [T],
    x: &[T],
    seq_len: usize,
    d: usize,
    pairs: RopePairs,
    (cos, sin): (&[f32], &[f32]),
) {
    let half = cos.len() / seq_len.max(1);
    let acc = |v: f32| <T::Acc as Scalar>::from_f64(v as f64);
    for_rows(out, d, |r, dst, scratch: &mut Vec<T::Acc>| {
        let s = widen_into(scratch, &x[r * d..][..d]);
        let l = r % seq_len;
        let (cs, sn) = (&cos[l * half..][..half], &sin[l * half..][..half]);
        for i in 0..half {
            let (ia, ib) = match pairs {
                RopePairs::Interleaved => (2 * i, 2 * i + 1),
                RopePairs::HalfSplit => (i, i + half),
            };
            let (a, b, c, sv) = (s[ia], s[ib], acc(cs[i]), acc(sn[i]));
            s[ia] = a.mul(c).sub(b.mul(sv));
            s[ib] = a.mul(sv).add(b.mul(c));
        }
        T::narrow_slice(s, dst);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polynomial_exp_is_accurate_on_the_softmax_range() {
        let xs: Vec<f32> = (0..=8800).map(|i| -87.0 + i as f32 * 0.01).collect();
        for &x in &xs {
            let want = (x as f64).exp();
            for got in [exp_f32::<false>(x), exp_f32::<true>(x)] {
                assert!(((got as f64 - want) / want).abs() < 3e-7, "exp({x}) = {got}, want {want}");
            }
        }
        assert_eq!(exp_f32::<false>(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32::<true>(-100.0), 0.0);
        assert!(exp_f32::<false>(f32::NAN).is_nan());
    }

    #[test]
    fn exp_shifted_sum_dispatch_matches_portable_loop() {
        // 37 elements: two full lane chunks and a remainder.
        let base: Vec<f32> = (0..37).map(|i| (i as f32 * 0.7).sin() * 5.0).collect();
        let (mut a, mut b) = (base.clone(), base.clone());
        let sa = f32::exp_shifted_sum(&mut a, 5.0);
        let sb = exp_shifted_sum_f32::<false>(&mut b, 5.0);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 3e-7 * y, "{x} vs {y}");
        }
        let want: f64 = base.iter().map(|&v| (v as f64 - 5.0).exp()).sum();
        for sum in [sa, sb] {
            assert!((sum as f64 - want).abs() < 1e-6 * want);
        }
    }

    #[test]
    fn max_skips_nan_and_handles_remainders() {
        let mut v: Vec<f32> = (0..20).map(|i| i as f32).collect();
        v[3] = f32::NAN;
        v[19] = 100.0;
        assert_eq!(max_of(&v), 100.0);
        assert_eq!(max_of::<f32>(&[]), f32::NEG_INFINITY);
    }

    #[test]
    fn softmax_of_equal_logits_is_uniform() {
        let x = [bf16::from_f32(3.0); 4];
        let mut out = [bf16::ZERO; 4];
        softmax_rows(&mut out, &x, 4);
        assert!(out.iter().all(|v| v.to_f32() == 0.25));
    }
}
