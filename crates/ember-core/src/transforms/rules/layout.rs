//! Rules of the layout ops: each vjp maps the cotangent back onto the input's shape.

use crate::array::Array;
use crate::ops::layout::LayoutOp;
use crate::ops::{self, reshape_to};
use crate::{bail, Result};

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
        LayoutOp::Broadcast(shape) => unbroadcast(cot, x.shape(), shape),
        op => bail!("vjp", "{} has no gradient rule", crate::op::Primitive::name(op)),
    }
}

/// Sums `cot` (of the broadcast `shape`) back to `to`.
pub(super) fn unbroadcast(cot: &Array, to: &[usize], shape: &[usize]) -> Result<Array> {
    if to == shape {
        return Ok(cot.clone());
    }
    let lead = shape.len() - to.len();
    let axes: Vec<isize> = (0..shape.len())
        .filter(|&i| i < lead || (to[i - lead] == 1 && shape[i] != 1))
        .map(|i| i as isize)
        .collect();
    let summed = ops::sum(cot, Some(&axes), true)?;
    reshape_to(&summed, to)
}
