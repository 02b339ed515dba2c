//! Products with affine-quantized matrices ([`crate::affine`]), as `mx.quantized_matmul`,
//! without expanding the whole matrix to float.
//!
//! With `W` transposed (`x @ W^T`, rows of `W` quantized along `k`, the layout of a linear
//! layer) and few activation rows, each weight row is dotted with the activations straight
//! from its codes: per group, `s * sum(x q) + b * sum(x)`, the activations' group sums taken
//! once. That runs on AVX2 + FMA when the CPU has them (codes widened eight at a time), else
//! on a portable loop. Many activation rows instead expand one tile of weight rows at a time
//! into a scratch buffer and multiply with the f32 GEMM, so the expansion is paid once per
//! weight for all rows. Without the transpose (`x @ W`), tiles of `W`'s rows are expanded
//! and multiplied the same way.

use crate::affine::{per_word, supports, unpack_group};
use crate::matmul::{matmul_f32_one_thread, place_column_blocks, Gemm, MatRef};
use crate::scalar::FloatElem;
use rayon::prelude::*;

/// Activation rows up to which the transposed product dots rows of codes; above, it expands
/// tiles for the GEMM.
const DOT_ROWS: usize = 8;
/// Activation rows a dot kernel takes at once (each weight group unpacked once for all).
const ROWS: usize = 4;
/// Multiply-adds below which a product runs on one thread.
const PARALLEL_WORK: usize = 1 << 17;
/// Bytes of f32 a scratch tile of expanded weights aims at (fits L2).
const TILE_BYTES: usize = 1 << 18;

/// One quantized matrix: `rows` rows of `cols` values, `cols / group` groups each.
#[derive(Clone, Copy)]
pub struct Quantized<'a, T> {
    pub codes: &'a [u32],
    pub scales: &'a [T],
    pub biases: &'a [T],
    pub group: usize,
    pub bits: usize,
}

impl<T: FloatElem<Acc = f32>> Quantized<'_, T> {
    fn words_per_row(&self, cols: usize) -> usize {
        cols / per_word(self.bits)
    }

    /// Expands rows `r0..r0 + out.len() / cols` into `out` (f32, row-major).
    fn expand_rows(&self, r0: usize, cols: usize, out: &mut [f32]) {
        let (wpr, gpr) = (self.words_per_row(cols), cols / self.group);
        let words = self.group / per_word(self.bits);
        for (i, row) in out.chunks_exact_mut(cols).enumerate() {
            let r = r0 + i;
            let codes = &self.codes[r * wpr..][..wpr];
            for (g, vals) in row.chunks_exact_mut(self.group).enumerate() {
                unpack_group(&codes[g * words..][..words], self.bits, vals);
                let (s, b) = (self.scales[r * gpr + g].widen(), self.biases[r * gpr + g].widen());
                vals.iter_mut().for_each(|v| *v = s * *v + b);
            }
        }
    }
}

/// Dots `R` activation rows with weight rows: `out[j * ostride + r]` = row `r` of `x` . weight
/// row `j`, for every weight row of `codes` (`k / per_word` words each) with their f32 `sb`
/// (scale, bias per group); `xsum` holds each activation row's group sums.
type DotKernel = fn(
    x: &[f32],
    xsum: &[f32],
    codes: &[u32],
    sb: &[[f32; 2]],
    k: usize,
    group: usize,
    out: &mut [f32],
    ostride: usize,
);

/// The portable kernel: each group's codes are unpacked to f32, then dotted in eight lanes
/// (which the compiler vectorises).
#[allow(clippy::too_many_arguments)]
fn dot_portable<const BITS: usize>(
    x: &[f32],
    xsum: &[f32],
    codes: &[u32],
    sb: &[[f32; 2]],
    k: usize,
    group: usize,
    out: &mut [f32],
    ostride: usize,
) {
    let (wpr, groups, rows) = (k / per_word(BITS), k / group, x.len() / k);
    let words = group / per_word(BITS);
    let mut q = [0f32; 128];
    for (j, row) in codes.chunks_exact(wpr).enumerate() {
        let mut acc = [0f32; ROWS];
        for g in 0..groups {
            unpack_group(&row[g * words..][..words], BITS, &mut q[..group]);
            let [s, b] = sb[j * groups + g];
            for (r, acc) in acc.iter_mut().enumerate().take(rows) {
                let xg = &x[r * k + g * group..][..group];
                let mut lanes = [0f32; 8];
                for (qc, xc) in q[..group].chunks_exact(8).zip(xg.chunks_exact(8)) {
                    for l in 0..8 {
                        lanes[l] += qc[l] * xc[l];
                    }
                }
                *acc += s * lanes.iter().sum::<f32>() + b * xsum[r * groups + g];
            }
        }
        out[j * ostride..][..rows].copy_from_slice(&acc[..rows]);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! The dot kernel on AVX2 + FMA: eight codes at a time are widened to f32 lanes
    //! (shifted out of a broadcast word for 2 and 4 bits, zero-extended bytes for 8) and
    //! multiplied into a per-group vector sum, scaled once per group. `C` weight rows at a
    //! time give `R * C` independent sums to hide the FMA latency.
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }

    /// Codes `8 i .. 8 i + 8` of a row as f32 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn codes8<const BITS: usize>(row: &[u32], i: usize) -> __m256 {
        let v = match BITS {
            8 => {
                let bytes: &[u8] = bytemuck::cast_slice(&row[2 * i..][..2]);
                // SAFETY: `bytes` is 8 readable bytes; loadl reads exactly 8, unaligned.
                let lo = unsafe { _mm_loadl_epi64(bytes.as_ptr() as *const __m128i) };
                _mm256_cvtepu8_epi32(lo)
            }
            4 => {
                let w = _mm256_set1_epi32(row[i] as i32);
                let v = _mm256_srlv_epi32(w, _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
                _mm256_and_si256(v, _mm256_set1_epi32(0xF))
            }
            _ => {
                let half = (row[i / 2] >> (16 * (i % 2))) as i32;
                let w = _mm256_set1_epi32(half);
                let v = _mm256_srlv_epi32(w, _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14));
                _mm256_and_si256(v, _mm256_set1_epi32(0x3))
            }
        };
        _mm256_cvtepi32_ps(v)
    }

    /// See [`super::DotKernel`]; `R` activation rows (at least the rows of `x`), `C` weight
    /// rows per step.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn dot<const BITS: usize, const R: usize, const C: usize>(
        x: &[f32],
        xsum: &[f32],
        codes: &[u32],
        sb: &[[f32; 2]],
        k: usize,
        group: usize,
        out: &mut [f32],
        ostride: usize,
    ) {
        let wpr = k * BITS / 32;
        let (groups, n, rows) = (k / group, codes.len() / wpr, x.len() / k);
        debug_assert!(rows == R);
        let mut j = 0;
        while j < n {
            let c_here = C.min(n - j);
            if c_here < C {
                // The last rows, one at a time.
                return dot::<BITS, R, 1>(
                    x,
                    xsum,
                    &codes[j * wpr..],
                    &sb[j * groups..],
                    k,
                    group,
                    &mut out[j * ostride..],
                    ostride,
                );
            }
            let wrows: [&[u32]; C] = std::array::from_fn(|c| &codes[(j + c) * wpr..][..wpr]);
            let mut acc = [[_mm256_setzero_ps(); R]; C];
            let mut off = [[0f32; R]; C];
            for g in 0..groups {
                let mut gacc = [[_mm256_setzero_ps(); R]; C];
                for t in 0..group / 8 {
                    let at = g * group + 8 * t;
                    // SAFETY: `at + 8 <= k` and each of the R rows of `x` holds k values;
                    // loadu has no alignment requirement.
                    let xs: [__m256; R] = std::array::from_fn(|r| unsafe {
                        _mm256_loadu_ps(x[r * k + at..][..8].as_ptr())
                    });
                    for c in 0..C {
                        let q = codes8::<BITS>(wrows[c], at / 8);
                        for r in 0..R {
                            gacc[c][r] = _mm256_fmadd_ps(q, xs[r], gacc[c][r]);
                        }
                    }
                }
                for c in 0..C {
                    let [s, b] = sb[(j + c) * groups + g];
                    for r in 0..R {
                        acc[c][r] = _mm256_fmadd_ps(_mm256_set1_ps(s), gacc[c][r], acc[c][r]);
                        off[c][r] += b * xsum[r * groups + g];
                    }
                }
            }
            for c in 0..C {
                for r in 0..R {
                    out[(j + c) * ostride + r] = hsum(acc[c][r]) + off[c][r];
                }
            }
            j += C;
        }
    }
}

/// The portable kernel for `bits`.
fn portable(bits: usize) -> DotKernel {
    match bits {
        2 => dot_portable::<2>,
        4 => dot_portable::<4>,
        _ => dot_portable::<8>,
    }
}

/// The AVX2 kernel for `bits` and `rows` activation rows, when the CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
fn simd(bits: usize, rows: usize) -> Option<DotKernel> {
    if !(std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"))
    {
        return None;
    }
    macro_rules! pick {
        ($bits:literal) => {
            // SAFETY (each closure): AVX2 and FMA were detected above, the only features
            // the kernel enables; it is otherwise safe code.
            match rows {
                1 => |x, s, c, sb, k, g, o, os| unsafe {
                    avx2::dot::<$bits, 1, 4>(x, s, c, sb, k, g, o, os)
                },
                2 => |x, s, c, sb, k, g, o, os| unsafe {
                    avx2::dot::<$bits, 2, 2>(x, s, c, sb, k, g, o, os)
                },
                3 => |x, s, c, sb, k, g, o, os| unsafe {
                    avx2::dot::<$bits, 3, 1>(x, s, c, sb, k, g, o, os)
                },
                _ => |x, s, c, sb, k, g, o, os| unsafe {
                    avx2::dot::<$bits, 4, 1>(x, s, c, sb, k, g, o, os)
                },
            }
        };
    }
    Some(match bits {
        2 => pick!(2),
        4 => pick!(4),
        _ => pick!(8),
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn simd(_bits: usize, _rows: usize) -> Option<DotKernel> {
    None
}

/// The fastest dot kernel for `rows` (1 to [`ROWS`]) activation rows.
fn kernel(bits: usize, rows: usize) -> DotKernel {
    simd(bits, rows).unwrap_or_else(|| portable(bits))
}

/// Checks the sizes of a product with a `(rows, cols)` quantized matrix.
fn check<T>(w: &Quantized<T>, rows: usize, cols: usize) {
    assert!(supports(w.group, w.bits), "quantized matmul: unsupported group/bits");
    assert!(
        cols.is_multiple_of(w.group)
            && w.codes.len() == rows * cols / per_word(w.bits)
            && w.scales.len() == rows * cols / w.group
            && w.biases.len() == w.scales.len(),
        "quantized matmul: size mismatch"
    );
}

/// `out (m x n) = x (m x k) @ W^T` for a quantized `W` of `n` rows of `k` values, as
/// `mx.quantized_matmul(..., transpose=True)`.
///
/// Panics when the sizes disagree or the pair is unsupported (callers validate).
pub fn matmul_t<T: FloatElem<Acc = f32>>(
    out: &mut [f32],
    x: &[f32],
    w: Quantized<T>,
    m: usize,
    n: usize,
    k: usize,
) {
    check(&w, n, k);
    assert!(x.len() == m * k && out.len() == m * n, "quantized matmul: size mismatch");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        out.fill(0.0);
        return;
    }
    if m > DOT_ROWS {
        return matmul_t_tiles(out, x, w, m, n, k);
    }
    let groups = k / w.group;
    let xsum: Vec<f32> = x.chunks_exact(w.group).map(|g| g.iter().sum()).collect();
    let wpr = w.words_per_row(k);
    // Each task dots a run of weight rows with all activation rows, writing (row, m) pairs.
    let task = |j0: usize, codes: &[u32], o: &mut [f32]| {
        let rows = codes.len() / wpr;
        let sb: Vec<[f32; 2]> = (j0 * groups..(j0 + rows) * groups)
            .map(|i| [w.scales[i].widen(), w.biases[i].widen()])
            .collect();
        for r0 in (0..m).step_by(ROWS) {
            let r = ROWS.min(m - r0);
            let xs = &x[r0 * k..(r0 + r) * k];
            let ss = &xsum[r0 * groups..(r0 + r) * groups];
            kernel(w.bits, r)(xs, ss, codes, &sb, k, w.group, &mut o[r0..], m);
        }
    };
    let mut by_row = vec![0f32; if m == 1 { 0 } else { n * m }];
    let target: &mut [f32] = if m == 1 { &mut *out } else { &mut by_row };
    if m * n * k < PARALLEL_WORK {
        task(0, w.codes, target);
    } else {
        let rows = n.div_ceil(4 * rayon::current_num_threads()).next_multiple_of(4);
        target
            .par_chunks_mut(rows * m)
            .zip(w.codes.par_chunks(rows * wpr))
            .enumerate()
            .for_each(|(t, (o, c))| task(t * rows, c, o));
    }
    if m > 1 {
        for (j, vals) in by_row.chunks_exact(m).enumerate() {
            for (r, &v) in vals.iter().enumerate() {
                out[r * n + j] = v;
            }
        }
    }
}

/// Weight rows per expanded tile for rows of `cols` values.
fn tile_rows(cols: usize) -> usize {
    (TILE_BYTES / 4 / cols.max(1)).clamp(8, 512)
}

/// [`matmul_t`] for many activation rows: tiles of weight rows expanded, then the GEMM.
fn matmul_t_tiles<T: FloatElem<Acc = f32>>(
    out: &mut [f32],
    x: &[f32],
    w: Quantized<T>,
    m: usize,
    n: usize,
    k: usize,
) {
    let tile = tile_rows(k);
    let parts: Vec<Vec<f32>> = (0..n.div_ceil(tile))
        .into_par_iter()
        .map(|t| {
            let (j0, rows) = (t * tile, tile.min(n - t * tile));
            let mut wt = vec![0f32; rows * k];
            w.expand_rows(j0, k, &mut wt);
            let mut part = vec![0f32; m * rows];
            // x (m x k) @ tile^T (k x rows): the tile read with its row and column swapped;
            // on this thread alone, as the tiles already share the threads.
            let b = MatRef { data: &wt[..], offset: 0, row_stride: 1, col_stride: k as isize };
            matmul_f32_one_thread(&mut part, MatRef::dense(x, k), b, m, rows, k);
            part
        })
        .collect();
    place_column_blocks(out, &parts, m, n);
}

/// `out (m x n) = x (m x k) @ W` for a quantized `W` of `k` rows of `n` values, as
/// `mx.quantized_matmul(..., transpose=False)`: tiles of `W`'s rows are expanded and their
/// products summed.
///
/// Panics when the sizes disagree or the pair is unsupported (callers validate).
pub fn matmul<T: FloatElem<Acc = f32>>(
    out: &mut [f32],
    x: &[f32],
    w: Quantized<T>,
    m: usize,
    n: usize,
    k: usize,
) {
    check(&w, k, n);
    assert!(x.len() == m * k && out.len() == m * n, "quantized matmul: size mismatch");
    out.fill(0.0);
    if m == 0 || n == 0 {
        return;
    }
    let tile = tile_rows(n);
    let (mut wt, mut part) = (vec![0f32; tile.min(k) * n], vec![0f32; m * n]);
    for k0 in (0..k).step_by(tile) {
        let rows = tile.min(k - k0);
        w.expand_rows(k0, n, &mut wt[..rows * n]);
        // x[:, k0..k0 + rows] (m x rows) @ tile (rows x n).
        let a = MatRef { data: x, offset: k0, row_stride: k as isize, col_stride: 1 };
        f32::matmul(&mut part, a, MatRef::dense(&wt[..rows * n], n), m, n, rows);
        out.iter_mut().zip(&part).for_each(|(o, p)| *o += p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::affine::{dequantize, quantize};
    use crate::quantized::tests::uniform;
    use half::bf16;

    fn values(count: usize, seed: &mut u64) -> Vec<f32> {
        (0..count).map(|_| uniform(seed)).collect()
    }

    /// A random (rows x cols) matrix quantized, and its dequantized values.
    fn quantized(
        rows: usize,
        cols: usize,
        group: usize,
        bits: usize,
        seed: &mut u64,
    ) -> (Vec<u32>, Vec<bf16>, Vec<bf16>, Vec<f32>) {
        let w: Vec<bf16> = values(rows * cols, seed).into_iter().map(bf16::from_f32).collect();
        let mut c = vec![0u32; rows * cols / per_word(bits)];
        let (mut s, mut b) =
            (vec![bf16::ZERO; rows * cols / group], vec![bf16::ZERO; rows * cols / group]);
        quantize(&w, group, bits, &mut c, &mut s, &mut b);
        // The reference values in f32, as the kernels compute them (not rounded to bf16).
        let widen = |v: &[bf16]| v.iter().map(|x| x.to_f32()).collect::<Vec<f32>>();
        let mut d = vec![0f32; w.len()];
        dequantize(&c, &widen(&s), &widen(&b), group, bits, &mut d);
        (c, s, b, d)
    }

    /// Every path (the selected and portable dot kernels for 1 to 8 rows, the tiles for
    /// more, serial and parallel, both orientations) equals the dense product with the
    /// dequantized matrix.
    #[test]
    fn products_match_the_dequantized_matrix() {
        let mut seed = 3;
        for bits in [2, 4, 8] {
            for (m, n, k, group) in [
                (1, 5, 64, 32),
                (3, 70, 128, 64),
                (1, 300, 512, 128),
                (6, 40, 256, 32),
                (20, 33, 128, 64),
                (1, 64, 1024, 64),
            ] {
                let (c, s, b, wd) = quantized(n, k, group, bits, &mut seed);
                let w = Quantized { codes: &c, scales: &s, biases: &b, group, bits };
                let x = values(m * k, &mut seed);
                let mut out = vec![0f32; m * n];
                matmul_t(&mut out, &x, w, m, n, k);
                let xsum: Vec<f32> = x[..k].chunks(group).map(|g| g.iter().sum()).collect();
                let sb: Vec<[f32; 2]> =
                    s.iter().zip(&b).map(|(s, b)| [s.to_f32(), b.to_f32()]).collect();
                let mut portable_out = vec![0f32; n];
                portable(bits)(&x[..k], &xsum, &c, &sb, k, group, &mut portable_out, 1);
                for i in 0..m {
                    for j in 0..n {
                        let r: f32 = (0..k).map(|t| x[i * k + t] * wd[j * k + t]).sum();
                        let tol = 1e-4 * (1.0 + r.abs()) * (k as f32).sqrt();
                        let got = out[i * n + j];
                        assert!(
                            (got - r).abs() <= tol,
                            "bits {bits} {m}x{n}x{k} [{i},{j}]: {got} vs {r}"
                        );
                        assert!(i > 0 || (portable_out[j] - r).abs() <= tol, "portable [{j}]");
                    }
                }
                // x (m x n) @ W (n x k), the matrix quantized along k.
                let xt = values(m * n, &mut seed);
                let mut out = vec![0f32; m * k];
                matmul(&mut out, &xt, w, m, k, n);
                for i in 0..m {
                    for j in 0..k {
                        let r: f32 = (0..n).map(|t| xt[i * n + t] * wd[t * k + j]).sum();
                        let tol = 1e-4 * (1.0 + r.abs()) * (n as f32).sqrt();
                        assert!((out[i * k + j] - r).abs() <= tol, "bits {bits} x@W [{i},{j}]");
                    }
                }
            }
        }
    }
}
