//! Fused ops on the CPU: contiguous rows into the kernels of `ember_cpu::fast`, and attention
//! into `ember_cpu::attention` (which computes in f32 or f64: half inputs are converted in
//! bulk around it, except f16 keys and values under f32 queries, which it reads as they are).

use super::dispatch_float;
use super::layout::{broadcast, to_contiguous};
use crate::array::{new_output, ReadyArray};
use crate::dtype::{Dtype, Element};
use crate::op::OutSpec;
use crate::ops::fast::FastOp;
use crate::{bail, bf16, f16, Result};
use ember_cpu::attention::{attention, Attention, KvElement, Mask};
use ember_cpu::fast::{
    layer_norm_rows, rms_norm_rows, rope_rows, rope_table, softmax_rows, Compute, FastFloat,
    RopePairs,
};
use ember_cpu::matmul::Gemm;
use std::sync::{Arc, Mutex};

pub fn eval(op: &FastOp, inputs: &[ReadyArray], outputs: &[OutSpec]) -> Result<Vec<ReadyArray>> {
    if let FastOp::Sdpa { scale, causal } = op {
        return Ok(vec![sdpa(inputs, &outputs[0].0, scale.0, *causal)?]);
    }
    let x = to_contiguous(&inputs[0])?;
    let params = inputs[1..].iter().map(to_contiguous).collect::<Result<Vec<_>>>()?;
    let d = x.shape.last().copied().unwrap_or(1);
    let out = dispatch_float!(x.dtype, T => new_output::<T>(&x.shape, |out| {
        let xs = x.contiguous_elements::<T>();
        let param = |i: usize| params.get(i).map(|p| p.contiguous_elements::<T>());
        match op {
            FastOp::Softmax => softmax_rows(out, xs, d),
            FastOp::RmsNorm { eps } => rms_norm_rows(out, xs, param(0), eps.0, d),
            FastOp::LayerNorm { eps, weight, bias } => {
                let w = if *weight { param(0) } else { None };
                let b = if *bias { param(*weight as usize) } else { None };
                layer_norm_rows(out, xs, w, b, eps.0, d)
            }
            FastOp::Rope { dims, traditional, base, scale, offset } => {
                let half = dims / 2;
                let inv_freq: Vec<f32> = match base {
                    // exp(-i * ln(base) / half) in f32, the order MLX computes it in.
                    Some(b) => {
                        let step = (b.0 as f32).ln() / half as f32;
                        (0..half).map(|i| (-(i as f32) * step).exp()).collect()
                    }
                    None => params[0].contiguous_elements::<f32>().iter().map(|f| 1.0 / f).collect(),
                };
                let seq = x.shape[x.shape.len() - 2];
                let table = cached_rope_table(seq, *offset, scale.0 as f32, inv_freq);
                let pairs = if *traditional { RopePairs::Interleaved } else { RopePairs::HalfSplit };
                rope_rows(out, xs, seq, d, pairs, (&table.cos, &table.sin))
            }
            FastOp::Sdpa { .. } => unreachable!("handled above"),
        }
        Ok(())
    }))?;
    Ok(vec![out])
}

/// The angles of one RoPE call: what it was computed for, and its cosines and sines.
struct RopeTable {
    seq: usize,
    offset: usize,
    scale: f32,
    inv_freq: Vec<f32>,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

/// The last table computed: a model's layers rotate their queries and keys by the same angles,
/// so one forward pass computes it once instead of twice per layer (a prompt's sines and
/// cosines cost ~4% of it).
static LAST_ROPE_TABLE: Mutex<Option<Arc<RopeTable>>> = Mutex::new(None);

fn cached_rope_table(seq: usize, offset: usize, scale: f32, inv_freq: Vec<f32>) -> Arc<RopeTable> {
    let mut last = LAST_ROPE_TABLE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(t) = last.as_ref() {
        let same_freqs =
            t.inv_freq.iter().map(|f| f.to_bits()).eq(inv_freq.iter().map(|f| f.to_bits()));
        if t.seq == seq && t.offset == offset && t.scale.to_bits() == scale.to_bits() && same_freqs
        {
            return t.clone();
        }
    }
    let (cos, sin) = rope_table(seq, offset, scale, &inv_freq);
    let table = Arc::new(RopeTable { seq, offset, scale, inv_freq, cos, sin });
    *last = Some(table.clone());
    table
}

fn sdpa(inputs: &[ReadyArray], shape: &[usize], scale: f64, causal: bool) -> Result<ReadyArray> {
    let (q, k, v) = (&inputs[0], &inputs[1], &inputs[2]);
    let a = Attention {
        batch: q.shape[0],
        q_heads: q.shape[1],
        kv_heads: k.shape[1],
        q_len: q.shape[2],
        kv_len: k.shape[2],
        head_dim: q.shape[3],
        v_dim: v.shape[3],
        scale,
        causal,
    };
    let mask = inputs.get(3);
    match (q.dtype, k.dtype) {
        (Dtype::Float32, Dtype::Float16) => sdpa_typed::<f32, f16>(q, k, v, mask, &a, shape),
        (Dtype::Float32, _) => sdpa_typed::<f32, f32>(q, k, v, mask, &a, shape),
        (Dtype::Float64, _) => sdpa_typed::<f64, f64>(q, k, v, mask, &a, shape),
        (Dtype::Float16, _) => sdpa_half::<f16>(q, k, v, mask, &a, shape),
        (Dtype::Bfloat16, _) => sdpa_half::<bf16>(q, k, v, mask, &a, shape),
        (d, _) => bail!("scaled_dot_product_attention", "unsupported dtype {}", d),
    }
}

/// Half-precision attention through float32: bulk-converted inputs, the f32 kernel, and the
/// output narrowed back.
fn sdpa_half<T: FastFloat<Acc = f32> + Element>(
    q: &ReadyArray,
    k: &ReadyArray,
    v: &ReadyArray,
    mask: Option<&ReadyArray>,
    a: &Attention,
    shape: &[usize],
) -> Result<ReadyArray> {
    let widen = |x: &ReadyArray| -> Result<ReadyArray> {
        if x.dtype == Dtype::Bool {
            return Ok(x.clone());
        }
        let x = to_contiguous(x)?;
        new_output::<f32>(&x.shape, |o| {
            T::widen_slice(x.contiguous_elements::<T>(), o);
            Ok(())
        })
    };
    let mask = mask.map(widen).transpose()?;
    let out = sdpa_typed::<f32, f32>(&widen(q)?, &widen(k)?, &widen(v)?, mask.as_ref(), a, shape)?;
    new_output::<T>(shape, |o| {
        T::narrow_slice(out.contiguous_elements::<f32>(), o);
        Ok(())
    })
}

/// Attention computed in `T` over keys and values stored as `KV`.
fn sdpa_typed<T: Gemm + Compute + Element, KV: KvElement<T> + Element>(
    q: &ReadyArray,
    k: &ReadyArray,
    v: &ReadyArray,
    mask: Option<&ReadyArray>,
    a: &Attention,
    shape: &[usize],
) -> Result<ReadyArray> {
    let q = to_contiguous(q)?;
    let mask = mask.map(|m| broadcast(m, &[a.batch, a.q_heads, a.q_len, a.kv_len]));
    let mask = match &mask {
        None => Mask::None,
        Some(m) if m.dtype == Dtype::Bool => Mask::Keep(m.view::<bool>()),
        Some(m) => Mask::Add(m.view::<T>()),
    };
    new_output::<T>(shape, |out| {
        attention(out, q.contiguous_elements::<T>(), k.view::<KV>(), v.view::<KV>(), mask, a);
        Ok(())
    })
}
