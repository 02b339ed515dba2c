//! Rules of the reductions and scans.

use crate::array::Array;
use crate::ops::reduce::{ReduceKind, ReduceOp};
use crate::ops::broadcast_to;
use crate::{bail, Result};

pub(super) fn vjp(op: &ReduceOp, x: &Array, _y: &Array, cot: &Array) -> Result<Vec<Array>> {
    match op {
        ReduceOp::Reduce { kind: ReduceKind::Sum, .. } => Ok(vec![broadcast_to(cot, x.shape())?]),
        op => bail!("vjp", "{} has no gradient rule", crate::op::Primitive::name(op)),
    }
}

pub(super) fn jvp(op: &ReduceOp, _x: &Array, _y: &Array, tan: &Array) -> Result<Array> {
    match op {
        ReduceOp::Reduce { kind: ReduceKind::Sum, .. } => {
            Array::from_op(crate::op::Op::Reduce(op.clone()), vec![tan.clone()])
        }
        op => bail!("jvp", "{} has no jvp rule", crate::op::Primitive::name(op)),
    }
}
