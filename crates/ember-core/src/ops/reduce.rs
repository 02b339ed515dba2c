//! Reductions and scans: `sum`, `prod`, `max`, `min`, `all`, `any`, `argmax`, `argmin`, the
//! cumulative `cumsum`, `cumprod`, `cummax`, `cummin`, and the composites `mean`, `var`, `std`,
//! `logsumexp`.
//!
//! Primitives keep reduced axes as size 1; the public functions drop them unless `keepdims`.
//! Output dtypes follow MLX: sums and products widen bool and small integers to 32 bits, means
//! and variances are floats, `all`/`any` give bool, arg-reductions give uint32.

use super::elementwise::{add, astype, divide, exp, isinf, log, sqrt, square, subtract, where_};
use super::layout::reshape_to;
use super::{normalize_axes, normalize_axis};
use crate::array::Array;
use crate::dtype::Dtype;
use crate::op::{Op, OutSpec, Primitive};
use crate::{bail, Result};

/// What a reduction folds with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceKind {
    Sum,
    Prod,
    Max,
    Min,
    All,
    Any,
}

/// Which extreme an arg-reduction looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArgKind {
    ArgMax,
    ArgMin,
}

/// What a scan accumulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScanKind {
    Sum,
    Prod,
    Max,
    Min,
}

/// Primitives for reductions and scans.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// Folds `axes` (sorted, distinct); the output keeps them with size 1.
    Reduce { kind: ReduceKind, axes: Vec<usize> },
    /// uint32 index of the extreme along `axis`, kept with size 1.
    ArgReduce { kind: ArgKind, axis: usize },
    /// Running fold along `axis`; same shape and dtype as the input.
    Scan { kind: ScanKind, axis: usize, reverse: bool, inclusive: bool },
}

impl ReduceKind {
    fn name(self) -> &'static str {
        match self {
            ReduceKind::Sum => "sum",
            ReduceKind::Prod => "prod",
            ReduceKind::Max => "max",
            ReduceKind::Min => "min",
            ReduceKind::All => "all",
            ReduceKind::Any => "any",
        }
    }

    /// MLX's result dtype for an input of `dtype`.
    pub fn out_dtype(self, dtype: Dtype) -> Dtype {
        use Dtype::*;
        match self {
            ReduceKind::Sum | ReduceKind::Prod => match dtype {
                Bool | Int8 | Int16 => Int32,
                Uint8 | Uint16 => Uint32,
                d => d,
            },
            ReduceKind::Max | ReduceKind::Min => dtype,
            ReduceKind::All | ReduceKind::Any => Bool,
        }
    }
}

impl ArgKind {
    fn name(self) -> &'static str {
        match self {
            ArgKind::ArgMax => "argmax",
            ArgKind::ArgMin => "argmin",
        }
    }
}

impl ScanKind {
    fn name(self) -> &'static str {
        match self {
            ScanKind::Sum => "cumsum",
            ScanKind::Prod => "cumprod",
            ScanKind::Max => "cummax",
            ScanKind::Min => "cummin",
        }
    }
}

impl Primitive for ReduceOp {
    fn name(&self) -> &'static str {
        match self {
            ReduceOp::Reduce { kind, .. } => kind.name(),
            ReduceOp::ArgReduce { kind, .. } => kind.name(),
            ReduceOp::Scan { kind, .. } => kind.name(),
        }
    }

    fn infer(&self, inputs: &[&Array]) -> Result<Vec<OutSpec>> {
        let x = inputs[0];
        let name = self.name();
        let check_axis = |a: usize| -> Result<()> {
            if a >= x.ndim() {
                bail!(name, "axis {} is out of bounds for array with {} dimensions", a, x.ndim());
            }
            Ok(())
        };
        let kept = |axes: &[usize]| -> Vec<usize> {
            let mut shape = x.shape().to_vec();
            axes.iter().for_each(|&a| shape[a] = 1);
            shape
        };
        Ok(vec![match self {
            ReduceOp::Reduce { kind, axes } => {
                axes.iter().try_for_each(|&a| check_axis(a))?;
                if matches!(kind, ReduceKind::Max | ReduceKind::Min) {
                    check_nonempty(name, x)?;
                }
                (kept(axes), kind.out_dtype(x.dtype()))
            }
            ReduceOp::ArgReduce { axis, .. } => {
                check_axis(*axis)?;
                check_nonempty(name, x)?;
                (kept(&[*axis]), Dtype::Uint32)
            }
            ReduceOp::Scan { axis, .. } => {
                check_axis(*axis)?;
                (x.shape().to_vec(), x.dtype())
            }
        }])
    }
}

/// MLX refuses extrema of empty arrays (there is no identity to return).
fn check_nonempty(name: &'static str, x: &Array) -> Result<()> {
    if x.size() == 0 {
        bail!(name, "cannot {} reduce zero size array of shape {:?}", name, x.shape());
    }
    Ok(())
}

/// The reduced axes: all of them for `None`, else normalised, distinct and sorted.
fn resolve_axes(name: &'static str, x: &Array, axes: Option<&[isize]>) -> Result<Vec<usize>> {
    let mut axes = match axes {
        None => (0..x.ndim()).collect(),
        Some(a) => normalize_axes(name, a, x.ndim())?,
    };
    axes.sort_unstable();
    Ok(axes)
}

/// `x`'s shape without `axes` (or with them as 1 when `keepdims`).
fn reduced_shape(x: &Array, axes: &[usize], keepdims: bool) -> Vec<usize> {
    let shape = x.shape().iter().enumerate();
    if keepdims {
        shape.map(|(i, &n)| if axes.contains(&i) { 1 } else { n }).collect()
    } else {
        shape.filter(|(i, _)| !axes.contains(i)).map(|(_, &n)| n).collect()
    }
}

fn reduce(kind: ReduceKind, x: &Array, axes: Option<&[isize]>, keepdims: bool) -> Result<Array> {
    let name = kind.name();
    if matches!(kind, ReduceKind::Max | ReduceKind::Min) {
        check_nonempty(name, x)?;
    }
    let axes = resolve_axes(name, x, axes)?;
    // Reducing only size-1 axes is a reshape (and a cast to the result dtype).
    let out = if axes.iter().all(|&a| x.shape()[a] == 1) {
        astype(x, kind.out_dtype(x.dtype()))?
    } else {
        Array::from_op(Op::Reduce(ReduceOp::Reduce { kind, axes: axes.clone() }), vec![x.clone()])?
    };
    reshape_to(&out, &reduced_shape(x, &axes, keepdims))
}

macro_rules! reductions {
    ($($(#[$m:meta])* $f:ident => $kind:ident),* $(,)?) => {$(
        $(#[$m])*
        ///
        /// `axes`: the axes to reduce (negative counts from the end), `None` for all of them;
        /// `keepdims` keeps them as size-1 axes.
        pub fn $f(x: &Array, axes: Option<&[isize]>, keepdims: bool) -> Result<Array> {
            reduce(ReduceKind::$kind, x, axes, keepdims)
        }
    )*};
}

reductions!(
    /// Sum of elements; bool, int8 and int16 give int32, uint8 and uint16 give uint32.
    sum => Sum,
    /// Product of elements, with `sum`'s dtypes.
    prod => Prod,
    /// Largest element (NaN if any is NaN). Errors on an empty array.
    max => Max,
    /// Smallest element (NaN if any is NaN). Errors on an empty array.
    min => Min,
    /// Whether every element is non-zero (bool; true for nothing).
    all => All,
    /// Whether any element is non-zero (bool; false for nothing).
    any => Any,
);

/// Number of elements each output of a reduction over `axes` folds, less `ddof` (at least 0),
/// as a 0-d array of `dtype`.
fn count(x: &Array, axes: &[usize], ddof: usize, dtype: Dtype) -> Result<Array> {
    let n: usize = axes.iter().map(|&a| x.shape()[a]).product();
    astype(&Array::scalar(n.saturating_sub(ddof) as f64), dtype)
}

/// Arithmetic mean; integer inputs give float32. The mean of nothing is NaN.
pub fn mean(x: &Array, axes: Option<&[isize]>, keepdims: bool) -> Result<Array> {
    let axes_v = resolve_axes("mean", x, axes)?;
    let s = astype(&sum(x, axes, keepdims)?, x.dtype().to_float())?;
    divide(&s, &count(x, &axes_v, 0, s.dtype())?)
}

/// Variance: the mean squared deviation from the mean, divided by `n - ddof` instead of `n`
/// (clamped at 0, so `ddof >= n` gives inf or NaN as MLX).
pub fn var(x: &Array, axes: Option<&[isize]>, keepdims: bool, ddof: usize) -> Result<Array> {
    let axes_v = resolve_axes("var", x, axes)?;
    let dtype = x.dtype().to_float();
    let x = astype(x, dtype)?;
    let mu = mean(&x, axes, true)?;
    let ss = sum(&square(&subtract(&x, &mu)?)?, axes, keepdims)?;
    divide(&ss, &count(&x, &axes_v, ddof, dtype)?)
}

/// Standard deviation: the square root of `var`.
pub fn std(x: &Array, axes: Option<&[isize]>, keepdims: bool, ddof: usize) -> Result<Array> {
    sqrt(&var(x, axes, keepdims, ddof)?)
}

/// `log(sum(exp(x)))` computed stably by shifting by the maximum; a slice whose maximum is
/// infinite gives that maximum (so all `-inf` gives `-inf`, not NaN). Errors on an empty array.
pub fn logsumexp(x: &Array, axes: Option<&[isize]>, keepdims: bool) -> Result<Array> {
    if x.size() == 0 {
        bail!("logsumexp", "received an empty array of shape {:?}", x.shape());
    }
    let axes_v = resolve_axes("logsumexp", x, axes)?;
    let x = astype(x, x.dtype().to_float())?;
    let m = max(&x, axes, true)?;
    let s = sum(&exp(&subtract(&x, &m)?)?, axes, keepdims)?;
    let m = reshape_to(&m, &reduced_shape(&x, &axes_v, keepdims))?;
    where_(&isinf(&m)?, &m, &add(&log(&s)?, &m)?)
}

fn arg_reduce(kind: ArgKind, x: &Array, axis: Option<isize>, keepdims: bool) -> Result<Array> {
    let name = kind.name();
    check_nonempty(name, x)?;
    // Without an axis, MLX reduces the flattened array and reports a flat index.
    let (input, axis, axes) = match axis {
        None => (reshape_to(x, &[x.size()])?, 0, (0..x.ndim()).collect()),
        Some(a) => {
            let a = normalize_axis(name, a, x.ndim())?;
            (x.clone(), a, vec![a])
        }
    };
    let out = Array::from_op(Op::Reduce(ReduceOp::ArgReduce { kind, axis }), vec![input])?;
    reshape_to(&out, &reduced_shape(x, &axes, keepdims))
}

/// Index (uint32) of the first largest element along `axis`, or in the flattened array for
/// `None`; a NaN counts as largest. Errors on an empty array.
pub fn argmax(x: &Array, axis: Option<isize>, keepdims: bool) -> Result<Array> {
    arg_reduce(ArgKind::ArgMax, x, axis, keepdims)
}

/// Index (uint32) of the first smallest element along `axis`, or in the flattened array for
/// `None`; a NaN counts as smallest. Errors on an empty array.
pub fn argmin(x: &Array, axis: Option<isize>, keepdims: bool) -> Result<Array> {
    arg_reduce(ArgKind::ArgMin, x, axis, keepdims)
}

fn scan(
    kind: ScanKind,
    x: &Array,
    axis: Option<isize>,
    reverse: bool,
    inclusive: bool,
) -> Result<Array> {
    let name = kind.name();
    // Without an axis, MLX scans the flattened array.
    let (x, axis) = match axis {
        None => (reshape_to(x, &[x.size()])?, 0),
        Some(a) => (x.clone(), normalize_axis(name, a, x.ndim())?),
    };
    let x = if kind == ScanKind::Sum && x.dtype() == Dtype::Bool {
        astype(&x, Dtype::Int32)?
    } else {
        x
    };
    Array::from_op(Op::Reduce(ReduceOp::Scan { kind, axis, reverse, inclusive }), vec![x])
}

macro_rules! scans {
    ($($(#[$m:meta])* $f:ident => $kind:ident),* $(,)?) => {$(
        $(#[$m])*
        ///
        /// `axis`: the axis to scan (negative counts from the end), `None` to scan the flattened
        /// array; `reverse` scans from the end; `inclusive: false` shifts by one, so the first
        /// result is the identity.
        pub fn $f(x: &Array, axis: Option<isize>, reverse: bool, inclusive: bool) -> Result<Array> {
            scan(ScanKind::$kind, x, axis, reverse, inclusive)
        }
    )*};
}

scans!(
    /// Cumulative sum; bool gives int32, other dtypes are kept.
    cumsum => Sum,
    /// Cumulative product.
    cumprod => Prod,
    /// Cumulative maximum (NaN propagates).
    cummax => Max,
    /// Cumulative minimum (NaN propagates).
    cummin => Min,
);
