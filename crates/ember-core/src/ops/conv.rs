//! Ops for convolutions.

use crate::array::Array;
use crate::op::{OutSpec, Primitive};
use crate::Result;

/// Primitives for convolutions.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConvOp {}

impl Primitive for ConvOp {
    fn name(&self) -> &'static str {
        match *self {}
    }

    fn infer(&self, _inputs: &[&Array]) -> Result<Vec<OutSpec>> {
        match *self {}
    }
}
