//! Gather, scatter and copy kernels: `take`, `take_along_axis`, scatters, concatenation,
//! strided writes and padding. Index values are resolved against their axis (negatives
//! wrapped) and bounds checked: `take` does so as it gathers, the others receive them
//! resolved by `resolve_indices`. An out-of-range index is reported, never read through.
//!
//! Data-movement kernels are generic over `T: Copy` only, so the caller may run them on
//! same-sized integer types and monomorphise four times instead of once per dtype.

use crate::scalar::Scalar;
use crate::strided::{for_each_row, map1, Rows, View, PARALLEL_THRESHOLD};
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// Resolves an index against an axis of length `n` (negatives count from the end); `None`
/// when it is out of range.
#[inline]
pub fn resolve_index<I: Scalar>(v: I, n: usize) -> Option<usize> {
    if I::IS_SIGNED {
        let v = v.to_i64();
        let w = if v < 0 { v + n as i64 } else { v };
        (w >= 0 && (w as u64) < n as u64).then_some(w as usize)
    } else {
        let v = v.to_u64();
        (v < n as u64).then_some(v as usize)
    }
}

/// The first index of `idx` outside an axis of length `n`, as reported to the user.
fn first_bad<I: Scalar>(idx: impl IntoIterator<Item = I>, n: usize) -> i128 {
    let bad = idx.into_iter().find(|&v| resolve_index(v, n).is_none()).expect("a bad index");
    if I::IS_SIGNED {
        bad.to_i64() as i128
    } else {
        bad.to_u64() as i128
    }
}

/// Resolves index values against an axis of length `n`: negatives count from the end.
/// Returns them in row-major order of `idx`, or the first value that is out of range.
pub fn resolve_indices<I: Scalar>(idx: View<'_, I>, n: usize) -> Result<Vec<usize>, i128> {
    let bad = AtomicBool::new(false);
    let mut out = vec![0usize; idx.len()];
    map1(&mut out, idx, |v| {
        resolve_index(v, n).unwrap_or_else(|| {
            bad.store(true, Relaxed);
            0
        })
    });
    if !bad.into_inner() {
        return Ok(out);
    }
    // Error path only: read the values again to report the offending one.
    let mut raw = vec![I::default(); idx.len()];
    map1(&mut raw, idx, |v| v);
    Err(first_bad(raw, n))
}

/// Runs `f(chunk_index, chunk)` on consecutive `chunk_len`-element chunks of `out`, in
/// parallel (several chunks per task) when `out` is large.
pub fn for_each_chunk<T: Send, F>(out: &mut [T], chunk_len: usize, f: F)
where
    F: Fn(usize, &mut [T]) + Sync,
{
    for_each_chunk_with(out, chunk_len, || (), |_, i, c| f(i, c));
}

/// [`for_each_chunk`] with scratch state: `init` makes one per task, and `f` gets it with
/// every chunk of that task.
pub fn for_each_chunk_with<T, S, I, F>(out: &mut [T], chunk_len: usize, init: I, f: F)
where
    T: Send,
    I: Fn() -> S + Sync,
    F: Fn(&mut S, usize, &mut [T]) + Sync,
{
    if chunk_len == 0 || out.is_empty() {
        return;
    }
    if out.len() >= PARALLEL_THRESHOLD && out.len() > chunk_len {
        let per_task = (PARALLEL_THRESHOLD / 4).div_ceil(chunk_len).max(1);
        out.par_chunks_mut(per_task * chunk_len).enumerate().for_each(|(t, task)| {
            let mut scratch = init();
            for (k, c) in task.chunks_mut(chunk_len).enumerate() {
                f(&mut scratch, t * per_task + k, c);
            }
        });
    } else {
        let mut scratch = init();
        for (k, c) in out.chunks_mut(chunk_len).enumerate() {
            f(&mut scratch, k, c);
        }
    }
}

/// The element offset of row-major position `i` over `shape` with `strides`.
#[inline]
pub fn unravel_offset(mut i: usize, shape: &[usize], strides: &[isize]) -> isize {
    let mut off = 0isize;
    for (&n, &s) in shape.iter().zip(strides).rev() {
        off += (i % n) as isize * s;
        i /= n;
    }
    off
}

/// A strided block (the trailing dims of a view) copied out row by row. Built once and
/// reused for every position of the block, so copying a block allocates nothing.
struct Block {
    rows: Rows<1>,
    len: usize,
}

impl Block {
    fn new(shape: &[usize], strides: &[isize]) -> Block {
        Block { rows: Rows::new(shape, [strides], [0]), len: shape.iter().product() }
    }

    /// Copies the block whose first element is `data[base]` into `dst` (`len` elements).
    #[inline]
    fn copy<T: Copy + Send + Sync>(&self, dst: &mut [T], data: &[T], base: isize) {
        if self.len == 1 {
            dst[0] = data[base as usize];
            return;
        }
        let inner = self.rows.inner_len;
        let [st] = self.rows.inner_strides;
        for (r, d) in dst.chunks_mut(inner).enumerate().take(self.rows.count()) {
            let [off] = self.rows.offsets(r);
            let start = base + off;
            if st == 1 {
                let src = &data[start as usize..start as usize + inner];
                if inner >= PARALLEL_THRESHOLD {
                    let chunk = PARALLEL_THRESHOLD / 4;
                    d.par_chunks_mut(chunk)
                        .zip(src.par_chunks(chunk))
                        .for_each(|(d, s)| d.copy_from_slice(s));
                } else {
                    d.copy_from_slice(src);
                }
            } else {
                for (i, d) in d.iter_mut().enumerate() {
                    *d = data[(start + i as isize * st) as usize];
                }
            }
        }
    }
}

/// `take` along `axis`: `out` has shape `src.shape[..axis] + [idx.len()] + src.shape[axis+1..]`
/// (index dims flattened). Indices are resolved as they are read; on an out-of-range one the
/// output is left incomplete and the first such index returned. Taking rows of a contiguous
/// matrix is one `memcpy` per index.
pub fn take<T, I>(out: &mut [T], src: View<'_, T>, axis: usize, idx: &[I]) -> Result<(), i128>
where
    T: Copy + Send + Sync,
    I: Scalar,
{
    let block = Block::new(&src.shape[axis + 1..], &src.strides[axis + 1..]);
    let (outer_shape, outer_strides) = (&src.shape[..axis], &src.strides[..axis]);
    let (n, len, ax_stride) = (idx.len(), src.shape[axis], src.strides[axis]);
    if len == 0 && !out.is_empty() {
        return Err(first_bad(idx.iter().copied(), len));
    }
    let outer_base = |o| src.offset as isize + unravel_offset(o, outer_shape, outer_strides);
    // A bad index is flagged and replaced by 0 (in range, as `len > 0`).
    let bad = AtomicBool::new(false);
    let at = |i: I| {
        resolve_index(i, len).unwrap_or_else(|| {
            bad.store(true, Relaxed);
            0
        }) as isize
            * ax_stride
    };
    if block.len == 1 {
        // Single elements: fixed-size chunks of the output, each walked in runs that stay
        // within one outer row so the inner loop is a plain gather.
        const CHUNK: usize = 4096;
        for_each_chunk(out, CHUNK, |c, mut chunk| {
            let (mut o, mut j) = ((c * CHUNK) / n, (c * CHUNK) % n);
            while !chunk.is_empty() {
                let run = chunk.len().min(n - j);
                let (head, rest) = std::mem::take(&mut chunk).split_at_mut(run);
                let base = outer_base(o);
                for (v, &i) in head.iter_mut().zip(&idx[j..j + run]) {
                    *v = src.data[(base + at(i)) as usize];
                }
                (chunk, o, j) = (rest, o + 1, 0);
            }
        });
    } else {
        for_each_chunk(out, block.len, |r, row| {
            block.copy(row, src.data, outer_base(r / n) + at(idx[r % n]));
        });
    }
    if bad.into_inner() {
        return Err(first_bad(idx.iter().copied(), len));
    }
    Ok(())
}

/// `take_along_axis`: `src` and the output share a shape except on `axis`; `idx` holds one
/// resolved index per output element (row-major).
pub fn take_along_axis<T: Copy + Send + Sync>(
    out: &mut [T],
    out_shape: &[usize],
    src: View<'_, T>,
    axis: usize,
    idx: &[usize],
) {
    // The axis offset comes from the index, so the axis itself gets stride 0.
    let mut strides = src.strides.to_vec();
    let ax_stride = std::mem::replace(&mut strides[axis], 0);
    let rows = Rows::new(out_shape, [&strides], [src.offset]);
    let [st] = rows.inner_strides;
    let inner = rows.inner_len;
    for_each_row(out, &rows, |r, o| {
        let [off] = rows.offsets(r);
        let idx = &idx[r * inner..][..o.len()];
        for (i, (o, &k)) in o.iter_mut().zip(idx).enumerate() {
            *o = src.data[(off + i as isize * st + k as isize * ax_stride) as usize];
        }
    });
}

/// The scatter of `put_along_axis`: for every position `p` of `upd` (shape of `out` except on
/// `axis`), `out[p with axis = idx[p]] = f(old, upd[p])`. `out` is contiguous.
pub fn scatter_along_axis<T: Copy, F: Fn(T, T) -> T>(
    out: &mut [T],
    out_shape: &[usize],
    upd: View<'_, T>,
    axis: usize,
    idx: &[usize],
    f: F,
) {
    let mut strides = contiguous_strides(out_shape);
    let ax_stride = std::mem::replace(&mut strides[axis], 0);
    let rows = Rows::new(upd.shape, [&strides, upd.strides], [0, upd.offset]);
    let [so, su] = rows.inner_strides;
    let inner = rows.inner_len;
    for r in 0..rows.count() {
        let [oo, ou] = rows.offsets(r);
        for (i, &k) in idx[r * inner..][..inner].iter().enumerate() {
            let i = i as isize;
            let at = (oo + i * so + k as isize * ax_stride) as usize;
            out[at] = f(out[at], upd.data[(ou + i * su) as usize]);
        }
    }
}

/// MLX's general scatter into the contiguous `out`: update slice `i` (the `i`-th
/// `slice_shape` block of the contiguous `upd`) is combined with `f` into `out` at position
/// `idx[m][i]` on each axis `axes[m]` and 0 elsewhere. The caller guarantees every slice fits.
pub fn scatter<T: Copy, F: Fn(T, T) -> T>(
    out: &mut [T],
    out_shape: &[usize],
    idx: &[Vec<usize>],
    axes: &[usize],
    upd: &[T],
    slice_shape: &[usize],
    f: F,
) {
    let strides = contiguous_strides(out_shape);
    let rows = Rows::new(slice_shape, [&strides], [0]);
    let [st] = rows.inner_strides;
    let (inner, count) = (rows.inner_len, rows.count());
    let slice_len: usize = slice_shape.iter().product();
    if slice_len == 0 {
        return;
    }
    for (i, u) in upd.chunks(slice_len).enumerate() {
        let base: isize = idx.iter().zip(axes).map(|(ix, &a)| ix[i] as isize * strides[a]).sum();
        for r in 0..count {
            let [off] = rows.offsets(r);
            for (t, &u) in u[r * inner..][..inner].iter().enumerate() {
                let at = (base + off + t as isize * st) as usize;
                out[at] = f(out[at], u);
            }
        }
    }
}

/// Writes `src` into `dst` at the strided positions `dst_offset + Σ i_k * dst_strides[k]`.
/// The positions must lie inside `dst` (a slice of a contiguous array).
pub fn write_view<T: Copy>(
    dst: &mut [T],
    dst_strides: &[isize],
    dst_offset: usize,
    src: View<'_, T>,
) {
    let rows = Rows::new(src.shape, [dst_strides, src.strides], [dst_offset, src.offset]);
    let [sd, ss] = rows.inner_strides;
    let n = rows.inner_len;
    for r in 0..rows.count() {
        let [od, os] = rows.offsets(r);
        if sd == 1 && ss == 1 {
            dst[od as usize..od as usize + n]
                .copy_from_slice(&src.data[os as usize..os as usize + n]);
        } else {
            for i in 0..n as isize {
                dst[(od + i * sd) as usize] = src.data[(os + i * ss) as usize];
            }
        }
    }
}

/// Concatenates `parts` (same shape except on `axis`) along `axis` into `out`: each part is
/// copied once, as contiguous runs where its layout allows.
pub fn concatenate<T: Copy + Send + Sync>(out: &mut [T], parts: &[View<'_, T>], axis: usize) {
    let blocks: Vec<Block> =
        parts.iter().map(|p| Block::new(&p.shape[axis..], &p.strides[axis..])).collect();
    let row_len: usize = blocks.iter().map(|b| b.len).sum();
    let outer_shape = &parts[0].shape[..axis];
    for_each_chunk(out, row_len, |o, row| {
        let mut pos = 0;
        for (p, b) in parts.iter().zip(&blocks) {
            let base = p.offset as isize + unravel_offset(o, outer_shape, &p.strides[..axis]);
            b.copy(&mut row[pos..pos + b.len], p.data, base);
            pos += b.len;
        }
    });
}

/// Pads `src` into `out` (shape `out_shape`) with `low[d]` elements before each axis:
/// positions outside `src` get `value`, or with `value = None` the nearest edge element.
/// Edge padding needs every padded axis of `src` to be non-empty.
pub fn pad<T: Copy + Send + Sync>(
    out: &mut [T],
    out_shape: &[usize],
    src: View<'_, T>,
    low: &[usize],
    value: Option<T>,
) {
    let nd = out_shape.len();
    if nd == 0 {
        if let Some(o) = out.first_mut() {
            *o = src.data[src.offset];
        }
        return;
    }
    let (outer_shape, lo) = (&out_shape[..nd - 1], low[nd - 1]);
    let (n, st) = (src.shape[nd - 1], src.strides[nd - 1]);
    for_each_chunk(out, out_shape[nd - 1], |r, row| {
        // Source offset of this row, or None where a constant pad covers the whole row.
        let mut off = Some(src.offset as isize);
        let mut rem = r;
        for d in (0..nd - 1).rev() {
            let c = (rem % outer_shape[d]) as isize - low[d] as isize;
            rem /= outer_shape[d];
            let len = src.shape[d] as isize;
            let c = match value {
                Some(_) if c < 0 || c >= len => {
                    off = None;
                    break;
                }
                Some(_) => c,
                None => c.clamp(0, len - 1),
            };
            off = off.map(|o| o + c * src.strides[d]);
        }
        let Some(off) = off else {
            row.fill(value.expect("only constant padding skips rows"));
            return;
        };
        let (head, rest) = row.split_at_mut(lo);
        let (mid, tail) = rest.split_at_mut(n);
        if st == 1 {
            mid.copy_from_slice(&src.data[off as usize..off as usize + n]);
        } else {
            for (i, m) in mid.iter_mut().enumerate() {
                *m = src.data[(off + i as isize * st) as usize];
            }
        }
        let edge = |at: isize| value.unwrap_or_else(|| src.data[at as usize]);
        if !head.is_empty() {
            head.fill(edge(off));
        }
        if !tail.is_empty() {
            tail.fill(edge(off + (n as isize - 1) * st));
        }
    });
}

/// Row-major strides of `shape`.
fn contiguous_strides(shape: &[usize]) -> Vec<isize> {
    let mut strides = vec![0isize; shape.len()];
    let mut acc = 1isize;
    for (s, &n) in strides.iter_mut().zip(shape).rev() {
        *s = acc;
        acc *= n.max(1) as isize;
    }
    strides
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_indices_wrap_and_out_of_range_is_reported() {
        let idx = [0i32, -1, 2];
        assert_eq!(resolve_indices(View::new(&idx, &[3], &[1], 0), 3), Ok(vec![0, 2, 2]));
        let m = [10u8, 11, 12];
        let mut out = [0u8; 2];
        let v = View::new(&m, &[3], &[1], 0);
        assert_eq!(take(&mut out, v, 0, &[-3i8, 2]), Ok(()));
        assert_eq!(out, [10, 12]);
        assert_eq!(take(&mut out, v, 0, &[1u16, 3]), Err(3));
        let bad = [1i64, -4];
        assert_eq!(resolve_indices(View::new(&bad, &[2], &[1], 0), 3), Err(-4));
        let big = [u64::MAX];
        assert_eq!(resolve_indices(View::new(&big, &[1], &[1], 0), 3), Err(u64::MAX as i128));
    }

    #[test]
    fn take_rows_and_columns_of_a_matrix() {
        let m: Vec<u32> = (0..12).collect(); // 3 x 4
        let view = View::new(&m, &[3, 4], &[4, 1], 0);
        let mut rows = [0u32; 8];
        take(&mut rows, view, 0, &[2, 0]).unwrap();
        assert_eq!(rows, [8, 9, 10, 11, 0, 1, 2, 3]);
        let mut cols = [0u32; 6];
        take(&mut cols, view, 1, &[-1i64, 1]).unwrap();
        assert_eq!(cols, [3, 1, 7, 5, 11, 9]);
        // Rows of the transpose (4 x 3) are strided blocks.
        let t = View::new(&m, &[4, 3], &[1, 4], 0);
        let mut trows = [0u32; 3];
        take(&mut trows, t, 0, &[1u32]).unwrap();
        assert_eq!(trows, [1, 5, 9]);
    }

    #[test]
    fn large_take_runs_parallel_in_order() {
        let (n, d) = (1000usize, 300usize);
        let table: Vec<u32> = (0..(n * d) as u32).collect();
        let idx: Vec<i32> = (0..n as i32).rev().collect();
        let mut out = vec![0u32; n * d];
        take(&mut out, View::new(&table, &[n, d], &[d as isize, 1], 0), 0, &idx).unwrap();
        for (r, row) in out.chunks(d).enumerate() {
            assert_eq!(row[0] as usize, (n - 1 - r) * d);
        }
    }

    #[test]
    fn large_element_gather_crosses_rows_in_parallel() {
        // Columns of a 3 x 50000 matrix: output chunks straddle the rows of the result.
        let (rows, cols) = (3usize, 50_000usize);
        let m: Vec<u32> = (0..(rows * cols) as u32).collect();
        let idx: Vec<usize> = (0..40_000).map(|j| (j * 7) % cols).collect();
        let raw: Vec<i64> = idx.iter().map(|&i| i as i64 - cols as i64).collect();
        let mut out = vec![0u32; rows * idx.len()];
        take(&mut out, View::new(&m, &[rows, cols], &[cols as isize, 1], 0), 1, &raw).unwrap();
        for (p, &v) in out.iter().enumerate() {
            let (r, j) = (p / idx.len(), p % idx.len());
            assert_eq!(v as usize, r * cols + idx[j], "position {p}");
        }
    }

    #[test]
    fn concatenate_mixes_contiguous_and_strided_parts() {
        let a = [1, 2, 3, 4]; // 2 x 2
        let b = [5, 6, 7, 8, 9, 10]; // 3 x 2 seen transposed as 2 x 3
        let mut out = [0; 10];
        let parts = [View::new(&a, &[2, 2], &[2, 1], 0), View::new(&b, &[2, 3], &[1, 2], 0)];
        concatenate(&mut out, &parts, 1);
        assert_eq!(out, [1, 2, 5, 7, 9, 3, 4, 6, 8, 10]);
    }

    #[test]
    fn pad_constant_and_edge() {
        let x = [1, 2, 3, 4]; // 2 x 2
        let v = View::new(&x, &[2, 2], &[2, 1], 0);
        let mut out = [0; 12]; // 3 x 4: one row above, one column each side
        pad(&mut out, &[3, 4], v, &[1, 1], Some(0));
        assert_eq!(out, [0, 0, 0, 0, 0, 1, 2, 0, 0, 3, 4, 0]);
        pad(&mut out, &[3, 4], v, &[1, 1], None);
        assert_eq!(out, [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4]);
    }
}
