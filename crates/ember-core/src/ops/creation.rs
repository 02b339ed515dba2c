//! Array constructors: `zeros`, `ones`, `full`, `arange`, `linspace`, `eye`, `tri`, and the
//! triangle masks. Most are compositions of other ops; only `arange` has its own kernel.

use super::elementwise::{add, astype, greater_equal, multiply, where_};
use super::layout::{broadcast_to, contiguous, reshape_to};
use crate::array::Array;
use crate::dtype::Dtype;
use crate::op::{Op, F64};
use crate::{bail, Result};

/// An array of `shape` filled with `value` (converted to `dtype`).
pub fn full(shape: &[usize], value: &Array, dtype: Dtype) -> Result<Array> {
    contiguous(&broadcast_to(&astype(value, dtype)?, shape)?)
}

pub fn zeros(shape: &[usize], dtype: Dtype) -> Result<Array> {
    full(shape, &Array::scalar(0u8), dtype)
}

pub fn ones(shape: &[usize], dtype: Dtype) -> Result<Array> {
    full(shape, &Array::scalar(1u8), dtype)
}

pub fn zeros_like(x: &Array) -> Result<Array> {
    zeros(x.shape(), x.dtype())
}

pub fn ones_like(x: &Array) -> Result<Array> {
    ones(x.shape(), x.dtype())
}

pub fn full_like(x: &Array, value: &Array) -> Result<Array> {
    full(x.shape(), value, x.dtype())
}

/// Values `start, start + step, ...` below `stop` (above, for a negative step).
pub fn arange(start: f64, stop: f64, step: f64, dtype: Dtype) -> Result<Array> {
    if step == 0.0 || !step.is_finite() || !start.is_finite() || !stop.is_finite() {
        bail!("arange", "start {start}, stop {stop} and step {step} must be finite, step non-zero");
    }
    if dtype == Dtype::Bool {
        bail!("arange", "cannot compute a range of bool");
    }
    let len = ((stop - start) / step).ceil().max(0.0);
    if len > (1u64 << 48) as f64 {
        bail!("arange", "a range of {len} elements is too large");
    }
    Array::from_op(
        Op::Arange { start: F64(start), step: F64(step), len: len as usize, dtype },
        vec![],
    )
}

/// `num` evenly spaced values from `start` to `stop` inclusive.
pub fn linspace(start: f64, stop: f64, num: usize, dtype: Dtype) -> Result<Array> {
    if !dtype.is_float() && !dtype.is_integer() {
        bail!("linspace", "dtype {dtype} is not numeric");
    }
    let step = if num > 1 { (stop - start) / (num - 1) as f64 } else { 0.0 };
    let idx = arange(0.0, num as f64, 1.0, Dtype::Float64)?;
    let vals = add(&multiply(&idx, &Array::scalar(step))?, &Array::scalar(start))?;
    astype(&vals, dtype)
}

/// A mask (of `dtype`) that is 1 where `col <= row + k` for an `n x m` matrix.
pub fn tri(n: usize, m: usize, k: isize, dtype: Dtype) -> Result<Array> {
    let rows = reshape_to(&arange(k as f64, n as f64 + k as f64, 1.0, Dtype::Int64)?, &[n, 1])?;
    let cols = reshape_to(&arange(0.0, m as f64, 1.0, Dtype::Int64)?, &[1, m])?;
    astype(&greater_equal(&rows, &cols)?, dtype)
}

/// Ones on the `k`-th diagonal of an `n x m` matrix.
pub fn eye(n: usize, m: usize, k: isize, dtype: Dtype) -> Result<Array> {
    let rows = reshape_to(&arange(k as f64, n as f64 + k as f64, 1.0, Dtype::Int64)?, &[n, 1])?;
    let cols = reshape_to(&arange(0.0, m as f64, 1.0, Dtype::Int64)?, &[1, m])?;
    astype(&super::elementwise::equal(&rows, &cols)?, dtype)
}

pub fn identity(n: usize, dtype: Dtype) -> Result<Array> {
    eye(n, n, 0, dtype)
}

fn triangle(x: &Array, k: isize, lower: bool, name: &'static str) -> Result<Array> {
    if x.ndim() < 2 {
        bail!(name, "array must have at least 2 dimensions, got shape {:?}", x.shape());
    }
    let (n, m) = (x.shape()[x.ndim() - 2], x.shape()[x.ndim() - 1]);
    let zero = zeros(&[], x.dtype())?;
    if lower {
        where_(&tri(n, m, k, Dtype::Bool)?, x, &zero)
    } else {
        where_(&tri(n, m, k - 1, Dtype::Bool)?, &zero, x)
    }
}

/// Zeros the elements above the `k`-th diagonal of the last two axes.
pub fn tril(x: &Array, k: isize) -> Result<Array> {
    triangle(x, k, true, "tril")
}

/// Zeros the elements below the `k`-th diagonal of the last two axes.
pub fn triu(x: &Array, k: isize) -> Result<Array> {
    triangle(x, k, false, "triu")
}
