//! Rules of sorting: `sort` and `partition` permute each line, so the cotangent is put back
//! where each element came from and the tangent is read in the output's order (the
//! permutation is the matching `argsort`/`argpartition`). Index outputs have zero derivatives.

use crate::array::Array;
use crate::ops::sort::SortOp;
use crate::ops::{self, zeros_like};
use crate::Result;

/// Where each output element of `op` came from along its axis, or `None` for index outputs.
fn sources(op: &SortOp, x: &Array) -> Result<Option<(Array, isize)>> {
    Ok(match *op {
        SortOp::Sort { axis } => Some((ops::argsort(x, Some(axis as isize))?, axis as isize)),
        SortOp::Partition { kth, axis } => {
            Some((ops::argpartition(x, kth as isize, Some(axis as isize))?, axis as isize))
        }
        SortOp::ArgSort { .. } | SortOp::ArgPartition { .. } => None,
    })
}

pub(super) fn vjp(op: &SortOp, x: &Array, cot: &Array) -> Result<Array> {
    match sources(op, x)? {
        Some((idx, axis)) => ops::put_along_axis(&zeros_like(x)?, &idx, cot, Some(axis)),
        None => zeros_like(x),
    }
}

pub(super) fn jvp(op: &SortOp, x: &Array, y: &Array, t: &Array) -> Result<Array> {
    match sources(op, x)? {
        Some((idx, axis)) => ops::take_along_axis(t, &idx, Some(axis)),
        None => zeros_like(y),
    }
}
