//! Rules of the quantized ops: the product is differentiable in the activations (the
//! transposed product with the dequantized weights); the packed weights have no gradient,
//! which is an error as in MLX.

use crate::array::Array;
use crate::io::gguf::GgmlType;
use crate::ops::quantized::{
    dequantize_rows_ggml, quantized_matmul_ggml_parts, GgmlLayout, QuantizedOp,
};
use crate::ops::{concatenate, dequantize_ggml, matmul};
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
            // y = x W^T, so dx = cot W (W the parts stacked).
            (QuantizedOp::GgmlMatmul { ty, layout }, 0) => {
                let parts = inputs[1..]
                    .iter()
                    .map(|w| dequantized(w, *ty, *layout))
                    .collect::<Result<Vec<_>>>()?;
                matmul(cot, &concatenate(&parts.iter().collect::<Vec<_>>(), 0)?)
            }
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
        (QuantizedOp::GgmlMatmul { ty, layout }, [tx, weights @ ..])
            if weights.iter().all(Option::is_none) =>
        {
            match tx {
                Some(t) => quantized_matmul_ggml_parts(t, &inputs[1..], *ty, *layout),
                None => crate::ops::zeros_like(y),
            }
        }
        _ => no_weight_gradient(op),
    }
}

/// The whole matrix `w` as float32, in either layout.
fn dequantized(w: &Array, ty: GgmlType, layout: GgmlLayout) -> Result<Array> {
    match layout {
        GgmlLayout::Rows => dequantize_ggml(w, ty),
        GgmlLayout::Packed => {
            let rows = crate::ops::arange(0.0, w.shape()[0] as f64, 1.0, crate::Dtype::Uint32)?;
            dequantize_rows_ggml(w, &rows, ty, layout)
        }
    }
}

fn no_weight_gradient<T>(op: &QuantizedOp) -> Result<T> {
    if let QuantizedOp::GgmlQuantize { .. } = op {
        bail!("quantize", "no gradient through quantization to integer blocks");
    }
    bail!(crate::op::Primitive::name(op), "no gradient with respect to the quantized weights")
}
