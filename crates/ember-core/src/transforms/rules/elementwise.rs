//! Rules of the elementwise ops. Binary ops broadcast their inputs, so each input's
//! cotangent is summed back to its shape.

use crate::array::Array;
use crate::ops::elementwise::{BinaryOp, UnaryOp};
use crate::ops::{self, add, cos, divide, multiply, negative, sin};
use super::layout::unbroadcast;
use crate::{bail, Result};

/// The derivative of `y = op(x)` at `x`, as an array.
fn unary_derivative(op: UnaryOp, x: &Array, y: &Array) -> Result<Array> {
    use UnaryOp::*;
    match op {
        Negative => ops::full_like(x, &Array::scalar(-1.0f32)),
        Sin => cos(x),
        Cos => negative(&sin(x)?),
        Exp => Ok(y.clone()),
        Log => ops::reciprocal(x),
        op => bail!("vjp", "{} has no gradient rule", op.mlx_name()),
    }
}

pub(super) fn unary_vjp(op: UnaryOp, x: &Array, y: &Array, cot: &Array) -> Result<Vec<Array>> {
    Ok(vec![multiply(cot, &unary_derivative(op, x, y)?)?])
}

pub(super) fn unary_jvp(op: UnaryOp, x: &Array, y: &Array, tan: &Array) -> Result<Array> {
    multiply(tan, &unary_derivative(op, x, y)?)
}

/// The partial derivatives of `op(a, b)` with respect to `a` and `b`.
fn binary_partials(op: BinaryOp, a: &Array, b: &Array) -> Result<(Array, Array)> {
    use BinaryOp::*;
    let one = ops::ones_like(a)?;
    match op {
        Add => Ok((one.clone(), one)),
        Subtract => Ok((one.clone(), negative(&one)?)),
        Multiply => Ok((b.clone(), a.clone())),
        Divide => {
            let inv = ops::reciprocal(b)?;
            Ok((inv.clone(), negative(&multiply(&divide(a, b)?, &inv)?)?))
        }
        op => bail!("vjp", "{} has no gradient rule", op.mlx_name()),
    }
}

pub(super) fn binary_vjp(op: BinaryOp, inputs: &[Array], _y: &Array, cot: &Array) -> Result<Vec<Array>> {
    let (da, db) = binary_partials(op, &inputs[0], &inputs[1])?;
    let back = |d: &Array, x: &Array| unbroadcast(&multiply(cot, d)?, x.shape(), cot.shape());
    Ok(vec![back(&da, &inputs[0])?, back(&db, &inputs[1])?])
}

pub(super) fn binary_jvp(op: BinaryOp, inputs: &[Array], _y: &Array, ta: &Array, tb: &Array) -> Result<Array> {
    let (da, db) = binary_partials(op, &inputs[0], &inputs[1])?;
    add(&multiply(ta, &da)?, &multiply(tb, &db)?)
}
