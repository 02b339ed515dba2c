//! Quantized matrix products over GGML blocks: `out = x @ W^T` where each row of `W` is a run
//! of Q8_0, Q4_0, Q4_1, Q4_K or Q6_K blocks, computed without dequantizing `W` (the K-quant
//! kernels are in [`crate::quantized_k`]).
//!
//! As llama.cpp does, the f32 activations are first quantized to 8 bits per block of 32
//! ([`BlockQ8`]), so each block's dot product is an integer one, scaled once per block (a
//! K-quant block of 256 values meets eight activation blocks). The
//! integer dot runs on AVX2 (`maddubs`) when the CPU has it, else on a portable loop; both
//! give the same sums, so results do not depend on the path taken. Matrices may also be in
//! the packed layout of [`crate::quantized_packed`] (eight rows interleaved), whose kernels
//! use AVX-512 VNNI.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use crate::ggml::{dequantize, half, BlockQ4_0, BlockQ4_1, BlockQ8_0, GgmlType};
use crate::matmul::place_column_blocks;
use crate::quantized_k as kq;
use crate::quantized_packed as packed;

/// Values per activation block (and per weight block of the 32-value types).
pub const BLOCK: usize = 32;

/// 32 activations as `d * qs[i]`, with `s = d * sum(qs)` kept for the offset term of Q4_1
/// and the `-8` of Q4_0 (llama.cpp's Q8_1, in f32), and the integer `sum(qs)` for the offset
/// of the packed layout's unsigned codes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8 {
    pub d: f32,
    pub s: f32,
    pub sum: i32,
    pub qs: [i8; 32],
}

/// How the rows of a quantized matrix are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Each row is a run of GGML blocks, as GGUF files store them.
    Rows,
    /// Groups of eight rows interleaved ([`crate::quantized_packed`]).
    Packed,
}

/// Quantizes `x` (a multiple of 32 values) into `out`, one block per 32 values, rounding to
/// nearest (ties to even) with the block's absolute maximum mapped to 127.
pub fn quantize_q8(x: &[f32], out: &mut [BlockQ8]) {
    quantize_q8_groups(x, out, 1);
}

/// [`quantize_q8`] with one scale shared by each run of `group` blocks (from the run's
/// absolute maximum).
fn quantize_q8_groups(x: &[f32], out: &mut [BlockQ8], group: usize) {
    assert_eq!(x.len(), out.len() * BLOCK, "quantize_q8: size mismatch");
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        // SAFETY: the CPU has AVX-512F and BW (checked just above); `x` holds 32 values per
        // block of `out` (asserted above).
        return unsafe { avx512::quantize_q8_groups(x, out, group) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, the only feature the function enables.
        return unsafe { quantize_q8_groups_avx2(x, out, group) };
    }
    quantize_q8_groups_with(x, out, group);
}

/// [`quantize_q8_groups`] compiled with AVX2, where the rounding and the conversions become
/// vector instructions (the portable build calls libm's rounding per value).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn quantize_q8_groups_avx2(x: &[f32], out: &mut [BlockQ8], group: usize) {
    quantize_q8_groups_with(x, out, group);
}

#[inline(always)]
fn quantize_q8_groups_with(x: &[f32], out: &mut [BlockQ8], group: usize) {
    for (bs, v) in out.chunks_mut(group).zip(x.chunks(group * BLOCK)) {
        let amax = v.iter().fold(0f32, |m, &a| m.max(a.abs()));
        let d = amax / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        for (b, v) in bs.iter_mut().zip(v.chunks_exact(BLOCK)) {
            // Ties to even, as llama.cpp's SIMD quantizers round.
            for (q, &a) in b.qs.iter_mut().zip(v) {
                *q = (a * id).round_ties_even() as i8;
            }
            let sum: i32 = b.qs.iter().map(|&q| q as i32).sum();
            b.d = d;
            b.s = d * sum as f32;
            b.sum = sum;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    //! [`super::quantize_q8_groups_with`] on AVX-512 registers, bit for bit: the compiler
    //! leaves that loop scalar (its running maximum is a serial chain), which made quantizing
    //! the activations a tenth of a quantized model's prompt time.
    use super::{quantize_q8_groups_with, BlockQ8, BLOCK};
    use std::arch::x86_64::*;

    pub(super) fn available() -> bool {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
    }

    /// 16 values of `x` from `at`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn load16(x: &[f32], at: usize) -> __m512 {
        let s = &x[at..at + 16];
        // SAFETY: `s` is 16 readable f32; loadu has no alignment requirement.
        unsafe { _mm512_loadu_ps(s.as_ptr()) }
    }

    /// # Safety
    /// The CPU must have AVX-512F and BW; `x` must hold `32 * out.len()` values.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn quantize_q8_groups(x: &[f32], out: &mut [BlockQ8], group: usize) {
        let inf = _mm512_set1_ps(f32::INFINITY);
        for (bs, v) in out.chunks_mut(group).zip(x.chunks(group * BLOCK)) {
            let (mut amax, mut finite) = (_mm512_setzero_ps(), u16::MAX);
            for at in (0..v.len()).step_by(16) {
                let a = _mm512_abs_ps(load16(v, at));
                // `max(a, amax)` keeps `amax` when `a` is NaN, as `f32::max` skips NaN.
                amax = _mm512_max_ps(a, amax);
                finite &= _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, inf);
            }
            if finite != u16::MAX {
                // NaN or infinity: the scalar loop's conversions saturate differently.
                quantize_q8_groups_with(v, bs, group);
                continue;
            }
            let d = _mm512_reduce_max_ps(amax) / 127.0;
            let id = _mm512_set1_ps(if d > 0.0 { 1.0 / d } else { 0.0 });
            for (b, at) in bs.iter_mut().zip((0..v.len()).step_by(BLOCK)) {
                const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
                let lo = _mm512_cvt_roundps_epi32::<NEAREST>(_mm512_mul_ps(load16(v, at), id));
                let hi = _mm512_cvt_roundps_epi32::<NEAREST>(_mm512_mul_ps(load16(v, at + 16), id));
                // Saturating narrowing, as `as i8`; the sum is of the narrowed values.
                let (lo8, hi8) = (_mm512_cvtsepi32_epi8(lo), _mm512_cvtsepi32_epi8(hi));
                let sum = _mm512_reduce_add_epi32(_mm512_add_epi32(
                    _mm512_cvtepi8_epi32(lo8),
                    _mm512_cvtepi8_epi32(hi8),
                ));
                let qs: [i8; 32] = bytemuck::cast([lo8, hi8]);
                *b = BlockQ8 { d, s: d * sum as f32, sum, qs };
            }
        }
    }
}

/// Quantizes activation rows for weights of `ty`: one scale per block of 32, or, for the
/// 256-value K-quants, one per 256 shared by the eight blocks (llama.cpp's Q8_K), so that
/// their kernels sum a whole weight block in integers before one scaling.
pub(crate) fn quantize_activations(ty: GgmlType, x: &[f32], out: &mut [BlockQ8]) {
    quantize_q8_groups(x, out, ty.block_size().max(BLOCK) / BLOCK);
}

/// Integer dot of the 16 bytes of 4-bit codes (value `j` low nibble, `j + 16` high) with 32
/// activations.
fn nibble_dot(qs: &[u8; 16], x: &[i8; 32]) -> i32 {
    let mut acc = 0i32;
    for j in 0..16 {
        acc += (qs[j] & 0xF) as i32 * x[j] as i32 + (qs[j] >> 4) as i32 * x[j + 16] as i32;
    }
    acc
}

fn dot_q8_0(w: &[BlockQ8_0], x: &[BlockQ8]) -> f32 {
    w.iter()
        .zip(x)
        .map(|(w, x)| {
            let dot: i32 = w.qs.iter().zip(&x.qs).map(|(&a, &b)| a as i32 * b as i32).sum();
            half(w.d) * x.d * dot as f32
        })
        .sum()
}

fn dot_q4_0(w: &[BlockQ4_0], x: &[BlockQ8]) -> f32 {
    // sum d_w (q - 8) d_x q_x = d_w (d_x sum q q_x - 8 s_x)
    w.iter()
        .zip(x)
        .map(|(w, x)| half(w.d) * (x.d * nibble_dot(&w.qs, &x.qs) as f32 - 8.0 * x.s))
        .sum()
}

fn dot_q4_1(w: &[BlockQ4_1], x: &[BlockQ8]) -> f32 {
    // sum (d_w q + m_w) d_x q_x = d_w d_x sum q q_x + m_w s_x
    w.iter()
        .zip(x)
        .map(|(w, x)| half(w.d) * x.d * nibble_dot(&w.qs, &x.qs) as f32 + half(w.m) * x.s)
        .sum()
}

/// Dots every weight row in `w` (rows of `kb` blocks, in either layout) with each of the (at
/// most four) activation rows in `x`: `out[i * stride + j]` = activation row `i` . weight row
/// `j`.
pub(crate) type RowsKernel = fn(w: &[u8], x: &[BlockQ8], kb: usize, out: &mut [f32], stride: usize);

/// Activation rows a kernel takes at once: each weight block is unpacked once for all.
pub(crate) const ROWS: usize = 4;

/// A portable kernel from a row dot product over weight blocks `B`, each of which meets
/// `per` activation blocks.
fn rows_with<B: Pod>(
    w: &[u8],
    x: &[BlockQ8],
    (kb, per): (usize, usize),
    out: &mut [f32],
    stride: usize,
    dot: fn(&[B], &[BlockQ8]) -> f32,
) {
    let w: &[B] = bytemuck::cast_slice(w);
    for (i, xi) in x.chunks_exact(kb).enumerate() {
        for (j, row) in w.chunks_exact(kb / per).enumerate() {
            out[i * stride + j] = dot(row, xi);
        }
    }
}

pub(crate) fn portable_kernel(ty: GgmlType) -> Option<RowsKernel> {
    Some(match ty {
        GgmlType::Q8_0 => |w, x, kb, o, s| rows_with(w, x, (kb, 1), o, s, dot_q8_0),
        GgmlType::Q4_0 => |w, x, kb, o, s| rows_with(w, x, (kb, 1), o, s, dot_q4_0),
        GgmlType::Q4_1 => |w, x, kb, o, s| rows_with(w, x, (kb, 1), o, s, dot_q4_1),
        GgmlType::Q4_K => |w, x, kb, o, s| rows_with(w, x, (kb, 8), o, s, kq::dot_q4_k),
        GgmlType::Q6_K => |w, x, kb, o, s| rows_with(w, x, (kb, 8), o, s, kq::dot_q6_k),
        _ => return None,
    })
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    //! The same dot products with AVX2: `maddubs` multiplies unsigned by signed bytes and adds
    //! pairs to i16 (at most 2 * 255 * 127, no overflow for 4-bit codes or |q8| <= 127), then
    //! `madd` with ones widens to i32; one f32 FMA per block applies the scales. Up to four
    //! activation rows share each unpacked weight block (`R`).
    use super::BlockQ8;
    use crate::ggml::{BlockQ4_0, BlockQ4_1, BlockQ8_0};
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// Two little-endian f16 values (`lo` then `hi`) as f32, converted by F16C.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn halves(lo: [u8; 2], hi: [u8; 2]) -> (f32, f32) {
        let bits = u32::from_le_bytes([lo[0], lo[1], hi[0], hi[1]]);
        let v = _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32));
        (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
    }

    /// The 32 codes of a 4-bit block as bytes: values 0..16 low, 16..32 high.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn unpack_nibbles(qs: &[u8; 16]) -> __m256i {
        // SAFETY: `qs` is 16 readable bytes; loadu has no alignment requirement.
        let q = unsafe { _mm_loadu_si128(qs.as_ptr() as *const __m128i) };
        let m4 = _mm_set1_epi8(0xF);
        let lo = _mm_and_si128(q, m4);
        let hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4);
        _mm256_set_m128i(hi, lo)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn load32(bytes: &[i8; 32]) -> __m256i {
        // SAFETY: `bytes` is 32 readable bytes; loadu has no alignment requirement.
        unsafe { _mm256_loadu_si256(bytes.as_ptr() as *const __m256i) }
    }

    /// i32 sums of adjacent groups of four `u * s` byte products, as f32.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256 {
        let p16 = _mm256_maddubs_epi16(u, s);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)))
    }

    /// Generates a kernel over tiles of `R` activation rows by `C` weight rows of `$block`s,
    /// each weight block meeting `$per` activation blocks: `R * C` independent accumulators
    /// hide the latency of each block's FMAs. `$body` adds weight block `$blk` into `$acc[r]`
    /// (vector sums) and `$off[r]` (scalar sums) for each activation row `r`, whose activation
    /// blocks facing it are `$xs[r]`; a result is `hsum(acc) + off`. Also used by the K-quant
    /// kernels (`quantized_k`).
    macro_rules! tile_kernel {
        (
            $name:ident, $block:ty, $per:expr,
            |$blk:ident, $xs:ident, $acc:ident, $off:ident| $body:block
        ) => {
            #[target_feature(enable = "avx2,fma,f16c")]
            pub(crate) fn $name<const R: usize, const C: usize>(
                w: &[u8],
                x: &[BlockQ8],
                kb: usize,
                out: &mut [f32],
                stride: usize,
            ) {
                let blocks: &[$block] = bytemuck::cast_slice(w);
                let nb = kb / $per;
                let rows = blocks.len() / nb;
                let mut j = 0;
                while j + C <= rows {
                    let mut acc = [[_mm256_setzero_ps(); R]; C];
                    let mut off = [[0f32; R]; C];
                    for b in 0..nb {
                        let $xs: [&[BlockQ8]; R] =
                            std::array::from_fn(|r| &x[r * kb + $per * b..][..$per]);
                        for c in 0..C {
                            let $blk = &blocks[(j + c) * nb + b];
                            let ($acc, $off) = (&mut acc[c], &mut off[c]);
                            $body
                        }
                    }
                    for r in 0..R {
                        for c in 0..C {
                            out[r * stride + j + c] = hsum(acc[c][r]) + off[c][r];
                        }
                    }
                    j += C;
                }
                if j < rows {
                    let tail = &w[j * nb * std::mem::size_of::<$block>()..];
                    $name::<R, 1>(tail, x, kb, &mut out[j..], stride);
                }
            }
        };
    }
    pub(crate) use tile_kernel;

    /// A [`tile_kernel`] for a 32-value type: `$prep` turns a weight block into (codes, scale
    /// `d`, offset coefficient `m`); `$codes` gives the (u8, i8) byte operands whose products
    /// sum to the integer dot with activations `$xq`. A result is `sum_b d * d_x * dot + m *
    /// s_x`.
    macro_rules! block32_kernel {
        ($name:ident, $block:ty, |$blk:ident| $prep:expr, |$wv:ident, $xq:ident| $codes:expr) => {
            tile_kernel!($name, $block, 1, |$blk, xs, acc, off| {
                let ($wv, d, m): (__m256i, f32, f32) = $prep;
                for r in 0..R {
                    let xb = &xs[r][0];
                    let $xq = load32(&xb.qs);
                    let (u, s) = $codes;
                    acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * xb.d), dot_u8_i8(u, s), acc[r]);
                    off[r] += m * xb.s;
                }
            });
        };
    }

    // Q8_0: |w| times x with w's sign is a u8 x i8 product equal to w * x.
    block32_kernel!(
        q8_0,
        BlockQ8_0,
        |blk| (load32(&blk.qs), halves(blk.d, [0, 0]).0, 0.0),
        |wv, xq| (_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xq, wv))
    );
    // Q4_0: d (q - 8) x = d q x - 8 d x, the second term from the activations' sums.
    block32_kernel!(
        q4_0,
        BlockQ4_0,
        |blk| {
            let d = halves(blk.d, [0, 0]).0;
            (unpack_nibbles(&blk.qs), d, -8.0 * d)
        },
        |wv, xq| (wv, xq)
    );
    // Q4_1: (d q + m) x = d q x + m x.
    block32_kernel!(
        q4_1,
        BlockQ4_1,
        |blk| {
            let (d, m) = halves(blk.d, blk.m);
            (unpack_nibbles(&blk.qs), d, m)
        },
        |wv, xq| (wv, xq)
    );
}

/// Picks the instantiation of a SIMD kernel (`module::kernel`) for the number of activation
/// rows given. With `$wide`, the kernel's second parameter is its number of weight tiles at a
/// time: one row takes four for independent sums, two rows two, more rows `$wide` (the row
/// layout's AVX2 kernels); without, the kernel takes only the row count (the packed layout).
#[cfg(target_arch = "x86_64")]
macro_rules! by_rows {
    ($m:ident::$f:ident, $wide:literal) => {
        by_rows!(@ $m::$f, [1, 4], [2, 2], [3, $wide], [4, $wide])
    };
    ($m:ident::$f:ident) => {
        by_rows!(@ $m::$f, [1], [2], [3], [4])
    };
    (@ $m:ident::$f:ident, [$($one:tt)*], [$($two:tt)*], [$($three:tt)*], [$($four:tt)*]) => {
        |w, x, kb, o, s| {
            // SAFETY: expanded only in a `simd_kernel` that returns it after detecting every
            // target feature the kernels of module `$m` enable; they are otherwise safe code.
            unsafe {
                match x.len() / kb {
                    1 => $m::$f::<$($one)*>(w, x, kb, o, s),
                    2 => $m::$f::<$($two)*>(w, x, kb, o, s),
                    3 => $m::$f::<$($three)*>(w, x, kb, o, s),
                    _ => $m::$f::<$($four)*>(w, x, kb, o, s),
                }
            }
        }
    };
}
#[cfg(target_arch = "x86_64")]
pub(crate) use by_rows;

#[cfg(target_arch = "x86_64")]
fn simd_kernel(ty: GgmlType) -> Option<RowsKernel> {
    use crate::quantized_k::avx2 as avx2_k;
    let has = |f| match f {
        "avx2" => std::arch::is_x86_feature_detected!("avx2"),
        "fma" => std::arch::is_x86_feature_detected!("fma"),
        _ => std::arch::is_x86_feature_detected!("f16c"),
    };
    if !["avx2", "fma", "f16c"].into_iter().all(has) {
        return None;
    }
    Some(match ty {
        GgmlType::Q8_0 => by_rows!(avx2::q8_0, 1),
        GgmlType::Q4_0 => by_rows!(avx2::q4_0, 1),
        GgmlType::Q4_1 => by_rows!(avx2::q4_1, 1),
        GgmlType::Q4_K => by_rows!(avx2_k::q4_k, 1),
        GgmlType::Q6_K => by_rows!(avx2_k::q6_k, 1),
        _ => return None,
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn simd_kernel(_ty: GgmlType) -> Option<RowsKernel> {
    None
}

/// The fastest kernel for matrices of `ty` in `layout` on this CPU.
fn kernel(ty: GgmlType, layout: Layout) -> Option<RowsKernel> {
    match layout {
        Layout::Rows => simd_kernel(ty).or_else(|| portable_kernel(ty)),
        Layout::Packed => packed::kernel(ty),
    }
}

/// True when [`matmul`] handles weights of type `ty`.
pub fn supports(ty: GgmlType) -> bool {
    ty == GgmlType::F16 || portable_kernel(ty).is_some()
}

/// Dequantizes rows `ids` of `w` (`ty` blocks in `layout`, rows of `k` values) into `out`,
/// `k` values per id. Returns `false` for an id out of range or sizes that disagree.
pub fn dequantize_rows(
    ty: GgmlType,
    layout: Layout,
    w: &[u8],
    k: usize,
    ids: &[usize],
    out: &mut [f32],
) -> bool {
    if layout == Layout::Packed {
        return packed::dequantize_rows(ty, w, k, ids, out);
    }
    let row_bytes = k / ty.block_size() * ty.type_size();
    let rows = w.len().checked_div(row_bytes).unwrap_or(0);
    if !k.is_multiple_of(ty.block_size())
        || out.len() != ids.len() * k
        || ids.iter().any(|&r| r >= rows)
    {
        return false;
    }
    ids.iter()
        .zip(out.chunks_exact_mut(k.max(1)))
        .all(|(&r, o)| dequantize(ty, &w[r * row_bytes..][..row_bytes], o))
}

/// Runs `rows` over activation rows `x` (`kb` blocks each) in groups of [`ROWS`], writing
/// row `i`'s results at `out[i * stride..]`.
fn by_groups(rows: RowsKernel, w: &[u8], x: &[BlockQ8], kb: usize, out: &mut [f32], stride: usize) {
    for (g, xg) in x.chunks(ROWS * kb).enumerate() {
        rows(w, xg, kb, &mut out[g * ROWS * stride..], stride);
    }
}

/// Weight rows per parallel task for `m` activation rows (a multiple of the packed groups'
/// eight): enough tasks to balance the threads and, for several activation rows, few enough
/// rows that a task's weights stay in L1 while every activation row passes over them. One
/// activation row reads each weight once, so its tasks are whole tiles of four groups.
fn rows_per_task(m: usize, n: usize, row_bytes: usize) -> usize {
    let by_balance = n.div_ceil(4 * rayon::current_num_threads());
    if m == 1 {
        return by_balance.next_multiple_of(4 * packed::LANES);
    }
    let by_cache = (16 << 10) / row_bytes.max(1);
    by_cache.min(by_balance).max(8).next_multiple_of(packed::LANES)
}

/// True when a matrix of `n` rows of `ty` can be stored in `layout`.
pub fn valid_layout(ty: GgmlType, layout: Layout, n: usize) -> bool {
    supports(ty) && (layout == Layout::Rows || packed::can_pack(ty, n))
}

/// `out (m x n) = x (m x k) @ W^T`, where `w` holds `n` rows of `k / ty.block_size()` blocks
/// of `ty`, stored in `layout`.
///
/// Panics when `ty` is not [`supports`]ed, the layout is not [`valid_layout`] or the sizes
/// disagree (callers validate).
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    ty: GgmlType,
    layout: Layout,
    out: &mut [f32],
    x: &[f32],
    w: &[u8],
    m: usize,
    n: usize,
    k: usize,
) {
    let kb = k / BLOCK;
    let row_bytes = k / ty.block_size() * ty.type_size();
    assert!(
        k.is_multiple_of(ty.block_size())
            && x.len() == m * k
            && w.len() == n * row_bytes
            && out.len() == m * n,
        "quantized matmul: size mismatch"
    );
    assert!(valid_layout(ty, layout, n), "quantized matmul: invalid layout");
    if ty == GgmlType::F16 {
        return crate::half_weights::matmul(out, x, w, m, n, k);
    }
    let rows = kernel(ty, layout).expect("quantized matmul: unsupported weight type");
    if m == 0 || n == 0 {
        return;
    }
    let mut xq = vec![BlockQ8::zeroed(); m * kb];
    if kb == 0 {
        out.fill(0.0);
        return;
    }
    let parallel = m * n * k >= 1 << 17;
    if parallel && m > 1 {
        xq.par_chunks_mut(kb)
            .zip(x.par_chunks(k))
            .for_each(|(q, v)| quantize_activations(ty, v, q));
    } else {
        quantize_activations(ty, x, &mut xq);
    }
    if !parallel {
        // Small products: a trip through the thread pool would cost more than the work.
        by_groups(rows, w, &xq, kb, out, n);
        return;
    }
    let task = rows_per_task(m, n, row_bytes);
    if m == 1 {
        // One activation row: each task writes a contiguous run of outputs.
        out.par_chunks_mut(task)
            .zip(w.par_chunks(task * row_bytes))
            .for_each(|(o, wc)| rows(wc, &xq, kb, o, 0));
        return;
    }
    // Several rows: each task computes its weight rows against every activation row
    // (rows-major within the task), then the pieces are placed.
    let parts: Vec<Vec<f32>> = w
        .par_chunks(task * row_bytes)
        .map(|wc| {
            let nr = wc.len() / row_bytes;
            let mut t = vec![0f32; m * nr];
            by_groups(rows, wc, &xq, kb, &mut t, nr);
            t
        })
        .collect();
    place_column_blocks(out, &parts, m, n);
}

/// [`matmul`] against W the rows of `parts` stacked (`out` is m x their rows together): the
/// matrices a layer applies to one input, held apart, as one product.
///
/// Panics as [`matmul`] does.
#[allow(clippy::too_many_arguments)]
pub fn matmul_parts(
    ty: GgmlType,
    layout: Layout,
    out: &mut [f32],
    x: &[f32],
    parts: &[&[u8]],
    m: usize,
    k: usize,
) {
    let row_bytes = k / ty.block_size() * ty.type_size();
    let rows = |w: &[u8]| w.len().checked_div(row_bytes).unwrap_or(0);
    let n: usize = parts.iter().map(|w| rows(w)).sum();
    assert!(out.len() == m * n, "quantized matmul: size mismatch");
    match parts {
        [w] => return matmul(ty, layout, out, x, w, m, n, k),
        _ if m == 0 || n == 0 => return,
        _ if ty == GgmlType::F16 && m == 1 && k > 0 => {
            assert!(x.len() == k && parts.iter().all(|w| w.len() % row_bytes == 0));
            return crate::half_weights::matvec_parts(out, x, parts, k);
        }
        _ => {}
    }
    // Each part on its own (each is a product large enough to use the threads), then placed.
    let pieces: Vec<Vec<f32>> = parts
        .iter()
        .map(|w| {
            let mut piece = vec![0f32; m * rows(w)];
            matmul(ty, layout, &mut piece, x, w, m, rows(w), k);
            piece
        })
        .collect();
    place_column_blocks(out, &pieces, m, n);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Deterministic pseudo-random bytes/values for the tests (an LCG).
    pub(crate) fn lcg(seed: &mut u64) -> u32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (*seed >> 33) as u32
    }

    /// A value in [-1, 1) from [`lcg`]: test data for the float kernels.
    pub(crate) fn uniform(seed: &mut u64) -> f32 {
        (lcg(seed) >> 7) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
    }

    /// Random blocks of `ty` with sane f16 scales (bytes otherwise random).
    pub(crate) fn random_blocks(ty: GgmlType, blocks: usize, seed: &mut u64) -> Vec<u8> {
        let mut bytes: Vec<u8> = (0..blocks * ty.type_size()).map(|_| lcg(seed) as u8).collect();
        let scales: &[usize] = match ty {
            GgmlType::Q4_1 | GgmlType::Q4_K => &[0, 2],
            GgmlType::Q6_K => &[208],
            _ => &[0],
        };
        for b in bytes.chunks_exact_mut(ty.type_size()) {
            for &at in scales {
                let v = half::f16::from_f32((lcg(seed) % 1000) as f32 / 1000.0 - 0.5);
                b[at..at + 2].copy_from_slice(&v.to_le_bytes());
            }
        }
        bytes
    }

    #[test]
    fn quantize_q8_keeps_values_within_half_a_step() {
        let x: Vec<f32> = (0..64).map(|i| ((i * 37) % 23) as f32 - 11.5).collect();
        let mut q = [BlockQ8::zeroed(); 2];
        quantize_q8(&x, &mut q);
        for (b, v) in q.iter().zip(x.chunks(32)) {
            let sum: i32 = b.qs.iter().map(|&q| q as i32).sum();
            assert_eq!((b.s, b.sum), (b.d * sum as f32, sum));
            assert_eq!(b.qs.iter().map(|q| q.unsigned_abs()).max(), Some(127));
            for (&q, &a) in b.qs.iter().zip(v) {
                assert!((q as f32 * b.d - a).abs() <= b.d / 2.0 + 1e-6);
            }
        }
        let mut zero = [BlockQ8::zeroed(); 1];
        quantize_q8(&[0.0; 32], &mut zero);
        assert_eq!((zero[0].d, zero[0].qs), (0.0, [0; 32]));
    }

    /// The quantizer this CPU selects (AVX-512 here, else AVX2) gives the scalar loop's
    /// bytes: random values, exact ties of the rounding, zero blocks, and groups holding NaN
    /// or infinity; one and eight blocks per scale.
    #[test]
    fn vector_quantizers_equal_the_scalar_loop() {
        let mut seed = 11;
        let mut x: Vec<f32> = (0..32 * 64).map(|_| uniform(&mut seed) * 3.0).collect();
        // A block whose maximum is 127 (d = 1) holding halves: every value is a tie.
        x[..32].iter_mut().enumerate().for_each(|(i, v)| *v = i as f32 - 15.5);
        x[31] = 127.0;
        x[32..64].fill(0.0);
        x[64 * 3] = f32::NAN;
        x[64 * 5 + 7] = f32::INFINITY;
        x[32 * 40 + 1] = f32::NEG_INFINITY;
        for group in [1, 8] {
            let mut want = vec![BlockQ8::zeroed(); 64];
            quantize_q8_groups_with(&x, &mut want, group);
            let mut got = vec![BlockQ8::zeroed(); 64];
            quantize_q8_groups(&x, &mut got, group);
            let bytes = |b: &[BlockQ8]| bytemuck::cast_slice::<BlockQ8, u8>(b).to_vec();
            assert_eq!(bytes(&got), bytes(&want), "group {group}");
        }
    }

    /// Both the selected kernel and the portable one equal dequantize-then-dot with the
    /// activations' own 8-bit rounding, for one and several activation rows, in both layouts
    /// (packed where the type and row count allow), serially and in parallel. K-quant rows
    /// are rounded up to whole 256-value blocks.
    #[test]
    fn matmul_matches_dequantized_product() {
        let mut seed = 7;
        let shapes =
            [(1, 5, 64), (3, 70, 96), (1, 300, 512), (5, 40, 128), (6, 100, 256), (1, 64, 2048)];
        let types =
            [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q4_K, GgmlType::Q6_K];
        for ty in types {
            for (m, n, k) in
                shapes.into_iter().chain([(9, 96, 256), (1, 512, 512), (2, 9, 768usize)])
            {
                let k = k.next_multiple_of(ty.block_size());
                let w = random_blocks(ty, n * k / ty.block_size(), &mut seed);
                let x: Vec<f32> =
                    (0..m * k).map(|_| (lcg(&mut seed) % 2001) as f32 / 1000.0 - 1.0).collect();
                let mut wf = vec![0f32; n * k];
                assert!(dequantize(ty, &w, &mut wf));
                // The reference uses the same 8-bit activations the kernel sees.
                let mut xq = vec![BlockQ8::zeroed(); m * k / 32];
                quantize_activations(ty, &x, &mut xq);
                let xr: Vec<f32> = xq.iter().flat_map(|b| b.qs.map(|q| q as f32 * b.d)).collect();
                let mut out = vec![0f32; m * n];
                matmul(ty, Layout::Rows, &mut out, &x, &w, m, n, k);
                let mut portable = vec![0f32; n];
                portable_kernel(ty).unwrap()(&w, &xq[..k / 32], k / 32, &mut portable, n);
                let mut packed_out = vec![0f32; m * n];
                let mut wp = w.clone();
                let is_packed = packed::pack(ty, &mut wp, n);
                assert_eq!(is_packed, n % 8 == 0 && ty.block_size() == 32);
                if is_packed {
                    matmul(ty, Layout::Packed, &mut packed_out, &x, &wp, m, n, k);
                }
                for i in 0..m {
                    for j in 0..n {
                        let r: f32 = (0..k).map(|t| xr[i * k + t] * wf[j * k + t]).sum();
                        let tol = 1e-4 * (1.0 + r.abs()) * (k as f32).sqrt();
                        let got = out[i * n + j];
                        assert!(
                            (got - r).abs() <= tol,
                            "{ty:?} {m}x{n}x{k} [{i},{j}]: {got} vs {r}"
                        );
                        if i == 0 {
                            assert!((portable[j] - got).abs() <= tol, "{ty:?} portable [{j}]");
                        }
                        let p = packed_out[i * n + j];
                        assert!(!is_packed || (p - r).abs() <= tol, "{ty:?} packed [{i},{j}]");
                    }
                }
            }
        }
    }

    #[test]
    fn product_over_parts_equals_product_over_their_stack() {
        let mut seed = 11;
        let k = 256;
        for ty in [GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_1] {
            // Uneven parts, one empty; enough rows for the f16 decode path to use the threads.
            let rows = [576, 0, 192, 200];
            let row_bytes = k / ty.block_size() * ty.type_size();
            let parts: Vec<Vec<u8>> = rows
                .iter()
                .map(|&r| match ty {
                    GgmlType::F16 => (0..r * k)
                        .flat_map(|_| half::f16::from_f32(uniform(&mut seed)).to_le_bytes())
                        .collect(),
                    _ => random_blocks(ty, r * k / ty.block_size(), &mut seed),
                })
                .collect();
            let stacked = parts.concat();
            let n = stacked.len() / row_bytes;
            let views: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
            for m in [1, 3] {
                let x: Vec<f32> = (0..m * k).map(|_| uniform(&mut seed)).collect();
                let mut want = vec![0f32; m * n];
                matmul(ty, Layout::Rows, &mut want, &x, &stacked, m, n, k);
                let mut got = vec![f32::NAN; m * n];
                matmul_parts(ty, Layout::Rows, &mut got, &x, &views, m, k);
                assert_eq!(got, want, "{} m={m}", ty.name());
            }
        }
    }

    #[test]
    fn rows_dequantize_in_both_layouts() {
        let mut seed = 9;
        let (n, k) = (16, 64);
        let w = random_blocks(GgmlType::Q4_1, n * k / 32, &mut seed);
        let mut all = vec![0f32; n * k];
        assert!(dequantize(GgmlType::Q4_1, &w, &mut all));
        let mut wp = w.clone();
        assert!(packed::pack(GgmlType::Q4_1, &mut wp, n));
        for (layout, bytes) in [(Layout::Rows, &w), (Layout::Packed, &wp)] {
            let mut out = vec![0f32; 2 * k];
            assert!(dequantize_rows(GgmlType::Q4_1, layout, bytes, k, &[9, 2], &mut out));
            assert_eq!(out[..k], all[9 * k..10 * k], "{layout:?}");
            assert_eq!(out[k..], all[2 * k..3 * k], "{layout:?}");
            assert!(!dequantize_rows(GgmlType::Q4_1, layout, bytes, k, &[16], &mut out[..k]));
        }
    }

    #[test]
    fn supported_block_types() {
        assert!(supports(GgmlType::Q4_1) && supports(GgmlType::Q8_0) && supports(GgmlType::Q4_0));
        assert!(supports(GgmlType::Q4_K) && supports(GgmlType::Q6_K));
        assert!(!supports(GgmlType::Q5_K) && !supports(GgmlType::BF16));
        // F16 matrices have their own kernel, in the row layout only.
        assert!(supports(GgmlType::F16) && !valid_layout(GgmlType::F16, Layout::Packed, 64));
        // K-quant matrices stay in the row layout.
        assert!(!valid_layout(GgmlType::Q4_K, Layout::Packed, 64));
        assert!(valid_layout(GgmlType::Q6_K, Layout::Rows, 64));
    }
}
