//! `Op`: the closed set of primitives the graph records. Each family keeps its parameters and
//! shape inference in its own module; `Op` is `Eq + Hash` so graphs can be compared and cached.

use crate::array::Array;
use crate::dtype::Dtype;
use crate::ops::{
    affine::AffineOp, conv::ConvOp, elementwise::BinaryOp, elementwise::UnaryOp, fast::FastOp, index::IndexOp,
    layout::LayoutOp, linalg::LinalgOp, quantized::QuantizedOp, random::RandomOp,
    reduce::ReduceOp, sort::SortOp,
};
use crate::transforms::{CustomOp, FusedProgram};
use crate::Result;

/// The shape and dtype of one output.
pub type OutSpec = (Vec<usize>, Dtype);

/// An f64 parameter compared and hashed by its bits, so `Op` can be `Eq + Hash`.
#[derive(Clone, Copy, Debug)]
pub struct F64(pub f64);

impl PartialEq for F64 {
    fn eq(&self, o: &Self) -> bool {
        self.0.to_bits() == o.0.to_bits()
    }
}
impl Eq for F64 {}
impl std::hash::Hash for F64 {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.to_bits().hash(h)
    }
}

/// Behaviour every op family provides.
pub trait Primitive {
    /// The op's MLX name, used in error messages.
    fn name(&self) -> &'static str;
    /// Output shapes and dtypes, or an error naming what is wrong with the inputs.
    fn infer(&self, inputs: &[&Array]) -> Result<Vec<OutSpec>>;
}

/// A primitive recorded in the graph.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Unary(UnaryOp),
    Binary(BinaryOp),
    /// `where(cond, a, b)`: inputs already share a dtype for a and b.
    Select,
    AsType(Dtype),
    /// `len` values `start + i * step` of `dtype`.
    Arange { start: F64, step: F64, len: usize, dtype: Dtype },
    Layout(LayoutOp),
    Reduce(ReduceOp),
    Linalg(LinalgOp),
    Index(IndexOp),
    Sort(SortOp),
    Conv(ConvOp),
    Fast(FastOp),
    Random(RandomOp),
    Quantized(QuantizedOp),
    Affine(AffineOp),
    /// The input unchanged; transforms treat the result as a constant.
    StopGradient,
    /// A custom function call: inputs are the primals then the forward's outputs, which
    /// pass through (see transforms/custom.rs).
    Custom(CustomOp),
    /// A fused elementwise region made by `compile` (see transforms/compile).
    Compiled(std::sync::Arc<FusedProgram>),
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Unary(o) => o.name(),
            Op::Binary(o) => o.name(),
            Op::Select => "where",
            Op::AsType(_) => "astype",
            Op::Arange { .. } => "arange",
            Op::Layout(o) => o.name(),
            Op::Reduce(o) => o.name(),
            Op::Linalg(o) => o.name(),
            Op::Index(o) => o.name(),
            Op::Sort(o) => o.name(),
            Op::Conv(o) => o.name(),
            Op::Fast(o) => o.name(),
            Op::Random(o) => o.name(),
            Op::Quantized(o) => o.name(),
            Op::Affine(o) => o.name(),
            Op::StopGradient => "stop_gradient",
            Op::Custom(_) => "custom_function",
            Op::Compiled(_) => "compiled",
        }
    }

    pub fn infer(&self, inputs: &[&Array]) -> Result<Vec<OutSpec>> {
        match self {
            Op::Unary(o) => o.infer(inputs),
            Op::Binary(o) => o.infer(inputs),
            Op::Select => crate::ops::elementwise::infer_select(inputs),
            Op::AsType(d) => Ok(vec![(inputs[0].shape().to_vec(), *d)]),
            Op::Arange { len, dtype, .. } => Ok(vec![(vec![*len], *dtype)]),
            Op::Layout(o) => o.infer(inputs),
            Op::Reduce(o) => o.infer(inputs),
            Op::Linalg(o) => o.infer(inputs),
            Op::Index(o) => o.infer(inputs),
            Op::Sort(o) => o.infer(inputs),
            Op::Conv(o) => o.infer(inputs),
            Op::Fast(o) => o.infer(inputs),
            Op::Random(o) => o.infer(inputs),
            Op::Quantized(o) => o.infer(inputs),
            Op::Affine(o) => o.infer(inputs),
            Op::StopGradient => Ok(vec![(inputs[0].shape().to_vec(), inputs[0].dtype())]),
            Op::Custom(c) => Ok(c.infer(inputs)),
            Op::Compiled(p) => p.infer(inputs),
        }
    }
}
