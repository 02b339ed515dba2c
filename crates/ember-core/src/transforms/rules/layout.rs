//! Rules of the layout ops. Each is linear, so its jvp applies the op to the tangent (see
//! `rules/mod.rs`); each vjp maps the cotangent back onto the input's shape.

use super::unbroadcast;
use crate::array::Array;
use crate::op::Op;
use crate::ops::index::IndexOp;
use crate::ops::layout::LayoutOp;
use crate::ops::{self, reshape_to, zeros_like};
use crate::Result;

pub(super) fn vjp(op: &LayoutOp, x: &Array, cot: &Array) -> Result<Array> {
    match op {
        LayoutOp::Copy | LayoutOp::Reshape(_) => reshape_to(cot, x.shape()),
        LayoutOp::Transpose(perm) => {
            let mut inverse = vec![0isize; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inverse[p] = i as isize;
            }
            ops::transpose(cot, &inverse)
        }
        LayoutOp::Broadcast(_) => unbroadcast(cot, x.shape()),
        // The slice's elements get the cotangent, the others zero.
        LayoutOp::Slice { start, step, .. } => {
            let update = IndexOp::SliceUpdate { start: start.clone(), step: step.clone() };
            Array::from_op(Op::Index(update), vec![zeros_like(x)?, cot.clone()])
        }
        LayoutOp::AsStrided { shape, strides, offset } => {
            as_strided_vjp(x, cot, shape, strides, *offset)
        }
    }
}

/// Adds each element of `cot` into the element of `x` its view position reads (positions may
/// repeat: overlapping windows read one element several times).
fn as_strided_vjp(
    x: &Array,
    cot: &Array,
    shape: &[usize],
    strides: &[isize],
    offset: usize,
) -> Result<Array> {
    let n = cot.size();
    if n == 0 {
        return zeros_like(x);
    }
    // The flat source position of every view element, in row-major order.
    let mut positions = vec![offset as i64; n];
    let mut block = n;
    for (&len, &stride) in shape.iter().zip(strides) {
        block /= len;
        for (i, p) in positions.iter_mut().enumerate() {
            *p += ((i / block) % len) as i64 * stride as i64;
        }
    }
    let positions = Array::from_vec(positions, &[n])?;
    let flat = ops::zeros(&[x.size()], x.dtype())?;
    let summed = ops::scatter_add_axis(&flat, &positions, &reshape_to(cot, &[n])?, 0)?;
    reshape_to(&summed, x.shape())
}
