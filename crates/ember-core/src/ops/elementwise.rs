//! Elementwise ops: unary math, binary ops with broadcasting and type promotion, `where`,
//! `clip`, `astype`. Inputs are cast here, so kernels see one dtype per op.

use super::{broadcast_shapes, broadcast_to};
use crate::array::Array;
use crate::dtype::{promote_types, Dtype};
use crate::op::{Op, OutSpec, Primitive};
use crate::{bail, Result};

macro_rules! op_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),* }
        impl $name {
            pub fn mlx_name(self) -> &'static str {
                match self { $($name::$variant => $s),* }
            }
        }
    };
}

op_enum!(
    /// Elementwise functions of one array.
    UnaryOp {
        Abs => "abs", Negative => "negative", Sign => "sign", Square => "square",
        Exp => "exp", Expm1 => "expm1", Log => "log", Log1p => "log1p", Log2 => "log2",
        Log10 => "log10", Sqrt => "sqrt", Rsqrt => "rsqrt", Reciprocal => "reciprocal",
        Sin => "sin", Cos => "cos", Tan => "tan", Arcsin => "arcsin", Arccos => "arccos",
        Arctan => "arctan", Sinh => "sinh", Cosh => "cosh", Tanh => "tanh",
        Arcsinh => "arcsinh", Arccosh => "arccosh", Arctanh => "arctanh",
        Sigmoid => "sigmoid", Erf => "erf", Erfinv => "erfinv",
        Floor => "floor", Ceil => "ceil", Round => "round",
        IsNan => "isnan", IsInf => "isinf", IsFinite => "isfinite",
        IsPosInf => "isposinf", IsNegInf => "isneginf",
        LogicalNot => "logical_not", BitwiseInvert => "bitwise_invert",
    }
);

op_enum!(
    /// Elementwise functions of two arrays (broadcast together).
    BinaryOp {
        Add => "add", Subtract => "subtract", Multiply => "multiply", Divide => "divide",
        FloorDivide => "floor_divide", Remainder => "remainder", Power => "power",
        Maximum => "maximum", Minimum => "minimum", Arctan2 => "arctan2",
        LogAddExp => "logaddexp",
        Equal => "equal", NotEqual => "not_equal", Less => "less", LessEqual => "less_equal",
        Greater => "greater", GreaterEqual => "greater_equal",
        LogicalAnd => "logical_and", LogicalOr => "logical_or",
        BitwiseAnd => "bitwise_and", BitwiseOr => "bitwise_or", BitwiseXor => "bitwise_xor",
        LeftShift => "left_shift", RightShift => "right_shift",
    }
);

/// What a unary op does to its input's dtype.
enum UnaryKind {
    /// Same dtype in and out.
    Same,
    /// Computes in floats: integer inputs become float32.
    Float,
    /// Returns bool.
    Predicate,
}

impl UnaryOp {
    fn kind(self) -> UnaryKind {
        use UnaryOp::*;
        match self {
            Abs | Negative | Sign | Square | Floor | Ceil | Round | BitwiseInvert => {
                UnaryKind::Same
            }
            IsNan | IsInf | IsFinite | IsPosInf | IsNegInf | LogicalNot => UnaryKind::Predicate,
            _ => UnaryKind::Float,
        }
    }
}

impl Primitive for UnaryOp {
    fn name(&self) -> &'static str {
        self.mlx_name()
    }

    fn infer(&self, inputs: &[&Array]) -> Result<Vec<OutSpec>> {
        let x = inputs[0];
        let dtype = match self.kind() {
            UnaryKind::Predicate => Dtype::Bool,
            _ => x.dtype(),
        };
        Ok(vec![(x.shape().to_vec(), dtype)])
    }
}

impl BinaryOp {
    pub fn is_comparison(self) -> bool {
        use BinaryOp::*;
        matches!(self, Equal | NotEqual | Less | LessEqual | Greater | GreaterEqual)
    }

    fn is_logical(self) -> bool {
        matches!(self, BinaryOp::LogicalAnd | BinaryOp::LogicalOr)
    }

    fn is_bitwise(self) -> bool {
        use BinaryOp::*;
        matches!(self, BitwiseAnd | BitwiseOr | BitwiseXor | LeftShift | RightShift)
    }

    fn needs_float(self) -> bool {
        use BinaryOp::*;
        matches!(self, Divide | Arctan2 | LogAddExp)
    }
}

impl Primitive for BinaryOp {
    fn name(&self) -> &'static str {
        self.mlx_name()
    }

    fn infer(&self, inputs: &[&Array]) -> Result<Vec<OutSpec>> {
        let (a, b) = (inputs[0], inputs[1]);
        let shape = broadcast_shapes(self.name(), a.shape(), b.shape())?;
        if a.dtype() != b.dtype() {
            bail!(self.name(), "inputs must share a dtype, got {} and {}", a.dtype(), b.dtype());
        }
        let dtype = if self.is_comparison() || self.is_logical() { Dtype::Bool } else { a.dtype() };
        Ok(vec![(shape, dtype)])
    }
}

pub(crate) fn infer_select(inputs: &[&Array]) -> Result<Vec<OutSpec>> {
    let (c, a, b) = (inputs[0], inputs[1], inputs[2]);
    let shape = broadcast_shapes("where", a.shape(), b.shape())?;
    let shape = broadcast_shapes("where", c.shape(), &shape)?;
    Ok(vec![(shape, a.dtype())])
}

/// Converts `x` to `dtype` (a no-op when it already is).
pub fn astype(x: &Array, dtype: Dtype) -> Result<Array> {
    if x.dtype() == dtype {
        return Ok(x.clone());
    }
    Array::from_op(Op::AsType(dtype), vec![x.clone()])
}

/// Applies a unary op, casting integer inputs to float32 for the float-valued functions.
pub fn unary(op: UnaryOp, x: &Array) -> Result<Array> {
    let name = op.mlx_name();
    let x = match (op.kind(), x.dtype()) {
        (UnaryKind::Float, d) if !d.is_float() => astype(x, Dtype::Float32)?,
        _ => x.clone(),
    };
    match op {
        UnaryOp::Negative if x.dtype() == Dtype::Bool => {
            bail!(name, "not supported for bool, use logical_not instead")
        }
        UnaryOp::BitwiseInvert if x.dtype().is_float() => {
            bail!(name, "not supported for floating point dtype {}", x.dtype())
        }
        UnaryOp::LogicalNot if x.dtype() != Dtype::Bool => {
            let b = astype(&x, Dtype::Bool)?;
            return Array::from_op(Op::Unary(op), vec![b]);
        }
        _ => {}
    }
    Array::from_op(Op::Unary(op), vec![x])
}

/// Applies a binary op with MLX's promotion and broadcasting.
pub fn binary(op: BinaryOp, a: &Array, b: &Array) -> Result<Array> {
    let name = op.mlx_name();
    broadcast_shapes(name, a.shape(), b.shape())?;
    let mut dtype = promote_types(a.dtype(), b.dtype());
    if op.is_logical() {
        dtype = Dtype::Bool;
    } else if op.needs_float() {
        dtype = dtype.to_float();
    } else if op.is_bitwise() && dtype.is_float() {
        bail!(name, "not supported for floating point dtype {}", dtype);
    }
    Array::from_op(Op::Binary(op), vec![astype(a, dtype)?, astype(b, dtype)?])
}

/// `cond ? a : b` elementwise, broadcasting all three.
pub fn where_(cond: &Array, a: &Array, b: &Array) -> Result<Array> {
    let dtype = promote_types(a.dtype(), b.dtype());
    let shape = broadcast_shapes("where", a.shape(), b.shape())?;
    broadcast_shapes("where", cond.shape(), &shape)?;
    Array::from_op(
        Op::Select,
        vec![astype(cond, Dtype::Bool)?, astype(a, dtype)?, astype(b, dtype)?],
    )
}

/// Limits values to `[min, max]`; either bound may be omitted (not both).
pub fn clip(x: &Array, min: Option<&Array>, max: Option<&Array>) -> Result<Array> {
    if min.is_none() && max.is_none() {
        bail!("clip", "min and max cannot both be None");
    }
    let mut out = x.clone();
    if let Some(lo) = min {
        out = binary(BinaryOp::Maximum, &out, lo)?;
    }
    if let Some(hi) = max {
        out = binary(BinaryOp::Minimum, &out, hi)?;
    }
    Ok(out)
}

/// Broadcasts every argument to their common shape.
pub fn broadcast_arrays(arrays: &[&Array]) -> Result<Vec<Array>> {
    let mut shape: Vec<usize> = vec![];
    for a in arrays {
        shape = broadcast_shapes("broadcast_arrays", &shape, a.shape())?;
    }
    arrays.iter().map(|a| broadcast_to(a, &shape)).collect()
}

macro_rules! unary_fns {
    ($($(#[$m:meta])* $f:ident => $v:ident),* $(,)?) => {$(
        $(#[$m])*
        pub fn $f(x: &Array) -> Result<Array> { unary(UnaryOp::$v, x) }
    )*};
}

unary_fns!(
    abs => Abs, negative => Negative, sign => Sign, square => Square, exp => Exp,
    expm1 => Expm1, log => Log, log1p => Log1p, log2 => Log2, log10 => Log10, sqrt => Sqrt,
    rsqrt => Rsqrt, reciprocal => Reciprocal, sin => Sin, cos => Cos, tan => Tan,
    arcsin => Arcsin, arccos => Arccos, arctan => Arctan, sinh => Sinh, cosh => Cosh,
    tanh => Tanh, arcsinh => Arcsinh, arccosh => Arccosh, arctanh => Arctanh,
    sigmoid => Sigmoid, erf => Erf, erfinv => Erfinv, floor => Floor, ceil => Ceil,
    /// Rounds half to even, as NumPy and MLX do.
    round => Round,
    isnan => IsNan, isinf => IsInf, isfinite => IsFinite, isposinf => IsPosInf,
    isneginf => IsNegInf, logical_not => LogicalNot, bitwise_invert => BitwiseInvert,
);

macro_rules! binary_fns {
    ($($(#[$m:meta])* $f:ident => $v:ident),* $(,)?) => {$(
        $(#[$m])*
        pub fn $f(a: &Array, b: &Array) -> Result<Array> { binary(BinaryOp::$v, a, b) }
    )*};
}

binary_fns!(
    add => Add, subtract => Subtract, multiply => Multiply,
    /// True division: integer inputs give float32.
    divide => Divide,
    floor_divide => FloorDivide,
    /// Remainder with the sign of the divisor (Python's `%`).
    remainder => Remainder,
    power => Power, maximum => Maximum, minimum => Minimum, arctan2 => Arctan2,
    logaddexp => LogAddExp, equal => Equal, not_equal => NotEqual, less => Less,
    less_equal => LessEqual, greater => Greater, greater_equal => GreaterEqual,
    logical_and => LogicalAnd, logical_or => LogicalOr, bitwise_and => BitwiseAnd,
    bitwise_or => BitwiseOr, bitwise_xor => BitwiseXor, left_shift => LeftShift,
    right_shift => RightShift,
);
