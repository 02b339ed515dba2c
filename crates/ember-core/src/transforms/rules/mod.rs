//! The vjp and jvp rule of every primitive, one module per op family. Rules are written
//! with the public ops, so their results are graphs that can be differentiated again.

mod elementwise;
mod layout;
mod reduce;

use crate::array::Array;
use crate::op::Op;
use crate::{bail, Result};

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
        let all = match self {
            Op::Unary(u) => elementwise::unary_vjp(*u, &inputs[0], &outputs[0], &cotangents[0])?,
            Op::Binary(b) => elementwise::binary_vjp(*b, inputs, &outputs[0], &cotangents[0])?,
            Op::AsType(_) => vec![cotangents[0].astype(inputs[0].dtype())?],
            Op::Layout(l) => vec![layout::vjp(l, &inputs[0], &cotangents[0])?],
            Op::Reduce(r) => reduce::vjp(r, &inputs[0], &outputs[0], &cotangents[0])?,
            Op::Custom(c) => return c.vjp(inputs, outputs, cotangents, argnums),
            Op::Compiled(p) => return p.vjp(inputs, cotangents, argnums),
            Op::StopGradient => vec![crate::ops::zeros_like(&inputs[0])?],
            op => bail!("vjp", "{} has no gradient rule", op.name()),
        };
        Ok(argnums.iter().map(|&i| all[i].clone()).collect())
    }

    /// Tangents of every output, given the inputs, the outputs and the inputs' tangents
    /// (`None` where an input does not depend on the primals).
    pub(crate) fn jvp(
        &self,
        inputs: &[Array],
        outputs: &[Array],
        tangents: &[Option<Array>],
    ) -> Result<Vec<Array>> {
        let zeros_or = |i: usize| match &tangents[i] {
            Some(t) => Ok(t.clone()),
            None => crate::ops::zeros_like(&inputs[i]),
        };
        Ok(vec![match self {
            Op::Unary(u) => elementwise::unary_jvp(*u, &inputs[0], &outputs[0], &zeros_or(0)?)?,
            Op::Binary(b) => {
                elementwise::binary_jvp(*b, inputs, &outputs[0], &zeros_or(0)?, &zeros_or(1)?)?
            }
            Op::AsType(d) => zeros_or(0)?.astype(*d)?,
            Op::Layout(_) => Array::from_op(self.clone(), vec![zeros_or(0)?])?,
            Op::Reduce(r) => reduce::jvp(r, &inputs[0], &outputs[0], &zeros_or(0)?)?,
            Op::Custom(c) => return c.jvp(inputs, tangents),
            Op::Compiled(p) => return p.jvp(inputs, tangents),
            Op::StopGradient => crate::ops::zeros_like(&outputs[0])?,
            op => bail!("jvp", "{} has no jvp rule", op.name()),
        }])
    }
}
