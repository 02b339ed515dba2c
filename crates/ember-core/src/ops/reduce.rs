//! Ops for reductions and scans.

use crate::array::Array;
use crate::op::{OutSpec, Primitive};
use crate::Result;

/// Primitives for reductions and scans.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {}

impl Primitive for ReduceOp {
    fn name(&self) -> &'static str {
        match *self {}
    }

    fn infer(&self, _inputs: &[&Array]) -> Result<Vec<OutSpec>> {
        match *self {}
    }
}
