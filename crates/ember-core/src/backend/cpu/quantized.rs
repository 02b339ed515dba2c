//! Quantized ops on the CPU: GGML block products and row lookups through
//! `ember_cpu::quantized`, dequantization through `ember_cpu::ggml` and quantization through
//! `ember_cpu::ggml_quantize`.

use super::dispatch_int;
use super::layout::to_contiguous;
use crate::array::{new_output, ReadyArray};
use crate::op::OutSpec;
use crate::ops::quantized::QuantizedOp;
use crate::{bail, Error, Result};

pub fn eval(
    op: &QuantizedOp,
    inputs: &[ReadyArray],
    outputs: &[OutSpec],
) -> Result<Vec<ReadyArray>> {
    let shape = &outputs[0].0;
    let out = match op {
        QuantizedOp::GgmlMatmul { ty, layout } => {
            let x = to_contiguous(&inputs[0])?;
            let parts = inputs[1..].iter().map(to_contiguous).collect::<Result<Vec<_>>>()?;
            let k = x.shape[x.shape.len() - 1];
            let m: usize = x.shape[..x.shape.len() - 1].iter().product();
            new_output::<f32>(shape, |out| {
                let xs = x.contiguous_elements::<f32>();
                let ws: Vec<&[u8]> = parts.iter().map(|w| w.contiguous_elements::<u8>()).collect();
                ember_cpu::quantized::matmul_parts(*ty, *layout, out, xs, &ws, m, k);
                Ok(())
            })?
        }
        QuantizedOp::GgmlDequantize { ty } => {
            let w = to_contiguous(&inputs[0])?;
            new_output::<f32>(shape, |out| {
                let ws = w.contiguous_elements::<u8>();
                if !ember_cpu::ggml::dequantize(*ty, ws, out) {
                    bail!("dequantize", "cannot dequantize {} blocks", ty.name());
                }
                Ok(())
            })?
        }
        QuantizedOp::GgmlRows { ty, layout } => {
            let (w, ids) = (to_contiguous(&inputs[0])?, &inputs[1]);
            let rows = w.shape[0];
            let ids = dispatch_int!(ids.dtype, I => ember_cpu::index::resolve_indices(
                ids.view::<I>(),
                rows
            )
            .map_err(|i| {
                Error::op("dequantize_rows", format!("id {i} is out of range for {rows} rows"))
            }))?;
            let k = shape[shape.len() - 1];
            new_output::<f32>(shape, |out| {
                let ws = w.contiguous_elements::<u8>();
                if !ember_cpu::quantized::dequantize_rows(*ty, *layout, ws, k, &ids, out) {
                    bail!("dequantize_rows", "cannot dequantize {} rows", ty.name());
                }
                Ok(())
            })?
        }
        QuantizedOp::GgmlQuantize { ty } => {
            let x = to_contiguous(&inputs[0])?;
            new_output::<u8>(shape, |out| {
                let xs = x.contiguous_elements::<f32>();
                if !ember_cpu::ggml_quantize::quantize(*ty, xs, out) {
                    bail!("quantize", "cannot write {} blocks", ty.name());
                }
                Ok(())
            })?
        }
    };
    Ok(vec![out])
}
