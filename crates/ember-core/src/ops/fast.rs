//! Fused ops, each one primitive with a one- or two-pass CPU kernel: `softmax` (mlx.core) and
//! the `mlx.core.fast` ops `rms_norm`, `layer_norm`, `rope` and
//! `scaled_dot_product_attention`. Arguments are validated and promoted here as MLX does; the
//! primitives see inputs of one float dtype.

use super::elementwise::astype;
use super::layout::{expand_dims, reshape_to, squeeze, transpose};
use super::{broadcast_shapes, normalize_axes};
use crate::array::Array;
use crate::dtype::{promote_types, Dtype};
use crate::op::{Op, OutSpec, Primitive, F64};
use crate::{bail, Result};

/// Fused primitives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FastOp {
    /// Softmax over the last axis.
    Softmax,
    /// Inputs: x and, if present, a weight over the last axis.
    RmsNorm { eps: F64 },
    /// Inputs: x, then the weight and bias that are present.
    LayerNorm { eps: F64, weight: bool, bias: bool },
    /// Inputs: x (..., L, D) and, when `base` is `None`, float32 frequencies (dims / 2).
    Rope { dims: usize, traditional: bool, base: Option<F64>, scale: F64, offset: usize },
    /// Inputs: q (B, Hq, Lq, D), k (B, Hkv, Lk, D), v (B, Hkv, Lk, Dv) and an optional mask
    /// broadcastable to (B, Hq, Lq, Lk): bool (keep) or additive in the output dtype.
    Sdpa { scale: F64, causal: bool },
}

impl Primitive for FastOp {
    fn name(&self) -> &'static str {
        match self {
            FastOp::Softmax => "softmax",
            FastOp::RmsNorm { .. } => "rms_norm",
            FastOp::LayerNorm { .. } => "layer_norm",
            FastOp::Rope { .. } => "rope",
            FastOp::Sdpa { .. } => "scaled_dot_product_attention",
        }
    }

    fn infer(&self, inputs: &[&Array]) -> Result<Vec<OutSpec>> {
        let (name, x) = (self.name(), inputs[0]);
        if !x.dtype().is_float() {
            bail!(name, "expected a floating point input, got {}", x.dtype());
        }
        // Other inputs share x's dtype, except rope's float32 frequencies, a bool mask and
        // float16 keys and values under float32 queries.
        let param_ok = |i: usize, a: &Array| match self {
            FastOp::Rope { .. } => a.dtype() == Dtype::Float32,
            FastOp::Sdpa { .. } if i == 3 => a.dtype() == x.dtype() || a.dtype() == Dtype::Bool,
            FastOp::Sdpa { .. } => a.dtype() == kv_dtype(x.dtype(), inputs[1], inputs[2]),
            _ => a.dtype() == x.dtype(),
        };
        let mut others = inputs.iter().enumerate().skip(1);
        if let Some((_, p)) = others.find(|(i, a)| !param_ok(*i, a)) {
            bail!(
                name,
                "parameter of dtype {} does not match input of dtype {}",
                p.dtype(),
                x.dtype()
            );
        }
        match self {
            FastOp::Softmax => {}
            FastOp::RmsNorm { .. } | FastOp::LayerNorm { .. } => {
                norm_dtype(name, x, &[])?;
                for p in &inputs[1..] {
                    check_feature_vector(name, "parameter", x, p)?;
                }
            }
            FastOp::Rope { dims, base, .. } => {
                check_rope(x, *dims, base.map(|b| b.0 as f32), inputs.get(1).copied())?
            }
            FastOp::Sdpa { .. } => {
                let mask = inputs.get(3).copied();
                return Ok(vec![check_sdpa(inputs[0], inputs[1], inputs[2], mask)?]);
            }
        }
        Ok(vec![(x.shape().to_vec(), x.dtype())])
    }
}

/// Softmax over `axes` (all axes when `None`), as `mlx.core.softmax`: `exp(x - max) / sum`,
/// integer inputs computed as float32. `precise` is accepted for MLX compatibility: ember
/// always accumulates half types in float32, which is what it asks for.
///
/// The last axis runs one fused kernel; other axes are moved last around it.
pub fn softmax(x: &Array, axes: Option<&[isize]>, precise: bool) -> Result<Array> {
    let _ = precise;
    let x = astype(x, x.dtype().to_float())?;
    let nd = x.ndim();
    let mut axes = match axes {
        Some(a) => normalize_axes("softmax", a, nd)?,
        None => (0..nd).collect(),
    };
    if x.size() == 0 {
        return Ok(x);
    }
    if axes.is_empty() {
        // Over no axes each element is its own row: exp(x - x) / exp(x - x).
        let y = softmax_last(&expand_dims(&x, &[-1])?)?;
        return squeeze(&y, Some(&[-1]));
    }
    axes.sort_unstable();
    let perm: Vec<usize> =
        (0..nd).filter(|a| !axes.contains(a)).chain(axes.iter().copied()).collect();
    let identity = perm.iter().enumerate().all(|(i, &p)| i == p);
    let moved = if identity {
        x.clone()
    } else {
        transpose(&x, &perm.iter().map(|&p| p as isize).collect::<Vec<_>>())?
    };
    let rows: usize = moved.shape()[..nd - axes.len()].iter().product();
    let y = softmax_last(&reshape_to(&moved, &[rows, x.size() / rows])?)?;
    let y = reshape_to(&y, moved.shape())?;
    if identity {
        return Ok(y);
    }
    let mut inverse = vec![0isize; nd];
    for (i, &p) in perm.iter().enumerate() {
        inverse[p] = i as isize;
    }
    transpose(&y, &inverse)
}

fn softmax_last(x: &Array) -> Result<Array> {
    Array::from_op(Op::Fast(FastOp::Softmax), vec![x.clone()])
}

/// Checks that `v` is 1-d with as many elements as `x`'s last axis.
fn check_feature_vector(op: &'static str, what: &str, x: &Array, v: &Array) -> Result<()> {
    if v.ndim() != 1 || v.size() != x.shape()[x.ndim() - 1] {
        bail!(
            op,
            "{} with shape {:?} must be 1-d with the size of the last axis of x {:?}",
            what,
            v.shape(),
            x.shape()
        );
    }
    Ok(())
}

/// The output dtype of a normalisation: x's promoted with its parameters, which must be float.
fn norm_dtype(op: &'static str, x: &Array, params: &[&Array]) -> Result<Dtype> {
    if x.ndim() == 0 {
        bail!(op, "input must have at least 1 dimension but got a 0-d array");
    }
    let dtype = params.iter().fold(x.dtype(), |d, p| promote_types(d, p.dtype()));
    if !dtype.is_float() {
        bail!(op, "received unsupported type {}", dtype);
    }
    Ok(dtype)
}

/// Root-mean-square normalisation over the last axis, as `mlx.core.fast.rms_norm`:
/// `x * rsqrt(mean(x^2) + eps) * weight`, accumulated in float32 for half types. The output
/// dtype is x's promoted with the weight's.
pub fn rms_norm(x: &Array, weight: Option<&Array>, eps: f32) -> Result<Array> {
    let params: Vec<&Array> = weight.into_iter().collect();
    let dtype = norm_dtype("rms_norm", x, &params)?;
    for p in &params {
        check_feature_vector("rms_norm", "weight", x, p)?;
    }
    let inputs =
        std::iter::once(x).chain(params).map(|a| astype(a, dtype)).collect::<Result<_>>()?;
    Array::from_op(Op::Fast(FastOp::RmsNorm { eps: F64(eps as f64) }), inputs)
}

/// Layer normalisation over the last axis, as `mlx.core.fast.layer_norm`:
/// `(x - mean) * rsqrt(var + eps) * weight + bias`, accumulated in float32 for half types.
pub fn layer_norm(
    x: &Array,
    weight: Option<&Array>,
    bias: Option<&Array>,
    eps: f32,
) -> Result<Array> {
    let params: Vec<&Array> = weight.into_iter().chain(bias).collect();
    let dtype = norm_dtype("layer_norm", x, &params)?;
    if let Some(w) = weight {
        check_feature_vector("layer_norm", "weight", x, w)?;
    }
    if let Some(b) = bias {
        check_feature_vector("layer_norm", "bias", x, b)?;
    }
    let inputs =
        std::iter::once(x).chain(params).map(|a| astype(a, dtype)).collect::<Result<_>>()?;
    let op =
        FastOp::LayerNorm { eps: F64(eps as f64), weight: weight.is_some(), bias: bias.is_some() };
    Array::from_op(Op::Fast(op), inputs)
}

fn check_rope(x: &Array, dims: usize, base: Option<f32>, freqs: Option<&Array>) -> Result<()> {
    if x.ndim() < 3 {
        bail!("rope", "input must have at least 3 dimensions but got shape {:?}", x.shape());
    }
    if !x.dtype().is_float() {
        bail!("rope", "input must be a floating type but got {}", x.dtype());
    }
    let d = x.shape()[x.ndim() - 1];
    if dims == 0 || dims % 2 == 1 || dims > d {
        bail!(
            "rope",
            "dims must be positive, even and at most the last axis of x {:?}, got {}",
            x.shape(),
            dims
        );
    }
    match (base, freqs) {
        (Some(_), Some(_)) => bail!("rope", "only one of base or freqs can have a value"),
        (None, None) => bail!("rope", "neither base nor freqs has a value"),
        (None, Some(f)) if f.ndim() != 1 || f.size() != dims / 2 => {
            bail!(
                "rope",
                "freqs must be 1-d with size dims / 2 = {} but got shape {:?}",
                dims / 2,
                f.shape()
            )
        }
        _ => Ok(()),
    }
}

/// Rotary position embedding, as `mlx.core.fast.rope`: rotates the first `dims` features of
/// `x` (..., L, D) by angle `(offset + l) * scale * base^(-2i / dims)` for position `l` and pair
/// `i` (or `1 / freqs[i]` in place of the power when `freqs` is given). `traditional` pairs
/// features `(2i, 2i + 1)`; otherwise `(i, i + dims / 2)`.
pub fn rope(
    x: &Array,
    dims: usize,
    traditional: bool,
    base: Option<f32>,
    scale: f32,
    offset: usize,
    freqs: Option<&Array>,
) -> Result<Array> {
    check_rope(x, dims, base, freqs)?;
    let mut inputs = vec![x.clone()];
    if let Some(f) = freqs {
        inputs.push(astype(f, Dtype::Float32)?);
    }
    let base = base.map(|b| F64(b as f64));
    let op = FastOp::Rope { dims, traditional, base, scale: F64(scale as f64), offset };
    Array::from_op(Op::Fast(op), inputs)
}

/// The mask of [`scaled_dot_product_attention`].
#[derive(Clone, Copy, Debug)]
pub enum AttentionMask<'a> {
    None,
    /// Query `i` attends to keys `j <= i + Lk - Lq` (MLX's `"causal"`).
    Causal,
    /// Broadcastable to (B, Hq, Lq, Lk): bool keeps keys where true; any other dtype is added
    /// to the scores and must promote to the output dtype.
    Array(&'a Array),
}

fn check_sdpa(q: &Array, k: &Array, v: &Array, mask: Option<&Array>) -> Result<OutSpec> {
    const OP: &str = "scaled_dot_product_attention";
    for t in [q, k, v] {
        if t.ndim() != 4 {
            bail!(OP, "input with shape {:?} expected to be rank 4 (B, H, L, D)", t.shape());
        }
    }
    let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
    if ks[0] != qs[0] || vs[0] != qs[0] {
        bail!(OP, "batch sizes of q {:?}, k {:?} and v {:?} differ", qs, ks, vs);
    }
    if qs[3] != ks[3] {
        bail!(OP, "queries {:?} and keys {:?} must have the same last dimension", qs, ks);
    }
    if ks[1] != vs[1] || ks[2] != vs[2] {
        bail!(OP, "keys {:?} and values {:?} must have the same heads and length", ks, vs);
    }
    if ks[1] == 0 || qs[1] % ks[1] != 0 {
        bail!(OP, "query heads {} must be a multiple of key/value heads {}", qs[1], ks[1]);
    }
    let scores = [qs[0], qs[1], qs[2], ks[2]];
    if let Some(m) = mask {
        let fits = broadcast_shapes(OP, m.shape(), &scores).is_ok_and(|s| s == scores);
        if m.ndim() > 4 || !fits {
            bail!(
                OP,
                "mask with shape {:?} cannot be broadcast to the scores {:?}",
                m.shape(),
                scores
            );
        }
    }
    Ok((vec![qs[0], qs[1], qs[2], vs[3]], q.dtype()))
}

/// The dtype attention in `dtype` takes its keys and values in: float16 ones stay float16
/// under float32 (a half-precision KV cache, widened as read: converting it would copy the
/// whole cache at each step), others are converted to `dtype`.
fn kv_dtype(dtype: Dtype, k: &Array, v: &Array) -> Dtype {
    let half = k.dtype() == Dtype::Float16 && v.dtype() == Dtype::Float16;
    if dtype == Dtype::Float32 && half {
        Dtype::Float16
    } else {
        dtype
    }
}

/// `softmax(q k^T * scale + mask) v`, as `mlx.core.fast.scaled_dot_product_attention`, for q
/// (B, Hq, Lq, D), k (B, Hkv, Lk, D) and v (B, Hkv, Lk, Dv) with `Hq` a multiple of `Hkv`
/// (grouped-query attention). The output is (B, Hq, Lq, Dv) in the promoted dtype.
pub fn scaled_dot_product_attention(
    q: &Array,
    k: &Array,
    v: &Array,
    scale: f32,
    mask: AttentionMask,
) -> Result<Array> {
    const OP: &str = "scaled_dot_product_attention";
    let mask_arr = match mask {
        AttentionMask::Array(m) => Some(m),
        _ => None,
    };
    check_sdpa(q, k, v, mask_arr)?;
    let dtype = promote_types(promote_types(q.dtype(), k.dtype()), v.dtype());
    if !dtype.is_float() {
        bail!(OP, "received unsupported type {}", dtype);
    }
    let kv = kv_dtype(dtype, k, v);
    let mut inputs = vec![astype(q, dtype)?, astype(k, kv)?, astype(v, kv)?];
    if let Some(m) = mask_arr {
        if m.dtype() != Dtype::Bool {
            if promote_types(m.dtype(), dtype) != dtype {
                bail!(OP, "mask type {} must promote to the output type {}", m.dtype(), dtype);
            }
            inputs.push(astype(m, dtype)?);
        } else {
            inputs.push(m.clone());
        }
    }
    let causal = matches!(mask, AttentionMask::Causal);
    Array::from_op(Op::Fast(FastOp::Sdpa { scale: F64(scale as f64), causal }), inputs)
}
