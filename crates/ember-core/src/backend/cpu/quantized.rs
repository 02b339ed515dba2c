//! Quantized ops on the CPU: GGML block products through `ember_cpu::quantized`, and
//! dequantization through `ember_cpu::ggml`.

use super::layout::to_contiguous;
use crate::array::{new_output, ReadyArray};
use crate::op::OutSpec;
use crate::ops::quantized::QuantizedOp;
use crate::{bail, Result};

pub fn eval(
    op: &QuantizedOp,
    inputs: &[ReadyArray],
    outputs: &[OutSpec],
) -> Result<Vec<ReadyArray>> {
    let shape = &outputs[0].0;
    let out = match op {
        QuantizedOp::GgmlMatmul { ty } => {
            let (x, w) = (to_contiguous(&inputs[0])?, to_contiguous(&inputs[1])?);
            let k = x.shape[x.shape.len() - 1];
            let n = w.shape[0];
            let m: usize = x.shape[..x.shape.len() - 1].iter().product();
            new_output::<f32>(shape, |out| {
                let xs = &x.elements::<f32>()[x.offset..][..x.size()];
                let ws = &w.elements::<u8>()[w.offset..][..w.size()];
                ember_cpu::quantized::matmul(*ty, out, xs, ws, m, n, k);
                Ok(())
            })?
        }
        QuantizedOp::GgmlDequantize { ty } => {
            let w = to_contiguous(&inputs[0])?;
            new_output::<f32>(shape, |out| {
                let ws = &w.elements::<u8>()[w.offset..][..w.size()];
                if !ember_cpu::ggml::dequantize(*ty, ws, out) {
                    bail!("dequantize", "cannot dequantize {} blocks", ty.name());
                }
                Ok(())
            })?
        }
    };
    Ok(vec![out])
}
