//! Rules of the elementwise ops: unary math, binary ops and `where`. Binary inputs may have
//! different shapes (the op broadcasts them), so cotangents are summed back to each input's
//! shape. Ops whose result is piecewise constant (rounding, signs, comparisons, predicates,
//! logical and bitwise ops, `floor_divide`) have zero derivatives, as in MLX.

use super::{scalar_like, sum_terms, unbroadcast};
use crate::array::Array;
use crate::ops::elementwise::{BinaryOp, UnaryOp};
use crate::ops::{
    self, add, cos, cosh, divide, exp, floor, greater, greater_equal, less, less_equal, log,
    multiply, negative, rsqrt, sigmoid, sign, sin, sinh, square, subtract, where_, zeros_like,
};
use crate::Result;

/// `v` times the derivative of `y = op(x)`: the unary Jacobian is diagonal, so this is both
/// the vjp of a cotangent and the jvp of a tangent.
pub(super) fn unary(op: UnaryOp, x: &Array, y: &Array, v: &Array) -> Result<Array> {
    use UnaryOp::*;
    let c = |value: f64| scalar_like(value, x);
    // 1 - x^2 and 1 + x^2, shared by the inverse trigonometric functions.
    let one_minus_sq = || subtract(&c(1.0)?, &square(x)?);
    let one_plus_sq = || add(&c(1.0)?, &square(x)?);
    match op {
        Abs => multiply(v, &sign(x)?),
        Negative => negative(v),
        Square => multiply(v, &multiply(x, &c(2.0)?)?),
        Exp => multiply(v, y),
        Expm1 => multiply(v, &add(y, &c(1.0)?)?),
        Log => divide(v, x),
        Log1p => divide(v, &add(x, &c(1.0)?)?),
        Log2 => divide(v, &multiply(x, &c(std::f64::consts::LN_2)?)?),
        Log10 => divide(v, &multiply(x, &c(std::f64::consts::LN_10)?)?),
        Sqrt => divide(&multiply(v, &c(0.5)?)?, y),
        Rsqrt => multiply(&multiply(v, &c(-0.5)?)?, &divide(y, x)?),
        Reciprocal => negative(&multiply(v, &square(y)?)?),
        Sin => multiply(v, &cos(x)?),
        Cos => negative(&multiply(v, &sin(x)?)?),
        Tan => divide(v, &square(&cos(x)?)?),
        Arcsin => multiply(v, &rsqrt(&one_minus_sq()?)?),
        Arccos => negative(&multiply(v, &rsqrt(&one_minus_sq()?)?)?),
        Arctan => divide(v, &one_plus_sq()?),
        Sinh => multiply(v, &cosh(x)?),
        Cosh => multiply(v, &sinh(x)?),
        Tanh => multiply(v, &subtract(&c(1.0)?, &square(y)?)?),
        Arcsinh => multiply(v, &rsqrt(&one_plus_sq()?)?),
        Arccosh => multiply(v, &rsqrt(&subtract(&square(x)?, &c(1.0)?)?)?),
        Arctanh => divide(v, &one_minus_sq()?),
        Sigmoid => multiply(v, &multiply(y, &subtract(&c(1.0)?, y)?)?),
        // d erf(x) = 2 / sqrt(pi) * exp(-x^2).
        Erf => multiply(v, &multiply(&exp(&negative(&square(x)?)?)?, &c(2.0 / PI_SQRT)?)?),
        // d erfinv(x) = sqrt(pi) / 2 * exp(erfinv(x)^2).
        Erfinv => multiply(v, &multiply(&exp(&square(y)?)?, &c(PI_SQRT / 2.0)?)?),
        Sign | Floor | Ceil | Round | IsNan | IsInf | IsFinite | IsPosInf | IsNegInf
        | LogicalNot | BitwiseInvert => zeros_like(v),
    }
}

/// The square root of pi.
const PI_SQRT: f64 = 1.772_453_850_905_516;

/// A partial derivative of a binary op with respect to one input.
enum Partial {
    Zero,
    One,
    MinusOne,
    /// An array broadcastable to the output.
    Of(Array),
}

impl Partial {
    /// `v` times this partial; `None` when it is zero.
    fn times(&self, v: &Array) -> Result<Option<Array>> {
        Ok(match self {
            Partial::Zero => None,
            Partial::One => Some(v.clone()),
            Partial::MinusOne => Some(negative(v)?),
            Partial::Of(d) => Some(multiply(v, d)?),
        })
    }
}

/// A 0/1 array of `like`'s dtype from a bool mask.
fn indicator(mask: Array, like: &Array) -> Result<Partial> {
    Ok(Partial::Of(mask.astype(like.dtype())?))
}

/// The partial derivatives of `y = op(a, b)` with respect to `a` and `b`. Ties of `maximum`
/// and `minimum` send the gradient to `b`, as MLX does.
fn partials(op: BinaryOp, a: &Array, b: &Array, y: &Array) -> Result<(Partial, Partial)> {
    use BinaryOp::*;
    use Partial::{MinusOne, Of, One, Zero};
    Ok(match op {
        Add => (One, One),
        Subtract => (One, MinusOne),
        Multiply => (Of(b.clone()), Of(a.clone())),
        // d(a / b)/db = -a / b^2 = -y / b.
        Divide => (Of(ops::reciprocal(b)?), Of(negative(&divide(y, b)?)?)),
        // a - floor(a / b) * b.
        Remainder => (One, Of(negative(&floor(&divide(a, b)?)?)?)),
        Power => {
            let one = scalar_like(1.0, a)?;
            let da = multiply(&ops::power(a, &subtract(b, &one)?)?, b)?;
            // y * log(a), taken as 0 where y is 0 (0 * log 0).
            let db = where_(y, &multiply(&log(a)?, y)?, &scalar_like(0.0, y)?)?;
            (Of(da), Of(db))
        }
        Maximum => (indicator(greater(a, b)?, y)?, indicator(less_equal(a, b)?, y)?),
        Minimum => (indicator(less(a, b)?, y)?, indicator(greater_equal(a, b)?, y)?),
        Arctan2 => {
            let r2 = add(&square(a)?, &square(b)?)?;
            (Of(divide(b, &r2)?), Of(negative(&divide(a, &r2)?)?))
        }
        LogAddExp => {
            let s = sigmoid(&subtract(a, b)?)?;
            (Of(s.clone()), Of(subtract(&scalar_like(1.0, &s)?, &s)?))
        }
        FloorDivide | Equal | NotEqual | Less | LessEqual | Greater | GreaterEqual | LogicalAnd
        | LogicalOr | BitwiseAnd | BitwiseOr | BitwiseXor | LeftShift | RightShift => (Zero, Zero),
    })
}

pub(super) fn binary_vjp(
    op: BinaryOp,
    inputs: &[Array],
    y: &Array,
    cot: &Array,
    argnums: &[usize],
) -> Result<Vec<Array>> {
    let (da, db) = partials(op, &inputs[0], &inputs[1], y)?;
    argnums
        .iter()
        .map(|&i| {
            let x = &inputs[i];
            match [&da, &db][i].times(cot)? {
                Some(g) => unbroadcast(&g, x.shape()),
                None => zeros_like(x),
            }
        })
        .collect()
}

pub(super) fn binary_jvp(
    op: BinaryOp,
    inputs: &[Array],
    y: &Array,
    tangents: &[Option<Array>],
) -> Result<Array> {
    let (da, db) = partials(op, &inputs[0], &inputs[1], y)?;
    let mut terms = Vec::new();
    for (t, d) in tangents.iter().zip([da, db]) {
        if let Some(term) = t.as_ref().map(|t| d.times(t)).transpose()?.flatten() {
            terms.push(term);
        }
    }
    sum_terms(terms, y)
}

/// `where(cond, a, b)`: the cotangent flows to `a` where `cond` holds and to `b` elsewhere;
/// the condition gets zeros.
pub(super) fn select_vjp(inputs: &[Array], cot: &Array, argnums: &[usize]) -> Result<Vec<Array>> {
    let cond = &inputs[0];
    let zero = scalar_like(0.0, cot)?;
    argnums
        .iter()
        .map(|&i| match i {
            1 => unbroadcast(&where_(cond, cot, &zero)?, inputs[1].shape()),
            2 => unbroadcast(&where_(cond, &zero, cot)?, inputs[2].shape()),
            _ => zeros_like(cond),
        })
        .collect()
}

pub(super) fn select_jvp(inputs: &[Array], y: &Array, tangents: &[Option<Array>]) -> Result<Array> {
    if tangents[1].is_none() && tangents[2].is_none() {
        return zeros_like(y);
    }
    let zero = Array::scalar(0.0).astype(y.dtype())?;
    let ta = tangents[1].clone().unwrap_or_else(|| zero.clone());
    let tb = tangents[2].clone().unwrap_or(zero);
    ops::broadcast_to(&where_(&inputs[0], &ta, &tb)?, y.shape())
}
