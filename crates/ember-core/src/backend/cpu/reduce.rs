//! Reductions and scans on the CPU: a dtype dispatch onto `ember-cpu`'s reduce and scan kernels,
//! which read strided inputs directly (scans take a contiguous copy).

use super::layout::to_contiguous;
use crate::array::{new_output, ReadyArray};
use crate::dtype::Element;
use crate::op::OutSpec;
use crate::ops::reduce::{ArgKind, ReduceKind, ReduceOp, ScanKind};
use crate::{bail, dispatch, Result};
use ember_cpu::reduce::{self as kernels, ReduceElem, Reducer};
use ember_cpu::scan::{scan as scan_kernel, ScanOrder};
use ember_cpu::Scalar;

pub fn eval(op: &ReduceOp, inputs: &[ReadyArray], outputs: &[OutSpec]) -> Result<Vec<ReadyArray>> {
    let x = &inputs[0];
    let (shape, dtype) = &outputs[0];
    let out = match op {
        ReduceOp::Reduce { kind, axes } => {
            let reduced: Vec<bool> = (0..x.shape.len()).map(|d| axes.contains(&d)).collect();
            dispatch!(x.dtype, T => match kind {
                ReduceKind::Sum => reduce::<T, _>(x, &reduced, shape, kernels::Sum),
                ReduceKind::Prod => reduce::<T, _>(x, &reduced, shape, kernels::Prod),
                ReduceKind::Max => reduce::<T, _>(x, &reduced, shape, kernels::Max),
                ReduceKind::Min => reduce::<T, _>(x, &reduced, shape, kernels::Min),
                ReduceKind::All => reduce::<T, _>(x, &reduced, shape, kernels::All),
                ReduceKind::Any => reduce::<T, _>(x, &reduced, shape, kernels::Any),
            })?
        }
        ReduceOp::ArgReduce { kind, axis } => dispatch!(x.dtype, T => {
            let view = x.view::<T>();
            new_output::<u32>(shape, |out| {
                match kind {
                    ArgKind::ArgMax => kernels::arg_reduce(out, view, *axis, kernels::Largest),
                    ArgKind::ArgMin => kernels::arg_reduce(out, view, *axis, kernels::Smallest),
                }
                Ok(())
            })?
        }),
        ReduceOp::Scan { kind, axis, reverse, inclusive } => {
            let order = ScanOrder { reverse: *reverse, inclusive: *inclusive };
            scan(*kind, x, *axis, order)?
        }
    };
    if out.dtype != *dtype {
        bail!("eval", "reduction produced {} where {} was inferred", out.dtype, dtype);
    }
    Ok(vec![out])
}

fn reduce<T, R>(x: &ReadyArray, reduced: &[bool], shape: &[usize], r: R) -> Result<ReadyArray>
where
    T: Element + ReduceElem,
    R: Reducer<T>,
    R::Out: Element,
{
    new_output::<R::Out>(shape, |out| {
        kernels::reduce(out, x.view::<T>(), reduced, r);
        Ok(())
    })
}

fn scan(kind: ScanKind, x: &ReadyArray, axis: usize, order: ScanOrder) -> Result<ReadyArray> {
    let x = to_contiguous(x)?;
    let n = x.shape[axis];
    let inner: usize = x.shape[axis + 1..].iter().product();
    dispatch!(x.dtype, T => new_output::<T>(&x.shape, |out| {
        type W = <T as ReduceElem>::Wide;
        let src = &x.elements::<T>()[x.offset..x.offset + x.size()];
        match kind {
            ScanKind::Sum => scan_kernel(out, src, n, inner, order, W::zero(), |a: W, b: W| a.add(b)),
            ScanKind::Prod => scan_kernel(out, src, n, inner, order, W::one(), |a: W, b: W| a.mul(b)),
            ScanKind::Max => scan_kernel(out, src, n, inner, order, W::lowest(), |a: W, b: W| a.max_nan(b)),
            ScanKind::Min => scan_kernel(out, src, n, inner, order, W::highest(), |a: W, b: W| a.min_nan(b)),
        }
        Ok(())
    }))
}
