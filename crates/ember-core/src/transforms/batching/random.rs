//! Batching rules of the random primitives. A batch of keys draws each element's bits from
//! its own key (MLX's `RandomBits::vmap`), so vmap over keys equals a loop over them.

use super::{first_batched, to_front, Batched};
use crate::array::Array;
use crate::op::Op;
use crate::ops::{self, random::RandomOp};
use crate::Result;

pub(super) fn vmap(op: &RandomOp, inputs: &[Batched], size: usize) -> Result<Vec<Batched>> {
    match op {
        RandomOp::Bits { shape, width } => {
            let keys = to_front(&inputs[0].0, inputs[0].1, size)?;
            let op = RandomOp::Bits { shape: [&[size][..], shape].concat(), width: *width };
            Ok(vec![(Array::from_op(Op::Random(op), vec![keys])?, Some(0))])
        }
        RandomOp::Argmax { axis } => {
            first_batched(Op::Random(RandomOp::Argmax { axis: axis + 1 }), inputs, size)
        }
        RandomOp::Permute { axis } => {
            let ((order, order_ax), (x, x_ax)) = (&inputs[0], &inputs[1]);
            let x = to_front(x, *x_ax, size)?;
            if order_ax.is_none() {
                let op = RandomOp::Permute { axis: axis + 1 };
                return Ok(vec![(
                    Array::from_op(Op::Random(op), vec![order.clone(), x])?,
                    Some(0),
                )]);
            }
            // Each element its own shuffle: the stable argsort the kernel takes, as a gather.
            let perm = ops::argsort(&to_front(order, *order_ax, size)?, Some(-1))?;
            let mut shape = vec![1; x.ndim()];
            shape[0] = size;
            shape[axis + 1] = perm.shape()[1];
            let out = ops::take_along_axis(
                &x,
                &ops::reshape_to(&perm, &shape)?,
                Some(*axis as isize + 1),
            )?;
            Ok(vec![(out, Some(0))])
        }
    }
}
