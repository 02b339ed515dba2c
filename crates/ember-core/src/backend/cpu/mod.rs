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
    ($dtype:expr, $T:ident => $body:expr) => {{
        use $crate::Dtype as D;
        match $dtype {
            D::Float16 => {
                type $T = $crate::f16;
                $body
            }
            D::Bfloat16 => {
                type $T = $crate::bf16;
                $body
            }
            D::Float32 => {
                type $T = f32;
                $body
            }
            D::Float64 => {
                type $T = f64;
                $body
            }
            d => $crate::bail!("eval", "expected a float dtype, got {}", d),
        }
    }};
}

/// Runs `$body` with `$T` bound to each integer element type (and bool).
macro_rules! dispatch_int {
    ($dtype:expr, $T:ident => $body:expr) => {{
        use $crate::Dtype as D;
        match $dtype {
            D::Bool => {
                type $T = bool;
                $body
            }
            D::Uint8 => {
                type $T = u8;
                $body
            }
            D::Uint16 => {
                type $T = u16;
                $body
            }
            D::Uint32 => {
                type $T = u32;
                $body
            }
            D::Uint64 => {
                type $T = u64;
                $body
            }
            D::Int8 => {
                type $T = i8;
                $body
            }
            D::Int16 => {
                type $T = i16;
                $body
            }
            D::Int32 => {
                type $T = i32;
                $body
            }
            D::Int64 => {
                type $T = i64;
                $body
            }
            d => $crate::bail!("eval", "expected an integer dtype, got {}", d),
        }
    }};
}

pub(crate) use {dispatch_float, dispatch_int};
