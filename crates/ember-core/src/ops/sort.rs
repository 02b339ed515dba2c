//! Ops for sorting, partitioning and top-k.

use crate::array::Array;
use crate::op::{OutSpec, Primitive};
use crate::Result;

/// Primitives for sorting, partitioning and top-k.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SortOp {}

impl Primitive for SortOp {
    fn name(&self) -> &'static str {
        match *self {}
    }

    fn infer(&self, _inputs: &[&Array]) -> Result<Vec<OutSpec>> {
        match *self {}
    }
}
