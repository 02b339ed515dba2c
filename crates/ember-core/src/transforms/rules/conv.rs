//! Rules of the 2-d convolution (`conv1d` records it too). Both cotangents are convolutions
//! themselves, built from views, padding and the convolution op:
//! - the input's: the cotangent dilated by the stride, padded fully, correlated with the
//!   flipped weight whose in/out channels are swapped within each group, then cropped;
//! - the weight's: the input (batch as channels) correlated with the cotangent (batch as
//!   channels) as the kernel, stride and dilation trading places.

use super::sum_terms;
use crate::array::Array;
use crate::op::Op;
use crate::ops::conv::ConvOp;
use crate::ops::index::PadMode;
use crate::ops::{self, conv2d, reshape_to, transpose, Slice};
use crate::Result;

pub(super) fn vjp(
    op: &ConvOp,
    inputs: &[Array],
    cot: &Array,
    argnums: &[usize],
) -> Result<Vec<Array>> {
    let (x, w) = (&inputs[0], &inputs[1]);
    argnums
        .iter()
        .map(|&i| if i == 0 { input_vjp(op, x, w, cot) } else { weight_vjp(op, x, w, cot) })
        .collect()
}

pub(super) fn jvp(
    op: &ConvOp,
    inputs: &[Array],
    y: &Array,
    tangents: &[Option<Array>],
) -> Result<Array> {
    let conv =
        |a: &Array, b: &Array| Array::from_op(Op::Conv(op.clone()), vec![a.clone(), b.clone()]);
    let mut terms = Vec::new();
    if let Some(tx) = &tangents[0] {
        terms.push(conv(tx, &inputs[1])?);
    }
    if let Some(tw) = &tangents[1] {
        terms.push(conv(&inputs[0], tw)?);
    }
    sum_terms(terms, y)
}

/// The cotangent of the input x (N, H, W, C_in).
fn input_vjp(op: &ConvOp, x: &Array, w: &Array, cot: &Array) -> Result<Array> {
    let ConvOp::Conv2d { stride, padding, dilation, groups } = *op;
    let (xs, ws, cs) = (x.shape(), w.shape(), cot.shape());
    let (c_out, c_in_g) = (ws[0], ws[3]);
    // Spread the cotangent out to stride 1: out[i * s] = cot[i], zeros between.
    let mut spread = cot.clone();
    if stride != [1, 1] {
        let (s0, s1) = (stride[0], stride[1]);
        let split = reshape_to(cot, &[cs[0], cs[1], 1, cs[2], 1, cs[3]])?;
        let widths = [(0, 0), (0, 0), (0, s0 - 1), (0, 0), (0, s1 - 1), (0, 0)];
        let zero = Array::scalar(0.0).astype(cot.dtype())?;
        let gaps = ops::pad(&split, &widths, &zero, PadMode::Constant)?;
        let dense = reshape_to(&gaps, &[cs[0], cs[1] * s0, cs[2] * s1, cs[3]])?;
        let keep = |n: usize, s: usize| Slice::range(0, ((n - 1) * s + 1) as isize);
        spread = ops::slice(&dense, &[Slice::FULL, keep(cs[1], s0), keep(cs[2], s1)])?;
    }
    // Pad fully (kernel span - 1 on both sides), plus the rows and columns of the padded
    // input that no window reached, so the result covers the whole padded input.
    let mut widths = vec![(0, 0); 4];
    for a in 0..2 {
        let reach = dilation[a] * (ws[a + 1] - 1);
        let used = (cs[a + 1] - 1) * stride[a] + reach + 1;
        let unused = xs[a + 1] + 2 * padding[a] - used;
        widths[a + 1] = (reach, reach + unused);
    }
    let zero = Array::scalar(0.0).astype(cot.dtype())?;
    let full = ops::pad(&spread, &widths, &zero, PadMode::Constant)?;
    // (C_out, KH, KW, C_in / g) -> (C_in, KH, KW, C_out / g) within each group, flipped.
    let c_out_g = c_out / groups;
    let grouped = reshape_to(w, &[groups, c_out_g, ws[1], ws[2], c_in_g])?;
    let swapped = reshape_to(
        &transpose(&grouped, &[0, 4, 2, 3, 1])?,
        &[groups * c_in_g, ws[1], ws[2], c_out_g],
    )?;
    let back = Slice::new(None, None, -1);
    let flipped = ops::slice(&swapped, &[Slice::FULL, back, back])?;
    let dx = conv2d(&full, &flipped, (1, 1), (0, 0), (dilation[0], dilation[1]), groups)?;
    let crop = |a: usize| Slice::range(padding[a] as isize, (padding[a] + xs[a + 1]) as isize);
    ops::slice(&dx, &[Slice::FULL, crop(0), crop(1)])
}

/// The cotangent of the weight (C_out, KH, KW, C_in / g).
fn weight_vjp(op: &ConvOp, x: &Array, w: &Array, cot: &Array) -> Result<Array> {
    let ConvOp::Conv2d { stride, padding, dilation, groups } = *op;
    let (xs, ws) = (x.shape(), w.shape());
    let c_in_g = ws[3];
    // x as (C_in / g, H, W, g * N): channel group g holds that group's batch.
    let by_group = reshape_to(x, &[xs[0], xs[1], xs[2], groups, c_in_g])?;
    let xt = reshape_to(
        &transpose(&by_group, &[4, 1, 2, 3, 0])?,
        &[c_in_g, xs[1], xs[2], groups * xs[0]],
    )?;
    // The cotangent as a kernel (C_out, OH, OW, N).
    let kernel = transpose(cot, &[3, 1, 2, 0])?;
    let dw = conv2d(
        &xt,
        &kernel,
        (dilation[0], dilation[1]),
        (padding[0], padding[1]),
        (stride[0], stride[1]),
        groups,
    )?;
    // (C_in / g, KH', KW', C_out) with KH' >= KH: the windows past the kernel are unused.
    let kept = ops::slice(
        &dw,
        &[Slice::FULL, Slice::range(0, ws[1] as isize), Slice::range(0, ws[2] as isize)],
    )?;
    transpose(&kept, &[3, 1, 2, 0])
}
