//! Batching rules of affine quantization. Quantize and dequantize act on the last axis and
//! keep leading ones, so a batch axis moved first is more rows; the product takes a batch
//! of activations as more rows, and a batch of matrices one element at a time (its kernels
//! take one 2-d matrix).

use super::{all_front, first_batched, per_element, Batched};
use crate::op::Op;
use crate::ops::affine::AffineOp;
use crate::Result;

pub(super) fn vmap(op: &AffineOp, inputs: &[Batched], size: usize) -> Result<Vec<Batched>> {
    let whole = Op::Affine(*op);
    match op {
        AffineOp::Quantize { .. } => first_batched(whole, inputs, size),
        AffineOp::Dequantize { .. } => all_front(whole, inputs, size),
        AffineOp::Matmul { .. } if inputs[1..].iter().all(|(_, ax)| ax.is_none()) => {
            first_batched(whole, inputs, size)
        }
        AffineOp::Matmul { .. } => per_element(&whole, inputs, size),
    }
}
