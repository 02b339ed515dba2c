//! Products of f32 activations with f16 weight matrices (the matrices of GGUF F16 files):
//! `out (m x n) = x (m x k) @ W^T`, `W` as `n` rows of `k` little-endian f16 values. Each
//! weight is read once as f16, half the bytes of f32, and widened in registers. One activation
//! row (a decode step) is a bandwidth-bound matrix-vector product (AVX-512 `vcvtph2ps` and FMA
//! when the CPU has them); several rows widen blocks of weight rows into f32 scratch once and
//! multiply them with the f32 GEMM, one block per task.

use crate::matmul::{matmul_f32_one_thread, place_column_blocks, MatRef};
use half::f16;
use rayon::prelude::*;

/// Weight values one task widens to f32 at a time when several activation rows share them
/// (1 MiB of f32, which stays in the core's cache while its GEMM reads it).
const TASK_VALUES: usize = 1 << 18;
/// Products below this many multiply-adds run on one thread.
const PARALLEL_WORK: usize = 1 << 17;

/// `out = x @ W^T` (see the module doc). Panics if the sizes disagree (callers validate).
pub fn matmul(out: &mut [f32], x: &[f32], w: &[u8], m: usize, n: usize, k: usize) {
    assert!(
        x.len() == m * k && w.len() == n * k * 2 && out.len() == m * n,
        "f16 weight matmul: size mismatch"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        return out.fill(0.0);
    }
    if m == 1 {
        return matvec_parts(out, x, &[w], k);
    }
    // Blocks of weight rows are split between the threads, each widened into its task's
    // scratch and multiplied there by a one-thread f32 GEMM: no thread waits on another
    // inside a product (one GEMM over all threads per widened block ran ~1.6x slower).
    let rows = (TASK_VALUES / k).clamp(1, n);
    let tasks = n.div_ceil(rows).next_multiple_of(rayon::current_num_threads());
    let rows = n.div_ceil(tasks);
    let parts: Vec<Vec<f32>> = w
        .par_chunks(rows * k * 2)
        .map_init(Vec::new, |wide, wc| {
            let nb = wc.len() / (2 * k);
            wide.resize(nb * k, 0.0);
            wide.chunks_mut(k).zip(wc.chunks(2 * k)).for_each(|(d, s)| widen_row(d, s));
            // `wide` is nb x k row-major; its transpose is the k x nb right operand.
            let wt = MatRef { data: &wide[..], offset: 0, row_stride: 1, col_stride: k as isize };
            let mut part = vec![0f32; m * nb];
            matmul_f32_one_thread(&mut part, MatRef::dense(x, k), wt, m, nb, k);
            part
        })
        .collect();
    place_column_blocks(out, &parts, m, n);
}

/// `out = x @ W^T` for one activation row `x` and W the rows of `parts` stacked (f16 bytes,
/// `k` values per row, `out` one value per row): one pass over the thread pool for all parts.
pub(crate) fn matvec_parts(out: &mut [f32], x: &[f32], parts: &[&[u8]], k: usize) {
    let n = out.len();
    let parallel = n * k >= PARALLEL_WORK;
    let rows = if parallel { n.div_ceil(4 * rayon::current_num_threads()) } else { n };
    let rows = rows.next_multiple_of(4);
    // Tasks of `rows` weight rows, fewer at the end of a part.
    let mut tasks = Vec::new();
    let mut rest = out;
    for w in parts {
        let (o, tail) = std::mem::take(&mut rest).split_at_mut(w.len() / (2 * k));
        tasks.extend(o.chunks_mut(rows).zip(w.chunks(rows * k * 2)));
        rest = tail;
    }
    tasks.into_par_iter().for_each(|(o, wc)| matvec(o, x, wc, k));
}

/// `dst = src` widened (`src` as little-endian f16 bytes, at any alignment).
pub(crate) fn widen_row(dst: &mut [f32], src: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above).
        return unsafe { avx512::widen_row(dst, src) };
    }
    widen_each(dst, src);
}

/// [`widen_row`] one value at a time.
fn widen_each(dst: &mut [f32], src: &[u8]) {
    for (d, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *d = widen([b[0], b[1]]);
    }
}

fn widen(b: [u8; 2]) -> f32 {
    f16::from_le_bytes(b).to_f32()
}

/// `o[j] = x . W[j]` for the rows of `w`.
fn matvec(o: &mut [f32], x: &[f32], w: &[u8], k: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above); `w` holds `o.len()` rows of `k`
        // f16 values and `x` holds `k` values (checked by `matmul`).
        return unsafe { avx512::matvec(o, x, w, k) };
    }
    for (o, row) in o.iter_mut().zip(w.chunks_exact(2 * k)) {
        *o = dot_tail(x, row);
    }
}

/// `x . row` element by element (`row` as f16 bytes).
fn dot_tail(x: &[f32], row: &[u8]) -> f32 {
    x.iter().zip(row.chunks_exact(2)).map(|(&x, b)| x * widen([b[0], b[1]])).sum()
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{dot_tail, widen_each};
    use std::arch::x86_64::*;

    /// `dst = src` widened, 16 values per `vcvtph2ps` (the scalar conversion of `half` cost a
    /// seventh of an F16 prompt's time); the last `len % 16` one by one.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn widen_row(dst: &mut [f32], src: &[u8]) {
        let mut chunks = dst.chunks_exact_mut(16).zip(src.chunks_exact(32));
        for (d, s) in &mut chunks {
            // SAFETY: `s` is 32 readable bytes and `d` 16 writable f32; the unaligned load and
            // store have no alignment requirement.
            unsafe {
                let v = _mm512_cvtph_ps(_mm256_loadu_si256(s.as_ptr() as *const __m256i));
                _mm512_storeu_ps(d.as_mut_ptr(), v);
            }
        }
        let done = dst.len() / 16 * 16;
        widen_each(&mut dst[done..], &src[2 * done..]);
    }

    /// Four rows at a time (four independent FMA chains over one pass of `x`), 16 values per
    /// step; the last `k % 16` values and rows past a multiple of four element by element.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `w` must hold `o.len()` rows of `k` f16 values (`2k`
    /// bytes each) and `x` at least `k` values.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn matvec(o: &mut [f32], x: &[f32], w: &[u8], k: usize) {
        let (row_bytes, body) = (2 * k, k / 16 * 16);
        let x = &x[..k];
        let mut rows = o.chunks_exact_mut(4).zip(w.chunks_exact(4 * row_bytes));
        for (o4, w4) in &mut rows {
            let mut acc = [_mm512_setzero_ps(); 4];
            // The four rows after the next four (contiguous), fetched as this group is read:
            // the hardware prefetcher alone leaves this loop waiting on memory (a third of the
            // bandwidth). Two groups ahead rather than one: 80 against 74 GB/s in a
            // standalone two-thread loop over 256 MiB, within noise in a decode step.
            let next = w4.as_ptr().wrapping_add(8 * row_bytes);
            for c in (0..body).step_by(16) {
                _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(8 * c) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(8 * c + 64) as *const i8);
                // SAFETY: `c + 16 <= k`: 16 values of `x` and 32 bytes of each row.
                let xv = unsafe { _mm512_loadu_ps(x.as_ptr().add(c)) };
                for (r, a) in acc.iter_mut().enumerate() {
                    let p = w4[r * row_bytes + 2 * c..][..32].as_ptr() as *const __m256i;
                    // SAFETY: the slice above holds the 32 bytes loaded.
                    let wv = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(p) });
                    *a = _mm512_fmadd_ps(xv, wv, *a);
                }
            }
            for (r, (o, a)) in o4.iter_mut().zip(acc).enumerate() {
                let row = &w4[r * row_bytes..][..row_bytes];
                *o = _mm512_reduce_add_ps(a) + dot_tail(&x[body..], &row[2 * body..]);
            }
        }
        let done = o.len() / 4 * 4;
        for (o, row) in o[done..].iter_mut().zip(w[done * row_bytes..].chunks_exact(row_bytes)) {
            *o = dot_tail(x, row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantized::tests::uniform;

    /// `x @ W^T` in f64.
    fn reference(x: &[f32], w: &[u8], m: usize, n: usize, k: usize) -> Vec<f64> {
        let mut out = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k)
                    .map(|p| {
                        let b = &w[(j * k + p) * 2..][..2];
                        x[i * k + p] as f64 * widen([b[0], b[1]]) as f64
                    })
                    .sum();
            }
        }
        out
    }

    #[test]
    fn products_match_f64_for_one_and_several_rows() {
        let mut seed = 0x9e37_79b9_u64;
        let mut rand = move || uniform(&mut seed);
        // k a multiple of 16 and not (the tail), n not a multiple of 4 (the row tail), sizes
        // past the parallel threshold, and several rows over weights split into blocks (equal
        // ones, and a short last one).
        for (m, n, k) in
            [(1, 7, 48), (1, 37, 40), (1, 1030, 160), (5, 9, 40), (3, 600, 96), (2, 2500, 1000)]
        {
            let x: Vec<f32> = (0..m * k).map(|_| rand()).collect();
            let w: Vec<u8> = (0..n * k).flat_map(|_| f16::from_f32(rand()).to_le_bytes()).collect();
            let mut out = vec![0f32; m * n];
            matmul(&mut out, &x, &w, m, n, k);
            for (i, (&got, want)) in out.iter().zip(reference(&x, &w, m, n, k)).enumerate() {
                assert!((got as f64 - want).abs() < 1e-4, "{m}x{n}x{k} [{i}]: {got} vs {want}");
            }
        }
    }

    #[test]
    fn stacked_parts_match_one_matrix_of_their_rows() {
        let mut seed = 0x51ed_270b_u64;
        let k = 160;
        // Parts of uneven sizes past the parallel threshold, whose boundaries fall inside the
        // pieces the threads take, on one and two threads.
        let sizes = [576, 197, 3, 250];
        let n: usize = sizes.iter().sum();
        let x: Vec<f32> = (0..k).map(|_| uniform(&mut seed)).collect();
        let w: Vec<u8> =
            (0..n * k).flat_map(|_| f16::from_f32(uniform(&mut seed)).to_le_bytes()).collect();
        let mut parts = Vec::new();
        let mut rest = &w[..];
        for s in sizes {
            let (p, tail) = rest.split_at(s * k * 2);
            parts.push(p);
            rest = tail;
        }
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut out = vec![0f32; n];
            pool.install(|| matvec_parts(&mut out, &x, &parts, k));
            for (i, (&got, want)) in out.iter().zip(reference(&x, &w, 1, n, k)).enumerate() {
                assert!((got as f64 - want).abs() < 1e-4, "{threads} threads, row {i}: {got}");
            }
        }
    }

    #[test]
    fn an_empty_inner_dimension_gives_zeros() {
        let mut out = vec![1f32; 6];
        matmul(&mut out, &[], &[], 2, 3, 0);
        assert_eq!(out, [0.0; 6]);
    }

    #[test]
    #[should_panic(expected = "size mismatch")]
    fn wrong_sizes_are_refused() {
        matmul(&mut [0.0; 2], &[1.0; 3], &[0; 10], 1, 2, 3);
    }
}
