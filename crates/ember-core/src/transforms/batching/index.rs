//! Batching rules of the gathers, scatters, slice updates, concatenation and padding.
//!
//! Gathers and scatters whose indices are batched must keep each batch element on its own
//! slice of the data: `take` becomes a `take_along_axis` over the batch-first array, and a
//! scatter gets the batch as one more indexed axis with an `arange` index (as MLX's
//! `Scatter::vmap`).

use super::{all_front, example_shape, first_batched, to_front, Batched};
use crate::array::Array;
use crate::dtype::Dtype;
use crate::op::Op;
use crate::ops::index::{IndexOp, PadMode, ScatterMode};
use crate::ops::{self, Slice};
use crate::Result;

pub(super) fn vmap(op: &IndexOp, inputs: &[Batched], size: usize) -> Result<Vec<Batched>> {
    match op {
        IndexOp::Take { axis } => take(*axis, inputs, size),
        // Inputs that share their shape off `axis`: batch first on all of them.
        IndexOp::TakeAlongAxis { axis } => {
            all_front(Op::Index(IndexOp::TakeAlongAxis { axis: axis + 1 }), inputs, size)
        }
        IndexOp::ScatterAxis { axis, mode } => {
            all_front(Op::Index(IndexOp::ScatterAxis { axis: axis + 1, mode: *mode }), inputs, size)
        }
        IndexOp::Concatenate { axis } => {
            all_front(Op::Index(IndexOp::Concatenate { axis: axis + 1 }), inputs, size)
        }
        IndexOp::SliceUpdate { start, step } => {
            let op = IndexOp::SliceUpdate {
                start: [&[0][..], start].concat(),
                step: [&[1][..], step].concat(),
            };
            all_front(Op::Index(op), inputs, size)
        }
        IndexOp::Scatter { axes, mode } => scatter(axes, *mode, inputs, size),
        IndexOp::Pad { low, high, mode } => pad(low, high, *mode, inputs, size),
    }
}

fn take(axis: usize, inputs: &[Batched], size: usize) -> Result<Vec<Batched>> {
    let ((x, x_ax), (idx, idx_ax)) = (&inputs[0], &inputs[1]);
    match (x_ax, idx_ax) {
        (_, None) => first_batched(Op::Index(IndexOp::Take { axis: axis + 1 }), inputs, size),
        (None, Some(_)) => {
            // All elements gather from one array: the batch axis lands where the indices go.
            let idx = to_front(idx, *idx_ax, size)?;
            let out = Array::from_op(Op::Index(IndexOp::Take { axis }), vec![x.clone(), idx])?;
            Ok(vec![(out, Some(axis))])
        }
        (Some(_), Some(_)) => {
            // Each element gathers from its own array: its indices, flattened, go on `axis`
            // of the batch-first array and broadcast over the other axes.
            let x = to_front(x, *x_ax, size)?;
            let idx = to_front(idx, *idx_ax, size)?;
            let idx_shape = &idx.shape()[1..];
            let mut flat = vec![1; x.ndim()];
            flat[0] = size;
            flat[axis + 1] = idx_shape.iter().product();
            let gathered =
                ops::take_along_axis(&x, &ops::reshape_to(&idx, &flat)?, Some(axis as isize + 1))?;
            let shape = [&x.shape()[..=axis], idx_shape, &x.shape()[axis + 2..]].concat();
            Ok(vec![(ops::reshape_to(&gathered, &shape)?, Some(0))])
        }
    }
}

/// Inputs `[x, idx_0, .., idx_k-1, updates]`; updates are `index shape + slice`.
fn scatter(
    axes: &[usize],
    mode: ScatterMode,
    inputs: &[Batched],
    size: usize,
) -> Result<Vec<Batched>> {
    let k = axes.len();
    let (x, indices, updates) = (&inputs[0], &inputs[1..=k], &inputs[k + 1]);
    let x_front = to_front(&x.0, x.1, size)?;
    let index_rank = example_shape(updates).len() - example_shape(x).len();
    let shifted: Vec<usize> = axes.iter().map(|a| a + 1).collect();
    let (upd, ax) = updates;
    let (axes, idx, upd) = if indices.iter().all(|(_, ax)| ax.is_none()) {
        // One set of positions for every element: the batch is one more slice axis that
        // each update covers whole.
        let upd = match ax {
            Some(_) => ops::moveaxis(&to_front(upd, *ax, size)?, 0, index_rank as isize)?,
            None => {
                let upd = ops::expand_dims(upd, &[index_rank as isize])?;
                let mut shape = upd.shape().to_vec();
                shape[index_rank] = size;
                ops::broadcast_to(&upd, &shape)?
            }
        };
        (shifted, indices.iter().map(|(i, _)| i.clone()).collect(), upd)
    } else {
        // Each element has its own positions: index the batch axis too, element b at b.
        let idx: Vec<Array> =
            indices.iter().map(|(i, ax)| to_front(i, *ax, size)).collect::<Result<_>>()?;
        let batch_shape = idx[0].shape().to_vec();
        let mut column = vec![1; batch_shape.len()];
        column[0] = size;
        let arange = ops::arange(0.0, size as f64, 1.0, Dtype::Uint32)?;
        let batch_index = ops::broadcast_to(&ops::reshape_to(&arange, &column)?, &batch_shape)?;
        let upd = ops::expand_dims(&to_front(upd, *ax, size)?, &[index_rank as isize + 1])?;
        ([&[0][..], &shifted].concat(), [vec![batch_index], idx].concat(), upd)
    };
    let mut args = vec![x_front];
    args.extend(idx);
    args.push(upd);
    let out = Array::from_op(Op::Index(IndexOp::Scatter { axes, mode }), args)?;
    Ok(vec![(out, Some(0))])
}

/// Inputs `[x, value]` with a 0-d value.
fn pad(
    low: &[usize],
    high: &[usize],
    mode: PadMode,
    inputs: &[Batched],
    size: usize,
) -> Result<Vec<Batched>> {
    let ((x, x_ax), (value, value_ax)) = (&inputs[0], &inputs[1]);
    let (batched_low, batched_high) = ([&[0][..], low].concat(), [&[0][..], high].concat());
    if mode == PadMode::Constant && value_ax.is_some() {
        // Each element pads with its own value: fill the padded shape with the values and
        // write x inside it (pad's composition in MLX).
        let x = to_front(x, *x_ax, size)?;
        let shape: Vec<usize> =
            (0..x.ndim()).map(|d| x.shape()[d] + batched_low[d] + batched_high[d]).collect();
        let mut column = vec![1; shape.len()];
        column[0] = size;
        let fill = ops::broadcast_to(&ops::reshape_to(value, &column)?, &shape)?;
        let op = IndexOp::SliceUpdate { start: batched_low, step: vec![1; shape.len()] };
        return Ok(vec![(Array::from_op(Op::Index(op), vec![fill, x])?, Some(0))]);
    }
    // An edge pad ignores its value (any element of a batched one will do).
    let value = match value_ax {
        Some(_) => ops::reshape_to(&ops::slice_axis(value, 0, Slice::range(0, 1))?, &[])?,
        None => value.clone(),
    };
    if x_ax.is_none() {
        let op = IndexOp::Pad { low: low.to_vec(), high: high.to_vec(), mode };
        return Ok(vec![(Array::from_op(Op::Index(op), vec![x.clone(), value])?, None)]);
    }
    let op = IndexOp::Pad { low: batched_low, high: batched_high, mode };
    Ok(vec![(Array::from_op(Op::Index(op), vec![to_front(x, *x_ax, size)?, value])?, Some(0))])
}
