//! Rules of the random ops. Random bits and categorical choices are piecewise constant in
//! their inputs (keys, logits), so they get zeros; a permutation moves its input's entries,
//! so its cotangent is moved back.

use crate::array::Array;
use crate::op::Op;
use crate::ops::random::RandomOp;
use crate::ops::{self, zeros_like};
use crate::Result;

pub(super) fn vjp(
    op: &RandomOp,
    inputs: &[Array],
    cot: &Array,
    argnums: &[usize],
) -> Result<Vec<Array>> {
    argnums
        .iter()
        .map(|&i| match (op, i) {
            // out[j] = x[order[j]] with order = argsort(bits): x[i] gets cot[inverse[i]].
            (RandomOp::Permute { axis }, 1) => {
                let order = ops::argsort(&inputs[0], Some(0))?;
                let inverse = ops::argsort(&order, Some(0))?;
                ops::take(cot, &inverse, Some(*axis as isize))
            }
            _ => zeros_like(&inputs[i]),
        })
        .collect()
}

pub(super) fn jvp(
    op: &RandomOp,
    inputs: &[Array],
    y: &Array,
    tangents: &[Option<Array>],
) -> Result<Array> {
    match (op, tangents.get(1)) {
        (RandomOp::Permute { .. }, Some(Some(t))) => {
            Array::from_op(Op::Random(op.clone()), vec![inputs[0].clone(), t.clone()])
        }
        _ => zeros_like(y),
    }
}
