//! Rules of the indexing ops. Gathers scatter-add their cotangent back; scatters gather it.
//! Index inputs get zero cotangents. As in MLX: an overwritten element of a `scatter` gets no
//! gradient and every update (repeated indices included) gets the cotangent at its target;
//! `scatter_max`/`scatter_min` send the cotangent to whichever of the old value and the
//! updates equals the result; `scatter_prod` has no rule.

use super::{or_zeros, scalar_like, sum_terms};
use crate::array::Array;
use crate::dtype::Dtype;
use crate::op::Op;
use crate::ops::index::{IndexOp, PadMode, ScatterMode};
use crate::ops::layout::LayoutOp;
use crate::ops::{
    self, add, broadcast_to, equal, multiply, reshape_to, slice_axis, subtract, where_, zeros_like,
    Slice,
};
use crate::{bail, Result};

pub(super) fn vjp(
    op: &IndexOp,
    inputs: &[Array],
    y: &Array,
    cot: &Array,
    argnums: &[usize],
) -> Result<Vec<Array>> {
    argnums.iter().map(|&i| input_vjp(op, inputs, y, cot, i)).collect()
}

/// The cotangent of input `i`.
fn input_vjp(op: &IndexOp, inputs: &[Array], y: &Array, cot: &Array, i: usize) -> Result<Array> {
    let x = &inputs[0];
    let last = inputs.len() - 1;
    match op {
        IndexOp::Take { axis } if i == 0 => take_vjp(x, &inputs[1], cot, *axis),
        IndexOp::TakeAlongAxis { axis } if i == 0 => {
            ops::scatter_add_axis(&zeros_like(x)?, &inputs[1], cot, *axis as isize)
        }
        IndexOp::ScatterAxis { mode, .. } | IndexOp::Scatter { mode, .. }
            if i == 0 || i == last =>
        {
            scatter_vjp(op, *mode, inputs, y, cot, i)
        }
        IndexOp::SliceUpdate { start, step } => {
            let upd = &inputs[1];
            if i == 0 {
                // The updated region was overwritten.
                Array::from_op(Op::Index(op.clone()), vec![cot.clone(), zeros_like(upd)?])
            } else {
                let region = LayoutOp::Slice {
                    start: start.clone(),
                    step: step.clone(),
                    shape: upd.shape().to_vec(),
                };
                Array::from_op(Op::Layout(region), vec![cot.clone()])
            }
        }
        IndexOp::Concatenate { axis } => {
            let offset: usize = inputs[..i].iter().map(|a| a.shape()[*axis]).sum();
            let len = inputs[i].shape()[*axis];
            slice_axis(cot, *axis as isize, Slice::range(offset as isize, (offset + len) as isize))
        }
        IndexOp::Pad { low, mode, .. } => {
            let inner = slice_all(cot, low, x.shape())?;
            match (mode, i) {
                (PadMode::Constant, 0) => Ok(inner),
                // The value fills the border: the total minus the interior.
                (PadMode::Constant, _) => {
                    subtract(&ops::sum(cot, None, false)?, &ops::sum(&inner, None, false)?)
                }
                (PadMode::Edge, 0) => edge_pad_vjp(cot, low, x.shape()),
                (PadMode::Edge, _) => zeros_like(&inputs[1]),
            }
        }
        // Index arrays.
        _ => zeros_like(&inputs[i]),
    }
}

pub(super) fn jvp(
    op: &IndexOp,
    inputs: &[Array],
    y: &Array,
    tangents: &[Option<Array>],
) -> Result<Array> {
    let last = inputs.len() - 1;
    // Ops linear in their data inputs: the op itself on the tangents, indices unchanged.
    let on_tangents = |data: &[usize]| -> Result<Array> {
        if data.iter().all(|&i| tangents[i].is_none()) {
            return zeros_like(y);
        }
        let args = (0..inputs.len())
            .map(|i| {
                if data.contains(&i) {
                    or_zeros(&tangents[i], &inputs[i])
                } else {
                    Ok(inputs[i].clone())
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Array::from_op(Op::Index(op.clone()), args)
    };
    match op {
        IndexOp::Take { .. } | IndexOp::TakeAlongAxis { .. } => on_tangents(&[0]),
        IndexOp::ScatterAxis { mode, .. } | IndexOp::Scatter { mode, .. } => match mode {
            ScatterMode::Set | ScatterMode::Add => on_tangents(&[0, last]),
            ScatterMode::Max | ScatterMode::Min => extreme_scatter_jvp(op, inputs, y, tangents),
            ScatterMode::Prod => no_gradient(op),
        },
        IndexOp::SliceUpdate { .. } => on_tangents(&[0, 1]),
        IndexOp::Concatenate { .. } => on_tangents(&(0..inputs.len()).collect::<Vec<_>>()),
        IndexOp::Pad { mode: PadMode::Constant, .. } => on_tangents(&[0, 1]),
        // The edge value is ignored.
        IndexOp::Pad { mode: PadMode::Edge, .. } => match &tangents[0] {
            Some(t) => Array::from_op(Op::Index(op.clone()), vec![t.clone(), inputs[1].clone()]),
            None => zeros_like(y),
        },
    }
}

/// `take` along `axis`: each cotangent slice is added at its index. The cotangent's axes are
/// `x.shape[..axis] + idx.shape + x.shape[axis + 1..]`; scatter wants the index axes first.
fn take_vjp(x: &Array, idx: &Array, cot: &Array, axis: usize) -> Result<Array> {
    let (q, nd) = (idx.ndim(), cot.ndim());
    let perm: Vec<isize> =
        (axis..axis + q).chain(0..axis).chain(axis + q..nd).map(|a| a as isize).collect();
    let mut shape = idx.shape().to_vec();
    shape.extend_from_slice(x.shape());
    shape[q + axis] = 1;
    let updates = reshape_to(&ops::transpose(cot, &perm)?, &shape)?;
    ops::scatter_add(&zeros_like(x)?, &[idx], &updates, &[axis as isize])
}

/// The cotangent of a scatter's array (`i == 0`) or updates (the last input).
fn scatter_vjp(
    op: &IndexOp,
    mode: ScatterMode,
    inputs: &[Array],
    y: &Array,
    cot: &Array,
    i: usize,
) -> Result<Array> {
    let (x, upd) = (&inputs[0], &inputs[inputs.len() - 1]);
    let gather = |a: &Array| gather_like(op, inputs, a);
    let zero = scalar_like(0.0, cot)?;
    match (mode, i) {
        (ScatterMode::Set, 0) => {
            let mut args = inputs.to_vec();
            args[0] = cot.clone();
            *args.last_mut().expect("has updates") = zeros_like(upd)?;
            Array::from_op(Op::Index(op.clone()), args)
        }
        (ScatterMode::Add, 0) => Ok(cot.clone()),
        (ScatterMode::Set | ScatterMode::Add, _) => gather(cot),
        (ScatterMode::Max | ScatterMode::Min, 0) => where_(&equal(y, x)?, cot, &zero),
        (ScatterMode::Max | ScatterMode::Min, _) => {
            let won = equal(&gather(y)?, upd)?;
            where_(&won, &gather(cot)?, &zero)
        }
        (ScatterMode::Prod, _) => no_gradient(op),
    }
}

/// `scatter_prod`'s rule: none, as in MLX.
fn no_gradient<T>(op: &IndexOp) -> Result<T> {
    bail!(crate::op::Primitive::name(op), "has no gradient (MLX defines none)")
}

/// The transpose of [`scatter_vjp`] for `scatter_max`/`scatter_min`: the old value's tangent
/// where it survived, plus each winning update's tangent added at its target.
fn extreme_scatter_jvp(
    op: &IndexOp,
    inputs: &[Array],
    y: &Array,
    tangents: &[Option<Array>],
) -> Result<Array> {
    let last = inputs.len() - 1;
    let mut terms = Vec::new();
    if let Some(tx) = &tangents[0] {
        terms.push(where_(&equal(y, &inputs[0])?, tx, &scalar_like(0.0, y)?)?);
    }
    if let Some(tu) = &tangents[last] {
        // The winning updates' tangents, added at their targets by a scatter_add.
        let add = match op {
            IndexOp::ScatterAxis { axis, .. } => {
                IndexOp::ScatterAxis { axis: *axis, mode: ScatterMode::Add }
            }
            IndexOp::Scatter { axes, .. } => {
                IndexOp::Scatter { axes: axes.clone(), mode: ScatterMode::Add }
            }
            _ => unreachable!("only scatters reach here"),
        };
        let upd = &inputs[last];
        let won = equal(&gather_like(op, inputs, y)?, upd)?.astype(upd.dtype())?;
        let mut args = inputs.to_vec();
        args[0] = zeros_like(y)?;
        args[last] = multiply(tu, &won)?;
        terms.push(Array::from_op(Op::Index(add), args)?);
    }
    sum_terms(terms, y)
}

/// What each update of the scatter `op` wrote to, read from `a` (shaped like its x).
fn gather_like(op: &IndexOp, inputs: &[Array], a: &Array) -> Result<Array> {
    let last = inputs.len() - 1;
    match op {
        IndexOp::ScatterAxis { axis, .. } => {
            ops::take_along_axis(a, &inputs[1], Some(*axis as isize))
        }
        IndexOp::Scatter { axes, .. } => {
            let upd = &inputs[last];
            gather_slices(a, &inputs[1..last], axes, &upd.shape()[upd.ndim() - a.ndim()..])
        }
        _ => unreachable!("only scatters reach here"),
    }
}

/// MLX's `gather`: for every position `p` of the index arrays, the block of `slice` shape
/// of `src` starting at `idx[m][p]` along `axes[m]` (0 along other axes); the result has shape
/// `idx.shape + slice`. Built as one `take` from the flattened array at computed positions.
fn gather_slices(src: &Array, idx: &[Array], axes: &[usize], slice: &[usize]) -> Result<Array> {
    let (nd, idx_shape) = (src.ndim(), idx.first().map_or(&[][..], |i| i.shape()));
    let q = idx_shape.len();
    let mut strides = vec![1i64; nd];
    for d in (0..nd.saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * src.shape()[d + 1] as i64;
    }
    let int = |v: i64| Array::scalar(v);
    let mut flat = int(0);
    for (i, &ax) in idx.iter().zip(axes) {
        let i = i.astype(Dtype::Int64)?;
        // Negative indices count from the end, as the scatter itself reads them.
        let i = where_(&ops::less(&i, &int(0))?, &add(&i, &int(src.shape()[ax] as i64))?, &i)?;
        let mut shape = idx_shape.to_vec();
        shape.extend(std::iter::repeat_n(1, nd));
        flat = add(&flat, &multiply(&reshape_to(&i, &shape)?, &int(strides[ax]))?)?;
    }
    for (d, &len) in slice.iter().enumerate() {
        if len > 1 {
            let mut shape = vec![1; q + nd];
            shape[q + d] = len;
            let r = reshape_to(&ops::arange(0.0, len as f64, 1.0, Dtype::Int64)?, &shape)?;
            flat = add(&flat, &multiply(&r, &int(strides[d]))?)?;
        }
    }
    let mut out_shape = idx_shape.to_vec();
    out_shape.extend_from_slice(slice);
    let flat = broadcast_to(&flat, &out_shape)?;
    ops::take(&ops::ravel(src)?, &flat, Some(0))
}

/// The block of `cot` starting at `low` with `shape` (a pad's interior).
fn slice_all(cot: &Array, low: &[usize], shape: &[usize]) -> Result<Array> {
    let slices: Vec<Slice> =
        low.iter().zip(shape).map(|(&l, &n)| Slice::range(l as isize, (l + n) as isize)).collect();
    ops::slice(cot, &slices)
}

/// Edge padding copies each edge element outwards, so the border's cotangent is summed back
/// onto the edges, one axis at a time.
fn edge_pad_vjp(cot: &Array, low: &[usize], shape: &[usize]) -> Result<Array> {
    let mut g = cot.clone();
    for (d, (&l, &n)) in low.iter().zip(shape).enumerate() {
        let padded = g.shape()[d];
        let ax = d as isize;
        let inner = slice_axis(&g, ax, Slice::range(l as isize, (l + n) as isize))?;
        let mut total = inner;
        for (from, to, at_start) in [(0, l, true), (l + n, padded, false)] {
            if to == from {
                continue;
            }
            let border = slice_axis(&g, ax, Slice::range(from as isize, to as isize))?;
            let edge = ops::sum(&border, Some(&[ax]), true)?;
            let mut widths = vec![(0, 0); g.ndim()];
            widths[d] = if at_start { (0, n - 1) } else { (n - 1, 0) };
            let spread = ops::pad(&edge, &widths, &scalar_like(0.0, &edge)?, PadMode::Constant)?;
            total = add(&total, &spread)?;
        }
        g = total;
    }
    Ok(g)
}
