//! CPU kernels dispatch for `FastOp`.

use crate::array::ReadyArray;
use crate::op::OutSpec;
use crate::ops::fast::FastOp;
use crate::Result;

pub fn eval(op: &FastOp, _inputs: &[ReadyArray], _outputs: &[OutSpec]) -> Result<Vec<ReadyArray>> {
    match *op {}
}
