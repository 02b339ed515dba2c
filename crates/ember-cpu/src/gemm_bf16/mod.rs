//! bf16 matrix products: bf16 inputs, f32 accumulation, bf16 or f32 output.
//!
//! On x86-64 CPUs with AVX512-BF16 (checked at run time) products run on `vdpbf16ps`, split
//! over the rayon pool: skinny ones (few rows or columns) read the big operand in place
//! (`skinny`), the rest go through packed, cache-blocked panels (`pack`, `kernel`). Like the
//! instructions, these paths treat subnormal inputs and results as zero. Elsewhere products
//! widen the operands to f32 and use the f32 GEMM (`widened`).

#[cfg(target_arch = "x86_64")]
mod kernel;
#[cfg(target_arch = "x86_64")]
mod pack;
#[cfg(target_arch = "x86_64")]
mod skinny;

use crate::matmul::{Gemm, MatRef};
use half::bf16;

/// A matrix product's output: `m x n`, row-major, contiguous.
enum Out<'a> {
    F32(&'a mut [f32]),
    Bf16(&'a mut [bf16]),
}

/// `out (m x n, row-major, contiguous) = a (m x k) @ b (k x n)`, accumulated in f32 and
/// rounded to bf16 (nearest-even). Panics if `out` or a view is too small.
pub fn matmul_bf16(
    out: &mut [bf16],
    a: MatRef<bf16>,
    b: MatRef<bf16>,
    m: usize,
    n: usize,
    k: usize,
) {
    matmul(Out::Bf16(out), a, b, m, n, k)
}

/// `out (m x n, row-major, contiguous) = a (m x k) @ b (k x n)` for bf16 operands, accumulated
/// and returned in f32. Panics if `out` or a view is too small.
pub fn matmul_bf16_f32(
    out: &mut [f32],
    a: MatRef<bf16>,
    b: MatRef<bf16>,
    m: usize,
    n: usize,
    k: usize,
) {
    matmul(Out::F32(out), a, b, m, n, k)
}

fn matmul(out: Out, a: MatRef<bf16>, b: MatRef<bf16>, m: usize, n: usize, k: usize) {
    let len = match &out {
        Out::F32(o) => o.len(),
        Out::Bf16(o) => o.len(),
    };
    assert!(len >= m * n, "output too small");
    a.check(m, k);
    b.check(k, n);
    #[cfg(target_arch = "x86_64")]
    if kernel::available() {
        return packed(out, a, b, m, n, k);
    }
    widened(out, a, b, m, n, k)
}

/// The portable path: widen both operands to dense f32, multiply in f32, narrow.
fn widened(out: Out, a: MatRef<bf16>, b: MatRef<bf16>, m: usize, n: usize, k: usize) {
    let (a32, b32) = (widen(a, m, k), widen(b, k, n));
    let (a32, b32) = (MatRef::dense(&a32, k), MatRef::dense(&b32, n));
    match out {
        Out::F32(o) => f32::matmul(o, a32, b32, m, n, k),
        Out::Bf16(o) => {
            let mut o32 = vec![0f32; m * n];
            f32::matmul(&mut o32, a32, b32, m, n, k);
            o.iter_mut().zip(o32).for_each(|(o, v)| *o = bf16::from_f32(v));
        }
    }
}

/// Copies a strided matrix into a dense row-major f32 one.
fn widen(x: MatRef<bf16>, rows: usize, cols: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * cols);
    for i in 0..rows {
        for j in 0..cols {
            let at = x.offset as isize + i as isize * x.row_stride + j as isize * x.col_stride;
            out.push(x.data[at as usize].to_f32());
        }
    }
    out
}

/// The output's base pointer, shared by the threads that each write one block of it.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
enum OutPtr {
    F32(*mut f32),
    Bf16(*mut u16),
}

// SAFETY: an `OutPtr` is only dereferenced by `kernel::block` and the `skinny` kernels, whose
// callers give each thread a disjoint part of the output, borrowed mutably for the whole call.
#[cfg(target_arch = "x86_64")]
unsafe impl Send for OutPtr {}
// SAFETY: as for `Send`: threads share the pointer but write disjoint parts.
#[cfg(target_arch = "x86_64")]
unsafe impl Sync for OutPtr {}

/// Products below this many multiply-adds run on one thread.
#[cfg(target_arch = "x86_64")]
const PARALLEL_WORK: usize = 1 << 20;

/// The AVX512-BF16 path: skinny products in place; otherwise C split into one block per
/// rayon thread along its longer side, each packed and multiplied by `kernel::block`.
#[cfg(target_arch = "x86_64")]
fn packed(out: Out, a: MatRef<bf16>, b: MatRef<bf16>, m: usize, n: usize, k: usize) {
    use kernel::{MR, NR};
    use rayon::prelude::*;
    let ptr = match out {
        Out::F32(o) if k == 0 => return o[..m * n].fill(0.0),
        Out::Bf16(o) if k == 0 => return o[..m * n].fill(bf16::ZERO),
        Out::F32(o) => OutPtr::F32(o.as_mut_ptr()),
        Out::Bf16(o) => OutPtr::Bf16(o.as_mut_ptr() as *mut u16),
    };
    if m == 0 || n == 0 {
        return;
    }
    let (a, b) = (pack::Bits::new(a), pack::Bits::new(b));
    // SAFETY: as for `kernel::block` below, for the whole output.
    if unsafe { skinny::skinny(ptr, a, b, m, n, k) } {
        return;
    }
    let threads = rayon::current_num_threads();
    let parts = if m * n * k >= PARALLEL_WORK { threads } else { 1 };
    let (mt, nt) = (m.div_ceil(MR), n.div_ceil(NR));
    let blocks: Vec<_> = if nt >= mt {
        let step = nt.div_ceil(parts) * NR;
        (0..n).step_by(step).map(|j| (0..m, j..(j + step).min(n))).collect()
    } else {
        let step = mt.div_ceil(parts) * MR;
        (0..m).step_by(step).map(|i| (i..(i + step).min(m), 0..n)).collect()
    };
    blocks.into_par_iter().for_each(|(rows, cols)| {
        // SAFETY: `available()` held in `matmul`; `out` holds m*n elements (checked there) and
        // outlives this call; the blocks are disjoint, so each is written by one thread only;
        // `check` proved a is m x k and b is k x n inside their slices.
        unsafe { kernel::block(a, b, k, rows, cols, ptr, n) }
    });
}

#[cfg(test)]
mod tests;
