//! Typed strided views and the row decomposition every elementwise kernel loops over.
//!
//! A view's element `(i0, .., ik)` lives at `data[offset + Σ i_j * strides[j]]`. Kernels write
//! a contiguous output; `Rows` splits the (collapsed) iteration space into rows of the innermost
//! dimension so the inner loop is a plain strided or unit-stride loop that the compiler
//! vectorises, and the outer loop can be split across threads.

use rayon::prelude::*;

/// Below this many elements a kernel stays on the calling thread (a rayon hop costs ~10 µs here).
pub const PARALLEL_THRESHOLD: usize = 1 << 16;

/// A read-only strided view into a typed buffer.
#[derive(Clone, Copy, Debug)]
pub struct View<'a, T> {
    pub data: &'a [T],
    pub shape: &'a [usize],
    pub strides: &'a [isize],
    pub offset: usize,
}

impl<'a, T: Copy> View<'a, T> {
    pub fn new(data: &'a [T], shape: &'a [usize], strides: &'a [isize], offset: usize) -> Self {
        View { data, shape, strides, offset }
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as one slice when the view is row-major contiguous.
    pub fn contiguous(&self) -> Option<&'a [T]> {
        if is_row_contiguous(self.shape, self.strides) {
            Some(&self.data[self.offset..self.offset + self.len()])
        } else {
            None
        }
    }

    /// True when every element is the same one (all strides zero or the view has one element).
    pub fn is_uniform(&self) -> bool {
        self.shape.iter().zip(self.strides).all(|(&n, &s)| n <= 1 || s == 0)
    }
}

/// Row-major contiguity, ignoring the strides of size-1 dimensions.
pub fn is_row_contiguous(shape: &[usize], strides: &[isize]) -> bool {
    let mut expected = 1isize;
    for (&n, &s) in shape.iter().zip(strides).rev() {
        if n != 1 && s != expected {
            return false;
        }
        expected *= n as isize;
    }
    true
}

/// The iteration space of `N` strided operands over one shape, as rows of the innermost dim.
pub struct Rows<const N: usize> {
    outer: Vec<usize>,
    outer_strides: Vec<[isize; N]>,
    pub inner_len: usize,
    pub inner_strides: [isize; N],
    base: [isize; N],
}

impl<const N: usize> Rows<N> {
    /// Collapses dimensions that are contiguous for every operand, then splits off the last.
    pub fn new(shape: &[usize], strides: [&[isize]; N], offsets: [usize; N]) -> Self {
        let mut dims: Vec<(usize, [isize; N])> = Vec::new();
        for (d, &n) in shape.iter().enumerate() {
            if n == 1 {
                continue;
            }
            let s: [isize; N] = std::array::from_fn(|k| strides[k][d]);
            if let Some((pn, ps)) = dims.last_mut() {
                if (0..N).all(|k| ps[k] == s[k] * n as isize) {
                    *pn *= n;
                    *ps = s;
                    continue;
                }
            }
            dims.push((n, s));
        }
        let (inner_len, inner_strides) = dims.pop().unwrap_or((1, [0; N]));
        let base = std::array::from_fn(|k| offsets[k] as isize);
        Rows {
            outer: dims.iter().map(|d| d.0).collect(),
            outer_strides: dims.iter().map(|d| d.1).collect(),
            inner_len,
            inner_strides,
            base,
        }
    }

    pub fn count(&self) -> usize {
        if self.outer.contains(&0) || self.inner_len == 0 {
            0
        } else {
            self.outer.iter().product()
        }
    }

    /// For one operand whose innermost dim is strided but the next one out has a small
    /// stride (a transposed matrix): that next dim's length and stride, so copies can tile.
    pub fn transposed_band(&self) -> Option<(usize, isize)> {
        let (&len, strides) = (self.outer.last()?, self.outer_strides.last()?);
        let inner = self.inner_strides[0].unsigned_abs();
        (N == 1 && strides[0].unsigned_abs() < inner && inner > 1 && self.inner_len >= 8)
            .then_some((len, strides[0]))
    }

    /// The starting element offset of each operand for row `row`.
    #[inline]
    pub fn offsets(&self, mut row: usize) -> [isize; N] {
        let mut out = self.base;
        for (d, &n) in self.outer.iter().enumerate().rev() {
            let i = (row % n) as isize;
            row /= n;
            for (o, &stride) in out.iter_mut().zip(&self.outer_strides[d]) {
                *o += i * stride;
            }
        }
        out
    }
}

/// Fills the contiguous `out` with `f` applied to each element of `x`.
pub fn map1<A, B, F>(out: &mut [B], x: View<'_, A>, f: F)
where
    A: Copy + Send + Sync,
    B: Copy + Send + Sync,
    F: Fn(A) -> B + Sync,
{
    if let Some(src) = x.contiguous() {
        if out.len() >= PARALLEL_THRESHOLD {
            out.par_chunks_mut(PARALLEL_THRESHOLD / 4)
                .zip(src.par_chunks(PARALLEL_THRESHOLD / 4))
                .for_each(|(o, s)| o.iter_mut().zip(s).for_each(|(o, &s)| *o = f(s)));
        } else {
            out.iter_mut().zip(src).for_each(|(o, &s)| *o = f(s));
        }
        return;
    }
    let rows = Rows::new(x.shape, [x.strides], [x.offset]);
    if let Some((band_len, band_stride)) = rows.transposed_band() {
        return map1_tiled(out, x.data, &rows, band_len, band_stride, f);
    }
    for_each_row(out, &rows, |row, o| {
        let [off] = rows.offsets(row);
        let [st] = rows.inner_strides;
        for (i, o) in o.iter_mut().enumerate() {
            *o = f(x.data[(off + i as isize * st) as usize]);
        }
    });
}

/// `map1` for a transposed source: the output is walked in `TILE x TILE` blocks so that both
/// the strided reads and the writes stay in L1 (a 4096x4096 transpose runs ~3x faster).
fn map1_tiled<A, B, F>(
    out: &mut [B],
    data: &[A],
    rows: &Rows<1>,
    band: usize,
    band_stride: isize,
    f: F,
) where
    A: Copy + Send + Sync,
    B: Copy + Send + Sync,
    F: Fn(A) -> B + Sync,
{
    const TILE: usize = 32;
    let cols = rows.inner_len;
    let [col_stride] = rows.inner_strides;
    let plane = band * cols;
    let count = rows.count() / band;
    for (b, plane_out) in out[..count * plane].chunks_mut(plane).enumerate() {
        let [base] = rows.offsets(b * band);
        let body = |(t, block): (usize, &mut [B])| {
            let r0 = t * TILE;
            let nr = block.len() / cols;
            // Staging through a local tile keeps power-of-two strides from thrashing one
            // cache set: reads and writes each touch whole lines once.
            let mut tile = [[data[base as usize]; TILE]; TILE];
            for c0 in (0..cols).step_by(TILE) {
                let nc = TILE.min(cols - c0);
                for (c, staged) in tile.iter_mut().enumerate().take(nc) {
                    let col_base = base + (c0 + c) as isize * col_stride;
                    for (r, v) in staged.iter_mut().enumerate().take(nr) {
                        *v = data[(col_base + (r0 + r) as isize * band_stride) as usize];
                    }
                }
                for r in 0..nr {
                    let dst = &mut block[r * cols + c0..r * cols + c0 + nc];
                    for (c, d) in dst.iter_mut().enumerate() {
                        *d = f(tile[c][r]);
                    }
                }
            }
        };
        if plane >= PARALLEL_THRESHOLD {
            plane_out.par_chunks_mut(TILE * cols).enumerate().for_each(body);
        } else {
            plane_out.chunks_mut(TILE * cols).enumerate().for_each(body);
        }
    }
}

/// `x[i] = f(x[i])` over a contiguous slice, in place.
pub fn map1_inplace<T, F>(x: &mut [T], f: F)
where
    T: Copy + Send + Sync,
    F: Fn(T) -> T + Sync,
{
    if x.len() >= PARALLEL_THRESHOLD {
        x.par_chunks_mut(PARALLEL_THRESHOLD / 4)
            .for_each(|c| c.iter_mut().for_each(|v| *v = f(*v)));
    } else {
        x.iter_mut().for_each(|v| *v = f(*v));
    }
}

/// `a[i] = f(a[i], b[i])` in place: `a` is contiguous with `b`'s shape, `b` any view.
pub fn map2_inplace<A, B, F>(a: &mut [A], b: View<'_, B>, f: F)
where
    A: Copy + Send + Sync,
    B: Copy + Send + Sync,
    F: Fn(A, B) -> A + Sync,
{
    let rows = Rows::new(b.shape, [b.strides], [b.offset]);
    let [sb] = rows.inner_strides;
    for_each_row(a, &rows, |row, o| {
        let [ob] = rows.offsets(row);
        let n = o.len();
        match sb {
            1 => {
                let xb = &b.data[ob as usize..][..n];
                for i in 0..n {
                    o[i] = f(o[i], xb[i]);
                }
            }
            0 => {
                let vb = b.data[ob as usize];
                for v in o.iter_mut() {
                    *v = f(*v, vb);
                }
            }
            _ => {
                for (i, v) in o.iter_mut().enumerate() {
                    *v = f(*v, b.data[(ob + i as isize * sb) as usize]);
                }
            }
        }
    });
}

/// Fills the contiguous `out` with `f(a, b)` over two views of the output's shape.
pub fn map2<A, B, C, F>(out: &mut [C], a: View<'_, A>, b: View<'_, B>, f: F)
where
    A: Copy + Send + Sync,
    B: Copy + Send + Sync,
    C: Copy + Send + Sync,
    F: Fn(A, B) -> C + Sync,
{
    let rows = Rows::new(a.shape, [a.strides, b.strides], [a.offset, b.offset]);
    let [sa, sb] = rows.inner_strides;
    let (da, db) = (a.data, b.data);
    for_each_row(out, &rows, |row, o| {
        let [oa, ob] = rows.offsets(row);
        let n = o.len();
        // Unit-stride and broadcast inner loops get their own bodies so they vectorise.
        match (sa, sb) {
            (1, 1) => {
                let (xa, xb) = (&da[oa as usize..][..n], &db[ob as usize..][..n]);
                for i in 0..n {
                    o[i] = f(xa[i], xb[i]);
                }
            }
            (0, 1) => {
                let (va, xb) = (da[oa as usize], &db[ob as usize..][..n]);
                for i in 0..n {
                    o[i] = f(va, xb[i]);
                }
            }
            (1, 0) => {
                let (xa, vb) = (&da[oa as usize..][..n], db[ob as usize]);
                for i in 0..n {
                    o[i] = f(xa[i], vb);
                }
            }
            _ => {
                for (i, o) in o.iter_mut().enumerate() {
                    let i = i as isize;
                    *o = f(da[(oa + i * sa) as usize], db[(ob + i * sb) as usize]);
                }
            }
        }
    });
}

/// Fills the contiguous `out` with `f(a, b, c)` over three views of the output's shape.
pub fn map3<A, B, C, D, F>(out: &mut [D], a: View<'_, A>, b: View<'_, B>, c: View<'_, C>, f: F)
where
    A: Copy + Send + Sync,
    B: Copy + Send + Sync,
    C: Copy + Send + Sync,
    D: Copy + Send + Sync,
    F: Fn(A, B, C) -> D + Sync,
{
    let rows =
        Rows::new(a.shape, [a.strides, b.strides, c.strides], [a.offset, b.offset, c.offset]);
    let [sa, sb, sc] = rows.inner_strides;
    for_each_row(out, &rows, |row, o| {
        let [oa, ob, oc] = rows.offsets(row);
        for (i, o) in o.iter_mut().enumerate() {
            let i = i as isize;
            *o = f(
                a.data[(oa + i * sa) as usize],
                b.data[(ob + i * sb) as usize],
                c.data[(oc + i * sc) as usize],
            );
        }
    });
}

/// Runs `f(row_index, output_row)` for every row, in parallel when the work is large.
pub fn for_each_row<T: Send, const N: usize, F>(out: &mut [T], rows: &Rows<N>, f: F)
where
    F: Fn(usize, &mut [T]) + Sync,
{
    let count = rows.count();
    if count == 0 {
        return;
    }
    let inner = rows.inner_len;
    let out = &mut out[..count * inner];
    if out.len() >= PARALLEL_THRESHOLD && count > 1 {
        let rows_per_task = (PARALLEL_THRESHOLD / 4).div_ceil(inner).max(1);
        out.par_chunks_mut(rows_per_task * inner).enumerate().for_each(|(t, chunk)| {
            for (k, o) in chunk.chunks_mut(inner).enumerate() {
                f(t * rows_per_task + k, o);
            }
        });
    } else {
        for (r, o) in out.chunks_mut(inner).enumerate() {
            f(r, o);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_collapse_contiguous_dims() {
        let rows = Rows::new(&[2, 3, 4], [&[12, 4, 1]], [0]);
        assert_eq!(rows.count(), 1);
        assert_eq!(rows.inner_len, 24);
    }

    #[test]
    fn transposed_view_maps_in_logical_order() {
        // data is a 2x3 matrix; view its transpose (3x2).
        let data = [0, 1, 2, 3, 4, 5];
        let mut out = [0; 6];
        map1(&mut out, View::new(&data, &[3, 2], &[1, 3], 0), |x| x);
        assert_eq!(out, [0, 3, 1, 4, 2, 5]);
    }

    #[test]
    fn tiled_transpose_matches_index_arithmetic() {
        // A (3, 37, 45) array viewed with its last two axes swapped, and a stride-2 band.
        let (b, r, c) = (3usize, 37usize, 45usize);
        let data: Vec<u32> = (0..(b * r * c * 2) as u32).collect();
        let mut out = vec![0u32; b * c * r];
        let strides = [(r * c * 2) as isize, 2, (c * 2) as isize];
        map1(&mut out, View::new(&data, &[b, c, r], &strides, 0), |x| x);
        for i in 0..b {
            for j in 0..c {
                for k in 0..r {
                    let want = data[i * r * c * 2 + j * 2 + k * c * 2];
                    assert_eq!(out[(i * c + j) * r + k], want);
                }
            }
        }
    }

    #[test]
    fn in_place_maps_read_broadcast_operands() {
        let mut a = vec![1i64, 2, 3, 4, 5, 6];
        let col = [10i64, 20];
        map2_inplace(&mut a, View::new(&col, &[2, 3], &[1, 0], 0), |x, y| x * y);
        assert_eq!(a, [10, 20, 30, 80, 100, 120]);
        map1_inplace(&mut a, |x| -x);
        assert_eq!(a[5], -120);
    }

    #[test]
    fn broadcast_add_over_rows_and_columns() {
        let col = [10, 20];
        let row = [1, 2, 3];
        let mut out = [0; 6];
        map2(
            &mut out,
            View::new(&col, &[2, 3], &[1, 0], 0),
            View::new(&row, &[2, 3], &[0, 1], 0),
            |a, b| a + b,
        );
        assert_eq!(out, [11, 12, 13, 21, 22, 23]);
    }

    #[test]
    fn large_strided_map_runs_parallel_in_order() {
        let n = 1 << 18;
        let data: Vec<u32> = (0..n as u32).collect();
        let mut out = vec![0u32; n / 2];
        // Every other element via a stride-2 view.
        map1(&mut out, View::new(&data, &[n / 2], &[2], 0), |x| x);
        assert!(out.iter().enumerate().all(|(i, &v)| v == 2 * i as u32));
        // Negative stride: reversed.
        let mut rev = vec![0u32; n];
        map1(&mut rev, View::new(&data, &[n], &[-1], n - 1), |x| x);
        assert_eq!(rev[0], n as u32 - 1);
        assert_eq!(rev[n - 1], 0);
    }
}
