//! Convolutions on the CPU: contiguous operands into `ember_cpu::conv`.

use super::dispatch_float;
use super::layout::to_contiguous;
use crate::array::{new_output, ReadyArray};
use crate::op::OutSpec;
use crate::ops::conv::ConvOp;
use crate::Result;
use ember_cpu::conv::conv2d;

pub fn eval(op: &ConvOp, inputs: &[ReadyArray], outputs: &[OutSpec]) -> Result<Vec<ReadyArray>> {
    let (x, w) = (to_contiguous(&inputs[0])?, to_contiguous(&inputs[1])?);
    let shape = op.geometry(&x.shape, &w.shape);
    let out = dispatch_float!(x.dtype, T => new_output::<T>(&outputs[0].0, |out| {
        let xd = &x.elements::<T>()[x.offset..];
        let wd = &w.elements::<T>()[w.offset..];
        conv2d(out, xd, wd, &shape);
        Ok(())
    }))?;
    Ok(vec![out])
}
