//! Gathers, scatters, concatenation, splitting, tiling and padding.
//!
//! Primitives: `take`, `take_along_axis`, the scatters (`put_along_axis`, MLX's C++-style
//! `scatter*`), `slice_update`, `concatenate` and `pad`. `stack`, `split`, `tile` and `repeat`
//! are compositions of views and these.
//!
//! Index values are checked when the graph is evaluated: negative indices count from the end
//! of their axis (as in MLX) and an index outside its axis makes evaluation return an error
//! naming the op (MLX leaves that undefined). Indices must have an integer dtype.

use super::creation::zeros;
use super::elementwise::astype;
use super::layout::{broadcast_to, expand_dims, ravel, reshape_to, slice_axis, Slice};
use super::{broadcast_shapes, normalize_axes, normalize_axis};
use crate::array::Array;
use crate::dtype::promote_types;
use crate::op::{Op, OutSpec, Primitive};
use crate::{bail, Result};

/// How a scatter combines an update with the value already in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScatterMode {
    /// Overwrite (with repeated indices, the last update wins).
    Set,
    Add,
    Prod,
    Max,
    Min,
}

/// What fills the border added by [`pad`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PadMode {
    /// The given constant value.
    Constant,
    /// The nearest element of the array's edge.
    Edge,
}

/// Indexing primitives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IndexOp {
    /// Inputs `[x, indices]`: output `x.shape[..axis] + indices.shape + x.shape[axis+1..]`.
    Take { axis: usize },
    /// Inputs `[x, indices]` with equal shapes except on `axis`: output `indices.shape`.
    TakeAlongAxis { axis: usize },
    /// Inputs `[x, indices, updates]`: indices and updates share a shape equal to `x`'s except
    /// on `axis`.
    ScatterAxis { axis: usize, mode: ScatterMode },
    /// MLX's scatter. Inputs `[x, idx_0, .., idx_k-1, updates]`: the index arrays share one
    /// shape `S`, updates have shape `S + slice` with `slice.len() == x.ndim()`.
    Scatter { axes: Vec<usize>, mode: ScatterMode },
    /// Inputs `[src, update]`: `update` is written at `start + i * step` along each axis.
    SliceUpdate { start: Vec<usize>, step: Vec<isize> },
    /// Inputs share a dtype and their shapes except on `axis`.
    Concatenate { axis: usize },
    /// Inputs `[x, value]` (`value` 0-d of x's dtype): `low`/`high` elements added per axis.
    Pad { low: Vec<usize>, high: Vec<usize>, mode: PadMode },
}

impl ScatterMode {
    fn scatter_name(self) -> &'static str {
        match self {
            ScatterMode::Set => "scatter",
            ScatterMode::Add => "scatter_add",
            ScatterMode::Prod => "scatter_prod",
            ScatterMode::Max => "scatter_max",
            ScatterMode::Min => "scatter_min",
        }
    }

    fn axis_name(self) -> &'static str {
        match self {
            ScatterMode::Set => "put_along_axis",
            ScatterMode::Add => "scatter_add_axis",
            ScatterMode::Prod => "scatter_prod_axis",
            ScatterMode::Max => "scatter_max_axis",
            ScatterMode::Min => "scatter_min_axis",
        }
    }
}

impl Primitive for IndexOp {
    fn name(&self) -> &'static str {
        match self {
            IndexOp::Take { .. } => "take",
            IndexOp::TakeAlongAxis { .. } => "take_along_axis",
            IndexOp::ScatterAxis { mode, .. } => mode.axis_name(),
            IndexOp::Scatter { mode, .. } => mode.scatter_name(),
            IndexOp::SliceUpdate { .. } => "slice_update",
            IndexOp::Concatenate { .. } => "concatenate",
            IndexOp::Pad { .. } => "pad",
        }
    }

    fn infer(&self, inputs: &[&Array]) -> Result<Vec<OutSpec>> {
        let name = self.name();
        let arity = match self {
            IndexOp::ScatterAxis { .. } => 3,
            IndexOp::Scatter { axes, .. } => axes.len() + 2,
            IndexOp::Concatenate { .. } => inputs.len().max(1),
            _ => 2,
        };
        if inputs.len() != arity {
            bail!(name, "takes {} inputs, got {}", arity, inputs.len());
        }
        let x = inputs[0];
        let shape = match self {
            IndexOp::Take { axis } => {
                check_axis(name, *axis, x.ndim())?;
                check_indices(name, inputs[1])?;
                let mut shape = x.shape()[..*axis].to_vec();
                shape.extend_from_slice(inputs[1].shape());
                shape.extend_from_slice(&x.shape()[axis + 1..]);
                shape
            }
            IndexOp::TakeAlongAxis { axis } => {
                let idx = inputs[1];
                check_axis(name, *axis, x.ndim())?;
                check_indices(name, idx)?;
                check_same_but_axis(name, x.shape(), idx.shape(), *axis)?;
                idx.shape().to_vec()
            }
            IndexOp::ScatterAxis { axis, .. } => {
                let (idx, upd) = (inputs[1], inputs[2]);
                check_axis(name, *axis, x.ndim())?;
                check_indices(name, idx)?;
                check_dtype(name, x, upd)?;
                if idx.shape() != upd.shape() {
                    bail!(name, "indices {:?} and updates {:?} differ", idx.shape(), upd.shape());
                }
                check_same_but_axis(name, x.shape(), idx.shape(), *axis)?;
                x.shape().to_vec()
            }
            IndexOp::Scatter { axes, .. } => {
                infer_scatter(name, inputs, axes)?;
                x.shape().to_vec()
            }
            IndexOp::SliceUpdate { start, step } => {
                infer_slice_update(x, inputs[1], start, step)?;
                x.shape().to_vec()
            }
            IndexOp::Concatenate { axis } => {
                check_axis(name, *axis, x.ndim())?;
                let mut shape = x.shape().to_vec();
                shape[*axis] = 0;
                for a in inputs {
                    check_dtype(name, x, a)?;
                    check_same_but_axis(name, x.shape(), a.shape(), *axis)?;
                    shape[*axis] += a.shape()[*axis];
                }
                shape
            }
            IndexOp::Pad { low, high, mode } => {
                let value = inputs[1];
                check_dtype(name, x, value)?;
                if value.ndim() != 0 || low.len() != x.ndim() || high.len() != x.ndim() {
                    bail!(name, "needs a 0-d value and {} (low, high) pairs", x.ndim());
                }
                check_pad(x.shape(), low, high, *mode)?;
                x.shape().iter().zip(low.iter().zip(high)).map(|(&n, (&l, &h))| n + l + h).collect()
            }
        };
        Ok(vec![(shape, x.dtype())])
    }
}

fn check_axis(name: &'static str, axis: usize, ndim: usize) -> Result<()> {
    if axis >= ndim {
        bail!(name, "axis {} is out of bounds for array with {} dimensions", axis, ndim);
    }
    Ok(())
}

/// Indices must be integers (bool and float indices are refused, as in MLX).
fn check_indices(name: &'static str, idx: &Array) -> Result<()> {
    if !idx.dtype().is_integer() {
        bail!(name, "indices must have an integer dtype, got {}", idx.dtype());
    }
    Ok(())
}

fn check_dtype(name: &'static str, x: &Array, other: &Array) -> Result<()> {
    if x.dtype() != other.dtype() {
        bail!(name, "inputs must share a dtype, got {} and {}", x.dtype(), other.dtype());
    }
    Ok(())
}

fn check_same_but_axis(name: &'static str, a: &[usize], b: &[usize], axis: usize) -> Result<()> {
    let same =
        a.len() == b.len() && a.iter().zip(b).enumerate().all(|(d, (x, y))| d == axis || x == y);
    if !same {
        bail!(name, "shapes {:?} and {:?} must match except on axis {}", a, b, axis);
    }
    Ok(())
}

fn check_pad(shape: &[usize], low: &[usize], high: &[usize], mode: PadMode) -> Result<()> {
    if mode == PadMode::Edge {
        for (d, &n) in shape.iter().enumerate() {
            if n == 0 && low[d] + high[d] > 0 {
                bail!("pad", "cannot edge-pad empty axis {} of an array of shape {:?}", d, shape);
            }
        }
    }
    Ok(())
}

fn infer_scatter(name: &'static str, inputs: &[&Array], axes: &[usize]) -> Result<()> {
    let (x, upd) = (inputs[0], inputs[inputs.len() - 1]);
    let idx = &inputs[1..inputs.len() - 1];
    for (k, &a) in axes.iter().enumerate() {
        check_axis(name, a, x.ndim())?;
        if axes[..k].contains(&a) {
            bail!(name, "repeated axis {} in {:?}", a, axes);
        }
    }
    let idx_shape = idx.first().map_or(&[][..], |i| i.shape());
    for i in idx {
        check_indices(name, i)?;
        if i.shape() != idx_shape {
            bail!(name, "index arrays of shapes {:?} and {:?} differ", idx_shape, i.shape());
        }
    }
    check_dtype(name, x, upd)?;
    check_scatter_updates(name, x.shape(), idx_shape, upd.shape())
}

/// MLX's rule: updates have shape `index_shape + slice`, the slice no larger than `x`.
fn check_scatter_updates(
    name: &'static str,
    x: &[usize],
    idx: &[usize],
    upd: &[usize],
) -> Result<()> {
    if upd.len() != x.len() + idx.len() {
        bail!(
            name,
            "updates of shape {:?} must have {} dimensions: index shape {:?} then one per \
             dimension of the array of shape {:?}",
            upd,
            x.len() + idx.len(),
            idx,
            x
        );
    }
    if &upd[..idx.len()] != idx {
        bail!(name, "update shape {:?} is not valid for broadcast index shape {:?}", upd, idx);
    }
    if upd[idx.len()..].iter().zip(x).any(|(u, n)| u > n) {
        bail!(name, "updates of shape {:?} are too large for array with shape {:?}", upd, x);
    }
    Ok(())
}

fn infer_slice_update(src: &Array, upd: &Array, start: &[usize], step: &[isize]) -> Result<()> {
    check_dtype("slice_update", src, upd)?;
    let nd = src.ndim();
    if upd.ndim() != nd || start.len() != nd || step.len() != nd {
        bail!("slice_update", "update {:?} does not match array {:?}", upd.shape(), src.shape());
    }
    for d in 0..nd {
        let (len, n) = (upd.shape()[d] as isize, src.shape()[d] as isize);
        let last = start[d] as isize + (len - 1) * step[d];
        if len > 0 && (start[d] as isize >= n || last < 0 || last >= n) {
            bail!("slice_update", "update {:?} does not fit array {:?}", upd.shape(), src.shape());
        }
    }
    Ok(())
}

/// Broadcasts shapes of equal length with `axis` left out (it is set to 1 in the result).
fn broadcast_except(name: &'static str, shapes: &[&[usize]], axis: usize) -> Result<Vec<usize>> {
    let mut out = vec![1usize; shapes[0].len()];
    for s in shapes {
        let mut s = s.to_vec();
        s[axis] = 1;
        match broadcast_shapes(name, &out, &s) {
            Ok(b) => out = b,
            Err(_) => bail!(name, "shapes {:?} do not broadcast outside axis {}", shapes, axis),
        }
    }
    Ok(out)
}

/// `shape` with `shape[axis] = n`.
fn with_axis(shape: &[usize], axis: usize, n: usize) -> Vec<usize> {
    let mut s = shape.to_vec();
    s[axis] = n;
    s
}

/// Elements of `x` at `indices` along `axis`; with `axis = None`, of the flattened `x`.
/// The result has shape `x.shape[..axis] + indices.shape + x.shape[axis+1..]`. Negative
/// indices count from the end; an out-of-range index makes evaluation fail.
pub fn take(x: &Array, indices: &Array, axis: Option<isize>) -> Result<Array> {
    check_indices("take", indices)?;
    let (x, axis) = match axis {
        None => (ravel(x)?, 0),
        Some(a) => (x.clone(), normalize_axis("take", a, x.ndim())?),
    };
    if x.size() == 0 && indices.size() != 0 {
        bail!("take", "cannot do a non-empty take from an array of shape {:?}", x.shape());
    }
    Array::from_op(Op::Index(IndexOp::Take { axis }), vec![x, indices.clone()])
}

/// `x[..., indices[i, j, ...], ...]` along `axis`: `indices` has `x`'s number of dimensions
/// and broadcasts with `x` on the other axes. With `axis = None`, `x` is flattened and
/// `indices` must be 1-d.
pub fn take_along_axis(x: &Array, indices: &Array, axis: Option<isize>) -> Result<Array> {
    const NAME: &str = "take_along_axis";
    check_indices(NAME, indices)?;
    let (x, axis) = match axis {
        None => (ravel(x)?, 0),
        Some(a) => (x.clone(), normalize_axis(NAME, a, x.ndim())?),
    };
    if indices.ndim() != x.ndim() {
        bail!(
            NAME,
            "indices of shape {:?} do not match array of shape {:?}",
            indices.shape(),
            x.shape()
        );
    }
    let shape = broadcast_except(NAME, &[x.shape(), indices.shape()], axis)?;
    let xb = broadcast_to(&x, &with_axis(&shape, axis, x.shape()[axis]))?;
    let ib = broadcast_to(indices, &with_axis(&shape, axis, indices.shape()[axis]))?;
    Array::from_op(Op::Index(IndexOp::TakeAlongAxis { axis }), vec![xb, ib])
}

/// A copy of `x` with `values` written at `indices` along `axis` (the inverse of
/// [`take_along_axis`]). `values` is cast to `x`'s dtype; indices and values broadcast together
/// and with `x` on the other axes. With `axis = None` it works on the flattened `x`.
pub fn put_along_axis(
    x: &Array,
    indices: &Array,
    values: &Array,
    axis: Option<isize>,
) -> Result<Array> {
    match axis {
        None => {
            reshape_to(&scatter_axis(&ravel(x)?, indices, values, 0, ScatterMode::Set)?, x.shape())
        }
        Some(a) => scatter_axis(x, indices, values, a, ScatterMode::Set),
    }
}

/// Like [`put_along_axis`], adding `values` (repeated indices accumulate).
pub fn scatter_add_axis(x: &Array, indices: &Array, values: &Array, axis: isize) -> Result<Array> {
    scatter_axis(x, indices, values, axis, ScatterMode::Add)
}

fn scatter_axis(
    x: &Array,
    indices: &Array,
    values: &Array,
    axis: isize,
    mode: ScatterMode,
) -> Result<Array> {
    let name = mode.axis_name();
    check_indices(name, indices)?;
    let axis = normalize_axis(name, axis, x.ndim())?;
    if indices.ndim() != x.ndim() {
        bail!(
            name,
            "indices of shape {:?} do not match array of shape {:?}",
            indices.shape(),
            x.shape()
        );
    }
    if x.size() == 0 {
        return Ok(x.clone());
    }
    let mut upd = astype(values, x.dtype())?;
    if upd.ndim() > indices.ndim() {
        // Leading size-1 axes of the values are dropped (MLX).
        let lead = upd.ndim() - indices.ndim();
        if upd.shape()[..lead].iter().any(|&n| n != 1) {
            bail!(
                name,
                "values of shape {:?} have more dimensions than indices {:?}",
                values.shape(),
                indices.shape()
            );
        }
        upd = reshape_to(&upd, &upd.shape()[lead..])?;
    }
    let s = broadcast_shapes(name, indices.shape(), upd.shape())?;
    let shape = broadcast_except(name, &[x.shape(), &s], axis)?;
    let xb = broadcast_to(x, &with_axis(&shape, axis, x.shape()[axis]))?;
    let target = with_axis(&shape, axis, s[axis]);
    let (ib, ub) = (broadcast_to(indices, &target)?, broadcast_to(&upd, &target)?);
    Array::from_op(Op::Index(IndexOp::ScatterAxis { axis, mode }), vec![xb, ib, ub])
}

fn scatter_with(
    mode: ScatterMode,
    x: &Array,
    indices: &[&Array],
    updates: &Array,
    axes: &[isize],
) -> Result<Array> {
    let name = mode.scatter_name();
    if indices.len() > x.ndim() {
        bail!(name, "{} index arrays for an array with {} dimensions", indices.len(), x.ndim());
    }
    if indices.len() != axes.len() {
        bail!(name, "{} index arrays for {} axes", indices.len(), axes.len());
    }
    let axes = normalize_axes(name, axes, x.ndim())?;
    let mut idx_shape: Vec<usize> = vec![];
    for i in indices {
        check_indices(name, i)?;
        idx_shape = broadcast_shapes(name, &idx_shape, i.shape())?;
    }
    check_scatter_updates(name, x.shape(), &idx_shape, updates.shape())?;
    let mut inputs = vec![x.clone()];
    for i in indices {
        inputs.push(broadcast_to(i, &idx_shape)?);
    }
    inputs.push(astype(updates, x.dtype())?);
    Array::from_op(Op::Index(IndexOp::Scatter { axes, mode }), inputs)
}

/// MLX's `scatter` (the primitive behind `x.at[...]`): a copy of `x` where, for every position
/// `i` of the broadcast index arrays, the update slice `updates[i]` is written at offset
/// `indices[m][i]` along `axes[m]` (0 along the other axes). `updates` has shape
/// `index_shape + slice` with one slice dimension per dimension of `x`, each no larger than
/// `x`'s, and is cast to `x`'s dtype. With repeated indices the last update wins.
pub fn scatter(x: &Array, indices: &[&Array], updates: &Array, axes: &[isize]) -> Result<Array> {
    scatter_with(ScatterMode::Set, x, indices, updates, axes)
}

/// [`scatter`] adding the updates (repeated indices accumulate): `x.at[idx].add(u)`.
pub fn scatter_add(
    x: &Array,
    indices: &[&Array],
    updates: &Array,
    axes: &[isize],
) -> Result<Array> {
    scatter_with(ScatterMode::Add, x, indices, updates, axes)
}

/// [`scatter`] multiplying by the updates.
pub fn scatter_prod(
    x: &Array,
    indices: &[&Array],
    updates: &Array,
    axes: &[isize],
) -> Result<Array> {
    scatter_with(ScatterMode::Prod, x, indices, updates, axes)
}

/// [`scatter`] keeping the maximum (NaN propagates, as in `maximum`).
pub fn scatter_max(
    x: &Array,
    indices: &[&Array],
    updates: &Array,
    axes: &[isize],
) -> Result<Array> {
    scatter_with(ScatterMode::Max, x, indices, updates, axes)
}

/// [`scatter`] keeping the minimum (NaN propagates, as in `minimum`).
pub fn scatter_min(
    x: &Array,
    indices: &[&Array],
    updates: &Array,
    axes: &[isize],
) -> Result<Array> {
    scatter_with(ScatterMode::Min, x, indices, updates, axes)
}

/// A copy of `src` with the region `slices` selects (as in [`super::slice`]) replaced by
/// `update`, which is cast to `src`'s dtype and broadcast to the region's shape.
pub fn slice_update(src: &Array, update: &Array, slices: &[Slice]) -> Result<Array> {
    if slices.len() > src.ndim() {
        bail!(
            "slice_update",
            "{} slices given for an array with {} dimensions",
            slices.len(),
            src.ndim()
        );
    }
    let nd = src.ndim();
    let (mut start, mut step, mut shape) =
        (vec![0usize; nd], vec![1isize; nd], src.shape().to_vec());
    for (d, s) in slices.iter().enumerate() {
        let (b, st, len) = s.resolve(src.shape()[d])?;
        start[d] = if len == 0 { 0 } else { b as usize };
        step[d] = st;
        shape[d] = len;
    }
    if broadcast_shapes("slice_update", update.shape(), &shape).ok().as_ref() != Some(&shape) {
        bail!(
            "slice_update",
            "update of shape {:?} cannot fill a slice of shape {:?}",
            update.shape(),
            shape
        );
    }
    let upd = broadcast_to(&astype(update, src.dtype())?, &shape)?;
    if shape == src.shape() && step.iter().all(|&s| s == 1) {
        return Ok(upd); // the update covers all of src
    }
    Array::from_op(Op::Index(IndexOp::SliceUpdate { start, step }), vec![src.clone(), upd])
}

/// Joins arrays along an existing axis; they must match on every other axis and are
/// promoted to their common dtype. Each input is copied once.
pub fn concatenate(arrays: &[&Array], axis: isize) -> Result<Array> {
    let Some(first) = arrays.first() else { bail!("concatenate", "no arrays given") };
    if arrays.len() == 1 {
        return Ok((*first).clone());
    }
    let ax = normalize_axis("concatenate", axis, first.ndim())?;
    for a in arrays {
        if check_same_but_axis("concatenate", first.shape(), a.shape(), ax).is_err() {
            let shapes: Vec<&[usize]> = arrays.iter().map(|a| a.shape()).collect();
            bail!("concatenate", "shapes {:?} must match except on axis {}", shapes, axis);
        }
    }
    let dtype = arrays.iter().fold(first.dtype(), |d, a| promote_types(d, a.dtype()));
    let inputs = arrays.iter().map(|a| astype(a, dtype)).collect::<Result<_>>()?;
    Array::from_op(Op::Index(IndexOp::Concatenate { axis: ax }), inputs)
}

/// Joins arrays of one shape along a new axis.
pub fn stack(arrays: &[&Array], axis: isize) -> Result<Array> {
    let Some(first) = arrays.first() else { bail!("stack", "no arrays given") };
    if let Some(a) = arrays.iter().find(|a| a.shape() != first.shape()) {
        bail!(
            "stack",
            "all arrays must have the same shape, got {:?} and {:?}",
            first.shape(),
            a.shape()
        );
    }
    let ax = normalize_axis("stack", axis, first.ndim() + 1)? as isize;
    let parts: Vec<Array> = arrays.iter().map(|a| expand_dims(a, &[ax])).collect::<Result<_>>()?;
    concatenate(&parts.iter().collect::<Vec<_>>(), ax)
}

/// How [`split`] divides an axis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sections {
    /// This many equal parts (the axis length must divide evenly).
    Equal(usize),
    /// Parts between these indices (as NumPy: negative indices count from the end, indices
    /// are clamped to the axis, and out-of-order ones give empty parts).
    At(Vec<isize>),
}

impl From<usize> for Sections {
    fn from(n: usize) -> Self {
        Sections::Equal(n)
    }
}

impl From<&[isize]> for Sections {
    fn from(at: &[isize]) -> Self {
        Sections::At(at.to_vec())
    }
}

impl<const N: usize> From<&[isize; N]> for Sections {
    fn from(at: &[isize; N]) -> Self {
        Sections::At(at.to_vec())
    }
}

impl From<Vec<isize>> for Sections {
    fn from(at: Vec<isize>) -> Self {
        Sections::At(at)
    }
}

/// Splits `x` along `axis` into views: `split(&x, 3, 0)` makes three equal parts,
/// `split(&x, &[2, 5], 0)` the parts `[:2]`, `[2:5]` and `[5:]`.
pub fn split(x: &Array, sections: impl Into<Sections>, axis: isize) -> Result<Vec<Array>> {
    let ax = normalize_axis("split", axis, x.ndim())?;
    let len = x.shape()[ax];
    let at: Vec<isize> = match sections.into() {
        Sections::Equal(0) => bail!("split", "cannot split into 0 sections"),
        Sections::Equal(n) if !len.is_multiple_of(n) => bail!(
            "split",
            "array split does not result in sub arrays with equal size: {} splits along axis {} \
             for shape {:?}",
            n,
            axis,
            x.shape()
        ),
        Sections::Equal(n) => (1..n).map(|i| (i * len / n) as isize).collect(),
        Sections::At(at) => at,
    };
    let mut start = 0isize;
    let mut parts = Vec::with_capacity(at.len() + 1);
    for stop in at.iter().map(|&s| Some(s)).chain([None]) {
        parts.push(slice_axis(x, ax as isize, Slice::new(Some(start), stop, 1))?);
        start = stop.unwrap_or(0);
    }
    Ok(parts)
}

/// Repeats the whole array `reps[i]` times along each axis (NumPy's `tile`); `reps` and the
/// shape are left-padded with ones to the same length.
pub fn tile(x: &Array, reps: &[usize]) -> Result<Array> {
    let nd = x.ndim().max(reps.len());
    let pad = |v: &[usize]| -> Vec<usize> {
        let mut p = vec![1usize; nd - v.len()];
        p.extend_from_slice(v);
        p
    };
    let (shape, reps) = (pad(x.shape()), pad(reps));
    let (mut expand, mut broad, mut fin) = (vec![], vec![], vec![]);
    for (&n, &r) in shape.iter().zip(&reps) {
        if r != 1 {
            expand.push(1);
            broad.push(r);
        }
        expand.push(n);
        broad.push(n);
        fin.push(n * r);
    }
    reshape_to(&broadcast_to(&reshape_to(x, &expand)?, &broad)?, &fin)
}

/// Repeats each element `repeats` times along `axis` (of the flattened array for `None`).
/// As in MLX, `repeats == 0` gives an empty 1-d array.
pub fn repeat(x: &Array, repeats: usize, axis: Option<isize>) -> Result<Array> {
    let Some(axis) = axis else { return repeat(&ravel(x)?, repeats, Some(0)) };
    let ax = normalize_axis("repeat", axis, x.ndim())?;
    match repeats {
        0 => zeros(&[0], x.dtype()),
        1 => Ok(x.clone()),
        r => {
            let mut shape = x.shape().to_vec();
            shape.insert(ax + 1, r);
            let b = broadcast_to(&expand_dims(x, &[ax as isize + 1])?, &shape)?;
            shape.remove(ax + 1);
            shape[ax] *= r;
            reshape_to(&b, &shape)
        }
    }
}

/// Pads every axis with `pad_width[d] = (before, after)` elements (one pair applies to all
/// axes). `PadMode::Constant` fills with `value` (cast to `x`'s dtype, one element);
/// `PadMode::Edge` repeats the edge elements and ignores `value`.
pub fn pad(x: &Array, pad_width: &[(usize, usize)], value: &Array, mode: PadMode) -> Result<Array> {
    let widths = match pad_width.len() {
        1 => vec![pad_width[0]; x.ndim()],
        n if n == x.ndim() => pad_width.to_vec(),
        n => bail!("pad", "{} padding pairs given for an array with {} dimensions", n, x.ndim()),
    };
    if value.size() != 1 {
        bail!("pad", "pad value must have one element, got shape {:?}", value.shape());
    }
    let (low, high): (Vec<usize>, Vec<usize>) = widths.into_iter().unzip();
    check_pad(x.shape(), &low, &high, mode)?;
    if low.iter().chain(&high).all(|&w| w == 0) {
        return Ok(x.clone());
    }
    let value = astype(&reshape_to(value, &[])?, x.dtype())?;
    Array::from_op(Op::Index(IndexOp::Pad { low, high, mode }), vec![x.clone(), value])
}
