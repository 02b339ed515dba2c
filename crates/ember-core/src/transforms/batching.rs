//! The batching (vmap) rule of every primitive: given inputs with their batch axes, compute
//! the outputs for the whole batch and say where their batch axes are. Most rules move the
//! batch axis first and shift the op's axes by one; ops without a rule of their own run once
//! per batch element and stack the results (correct for any op, only slower).

use super::vmap::{to_front, Batched};
use crate::array::Array;
use crate::op::Op;
use crate::ops::fast::FastOp;
use crate::ops::index::IndexOp;
use crate::ops::layout::LayoutOp;
use crate::ops::sort::SortOp;
use crate::ops::linalg::LinalgOp;
use crate::ops::reduce::ReduceOp;
use crate::ops::{self, Slice};
use crate::Result;

impl Op {
    /// The outputs of this op over a batch of `size`, from inputs with batch axes.
    pub(crate) fn vmap(&self, inputs: &[Batched], size: usize) -> Result<Vec<Batched>> {
        match self {
            Op::Unary(_) | Op::AsType(_) | Op::StopGradient => {
                let (x, ax) = &inputs[0];
                Ok(vec![(Array::from_op(self.clone(), vec![x.clone()])?, *ax)])
            }
            // These broadcast their inputs (matmul its batch dims) from the right.
            Op::Binary(_) | Op::Select | Op::Linalg(LinalgOp::Matmul) => {
                let aligned = align_batch_first(inputs, size)?;
                Ok(vec![(Array::from_op(self.clone(), aligned)?, Some(0))])
            }
            Op::Layout(l) => layout(l, &inputs[0], size),
            Op::Sort(o) => {
                let shifted = match o.clone() {
                    SortOp::Sort { axis } => SortOp::Sort { axis: axis + 1 },
                    SortOp::ArgSort { axis } => SortOp::ArgSort { axis: axis + 1 },
                    SortOp::Partition { kth, axis } => SortOp::Partition { kth, axis: axis + 1 },
                    SortOp::ArgPartition { kth, axis } => SortOp::ArgPartition { kth, axis: axis + 1 },
                };
                first_batched(Op::Sort(shifted), inputs, size)
            }
            // These act on trailing axes; an extra leading batch axis is one more row, as long
            // as only the main input (the first) is batched.
            Op::Fast(FastOp::Softmax | FastOp::RmsNorm { .. } | FastOp::LayerNorm { .. } | FastOp::Rope { .. })
                if inputs[1..].iter().all(|(_, ax)| ax.is_none()) =>
            {
                first_batched(self.clone(), inputs, size)
            }
            Op::Index(IndexOp::Take { axis }) if inputs[1].1.is_none() => {
                first_batched(Op::Index(IndexOp::Take { axis: axis + 1 }), inputs, size)
            }
            Op::Index(IndexOp::Concatenate { axis }) => {
                let front = inputs.iter().map(|(x, ax)| to_front(x, *ax, size)).collect::<Result<Vec<_>>>()?;
                let op = Op::Index(IndexOp::Concatenate { axis: axis + 1 });
                Ok(vec![(Array::from_op(op, front)?, Some(0))])
            }
            Op::Reduce(r) => {
                let x = to_front(&inputs[0].0, inputs[0].1, size)?;
                let shifted = match r {
                    ReduceOp::Reduce { kind, axes } => {
                        ReduceOp::Reduce { kind: *kind, axes: axes.iter().map(|a| a + 1).collect() }
                    }
                    ReduceOp::ArgReduce { kind, axis } => ReduceOp::ArgReduce { kind: *kind, axis: axis + 1 },
                    ReduceOp::Scan { kind, axis, reverse, inclusive } => ReduceOp::Scan {
                        kind: *kind,
                        axis: axis + 1,
                        reverse: *reverse,
                        inclusive: *inclusive,
                    },
                };
                Ok(vec![(Array::from_op(Op::Reduce(shifted), vec![x])?, Some(0))])
            }
            Op::Compiled(p) => p.vmap(inputs, size),
            _ => per_element(self, inputs, size),
        }
    }
}

/// `op` on the first input with its batch axis first and the other inputs as they are.
fn first_batched(op: Op, inputs: &[Batched], size: usize) -> Result<Vec<Batched>> {
    let mut args = vec![to_front(&inputs[0].0, inputs[0].1, size)?];
    args.extend(inputs[1..].iter().map(|(x, _)| x.clone()));
    let outs = Array::from_op_multi(op, args)?;
    Ok(outs.into_iter().map(|o| (o, Some(0))).collect())
}

fn layout(op: &LayoutOp, input: &Batched, size: usize) -> Result<Vec<Batched>> {
    let x = to_front(&input.0, input.1, size)?;
    let with_batch = |shape: &[usize]| [&[size][..], shape].concat();
    let batched_op = match op {
        LayoutOp::Copy => LayoutOp::Copy,
        LayoutOp::Reshape(shape) => LayoutOp::Reshape(with_batch(shape)),
        LayoutOp::Transpose(perm) => {
            LayoutOp::Transpose([&[0][..], &perm.iter().map(|p| p + 1).collect::<Vec<_>>()].concat())
        }
        LayoutOp::Broadcast(shape) => {
            // Align the example's dims with the target's trailing dims, batch axis first.
            let missing = shape.len() + 1 - x.ndim();
            let mut aligned = vec![size];
            aligned.extend(std::iter::repeat_n(1, missing));
            aligned.extend_from_slice(&x.shape()[1..]);
            let x = ops::reshape_to(&x, &aligned)?;
            return Ok(vec![(ops::broadcast_to(&x, &with_batch(shape))?, Some(0))]);
        }
        LayoutOp::Slice { start, step, shape } => LayoutOp::Slice {
            start: [&[0][..], start].concat(),
            step: [&[1][..], step].concat(),
            shape: with_batch(shape),
        },
        LayoutOp::AsStrided { .. } => return per_element(&Op::Layout(op.clone()), &[input.clone()], size),
    };
    Ok(vec![(Array::from_op(Op::Layout(batched_op), vec![x])?, Some(0))])
}

/// Inputs for an op that broadcasts from the right: each batched input gets its batch axis
/// first, then ones up to the largest example rank, so the batches line up on axis 0 of the
/// result; unbatched inputs broadcast as they are.
pub(crate) fn align_batch_first(inputs: &[Batched], size: usize) -> Result<Vec<Array>> {
    let rank = inputs.iter().map(|(x, ax)| x.ndim() - usize::from(ax.is_some())).max().unwrap_or(0);
    inputs
        .iter()
        .map(|(x, ax)| {
            if ax.is_none() {
                return Ok(x.clone());
            }
            let front = to_front(x, *ax, size)?;
            let mut shape = vec![size];
            shape.extend(std::iter::repeat_n(1, rank + 1 - front.ndim()));
            shape.extend_from_slice(&front.shape()[1..]);
            ops::reshape_to(&front, &shape)
        })
        .collect()
}

/// The op applied to each batch element in turn, outputs stacked on a new first axis.
fn per_element(op: &Op, inputs: &[Batched], size: usize) -> Result<Vec<Batched>> {
    let mut per_output: Vec<Vec<Array>> = Vec::new();
    for b in 0..size {
        let args = inputs
            .iter()
            .map(|(x, ax)| match ax {
                Some(a) => {
                    let one = ops::slice_axis(x, *a as isize, Slice::range(b as isize, b as isize + 1))?;
                    ops::squeeze(&one, Some(&[*a as isize]))
                }
                None => Ok(x.clone()),
            })
            .collect::<Result<Vec<_>>>()?;
        let outs = Array::from_op_multi(op.clone(), args)?;
        per_output.resize(outs.len(), Vec::new());
        for (acc, o) in per_output.iter_mut().zip(outs) {
            acc.push(o);
        }
    }
    per_output
        .into_iter()
        .map(|outs| {
            let refs: Vec<&Array> = outs.iter().collect();
            Ok((ops::stack(&refs, 0)?, Some(0)))
        })
        .collect()
}
