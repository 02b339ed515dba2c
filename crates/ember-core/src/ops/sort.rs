//! Sorting along an axis: `sort`, `argsort`, `partition`, `argpartition` and `topk`.
//!
//! The order is NumPy's: NaNs after every number. `argsort` is stable; index outputs are
//! uint32, as in MLX. With `axis = None` these work on the flattened array.

use super::layout::{ravel, slice_axis, Slice};
use super::normalize_axis;
use crate::array::Array;
use crate::dtype::Dtype;
use crate::op::{Op, OutSpec, Primitive};
use crate::{bail, Result};

/// Sorting primitives; each keeps its input's shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SortOp {
    Sort {
        axis: usize,
    },
    ArgSort {
        axis: usize,
    },
    /// `kth` is already resolved to `0..shape[axis]`.
    Partition {
        kth: usize,
        axis: usize,
    },
    ArgPartition {
        kth: usize,
        axis: usize,
    },
}

impl Primitive for SortOp {
    fn name(&self) -> &'static str {
        match self {
            SortOp::Sort { .. } => "sort",
            SortOp::ArgSort { .. } => "argsort",
            SortOp::Partition { .. } => "partition",
            SortOp::ArgPartition { .. } => "argpartition",
        }
    }

    fn infer(&self, inputs: &[&Array]) -> Result<Vec<OutSpec>> {
        let name = self.name();
        let [x] = inputs else { bail!(name, "takes 1 input, got {}", inputs.len()) };
        let (axis, kth, indices) = match *self {
            SortOp::Sort { axis } => (axis, None, false),
            SortOp::ArgSort { axis } => (axis, None, true),
            SortOp::Partition { kth, axis } => (axis, Some(kth), false),
            SortOp::ArgPartition { kth, axis } => (axis, Some(kth), true),
        };
        if axis >= x.ndim() {
            bail!(name, "axis {} is out of bounds for array with {} dimensions", axis, x.ndim());
        }
        let n = x.shape()[axis];
        if kth.is_some_and(|k| k >= n) {
            bail!(
                name,
                "kth {} is out of range for axis {} of shape {:?}",
                kth.unwrap_or(0),
                axis,
                x.shape()
            );
        }
        if indices && n > u32::MAX as usize {
            bail!(name, "axis of size {} is too long for uint32 indices", n);
        }
        let dtype = if indices { Dtype::Uint32 } else { x.dtype() };
        Ok(vec![(x.shape().to_vec(), dtype)])
    }
}

/// The array and the resolved axis to work along (`None`: the flattened array).
fn along(name: &'static str, x: &Array, axis: Option<isize>) -> Result<(Array, usize)> {
    match axis {
        None => Ok((ravel(x)?, 0)),
        Some(a) => Ok((x.clone(), normalize_axis(name, a, x.ndim())?)),
    }
}

/// Resolves a possibly negative `kth` against an axis of length `n`.
fn resolve_kth(name: &'static str, kth: isize, x: &Array, axis: usize) -> Result<usize> {
    let n = x.shape()[axis] as isize;
    let k = if kth < 0 { kth + n } else { kth };
    if k < 0 || k >= n {
        bail!(name, "kth {} is out of range for axis {} of shape {:?}", kth, axis, x.shape());
    }
    Ok(k as usize)
}

/// A sorted copy along `axis` (NaNs last).
pub fn sort(x: &Array, axis: Option<isize>) -> Result<Array> {
    let (x, axis) = along("sort", x, axis)?;
    Array::from_op(Op::Sort(SortOp::Sort { axis }), vec![x])
}

/// The uint32 indices that sort `x` along `axis`; equal elements keep their order.
pub fn argsort(x: &Array, axis: Option<isize>) -> Result<Array> {
    let (x, axis) = along("argsort", x, axis)?;
    Array::from_op(Op::Sort(SortOp::ArgSort { axis }), vec![x])
}

/// A copy partitioned along `axis` around element `kth` (negative counts from the end): it
/// holds the value sorting would put there, with no greater value before it and no smaller
/// one after. The order within each side is unspecified.
pub fn partition(x: &Array, kth: isize, axis: Option<isize>) -> Result<Array> {
    let (x, axis) = along("partition", x, axis)?;
    let kth = resolve_kth("partition", kth, &x, axis)?;
    Array::from_op(Op::Sort(SortOp::Partition { kth, axis }), vec![x])
}

/// The uint32 indices that partition `x` along `axis` (see [`partition`]).
pub fn argpartition(x: &Array, kth: isize, axis: Option<isize>) -> Result<Array> {
    let (x, axis) = along("argpartition", x, axis)?;
    let kth = resolve_kth("argpartition", kth, &x, axis)?;
    Array::from_op(Op::Sort(SortOp::ArgPartition { kth, axis }), vec![x])
}

/// The `k` largest elements along `axis`, as MLX: not necessarily in sorted order (they are
/// the last `k` elements of a partition).
pub fn topk(x: &Array, k: usize, axis: Option<isize>) -> Result<Array> {
    let (x, axis) = along("topk", x, axis)?;
    let n = x.shape()[axis];
    if k > n {
        bail!("topk", "k = {} is larger than axis {} of shape {:?}", k, axis, x.shape());
    }
    if k == n {
        return Ok(x);
    }
    let start = (n - k) as isize;
    let p = if k == 0 { x } else { partition(&x, start, Some(axis as isize))? };
    slice_axis(&p, axis as isize, Slice::new(Some(start), None, 1))
}
