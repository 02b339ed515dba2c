//! Rules of affine quantization, as MLX's: the product is differentiable in the activations
//! (the product with the other orientation) and in the scales and biases (each the group
//! sum of the weight's gradient, times the codes for the scales), dequantization in the
//! scales and biases; the codes have no gradient, which is an error, and quantization's
//! gradient is zero.

use super::sum_terms;
use crate::array::Array;
use crate::op::Primitive;
use crate::ops::affine::{dequantize, quantized_matmul, AffineOp};
use crate::ops::{self, matmul, ones_like, reshape_to, swapaxes, zeros_like};
use crate::{bail, Result};

pub(super) fn vjp(
    op: &AffineOp,
    inputs: &[Array],
    cot: &Array,
    argnums: &[usize],
) -> Result<Vec<Array>> {
    argnums
        .iter()
        .map(|&i| match (*op, i) {
            (AffineOp::Quantize { .. }, _) => zeros_like(&inputs[0]),
            (AffineOp::Dequantize { group_size, bits }, 1 | 2) => {
                group_grad(cot, &inputs[0], &inputs[1], (group_size, bits), i == 1)
            }
            (AffineOp::Matmul { group_size, bits, transpose }, 0) => {
                let [_, w, s, b] = inputs else { bail!(op.name(), "expected four inputs") };
                quantized_matmul(cot, w, s, b, !transpose, group_size, bits)
            }
            (AffineOp::Matmul { group_size, bits, transpose }, 2 | 3) => {
                let (x, w) = (&inputs[0], &inputs[1]);
                let (m_x, m_c) = (rows(x)?, rows(cot)?);
                // The gradient of W (as stored: rows along its first axis).
                let dw = if transpose {
                    matmul(&swapaxes(&m_c, 0, 1)?, &m_x)?
                } else {
                    matmul(&swapaxes(&m_x, 0, 1)?, &m_c)?
                };
                group_grad(&dw, w, &inputs[2], (group_size, bits), i == 2)
            }
            _ => bail!(op.name(), "no gradient with respect to the quantized weights"),
        })
        .collect()
}

pub(super) fn jvp(
    op: &AffineOp,
    inputs: &[Array],
    outputs: &[Array],
    tangents: &[Option<Array>],
) -> Result<Vec<Array>> {
    // `transpose` is `Some` for the product, whose codes are its second input.
    let (group_size, bits, transpose) = match *op {
        AffineOp::Quantize { .. } => return outputs.iter().map(zeros_like).collect(),
        AffineOp::Dequantize { group_size, bits } => (group_size, bits, None),
        AffineOp::Matmul { group_size, bits, transpose } => (group_size, bits, Some(transpose)),
    };
    let at = usize::from(transpose.is_some());
    let (w, s) = (&inputs[at], &inputs[at + 1]);
    if tangents[at].is_some() {
        bail!(op.name(), "no derivative with respect to the quantized weights");
    }
    // Linear in the scales and biases: the matrix their tangents make.
    let (ts, tb) = (&tangents[at + 1], &tangents[at + 2]);
    let dw = match (ts, tb) {
        (None, None) => None,
        _ => {
            let or_zeros = |t: &Option<Array>| t.clone().map_or_else(|| zeros_like(s), Ok);
            Some((or_zeros(ts)?, or_zeros(tb)?))
        }
    };
    let tangent = match transpose {
        None => match dw {
            Some((ts, tb)) => dequantize(w, &ts, &tb, group_size, bits)?,
            None => zeros_like(&outputs[0])?,
        },
        Some(transpose) => {
            let mut terms = Vec::new();
            if let Some(tx) = &tangents[0] {
                terms.push(quantized_matmul(tx, w, s, &inputs[3], transpose, group_size, bits)?);
            }
            if let Some((ts, tb)) = dw {
                let m = dequantize(w, &ts, &tb, group_size, bits)?;
                let m = if transpose { swapaxes(&m, 0, 1)? } else { m };
                terms.push(matmul(&inputs[0], &m)?.astype(outputs[0].dtype())?);
            }
            sum_terms(terms, &outputs[0])?
        }
    };
    Ok(vec![tangent])
}

/// `x` as a matrix of its last axis by all others.
fn rows(x: &Array) -> Result<Array> {
    let k = x.shape()[x.ndim() - 1];
    reshape_to(x, &[x.size() / k.max(1), k])
}

/// The gradient of the scales (`wrt_scales`) or the biases from the gradient `dw` of the
/// values `s * q + b` of the quantized matrix `w`: per group, the sum of `dw * q` or of `dw`.
fn group_grad(
    dw: &Array,
    w: &Array,
    scales: &Array,
    (group_size, bits): (usize, usize),
    wrt_scales: bool,
) -> Result<Array> {
    let mut grouped = scales.shape().to_vec();
    grouped.push(group_size);
    let dw = reshape_to(dw, &grouped)?;
    let terms = if wrt_scales {
        let codes = dequantize(w, &ones_like(scales)?, &zeros_like(scales)?, group_size, bits)?;
        ops::multiply(&dw, &reshape_to(&codes, &grouped)?)?
    } else {
        dw
    };
    ops::sum(&terms, Some(&[-1]), false)?.astype(scales.dtype())
}
