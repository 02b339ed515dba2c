//! The batching (vmap) rule of every primitive: given inputs with their batch axes, compute
//! the outputs for the whole batch and say where their batch axes are. Most rules move the
//! batch axis first and shift the op's axes by one; the families with more to do have their
//! own file. A few rare input combinations run once per batch element and stack the results
//! ([`per_element`], correct for any op, only slower); each use says why.

mod affine;
mod conv;
mod fast;
mod index;
mod random;

use super::custom::CustomOp;
use super::vmap::{to_front, vmap, Batched};
use crate::array::Array;
use crate::op::Op;
use crate::ops::layout::LayoutOp;
use crate::ops::linalg::LinalgOp;
use crate::ops::quantized::QuantizedOp;
use crate::ops::reduce::ReduceOp;
use crate::ops::sort::SortOp;
use crate::ops::{self, Slice};
use crate::{bail, Result};

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
            // No inputs, so never batched; built as it is should it ever get here.
            Op::Arange { .. } => Ok(vec![(Array::from_op(self.clone(), vec![])?, None)]),
            Op::Layout(l) => layout(l, &inputs[0], size),
            Op::Sort(o) => {
                let shifted = match o.clone() {
                    SortOp::Sort { axis } => SortOp::Sort { axis: axis + 1 },
                    SortOp::ArgSort { axis } => SortOp::ArgSort { axis: axis + 1 },
                    SortOp::Partition { kth, axis } => SortOp::Partition { kth, axis: axis + 1 },
                    SortOp::ArgPartition { kth, axis } => {
                        SortOp::ArgPartition { kth, axis: axis + 1 }
                    }
                };
                first_batched(Op::Sort(shifted), inputs, size)
            }
            Op::Reduce(r) => {
                let x = to_front(&inputs[0].0, inputs[0].1, size)?;
                let shifted = match r {
                    ReduceOp::Reduce { kind, axes } => {
                        ReduceOp::Reduce { kind: *kind, axes: axes.iter().map(|a| a + 1).collect() }
                    }
                    ReduceOp::ArgReduce { kind, axis } => {
                        ReduceOp::ArgReduce { kind: *kind, axis: axis + 1 }
                    }
                    ReduceOp::Scan { kind, axis, reverse, inclusive } => ReduceOp::Scan {
                        kind: *kind,
                        axis: axis + 1,
                        reverse: *reverse,
                        inclusive: *inclusive,
                    },
                };
                Ok(vec![(Array::from_op(Op::Reduce(shifted), vec![x])?, Some(0))])
            }
            Op::Index(o) => index::vmap(o, inputs, size),
            Op::Conv(c) => conv::vmap(c, inputs, size),
            Op::Fast(f) => fast::vmap(f, inputs, size),
            Op::Random(r) => random::vmap(r, inputs, size),
            Op::Quantized(q) => quantized(q, inputs, size),
            Op::Affine(a) => affine::vmap(a, inputs, size),
            Op::Custom(c) => custom(c, inputs),
            Op::Compiled(p) => p.vmap(inputs, size),
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

/// `op` on every input with its batch axis first (unbatched ones broadcast): for ops whose
/// inputs share their shape on every axis the op does not act on.
fn all_front(op: Op, inputs: &[Batched], size: usize) -> Result<Vec<Batched>> {
    let front = inputs.iter().map(|(x, ax)| to_front(x, *ax, size)).collect::<Result<Vec<_>>>()?;
    Ok(vec![(Array::from_op(op, front)?, Some(0))])
}

/// The shape of one batch element of `x`.
fn example_shape((x, ax): &Batched) -> Vec<usize> {
    let mut shape = x.shape().to_vec();
    if let Some(a) = ax {
        shape.remove(*a);
    }
    shape
}

fn quantized(op: &QuantizedOp, inputs: &[Batched], size: usize) -> Result<Vec<Batched>> {
    match op {
        // Both act on the last axis of their first input: a leading batch axis is more rows.
        QuantizedOp::GgmlDequantize { .. } | QuantizedOp::GgmlQuantize { .. } => {
            first_batched(Op::Quantized(op.clone()), inputs, size)
        }
        QuantizedOp::GgmlMatmul { .. } if inputs[1..].iter().all(|w| w.1.is_none()) => {
            first_batched(Op::Quantized(op.clone()), inputs, size)
        }
        // Any shape of ids gathers from the one matrix.
        QuantizedOp::GgmlRows { .. } if inputs[0].1.is_none() => {
            let ids = to_front(&inputs[1].0, inputs[1].1, size)?;
            let out = Array::from_op(Op::Quantized(op.clone()), vec![inputs[0].0.clone(), ids])?;
            Ok(vec![(out, Some(0))])
        }
        // A batch of quantized matrices: the kernels take one 2-d block matrix per call (a
        // batch of weights is rare: one loaded model per element).
        QuantizedOp::GgmlMatmul { .. } | QuantizedOp::GgmlRows { .. } => {
            per_element(&Op::Quantized(op.clone()), inputs, size)
        }
    }
}

/// A custom function maps its forward over the batch, as MLX's default: the recorded op's
/// outputs are the forward's values for the traced example only, so they are recomputed.
/// The result has no custom gradient rule (the user's rule is written for one example).
fn custom(op: &CustomOp, inputs: &[Batched]) -> Result<Vec<Batched>> {
    let (primals, outputs) = inputs.split_at(op.primals());
    if primals.iter().all(|(_, ax)| ax.is_none()) {
        // Nothing the forward reads is batched: its traced values hold for every element.
        return Ok(outputs.to_vec());
    }
    let args: Vec<Array> = primals.iter().map(|(x, _)| x.clone()).collect();
    let in_axes: Vec<Option<isize>> =
        primals.iter().map(|(_, ax)| ax.map(|a| a as isize)).collect();
    let mapped =
        vmap(|xs: &[Array]| op.forward(xs), &in_axes, &vec![Some(0); outputs.len()])(&args)?;
    Ok(mapped.into_iter().map(|o| (o, Some(0))).collect())
}

fn layout(op: &LayoutOp, input: &Batched, size: usize) -> Result<Vec<Batched>> {
    let x = to_front(&input.0, input.1, size)?;
    let with_batch = |shape: &[usize]| [&[size][..], shape].concat();
    let batched_op = match op {
        LayoutOp::Copy => LayoutOp::Copy,
        LayoutOp::Reshape(shape) => LayoutOp::Reshape(with_batch(shape)),
        LayoutOp::Transpose(perm) => LayoutOp::Transpose(
            [&[0][..], &perm.iter().map(|p| p + 1).collect::<Vec<_>>()].concat(),
        ),
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
        // Its strides address the input's whole buffer, so there is no axis to batch; MLX
        // has no batching rule for it either.
        LayoutOp::AsStrided { .. } => bail!(
            "as_strided",
            "vmap is not supported: the strides address the whole input, not one element"
        ),
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
                    let one =
                        ops::slice_axis(x, *a as isize, Slice::range(b as isize, b as isize + 1))?;
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

#[cfg(test)]
mod tests {
    use super::super::tape;
    use super::*;
    use crate::dtype::Dtype;
    use crate::ops::fast::{scaled_dot_product_attention, AttentionMask};

    type F = fn(&[Array]) -> Result<Vec<Array>>;

    /// The names of the ops `vmap(f)` records over a batch of 4 (the traced example's
    /// included).
    fn recorded(f: F, shapes: &[&[usize]]) -> Vec<&'static str> {
        let args: Vec<Array> = shapes
            .iter()
            .map(|s| {
                let n = s.iter().product::<usize>() as f64;
                ops::reshape_to(&ops::arange(0.0, n, 1.0, Dtype::Float32).unwrap(), s).unwrap()
            })
            .collect();
        let mapped = vmap(f, &vec![Some(0); args.len()], &[Some(0)]);
        let (out, ops) = tape::trace(|| mapped(&args));
        out.unwrap();
        ops.iter().map(|o| o.op.name()).collect()
    }

    #[test]
    fn batching_rules_record_one_op_for_the_whole_batch() {
        // The op traced, the op that computes the whole batch, the function and its inputs.
        let cases: Vec<(&str, &str, F, Vec<&[usize]>)> = vec![
            (
                "take",
                "take_along_axis",
                |x| Ok(vec![ops::take(&x[0], &ops::argsort(&x[1], Some(0))?, Some(0))?]),
                vec![&[4, 3], &[4, 2]],
            ),
            (
                "scatter_add",
                "scatter_add",
                |x| {
                    let idx = ops::argsort(&x[1], Some(0))?;
                    Ok(vec![ops::scatter_add(&x[0], &[&idx], &x[2], &[0])?])
                },
                vec![&[4, 4, 3], &[4, 2], &[4, 2, 1, 3]],
            ),
            (
                "conv",
                "conv",
                |x| Ok(vec![ops::conv2d(&x[0], &x[1], (1, 1), (0, 0), (1, 1), 1)?]),
                vec![&[4, 1, 3, 3, 2], &[4, 2, 2, 2, 2]],
            ),
            (
                "scaled_dot_product_attention",
                "scaled_dot_product_attention",
                |x| {
                    let mask = AttentionMask::Causal;
                    Ok(vec![scaled_dot_product_attention(&x[0], &x[1], &x[2], 1.0, mask)?])
                },
                vec![&[4, 1, 2, 3, 2], &[4, 1, 2, 3, 2], &[4, 1, 2, 3, 2]],
            ),
            (
                "bits",
                "bits",
                |x| {
                    let key = ops::astype(&x[0], Dtype::Uint32)?;
                    Ok(vec![ops::random::bits(&[3], 4, Some(&key))?])
                },
                vec![&[4, 2]],
            ),
        ];
        for (name, batched, f, shapes) in cases {
            let names = recorded(f, &shapes);
            // Once on the traced example, once for the batch; a loop would add one per element
            // and stack them with a concatenate.
            let count = names.iter().filter(|n| **n == name || **n == batched).count();
            assert_eq!(count, 2, "{name}: {names:?}");
            assert!(!names.contains(&"concatenate"), "{name}: {names:?}");
        }
    }
}
