//! softmax and the fast ops (rms_norm, layer_norm, rope, scaled_dot_product_attention):
//! against NumPy fixtures (scripts/fixtures/fast.py), against composite references built from
//! plain ops (matmul for sums, elementwise math), and their error cases.
mod common;
mod synth;

use common::*;
use ember::prelude::*;
use ops::fast::{self as fast, AttentionMask};
use serde_json::Value;
use synth::{assert_close, noise};

fn apply(case: &Value, a: &[Array]) -> Result<Array> {
    let f = |k: &str| case[k].as_f64().unwrap() as f32;
    let flag = |k: &str| case[k].as_bool().unwrap();
    match case["op"].as_str().unwrap() {
        "softmax" => {
            let axes: Option<Vec<isize>> = case["axes"]
                .as_array()
                .map(|v| v.iter().map(|x| x.as_i64().unwrap() as isize).collect());
            ops::softmax(&a[0], axes.as_deref(), false)
        }
        "rms_norm" => fast::rms_norm(&a[0], a.get(1), f("eps")),
        "layer_norm" => {
            let w = if flag("weight") { a.get(1) } else { None };
            let b = if flag("bias") { a.get(1 + flag("weight") as usize) } else { None };
            fast::layer_norm(&a[0], w, b, f("eps"))
        }
        "rope" => {
            let base = case["base"].as_f64().map(|b| b as f32);
            let dims = case["dims"].as_u64().unwrap() as usize;
            let offset = case["offset"].as_u64().unwrap() as usize;
            fast::rope(&a[0], dims, flag("traditional"), base, f("scale"), offset, a.get(1))
        }
        "sdpa" => {
            let mask = match case["mask"].as_str().unwrap() {
                "causal" => AttentionMask::Causal,
                "array" => AttentionMask::Array(&a[3]),
                _ => AttentionMask::None,
            };
            fast::scaled_dot_product_attention(&a[0], &a[1], &a[2], f("scale"), mask)
        }
        other => panic!("unknown op {other}"),
    }
}

#[test]
fn fused_ops_match_numpy() {
    let cases = fixture("fast");
    assert!(cases.len() >= 40);
    for (name, case) in &cases {
        let out = apply(case, &args(case)).unwrap();
        let want = expected(case);
        // RoPE angles are float32 (as in MLX) whatever the input dtype.
        let rope = case["op"] == "rope";
        let (rtol, atol) = match want.dtype {
            Dtype::Float16 => (4e-3, 4e-3),
            Dtype::Float64 if !rope => (1e-12, 1e-12),
            _ => (2e-5, 2e-6),
        };
        assert_matches(name, &out, &want, rtol, atol);
    }
}

// Composite references: the same maths from plain ops. Sums over the last axis are matmuls
// with a column of ones.

fn last_axis_sum(x: &Array) -> Array {
    let n = x.shape()[x.ndim() - 1];
    ops::matmul(x, &ops::ones(&[n, 1], x.dtype()).unwrap()).unwrap()
}

fn last_axis_mean(x: &Array) -> Array {
    let n = x.shape()[x.ndim() - 1] as f32;
    ops::divide(&last_axis_sum(x), &Array::scalar(n)).unwrap()
}

/// exp(x) / sum(exp(x)): softmax without the max shift, exact in f64 for moderate inputs.
fn softmax_ref(x: &Array) -> Array {
    let e = ops::exp(&x.astype(Dtype::Float64).unwrap()).unwrap();
    ops::divide(&e, &last_axis_sum(&e)).unwrap()
}

fn rms_norm_ref(x: &Array, w: &Array, eps: f32) -> Array {
    let ms = last_axis_mean(&ops::square(x).unwrap());
    let k = ops::rsqrt(&ops::add(&ms, &Array::scalar(eps)).unwrap()).unwrap();
    ops::multiply(&ops::multiply(x, &k).unwrap(), w).unwrap()
}

fn layer_norm_ref(x: &Array, w: &Array, b: &Array, eps: f32) -> Array {
    let xc = ops::subtract(x, &last_axis_mean(x)).unwrap();
    let var = last_axis_mean(&ops::square(&xc).unwrap());
    let k = ops::rsqrt(&ops::add(&var, &Array::scalar(eps)).unwrap()).unwrap();
    ops::add(&ops::multiply(&ops::multiply(&xc, &k).unwrap(), w).unwrap(), b).unwrap()
}

/// RoPE as `x * cos(theta) + (x @ R) * sin(theta)`, where `R` maps each pair (a, b) to
/// (-b, a) and theta is 0 on the features past `dims`.
fn rope_ref(x: &Array, dims: usize, traditional: bool, base: f32, offset: usize) -> Array {
    let (l, d) = (x.shape()[x.ndim() - 2], x.shape()[x.ndim() - 1]);
    let half = dims / 2;
    let mut freq = vec![0f32; d];
    let mut rot = vec![0f32; d * d];
    for i in 0..half {
        let (a, b) = if traditional { (2 * i, 2 * i + 1) } else { (i, i + half) };
        let f = (-(i as f32) * (base.ln() / half as f32)).exp();
        (freq[a], freq[b]) = (f, f);
        rot[b * d + a] = -1.0; // out[a] gets -x[b]
        rot[a * d + b] = 1.0; // out[b] gets x[a]
    }
    let pos = ops::arange(offset as f64, (offset + l) as f64, 1.0, Dtype::Float32).unwrap();
    let theta = ops::outer(&pos, &Array::from_vec(freq, &[d]).unwrap()).unwrap();
    let rot = Array::from_vec(rot, &[d, d]).unwrap();
    let cos = ops::multiply(x, &ops::cos(&theta).unwrap()).unwrap();
    let sin = ops::multiply(&ops::matmul(x, &rot).unwrap(), &ops::sin(&theta).unwrap()).unwrap();
    ops::add(&cos, &sin).unwrap()
}

/// Attention from matmuls, with key/value heads repeated for grouped queries.
fn sdpa_ref(
    q: &Array,
    k: &Array,
    v: &Array,
    scale: f32,
    mask: Option<&Array>,
    causal: bool,
) -> Array {
    let (b, hq, lq, d) = (q.shape()[0], q.shape()[1], q.shape()[2], q.shape()[3]);
    let (hkv, lk) = (k.shape()[1], k.shape()[2]);
    let rep = hq / hkv;
    let q5 = ops::reshape_to(q, &[b, hkv, rep, lq, d]).unwrap();
    let k5 = ops::expand_dims(k, &[2]).unwrap();
    let v5 = ops::expand_dims(v, &[2]).unwrap();
    let kt = ops::swapaxes(&k5, -1, -2).unwrap();
    let mut s = ops::multiply(&ops::matmul(&q5, &kt).unwrap(), &Array::scalar(scale)).unwrap();
    s = ops::reshape_to(&s, &[b, hq, lq, lk]).unwrap();
    if let Some(m) = mask {
        s = ops::add(&s, m).unwrap();
    }
    if causal {
        let keep = ops::tri(lq, lk, lk as isize - lq as isize, Dtype::Bool).unwrap();
        s = ops::where_(&keep, &s, &Array::scalar(-1e30f32)).unwrap();
    }
    let p = ops::reshape_to(&softmax_ref(&s).astype(q.dtype()).unwrap(), &[b, hkv, rep, lq, lk])
        .unwrap();
    let dv = v.shape()[3];
    ops::reshape_to(&ops::matmul(&p, &v5).unwrap(), &[b, hq, lq, dv]).unwrap()
}

#[test]
fn softmax_rows_match_composite_in_parallel() {
    // 256 rows of 1000: the parallel path, and rows that are not a multiple of the lanes.
    let x = ops::multiply(&noise(&[256, 1000], 1), &Array::scalar(8f32)).unwrap();
    let y = ops::softmax(&x, Some(&[-1]), false).unwrap();
    assert_close("softmax", &y, &softmax_ref(&x).astype(Dtype::Float32).unwrap(), 2e-6);
    // Over a middle axis (moved last around the kernel) on a transposed input.
    let xt = ops::transpose(&noise(&[6, 40, 3], 2), &[2, 0, 1]).unwrap();
    let y = ops::softmax(&xt, Some(&[1]), false).unwrap();
    let moved = ops::contiguous(&ops::swapaxes(&xt, 1, 2).unwrap()).unwrap();
    let want = ops::swapaxes(&softmax_ref(&moved), 1, 2).unwrap();
    assert_close("softmax axis 1", &y, &want, 2e-6);
}

#[test]
fn softmax_properties() {
    let x = noise(&[5, 70], 3);
    let y = ops::softmax(&x, None, false).unwrap();
    let total: f64 = y.to_vec::<f64>().unwrap().iter().sum();
    assert!((total - 1.0).abs() < 1e-5, "all-axes softmax sums to {total}");
    // Shift invariance, and -inf logits get exactly zero weight.
    let shifted = ops::add(&x, &Array::scalar(1000f32)).unwrap();
    let ys = ops::softmax(&shifted, Some(&[-1]), false).unwrap();
    assert_close("shift", &ys, &ops::softmax(&x, Some(&[-1]), false).unwrap(), 2e-4);
    let z = Array::from_slice(&[f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY, 0.0], &[4]).unwrap();
    assert_eq!(
        ops::softmax(&z, Some(&[0]), false).unwrap().to_vec::<f32>().unwrap(),
        [0.0, 0.5, 0.0, 0.5]
    );
    // A 0-d array is its own softmax row; bf16 rows accumulate in f32 and stay bf16.
    assert_eq!(ops::softmax(&Array::scalar(3f32), None, true).unwrap().item::<f32>().unwrap(), 1.0);
    let xb = x.astype(Dtype::Bfloat16).unwrap();
    let yb = ops::softmax(&xb, Some(&[-1]), true).unwrap();
    assert_eq!(yb.dtype(), Dtype::Bfloat16);
    assert_close("bf16", &yb, &softmax_ref(&xb).astype(Dtype::Float32).unwrap(), 8e-3);
}

#[test]
fn norms_match_composites() {
    // 64 rows of 2048: parallel rows.
    let x = ops::add(&noise(&[4, 16, 2048], 4), &Array::scalar(0.5f32)).unwrap();
    let (w, b) = (noise(&[2048], 5), noise(&[2048], 6));
    let y = fast::rms_norm(&x, Some(&w), 1e-5).unwrap();
    assert_close("rms_norm", &y, &rms_norm_ref(&x, &w, 1e-5), 1e-5);
    let y = fast::layer_norm(&x, Some(&w), Some(&b), 1e-5).unwrap();
    assert_close("layer_norm", &y, &layer_norm_ref(&x, &w, &b, 1e-5), 1e-5);
    // A strided input (every other row) and bf16.
    let xs = ops::slice_axis(&x, 1, Slice::new(None, None, 2)).unwrap();
    let y = fast::rms_norm(&xs, Some(&w), 1e-5).unwrap();
    assert_close("rms_norm strided", &y, &rms_norm_ref(&xs, &w, 1e-5), 1e-5);
    let xb = xs.astype(Dtype::Bfloat16).unwrap();
    let y = fast::layer_norm(&xb, Some(&w.astype(Dtype::Bfloat16).unwrap()), None, 1e-5).unwrap();
    assert_eq!(y.dtype(), Dtype::Bfloat16);
    let zero = ops::zeros(&[2048], Dtype::Float32).unwrap();
    assert_close("layer_norm bf16", &y, &layer_norm_ref(&xs, &w, &zero, 1e-5), 2e-2);
}

#[test]
fn rope_matches_composite() {
    for traditional in [false, true] {
        for (dims, offset) in [(64, 0), (32, 1000)] {
            let x = noise(&[2, 4, 200, 64], dims as u64 + offset as u64);
            let y = fast::rope(&x, dims, traditional, Some(10000.0), 1.0, offset, None).unwrap();
            let want = rope_ref(&x, dims, traditional, 10000.0, offset);
            assert_close(&format!("rope {traditional} {dims} {offset}"), &y, &want, 2e-5);
        }
    }
    // Frequencies 1 / base^(-2i/dims) given explicitly give the same rotation.
    let x = noise(&[1, 2, 7, 16], 7);
    let freqs: Vec<f32> = (0..8).map(|i| 1.0 / (-(i as f32) * (500f32.ln() / 8.0)).exp()).collect();
    let freqs = Array::from_vec(freqs, &[8]).unwrap();
    let y = fast::rope(&x, 16, false, None, 1.0, 3, Some(&freqs)).unwrap();
    assert_close("rope freqs", &y, &rope_ref(&x, 16, false, 500.0, 3), 2e-5);
}

#[test]
fn attention_matches_composite_in_parallel() {
    let (q, k, v) =
        (noise(&[2, 8, 64, 32], 8), noise(&[2, 2, 200, 32], 9), noise(&[2, 2, 200, 48], 10));
    let scale = 32f32.powf(-0.5);
    let y = fast::scaled_dot_product_attention(&q, &k, &v, scale, AttentionMask::None).unwrap();
    assert_close("no mask", &y, &sdpa_ref(&q, &k, &v, scale, None, false), 1e-5);
    let y = fast::scaled_dot_product_attention(&q, &k, &v, scale, AttentionMask::Causal).unwrap();
    assert_close("causal", &y, &sdpa_ref(&q, &k, &v, scale, None, true), 1e-5);
    let mask = noise(&[8, 1, 200], 11);
    let y =
        fast::scaled_dot_product_attention(&q, &k, &v, scale, AttentionMask::Array(&mask)).unwrap();
    assert_close("additive", &y, &sdpa_ref(&q, &k, &v, scale, Some(&mask), false), 1e-5);
}

#[test]
fn attention_reads_strided_caches_and_half_types() {
    // Keys and values are the first 37 positions of a (1, 2, 64, 16) cache: strided views.
    let (kc, vc) = (noise(&[1, 2, 64, 16], 12), noise(&[1, 2, 64, 16], 13));
    let k = ops::slice_axis(&kc, 2, Slice::range(0, 37)).unwrap();
    let v = ops::slice_axis(&vc, 2, Slice::range(0, 37)).unwrap();
    let q = noise(&[1, 4, 5, 16], 14);
    let y = fast::scaled_dot_product_attention(&q, &k, &v, 0.25, AttentionMask::Causal).unwrap();
    let (kd, vd) = (ops::contiguous(&k).unwrap(), ops::contiguous(&v).unwrap());
    let want =
        fast::scaled_dot_product_attention(&q, &kd, &vd, 0.25, AttentionMask::Causal).unwrap();
    assert_close("strided", &y, &want, 0.0);
    for dtype in [Dtype::Bfloat16, Dtype::Float16] {
        let [qh, kh, vh] = [&q, &k, &v].map(|t| t.astype(dtype).unwrap());
        let mask = noise(&[5, 37], 15).astype(dtype).unwrap();
        let y =
            fast::scaled_dot_product_attention(&qh, &kh, &vh, 0.25, AttentionMask::Array(&mask))
                .unwrap();
        assert_eq!(y.dtype(), dtype);
        let mask32 = mask.astype(Dtype::Float32).unwrap();
        assert_close(
            &format!("{dtype}"),
            &y,
            &sdpa_ref(&q, &k, &v, 0.25, Some(&mask32), false),
            2e-2,
        );
    }
    // float32 queries over a float16 cache, read as stored (5 positions: the GEMM path; 1: the
    // decode path), equal attention over the cache's values in float32.
    let [kh, vh] = [&kc, &vc]
        .map(|c| ops::slice_axis(&c.astype(Dtype::Float16).unwrap(), 2, Slice::range(0, 37)));
    let [kh, vh] = [kh.unwrap(), vh.unwrap()];
    let [kw, vw] = [&kh, &vh].map(|t| t.astype(Dtype::Float32).unwrap());
    for q in [q.clone(), ops::slice_axis(&q, 2, Slice::range(4, 5)).unwrap()] {
        let y =
            fast::scaled_dot_product_attention(&q, &kh, &vh, 0.25, AttentionMask::Causal).unwrap();
        assert_eq!(y.dtype(), Dtype::Float32);
        let want =
            fast::scaled_dot_product_attention(&q, &kw, &vw, 0.25, AttentionMask::Causal).unwrap();
        assert_close(&format!("f16 cache, {} queries", q.shape()[2]), &y, &want, 1e-6);
    }
}

fn err(r: Result<Array>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn bad_arguments_are_errors_naming_op_and_shapes() {
    let x = noise(&[2, 3, 8], 16);
    let e = err(ops::softmax(&x, Some(&[3]), false));
    assert!(e.starts_with("[softmax]") && e.contains("out of bounds"), "{e}");
    let e = err(fast::rms_norm(&x, Some(&noise(&[7], 17)), 1e-5));
    assert!(e.starts_with("[rms_norm]") && e.contains("[7]") && e.contains("[2, 3, 8]"), "{e}");
    let e = err(fast::rms_norm(&Array::scalar(1f32), None, 1e-5));
    assert!(e.starts_with("[rms_norm]") && e.contains("at least 1 dimension"), "{e}");
    let xi = Array::from_slice(&[1i32, 2], &[2]).unwrap();
    assert!(err(fast::rms_norm(&xi, None, 1e-5)).contains("unsupported type int32"));
    let e = err(fast::layer_norm(&x, None, Some(&noise(&[2, 8], 18)), 1e-5));
    assert!(e.starts_with("[layer_norm]") && e.contains("bias with shape [2, 8]"), "{e}");
    // rope
    let r = |x: &Array, dims, base, freqs| fast::rope(x, dims, false, base, 1.0, 0, freqs);
    let x4 = noise(&[1, 2, 3, 8], 19);
    assert!(err(r(&noise(&[3, 8], 20), 8, Some(1e4), None)).contains("at least 3 dimensions"));
    assert!(err(r(&x4, 5, Some(1e4), None)).contains("even"));
    assert!(err(r(&x4, 10, Some(1e4), None)).contains("[1, 2, 3, 8]"));
    let f = noise(&[4], 21);
    assert!(err(r(&x4, 8, Some(1e4), Some(&f))).contains("only one of base or freqs"));
    assert!(err(r(&x4, 8, None, None)).contains("neither base nor freqs"));
    let e = err(r(&x4, 8, None, Some(&noise(&[3], 22))));
    assert!(e.starts_with("[rope]") && e.contains("[3]"), "{e}");
    // scaled_dot_product_attention
    let sdpa =
        |q: &Array, k: &Array, v: &Array, m| fast::scaled_dot_product_attention(q, k, v, 1.0, m);
    let (q, k) = (noise(&[1, 4, 3, 8], 23), noise(&[1, 2, 5, 8], 24));
    let e = err(sdpa(&noise(&[4, 3, 8], 25), &k, &k, AttentionMask::None));
    assert!(
        e.starts_with("[scaled_dot_product_attention]")
            && e.contains("[4, 3, 8]")
            && e.contains("rank 4"),
        "{e}"
    );
    let e = err(sdpa(&q, &noise(&[1, 2, 5, 6], 26), &k, AttentionMask::None));
    assert!(e.contains("same last dimension") && e.contains("[1, 2, 5, 6]"), "{e}");
    let e =
        err(sdpa(&q, &noise(&[1, 3, 5, 8], 27), &noise(&[1, 3, 5, 8], 27), AttentionMask::None));
    assert!(e.contains("multiple of key/value heads 3"), "{e}");
    let e =
        err(sdpa(&q, &noise(&[2, 2, 5, 8], 28), &noise(&[2, 2, 5, 8], 28), AttentionMask::None));
    assert!(e.contains("batch"), "{e}");
    let e = err(sdpa(&q, &k, &noise(&[1, 2, 4, 8], 29), AttentionMask::None));
    assert!(e.contains("same heads and length"), "{e}");
    let bad_mask = noise(&[3, 4], 30);
    let e = err(sdpa(&q, &k, &k, AttentionMask::Array(&bad_mask)));
    assert!(e.contains("mask with shape [3, 4]") && e.contains("[1, 4, 3, 5]"), "{e}");
    let qh = q.astype(Dtype::Float16).unwrap();
    let kh = k.astype(Dtype::Float16).unwrap();
    let mask32 = noise(&[3, 5], 31);
    let e = err(sdpa(&qh, &kh, &kh, AttentionMask::Array(&mask32)));
    assert!(e.contains("mask type float32 must promote to the output type float16"), "{e}");
    let qi = Array::from_slice(&[1i32; 8], &[1, 1, 1, 8]).unwrap();
    assert!(err(sdpa(&qi, &qi, &qi, AttentionMask::None)).contains("unsupported type int32"));
}
