//! The CPU backend: maps each op onto the kernels of `ember-cpu`, one module per family.

mod affine;
mod compiled;
mod conv;
mod elementwise;
mod fast;
mod index;
pub(crate) mod layout;
mod linalg;
mod quantized;
mod random;
mod reduce;
mod sort;

use super::Backend;
use crate::array::ReadyArray;
use crate::device::Device;
use crate::dtype::Dtype;
use crate::op::{Op, OutSpec};
use crate::Result;

pub struct CpuBackend;

impl Backend for CpuBackend {
    fn device(&self) -> Device {
        Device::Cpu
    }

    fn supports(&self, _op: &Op, _dtypes: &[Dtype]) -> bool {
        true
    }

    fn eval(
        &self,
        op: &Op,
        inputs: &mut [ReadyArray],
        outputs: &[OutSpec],
    ) -> Result<Vec<ReadyArray>> {
        let one = |r: Result<ReadyArray>| r.map(|a| vec![a]);
        match op {
            Op::Unary(u) => one(elementwise::unary(*u, &mut inputs[0])),
            Op::Binary(b) => one(elementwise::binary(*b, inputs, &outputs[0].0)),
            Op::Select => one(elementwise::select(inputs, &outputs[0].0)),
            Op::AsType(d) => one(elementwise::astype(&inputs[0], *d)),
            Op::Arange { start, step, len, dtype } => {
                one(elementwise::arange(start.0, step.0, *len, *dtype))
            }
            Op::Layout(l) => one(layout::eval(l, &inputs[0])),
            Op::Linalg(l) => linalg::eval(l, inputs, outputs),
            Op::Reduce(o) => reduce::eval(o, inputs, outputs),
            Op::Index(o) => index::eval(o, inputs, outputs),
            Op::Sort(o) => sort::eval(o, inputs, outputs),
            Op::Conv(o) => conv::eval(o, inputs, outputs),
            Op::Fast(o) => fast::eval(o, inputs, outputs),
            Op::Random(o) => random::eval(o, inputs, outputs),
            Op::Quantized(o) => quantized::eval(o, inputs, outputs),
            Op::Affine(o) => affine::eval(o, inputs, outputs),
            Op::Compiled(p) => compiled::eval(p, inputs, outputs),
            // Pass-throughs: the value is the input's (for Custom, the forward's outputs).
            Op::StopGradient => Ok(vec![inputs[0].clone()]),
            Op::Custom(_) => Ok(inputs[inputs.len() - outputs.len()..].to_vec()),
        }
    }
}

/// Runs `$body` with `$T` bound to each float element type.
macro_rules! dispatch_float {
    ($dtype:expr, $T:ident => $body:expr) => {
        $crate::dispatch_among!($dtype, $T => $body, [
            Float16: $crate::f16, Bfloat16: $crate::bf16, Float32: f32, Float64: f64
        ], d => $crate::bail!("eval", "expected a float dtype, got {}", d))
    };
}

/// Runs `$body` with `$T` bound to each integer element type (and bool).
macro_rules! dispatch_int {
    ($dtype:expr, $T:ident => $body:expr) => {
        $crate::dispatch_among!($dtype, $T => $body, [
            Bool: bool, Uint8: u8, Uint16: u16, Uint32: u32, Uint64: u64,
            Int8: i8, Int16: i16, Int32: i32, Int64: i64
        ], d => $crate::bail!("eval", "expected an integer dtype, got {}", d))
    };
}

pub(crate) use {dispatch_float, dispatch_int};
