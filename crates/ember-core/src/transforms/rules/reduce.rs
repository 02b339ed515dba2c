//! Rules of the reductions and scans. Reduce primitives keep the reduced axes (size 1), so a
//! cotangent broadcasts straight back onto the input. Boolean reductions and arg-reductions
//! have zero derivatives.
//!
//! Extremes follow MLX: `max`/`min` split the cotangent equally between tied elements;
//! `prod` uses the product of the other elements (exact with zeros); `cumprod` uses MLX's
//! first-zero rule. `cummax`/`cummin` send each output's cotangent to the element it copies.

use super::{jvp_by_transpose, scalar_like};
use crate::array::Array;
use crate::dtype::Dtype;
use crate::op::Op;
use crate::ops::index::PadMode;
use crate::ops::reduce::{ReduceKind, ReduceOp, ScanKind};
use crate::ops::{
    self, broadcast_to, cummax, cummin, cumprod, cumsum, divide, equal, logical_and, multiply,
    not_equal, reshape_to, where_, zeros_like, Slice,
};
use crate::Result;

pub(super) fn vjp(op: &ReduceOp, x: &Array, y: &Array, cot: &Array) -> Result<Array> {
    match op {
        ReduceOp::Reduce { kind, axes } => match kind {
            ReduceKind::Sum => broadcast_to(cot, x.shape()),
            ReduceKind::Prod => multiply(&others_product(x, axes)?, cot),
            ReduceKind::Max | ReduceKind::Min => multiply(&extreme_share(x, y, axes)?, cot),
            ReduceKind::All | ReduceKind::Any => zeros_like(x),
        },
        ReduceOp::ArgReduce { .. } => zeros_like(x),
        &ReduceOp::Scan { kind, axis, reverse, inclusive } => {
            let ax = Some(axis as isize);
            match kind {
                ScanKind::Sum => cumsum(cot, ax, !reverse, inclusive),
                ScanKind::Prod => cumprod_vjp(x, y, cot, axis, reverse, inclusive),
                ScanKind::Max | ScanKind::Min => {
                    let sources = scan_sources(kind, x, y, axis, reverse, inclusive)?;
                    // An exclusive scan is the inclusive one shifted by one place.
                    let cot = if inclusive { cot.clone() } else { shift(cot, axis, reverse)? };
                    ops::scatter_add_axis(&zeros_like(x)?, &sources, &cot, axis as isize)
                }
            }
        }
    }
}

/// The sum of `v` over `axes`, keeping them (the primitive's shape).
fn sum_over(v: Array, axes: &[usize]) -> Result<Array> {
    let sum = ReduceOp::Reduce { kind: ReduceKind::Sum, axes: axes.to_vec() };
    Array::from_op(Op::Reduce(sum), vec![v])
}

pub(super) fn jvp(op: &ReduceOp, x: &Array, y: &Array, t: &Array) -> Result<Array> {
    match op {
        ReduceOp::Reduce { kind, axes } => match kind {
            ReduceKind::Sum => Array::from_op(Op::Reduce(op.clone()), vec![t.clone()]),
            ReduceKind::Prod => sum_over(multiply(t, &others_product(x, axes)?)?, axes),
            ReduceKind::Max | ReduceKind::Min => {
                sum_over(multiply(t, &extreme_share(x, y, axes)?)?, axes)
            }
            ReduceKind::All | ReduceKind::Any => zeros_like(y),
        },
        ReduceOp::ArgReduce { .. } => zeros_like(y),
        &ReduceOp::Scan { kind, axis, reverse, inclusive } => match kind {
            ScanKind::Sum => Array::from_op(Op::Reduce(op.clone()), vec![t.clone()]),
            ScanKind::Prod => {
                jvp_by_transpose(|c| cumprod_vjp(x, y, c, axis, reverse, inclusive), y, t)
            }
            ScanKind::Max | ScanKind::Min => {
                let sources = scan_sources(kind, x, y, axis, reverse, inclusive)?;
                let picked = ops::take_along_axis(t, &sources, Some(axis as isize))?;
                if inclusive {
                    Ok(picked)
                } else {
                    shift(&picked, axis, !reverse)
                }
            }
        },
    }
}

/// For each element, the product of the other elements of its reduction over `axes`: MLX's
/// two exclusive cumulative products (from each side), exact when some elements are zero.
fn others_product(x: &Array, axes: &[usize]) -> Result<Array> {
    let exclusive = |v: &Array, axis: isize| {
        let before = cumprod(v, Some(axis), false, false)?;
        multiply(&before, &cumprod(v, Some(axis), true, false)?)
    };
    if let [axis] = axes {
        return exclusive(x, *axis as isize);
    }
    // Move the reduced axes last and flatten them into one.
    let nd = x.ndim();
    let perm: Vec<usize> =
        (0..nd).filter(|a| !axes.contains(a)).chain(axes.iter().copied()).collect();
    let moved = ops::transpose(x, &perm.iter().map(|&p| p as isize).collect::<Vec<_>>())?;
    let mut flat_shape = moved.shape()[..nd - axes.len()].to_vec();
    flat_shape.push(axes.iter().map(|&a| x.shape()[a]).product());
    let flat = exclusive(&reshape_to(&moved, &flat_shape)?, -1)?;
    let mut inverse = vec![0isize; nd];
    for (i, &p) in perm.iter().enumerate() {
        inverse[p] = i as isize;
    }
    ops::transpose(&reshape_to(&flat, moved.shape())?, &inverse)
}

/// The share of a max/min reduction's cotangent each element gets: `1 / ties` where it
/// equals the result, 0 elsewhere.
fn extreme_share(x: &Array, y: &Array, axes: &[usize]) -> Result<Array> {
    let mask = equal(x, y)?.astype(x.dtype())?;
    let axes: Vec<isize> = axes.iter().map(|&a| a as isize).collect();
    divide(&mask, &ops::sum(&mask, Some(&axes[..]), true)?)
}

/// MLX's cumprod vjp: everything before the first zero gets the usual `sum(cot * y) / x`,
/// the first zero the same sums with itself replaced by one, and everything after it zero.
fn cumprod_vjp(
    x: &Array,
    y: &Array,
    cot: &Array,
    axis: usize,
    reverse: bool,
    inclusive: bool,
) -> Result<Array> {
    let ax = Some(axis as isize);
    let other = cumprod(x, ax, reverse, !inclusive)?;
    let (incl, excl) = if inclusive { (y.clone(), other) } else { (other, y.clone()) };
    let (zero, one) = (scalar_like(0.0, x)?, scalar_like(1.0, x)?);
    let eq_zero = equal(&incl, &zero)?;
    let first_zero = logical_and(&eq_zero, &not_equal(&excl, &zero)?)?;
    let partial = |p: &Array| cumsum(&multiply(p, cot)?, ax, !reverse, inclusive);
    let with_one = cumprod(&where_(&first_zero, &one, x)?, ax, reverse, inclusive)?;
    // Zeros of x lie where the usual sums are not used; dividing by 1 there keeps NaN out
    // of this rule's own derivatives.
    let usual = divide(&partial(y)?, &where_(&equal(x, &zero)?, &one, x)?)?;
    where_(&first_zero, &partial(&with_one)?, &where_(&eq_zero, &zero, &usual)?)
}

/// For each position of a cumulative max (min) along `axis`, the position of the element its
/// inclusive scan copies: the last place at or before it (first at or after it, in reverse)
/// where an element equals the running extreme.
fn scan_sources(
    kind: ScanKind,
    x: &Array,
    y: &Array,
    axis: usize,
    reverse: bool,
    inclusive: bool,
) -> Result<Array> {
    let ax = Some(axis as isize);
    let running = match (inclusive, kind) {
        (true, _) => y.clone(),
        (false, ScanKind::Max) => cummax(x, ax, reverse, true)?,
        (false, _) => cummin(x, ax, reverse, true)?,
    };
    let n = x.shape()[axis];
    let mut shape = vec![1; x.ndim()];
    shape[axis] = n;
    let positions = reshape_to(&ops::arange(0.0, n as f64, 1.0, Dtype::Int32)?, &shape)?;
    let reached = equal(x, &running)?;
    if reverse {
        let marks = where_(&reached, &positions, &Array::scalar(n as i32))?;
        cummin(&marks, ax, true, true)
    } else {
        let marks = where_(&reached, &positions, &Array::scalar(-1i32))?;
        cummax(&marks, ax, false, true)
    }
}

/// `v` moved one place along `axis`, towards the end (`out[j] = v[j - 1]`) or towards the
/// start (`out[j] = v[j + 1]`), with a zero in the place left empty.
fn shift(v: &Array, axis: usize, toward_end: bool) -> Result<Array> {
    let n = v.shape()[axis] as isize;
    let mut widths = vec![(0, 0); v.ndim()];
    widths[axis] = if toward_end { (1, 0) } else { (0, 1) };
    let padded = ops::pad(v, &widths, &scalar_like(0.0, v)?, PadMode::Constant)?;
    let start = if toward_end { 0 } else { 1 };
    ops::slice_axis(&padded, axis as isize, Slice::range(start, start + n))
}
