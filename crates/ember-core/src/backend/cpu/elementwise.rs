//! Elementwise ops on the CPU: a dtype dispatch, then one `ember-cpu` map per op so that each
//! inner loop is monomorphised for its function.

use super::layout::broadcast;
use super::{dispatch_float, dispatch_int};
use crate::array::{new_output, ReadyArray};
use crate::dispatch;
use crate::dtype::{Dtype, Element};
use crate::ops::elementwise::{BinaryOp, UnaryOp};
use crate::Result;
use crate::{bf16, f16};
use ember_cpu::fast::FastFloat;
use ember_cpu::num_like::FloatMath;
use ember_cpu::strided::{map1, map1_inplace, map2, map2_inplace, map3};
use ember_cpu::vmap::{self, Transcendental};
use ember_cpu::{cast, BitOps, Float, FloatElem, Scalar};

/// The float function of a float-valued unary op, in the compute type `F`.
fn float_fn<F: Float>(op: UnaryOp) -> fn(F) -> F {
    use UnaryOp::*;
    match op {
        Exp => F::exp,
        Expm1 => F::exp_m1,
        Log => F::ln,
        Log1p => F::ln_1p,
        Log2 => F::log2,
        Log10 => F::log10,
        Sqrt => F::sqrt,
        Rsqrt => |x| F::one().div(x.sqrt()),
        Reciprocal => |x| F::one().div(x),
        Sin => F::sin,
        Cos => F::cos,
        Tan => F::tan,
        Arcsin => F::asin,
        Arccos => F::acos,
        Arctan => F::atan,
        Sinh => F::sinh,
        Cosh => F::cosh,
        Tanh => F::tanh,
        Arcsinh => F::asinh,
        Arccosh => F::acosh,
        Arctanh => F::atanh,
        Sigmoid => |x| {
            // exp of a non-positive number never overflows.
            if x >= F::zero() {
                F::one().div(F::one().add(x.neg().exp()))
            } else {
                let e = x.exp();
                e.div(F::one().add(e))
            }
        },
        Erf => F::erf,
        Erfinv => F::erfinv,
        Floor => F::floor,
        Ceil => F::ceil,
        Round => F::round_ties_even,
        _ => unreachable!("{op:?} is not a float function"),
    }
}

/// `f(x)` written over `x`'s own buffer when it was donated, else into a new output.
fn unary_map<T: Element>(x: &mut ReadyArray, f: impl Fn(T) -> T + Sync) -> Result<ReadyArray> {
    let shape = x.shape.clone();
    if let Some(data) = x.donatable::<T>(&shape) {
        map1_inplace(data, f);
        return Ok(x.clone());
    }
    new_output::<T>(&shape, |out| {
        map1(out, x.view::<T>(), f);
        Ok(())
    })
}

fn float_unary<T: FloatElem + Element>(op: UnaryOp, x: &mut ReadyArray) -> Result<ReadyArray> {
    if let Some(f) = transcendental(op).filter(|_| x.dtype == Dtype::Float32) {
        return vectorised(f, x);
    }
    let f = float_fn::<T::Acc>(op);
    unary_map::<T>(x, |v| T::narrow(f(v.widen())))
}

/// The ops with a SIMD form for f32 (`ember_cpu::vmap`), as in compiled programs.
fn transcendental(op: UnaryOp) -> Option<Transcendental> {
    Some(match op {
        UnaryOp::Exp => Transcendental::Exp,
        UnaryOp::Tanh => Transcendental::Tanh,
        UnaryOp::Sigmoid => Transcendental::Sigmoid,
        UnaryOp::Log => Transcendental::Log,
        UnaryOp::Erf => Transcendental::Erf,
        _ => return None,
    })
}

/// `f` over an f32 array, in place when it was donated.
fn vectorised(f: Transcendental, x: &mut ReadyArray) -> Result<ReadyArray> {
    let shape = x.shape.clone();
    if let Some(data) = x.donatable::<f32>(&shape) {
        vmap::map_inplace(f, data);
        return Ok(x.clone());
    }
    new_output::<f32>(&shape, |out| {
        vmap::map_view(f, out, x.view::<f32>());
        Ok(())
    })
}

fn predicate<T: Element>(x: &ReadyArray, f: fn(f64) -> bool) -> Result<ReadyArray> {
    new_output::<bool>(&x.shape, |out| {
        map1(out, x.view::<T>(), |v: T| f(v.to_f64()));
        Ok(())
    })
}

pub fn unary(op: UnaryOp, x: &mut ReadyArray) -> Result<ReadyArray> {
    use UnaryOp::*;
    match op {
        Abs | Negative | Sign | Square => dispatch!(x.dtype, T => {
            let f: fn(T) -> T = match op {
                Abs => <T as Scalar>::abs,
                Negative => <T as Scalar>::neg,
                Sign => <T as Scalar>::sign,
                _ => |v| v.mul(v),
            };
            unary_map::<T>(x, f)
        }),
        Floor | Ceil | Round if !x.dtype.is_float() => super::layout::copy(x),
        IsNan | IsInf | IsFinite | IsPosInf | IsNegInf => {
            let f: fn(f64) -> bool = match op {
                IsNan => f64::is_nan,
                IsInf => f64::is_infinite,
                IsFinite => f64::is_finite,
                IsPosInf => |v| v == f64::INFINITY,
                _ => |v| v == f64::NEG_INFINITY,
            };
            dispatch!(x.dtype, T => predicate::<T>(x, f))
        }
        LogicalNot => new_output::<bool>(&x.shape, |out| {
            map1(out, x.view::<bool>(), |v| !v);
            Ok(())
        }),
        BitwiseInvert => dispatch_int!(x.dtype, T => unary_map::<T>(x, <T as BitOps>::not)),
        _ => dispatch_float!(x.dtype, T => float_unary::<T>(op, x)),
    }
}

fn map_binary<T: Element, O: Element>(
    a: &ReadyArray,
    b: &ReadyArray,
    shape: &[usize],
    f: impl Fn(T, T) -> O + Sync,
) -> Result<ReadyArray> {
    let (a, b) = (broadcast(a, shape), broadcast(b, shape));
    new_output::<O>(shape, |out| {
        map2(out, a.view::<T>(), b.view::<T>(), f);
        Ok(())
    })
}

/// `f(a, b)` for an op whose output has the inputs' dtype: written over a donated input's
/// buffer when one has the output's shape, else into a new output.
fn same_type_binary<T: Element>(
    inputs: &mut [ReadyArray],
    shape: &[usize],
    f: impl Fn(T, T) -> T + Sync,
) -> Result<ReadyArray> {
    let (left, right) = inputs.split_at_mut(1);
    let (a, b) = (&mut left[0], &mut right[0]);
    if let Some(data) = a.donatable::<T>(shape) {
        map2_inplace(data, broadcast(b, shape).view::<T>(), f);
        return Ok(a.clone());
    }
    if let Some(data) = b.donatable::<T>(shape) {
        map2_inplace(data, broadcast(a, shape).view::<T>(), |y, x| f(x, y));
        return Ok(b.clone());
    }
    map_binary::<T, T>(a, b, shape, f)
}

pub fn binary(op: BinaryOp, inputs: &mut [ReadyArray], shape: &[usize]) -> Result<ReadyArray> {
    use BinaryOp::*;
    let (a, b) = (&inputs[0], &inputs[1]);
    match op {
        Add | Subtract | Multiply | Divide | FloorDivide | Remainder | Power | Maximum
        | Minimum => dispatch!(a.dtype, T => {
            let f: fn(T, T) -> T = match op {
                Add => <T as Scalar>::add,
                Subtract => <T as Scalar>::sub,
                Multiply => <T as Scalar>::mul,
                Divide => <T as Scalar>::div,
                FloorDivide => <T as Scalar>::floor_div,
                Remainder => <T as Scalar>::rem,
                Power => <T as Scalar>::pow,
                Maximum => <T as Scalar>::max_nan,
                _ => <T as Scalar>::min_nan,
            };
            // The common ops get closures the compiler can inline and vectorise.
            match op {
                Add => same_type_binary::<T>(inputs, shape, |x, y| x.add(y)),
                Multiply => same_type_binary::<T>(inputs, shape, |x, y| x.mul(y)),
                Subtract => same_type_binary::<T>(inputs, shape, |x, y| x.sub(y)),
                Maximum => same_type_binary::<T>(inputs, shape, |x, y| x.max_nan(y)),
                _ => same_type_binary::<T>(inputs, shape, f),
            }
        }),
        Arctan2 | LogAddExp => dispatch_float!(a.dtype, T => {
            let f: fn(<T as FloatElem>::Acc, <T as FloatElem>::Acc) -> <T as FloatElem>::Acc =
                if op == Arctan2 { FloatMath::atan2 } else { logaddexp };
            same_type_binary::<T>(inputs, shape, |x: T, y: T| T::narrow(f(x.widen(), y.widen())))
        }),
        Equal | NotEqual | Less | LessEqual | Greater | GreaterEqual => dispatch!(a.dtype, T => {
            let f: fn(&T, &T) -> bool = match op {
                Equal => <T as PartialEq>::eq,
                NotEqual => <T as PartialEq>::ne,
                Less => <T as PartialOrd>::lt,
                LessEqual => <T as PartialOrd>::le,
                Greater => <T as PartialOrd>::gt,
                _ => <T as PartialOrd>::ge,
            };
            map_binary::<T, bool>(a, b, shape, |x, y| f(&x, &y))
        }),
        LogicalAnd => map_binary::<bool, bool>(a, b, shape, |x, y| x && y),
        LogicalOr => map_binary::<bool, bool>(a, b, shape, |x, y| x || y),
        BitwiseAnd | BitwiseOr | BitwiseXor | LeftShift | RightShift => {
            dispatch_int!(a.dtype, T => {
                let f: fn(T, T) -> T = match op {
                    BitwiseAnd => <T as BitOps>::and,
                    BitwiseOr => <T as BitOps>::or,
                    BitwiseXor => <T as BitOps>::xor,
                    LeftShift => <T as BitOps>::shl,
                    _ => <T as BitOps>::shr,
                };
                same_type_binary::<T>(inputs, shape, f)
            })
        }
    }
}

/// `log(exp(x) + exp(y))` without overflow.
fn logaddexp<F: Float>(x: F, y: F) -> F {
    if x.is_nan() || y.is_nan() {
        return x.add(y);
    }
    let (hi, lo) = if x > y { (x, y) } else { (y, x) };
    if lo == F::lowest() {
        return hi;
    }
    hi.add(lo.sub(hi).exp().ln_1p())
}

pub fn select(inputs: &[ReadyArray], shape: &[usize]) -> Result<ReadyArray> {
    let c = broadcast(&inputs[0], shape);
    let a = broadcast(&inputs[1], shape);
    let b = broadcast(&inputs[2], shape);
    dispatch!(a.dtype, T => new_output::<T>(shape, |out| {
        map3(out, c.view::<bool>(), a.view::<T>(), b.view::<T>(), |c, x, y| if c { x } else { y });
        Ok(())
    }))
}

pub fn astype(x: &ReadyArray, dtype: Dtype) -> Result<ReadyArray> {
    if x.is_contiguous() {
        match (x.dtype, dtype) {
            (Dtype::Float32, Dtype::Float16) => return narrow::<f16>(x),
            (Dtype::Float32, Dtype::Bfloat16) => return narrow::<bf16>(x),
            (Dtype::Float16, Dtype::Float32) => return widen::<f16>(x),
            (Dtype::Bfloat16, Dtype::Float32) => return widen::<bf16>(x),
            _ => {}
        }
    }
    dispatch!(x.dtype, A => dispatch!(dtype, B => new_output::<B>(&x.shape, |out| {
        map1(out, x.view::<A>(), cast::<A, B>);
        Ok(())
    })))
}

/// Contiguous float32 to a half type: `half`'s slice conversion (F16C where the CPU has it),
/// rounded once to nearest even like the element-wise path through f64.
fn narrow<H: FastFloat<Acc = f32> + Element>(x: &ReadyArray) -> Result<ReadyArray> {
    new_output::<H>(&x.shape, |out| {
        H::narrow_slice(x.contiguous_elements::<f32>(), out);
        Ok(())
    })
}

/// Contiguous half values to float32 (exact).
fn widen<H: FastFloat<Acc = f32> + Element>(x: &ReadyArray) -> Result<ReadyArray> {
    new_output::<f32>(&x.shape, |out| {
        H::widen_slice(x.contiguous_elements::<H>(), out);
        Ok(())
    })
}

pub fn arange(start: f64, step: f64, len: usize, dtype: Dtype) -> Result<ReadyArray> {
    dispatch!(dtype, T => new_output::<T>(&[len], |out| {
        for (i, o) in out.iter_mut().enumerate() {
            *o = T::from_f64(start + i as f64 * step);
        }
        Ok(())
    }))
}
