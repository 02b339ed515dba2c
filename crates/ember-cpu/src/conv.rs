//! NHWC convolutions over contiguous data: a plain GEMM for 1x1 stride-1 convolutions,
//! im2col + GEMM in row chunks for the general case, and a direct kernel for depthwise ones.
//!
//! Input is (N, H, W, C_in), weight (C_out, KH, KW, C_in / groups), output (N, OH, OW, C_out),
//! all row-major. A 1-d convolution is the 2-d one with H = KH = 1.

use crate::matmul::{Gemm, MatRef};
use crate::scalar::{FloatElem, Scalar};
use rayon::prelude::*;

/// The geometry of a 2-d convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dShape {
    pub batch: usize,
    /// Spatial size (H, W) of the input.
    pub input: [usize; 2],
    pub in_channels: usize,
    pub out_channels: usize,
    /// Spatial size (KH, KW) of the kernel, each at least 1.
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Zeros added on both sides of each spatial axis.
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl Conv2dShape {
    /// Output spatial size, or `None` when the dilated kernel is larger than the padded input.
    pub fn output(&self) -> Option<[usize; 2]> {
        let dim = |i: usize| {
            let span = self.dilation[i] * self.kernel[i].saturating_sub(1) + 1;
            let padded = self.input[i] + 2 * self.padding[i];
            padded.checked_sub(span).map(|r| r / self.stride[i] + 1)
        };
        Some([dim(0)?, dim(1)?])
    }

    fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.padding == [0, 0] && self.groups == 1
    }
}

/// Below this many multiply-adds a convolution stays on the calling thread.
const PARALLEL_WORK: usize = 1 << 20;

/// Target im2col elements per chunk of output rows (about 1 MiB of f32).
const CHUNK_ELEMS: usize = 1 << 18;

/// Fewest output rows per chunk: each chunk's GEMM packs the whole weight matrix again, and
/// needs enough rows of arithmetic to amortise that.
const MIN_CHUNK_ROWS: usize = 512;

/// Writes the convolution of `x` with `w` into `out`. Panics if the slices are smaller than
/// the shapes in `s` say or if `s` has no valid output.
pub fn conv2d<T: Gemm + FloatElem>(out: &mut [T], x: &[T], w: &[T], s: &Conv2dShape) {
    let [oh, ow] = s.output().expect("kernel larger than padded input");
    let rows = s.batch * oh * ow;
    let (c, o) = (s.in_channels, s.out_channels);
    let kcg = s.kernel[0] * s.kernel[1] * (c / s.groups);
    assert!(x.len() >= s.batch * s.input[0] * s.input[1] * c, "input too small");
    assert!(w.len() >= o * kcg && out.len() >= rows * o, "weight or output too small");
    let out = &mut out[..rows * o];
    if rows == 0 || o == 0 {
        return;
    }
    if kcg == 0 {
        // No input channels: every output is an empty sum.
        out.fill(T::zero());
        return;
    }
    if s.groups > 1 && c == s.groups {
        depthwise(out, x, w, s, [oh, ow]);
    } else if s.is_pointwise() {
        // Each output pixel is its input pixel times W^T: one GEMM, no copy.
        let wt = MatRef { data: w, offset: 0, row_stride: 1, col_stride: c as isize };
        T::matmul(out, MatRef::dense(x, c), wt, rows, o, c);
    } else {
        im2col_gemm(out, x, w, s, [oh, ow]);
    }
}

/// Chunks of output rows: each thread builds the im2col matrix of its chunk and multiplies it
/// by the weights, so the matrix never exists whole.
fn im2col_gemm<T: Gemm>(out: &mut [T], x: &[T], w: &[T], s: &Conv2dShape, ohw: [usize; 2]) {
    let (g, o) = (s.groups, s.out_channels);
    let og = o / g;
    let kcg = s.kernel[0] * s.kernel[1] * (s.in_channels / g);
    let cols = g * kcg;
    let rows = out.len() / o;
    // Large enough to amortise the weight packing, small enough to give every thread work.
    let per_thread = rows.div_ceil(rayon::current_num_threads()).max(128);
    let chunk = CHUNK_ELEMS.div_ceil(cols.max(1)).max(MIN_CHUNK_ROWS).min(per_thread).min(rows);
    let work = |ci: usize, out: &mut [T], col: &mut Vec<T>, tmp: &mut Vec<T>| {
        let n = out.len() / o;
        col.resize(n * cols, T::zero());
        im2col(col, x, s, ohw, ci * chunk);
        if g == 1 {
            T::matmul(out, MatRef::dense(col, cols), weights_t(w, 0, kcg), n, o, cols);
            return;
        }
        tmp.resize(n * og, T::zero());
        for gi in 0..g {
            let a = MatRef {
                data: &col[..],
                offset: gi * kcg,
                row_stride: cols as isize,
                col_stride: 1,
            };
            T::matmul(tmp, a, weights_t(w, gi * og, kcg), n, og, kcg);
            for (dst, src) in out.chunks_exact_mut(o).zip(tmp.chunks_exact(og)) {
                dst[gi * og..][..og].copy_from_slice(src);
            }
        }
    };
    if rows > chunk && rows * cols * og >= PARALLEL_WORK {
        out.par_chunks_mut(chunk * o).enumerate().for_each_init(
            || (Vec::new(), Vec::new()),
            |(col, tmp), (ci, oc)| work(ci, oc, col, tmp),
        );
    } else {
        let (mut col, mut tmp) = (Vec::new(), Vec::new());
        for (ci, oc) in out.chunks_mut(chunk * o).enumerate() {
            work(ci, oc, &mut col, &mut tmp);
        }
    }
}

/// The transpose of the (C_out, kcg) weight matrix from output channel `first` on, as a strided
/// view (GEMM packs it; a transposed copy costs more than the packing).
fn weights_t<T>(w: &[T], first: usize, kcg: usize) -> MatRef<'_, T> {
    MatRef { data: w, offset: first * kcg, row_stride: 1, col_stride: kcg as isize }
}

/// Fills `col` (rows of `groups * KH * KW * C_in/groups`, columns ordered (group, kh, kw, c))
/// with the receptive fields of output rows `first..`, zeros where they cover padding.
fn im2col<T: Scalar>(col: &mut [T], x: &[T], s: &Conv2dShape, [oh, ow]: [usize; 2], first: usize) {
    let [h, w] = s.input;
    let [kh, kw] = s.kernel;
    let [sh, sw] = s.stride;
    let [dh, dw] = s.dilation;
    let c = s.in_channels;
    let (g, cg) = (s.groups, c / s.groups);
    let kcg = kh * kw * cg;
    for (r, dst_row) in col.chunks_exact_mut(g * kcg).enumerate() {
        let idx = first + r;
        let (n, oy, ox) = (idx / (oh * ow), idx / ow % oh, idx % ow);
        let y0 = (oy * sh) as isize - s.padding[0] as isize;
        let x0 = (ox * sw) as isize - s.padding[1] as isize;
        for gi in 0..g {
            let dst_g = &mut dst_row[gi * kcg..][..kcg];
            for (ky, dst) in dst_g.chunks_exact_mut(kw * cg).enumerate() {
                let iy = y0 + (ky * dh) as isize;
                if iy < 0 || iy >= h as isize {
                    dst.fill(T::zero());
                    continue;
                }
                let src_row = &x[(n * h + iy as usize) * w * c..][..w * c];
                if g == 1 && dw == 1 {
                    // The kernel row is one contiguous run of the input row: one copy.
                    let lo = (-x0).clamp(0, kw as isize) as usize;
                    let hi = (w as isize - x0).clamp(lo as isize, kw as isize) as usize;
                    dst[..lo * c].fill(T::zero());
                    if hi > lo {
                        let start = (x0 + lo as isize) as usize * c;
                        dst[lo * c..hi * c].copy_from_slice(&src_row[start..][..(hi - lo) * c]);
                    }
                    dst[hi * c..].fill(T::zero());
                    continue;
                }
                for (kx, d) in dst.chunks_exact_mut(cg).enumerate() {
                    let ix = x0 + (kx * dw) as isize;
                    if ix < 0 || ix >= w as isize {
                        d.fill(T::zero());
                    } else {
                        d.copy_from_slice(&src_row[ix as usize * c + gi * cg..][..cg]);
                    }
                }
            }
        }
    }
}

/// Depthwise convolution (one input channel per group): accumulates each output row in the
/// compute type, vectorised over channels.
fn depthwise<T: FloatElem>(out: &mut [T], x: &[T], w: &[T], s: &Conv2dShape, [oh, ow]: [usize; 2]) {
    let [h, wd] = s.input;
    let [kh, kw] = s.kernel;
    let (c, o) = (s.in_channels, s.out_channels);
    let mult = o / c;
    let taps = kh * kw;
    // Weights as (kh, kw, C_out) so that one tap's weights are contiguous.
    let mut wt = vec![<T::Acc as Scalar>::zero(); taps * o];
    for oc in 0..o {
        for t in 0..taps {
            wt[t * o + oc] = w[oc * taps + t].widen();
        }
    }
    let row = |r: usize, dst: &mut [T], acc: &mut Vec<T::Acc>| {
        let (n, oy) = (r / oh, r % oh);
        acc.resize(o, <T::Acc as Scalar>::zero());
        for (ox, dst) in dst.chunks_exact_mut(o).enumerate() {
            acc.fill(<T::Acc as Scalar>::zero());
            for ky in 0..kh {
                let iy = (oy * s.stride[0] + ky * s.dilation[0]) as isize - s.padding[0] as isize;
                if iy < 0 || iy >= h as isize {
                    continue;
                }
                for kx in 0..kw {
                    let ix =
                        (ox * s.stride[1] + kx * s.dilation[1]) as isize - s.padding[1] as isize;
                    if ix < 0 || ix >= wd as isize {
                        continue;
                    }
                    let xs = &x[((n * h + iy as usize) * wd + ix as usize) * c..][..c];
                    let ws = &wt[(ky * kw + kx) * o..][..o];
                    if mult == 1 {
                        for ((a, &xv), &wv) in acc.iter_mut().zip(xs).zip(ws) {
                            *a = a.add(xv.widen().mul(wv));
                        }
                    } else {
                        for ((a, &xv), ws) in
                            acc.chunks_exact_mut(mult).zip(xs).zip(ws.chunks_exact(mult))
                        {
                            let xv = xv.widen();
                            for (a, &wv) in a.iter_mut().zip(ws) {
                                *a = a.add(xv.mul(wv));
                            }
                        }
                    }
                }
            }
            for (d, &a) in dst.iter_mut().zip(acc.iter()) {
                *d = T::narrow(a);
            }
        }
    };
    let row_len = ow * o;
    if out.len() * taps >= PARALLEL_WORK && out.len() > row_len {
        out.par_chunks_mut(row_len)
            .enumerate()
            .for_each_init(Vec::new, |acc, (r, d)| row(r, d, acc));
    } else {
        let mut acc = Vec::new();
        for (r, d) in out.chunks_mut(row_len).enumerate() {
            row(r, d, &mut acc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(input: [usize; 2], c: usize, o: usize, kernel: [usize; 2]) -> Conv2dShape {
        Conv2dShape {
            batch: 1,
            input,
            in_channels: c,
            out_channels: o,
            kernel,
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
        }
    }

    #[test]
    fn output_size_follows_the_formula() {
        let mut s = shape([7, 5], 1, 1, [3, 3]);
        assert_eq!(s.output(), Some([5, 3]));
        s.stride = [2, 2];
        s.padding = [1, 0];
        s.dilation = [1, 2];
        // H: (7 + 2 - 3) / 2 + 1 = 4; W: (5 - 5) / 2 + 1 = 1.
        assert_eq!(s.output(), Some([4, 1]));
        s.dilation = [1, 3];
        assert_eq!(s.output(), None);
    }

    #[test]
    fn box_filter_with_padding_counts_neighbours() {
        // A 3x3 all-ones kernel over an all-ones 3x3 image with padding 1 counts the
        // in-bounds neighbours of each pixel: 4 at corners, 6 at edges, 9 in the middle.
        let mut s = shape([3, 3], 1, 1, [3, 3]);
        s.padding = [1, 1];
        let mut out = [0f32; 9];
        conv2d(&mut out, &[1.0; 9], &[1.0; 9], &s);
        assert_eq!(out, [4., 6., 4., 6., 9., 6., 4., 6., 4.]);
    }

    #[test]
    fn depthwise_scales_each_channel_by_its_own_kernel() {
        // Two channels, 1x1 kernels 2 and -3: channel 0 doubles, channel 1 times -3.
        let mut s = shape([1, 2], 2, 2, [1, 1]);
        s.groups = 2;
        let mut out = [0f64; 4];
        conv2d(&mut out, &[1., 10., 2., 20.], &[2., -3.], &s);
        assert_eq!(out, [2., -30., 4., -60.]);
    }
}
