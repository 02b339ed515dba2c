//! f32 slices mapped through the vectorisable transcendentals of [`vmath`], compiled for
//! AVX-512 or AVX2+FMA when the CPU has them: the uncompiled `exp`, `tanh`, `sigmoid`, `log`
//! and `erf` ops run as SIMD loops instead of one libm call per element, and agree with the
//! same ops inside compiled (fused) programs.

use crate::strided::{for_each_row, Rows, View, PARALLEL_THRESHOLD};
use crate::vmath;
use rayon::prelude::*;

/// The f32 functions with a vectorised form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transcendental {
    Exp,
    Tanh,
    Sigmoid,
    Log,
    Erf,
}

/// `out[i] = f(x[i])`. Panics if the lengths differ.
pub fn map(f: Transcendental, out: &mut [f32], x: &[f32]) {
    assert_eq!(out.len(), x.len(), "vmap::map needs equal lengths");
    if out.len() >= PARALLEL_THRESHOLD {
        out.par_chunks_mut(PARALLEL_THRESHOLD / 4)
            .zip(x.par_chunks(PARALLEL_THRESHOLD / 4))
            .for_each(|(o, x)| dispatch(f, o, Some(x)));
    } else {
        dispatch(f, out, Some(x));
    }
}

/// `out = f(x)` for a view of any layout (`out` is row-major): rows contiguous in `x` are
/// mapped straight from it, others are gathered into `out` first.
pub fn map_view(f: Transcendental, out: &mut [f32], x: View<'_, f32>) {
    if let Some(src) = x.contiguous() {
        return map(f, out, src);
    }
    let rows = Rows::new(x.shape, [x.strides], [x.offset]);
    let [step] = rows.inner_strides;
    for_each_row(out, &rows, |row, o| {
        let [start] = rows.offsets(row);
        if step == 1 {
            dispatch(f, o, Some(&x.data[start as usize..][..o.len()]));
        } else {
            for (i, o) in o.iter_mut().enumerate() {
                *o = x.data[(start + i as isize * step) as usize];
            }
            dispatch(f, o, None);
        }
    });
}

/// `data[i] = f(data[i])`.
pub fn map_inplace(f: Transcendental, data: &mut [f32]) {
    if data.len() >= PARALLEL_THRESHOLD {
        data.par_chunks_mut(PARALLEL_THRESHOLD / 4).for_each(|d| dispatch(f, d, None));
    } else {
        dispatch(f, data, None);
    }
}

/// Runs `each` compiled for the widest instruction set this CPU has. `src: None` maps `out`
/// in place.
fn dispatch(f: Transcendental, out: &mut [f32], src: Option<&[f32]>) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx2") && has!("fma") {
            if has!("avx512f") && has!("avx512vl") {
                // SAFETY: the CPU has every feature `each_avx512` is compiled for (checked
                // just above); the function is otherwise safe code.
                return unsafe { each_avx512(f, out, src) };
            }
            // SAFETY: as above, for AVX2 and FMA.
            return unsafe { each_avx2(f, out, src) };
        }
    }
    each::<false>(f, out, src)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn each_avx512(f: Transcendental, out: &mut [f32], src: Option<&[f32]>) {
    each::<true>(f, out, src)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn each_avx2(f: Transcendental, out: &mut [f32], src: Option<&[f32]>) {
    each::<true>(f, out, src)
}

/// One loop per function, so that each inlines its polynomial and vectorises.
#[inline(always)]
fn each<const FMA: bool>(f: Transcendental, out: &mut [f32], src: Option<&[f32]>) {
    match f {
        Transcendental::Exp => apply(out, src, vmath::exp::<FMA>),
        Transcendental::Tanh => apply(out, src, vmath::tanh::<FMA>),
        Transcendental::Sigmoid => apply(out, src, vmath::sigmoid::<FMA>),
        Transcendental::Log => apply(out, src, vmath::log::<FMA>),
        Transcendental::Erf => apply(out, src, vmath::erf::<FMA>),
    }
}

#[inline(always)]
fn apply(out: &mut [f32], src: Option<&[f32]>, g: impl Fn(f32) -> f32) {
    match src {
        Some(x) => out.iter_mut().zip(x).for_each(|(o, &x)| *o = g(x)),
        None => out.iter_mut().for_each(|o| *o = g(*o)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs spanning every branch of the functions: tiny, negative, large, special values.
    fn inputs(n: usize) -> Vec<f32> {
        let mut x: Vec<f32> = (0..n).map(|i| (i as f32 - n as f32 / 2.0) * 0.37).collect();
        x.extend([0.0, -0.0, 1e-30, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 100.0, -100.0]);
        x
    }

    fn reference(f: Transcendental, x: f32) -> f32 {
        let x = x as f64;
        let y = match f {
            Transcendental::Exp => x.exp(),
            Transcendental::Tanh => x.tanh(),
            Transcendental::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Transcendental::Log => x.ln(),
            Transcendental::Erf => libm_erf(x),
        };
        y as f32
    }

    /// erf in f64 by its Maclaurin series below 4 (accurate to ~1e-9 there); beyond, erf
    /// rounds to ±1 in f32.
    fn libm_erf(x: f64) -> f64 {
        if x.abs() >= 4.0 {
            return x.signum();
        }
        let (mut term, mut sum, mut k) = (x, x, 0.0);
        while term.abs() > 1e-17 {
            k += 1.0;
            term *= -x * x / k;
            sum += term / (2.0 * k + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    fn close(got: f32, want: f32) -> bool {
        (got.is_nan() && want.is_nan())
            || got == want
            || (got - want).abs() <= 1e-6 * want.abs().max(1e-30) + 4.0 * f32::EPSILON * want.abs()
            || (got - want).abs() < 1e-37
    }

    #[test]
    fn every_function_matches_f64_both_in_place_and_out_of_place() {
        use Transcendental::*;
        // Long enough to take the parallel path, with a ragged tail.
        let x = inputs(PARALLEL_THRESHOLD + 37);
        for f in [Exp, Tanh, Sigmoid, Log, Erf] {
            let mut out = vec![0f32; x.len()];
            map(f, &mut out, &x);
            let mut inplace = x.clone();
            map_inplace(f, &mut inplace);
            for (i, &v) in x.iter().enumerate() {
                let want = reference(f, v);
                // erf's reference is only a series: compare it at 1e-5 absolute.
                let ok = if f == Erf {
                    (out[i] - want).abs() < 1e-5 || (out[i].is_nan() && want.is_nan())
                } else {
                    close(out[i], want)
                };
                assert!(ok, "{f:?}({v}) = {} but f64 gives {want}", out[i]);
                assert_eq!(out[i].to_bits(), inplace[i].to_bits(), "{f:?}({v}) in place");
            }
        }
    }

    #[test]
    fn strided_views_map_like_their_contiguous_copies() {
        // A 3 x 40 matrix viewed as its left 3 x 25 columns (rows contiguous) and as its
        // transpose (rows strided), each against `map` over a contiguous copy.
        let x = inputs(120 - 8);
        let cases: [(&[usize], &[isize]); 2] = [(&[3, 25], &[40, 1]), (&[40, 3], &[1, 40])];
        for (shape, strides) in cases {
            let view = View::new(&x, shape, strides, 0);
            let copy: Vec<f32> = (0..shape[0])
                .flat_map(|i| (0..shape[1]).map(move |j| (i, j)))
                .map(|(i, j)| x[i * strides[0] as usize + j * strides[1] as usize])
                .collect();
            for f in [Transcendental::Tanh, Transcendental::Sigmoid] {
                let (mut got, mut want) = (vec![0f32; copy.len()], vec![0f32; copy.len()]);
                map_view(f, &mut got, view);
                map(f, &mut want, &copy);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{f:?} over {shape:?} strides {strides:?}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "equal lengths")]
    fn unequal_lengths_are_refused() {
        map(Transcendental::Exp, &mut [0.0; 3], &[1.0; 4]);
    }
}
