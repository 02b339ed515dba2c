//! Affine group quantization against MLX itself (scripts/fixtures/affine.py runs `mlx.core`):
//! `quantize` gives MLX's codes, scales and biases exactly, `dequantize` its values,
//! `quantized_matmul` its products and gradients (float tolerance), in float32, float16 and
//! bfloat16; round trips stay within a step; bad arguments are errors naming the op.

mod common;

use common::{fixture, Stored};
use ember::prelude::*;
use ember::transforms::{jvp, vjp, vmap};
use serde_json::Value;

fn stored(case: &Value, key: &str) -> Stored {
    Stored::from_json(&case[key])
}

fn array(case: &Value, key: &str) -> Array {
    stored(case, key).array()
}

fn params(case: &Value) -> (usize, usize) {
    (case["group_size"].as_u64().unwrap() as usize, case["bits"].as_u64().unwrap() as usize)
}

/// Asserts shape, dtype and values within `atol + rtol * |expected|`.
fn close(what: &str, got: &Array, want: &Stored, rtol: f64, atol: f64) {
    common::assert_matches(what, got, want, rtol, atol);
}

/// Tolerances for values of `dtype` (half types hold 3 or 2 significant digits).
fn tol(dtype: Dtype) -> f64 {
    match dtype {
        Dtype::Float16 => 2e-3,
        Dtype::Bfloat16 => 1.6e-2,
        _ => 2e-5,
    }
}

#[test]
fn quantize_and_dequantize_match_mlx() {
    for (name, case) in fixture("affine").iter().filter(|(n, _)| n.starts_with("quantize")) {
        let (group, bits) = params(case);
        let w = array(case, "w");
        let (q, s, b) = ops::quantize(&w, group, bits).unwrap();
        close(&format!("{name} codes"), &q, &stored(case, "codes"), 0.0, 0.0);
        // Exact up to the JSON round trip of float values (serde_json parses within an ulp).
        close(&format!("{name} scales"), &s, &stored(case, "scales"), 1e-7, 0.0);
        close(&format!("{name} biases"), &b, &stored(case, "biases"), 1e-7, 0.0);
        let d = ops::dequantize(&q, &s, &b, group, bits).unwrap();
        let t = tol(w.dtype());
        close(&format!("{name} dequantize"), &d, &stored(case, "dequantized"), t, t);
        // Within one step of the input everywhere (see ember_cpu::affine's round-trip test
        // for why not half a step at the far end of a group's range).
        let err = ops::abs(&ops::subtract(&d, &w).unwrap()).unwrap().astype(Dtype::Float32);
        let err = ops::reshape(&err.unwrap(), &[-1, group as isize]).unwrap();
        let worst = ops::max(&err, Some(&[-1]), false).unwrap().to_vec::<f32>().unwrap();
        let steps = ops::abs(&s).unwrap().astype(Dtype::Float32).unwrap().to_vec::<f32>().unwrap();
        // Plus the rounding of the values to w's dtype.
        let w32 = ops::abs(&w).unwrap().astype(Dtype::Float32).unwrap();
        let w32 = ops::reshape(&w32, &[-1, group as isize]).unwrap();
        let big = ops::max(&w32, Some(&[-1]), false).unwrap().to_vec::<f32>().unwrap();
        for (i, ((e, st), m)) in worst.iter().zip(&steps).zip(&big).enumerate() {
            let bound = st + (t as f32) * m + 1e-6;
            assert!(*e <= bound, "{name} group {i}: error {e}, step {st}");
        }
    }
}

#[test]
fn quantized_matmul_and_its_gradients_match_mlx() {
    let all = fixture("affine");
    for (name, case) in all.iter().filter(|(n, _)| n.starts_with("matmul")) {
        let weights = &all[case["weights"].as_str().unwrap()];
        let (group, bits) = params(weights);
        let transpose = case["transpose"].as_bool().unwrap();
        let (q, s, b) =
            (array(weights, "codes"), array(weights, "scales"), array(weights, "biases"));
        let x = array(case, "x");
        let y = ops::quantized_matmul(&x, &q, &s, &b, transpose, group, bits).unwrap();
        let t = tol(x.dtype()) * 4.0;
        close(&format!("{name} product"), &y, &stored(case, "product"), t, t * 4.0);
        // Against dequantize-then-matmul.
        let d = ops::dequantize(&q, &s, &b, group, bits).unwrap();
        let d = if transpose { ops::swapaxes(&d, 0, 1).unwrap() } else { d };
        let dense =
            ops::matmul(&x.astype(Dtype::Float32).unwrap(), &d.astype(Dtype::Float32).unwrap())
                .unwrap();
        let dense_stored = Stored {
            shape: dense.shape().to_vec(),
            dtype: y.dtype(),
            data: dense.to_vec::<f64>().unwrap(),
        };
        close(&format!("{name} vs dequantized"), &y, &dense_stored, t, t * 4.0);
        // Gradients in x, the scales and the biases.
        let cot = array(case, "cotangent");
        let f = |a: &[Array]| {
            Ok(vec![ops::quantized_matmul(&a[0], &q, &a[1], &a[2], transpose, group, bits)?])
        };
        let (_, g) = vjp(f, &[x.clone(), s.clone(), b.clone()], &[cot]).unwrap();
        for (i, key) in ["grad_x", "grad_scales", "grad_biases"].iter().enumerate() {
            close(&format!("{name} {key}"), &g[i], &stored(case, key), t * 4.0, t * 8.0);
        }
    }
}

/// Standard normal float32 samples.
fn randn(shape: &[usize], seed: u64) -> Array {
    ops::random::normal(shape, Dtype::Float32, None, None, Some(&ops::random::key(seed))).unwrap()
}

/// Asserts `a` and `b` have equal shapes and values within `tol` (relative and absolute).
fn assert_close(what: &str, a: &Array, b: &Array, tol: f64) {
    assert_eq!(a.shape(), b.shape(), "{what}: shape");
    let (a, b) = (a.to_vec::<f64>().unwrap(), b.to_vec::<f64>().unwrap());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{what} [{i}]: {x} vs {y}");
    }
}

/// A small float32 problem: x (3, 64), W (8, 64) quantized with groups of 32, 4 bits.
fn small() -> (Array, Array, Array, Array) {
    let x = randn(&[3, 64], 1);
    let w = randn(&[8, 64], 2);
    let (q, s, b) = ops::quantize(&w, 32, 4).unwrap();
    (x, q, s, b)
}

#[test]
fn transforms_of_the_product() {
    let (x, q, s, b) = small();
    let f = |a: &[Array]| Ok(vec![ops::quantized_matmul(&a[0], &q, &s, &b, true, 32, 4)?]);
    // jvp in x is the product of the tangent (the map is linear in x).
    let t = randn(&[3, 64], 3);
    let (_, tangent) = jvp(f, std::slice::from_ref(&x), std::slice::from_ref(&t)).unwrap();
    let direct = ops::quantized_matmul(&t, &q, &s, &b, true, 32, 4).unwrap();
    assert_close("jvp in x", &tangent[0], &direct, 1e-5);
    // jvp in the scales agrees with the vjp: <J ts, c> = <ts, J^T c>.
    let g = |a: &[Array]| Ok(vec![ops::quantized_matmul(&x, &q, &a[0], &b, true, 32, 4)?]);
    let ts = ops::ones_like(&s).unwrap();
    let (_, jt) = jvp(g, std::slice::from_ref(&s), std::slice::from_ref(&ts)).unwrap();
    let c = ops::ones(&[3, 8], Dtype::Float32).unwrap();
    let (_, jc) = vjp(g, std::slice::from_ref(&s), std::slice::from_ref(&c)).unwrap();
    let lhs =
        ops::sum(&ops::multiply(&jt[0], &c).unwrap(), None, false).unwrap().item::<f32>().unwrap();
    let rhs =
        ops::sum(&ops::multiply(&jc[0], &ts).unwrap(), None, false).unwrap().item::<f32>().unwrap();
    assert!((lhs - rhs).abs() <= 1e-3 * lhs.abs().max(1.0), "{lhs} vs {rhs}");
    // vmap over a batch of activations equals the product of the stacked batch.
    let batch = randn(&[4, 3, 64], 4);
    let mapped = vmap(f, &[Some(0)], &[Some(0)])(std::slice::from_ref(&batch)).unwrap();
    let whole = ops::quantized_matmul(&batch, &q, &s, &b, true, 32, 4).unwrap();
    assert_close("vmap product", &mapped[0], &whole, 1e-6);
    // vmap of quantize and dequantize over a batch of matrices.
    let ws = randn(&[2, 8, 64], 5);
    let qd = |a: &[Array]| {
        let (q, s, b) = ops::quantize(&a[0], 32, 4)?;
        Ok(vec![ops::dequantize(&q, &s, &b, 32, 4)?])
    };
    let mapped = vmap(qd, &[Some(0)], &[Some(0)])(std::slice::from_ref(&ws)).unwrap();
    assert_close("vmap quantize", &mapped[0], &qd(&[ws]).unwrap()[0], 0.0);
    // The codes have no gradient (an error, as MLX); quantize's gradient is zero (as MLX).
    let h = |a: &[Array]| Ok(vec![ops::quantized_matmul(&x, &a[0], &s, &b, true, 32, 4)?]);
    let cot = ops::ones(&[3, 8], Dtype::Float32).unwrap();
    let err = vjp(h, std::slice::from_ref(&q), &[cot]).unwrap_err().to_string();
    assert!(err.contains("[quantized_matmul]") && err.contains("quantized weights"), "{err}");
    let z = |a: &[Array]| Ok(vec![ops::quantize(&a[0], 32, 4)?.1]);
    let w = ops::ones(&[2, 64], Dtype::Float32).unwrap();
    let (_, gz) = vjp(z, &[w], &[ops::ones(&[2, 2], Dtype::Float32).unwrap()]).unwrap();
    assert_eq!(gz[0].to_vec::<f32>().unwrap(), vec![0.0; 128]);
}

#[test]
fn bad_arguments_are_errors_naming_the_op() {
    let (x, q, s, b) = small();
    let w = ops::ones(&[8, 64], Dtype::Float32).unwrap();
    let err = |r: Result<(Array, Array, Array)>| r.err().map(|e| e.to_string()).unwrap_or_default();
    let expect = |msg: String, op: &str, what: &str| {
        assert!(msg.contains(&format!("[{op}]")) && msg.contains(what), "{msg}")
    };
    expect(err(ops::quantize(&w, 32, 3)), "quantize", "bits 3 is not supported");
    expect(err(ops::quantize(&w, 16, 4)), "quantize", "group size 16 is not supported");
    expect(
        err(ops::quantize(&ops::ones(&[64], Dtype::Float32).unwrap(), 32, 4)),
        "quantize",
        "at least 2 dimensions",
    );
    expect(
        err(ops::quantize(&ops::ones(&[2, 48], Dtype::Float32).unwrap(), 32, 4)),
        "quantize",
        "divisible",
    );
    expect(
        err(ops::quantize(&ops::ones(&[2, 64], Dtype::Int32).unwrap(), 32, 4)),
        "quantize",
        "int32",
    );
    expect(
        err(ops::quantize(&ops::ones(&[2, 64], Dtype::Float64).unwrap(), 32, 4)),
        "quantize",
        "float64",
    );
    let msg = |r: Result<Array>| r.err().map(|e| e.to_string()).unwrap_or_default();
    expect(msg(ops::dequantize(&q, &s, &b, 64, 4)), "dequantize", "incompatible");
    expect(msg(ops::dequantize(&q, &s, &b, 32, 8)), "dequantize", "incompatible");
    expect(
        msg(ops::dequantize(&q.astype(Dtype::Int32).unwrap(), &s, &b, 32, 4)),
        "dequantize",
        "uint32",
    );
    expect(
        msg(ops::dequantize(&q, &s, &ops::slice_axis(&b, 0, Slice::range(0, 4)).unwrap(), 32, 4)),
        "dequantize",
        "same shape",
    );
    expect(
        msg(ops::dequantize(
            &q,
            &s.astype(Dtype::Int32).unwrap(),
            &b.astype(Dtype::Int32).unwrap(),
            32,
            4,
        )),
        "dequantize",
        "int32",
    );
    let x32 = ops::ones(&[3, 32], Dtype::Float32).unwrap();
    expect(
        msg(ops::quantized_matmul(&x32, &q, &s, &b, true, 32, 4)),
        "quantized_matmul",
        "does not match",
    );
    expect(
        msg(ops::quantized_matmul(&x, &q, &s, &b, false, 32, 4)),
        "quantized_matmul",
        "transpose=false",
    );
    expect(
        msg(ops::quantized_matmul(&Array::scalar(1.0f32), &q, &s, &b, true, 32, 4)),
        "quantized_matmul",
        "does not match",
    );
    let q3 = ops::expand_dims(&q, &[0]).unwrap();
    let (s3, b3) = (ops::expand_dims(&s, &[0]).unwrap(), ops::expand_dims(&b, &[0]).unwrap());
    expect(msg(ops::quantized_matmul(&x, &q3, &s3, &b3, true, 32, 4)), "quantized_matmul", "2-d");
}

#[test]
fn integer_and_half_activations_promote_as_mlx() {
    let (x, q, s, b) = small();
    let xi = x.astype(Dtype::Int32).unwrap();
    assert_eq!(
        ops::quantized_matmul(&xi, &q, &s, &b, true, 32, 4).unwrap().dtype(),
        Dtype::Float32
    );
    let (sh, bh) = (s.astype(Dtype::Float16).unwrap(), b.astype(Dtype::Float16).unwrap());
    let xh = x.astype(Dtype::Float16).unwrap();
    assert_eq!(
        ops::quantized_matmul(&xh, &q, &sh, &bh, true, 32, 4).unwrap().dtype(),
        Dtype::Float16
    );
    let xb = x.astype(Dtype::Bfloat16).unwrap();
    assert_eq!(
        ops::quantized_matmul(&xb, &q, &sh, &bh, true, 32, 4).unwrap().dtype(),
        Dtype::Float32
    );
    assert_eq!(ops::dequantize(&q, &sh, &bh, 32, 4).unwrap().dtype(), Dtype::Float16);
}
