//! Shape ops. Most are zero-copy views on the CPU (a new shape/strides/offset over the same
//! buffer): transpose, broadcast, slice, squeeze/expand_dims, and reshape of contiguous data.

use super::{normalize_axes, normalize_axis};
use crate::array::Array;
use crate::op::{Op, OutSpec, Primitive};
use crate::{bail, Result};

/// Layout primitives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LayoutOp {
    /// A row-major contiguous copy.
    Copy,
    Reshape(Vec<usize>),
    Transpose(Vec<usize>),
    Broadcast(Vec<usize>),
    /// Elements `start + i * step` along each axis; `shape` is the result's.
    Slice {
        start: Vec<usize>,
        step: Vec<isize>,
        shape: Vec<usize>,
    },
    /// A view with explicit strides over the input's contiguous elements.
    AsStrided {
        shape: Vec<usize>,
        strides: Vec<isize>,
        offset: usize,
    },
}

impl Primitive for LayoutOp {
    fn name(&self) -> &'static str {
        match self {
            LayoutOp::Copy => "copy",
            LayoutOp::Reshape(_) => "reshape",
            LayoutOp::Transpose(_) => "transpose",
            LayoutOp::Broadcast(_) => "broadcast_to",
            LayoutOp::Slice { .. } => "slice",
            LayoutOp::AsStrided { .. } => "as_strided",
        }
    }

    fn infer(&self, inputs: &[&Array]) -> Result<Vec<OutSpec>> {
        let x = inputs[0];
        let shape = match self {
            LayoutOp::Copy => x.shape().to_vec(),
            LayoutOp::Reshape(s) => {
                if s.iter().product::<usize>() != x.size() {
                    bail!(
                        "reshape",
                        "cannot reshape array of size {} into shape {:?}",
                        x.size(),
                        s
                    );
                }
                s.clone()
            }
            LayoutOp::Transpose(perm) => {
                check_permutation(perm, x.ndim())?;
                perm.iter().map(|&p| x.shape()[p]).collect()
            }
            LayoutOp::Broadcast(s) => {
                check_broadcastable(x.shape(), s)?;
                s.clone()
            }
            LayoutOp::Slice { shape, .. } => shape.clone(),
            LayoutOp::AsStrided { shape, .. } => shape.clone(),
        };
        Ok(vec![(shape, x.dtype())])
    }
}

fn check_permutation(perm: &[usize], ndim: usize) -> Result<()> {
    let mut seen = vec![false; ndim];
    if perm.len() != ndim {
        bail!("transpose", "permutation {:?} does not have {} axes", perm, ndim);
    }
    for &p in perm {
        if p >= ndim || std::mem::replace(&mut seen[p], true) {
            bail!("transpose", "{:?} is not a permutation of {} axes", perm, ndim);
        }
    }
    Ok(())
}

fn check_broadcastable(from: &[usize], to: &[usize]) -> Result<()> {
    let ok = from.len() <= to.len()
        && from.iter().rev().zip(to.iter().rev()).all(|(&f, &t)| f == t || f == 1);
    if !ok {
        bail!("broadcast_to", "cannot broadcast array of shape {:?} to {:?}", from, to);
    }
    Ok(())
}

/// A Python-style slice of one axis: `start:stop:step`, with `None` for the defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice {
    pub start: Option<isize>,
    pub stop: Option<isize>,
    pub step: isize,
}

impl Slice {
    /// `:` — the whole axis.
    pub const FULL: Slice = Slice { start: None, stop: None, step: 1 };

    /// `start:stop`.
    pub fn range(start: isize, stop: isize) -> Slice {
        Slice { start: Some(start), stop: Some(stop), step: 1 }
    }

    /// `start:stop:step` with explicit bounds.
    pub fn new(start: Option<isize>, stop: Option<isize>, step: isize) -> Slice {
        Slice { start, stop, step }
    }

    /// The first index, step and length on an axis of length `n` (Python's `slice.indices`).
    pub(crate) fn resolve(&self, n: usize) -> Result<(isize, isize, usize)> {
        let n = n as isize;
        let step = self.step;
        if step == 0 {
            bail!("slice", "slice step cannot be zero");
        }
        let fix = |v: isize, lo: isize, hi: isize| {
            let v = if v < 0 { v + n } else { v };
            v.clamp(lo, hi)
        };
        let (start, stop) = if step > 0 {
            (self.start.map_or(0, |s| fix(s, 0, n)), self.stop.map_or(n, |s| fix(s, 0, n)))
        } else {
            (
                self.start.map_or(n - 1, |s| fix(s, -1, n - 1)),
                self.stop.map_or(-1, |s| fix(s, -1, n - 1)),
            )
        };
        let len = if step > 0 {
            (stop - start + step - 1).div_euclid(step).max(0)
        } else {
            (start - stop + (-step) - 1).div_euclid(-step).max(0)
        };
        Ok((start, step, len as usize))
    }
}

/// Slices the leading axes of `x` (axes past `slices.len()` are kept whole). A view.
pub fn slice(x: &Array, slices: &[Slice]) -> Result<Array> {
    if slices.len() > x.ndim() {
        bail!("slice", "{} slices given for an array with {} dimensions", slices.len(), x.ndim());
    }
    let mut start = vec![0usize; x.ndim()];
    let mut step = vec![1isize; x.ndim()];
    let mut shape = x.shape().to_vec();
    for (ax, s) in slices.iter().enumerate() {
        let (b, st, len) = s.resolve(x.shape()[ax])?;
        // An empty slice may start out of range; any in-range start describes no elements.
        start[ax] = if len == 0 { 0 } else { b as usize };
        step[ax] = st;
        shape[ax] = len;
    }
    if shape == x.shape() && step.iter().all(|&s| s == 1) {
        return Ok(x.clone());
    }
    Array::from_op(Op::Layout(LayoutOp::Slice { start, step, shape }), vec![x.clone()])
}

/// Slices one axis (`x[..., start:stop:step, ...]`).
pub fn slice_axis(x: &Array, axis: isize, s: Slice) -> Result<Array> {
    let axis = normalize_axis("slice", axis, x.ndim())?;
    let mut slices = vec![Slice::FULL; axis + 1];
    slices[axis] = s;
    slice(x, &slices)
}

/// Reshapes to `shape`; one entry may be `-1` to infer it.
pub fn reshape(x: &Array, shape: &[isize]) -> Result<Array> {
    let mut infer = None;
    let mut known = 1usize;
    for (i, &d) in shape.iter().enumerate() {
        match d {
            -1 if infer.is_none() => infer = Some(i),
            -1 => bail!("reshape", "can only infer one dimension in {:?}", shape),
            d if d < 0 => bail!("reshape", "invalid dimension {} in {:?}", d, shape),
            d => known *= d as usize,
        }
    }
    let mut out: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
    if let Some(i) = infer {
        if known == 0 || !x.size().is_multiple_of(known) {
            bail!(
                "reshape",
                "cannot infer dimension of {:?} for array of size {}",
                shape,
                x.size()
            );
        }
        out[i] = x.size() / known;
    }
    reshape_to(x, &out)
}

/// Reshapes to a fully known shape.
pub fn reshape_to(x: &Array, shape: &[usize]) -> Result<Array> {
    if shape == x.shape() {
        return Ok(x.clone());
    }
    if let Some(source) = reshaped_source(x) {
        return reshape_to(&source, shape);
    }
    Array::from_op(Op::Layout(LayoutOp::Reshape(shape.to_vec())), vec![x.clone()])
}

/// What a pending reshape reshapes: reshaping that instead gives the same values with one op
/// fewer to record and evaluate (a decoding step chains reshapes per head split). Not while
/// a transform traces: it follows the ops applied to its own inputs, which may be reshapes.
fn reshaped_source(x: &Array) -> Option<Array> {
    if crate::transforms::tape::is_tracing() {
        return None;
    }
    let op = x.pending()?;
    match op.op {
        Op::Layout(LayoutOp::Reshape(_)) => Some(op.inputs[0].clone()),
        _ => None,
    }
}

/// Flattens axes `start..=end` into one.
pub fn flatten(x: &Array, start_axis: isize, end_axis: isize) -> Result<Array> {
    if x.ndim() == 0 {
        return reshape_to(x, &[1]);
    }
    let s = normalize_axis("flatten", start_axis, x.ndim())?;
    let e = normalize_axis("flatten", end_axis, x.ndim())?;
    if s > e {
        bail!("flatten", "start axis {} is after end axis {}", start_axis, end_axis);
    }
    let mut shape = x.shape()[..s].to_vec();
    shape.push(x.shape()[s..=e].iter().product());
    shape.extend_from_slice(&x.shape()[e + 1..]);
    reshape_to(x, &shape)
}

/// Permutes axes. A view.
pub fn transpose(x: &Array, axes: &[isize]) -> Result<Array> {
    if axes.len() != x.ndim() {
        bail!("transpose", "{} axes given for an array with {} dimensions", axes.len(), x.ndim());
    }
    let perm = normalize_axes("transpose", axes, x.ndim())?;
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return Ok(x.clone());
    }
    // Moving only axes of length 1 keeps the elements in order: a reshape, which may fold
    // into a neighbouring one, as (B, 1, H, D) -> (B, H, 1, D) of a one-token step does.
    if perm.iter().filter(|&&p| x.shape()[p] != 1).is_sorted() {
        let moved: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
        return reshape_to(x, &moved);
    }
    Array::from_op(Op::Layout(LayoutOp::Transpose(perm)), vec![x.clone()])
}

/// Reverses the axes (`x.T`).
pub fn transpose_all(x: &Array) -> Result<Array> {
    let axes: Vec<isize> = (0..x.ndim() as isize).rev().collect();
    transpose(x, &axes)
}

pub fn swapaxes(x: &Array, a: isize, b: isize) -> Result<Array> {
    let a = normalize_axis("swapaxes", a, x.ndim())?;
    let b = normalize_axis("swapaxes", b, x.ndim())?;
    let mut perm: Vec<isize> = (0..x.ndim() as isize).collect();
    perm.swap(a, b);
    transpose(x, &perm)
}

pub fn moveaxis(x: &Array, source: isize, destination: isize) -> Result<Array> {
    let s = normalize_axis("moveaxis", source, x.ndim())?;
    let d = normalize_axis("moveaxis", destination, x.ndim())?;
    let mut perm: Vec<isize> = (0..x.ndim() as isize).filter(|&i| i as usize != s).collect();
    perm.insert(d, s as isize);
    transpose(x, &perm)
}

/// Broadcasts to `shape` (stride-0 view).
pub fn broadcast_to(x: &Array, shape: &[usize]) -> Result<Array> {
    if x.shape() == shape {
        return Ok(x.clone());
    }
    Array::from_op(Op::Layout(LayoutOp::Broadcast(shape.to_vec())), vec![x.clone()])
}

/// Inserts size-1 axes at the given positions of the result.
pub fn expand_dims(x: &Array, axes: &[isize]) -> Result<Array> {
    let out_ndim = x.ndim() + axes.len();
    let axes = normalize_axes("expand_dims", axes, out_ndim)?;
    let mut shape = Vec::with_capacity(out_ndim);
    let mut src = x.shape().iter();
    for i in 0..out_ndim {
        if axes.contains(&i) {
            shape.push(1);
        } else {
            shape.push(*src.next().expect("counted"));
        }
    }
    reshape_to(x, &shape)
}

/// Removes size-1 axes: the given ones, or all when `axes` is `None`.
pub fn squeeze(x: &Array, axes: Option<&[isize]>) -> Result<Array> {
    let drop: Vec<usize> = match axes {
        Some(a) => {
            let a = normalize_axes("squeeze", a, x.ndim())?;
            if let Some(&bad) = a.iter().find(|&&i| x.shape()[i] != 1) {
                bail!("squeeze", "cannot squeeze axis {} of size {}", bad, x.shape()[bad]);
            }
            a
        }
        None => (0..x.ndim()).filter(|&i| x.shape()[i] == 1).collect(),
    };
    let shape: Vec<usize> =
        x.shape().iter().enumerate().filter(|(i, _)| !drop.contains(i)).map(|(_, &n)| n).collect();
    reshape_to(x, &shape)
}

/// A view of `x`'s elements (in row-major order) with explicit shape, strides and offset.
/// Unchecked in MLX; here every reachable element must lie inside the array.
pub fn as_strided(x: &Array, shape: &[usize], strides: &[isize], offset: usize) -> Result<Array> {
    if shape.len() != strides.len() {
        bail!("as_strided", "shape {:?} and strides {:?} differ in length", shape, strides);
    }
    if shape.iter().product::<usize>() > 0 {
        let (mut lo, mut hi) = (offset as isize, offset as isize);
        for (&n, &s) in shape.iter().zip(strides) {
            let reach = (n as isize - 1) * s;
            if reach < 0 {
                lo += reach;
            } else {
                hi += reach;
            }
        }
        if lo < 0 || hi >= x.size() as isize {
            bail!(
                "as_strided",
                "shape {:?}, strides {:?}, offset {} reach outside an array of {} elements",
                shape,
                strides,
                offset,
                x.size()
            );
        }
    }
    let op = LayoutOp::AsStrided { shape: shape.to_vec(), strides: strides.to_vec(), offset };
    Array::from_op(Op::Layout(op), vec![x.clone()])
}

/// A row-major contiguous copy (MLX's `contiguous`).
pub fn contiguous(x: &Array) -> Result<Array> {
    Array::from_op(Op::Layout(LayoutOp::Copy), vec![x.clone()])
}

/// Flattens to one dimension.
pub fn ravel(x: &Array) -> Result<Array> {
    reshape_to(x, &[x.size()])
}

/// At least `n` dims by prepending size-1 axes (atleast_1d/2d/3d).
pub fn atleast_nd(x: &Array, n: usize) -> Result<Array> {
    if x.ndim() >= n {
        return Ok(x.clone());
    }
    let mut shape = vec![1usize; n - x.ndim()];
    shape.extend_from_slice(x.shape());
    reshape_to(x, &shape)
}
