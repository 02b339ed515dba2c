//! Indexing ops on the CPU. Index values are resolved (negatives wrapped) and bounds checked:
//! an out-of-range index makes the op return an error. `take` reads its indices directly; the
//! other ops resolve them first. Pure data movement runs on same-sized unsigned integers, so
//! those kernels exist once per element width rather than once per dtype.

use super::dispatch_int;
use super::layout::to_contiguous;
use crate::array::{contiguous_strides, new_output, typed, ReadyArray};
use crate::dtype::{Dtype, Element};
use crate::op::OutSpec;
use crate::ops::index::{IndexOp, PadMode, ScatterMode};
use crate::{bail, dispatch, Error, Result};
use ember_cpu::index as kernel;
use ember_cpu::strided::map1;
use ember_cpu::{Scalar, View};

/// Runs `$body` with `$T` bound to the unsigned integer as wide as `$dtype`'s elements.
macro_rules! dispatch_width {
    ($dtype:expr, $T:ident => $body:expr) => {{
        match $dtype.size() {
            1 => {
                type $T = u8;
                $body
            }
            2 => {
                type $T = u16;
                $body
            }
            4 => {
                type $T = u32;
                $body
            }
            _ => {
                type $T = u64;
                $body
            }
        }
    }};
}

/// `x`'s elements as the same-sized unsigned integers `T` (bits unchanged).
fn bits<T: Element>(x: &ReadyArray) -> View<'_, T> {
    debug_assert_eq!(x.dtype.size(), std::mem::size_of::<T>());
    View::new(typed::<T>(&x.buffer), &x.shape, &x.strides, x.offset)
}

/// A contiguous output of `dtype` filled through its bits as `T`.
fn bits_output<T: Element>(
    dtype: Dtype,
    shape: &[usize],
    fill: impl FnOnce(&mut [T]) -> Result<()>,
) -> Result<ReadyArray> {
    debug_assert_eq!(dtype.size(), std::mem::size_of::<T>());
    let mut out = new_output::<T>(shape, fill)?;
    out.dtype = dtype;
    Ok(out)
}

fn out_of_bounds(op: &'static str, index: i128, axis: usize, n: usize) -> Error {
    Error::op(op, format!("index {index} is out of bounds for axis {axis} with size {n}"))
}

/// The index values of `idx` for an axis of length `n`, in row-major order.
fn resolve(op: &'static str, idx: &ReadyArray, axis: usize, n: usize) -> Result<Vec<usize>> {
    dispatch_int!(idx.dtype, I => kernel::resolve_indices(idx.view::<I>(), n)
        .map_err(|v| out_of_bounds(op, v, axis, n)))
}

pub fn eval(
    op: &IndexOp,
    inputs: &mut [ReadyArray],
    outputs: &[OutSpec],
) -> Result<Vec<ReadyArray>> {
    let name = crate::op::Primitive::name(op);
    let (shape, dtype) = (&outputs[0].0, outputs[0].1);
    if let (IndexOp::SliceUpdate { start, step }, [x, upd]) = (op, &mut *inputs) {
        return Ok(vec![slice_update(x, upd, start, step, shape)?]);
    }
    let x = &inputs[0];
    let out = match op {
        IndexOp::Take { axis } => {
            let idx = to_contiguous(&inputs[1])?;
            let n = x.shape[*axis];
            dispatch_int!(idx.dtype, I => {
                let idx = &idx.elements::<I>()[idx.offset..idx.offset + idx.size()];
                dispatch_width!(dtype, T => bits_output::<T>(dtype, shape, |out| {
                    kernel::take(out, bits::<T>(x), *axis, idx)
                        .map_err(|v| out_of_bounds(name, v, *axis, n))
                }))?
            })
        }
        IndexOp::TakeAlongAxis { axis } => {
            let idx = resolve(name, &inputs[1], *axis, x.shape[*axis])?;
            dispatch_width!(dtype, T => bits_output::<T>(dtype, shape, |out| {
                kernel::take_along_axis(out, shape, bits::<T>(x), *axis, &idx);
                Ok(())
            }))?
        }
        IndexOp::ScatterAxis { axis, mode } => {
            let idx = resolve(name, &inputs[1], *axis, x.shape[*axis])?;
            let upd = &inputs[2];
            dispatch!(dtype, T => new_output::<T>(shape, |out| {
                map1(out, x.view::<T>(), |v| v);
                kernel::scatter_along_axis(out, shape, upd.view::<T>(), *axis, &idx, combine(*mode));
                Ok(())
            }))?
        }
        IndexOp::Scatter { axes, mode } => scatter(name, inputs, axes, *mode)?,
        IndexOp::SliceUpdate { .. } => unreachable!("handled above"),
        IndexOp::Concatenate { axis } => dispatch_width!(dtype, T => {
            let parts: Vec<View<'_, T>> = inputs.iter().map(bits::<T>).collect();
            bits_output::<T>(dtype, shape, |out| {
                kernel::concatenate(out, &parts, *axis);
                Ok(())
            })?
        }),
        IndexOp::Pad { low, mode, .. } => dispatch_width!(dtype, T => {
            let value = match mode {
                PadMode::Constant => Some(bits::<T>(&inputs[1]).data[inputs[1].offset]),
                PadMode::Edge => None,
            };
            bits_output::<T>(dtype, shape, |out| {
                kernel::pad(out, shape, bits::<T>(x), low, value);
                Ok(())
            })?
        }),
    };
    Ok(vec![out])
}

/// `x` with the region at `start` (steps `step`) replaced by `upd` (already of the region's
/// shape). A donated `x` is written in place, so a preallocated KV cache filled one token at
/// a time is never copied whole.
fn slice_update(
    x: &mut ReadyArray,
    upd: &ReadyArray,
    start: &[usize],
    step: &[isize],
    shape: &[usize],
) -> Result<ReadyArray> {
    let strides = contiguous_strides(shape);
    let offset: isize = start.iter().zip(&strides).map(|(&s, &k)| s as isize * k).sum();
    let region: Vec<isize> = strides.iter().zip(step).map(|(&k, &s)| k * s).collect();
    let dtype = x.dtype;
    let done = dispatch!(dtype, T => match x.donatable::<T>(shape) {
        Some(data) => {
            kernel::write_view(data, &region, offset as usize, upd.view::<T>());
            true
        }
        None => false,
    });
    if done {
        return Ok(x.clone());
    }
    dispatch_width!(dtype, T => bits_output::<T>(dtype, shape, |out| {
        map1(out, bits::<T>(x), |v| v);
        kernel::write_view(out, &region, offset as usize, bits::<T>(upd));
        Ok(())
    }))
}

/// How a scatter mode combines the old value with an update.
fn combine<T: Scalar>(mode: ScatterMode) -> fn(T, T) -> T {
    match mode {
        ScatterMode::Set => |_, u| u,
        ScatterMode::Add => T::add,
        ScatterMode::Prod => T::mul,
        ScatterMode::Max => T::max_nan,
        ScatterMode::Min => T::min_nan,
    }
}

fn scatter(
    name: &'static str,
    inputs: &[ReadyArray],
    axes: &[usize],
    mode: ScatterMode,
) -> Result<ReadyArray> {
    let x = &inputs[0];
    let upd = to_contiguous(&inputs[inputs.len() - 1])?;
    let slice_shape = &upd.shape[upd.shape.len() - x.shape.len()..];
    let mut idx = Vec::with_capacity(axes.len());
    for (i, &a) in inputs[1..inputs.len() - 1].iter().zip(axes) {
        let (n, fit) = (x.shape[a], slice_shape[a]);
        let resolved = resolve(name, i, a, n)?;
        if let Some(&bad) = resolved.iter().find(|&&k| k + fit > n) {
            bail!(
                name,
                "an update slice of size {fit} at index {bad} overruns axis {a} of size {n}"
            );
        }
        idx.push(resolved);
    }
    dispatch!(x.dtype, T => new_output::<T>(&x.shape, |out| {
        map1(out, x.view::<T>(), |v| v);
        let u = &upd.elements::<T>()[upd.offset..upd.offset + upd.size()];
        kernel::scatter(out, &x.shape, &idx, axes, u, slice_shape, combine(mode));
        Ok(())
    }))
}
