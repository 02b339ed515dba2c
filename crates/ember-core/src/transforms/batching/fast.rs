//! Batching rules of the fused ops: softmax, the norms, rope and attention.
//!
//! The norms and rope act on the last axis (rope on the last two), so a leading batch axis
//! of x is more rows. A batched weight or bias is applied after the fused kernel, as MLX's
//! fallback composition does; attention folds the batch into its leading batch axis.

use super::{first_batched, per_element, to_front, Batched};
use crate::array::Array;
use crate::op::Op;
use crate::ops;
use crate::ops::fast::FastOp;
use crate::Result;

pub(super) fn vmap(op: &FastOp, inputs: &[Batched], size: usize) -> Result<Vec<Batched>> {
    let params_batched = inputs[1..].iter().any(|(_, ax)| ax.is_some());
    match op {
        FastOp::Softmax => first_batched(Op::Fast(op.clone()), inputs, size),
        FastOp::Sdpa { .. } => sdpa(op, inputs, size),
        _ if !params_batched => first_batched(Op::Fast(op.clone()), inputs, size),
        FastOp::RmsNorm { eps } => {
            let x = to_front(&inputs[0].0, inputs[0].1, size)?;
            let y = Array::from_op(Op::Fast(FastOp::RmsNorm { eps: *eps }), vec![x])?;
            Ok(vec![(ops::multiply(&y, &row_param(&inputs[1], y.ndim(), size)?)?, Some(0))])
        }
        FastOp::LayerNorm { eps, weight, bias } => {
            let x = to_front(&inputs[0].0, inputs[0].1, size)?;
            let w = weight.then(|| &inputs[1]);
            let b = bias.then(|| &inputs[1 + *weight as usize]);
            // An unbatched weight stays in the kernel; the bias is added after the weight.
            let fused_w = w.filter(|(_, ax)| ax.is_none());
            let mut args = vec![x];
            args.extend(fused_w.map(|(w, _)| w.clone()));
            let fused = FastOp::LayerNorm { eps: *eps, weight: fused_w.is_some(), bias: false };
            let mut y = Array::from_op(Op::Fast(fused), args)?;
            if let Some(w) = w.filter(|(_, ax)| ax.is_some()) {
                y = ops::multiply(&y, &row_param(w, y.ndim(), size)?)?;
            }
            if let Some(b) = b {
                y = ops::add(&y, &row_param(b, y.ndim(), size)?)?;
            }
            Ok(vec![(y, Some(0))])
        }
        // Batched frequencies: the kernel builds one table of angles per call, and a batch
        // of frequency tables is rare, so each element runs the kernel.
        FastOp::Rope { .. } => per_element(&Op::Fast(op.clone()), inputs, size),
    }
}

/// A feature vector lined up with batch-first rows of rank `rank`: `(B, 1, .., 1, D)` when
/// batched, as it is otherwise (it broadcasts from the right).
fn row_param((p, ax): &Batched, rank: usize, size: usize) -> Result<Array> {
    if ax.is_none() {
        return Ok(p.clone());
    }
    let p = to_front(p, *ax, size)?;
    let mut shape = vec![1; rank];
    shape[0] = size;
    shape[rank - 1] = p.shape()[1];
    ops::reshape_to(&p, &shape)
}

/// Inputs q (B, Hq, Lq, D), k and v (B, Hkv, Lk, _) and an optional mask broadcastable to
/// (B, Hq, Lq, Lk): the vmap batch V folds into B as (V * B).
fn sdpa(op: &FastOp, inputs: &[Batched], size: usize) -> Result<Vec<Batched>> {
    let fold = |(a, ax): &Batched| -> Result<Array> {
        let a = to_front(a, *ax, size)?;
        ops::reshape_to(&a, &[&[size * a.shape()[1]][..], &a.shape()[2..]].concat())
    };
    let batch = super::example_shape(&inputs[0])[0];
    let mut args = inputs[..3].iter().map(fold).collect::<Result<Vec<_>>>()?;
    if let Some(mask) = inputs.get(3) {
        let shape = super::example_shape(mask);
        let args_mask = if mask.1.is_none() && (shape.len() < 4 || shape[0] == 1) {
            mask.0.clone() // broadcasts over the folded axis as it is
        } else {
            // (V, m..) padded to (V, B, m1, m2, m3), then folded.
            let mut padded = vec![size];
            padded.extend(std::iter::repeat_n(1, 4 - shape.len()));
            padded.extend_from_slice(&shape);
            let m = ops::reshape_to(&to_front(&mask.0, mask.1, size)?, &padded)?;
            padded[1] = batch;
            let m = ops::broadcast_to(&m, &padded)?;
            ops::reshape_to(&m, &[size * batch, padded[2], padded[3], padded[4]])?
        };
        args.push(args_mask);
    }
    let y = Array::from_op(Op::Fast(op.clone()), args)?;
    let shape = [&[size, batch][..], &y.shape()[1..]].concat();
    Ok(vec![(ops::reshape_to(&y, &shape)?, Some(0))])
}
