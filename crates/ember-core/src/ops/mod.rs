//! The public ops, one module per family. Each op validates its arguments, applies MLX's type
//! promotion, and records a node; nothing is computed until evaluation.

pub mod affine;
pub mod conv;
pub mod creation;
pub mod elementwise;
pub mod fast;
pub mod index;
pub mod layout;
pub mod linalg;
pub mod quantized;
pub mod random;
pub mod reduce;
pub mod sort;

pub use affine::{dequantize, quantize, quantized_matmul};
pub use conv::{conv1d, conv2d};
pub use creation::*;
pub use elementwise::{
    abs, add, arccos, arccosh, arcsin, arcsinh, arctan, arctan2, arctanh, astype, bitwise_and,
    bitwise_invert, bitwise_or, bitwise_xor, broadcast_arrays, ceil, clip, cos, cosh, divide,
    equal, erf, erfinv, exp, expm1, floor, floor_divide, greater, greater_equal, isfinite, isinf,
    isnan, isneginf, isposinf, left_shift, less, less_equal, log, log10, log1p, log2, logaddexp,
    logical_and, logical_not, logical_or, maximum, minimum, multiply, negative, not_equal, power,
    reciprocal, remainder, right_shift, round, rsqrt, sigmoid, sign, sin, sinh, sqrt, square,
    subtract, tan, tanh, where_,
};
pub use fast::softmax;
pub use index::{
    concatenate, pad, put_along_axis, repeat, scatter, scatter_add, scatter_add_axis, scatter_max,
    scatter_min, scatter_prod, slice_update, split, stack, take, take_along_axis, tile, PadMode,
    Sections,
};
pub use layout::{
    as_strided, atleast_nd, broadcast_to, contiguous, expand_dims, flatten, moveaxis, ravel,
    reshape, reshape_to, slice, slice_axis, squeeze, swapaxes, transpose, transpose_all, Slice,
};
pub use linalg::{addmm, inner, matmul, outer, tensordot};
pub use quantized::{
    dequantize_ggml, dequantize_rows_ggml, quantize_ggml, quantized_matmul_ggml,
    quantized_matmul_ggml_layout, quantized_matmul_ggml_parts,
};
pub use reduce::{
    all, any, argmax, argmin, cummax, cummin, cumprod, cumsum, logsumexp, max, mean, min, prod,
    std, sum, var,
};
pub use sort::{argpartition, argsort, partition, sort, topk};

use crate::{bail, Result};

/// NumPy broadcasting of two shapes.
pub fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i < n - a.len() { 1 } else { a[i - (n - a.len())] };
        let db = if i < n - b.len() { 1 } else { b[i - (n - b.len())] };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => bail!(op, "shapes {:?} and {:?} cannot be broadcast", a, b),
        };
    }
    Ok(out)
}

/// Resolves a possibly negative axis against `ndim`.
pub fn normalize_axis(op: &'static str, axis: isize, ndim: usize) -> Result<usize> {
    let n = ndim as isize;
    if axis < -n || axis >= n {
        bail!(op, "axis {} is out of bounds for array with {} dimensions", axis, ndim);
    }
    Ok(if axis < 0 { (axis + n) as usize } else { axis as usize })
}

/// Resolves several axes, rejecting repeats.
pub fn normalize_axes(op: &'static str, axes: &[isize], ndim: usize) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let a = normalize_axis(op, a, ndim)?;
        if out.contains(&a) {
            bail!(op, "repeated axis {} in {:?}", a, axes);
        }
        out.push(a);
    }
    Ok(out)
}
