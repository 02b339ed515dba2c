//! MLX's affine group quantization (`mx.quantize` with mode "affine"): each run of
//! `group` values along a row is stored as `bits`-bit codes `q` with one scale `s` and bias
//! `b`, standing for `s * q + b`. Codes are packed into u32 words, `32 / bits` per word, the
//! first value in the lowest bits, as MLX stores them. The products over this format are in
//! [`crate::affine_matmul`].

use crate::scalar::FloatElem;
use rayon::prelude::*;

/// The code widths supported: those whose codes tile a u32 word.
pub const BITS: [usize; 3] = [2, 4, 8];
/// The group sizes supported (MLX's).
pub const GROUP_SIZES: [usize; 3] = [32, 64, 128];

/// Values below which quantization runs on one thread.
const PARALLEL_VALUES: usize = 1 << 16;

/// True when `bits` and `group` are a supported pair.
pub fn supports(group: usize, bits: usize) -> bool {
    BITS.contains(&bits) && GROUP_SIZES.contains(&group)
}

/// Codes per u32 word.
pub fn per_word(bits: usize) -> usize {
    32 / bits
}

/// The scale and bias of one group, and its codes written to `codes`, with MLX's rule: the
/// end of the range with the larger magnitude (`edge`) is the zero code, so it is exactly
/// representable, and the scale is adjusted so that `edge / scale` is a whole number of
/// steps; the scale is negative when the edge is the maximum. Rounding is to nearest even,
/// as C's `rint`.
fn quantize_group(
    w: impl Iterator<Item = f32> + Clone,
    bits: usize,
    codes: &mut [u32],
) -> [f32; 2] {
    let bins = ((1u32 << bits) - 1) as f32;
    let (lo, hi) =
        w.clone().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let low_edge = lo.abs() > hi.abs();
    let step = ((hi - lo) / bins).max(1e-7);
    let (mut scale, edge) = if low_edge { (step, lo) } else { (-step, hi) };
    let q0 = (edge / scale).round_ties_even();
    let mut bias = 0.0;
    if q0 != 0.0 {
        scale = edge / q0;
        bias = edge;
    }
    let mut values = w;
    for word in codes.iter_mut() {
        *word = 0;
        for i in 0..per_word(bits) {
            let v = values.next().unwrap_or(0.0);
            let q = ((v - bias) / scale).round_ties_even().clamp(0.0, bins);
            *word |= (q as u32) << (i * bits);
        }
    }
    [scale, bias]
}

/// One group as the zipped iterators give it: values, codes, scale, bias (the last three
/// written).
type GroupToQuantize<'a, T> = (((&'a [T], &'a mut [u32]), &'a mut T), &'a mut T);
/// One group as the zipped iterators give it: codes, scale, bias, values (written).
type GroupToDequantize<'a, T> = (((&'a [u32], &'a T), &'a T), &'a mut [T]);

/// Quantizes rows of `w` (groups of `group` values) into `codes` (`group * bits / 32` words
/// per group) and one scale and bias per group, as `mx.quantize`.
///
/// Panics when the pair is not [`supports`]ed or the sizes disagree (callers validate).
pub fn quantize<T: FloatElem<Acc = f32>>(
    w: &[T],
    group: usize,
    bits: usize,
    codes: &mut [u32],
    scales: &mut [T],
    biases: &mut [T],
) {
    assert!(supports(group, bits), "affine quantize: unsupported group {group}, bits {bits}");
    let words = group / per_word(bits);
    let groups = w.len() / group;
    assert!(
        w.len() == groups * group
            && codes.len() == groups * words
            && scales.len() == groups
            && biases.len() == groups,
        "affine quantize: size mismatch"
    );
    let one = |(((v, c), s), b): GroupToQuantize<T>| {
        let [scale, bias] = quantize_group(v.iter().map(|x| x.widen()), bits, c);
        *s = T::narrow(scale);
        *b = T::narrow(bias);
    };
    if w.len() >= PARALLEL_VALUES {
        w.par_chunks(group)
            .zip(codes.par_chunks_mut(words))
            .zip(scales.par_iter_mut())
            .zip(biases.par_iter_mut())
            .for_each(one);
    } else {
        w.chunks(group)
            .zip(codes.chunks_mut(words))
            .zip(scales.iter_mut())
            .zip(biases.iter_mut())
            .for_each(one);
    }
}

/// Writes the codes of one group as f32 into `out` (`group` values).
#[inline]
pub(crate) fn unpack_group(codes: &[u32], bits: usize, out: &mut [f32]) {
    let mask = (1u32 << bits) - 1;
    for (word, vals) in codes.iter().zip(out.chunks_exact_mut(per_word(bits))) {
        for (i, v) in vals.iter_mut().enumerate() {
            *v = ((word >> (i * bits)) & mask) as f32;
        }
    }
}

/// The values `s * q + b` of `codes` (rows of groups as [`quantize`] writes them) into `out`,
/// computed in f32 and rounded once to `T`, as `mx.dequantize`.
///
/// Panics when the pair is not [`supports`]ed or the sizes disagree (callers validate).
pub fn dequantize<T: FloatElem<Acc = f32>>(
    codes: &[u32],
    scales: &[T],
    biases: &[T],
    group: usize,
    bits: usize,
    out: &mut [T],
) {
    assert!(supports(group, bits), "affine dequantize: unsupported group {group}, bits {bits}");
    let words = group / per_word(bits);
    let groups = scales.len();
    assert!(
        biases.len() == groups && codes.len() == groups * words && out.len() == groups * group,
        "affine dequantize: size mismatch"
    );
    let one = |(((c, s), b), o): GroupToDequantize<T>| {
        let mut q = [0f32; 128];
        unpack_group(c, bits, &mut q[..group]);
        let (s, b) = (s.widen(), b.widen());
        for (o, &q) in o.iter_mut().zip(&q[..group]) {
            *o = T::narrow(s * q + b);
        }
    };
    if out.len() >= PARALLEL_VALUES {
        codes
            .par_chunks(words)
            .zip(scales.par_iter())
            .zip(biases.par_iter())
            .zip(out.par_chunks_mut(group))
            .for_each(one);
    } else {
        codes.chunks(words).zip(scales).zip(biases).zip(out.chunks_mut(group)).for_each(one);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-checked groups: codes, scales and biases follow MLX's rule (values from
    /// `mx.quantize` on the same input).
    #[test]
    fn quantizes_a_ramp_and_constant_groups() {
        // 0, 1, ..., 31 with 4 bits: the edge is the maximum 31, step 31/15, and since
        // rint(31 / (-31/15)) = -15, the scale stays -31/15 with bias 31.
        let ramp: Vec<f32> = (0..32).map(|i| i as f32).collect();
        let (mut c, mut s, mut b) = ([0u32; 4], [0f32], [0f32]);
        quantize(&ramp, 32, 4, &mut c, &mut s, &mut b);
        assert_eq!((s[0], b[0]), (31.0 / -15.0, 31.0));
        let mut back = [0f32; 32];
        dequantize(&c, &s, &b, 32, 4, &mut back);
        for (x, y) in ramp.iter().zip(&back) {
            assert!((x - y).abs() <= 31.0 / 15.0 / 2.0 + 1e-5, "{x} vs {y}");
        }
        // The first value (0) has the largest code, 15, in the lowest 4 bits.
        assert_eq!(c[0] & 0xF, 15);
        // A constant group: step is the 1e-7 floor, negative, with the value as bias.
        let (mut c, mut s, mut b) = ([7u32; 4], [0f32], [0f32]);
        quantize(&[3.0f32; 32], 32, 4, &mut c, &mut s, &mut b);
        assert_eq!((c, s[0], b[0]), ([0; 4], -1e-7, 3.0));
        quantize(&[0.0f32; 32], 32, 4, &mut c, &mut s, &mut b);
        assert_eq!((c, s[0], b[0]), ([0; 4], -1e-7, 0.0));
    }

    /// Values round to the nearest step, except at the far end of the range: adjusting the
    /// scale so the edge is a whole number of steps can shorten the range by up to one step,
    /// and those values clamp to the last code (MLX's own round trip shows the same, up to
    /// 0.996 of a step). So the bound is one step, and half a step inside the range.
    #[test]
    fn round_trip_is_within_a_step_for_every_width() {
        let mut seed = 1u64;
        for bits in BITS {
            for group in GROUP_SIZES {
                let w: Vec<f32> = (0..4 * group)
                    .map(|_| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                        ((seed >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 1.5
                    })
                    .collect();
                let mut c = vec![0u32; 4 * group / per_word(bits)];
                let (mut s, mut b) = ([0f32; 4], [0f32; 4]);
                quantize(&w, group, bits, &mut c, &mut s, &mut b);
                let mut back = vec![0f32; w.len()];
                dequantize(&c, &s, &b, group, bits, &mut back);
                for (i, (x, y)) in w.iter().zip(&back).enumerate() {
                    let (step, bias) = (s[i / group].abs(), b[i / group]);
                    let bound = if (x - bias).abs() < (1 << bits) as f32 / 2.0 * step {
                        step / 2.0
                    } else {
                        step
                    };
                    assert!((x - y).abs() <= bound + 1e-5, "bits {bits} [{i}]: {x} vs {y}");
                }
            }
        }
    }
}
