//! Batching rule of the convolution (NHWC input, (C_out, KH, KW, C_in / groups) weight).
//!
//! A batched input folds into the image axis N. Batched weights fold into the output
//! channels: with one input, every element's filters are more output channels of each group;
//! with batched inputs too, every element is its own set of groups over its own channels.

use super::{to_front, Batched};
use crate::array::Array;
use crate::op::Op;
use crate::ops::conv::ConvOp;
use crate::ops::{reshape_to, transpose};
use crate::Result;

pub(super) fn vmap(op: &ConvOp, inputs: &[Batched], size: usize) -> Result<Vec<Batched>> {
    let ConvOp::Conv2d { stride, padding, dilation, groups } = *op;
    let ((x, x_ax), (w, w_ax)) = (&inputs[0], &inputs[1]);
    if w_ax.is_none() {
        // (B, N, H, W, C) -> (B * N, H, W, C): the batch is more images.
        let x = to_front(x, *x_ax, size)?;
        let s = x.shape().to_vec();
        let y = conv(op, reshape_to(&x, &[s[0] * s[1], s[2], s[3], s[4]])?, w.clone())?;
        let out = [&[size, s[1]][..], &y.shape()[1..]].concat();
        return Ok(vec![(reshape_to(&y, &out)?, Some(0))]);
    }
    let w = to_front(w, *w_ax, size)?;
    let ws = w.shape().to_vec();
    let (c_out, kernel) = (ws[1], [ws[2], ws[3], ws[4]]);
    let per_group = c_out / groups;
    let y = match x_ax {
        None => {
            // Output channels ordered (group, element, channel in group), as the groups
            // need them contiguous.
            let w = reshape_to(&w, &[size, groups, per_group, kernel[0], kernel[1], kernel[2]])?;
            let w = transpose(&w, &[1, 0, 2, 3, 4, 5])?;
            let y = conv(
                op,
                x.clone(),
                reshape_to(&w, &[size * c_out, kernel[0], kernel[1], kernel[2]])?,
            )?;
            let ys = y.shape().to_vec();
            let y = reshape_to(&y, &[ys[0], ys[1], ys[2], groups, size, per_group])?;
            transpose(&y, &[0, 1, 2, 4, 3, 5])?
        }
        Some(_) => {
            // Channels ordered (element, channel): element b's groups read its own channels.
            let x = transpose(&to_front(x, *x_ax, size)?, &[1, 2, 3, 0, 4])?;
            let xs = x.shape().to_vec();
            let x = reshape_to(&x, &[xs[0], xs[1], xs[2], size * xs[4]])?;
            let w = reshape_to(&w, &[size * c_out, kernel[0], kernel[1], kernel[2]])?;
            let grouped = ConvOp::Conv2d { stride, padding, dilation, groups: groups * size };
            conv(&grouped, x, w)?
        }
    };
    let ys = y.shape().to_vec();
    Ok(vec![(reshape_to(&y, &[ys[0], ys[1], ys[2], size, c_out])?, Some(3))])
}

fn conv(op: &ConvOp, x: Array, w: Array) -> Result<Array> {
    Array::from_op(Op::Conv(op.clone()), vec![x, w])
}
