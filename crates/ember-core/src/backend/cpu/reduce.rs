//! Reductions and scans on the CPU: a dtype dispatch onto `ember-cpu`'s reduce and scan kernels,
//! which read strided inputs directly (scans take a contiguous copy).

use super::layout::to_contiguous;
use crate::array::{new_output, ReadyArray};
use crate::dtype::Element;
use crate::op::OutSpec;
use crate::ops::reduce::{ArgKind, ReduceKind, ReduceOp, ScanKind};
use crate::{bail, dispatch, Result};
use ember_cpu::reduce::{self as kernels, Extreme, Largest, ReduceElem, Reducer, Smallest};
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
                    ArgKind::ArgMax => kernels::arg_reduce(out, view, *axis, Largest),
                    ArgKind::ArgMin => kernels::arg_reduce(out, view, *axis, Smallest),
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
    // Each arm passes its own closure, so each scan loop is compiled for its op; max and min
    // use NaN-propagating extremes that vectorise (see `ember_cpu::reduce::MinMax`).
    dispatch!(x.dtype, T => {
        type W = <T as ReduceElem>::Wide;
        match kind {
            ScanKind::Sum => scan_as::<T>(&x, axis, order, W::zero(), |a: W, b| a.add(b)),
            ScanKind::Prod => scan_as::<T>(&x, axis, order, W::one(), |a: W, b| a.mul(b)),
            ScanKind::Max => scan_as::<T>(&x, axis, order, W::lowest(), |a, b| Largest.pick(a, b)),
            ScanKind::Min => {
                scan_as::<T>(&x, axis, order, W::highest(), |a, b| Smallest.pick(a, b))
            }
        }
    })
}

fn scan_as<T: Element + ReduceElem>(
    x: &ReadyArray,
    axis: usize,
    order: ScanOrder,
    init: T::Wide,
    op: impl Fn(T::Wide, T::Wide) -> T::Wide + Sync + Copy,
) -> Result<ReadyArray> {
    let n = x.shape[axis];
    let inner: usize = x.shape[axis + 1..].iter().product();
    let src = &x.elements::<T>()[x.offset..x.offset + x.size()];
    new_output::<T>(&x.shape, |out| {
        scan_kernel(out, src, n, inner, order, init, op);
        Ok(())
    })
}
