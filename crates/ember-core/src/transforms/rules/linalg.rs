//! Rules of the matrix product. Batch axes broadcast, so each cotangent is summed back to its
//! input's batch shape.

use super::{sum_terms, unbroadcast};
use crate::array::Array;
use crate::ops::linalg::LinalgOp;
use crate::ops::{matmul, swapaxes};
use crate::Result;

pub(super) fn vjp(
    op: &LinalgOp,
    inputs: &[Array],
    cot: &Array,
    argnums: &[usize],
) -> Result<Vec<Array>> {
    let LinalgOp::Matmul = op;
    let (a, b) = (&inputs[0], &inputs[1]);
    argnums
        .iter()
        .map(|&i| {
            // (m, n) x (k, n)^T gives (m, k); (m, k)^T x (m, n) gives (k, n).
            let g = match i {
                0 => matmul(cot, &swapaxes(b, -1, -2)?)?,
                _ => matmul(&swapaxes(a, -1, -2)?, cot)?,
            };
            unbroadcast(&g, inputs[i].shape())
        })
        .collect()
}

pub(super) fn jvp(
    op: &LinalgOp,
    inputs: &[Array],
    y: &Array,
    tangents: &[Option<Array>],
) -> Result<Array> {
    let LinalgOp::Matmul = op;
    let mut terms = Vec::new();
    if let Some(ta) = &tangents[0] {
        terms.push(matmul(ta, &inputs[1])?);
    }
    if let Some(tb) = &tangents[1] {
        terms.push(matmul(&inputs[0], tb)?);
    }
    sum_terms(terms, y)
}
