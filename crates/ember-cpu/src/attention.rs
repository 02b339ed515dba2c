//! Fused scaled dot-product attention: per key/value head, blocks of query rows go through
//! `S = Q K^T` (GEMM), a masked softmax of each row of `S` in place, and `O = P V` (GEMM),
//! so the full score matrix never exists. The query heads that share a key/value head
//! (grouped-query attention) are stacked into one block, and causal blocks skip the keys no
//! row of the block can see. Blocks of a few rows (decode steps) skip the GEMMs: `few_rows`
//! reads the key and value rows in place.
//!
//! Keys and values are in the compute type, or f16 under f32 attention (a half-precision KV
//! cache, as llama.cpp keeps by default): `few_rows` widens them as it reads them, the GEMM
//! path widens a block's rows into scratch first.

use crate::fast::{max_of, Compute, FastFloat};
use crate::matmul::{Gemm, MatRef};
use crate::strided::View;
use few_rows::Rows;
use half::f16;
use rayon::prelude::*;

mod few_rows;

/// Sizes and options of one attention call: q is (B, Hq, Lq, D), k (B, Hkv, Lk, D),
/// v (B, Hkv, Lk, Dv), out (B, Hq, Lq, Dv).
#[derive(Clone, Copy, Debug)]
pub struct Attention {
    pub batch: usize,
    pub q_heads: usize,
    pub kv_heads: usize,
    pub q_len: usize,
    pub kv_len: usize,
    pub head_dim: usize,
    pub v_dim: usize,
    pub scale: f64,
    /// Query `i` sees keys `j <= i + kv_len - q_len`.
    pub causal: bool,
}

/// An explicit mask, viewed with shape (B, Hq, Lq, Lk) (broadcast by zero strides).
#[derive(Clone, Copy, Debug)]
pub enum Mask<'a, T> {
    None,
    /// `false` hides a key.
    Keep(View<'a, bool>),
    /// Added to the scaled scores.
    Add(View<'a, T>),
}

/// The score a hidden key gets: the lowest finite f32, as MLX's `finfo.min`, so that a row
/// with every key hidden averages all values instead of producing NaN.
const HIDDEN: f64 = -(f32::MAX as f64);

/// Query rows per block, sized so that a block of scores stays around 256 KiB of f32.
fn block_rows(kv_len: usize) -> usize {
    ((1 << 16) / kv_len.max(1)).clamp(16, 256)
}

/// The element type of keys and values under attention computed in `T`.
pub trait KvElement<T>: Copy + Send + Sync {
    fn widen(self) -> T;
    /// `dst = src` widened.
    fn widen_row(src: &[Self], dst: &mut [T]) {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d = s.widen());
    }
    /// The elements as `T`, when they are `T` (read in place).
    fn as_compute(data: &[Self]) -> Option<&[T]>;
    /// The elements as f16, when they are f16.
    fn as_f16(data: &[Self]) -> Option<&[f16]>;
}

impl<T: Compute> KvElement<T> for T {
    fn widen(self) -> T {
        self
    }
    fn as_compute(data: &[T]) -> Option<&[T]> {
        Some(data)
    }
    fn as_f16(_: &[T]) -> Option<&[f16]> {
        None
    }
}

impl KvElement<f32> for f16 {
    fn widen(self) -> f32 {
        self.to_f32()
    }
    fn widen_row(src: &[f16], dst: &mut [f32]) {
        f16::widen_slice(src, dst)
    }
    fn as_compute(_: &[f16]) -> Option<&[f32]> {
        None
    }
    fn as_f16(data: &[f16]) -> Option<&[f16]> {
        Some(data)
    }
}

#[derive(Default)]
struct Scratch<T> {
    scores: Vec<T>,
    inv_sum: Vec<T>,
    /// A block's keys and values widened to `T`, when they are stored narrower.
    keys: Vec<T>,
    values: Vec<T>,
}

/// Computes attention into `out` (contiguous). `q` is contiguous; `k` and `v` are any strided
/// 4-d views. Panics if the views disagree with `a`.
pub fn attention<T: Gemm + Compute, KV: KvElement<T>>(
    out: &mut [T],
    q: &[T],
    k: View<'_, KV>,
    v: View<'_, KV>,
    mask: Mask<'_, T>,
    a: &Attention,
) {
    let rep = a.q_heads / a.kv_heads;
    let group_rows = rep * a.q_len;
    let out = &mut out[..a.batch * a.q_heads * a.q_len * a.v_dim];
    assert!(q.len() >= a.batch * a.q_heads * a.q_len * a.head_dim, "queries too small");
    if out.is_empty() {
        return;
    }
    let bq = block_rows(a.kv_len);
    let block = |g: usize, blk: usize, o: &mut [T], s: &mut Scratch<T>| {
        attend_block(o, q, k, v, mask, a, g, blk * bq, s)
    };
    let group_len = group_rows * a.v_dim;
    // Multiply-adds. A decode step's attention (a graph of hundreds of ops, whose evaluation
    // keeps the other workers polling for work) hands its groups over in about a microsecond:
    // worth it from ~10 µs of work, where SmolLM2's 9 query heads reach ~120 positions.
    let work = out.len() / a.v_dim * a.kv_len * (a.head_dim + a.v_dim);
    if work >= 1 << 17 {
        out.par_chunks_mut(group_len).enumerate().for_each(|(g, og)| {
            og.par_chunks_mut(bq * a.v_dim)
                .enumerate()
                .for_each_init(Scratch::default, |s, (blk, o)| block(g, blk, o, s));
        });
    } else {
        let mut s = Scratch::default();
        for (g, og) in out.chunks_mut(group_len).enumerate() {
            for (blk, o) in og.chunks_mut(bq * a.v_dim).enumerate() {
                block(g, blk, o, &mut s);
            }
        }
    }
}

/// Element offset of index `(i0, i1, ...)` in a view.
fn at<T: Copy>(x: &View<'_, T>, idx: [usize; 3]) -> isize {
    x.offset as isize + idx.iter().zip(x.strides).map(|(&i, &s)| i as isize * s).sum::<isize>()
}

/// One block of stacked query rows `first..` of key/value group `g` (batch `g / Hkv`,
/// key/value head `g % Hkv`); row `r` of the group is query head `r / Lq`, position `r % Lq`.
#[allow(clippy::too_many_arguments)]
fn attend_block<T: Gemm + Compute, KV: KvElement<T>>(
    out: &mut [T],
    q: &[T],
    k: View<'_, KV>,
    v: View<'_, KV>,
    mask: Mask<'_, T>,
    a: &Attention,
    g: usize,
    first: usize,
    s: &mut Scratch<T>,
) {
    let (b, hk) = (g / a.kv_heads, g % a.kv_heads);
    let rep = a.q_heads / a.kv_heads;
    let rows = out.len() / a.v_dim;
    let (lq, lk) = (a.q_len as isize, a.kv_len as isize);
    // Keys j < visible(row) are seen by a causal row.
    let visible = |r: usize| ((r % a.q_len) as isize + 1 + lk - lq).clamp(0, lk) as usize;
    let keys = if a.causal {
        let (lo, hi) = (first..first + rows)
            .fold((a.kv_len, 0), |(lo, hi), r| (lo.min(visible(r)), hi.max(visible(r))));
        // A row that sees no key averages over all of them (see `HIDDEN`).
        if lo == 0 {
            a.kv_len
        } else {
            hi
        }
    } else {
        a.kv_len
    };
    if keys == 0 {
        out.fill(T::zero());
        return;
    }
    s.scores.resize(rows * keys, T::zero());
    s.inv_sum.resize(rows, T::zero());
    let q_block = MatRef {
        data: q,
        offset: ((b * a.q_heads + hk * rep) * a.q_len + first) * a.head_dim,
        row_stride: a.head_dim as isize,
        col_stride: 1,
    };
    let (k_at, v_at) = (at(&k, [b, hk, 0]) as usize, at(&v, [b, hk, 0]) as usize);
    // A decode step's few rows: direct dot products beat a GEMM that packs all of K and V.
    let few = rows <= FEW_ROWS && k.strides[3] == 1 && v.strides[3] == 1;
    if few {
        let q_rows = &q[q_block.offset..q_block.offset + rows * a.head_dim];
        let k_rows = Rows { data: k.data, offset: k_at, stride: k.strides[2] };
        few_rows::scores(&mut s.scores, q_rows, k_rows, keys, a.head_dim);
    } else {
        let k = positions(k, k_at, keys, a.head_dim, &mut s.keys);
        let k_t = MatRef { row_stride: k.col_stride, col_stride: k.row_stride, ..k };
        T::matmul(&mut s.scores, q_block, k_t, rows, keys, a.head_dim);
    }
    let (scale, hidden) = (T::from_f64(a.scale), T::from_f64(HIDDEN));
    for (r, row) in s.scores.chunks_exact_mut(keys).enumerate() {
        let gr = first + r;
        let (h, i) = (hk * rep + gr / a.q_len, gr % a.q_len);
        row.iter_mut().for_each(|x| *x = x.mul(scale));
        if a.causal {
            row[visible(gr).min(keys)..].fill(hidden);
        }
        match mask {
            Mask::None => {}
            Mask::Keep(m) => {
                let (base, step) = (at(&m, [b, h, i]), m.strides[3]);
                for (j, x) in row.iter_mut().enumerate() {
                    if !m.data[(base + j as isize * step) as usize] {
                        *x = hidden;
                    }
                }
            }
            Mask::Add(m) => {
                let (base, step) = (at(&m, [b, h, i]), m.strides[3]);
                for (j, x) in row.iter_mut().enumerate() {
                    *x = x.add(m.data[(base + j as isize * step) as usize]);
                }
            }
        }
        let sum = T::exp_shifted_sum(row, max_of(row));
        s.inv_sum[r] = T::one().div(sum);
    }
    if few {
        let v_rows = Rows { data: v.data, offset: v_at, stride: v.strides[2] };
        few_rows::weighted_sum(out, &s.scores, v_rows, keys, a.v_dim);
    } else {
        let v_mat = positions(v, v_at, keys, a.v_dim, &mut s.values);
        T::matmul(out, MatRef::dense(&s.scores, keys), v_mat, rows, a.v_dim, keys);
    }
    for (o, &inv) in out.chunks_exact_mut(a.v_dim).zip(&s.inv_sum) {
        o.iter_mut().for_each(|x| *x = x.mul(inv));
    }
}

/// Positions `0..n` (rows) of one head of `x`, from element `start`, as a matrix of `T`: in
/// place when the elements are `T`, else widened into `buf`.
fn positions<'b, T: Compute, KV: KvElement<T>>(
    x: View<'b, KV>,
    start: usize,
    n: usize,
    dim: usize,
    buf: &'b mut Vec<T>,
) -> MatRef<'b, T> {
    let (row_stride, col_stride) = (x.strides[2], x.strides[3]);
    if let Some(data) = KV::as_compute(x.data) {
        return MatRef { data, offset: start, row_stride, col_stride };
    }
    buf.clear();
    buf.resize(n * dim, T::zero());
    for (j, dst) in buf.chunks_exact_mut(dim).enumerate() {
        let row = start as isize + j as isize * row_stride;
        if col_stride == 1 {
            KV::widen_row(&x.data[row as usize..][..dim], dst);
        } else {
            let at = |c: usize| (row + c as isize * col_stride) as usize;
            dst.iter_mut().enumerate().for_each(|(c, d)| *d = x.data[at(c)].widen());
        }
    }
    MatRef::dense(buf, dim)
}

/// Query rows per block up to which `few_rows` replaces the GEMMs.
const FEW_ROWS: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantized::tests::uniform;

    fn view<'a, T: Copy>(data: &'a [T], shape: &'a [usize], strides: &'a [isize]) -> View<'a, T> {
        View::new(data, shape, strides, 0)
    }

    #[test]
    fn single_query_averages_values_by_softmax_weights() {
        // q . k = [0, ln 3] after scale 1: weights 1/4 and 3/4.
        let a = Attention {
            batch: 1,
            q_heads: 1,
            kv_heads: 1,
            q_len: 1,
            kv_len: 2,
            head_dim: 1,
            v_dim: 2,
            scale: 1.0,
            causal: false,
        };
        let q = [3f64.ln()];
        let k = [0.0, 1.0];
        let v = [4.0, 8.0, 0.0, 4.0];
        let mut out = [0f64; 2];
        let (ks, vs) = ([1, 1, 2, 1], [1, 1, 2, 2]);
        let (kst, vst) = ([2, 2, 1, 1], [4, 4, 2, 1]);
        attention(&mut out, &q, view(&k, &ks, &kst), view(&v, &vs, &vst), Mask::None, &a);
        assert!((out[0] - 1.0).abs() < 1e-12 && (out[1] - 5.0).abs() < 1e-12, "{out:?}");
    }

    #[test]
    fn causal_row_without_keys_averages_all_values() {
        // Lq = 3 > Lk = 2 with equal scores: query 0 sees no key (0 + 2 - 3 < 0) and averages
        // both values, query 1 sees key 0 only, query 2 both.
        let a = Attention {
            batch: 1,
            q_heads: 1,
            kv_heads: 1,
            q_len: 3,
            kv_len: 2,
            head_dim: 1,
            v_dim: 1,
            scale: 1.0,
            causal: true,
        };
        let mut out = [0f32; 3];
        let (s, st) = ([1, 1, 2, 1], [2, 2, 1, 1]);
        let (k, v) = ([0.0, 0.0], [2.0, 6.0]);
        attention(&mut out, &[1.0; 3], view(&k, &s, &st), view(&v, &s, &st), Mask::None, &a);
        assert_eq!(out, [4.0, 2.0, 4.0]);
    }

    /// Naive attention in f64: for each query row, softmax over its visible keys.
    fn reference(q: &[f32], k: &[f32], v: &[f32], a: &Attention) -> Vec<f64> {
        let rep = a.q_heads / a.kv_heads;
        let (d, dv, lq, lk) = (a.head_dim, a.v_dim, a.q_len, a.kv_len);
        let mut out = vec![0f64; a.q_heads * lq * dv];
        for h in 0..a.q_heads {
            let g = h / rep;
            for i in 0..lq {
                let seen = if a.causal { (i + 1 + lk).saturating_sub(lq) } else { lk };
                let qi = &q[(h * lq + i) * d..][..d];
                let s: Vec<f64> = (0..seen)
                    .map(|j| {
                        let kj = &k[(g * lk + j) * d..][..d];
                        a.scale * qi.iter().zip(kj).map(|(&x, &y)| x as f64 * y as f64).sum::<f64>()
                    })
                    .collect();
                let top = s.iter().cloned().fold(f64::MIN, f64::max);
                let w: Vec<f64> = s.iter().map(|&x| (x - top).exp()).collect();
                let total: f64 = w.iter().sum();
                for (j, wj) in w.iter().enumerate() {
                    for c in 0..dv {
                        out[(h * lq + i) * dv + c] += wj / total * v[(g * lk + j) * dv + c] as f64;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn few_rows_and_gemm_paths_match_naive_attention() {
        let mut seed = 0x2545_f491_u64;
        let mut rand = move || uniform(&mut seed);
        // Grouped heads (3 query heads per key/value head); q_len 1 and 2 give blocks of 3 and
        // 6 rows (the direct path: AVX-512 for sizes in multiples of 16, with value blocks of
        // 4, 4 + 1 and 3 vectors, plain loops for the others), 5 gives 15 (the GEMM path).
        // 400 positions make enough work for the groups to be split over the threads.
        let cases = [
            (1, 64, 64, false, 37),
            (2, 32, 80, true, 37),
            (1, 16, 48, false, 37),
            (2, 20, 33, true, 37),
            (5, 64, 48, true, 37),
            (1, 64, 64, false, 400),
            (2, 32, 32, true, 400),
        ];
        for (q_len, d, dv, causal, n) in cases {
            let a = Attention {
                batch: 1,
                q_heads: 6,
                kv_heads: 2,
                q_len,
                kv_len: n,
                head_dim: d,
                v_dim: dv,
                scale: 0.3,
                causal,
            };
            let q: Vec<f32> = (0..6 * q_len * d).map(|_| rand()).collect();
            // Values exact in f16, so that f16 keys and values must give the same result.
            let mut half_exact =
                |n: usize| -> Vec<f32> { (0..n).map(|_| f16::from_f32(rand()).to_f32()).collect() };
            let k = half_exact(2 * n * d);
            let v = half_exact(2 * n * dv);
            let (ks, kst) = ([1, 2, n, d], [0, (n * d) as isize, d as isize, 1]);
            let (vs, vst) = ([1, 2, n, dv], [0, (n * dv) as isize, dv as isize, 1]);
            let want = reference(&q, &k, &v, &a);
            let check = |out: &[f32], stored: &str| {
                for (i, (&got, want)) in out.iter().zip(&want).enumerate() {
                    assert!(
                        (got as f64 - want).abs() < 1e-5,
                        "{stored} keys, q_len {q_len}, element {i}: {got} vs {want}"
                    );
                }
            };
            let mut out = vec![0f32; 6 * q_len * dv];
            attention(&mut out, &q, view(&k, &ks, &kst), view(&v, &vs, &vst), Mask::None, &a);
            check(&out, "f32");
            let (k16, v16): (Vec<f16>, Vec<f16>) = (
                k.iter().map(|&x| f16::from_f32(x)).collect(),
                v.iter().map(|&x| f16::from_f32(x)).collect(),
            );
            out.fill(f32::NAN);
            let (k16, v16) = (view(&k16, &ks, &kst), view(&v16, &vs, &vst));
            attention(&mut out, &q, k16, v16, Mask::None, &a);
            check(&out, "f16");
        }
    }
}
