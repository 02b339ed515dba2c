//! Quantization of f32 values to GGML blocks (Q8_0, Q4_0, Q4_1, Q4_K, Q6_K), following
//! llama.cpp's reference quantizers (`quantize_row_*_ref` in `ggml-quants.c`, the ones it uses
//! without an importance matrix): the same scale searches, the same rounding (`nearest_int`
//! rounds half to even, `roundf` half away from zero), the same code packing.

use bytemuck::Zeroable;
use half::f16;
use rayon::prelude::*;

use crate::ggml::{
    half, scale_min_k4, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ6K, BlockQ8_0, GgmlType,
};
use crate::strided::PARALLEL_THRESHOLD;

/// Below this, a block's values count as all zero (llama.cpp's `GROUP_MAX_EPS`).
const GROUP_MAX_EPS: f32 = 1e-15;

/// True for the types [`quantize`] writes.
pub fn can_quantize(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q4_K | GgmlType::Q6_K)
}

/// Quantizes `x` (whole blocks of `ty`) into `out` (`x.len() / block_size` blocks). Returns
/// `false` when `ty` cannot be written ([`can_quantize`]) or the sizes disagree.
pub fn quantize(ty: GgmlType, x: &[f32], out: &mut [u8]) -> bool {
    let (bs, ts) = (ty.block_size(), ty.type_size());
    if !can_quantize(ty) || !x.len().is_multiple_of(bs) || out.len() != x.len() / bs * ts {
        return false;
    }
    let one: fn(&[f32], &mut [u8]) = match ty {
        GgmlType::Q8_0 => |x, o| *bytemuck::from_bytes_mut(o) = q8_0(x),
        GgmlType::Q4_0 => |x, o| *bytemuck::from_bytes_mut(o) = q4_0(x),
        GgmlType::Q4_1 => |x, o| *bytemuck::from_bytes_mut(o) = q4_1(x),
        GgmlType::Q4_K => |x, o| *bytemuck::from_bytes_mut(o) = q4_k(x),
        _ => |x, o| *bytemuck::from_bytes_mut(o) = q6_k(x),
    };
    if x.len() >= PARALLEL_THRESHOLD {
        x.par_chunks_exact(bs).zip(out.par_chunks_exact_mut(ts)).for_each(|(x, o)| one(x, o));
    } else {
        x.chunks_exact(bs).zip(out.chunks_exact_mut(ts)).for_each(|(x, o)| one(x, o));
    }
    true
}

/// llama.cpp's `nearest_int`: round half to even (its float trick, exact below 2^22).
fn nearest_int(v: f32) -> i32 {
    v.round_ties_even() as i32
}

fn f16_bytes(v: f32) -> [u8; 2] {
    f16::from_f32(v).to_le_bytes()
}

/// The value of largest magnitude (the first of equal ones), with its magnitude.
fn signed_max(x: &[f32]) -> (f32, f32) {
    x.iter().fold((0f32, 0f32), |(m, a), &v| if v.abs() > a { (v, v.abs()) } else { (m, a) })
}

fn q8_0(x: &[f32]) -> BlockQ8_0 {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    BlockQ8_0 { d: f16_bytes(d), qs: std::array::from_fn(|j| (x[j] * id).round() as i8) }
}

/// Codes `(j, j + 16)` of a 32-value block as one byte, as Q4_0 and Q4_1 pack them.
fn nibbles(code: impl Fn(f32) -> u8, x: &[f32]) -> [u8; 16] {
    std::array::from_fn(|j| code(x[j]) | code(x[j + 16]) << 4)
}

fn q4_0(x: &[f32]) -> BlockQ4_0 {
    let (max, _) = signed_max(x);
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    // `as i8` truncates toward zero, as C's `(int8_t)` conversion.
    let code = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
    BlockQ4_0 { d: f16_bytes(d), qs: nibbles(code, x) }
}

fn q4_1(x: &[f32]) -> BlockQ4_1 {
    let min = x.iter().fold(f32::MAX, |m, &v| if v < m { v } else { m });
    let max = x.iter().fold(-f32::MAX, |m, &v| if v > m { v } else { m });
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let code = |v: f32| (((v - min) * id + 0.5) as i8).min(15) as u8;
    BlockQ4_1 { d: f16_bytes(d), m: f16_bytes(min), qs: nibbles(code, x) }
}

/// llama.cpp's `make_qkx2_quants` (squared error): codes `l` in `0..=nmax` and `(scale, m)`
/// for `x ~ scale * l - m`, minimising the `w`-weighted error over `nstep + 1` trial scales
/// from `(nmax + rmin) / range` in steps of `rdelta / range`.
fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    w: &[f32],
    l: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> (f32, f32) {
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = w[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..x.len() {
        min = if x[i] < min { x[i] } else { min };
        max = if x[i] > max { x[i] } else { max };
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.fill(0);
        return (0.0, -min);
    }
    // Later trials use the offset of the best fit so far, as llama.cpp's loop does.
    let code = |iscale: f32, v: f32, min: f32| nearest_int(iscale * (v - min)).clamp(0, nmax) as u8;
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..x.len() {
        l[i] = code(iscale, x[i], min);
        let diff = scale * l[i] as f32 + min - x[i];
        best_error += w[i] * (diff * diff);
    }
    let mut laux = [0u8; 32];
    let laux = &mut laux[..x.len()];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..x.len() {
            laux[i] = code(iscale, x[i], min);
            let li = laux[i] as f32;
            sum_l += w[i] * li;
            sum_l2 += w[i] * li * li;
            sum_xl += w[i] * li * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0f32;
            for i in 0..x.len() {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                cur_error += w[i] * (diff * diff);
            }
            if cur_error < best_error {
                l.copy_from_slice(laux);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

fn q4_k(x: &[f32]) -> BlockQ4K {
    let mut l = [0u8; 256];
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    for (j, xs) in x.chunks_exact(32).enumerate() {
        let sum_x2: f32 = xs.iter().fold(0.0, |s, v| s + v * v);
        let av_x = (sum_x2 / 32.0).sqrt();
        let w: [f32; 32] = std::array::from_fn(|i| av_x + xs[i].abs());
        let lj = &mut l[32 * j..][..32];
        (scales[j], mins[j]) = make_qkx2_quants(15, xs, &w, lj, -1.0, 0.1, 20);
    }
    let max_scale = scales.iter().fold(0f32, |m, &s| if s > m { s } else { m });
    let max_min = mins.iter().fold(0f32, |m, &s| if s > m { s } else { m });
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut b = BlockQ4K::zeroed();
    for j in 0..8 {
        // Wrapping to u8 before the clamp, as C's conversion to `uint8_t`.
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            b.scales[j] = ls;
            b.scales[j + 4] = lm;
        } else {
            b.scales[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            b.scales[j - 4] |= (ls >> 4) << 6;
            b.scales[j] |= (lm >> 4) << 6;
        }
    }
    b.d = f16_bytes(max_scale / 63.0);
    b.dmin = f16_bytes(max_min / 63.0);
    // Codes again for the rounded scales (sub-blocks of scale zero keep the search's codes).
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &b.scales);
        let d = half(b.d) * sc as f32;
        if d == 0.0 {
            continue;
        }
        let dm = half(b.dmin) * m as f32;
        for i in 32 * j..32 * j + 32 {
            l[i] = nearest_int((x[i] + dm) / d).clamp(0, 15) as u8;
        }
    }
    for c in 0..4 {
        for i in 0..32 {
            b.qs[32 * c + i] = l[64 * c + i] | l[64 * c + i + 32] << 4;
        }
    }
    b
}

/// llama.cpp's `make_qx_quants` weighted by `x^2` (`rmse_type` 1): codes `l + nmax` with `l`
/// in `-nmax..nmax` and the scale `s` for `x ~ s * l`, the best of 19 trial scales.
fn make_qx_quants(nmax: i32, x: &[f32], l: &mut [u8]) -> f32 {
    let (max, amax) = signed_max(x);
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let code = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    // Weighted sums (sum w x l, sum w l^2) with `w = x^2` for the codes of `iscale`.
    let sums = |iscale: f32| {
        x.iter().fold((0f32, 0f32), |(lx, l2), &v| {
            let (w, q) = (v * v, code(iscale, v) as f32);
            (lx + w * v * q, l2 + w * q * q)
        })
    };
    let mut iscale = -(nmax as f32) / max;
    let set = |iscale: f32, l: &mut [u8]| {
        l.iter_mut().zip(x).for_each(|(l, &v)| *l = (code(iscale, v) + nmax) as u8)
    };
    set(iscale, l);
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&is| is != 0) {
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            set(iscale, l);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

fn q6_k(x: &[f32]) -> BlockQ6K {
    let mut l = [0u8; 256];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
    for (ib, xs) in x.chunks_exact(16).enumerate() {
        scales[ib] = make_qx_quants(32, xs, &mut l[16 * ib..][..16]);
        if scales[ib].abs() > max_abs_scale {
            max_abs_scale = scales[ib].abs();
            max_scale = scales[ib];
        }
    }
    let mut b = BlockQ6K::zeroed();
    if max_abs_scale < GROUP_MAX_EPS {
        return b;
    }
    let iscale = -128.0 / max_scale;
    b.d = f16_bytes(1.0 / iscale);
    for (ib, scale) in scales.into_iter().enumerate() {
        b.scales[ib] = nearest_int(iscale * scale).min(127) as i8;
        let d = half(b.d) * b.scales[ib] as f32;
        if d == 0.0 {
            continue;
        }
        for i in 16 * ib..16 * ib + 16 {
            l[i] = (nearest_int(x[i] / d).clamp(-32, 31) + 32) as u8;
        }
    }
    for h in 0..2 {
        let (ql, qh, l) = (&mut b.ql[64 * h..], &mut b.qh[32 * h..], &l[128 * h..]);
        for i in 0..32 {
            ql[i] = (l[i] & 0xF) | (l[i + 64] & 0xF) << 4;
            ql[i + 32] = (l[i + 32] & 0xF) | (l[i + 96] & 0xF) << 4;
            qh[i] =
                l[i] >> 4 | (l[i + 32] >> 4) << 2 | (l[i + 64] >> 4) << 4 | (l[i + 96] >> 4) << 6;
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ggml::dequantize;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|i| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let u = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                // Blocks of different magnitudes and offsets, some all positive.
                u * (1.0 + (i / 256 % 3) as f32) + if i / 512 % 2 == 1 { 2.0 } else { 0.0 }
            })
            .collect()
    }

    /// Every value comes back within a fraction of its block's largest magnitude: half a
    /// step of the codes plus the f16 rounding of the scales (and, for the K-quants, the
    /// rounding of the sub-block scales to 6 or 8 bits). Q4_0 maps the signed maximum to
    /// code -8, so the opposite extreme may clip to 7: a whole step, 1/8 of the maximum.
    #[test]
    fn round_trip_is_within_a_fraction_of_the_block_maximum() {
        let x = values(4096, 3);
        for (ty, frac) in [
            (GgmlType::Q8_0, 1.0 / 254.0 + 1e-3),
            (GgmlType::Q4_0, 1.0 / 8.0 + 1e-3),
            (GgmlType::Q4_1, 1.0 / 15.0 + 1e-3),
            (GgmlType::Q4_K, 0.1),
            (GgmlType::Q6_K, 1.0 / 32.0),
        ] {
            let mut q = vec![0u8; x.len() / ty.block_size() * ty.type_size()];
            assert!(quantize(ty, &x, &mut q), "{ty:?}");
            let mut back = vec![0f32; x.len()];
            assert!(dequantize(ty, &q, &mut back), "{ty:?}");
            for (xb, bb) in x.chunks(ty.block_size()).zip(back.chunks(ty.block_size())) {
                let range = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
                let err = xb.iter().zip(bb).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(err <= frac * range, "{ty:?}: error {err} for block max {range}");
            }
        }
    }

    #[test]
    fn zero_blocks_quantize_to_zero_and_bad_sizes_are_refused() {
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q4_K, GgmlType::Q6_K] {
            let mut q = vec![0xAAu8; ty.type_size()];
            assert!(quantize(ty, &vec![0.0; ty.block_size()], &mut q));
            let mut back = vec![1f32; ty.block_size()];
            assert!(dequantize(ty, &q, &mut back));
            assert!(back.iter().all(|&v| v == 0.0), "{ty:?}");
            assert!(!quantize(ty, &vec![0.0; ty.block_size() + 1], &mut q), "{ty:?}");
        }
        assert!(!quantize(GgmlType::Q5_K, &[0.0; 256], &mut [0u8; 176]));
    }
}
