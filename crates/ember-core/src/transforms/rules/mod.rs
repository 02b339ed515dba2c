//! The vjp and jvp rule of every primitive, one module per op family. Rules are written
//! with the public ops (or by recording primitives that have rules themselves), so their
//! results are graphs that can be differentiated again.
//!
//! A vjp rule returns one cotangent per entry of `argnums`, shaped like that input. A jvp rule
//! returns the tangent of each output from the inputs' tangents, `None` standing for an input
//! that does not depend on the primals (a zero tangent that is never materialised).

mod affine;
mod conv;
mod elementwise;
mod fast;
mod index;
mod layout;
mod linalg;
mod quantized;
mod random;
mod reduce;
mod sort;

use crate::array::Array;
use crate::op::Op;
use crate::ops::{self, zeros_like};
use crate::Result;

impl Op {
    /// Cotangents of the inputs listed in `argnums`, given the inputs, the outputs and one
    /// cotangent per output (zeros for outputs nothing depended on).
    pub(crate) fn vjp(
        &self,
        inputs: &[Array],
        outputs: &[Array],
        cotangents: &[Array],
        argnums: &[usize],
    ) -> Result<Vec<Array>> {
        let (x, y, cot) = (&inputs[0], &outputs[0], &cotangents[0]);
        match self {
            Op::Unary(u) => Ok(vec![elementwise::unary(*u, x, y, cot)?]),
            Op::Binary(b) => elementwise::binary_vjp(*b, inputs, y, cot, argnums),
            Op::Select => elementwise::select_vjp(inputs, cot, argnums),
            Op::AsType(_) => Ok(vec![cot.astype(x.dtype())?]),
            // No inputs, so nothing to differentiate.
            Op::Arange { .. } => Ok(vec![]),
            Op::Layout(l) => Ok(vec![layout::vjp(l, x, cot)?]),
            Op::Reduce(r) => Ok(vec![reduce::vjp(r, x, y, cot)?]),
            Op::Linalg(l) => linalg::vjp(l, inputs, cot, argnums),
            Op::Index(i) => index::vjp(i, inputs, y, cot, argnums),
            Op::Sort(s) => Ok(vec![sort::vjp(s, x, cot)?]),
            Op::Conv(c) => conv::vjp(c, inputs, cot, argnums),
            Op::Fast(f) => fast::vjp(f, inputs, y, cot, argnums),
            Op::Random(r) => random::vjp(r, inputs, cot, argnums),
            Op::Quantized(q) => quantized::vjp(q, inputs, cot, argnums),
            Op::Affine(a) => affine::vjp(a, inputs, cot, argnums),
            Op::Custom(c) => c.vjp(inputs, outputs, cotangents, argnums),
            Op::Compiled(p) => p.vjp(inputs, cotangents, argnums),
            Op::StopGradient => Ok(vec![zeros_like(x)?]),
        }
    }

    /// Tangents of every output, given the inputs, the outputs and the inputs' tangents
    /// (`None` where an input does not depend on the primals).
    pub(crate) fn jvp(
        &self,
        inputs: &[Array],
        outputs: &[Array],
        tangents: &[Option<Array>],
    ) -> Result<Vec<Array>> {
        let (y, t) = (&outputs[0], &tangents[0]);
        let tangent = match self {
            Op::Unary(u) => match t {
                Some(t) => elementwise::unary(*u, &inputs[0], y, t)?,
                None => zeros_like(y)?,
            },
            Op::Binary(b) => elementwise::binary_jvp(*b, inputs, y, tangents)?,
            Op::Select => elementwise::select_jvp(inputs, y, tangents)?,
            Op::AsType(d) => or_zeros(t, &inputs[0])?.astype(*d)?,
            Op::Arange { .. } => zeros_like(y)?,
            Op::Layout(_) => Array::from_op(self.clone(), vec![or_zeros(t, &inputs[0])?])?,
            Op::Reduce(r) => reduce::jvp(r, &inputs[0], y, &or_zeros(t, &inputs[0])?)?,
            Op::Linalg(l) => linalg::jvp(l, inputs, y, tangents)?,
            Op::Index(i) => index::jvp(i, inputs, y, tangents)?,
            Op::Sort(s) => sort::jvp(s, &inputs[0], y, &or_zeros(t, &inputs[0])?)?,
            Op::Conv(c) => conv::jvp(c, inputs, y, tangents)?,
            Op::Fast(f) => fast::jvp(f, inputs, y, tangents)?,
            Op::Random(r) => random::jvp(r, inputs, y, tangents)?,
            Op::Quantized(q) => quantized::jvp(q, inputs, y, tangents)?,
            Op::Affine(a) => return affine::jvp(a, inputs, outputs, tangents),
            Op::Custom(c) => return c.jvp(inputs, tangents),
            Op::Compiled(p) => return p.jvp(inputs, tangents),
            Op::StopGradient => zeros_like(y)?,
        };
        Ok(vec![tangent])
    }
}

/// The tangent `t`, or zeros shaped like `like` when there is none.
fn or_zeros(t: &Option<Array>, like: &Array) -> Result<Array> {
    match t {
        Some(t) => Ok(t.clone()),
        None => zeros_like(like),
    }
}

/// `value` as a 0-d array of `like`'s dtype, so that constants never promote a rule's result.
fn scalar_like(value: f64, like: &Array) -> Result<Array> {
    Array::scalar(value).astype(like.dtype())
}

/// Sums `cot` down to `shape`, undoing a broadcast: the leading axes it added and the axes
/// where `shape` has size 1.
fn unbroadcast(cot: &Array, shape: &[usize]) -> Result<Array> {
    if cot.shape() == shape {
        return Ok(cot.clone());
    }
    let lead = cot.ndim() - shape.len();
    let axes: Vec<isize> = (0..cot.ndim())
        .filter(|&i| i < lead || (shape[i - lead] == 1 && cot.shape()[i] != 1))
        .map(|i| i as isize)
        .collect();
    let summed = if axes.is_empty() { cot.clone() } else { ops::sum(cot, Some(&axes[..]), true)? };
    ops::reshape_to(&summed, shape)
}

/// The sum of the tangent contributions `terms`, shaped like the output `y` (zeros when
/// there are none).
fn sum_terms(terms: Vec<Array>, y: &Array) -> Result<Array> {
    let mut terms = terms.into_iter();
    let Some(first) = terms.next() else { return zeros_like(y) };
    let total = terms.try_fold(first, |acc, t| ops::add(&acc, &t))?;
    ops::broadcast_to(&total, y.shape())
}

/// The jvp of a linear map given by its transpose: `vjp_of(c)` is linear in the cotangent
/// `c` (shaped like `y`), so the vjp of that map, taken at any point, applied to `tangent`
/// is the Jacobian times `tangent`. Used where a direct forward rule would repeat a long
/// reverse rule.
fn jvp_by_transpose(
    vjp_of: impl Fn(&Array) -> Result<Array>,
    y: &Array,
    tangent: &Array,
) -> Result<Array> {
    let probe = zeros_like(y)?;
    let (_, mut g) =
        super::vjp(|c| Ok(vec![vjp_of(&c[0])?]), &[probe], std::slice::from_ref(tangent))?;
    Ok(g.remove(0))
}
