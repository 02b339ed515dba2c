//! Ops for gathers, scatters, concatenation and padding.

use crate::array::Array;
use crate::op::{OutSpec, Primitive};
use crate::Result;

/// Primitives for gathers, scatters, concatenation and padding.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IndexOp {}

impl Primitive for IndexOp {
    fn name(&self) -> &'static str {
        match *self {}
    }

    fn infer(&self, _inputs: &[&Array]) -> Result<Vec<OutSpec>> {
        match *self {}
    }
}
