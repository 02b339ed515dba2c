//! The AVX512-BF16 path: an `MR x NR` register-blocked microkernel built on `vdpbf16ps`, and
//! the cache-blocked loops that feed it packed panels (see `pack`).
//!
//! Loop order for one thread's block of C: column blocks (B packed once for all k) -> row
//! blocks of `MC` -> k blocks of `KC` (A packed, in L2) -> `NR`-wide B panels (in L2, reused
//! by every A panel of the row block; the next one is prefetched meanwhile) -> `MR`-tall A
//! panels. Small A (up to `A_ONCE` values) is instead packed once up front, and B in narrow
//! column blocks that stay in cache; large A is packed per row and k block, against wide B
//! blocks (up to `NC` columns) that amortise the repacking. `KC` is long: the kernel streams
//! both panels from L2 at full speed, and long k blocks make the per-tile cost of loading and
//! storing C small. When k spans several blocks, partial sums go to an f32 scratch tile and
//! only the last k block writes the output (as f32 or rounded to bf16).

use super::pack::{pack_pairs, Bits};
use super::OutPtr;
use bytemuck::{Pod, Zeroable};
use std::arch::x86_64::*;
use std::cell::RefCell;
use std::ops::Range;

/// Rows of the microkernel tile. 12 rather than the 14 the registers allow: measured on Zen 4,
/// it runs 1024-cubed products ~5% faster (an A step is then 48 bytes) and 4096 ~1% slower.
pub(super) const MR: usize = 12;
/// zmm vectors (16 f32 lanes each) per tile row.
const NV: usize = 2;
/// Columns of the microkernel tile.
pub(super) const NR: usize = 16 * NV;
/// k values per A panel (even, so only the last block can hold an odd tail).
const KC: usize = 2048;
/// Rows of C per A block.
const MC: usize = 8 * MR;
/// Most columns per packed B block.
const NC: usize = 64 * NR;
/// Most bf16 values of A (rows x k) packed all at once, for narrow B blocks: 4 MiB.
const A_ONCE: usize = 2 << 20;
/// Columns per packed B block when A is packed all at once.
const SINGLE_NC: usize = 8 * NR;
/// Most bf16 values in a packed B block (k x block columns): 16 MiB.
const B_BLOCK: usize = 8 << 20;
/// Row stride of the f32 partial-sum tile: not a power of two, so its rows spread over cache
/// sets (a power-of-two stride makes the tile's rows evict each other).
const CLD: usize = NC + 16;

/// Whether this CPU runs the kernel.
pub(super) fn available() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512bf16")
}

/// Where a finished tile goes: `ptr` is its top-left element, `ld` the row stride.
#[derive(Clone, Copy)]
enum Dst {
    F32 { ptr: *mut f32, ld: usize },
    Bf16 { ptr: *mut u16, ld: usize },
}

/// Lane masks for the first `nr` columns of a tile, one per zmm vector.
fn col_masks(nr: usize) -> [u16; NV] {
    std::array::from_fn(|v| {
        let live = nr.saturating_sub(16 * v).min(16);
        ((1u32 << live) - 1) as u16
    })
}

/// `dst[..mr, ..nr] = (acc_in[..mr, ..nr] or 0) + A panel @ B panel` over `kp` pair steps,
/// prefetching `16 * kp` bytes from `prefetch` on the way (any address: prefetches never fault).
///
/// # Safety
/// The CPU has AVX512F/BW/VL/BF16. `a` holds `kp * MR` pairs, `b` holds `kp * NR` pairs and
/// is 64-byte aligned. When `acc_in` is non-null, it addresses `mr` rows (stride `acc_ld`) of
/// at least `nr` readable f32 each; `dst` addresses `mr` rows of at least `nr` writable
/// elements (rows may overlap `acc_in` exactly, which is read first).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn microkernel(
    kp: usize,
    a: *const u32,
    b: *const u32,
    acc_in: *const f32,
    acc_ld: usize,
    dst: Dst,
    mr: usize,
    nr: usize,
    prefetch: *const u8,
) {
    if !acc_in.is_null() {
        // Start fetching the partial sums now; they are added after the k loop.
        for i in 0..mr {
            for v in 0..NV {
                let line = acc_in.wrapping_add(i * acc_ld + 16 * v) as *const i8;
                _mm_prefetch::<_MM_HINT_T0>(line);
            }
        }
    }
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    let (mut a, mut b, mut pf) = (a, b, prefetch);
    for _ in 0..kp {
        // A slice of the next B panel towards L2, 16 bytes a step.
        _mm_prefetch::<_MM_HINT_T1>(pf as *const i8);
        pf = pf.wrapping_add(16);
        let mut bv = [_mm512_setzero_si512().into_bh(); NV];
        for (v, x) in bv.iter_mut().enumerate() {
            // SAFETY: `b` points at this step's NR pairs (caller's contract), 64-byte aligned
            // since a step is NR pairs = 128 bytes and the panel start is aligned.
            *x = unsafe { _mm512_load_si512(b.add(16 * v) as *const _) }.into_bh();
        }
        for (i, row) in acc.iter_mut().enumerate() {
            // SAFETY: `a` points at this step's MR pairs.
            let av = unsafe { _mm512_set1_epi32(*a.add(i) as i32) }.into_bh();
            for (v, c) in row.iter_mut().enumerate() {
                *c = _mm512_dpbf16_ps(*c, av, bv[v]);
            }
        }
        // SAFETY: stays within (or one past) the panels, per the caller's contract.
        unsafe {
            a = a.add(MR);
            b = b.add(NR);
        }
    }
    let masks = col_masks(nr);
    for (i, row) in acc.iter_mut().enumerate() {
        if i >= mr {
            break;
        }
        for (v, c) in row.iter_mut().enumerate() {
            if !acc_in.is_null() {
                // SAFETY: row i < mr of `acc_in`, lanes masked to the first nr columns.
                let old =
                    unsafe { _mm512_maskz_loadu_ps(masks[v], acc_in.add(i * acc_ld + 16 * v)) };
                *c = _mm512_add_ps(*c, old);
            }
            // SAFETY: row i < mr of `dst`, lanes masked to the first nr columns; the bf16
            // vector is reinterpreted as integers of the same size.
            unsafe {
                match dst {
                    Dst::F32 { ptr, ld } => {
                        _mm512_mask_storeu_ps(ptr.add(i * ld + 16 * v), masks[v], *c)
                    }
                    Dst::Bf16 { ptr, ld } => {
                        let h: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(*c));
                        _mm256_mask_storeu_epi16(ptr.add(i * ld + 16 * v) as *mut _, masks[v], h)
                    }
                }
            }
        }
    }
}

/// Reinterprets integer vectors as bf16 vectors.
pub(super) trait IntoBh {
    fn into_bh(self) -> __m512bh;
}

impl IntoBh for __m512i {
    #[inline(always)]
    fn into_bh(self) -> __m512bh {
        // SAFETY: both are plain 512-bit vectors; every bit pattern is valid for each.
        unsafe { std::mem::transmute::<__m512i, __m512bh>(self) }
    }
}

/// A 64-byte aligned run of 16 pairs: packed panels are built from these so B panel steps
/// can use aligned loads.
#[repr(C, align(64))]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct Line([u32; 16]);

/// Per-thread buffers reused across calls: packed A block, packed B block, f32 C tile.
#[derive(Default)]
pub(super) struct Scratch {
    pub(super) a: Vec<Line>,
    pub(super) b: Vec<Line>,
    c: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

/// Runs `f` with this thread's scratch buffers (`f` must not re-enter it).
pub(super) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with_borrow_mut(f)
}

/// The first `n` pairs of `buf`, grown as needed; starts 64-byte aligned.
pub(super) fn pairs(buf: &mut Vec<Line>, n: usize) -> &mut [u32] {
    let lines = n.div_ceil(16);
    if buf.len() < lines {
        buf.resize(lines, Line([0; 16]));
    }
    &mut bytemuck::cast_slice_mut(&mut buf[..lines])[..n]
}

/// Computes the block `rows x cols` of `out = a @ b` (inner dimension `k > 0`), where `out`
/// is row-major with row stride `ld`.
///
/// # Safety
/// `available()` is true; `out` addresses a row-major matrix with row stride `ld` that
/// contains the block, and nothing else reads or writes the block during the call; `a` has at
/// least `rows.end` rows and `k` columns, `b` has `k` rows and at least `cols.end` columns.
pub(super) unsafe fn block(
    a: Bits,
    b: Bits,
    k: usize,
    rows: Range<usize>,
    cols: Range<usize>,
    out: OutPtr,
    ld: usize,
) {
    with_scratch(|s| {
        // SAFETY: forwarded from this function's contract.
        unsafe { block_in(s, a, b, k, rows, cols, out, ld) }
    })
}

/// `block` with its scratch buffers. Same contract.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn block_in(
    s: &mut Scratch,
    a: Bits,
    b: Bits,
    k: usize,
    rows: Range<usize>,
    cols: Range<usize>,
    out: OutPtr,
    ld: usize,
) {
    let Scratch { a: abuf, b: bbuf, c: cbuf } = s;
    let kp_all = k.div_ceil(2);
    if k > KC && cbuf.len() < MC * CLD {
        cbuf.resize(MC * CLD, 0.0);
    }
    // When A is small, it is packed once, for all rows and k, and B in narrow column blocks
    // that are used while still in cache. Otherwise column blocks are as wide as NC (narrower
    // when k is so long that B would not fit B_BLOCK) and A is packed per row and k block.
    let single = rows.len() * k <= A_ONCE;
    let a_all = rows.len().div_ceil(MR) * MR * kp_all;
    let nc = if single {
        pack_pairs(pairs(abuf, a_all), a, rows.clone(), 0..k, MR);
        SINGLE_NC
    } else {
        (B_BLOCK / k / NR).clamp(1, NC / NR) * NR
    };
    for jc in cols.clone().step_by(nc) {
        let jcols = jc..(jc + nc).min(cols.end);
        let bp = pairs(bbuf, jcols.len().div_ceil(NR) * NR * kp_all);
        pack_pairs(bp, b.t(), jcols.clone(), 0..k, NR);
        for ic in rows.clone().step_by(MC) {
            let irows = ic..(ic + MC).min(rows.end);
            for pc in (0..k).step_by(KC) {
                let ks = pc..(pc + KC).min(k);
                let kp = ks.len().div_ceil(2);
                // A panels hold `a_steps` steps; this k block starts at step `a_off`.
                let (ap, a_steps, a_off): (&[u32], _, _) = if single {
                    let first_panel = (ic - rows.start) / MR * MR * kp_all;
                    (&pairs(abuf, a_all)[first_panel..], kp_all, pc / 2)
                } else {
                    let ap = pairs(abuf, irows.len().div_ceil(MR) * MR * kp);
                    pack_pairs(ap, a, irows.clone(), ks.clone(), MR);
                    (ap, kp, 0)
                };
                let (first, last) = (pc == 0, ks.end == k);
                let panels = jcols.len().div_ceil(NR);
                for (jp, j0) in jcols.clone().step_by(NR).enumerate() {
                    let bpanel = &bp[(jp * kp_all + pc / 2) * NR..][..kp * NR];
                    // The panel after this one (or the first again, for the next row block):
                    // the A panels' calls each prefetch their share of it (kp * 16 bytes).
                    let next = &bp[((jp + 1) % panels * kp_all + pc / 2) * NR..];
                    let nr = NR.min(jcols.end - j0);
                    for (ip, i0) in irows.clone().step_by(MR).enumerate() {
                        let apanel = &ap[(ip * a_steps + a_off) * MR..][..kp * MR];
                        let mr = MR.min(irows.end - i0);
                        // Partial sums over k blocks live in this tile's spot of `cbuf`.
                        let tile = cbuf.as_mut_ptr().wrapping_add((i0 - ic) * CLD + (j0 - jc));
                        let at = i0 * ld + j0;
                        let dst = match out {
                            _ if !last => Dst::F32 { ptr: tile, ld: CLD },
                            OutPtr::F32(p) => Dst::F32 { ptr: p.wrapping_add(at), ld },
                            OutPtr::Bf16(p) => Dst::Bf16 { ptr: p.wrapping_add(at), ld },
                        };
                        let acc_in = if first { std::ptr::null() } else { tile as *const f32 };
                        // SAFETY: the panels hold kp steps (slices above; B panels start on
                        // a 128-byte step boundary of an aligned buffer); the mr x nr tile
                        // lies in the block of `out`, or in `cbuf` (MC x CLD, allocated when
                        // k > KC, the only case with a k block that is not both first and last).
                        unsafe {
                            microkernel(
                                kp,
                                apanel.as_ptr(),
                                bpanel.as_ptr(),
                                acc_in,
                                CLD,
                                dst,
                                mr,
                                nr,
                                (next.as_ptr() as *const u8).wrapping_add(ip * kp * 16),
                            )
                        }
                    }
                }
            }
        }
    }
}
