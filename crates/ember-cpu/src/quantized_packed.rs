//! Quantized matrices in the packed layout: the GGML blocks of [`LANES`] consecutive rows
//! interleaved so that one 32-byte load holds four codes of each of the eight rows. An integer
//! dot instruction (AVX-512 VNNI `vpdpbusd`) then computes eight outputs at once, one per lane,
//! with one conversion and one scaling per block of eight rows, where the row layout needs a
//! horizontal sum and a scaling per row and block.
//!
//! For a group of [`LANES`] rows and a block index `b`, the rows' blocks `b` form one
//! super-block of the same total size:
//! - the eight f16 scales `d` (then, for Q4_1, the eight f16 minimums `m`);
//! - Q4_0 and Q4_1: four chunks of 32 bytes; bytes `4l..4l + 4` of chunk `j` are bytes
//!   `4j..4j + 4` of row `l`'s block (low nibbles: values `4j..`, high: values `16 + 4j..`);
//! - Q8_0: eight chunks of 32 bytes; bytes `4l..4l + 4` of chunk `k` are values `4k..4k + 4`
//!   of row `l` plus 128, so that every code is unsigned, as `vpdpbusd` wants.
//!
//! Super-blocks of a group follow in block order and groups follow one another, so a packed
//! matrix has the byte size (and array shape) of the row layout. Only matrices whose row count
//! is a multiple of [`LANES`] are packed.

use rayon::prelude::*;

use crate::ggml::{dequantize, GgmlType};
use crate::quantized::{portable_kernel, BlockQ8, RowsKernel, BLOCK};

/// Rows per packed group: the f32 lanes of a 256-bit register.
pub const LANES: usize = 8;

/// True for the types this layout holds.
fn packable(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0)
}

/// Bytes of f16 fields (scale, and minimum for Q4_1) at the start of a block of `ty`.
fn scale_bytes(ty: GgmlType) -> usize {
    if ty == GgmlType::Q4_1 {
        4
    } else {
        2
    }
}

/// Moves lane `l`'s block between the row layout and a super-block: `word(block offset,
/// super-block offset, bytes, xor mask)` is called for each run of bytes that stays together.
fn lane_runs(ty: GgmlType, l: usize, mut word: impl FnMut(usize, usize, usize, u8)) {
    let scales = scale_bytes(ty);
    for f in 0..scales / 2 {
        word(2 * f, f * 2 * LANES + 2 * l, 2, 0);
    }
    let head = scales * LANES;
    let mask = if ty == GgmlType::Q8_0 { 0x80 } else { 0 };
    for c in (0..ty.type_size() - scales).step_by(4) {
        word(scales + c, head + c * LANES + 4 * l, 4, mask);
    }
}

/// True when [`pack`] would pack a matrix of `rows` rows of `ty`.
pub fn can_pack(ty: GgmlType, rows: usize) -> bool {
    packable(ty) && rows.is_multiple_of(LANES)
}

/// Packs whole groups: `src` (groups of [`LANES`] rows of `row_bytes`, row layout) into `dst`
/// (as long). Loaders use it to pack while reading, from a small buffer.
///
/// Panics if the lengths are not equal whole groups of whole blocks.
pub fn pack_groups(ty: GgmlType, src: &[u8], dst: &mut [u8], row_bytes: usize) {
    let (ts, group) = (ty.type_size(), LANES * row_bytes);
    assert!(
        packable(ty)
            && src.len() == dst.len()
            && row_bytes.is_multiple_of(ts)
            && src.len().is_multiple_of(group),
        "pack_groups: not whole groups of {} blocks",
        ty.name()
    );
    match ty {
        GgmlType::Q4_0 => pack_blocks::<18, 2>(src, dst, row_bytes, 0),
        GgmlType::Q4_1 => pack_blocks::<20, 4>(src, dst, row_bytes, 0),
        _ => pack_blocks::<34, 2>(src, dst, row_bytes, 0x80),
    }
}

/// [`pack_groups`] for blocks of `TS` bytes that start with `SCALES` bytes of f16 fields, the
/// layout of [`lane_runs`] with the sizes known at compile time, so that the copies unroll
/// into word moves (a generic byte loop made packing most of a model's load time).
fn pack_blocks<const TS: usize, const SCALES: usize>(
    src: &[u8],
    dst: &mut [u8],
    row_bytes: usize,
    mask: u8,
) {
    let mask = u32::from_ne_bytes([mask; 4]);
    let group = LANES * row_bytes;
    for (sg, dg) in src.chunks_exact(group).zip(dst.chunks_exact_mut(group)) {
        for (b, sb) in dg.chunks_exact_mut(LANES * TS).enumerate() {
            let (scales, codes) = sb.split_at_mut(SCALES * LANES);
            for l in 0..LANES {
                let blk: &[u8; TS] = sg[l * row_bytes + b * TS..][..TS].try_into().unwrap();
                for f in 0..SCALES / 2 {
                    scales[f * 2 * LANES + 2 * l..][..2].copy_from_slice(&blk[2 * f..2 * f + 2]);
                }
                for (c, word) in blk[SCALES..].chunks_exact(4).enumerate() {
                    let w = u32::from_ne_bytes(word.try_into().unwrap()) ^ mask;
                    codes[c * 4 * LANES + 4 * l..][..4].copy_from_slice(&w.to_ne_bytes());
                }
            }
        }
    }
}

/// Packs `bytes` (`rows` rows of whole `ty` blocks, row layout) in place. Returns `false`,
/// leaving `bytes` unchanged, when the matrix cannot be packed ([`can_pack`]) or the sizes
/// disagree.
pub fn pack(ty: GgmlType, bytes: &mut [u8], rows: usize) -> bool {
    if !can_pack(ty, rows) || rows == 0 || !bytes.len().is_multiple_of(rows) {
        return false;
    }
    let row_bytes = bytes.len() / rows;
    if !row_bytes.is_multiple_of(ty.type_size()) {
        return false;
    }
    let pack_group = |src: &mut Vec<u8>, g: &mut [u8]| {
        src.clear();
        src.extend_from_slice(g);
        pack_groups(ty, src, g, row_bytes);
    };
    if bytes.len() >= 1 << 20 {
        bytes.par_chunks_mut(LANES * row_bytes).for_each_init(Vec::new, pack_group);
    } else {
        let mut src = Vec::new();
        bytes.chunks_mut(LANES * row_bytes).for_each(|g| pack_group(&mut src, g));
    }
    true
}

/// Row `l`'s block (row layout bytes, `ty.type_size()` long) from a super-block.
fn unpack_lane(ty: GgmlType, sb: &[u8], l: usize, blk: &mut [u8]) {
    lane_runs(ty, l, |bi, si, n, mask| {
        for t in 0..n {
            blk[bi + t] = sb[si + t] ^ mask;
        }
    });
}

/// Row `row` of a packed matrix (`w`, rows of `row_bytes`) in the row layout.
fn unpack_row(ty: GgmlType, w: &[u8], row_bytes: usize, row: usize, out: &mut [u8]) {
    let (ts, l) = (ty.type_size(), row % LANES);
    let group = &w[row / LANES * LANES * row_bytes..][..LANES * row_bytes];
    for (b, blk) in out.chunks_exact_mut(ts).enumerate() {
        unpack_lane(ty, &group[b * LANES * ts..][..LANES * ts], l, blk);
    }
}

/// Dequantizes rows `ids` of a packed matrix `w` (rows of `k` values) into `out`, `k` values
/// per id. Returns `false` when `ty` is not packable or the sizes disagree.
pub fn dequantize_rows(ty: GgmlType, w: &[u8], k: usize, ids: &[usize], out: &mut [f32]) -> bool {
    let row_bytes = k / BLOCK * ty.type_size();
    let rows = w.len().checked_div(row_bytes).unwrap_or(0);
    if !packable(ty)
        || !k.is_multiple_of(BLOCK)
        || out.len() != ids.len() * k
        || !rows.is_multiple_of(LANES)
    {
        return false;
    }
    if ids.iter().any(|&r| r >= rows) {
        return false;
    }
    let mut blocks = vec![0u8; row_bytes];
    for (&r, o) in ids.iter().zip(out.chunks_exact_mut(k.max(1))) {
        unpack_row(ty, w, row_bytes, r, &mut blocks);
        dequantize(ty, &blocks, o);
    }
    true
}

/// The portable kernel: each block is unpacked to the row layout and goes through the row
/// layout's portable dot, so both layouts give the same sums.
fn portable(ty: GgmlType, w: &[u8], x: &[BlockQ8], kb: usize, out: &mut [f32], stride: usize) {
    let row_bytes = kb * ty.type_size();
    let rows_kernel = portable_kernel(ty).expect("packable types have a portable kernel");
    let mut row = vec![0u8; row_bytes];
    let mut one = [0f32; 1];
    for j in 0..w.len() / row_bytes.max(1) {
        unpack_row(ty, w, row_bytes, j, &mut row);
        for (i, xi) in x.chunks_exact(kb).enumerate() {
            rows_kernel(&row, xi, kb, &mut one, 0);
            out[i * stride + j] = one[0];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    //! The packed products with AVX-512 VNNI on 256-bit registers (Zen 4 runs 512-bit ones
    //! as two halves, so wider registers would add shuffles and no throughput). `R`
    //! activation rows go through each group of eight weight rows together; the group's
    //! unpacked codes serve all `R` rows.
    use super::LANES;
    use crate::quantized::BlockQ8;
    use std::arch::x86_64::*;

    /// 32 bytes at `at` of `bytes`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    fn load32(bytes: &[u8], at: usize) -> __m256i {
        let s = &bytes[at..at + 32];
        // SAFETY: `s` is 32 readable bytes; loadu has no alignment requirement.
        unsafe { _mm256_loadu_si256(s.as_ptr() as *const __m256i) }
    }

    /// Eight f16 values (16 bytes at `at`) as f32.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    fn halves8(bytes: &[u8], at: usize) -> __m256 {
        let s = &bytes[at..at + 16];
        // SAFETY: `s` is 16 readable bytes; loadu has no alignment requirement.
        _mm256_cvtph_ps(unsafe { _mm_loadu_si128(s.as_ptr() as *const __m128i) })
    }

    /// How far ahead of the super-block being read the kernels prefetch, in bytes. Each
    /// group is read front to back, and the hardware prefetcher stops at page boundaries
    /// (weights rarely sit on huge pages), so a fixed distance keeps lines in flight there.
    const PREFETCH_AHEAD: usize = 1536;

    /// Generates the kernel of one type of `$ts` bytes per block. `$codes(sb)` gives the
    /// eight chunks of unsigned codes of a super-block (chunk `k` meets activations
    /// `4k..4k + 4`); `$off` is the integer offset of the codes (the block's integer dot is
    /// `sum code * x - $off * sum x`); `$min` is true when the type adds a per-row minimum
    /// (`m * sum of x`, its f16 values after the scales).
    ///
    /// Groups are computed one after the other, each with `R` accumulators (one per activation
    /// row) that stay in registers; a super-block's codes are unpacked once for all `R` rows.
    macro_rules! packed_kernel {
        ($name:ident, $ts:expr, $off:expr, $min:expr, |$sb:ident| $codes:expr) => {
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
            pub(super) fn $name<const R: usize>(
                w: &[u8],
                x: &[BlockQ8],
                kb: usize,
                out: &mut [f32],
                stride: usize,
            ) {
                let sb_bytes = LANES * $ts;
                let group_bytes = kb * sb_bytes;
                for (g, group) in w.chunks_exact(group_bytes.max(1)).enumerate() {
                    let mut acc = [_mm256_setzero_ps(); R];
                    for b in 0..kb {
                        let at = g * group_bytes + b * sb_bytes;
                        prefetch(w, at + PREFETCH_AHEAD, sb_bytes);
                        let $sb = &group[b * sb_bytes..][..sb_bytes];
                        let codes: [__m256i; 8] = $codes;
                        let d = halves8($sb, 0);
                        let m = if $min { halves8($sb, 2 * LANES) } else { d };
                        for (r, a) in acc.iter_mut().enumerate() {
                            let xb = &x[r * kb + b];
                            let words: [i32; 8] = bytemuck::cast(xb.qs);
                            // Two independent chains of four dot steps each.
                            let mut lo = _mm256_setzero_si256();
                            let mut hi = _mm256_setzero_si256();
                            for c in 0..4 {
                                lo = _mm256_dpbusd_epi32(lo, codes[c], _mm256_set1_epi32(words[c]));
                                hi = _mm256_dpbusd_epi32(
                                    hi,
                                    codes[c + 4],
                                    _mm256_set1_epi32(words[c + 4]),
                                );
                            }
                            let mut dot = _mm256_add_epi32(lo, hi);
                            if $off != 0 {
                                dot = _mm256_sub_epi32(dot, _mm256_set1_epi32($off * xb.sum));
                            }
                            let scale = _mm256_mul_ps(d, _mm256_set1_ps(xb.d));
                            *a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, *a);
                            if $min {
                                *a = _mm256_fmadd_ps(m, _mm256_set1_ps(xb.s), *a);
                            }
                        }
                    }
                    for (r, a) in acc.iter().enumerate() {
                        let o = &mut out[r * stride + g * LANES..][..LANES];
                        // SAFETY: `o` is LANES = 8 writable f32; storeu has no alignment
                        // requirement.
                        unsafe { _mm256_storeu_ps(o.as_mut_ptr(), *a) };
                    }
                }
            }
        };
    }

    /// Asks for the cache lines of `bytes[at..at + len]` when they lie inside `bytes`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    fn prefetch(bytes: &[u8], at: usize, len: usize) {
        if at + len <= bytes.len() {
            for line in (0..len).step_by(64) {
                // SAFETY: `at + line` is inside `bytes`; a prefetch reads nothing
                // architecturally.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(bytes.as_ptr().add(at + line) as *const i8) };
            }
        }
    }

    /// Codes of a Q4 super-block with codes from byte `head`: low nibbles are chunks 0..4,
    /// high nibbles chunks 4..8.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    fn nibble_codes(sb: &[u8], head: usize) -> [__m256i; 8] {
        let m4 = _mm256_set1_epi8(0xF);
        let mut c = [_mm256_setzero_si256(); 8];
        for j in 0..4 {
            let p = load32(sb, head + 32 * j);
            c[j] = _mm256_and_si256(p, m4);
            c[j + 4] = _mm256_and_si256(_mm256_srli_epi16(p, 4), m4);
        }
        c
    }

    /// Codes of a Q8_0 super-block: eight chunks from byte 16.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    fn byte_codes(sb: &[u8]) -> [__m256i; 8] {
        let mut c = [_mm256_setzero_si256(); 8];
        for (k, ck) in c.iter_mut().enumerate() {
            *ck = load32(sb, 2 * LANES + 32 * k);
        }
        c
    }

    packed_kernel!(q4_0, 18, 8, false, |sb| nibble_codes(sb, 2 * LANES));
    packed_kernel!(q4_1, 20, 0, true, |sb| nibble_codes(sb, 4 * LANES));
    packed_kernel!(q8_0, 34, 128, false, |sb| byte_codes(sb));
}

#[cfg(target_arch = "x86_64")]
fn has_vnni() -> bool {
    use std::arch::is_x86_feature_detected as has;
    has!("avx2")
        && has!("fma")
        && has!("f16c")
        && has!("avx512f")
        && has!("avx512vl")
        && has!("avx512vnni")
}

#[cfg(not(target_arch = "x86_64"))]
fn has_vnni() -> bool {
    false
}

/// True when this CPU runs packed products fast (AVX-512 VNNI): loaders pack weights only
/// then, as the row layout has faster kernels elsewhere.
pub fn packed_is_fast() -> bool {
    has_vnni()
}

#[cfg(target_arch = "x86_64")]
fn simd_kernel(ty: GgmlType) -> Option<RowsKernel> {
    use crate::quantized::by_rows;
    if !has_vnni() {
        return None;
    }
    Some(match ty {
        GgmlType::Q8_0 => by_rows!(vnni::q8_0),
        GgmlType::Q4_0 => by_rows!(vnni::q4_0),
        GgmlType::Q4_1 => by_rows!(vnni::q4_1),
        _ => return None,
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn simd_kernel(_ty: GgmlType) -> Option<RowsKernel> {
    None
}

fn portable_packed(ty: GgmlType) -> Option<RowsKernel> {
    Some(match ty {
        GgmlType::Q8_0 => |w, x, kb, o, s| portable(GgmlType::Q8_0, w, x, kb, o, s),
        GgmlType::Q4_0 => |w, x, kb, o, s| portable(GgmlType::Q4_0, w, x, kb, o, s),
        GgmlType::Q4_1 => |w, x, kb, o, s| portable(GgmlType::Q4_1, w, x, kb, o, s),
        _ => return None,
    })
}

/// The fastest kernel for packed matrices of `ty` on this CPU.
pub(crate) fn kernel(ty: GgmlType) -> Option<RowsKernel> {
    simd_kernel(ty).or_else(|| portable_packed(ty))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantized::tests::{lcg, random_blocks};
    use crate::quantized::{quantize_q8, ROWS};
    use bytemuck::Zeroable;

    const TYPES: [GgmlType; 3] = [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0];

    #[test]
    fn packing_moves_every_byte_and_unpacks_back() {
        let mut seed = 3;
        for ty in TYPES {
            let (rows, k) = (16, 96);
            let w = random_blocks(ty, rows * k / 32, &mut seed);
            let mut p = w.clone();
            assert!(pack(ty, &mut p, rows));
            assert_ne!(p, w);
            let row_bytes = w.len() / rows;
            // Lane 1 of the first super-block: its scale sits after lane 0's.
            assert_eq!(p[2..4], w[row_bytes..row_bytes + 2]);
            let mut row = vec![0u8; row_bytes];
            for r in 0..rows {
                unpack_row(ty, &p, row_bytes, r, &mut row);
                assert_eq!(row, w[r * row_bytes..][..row_bytes], "{ty:?} row {r}");
            }
        }
    }

    #[test]
    fn packing_refuses_other_shapes_and_types() {
        let mut w = vec![0u8; 12 * 20];
        assert!(!pack(GgmlType::Q4_1, &mut w, 12)); // 12 rows: not whole groups
        assert!(!pack(GgmlType::Q4_K, &mut vec![0u8; 8 * 144], 8));
        assert!(!pack(GgmlType::Q4_1, &mut [0u8; 8 * 21], 8)); // not whole blocks
        assert!(!can_pack(GgmlType::F16, 8) && can_pack(GgmlType::Q8_0, 64));
    }

    #[test]
    fn packed_rows_dequantize_as_the_row_layout() {
        let mut seed = 5;
        for ty in TYPES {
            let (rows, k) = (24, 64);
            let w = random_blocks(ty, rows * k / 32, &mut seed);
            let mut all = vec![0f32; rows * k];
            assert!(dequantize(ty, &w, &mut all));
            let mut p = w.clone();
            assert!(pack(ty, &mut p, rows));
            let ids = [7, 0, 23, 7];
            let mut out = vec![0f32; ids.len() * k];
            assert!(dequantize_rows(ty, &p, k, &ids, &mut out));
            for (i, &r) in ids.iter().enumerate() {
                assert_eq!(out[i * k..][..k], all[r * k..][..k], "{ty:?} row {r}");
            }
            assert!(!dequantize_rows(ty, &p, k, &[24], &mut out[..k]));
        }
    }

    /// The selected kernel (VNNI where the CPU has it), the portable packed kernel and the
    /// row layout's portable kernel agree, for tiles of one to four activation rows and
    /// group counts that leave tails.
    #[test]
    fn packed_kernels_match_the_row_layout() {
        let mut seed = 11;
        for ty in TYPES {
            for (m, n, k) in [(1, 8, 32), (1, 40, 96), (2, 24, 64), (3, 56, 128), (4, 72, 64)] {
                assert!(m <= ROWS);
                let kb = k / 32;
                let w = random_blocks(ty, n * kb, &mut seed);
                let x: Vec<f32> =
                    (0..m * k).map(|_| (lcg(&mut seed) % 2001) as f32 / 1000.0 - 1.0).collect();
                let mut xq = vec![BlockQ8::zeroed(); m * kb];
                quantize_q8(&x, &mut xq);
                let mut want = vec![0f32; m * n];
                portable_kernel(ty).unwrap()(&w, &xq, kb, &mut want, n);
                let mut p = w.clone();
                assert!(pack(ty, &mut p, n));
                for (name, f) in [("selected", kernel(ty)), ("portable", portable_packed(ty))] {
                    let mut got = vec![0f32; m * n];
                    f.unwrap()(&p, &xq, kb, &mut got, n);
                    for (i, (&g, &r)) in got.iter().zip(&want).enumerate() {
                        let tol = 1e-5 * (1.0 + r.abs()) * (k as f32).sqrt();
                        assert!(
                            (g - r).abs() <= tol,
                            "{ty:?} {name} {m}x{n}x{k} [{i}]: {g} vs {r}"
                        );
                    }
                }
            }
        }
    }
}
