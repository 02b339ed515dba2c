//! Rules of the fused ops. Softmax and rope have closed forms (rope is a rotation, so its
//! transpose is the rotation by the opposite angle). `rms_norm`, `layer_norm` and attention
//! are differentiated through their decomposition into plain ops, which computes what the
//! fused kernels compute, with the transforms' own `vjp` and `jvp`. Rope's frequencies get
//! no gradient (an error, as in MLX); a boolean attention mask gets zeros.

use super::{or_zeros, scalar_like};
use crate::array::Array;
use crate::dtype::Dtype;
use crate::op::{Op, F64};
use crate::ops::fast::FastOp;
use crate::ops::{
    self, add, arange, expand_dims, less_equal, matmul, mean, multiply, reshape_to, rsqrt, softmax,
    square, subtract, swapaxes, where_,
};
use crate::{bail, Result};

pub(super) fn vjp(
    op: &FastOp,
    inputs: &[Array],
    y: &Array,
    cot: &Array,
    argnums: &[usize],
) -> Result<Vec<Array>> {
    match op {
        FastOp::Softmax => Ok(vec![softmax_linear(y, cot)?]),
        FastOp::Rope { .. } => argnums
            .iter()
            .map(|&i| if i == 0 { rotate(op, inputs, cot, true) } else { no_freqs_gradient() })
            .collect(),
        _ => {
            let f = |ins: &[Array]| Ok(vec![decompose(op, ins)?]);
            let (_, grads) = crate::transforms::vjp(f, inputs, std::slice::from_ref(cot))?;
            Ok(argnums.iter().map(|&i| grads[i].clone()).collect())
        }
    }
}

pub(super) fn jvp(
    op: &FastOp,
    inputs: &[Array],
    y: &Array,
    tangents: &[Option<Array>],
) -> Result<Array> {
    match op {
        FastOp::Softmax => softmax_linear(y, &or_zeros(&tangents[0], y)?),
        FastOp::Rope { .. } => match tangents {
            [Some(t)] | [Some(t), None] => rotate(op, inputs, t, false),
            [None] | [None, None] => ops::zeros_like(y),
            _ => no_freqs_gradient(),
        },
        _ => {
            let tans = inputs
                .iter()
                .zip(tangents)
                .map(|(x, t)| or_zeros(t, x))
                .collect::<Result<Vec<_>>>()?;
            let f = |ins: &[Array]| Ok(vec![decompose(op, ins)?]);
            let (_, mut out) = crate::transforms::jvp(f, inputs, &tans)?;
            Ok(out.remove(0))
        }
    }
}

/// The softmax Jacobian (symmetric) times `v`: `y * v - y * sum(y * v)` over the last axis.
fn softmax_linear(y: &Array, v: &Array) -> Result<Array> {
    let yv = multiply(y, v)?;
    subtract(&yv, &multiply(y, &ops::sum(&yv, LAST, true)?)?)
}

/// Rope of `v` with `op`'s angles, or the opposite angles for the transpose.
fn rotate(op: &FastOp, inputs: &[Array], v: &Array, transpose: bool) -> Result<Array> {
    let mut op = op.clone();
    if let (FastOp::Rope { scale, .. }, true) = (&mut op, transpose) {
        *scale = F64(-scale.0);
    }
    let mut args = vec![v.clone()];
    args.extend(inputs.get(1).cloned());
    Array::from_op(Op::Fast(op), args)
}

fn no_freqs_gradient<T>() -> Result<T> {
    bail!("rope", "no gradient with respect to the frequencies")
}

/// The last axis, which every fused op normalises over.
const LAST: Option<&[isize]> = Some(&[-1]);

/// The fused op written with plain ops.
fn decompose(op: &FastOp, ins: &[Array]) -> Result<Array> {
    let x = &ins[0];
    match op {
        FastOp::RmsNorm { eps } => {
            let mean_sq = mean(&square(x)?, LAST, true)?;
            let normed = multiply(x, &rsqrt(&add(&mean_sq, &scalar_like(eps.0, x)?)?)?)?;
            match ins.get(1) {
                Some(w) => multiply(&normed, w),
                None => Ok(normed),
            }
        }
        FastOp::LayerNorm { eps, weight, bias } => {
            let centred = subtract(x, &mean(x, LAST, true)?)?;
            let var = mean(&square(&centred)?, LAST, true)?;
            let mut out = multiply(&centred, &rsqrt(&add(&var, &scalar_like(eps.0, x)?)?)?)?;
            // The parameters present follow x, weight first.
            let mut params = ins[1..].iter();
            if *weight {
                out = multiply(&out, params.next().expect("layer_norm weight input"))?;
            }
            if *bias {
                out = add(&out, params.next().expect("layer_norm bias input"))?;
            }
            Ok(out)
        }
        FastOp::Sdpa { scale, causal } => attention(ins, scale.0, *causal),
        FastOp::Softmax | FastOp::Rope { .. } => unreachable!("closed-form rules"),
    }
}

/// `softmax(q k^T * scale + mask) v` for q (B, Hq, Lq, D), k (B, Hkv, Lk, D) and
/// v (B, Hkv, Lk, Dv), each key/value head serving `Hq / Hkv` query heads.
fn attention(ins: &[Array], scale: f64, causal: bool) -> Result<Array> {
    let (q, k, v) = (&ins[0], &ins[1], &ins[2]);
    let (qs, ks) = (q.shape(), k.shape());
    let (b, hq, lq, hkv, lk) = (qs[0], qs[1], qs[2], ks[1], ks[2]);
    let grouped = [b, hkv, hq / hkv, lq];
    let q5 = reshape_to(q, &[&grouped[..], &[qs[3]]].concat())?;
    let kt = swapaxes(&expand_dims(k, &[2])?, -1, -2)?;
    let scores = multiply(&matmul(&q5, &kt)?, &scalar_like(scale, q)?)?;
    let mut scores = reshape_to(&scores, &[b, hq, lq, lk])?;
    let neg_inf = scalar_like(f64::NEG_INFINITY, q)?;
    if causal {
        // Query i sees the keys j <= i + Lk - Lq.
        let last_seen = arange(lk as f64 - lq as f64, lk as f64, 1.0, Dtype::Int64)?;
        let rows = reshape_to(&last_seen, &[lq, 1])?;
        let cols = reshape_to(&arange(0.0, lk as f64, 1.0, Dtype::Int64)?, &[1, lk])?;
        scores = where_(&less_equal(&cols, &rows)?, &scores, &neg_inf)?;
    }
    if let Some(mask) = ins.get(3) {
        scores = match mask.dtype() {
            Dtype::Bool => where_(mask, &scores, &neg_inf)?,
            _ => add(&scores, mask)?,
        };
    }
    let probs = reshape_to(&softmax(&scores, LAST, false)?, &[&grouped[..], &[lk]].concat())?;
    let out = matmul(&probs, &expand_dims(v, &[2])?)?;
    reshape_to(&out, &[b, hq, lq, v.shape()[3]])
}
