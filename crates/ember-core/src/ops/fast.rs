//! Ops for fused fast ops (rms_norm, layer_norm, rope, scaled_dot_product_attention, softmax).

use crate::array::Array;
use crate::op::{OutSpec, Primitive};
use crate::Result;

/// Primitives for fused fast ops (rms_norm, layer_norm, rope, scaled_dot_product_attention, softmax).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FastOp {}

impl Primitive for FastOp {
    fn name(&self) -> &'static str {
        match *self {}
    }

    fn infer(&self, _inputs: &[&Array]) -> Result<Vec<OutSpec>> {
        match *self {}
    }
}
