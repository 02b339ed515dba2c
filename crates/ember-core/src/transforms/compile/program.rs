//! `FusedProgram`: the payload of `Op::Compiled`, a straight-line list of elementwise ops over
//! the fused region's inputs. It says which ops may be fused and how each maps onto the CPU
//! interpreter's functions, and it replays itself as plain ops, which gives the compiled op
//! its vjp, jvp and batching rules (transforms see through a fused region).

use crate::array::Array;
use crate::dtype::Dtype;
use crate::op::{Op, OutSpec};
use crate::ops::elementwise::{BinaryOp, UnaryOp};
use crate::ops::{broadcast_shapes, broadcast_to};
use crate::transforms::autodiff;
use crate::transforms::batching::align_batch_first;
use crate::transforms::vmap::Batched;
use crate::{bail, Result};
use ember_cpu::fused::{Func1, Func2};

/// One instruction: `op` applied to earlier values `args`, giving a value of `dtype`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FusedInstr {
    pub op: Op,
    pub args: Vec<usize>,
    pub dtype: Dtype,
}

/// A fused elementwise region. Values `0..inputs.len()` are the inputs; instruction `i`
/// defines value `inputs.len() + i`; `outputs` lists the values returned. Every output has
/// the broadcast shape of all inputs. Equality and hashing are by content.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FusedProgram {
    pub inputs: Vec<Dtype>,
    pub instrs: Vec<FusedInstr>,
    pub outputs: Vec<usize>,
}

/// The numeric class a fused program computes in: all values of one program share it (bool
/// values fit either, as 0 and 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    Bool,
    /// f32, f16 and bf16, computed in f32.
    F32,
    F64,
}

impl Class {
    fn of(dtype: Dtype) -> Option<Class> {
        match dtype {
            Dtype::Bool => Some(Class::Bool),
            Dtype::Float32 | Dtype::Float16 | Dtype::Bfloat16 => Some(Class::F32),
            Dtype::Float64 => Some(Class::F64),
            _ => None,
        }
    }

    /// The class of values of both classes, if they can share a program.
    pub(crate) fn join(self, other: Class) -> Option<Class> {
        match (self, other) {
            (Class::Bool, c) | (c, Class::Bool) => Some(c),
            (a, b) if a == b => Some(a),
            _ => None,
        }
    }
}

/// The interpreter function of a unary op on floats (or bools, for `logical_not`).
pub(crate) fn unary_fn(op: UnaryOp) -> Option<Func1> {
    use UnaryOp::*;
    Some(match op {
        Abs => Func1::Abs,
        Negative => Func1::Neg,
        Sign => Func1::Sign,
        Square => Func1::Square,
        Exp => Func1::Exp,
        Expm1 => Func1::Expm1,
        Log => Func1::Log,
        Log1p => Func1::Log1p,
        Log2 => Func1::Log2,
        Log10 => Func1::Log10,
        Sqrt => Func1::Sqrt,
        Rsqrt => Func1::Rsqrt,
        Reciprocal => Func1::Recip,
        Sin => Func1::Sin,
        Cos => Func1::Cos,
        Tan => Func1::Tan,
        Arcsin => Func1::Asin,
        Arccos => Func1::Acos,
        Arctan => Func1::Atan,
        Sinh => Func1::Sinh,
        Cosh => Func1::Cosh,
        Tanh => Func1::Tanh,
        Arcsinh => Func1::Asinh,
        Arccosh => Func1::Acosh,
        Arctanh => Func1::Atanh,
        Sigmoid => Func1::Sigmoid,
        Erf => Func1::Erf,
        Erfinv => Func1::Erfinv,
        Floor => Func1::Floor,
        Ceil => Func1::Ceil,
        Round => Func1::RoundEven,
        IsNan => Func1::IsNan,
        IsInf => Func1::IsInf,
        IsFinite => Func1::IsFinite,
        IsPosInf => Func1::IsPosInf,
        IsNegInf => Func1::IsNegInf,
        LogicalNot => Func1::Not,
        BitwiseInvert => return None,
    })
}

/// The interpreter function of a binary op on floats (or bools, for the logical ops).
pub(crate) fn binary_fn(op: BinaryOp) -> Option<Func2> {
    use BinaryOp::*;
    Some(match op {
        Add => Func2::Add,
        Subtract => Func2::Sub,
        Multiply => Func2::Mul,
        Divide => Func2::Div,
        FloorDivide => Func2::FloorDiv,
        Remainder => Func2::Rem,
        Power => Func2::Pow,
        Maximum => Func2::Max,
        Minimum => Func2::Min,
        Arctan2 => Func2::Atan2,
        Equal => Func2::Eq,
        NotEqual => Func2::Ne,
        Less => Func2::Lt,
        LessEqual => Func2::Le,
        Greater => Func2::Gt,
        GreaterEqual => Func2::Ge,
        LogicalAnd => Func2::And,
        LogicalOr => Func2::Or,
        LogAddExp | BitwiseAnd | BitwiseOr | BitwiseXor | LeftShift | RightShift => return None,
    })
}

/// The class of a single-output op on inputs of `inputs` dtypes giving `output`, when a
/// fused program can compute it exactly as the op's own kernel does.
pub(crate) fn fusable(op: &Op, inputs: &[Dtype], output: Dtype) -> Option<Class> {
    let floats = inputs.iter().all(|d| d.is_float());
    let bools = inputs.iter().all(|&d| d == Dtype::Bool);
    let ok = match op {
        Op::Unary(u) => unary_fn(*u).is_some() && (floats || (bools && *u == UnaryOp::LogicalNot)),
        Op::Binary(b) => {
            let logical = matches!(b, BinaryOp::LogicalAnd | BinaryOp::LogicalOr);
            let equality = matches!(b, BinaryOp::Equal | BinaryOp::NotEqual);
            binary_fn(*b).is_some() && ((floats && !logical) || (bools && (logical || equality)))
        }
        Op::Select | Op::AsType(_) => true,
        _ => false,
    };
    if !ok {
        return None;
    }
    inputs.iter().chain([&output]).try_fold(Class::Bool, |c, &d| c.join(Class::of(d)?))
}

impl FusedProgram {
    /// The dtype of value `v`.
    pub fn dtype(&self, v: usize) -> Dtype {
        match v.checked_sub(self.inputs.len()) {
            Some(i) => self.instrs[i].dtype,
            None => self.inputs[v],
        }
    }

    /// True when the program computes in f64 (some value is f64).
    pub fn computes_in_f64(&self) -> bool {
        self.inputs.iter().chain(self.instrs.iter().map(|i| &i.dtype)).any(|&d| d == Dtype::Float64)
    }

    /// Output shapes and dtypes: every output has the inputs' broadcast shape.
    pub(crate) fn infer(&self, inputs: &[&Array]) -> Result<Vec<OutSpec>> {
        if inputs.len() != self.inputs.len() {
            bail!("compiled", "expected {} inputs, got {}", self.inputs.len(), inputs.len());
        }
        let mut shape: Vec<usize> = vec![];
        for (i, (x, &d)) in inputs.iter().zip(&self.inputs).enumerate() {
            if x.dtype() != d {
                bail!(
                    "compiled",
                    "input {} has dtype {} but the program expects {}",
                    i,
                    x.dtype(),
                    d
                );
            }
            shape = broadcast_shapes("compiled", &shape, x.shape())?;
        }
        Ok(self.outputs.iter().map(|&v| (shape.clone(), self.dtype(v))).collect())
    }

    /// The outputs computed with the plain ops the program was fused from.
    pub(crate) fn decompose(&self, inputs: &[Array]) -> Result<Vec<Array>> {
        let mut values = inputs.to_vec();
        for ins in &self.instrs {
            let args = ins.args.iter().map(|&a| values[a].clone()).collect();
            values.push(Array::from_op(ins.op.clone(), args)?);
        }
        let refs: Vec<&Array> = inputs.iter().collect();
        let shape = self.infer(&refs)?[0].0.clone();
        self.outputs
            .iter()
            .map(|&v| {
                let y = &values[v];
                if y.shape() == shape {
                    Ok(y.clone())
                } else {
                    broadcast_to(y, &shape)
                }
            })
            .collect()
    }

    /// The vjp rule: differentiates the plain ops.
    pub(crate) fn vjp(
        &self,
        inputs: &[Array],
        cotangents: &[Array],
        argnums: &[usize],
    ) -> Result<Vec<Array>> {
        let (_, grads) = autodiff::vjp(|x| self.decompose(x), inputs, cotangents)?;
        Ok(argnums.iter().map(|&i| grads[i].clone()).collect())
    }

    /// The jvp rule: differentiates the plain ops.
    pub(crate) fn jvp(&self, inputs: &[Array], tangents: &[Option<Array>]) -> Result<Vec<Array>> {
        let tangents = inputs
            .iter()
            .zip(tangents)
            .map(|(x, t)| t.clone().map_or_else(|| crate::ops::zeros_like(x), Ok))
            .collect::<Result<Vec<_>>>()?;
        Ok(autodiff::jvp(|x| self.decompose(x), inputs, &tangents)?.1)
    }

    /// The batching rule. Every instruction is elementwise, so the program itself runs on
    /// the whole batch: batched inputs get their batch axis first and ones after it up to
    /// the example rank, so that they broadcast against the unbatched inputs.
    pub(crate) fn vmap(&self, inputs: &[Batched], size: usize) -> Result<Vec<Batched>> {
        let aligned = align_batch_first(inputs, size)?;
        let outs = Array::from_op_multi(Op::Compiled(std::sync::Arc::new(self.clone())), aligned)?;
        Ok(outs.into_iter().map(|y| (y, Some(0))).collect())
    }
}
