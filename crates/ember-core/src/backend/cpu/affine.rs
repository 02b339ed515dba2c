//! Affine quantization on the CPU: `ember_cpu::affine` (quantize, dequantize) and
//! `ember_cpu::affine_matmul` (products), over contiguous copies of the inputs.

use super::layout::to_contiguous;
use crate::array::{alloc_output, new_output, typed_mut, ReadyArray};
use crate::dtype::{Dtype, Element};
use crate::op::OutSpec;
use crate::ops::affine::AffineOp;
use crate::{bail, bf16, f16, Result};
use ember_cpu::affine_matmul::Quantized;
use ember_cpu::FloatElem;

/// Runs `$body` with `$T` bound to the scales' element type (the three the ops accept).
macro_rules! dispatch_scale {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            Dtype::Float32 => {
                type $T = f32;
                $body
            }
            Dtype::Float16 => {
                type $T = f16;
                $body
            }
            Dtype::Bfloat16 => {
                type $T = bf16;
                $body
            }
            d => bail!(
                "eval",
                "affine quantization computes in float32, float16 and bfloat16, not {}",
                d
            ),
        }
    };
}

pub fn eval(op: &AffineOp, inputs: &[ReadyArray], outputs: &[OutSpec]) -> Result<Vec<ReadyArray>> {
    let inputs = inputs.iter().map(to_contiguous).collect::<Result<Vec<_>>>()?;
    match *op {
        AffineOp::Quantize { group_size, bits } => {
            let w = &inputs[0];
            dispatch_scale!(w.dtype, T => quantize::<T>(w, outputs, group_size, bits))
        }
        AffineOp::Dequantize { group_size, bits } => {
            let (w, s, b) = (&inputs[0], &inputs[1], &inputs[2]);
            dispatch_scale!(s.dtype, T => Ok(vec![new_output::<T>(&outputs[0].0, |out| {
                ember_cpu::affine::dequantize(
                    w.contiguous_elements::<u32>(), s.contiguous_elements::<T>(), b.contiguous_elements::<T>(), group_size, bits, out,
                );
                Ok(())
            })?]))
        }
        AffineOp::Matmul { group_size, bits, transpose } => {
            let (x, w, s, b) = (&inputs[0], &inputs[1], &inputs[2], &inputs[3]);
            let shape = &outputs[0].0;
            let n = shape[shape.len() - 1];
            let k = x.shape[x.shape.len() - 1];
            let m = x.size() / k.max(1);
            dispatch_scale!(s.dtype, T => Ok(vec![new_output::<f32>(shape, |out| {
                let q = Quantized {
                    codes: w.contiguous_elements::<u32>(),
                    scales: s.contiguous_elements::<T>(),
                    biases: b.contiguous_elements::<T>(),
                    group: group_size,
                    bits,
                };
                let xs = x.contiguous_elements::<f32>();
                if m == 0 {
                    // No rows (and possibly k = 0 with rows): nothing to compute.
                    out.fill(0.0);
                } else if transpose {
                    ember_cpu::affine_matmul::matmul_t(out, xs, q, m, n, k);
                } else {
                    ember_cpu::affine_matmul::matmul(out, xs, q, m, n, k);
                }
                Ok(())
            })?]))
        }
    }
}

/// The three outputs of `quantize` (codes, scales, biases) for a contiguous `w` of `T`.
fn quantize<T: Element + FloatElem<Acc = f32>>(
    w: &ReadyArray,
    outputs: &[OutSpec],
    group_size: usize,
    bits: usize,
) -> Result<Vec<ReadyArray>> {
    let size = |i: usize| outputs[i].0.iter().product::<usize>();
    let mut codes = alloc_output(Dtype::Uint32, size(0))?;
    let mut scales = alloc_output(T::DTYPE, size(1))?;
    let mut biases = alloc_output(T::DTYPE, size(2))?;
    ember_cpu::affine::quantize(
        w.contiguous_elements::<T>(),
        group_size,
        bits,
        &mut typed_mut::<u32>(&mut codes)[..size(0)],
        &mut typed_mut::<T>(&mut scales)[..size(1)],
        &mut typed_mut::<T>(&mut biases)[..size(2)],
    );
    Ok([(codes, 0), (scales, 1), (biases, 2)]
        .into_iter()
        .map(|(buf, i)| ReadyArray::contiguous(buf, outputs[i].0.clone(), outputs[i].1))
        .collect())
}
