//! Rules of the quantized ops: the product is differentiable in the activations (the
//! transposed product with the dequantized weights); the packed weights have no gradient,
//! which is an error as in MLX.

use crate::array::Array;
use crate::ops::quantized::QuantizedOp;
use crate::ops::{dequantize_ggml, matmul, quantized_matmul_ggml};
use crate::{bail, Result};

pub(super) fn vjp(
    op: &QuantizedOp,
    inputs: &[Array],
    cot: &Array,
    argnums: &[usize],
) -> Result<Vec<Array>> {
    argnums
        .iter()
        .map(|&i| match (op, i) {
            // y = x W^T, so dx = cot W.
            (QuantizedOp::GgmlMatmul { ty }, 0) => matmul(cot, &dequantize_ggml(&inputs[1], *ty)?),
            _ => no_weight_gradient(op),
        })
        .collect()
}

pub(super) fn jvp(
    op: &QuantizedOp,
    inputs: &[Array],
    y: &Array,
    tangents: &[Option<Array>],
) -> Result<Array> {
    match (op, tangents) {
        (QuantizedOp::GgmlMatmul { ty }, [tx, None]) => match tx {
            Some(t) => quantized_matmul_ggml(t, &inputs[1], *ty),
            None => crate::ops::zeros_like(y),
        },
        _ => no_weight_gradient(op),
    }
}

fn no_weight_gradient<T>(op: &QuantizedOp) -> Result<T> {
    bail!(crate::op::Primitive::name(op), "no gradient with respect to the quantized weights")
}
