//! Sorting ops on the CPU: one `ember-cpu` sort kernel per op, monomorphised per dtype.

use crate::array::{new_output, ReadyArray};
use crate::op::OutSpec;
use crate::ops::sort::SortOp;
use crate::{dispatch, Result};
use ember_cpu::sort as kernel;

pub fn eval(op: &SortOp, inputs: &[ReadyArray], _outputs: &[OutSpec]) -> Result<Vec<ReadyArray>> {
    let x = &inputs[0];
    let shape = &x.shape;
    let out = dispatch!(x.dtype, T => match *op {
        SortOp::Sort { axis } => new_output::<T>(shape, |o| {
            kernel::sort(o, x.view::<T>(), axis);
            Ok(())
        }),
        SortOp::ArgSort { axis } => new_output::<u32>(shape, |o| {
            kernel::argsort(o, x.view::<T>(), axis);
            Ok(())
        }),
        SortOp::Partition { kth, axis } => new_output::<T>(shape, |o| {
            kernel::partition(o, x.view::<T>(), axis, kth);
            Ok(())
        }),
        SortOp::ArgPartition { kth, axis } => new_output::<u32>(shape, |o| {
            kernel::argpartition(o, x.view::<T>(), axis, kth);
            Ok(())
        }),
    })?;
    Ok(vec![out])
}
