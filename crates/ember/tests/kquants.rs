//! The K-quants (Q4_K, Q6_K) and `quantize_ggml`: dequantization against the `gguf`
//! package's NumPy reference (scripts/fixtures/kquants.py), products against it and against
//! dequantize-then-matmul for many shapes, quantization byte for byte against it (Q8_0, Q4_0,
//! Q4_1) and within stated error bounds (every type), and errors for bad arguments.

mod common;

use common::{args, assert_matches, expected, fixture};
use ember::io::gguf::GgmlType;
use ember::ops::quantized::GgmlLayout;
use ember::prelude::*;

const TYPES: [GgmlType; 5] =
    [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q4_K, GgmlType::Q6_K];

fn ggml_type(name: &str) -> GgmlType {
    TYPES.into_iter().find(|t| t.name() == name).unwrap_or_else(|| panic!("type {name}"))
}

/// Deterministic values in [-1, 1) (an LCG), `scale`d, with a per-row offset `shift`.
fn values(shape: &[usize], seed: u64, scale: f32, shift: f32) -> Array {
    let (mut s, row) = (seed, shape[shape.len() - 1]);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
            u * scale + shift * ((i / row) % 3) as f32
        })
        .collect();
    Array::from_slice(&v, shape).unwrap()
}

fn max_abs(x: &Array) -> f64 {
    x.to_vec::<f32>().unwrap().iter().fold(0f64, |m, v| m.max(v.abs() as f64))
}

#[test]
fn dequantize_matches_gguf_reference() {
    let cases = fixture("kquants");
    let mut seen = 0;
    for (name, case) in cases.iter().filter(|(n, _)| n.starts_with("dequantize")) {
        let ty = ggml_type(case["type"].as_str().unwrap());
        let w = &args(case)[0];
        let got = ops::dequantize_ggml(w, ty).unwrap();
        // Exact up to the JSON round trip of float32 values.
        assert_matches(name, &got, &expected(case), 1e-7, 0.0);
        let all = got.to_vec::<f32>().unwrap();
        let k = got.shape()[1];
        let ids = Array::from_slice(&[1i64, 0, -1], &[3]).unwrap();
        let rows = ops::dequantize_rows_ggml(w, &ids, ty, GgmlLayout::Rows).unwrap();
        assert_eq!(rows.shape(), [3, k]);
        let rows = rows.to_vec::<f32>().unwrap();
        let n = w.shape()[0];
        assert_eq!(&rows[..k], &all[k..2 * k], "{name}: row 1");
        assert_eq!(&rows[k..2 * k], &all[..k], "{name}: row 0");
        assert_eq!(&rows[2 * k..], &all[(n - 1) * k..], "{name}: row -1");
        seen += 1;
    }
    assert_eq!(seen, 2);
}

/// The bound on `|x @ W^T - exact|` from the 8-bit activations: each term's error is at most
/// `|w| max|x| / 254` per block of 32, summed over `k` terms.
fn activation_bound(k: usize, wmax: f64, xmax: f64) -> f64 {
    k as f64 * wmax * xmax / 254.0 + 1e-4
}

#[test]
fn quantized_matmul_matches_gguf_reference() {
    let mut seen = 0;
    for (name, case) in fixture("kquants").iter().filter(|(n, _)| n.starts_with("matmul")) {
        let ty = ggml_type(case["type"].as_str().unwrap());
        let a = args(case);
        let (x, w) = (&a[0], &a[1]);
        let got = ops::quantized_matmul_ggml(x, w, ty).unwrap();
        let wmax = max_abs(&ops::dequantize_ggml(w, ty).unwrap());
        let atol = activation_bound(x.shape()[x.ndim() - 1], wmax, max_abs(x));
        assert_matches(name, &got, &expected(case), 1e-5, atol);
        seen += 1;
    }
    assert_eq!(seen, 4);
}

/// Many shapes (rows not multiples of the kernels' tiles, batched activations, products small
/// and large enough to run in parallel) against dequantize-then-matmul.
#[test]
fn quantized_matmul_matches_dequantize_then_matmul() {
    let shapes: [(&[usize], usize, usize); 7] = [
        (&[1], 1, 256),
        (&[1], 7, 512),
        (&[3], 13, 256),
        (&[2, 5], 6, 512),
        (&[1], 67, 2816),
        (&[4], 300, 512),
        (&[2, 3], 41, 2816),
    ];
    for ty in [GgmlType::Q4_K, GgmlType::Q6_K] {
        for (i, &(lead, n, k)) in shapes.iter().enumerate() {
            let w = ops::quantize_ggml(&values(&[n, k], i as u64, 0.5, 0.3), ty).unwrap();
            let xshape = [lead, &[k]].concat();
            let x = values(&xshape, 100 + i as u64, 1.0, 0.0);
            let got = ops::quantized_matmul_ggml(&x, &w, ty).unwrap();
            let wf = ops::dequantize_ggml(&w, ty).unwrap();
            let reference = ops::matmul(&x, &ops::transpose_all(&wf).unwrap()).unwrap();
            let mut want = lead.to_vec();
            want.push(n);
            assert_eq!(got.shape(), &want[..], "{ty:?} {xshape:?} x {n}");
            let bound = activation_bound(k, max_abs(&wf), max_abs(&x));
            let (g, r) = (got.to_vec::<f32>().unwrap(), reference.to_vec::<f32>().unwrap());
            for (j, (g, r)) in g.iter().zip(&r).enumerate() {
                let err = (g - r).abs() as f64;
                assert!(err <= bound, "{ty:?} {xshape:?} x {n}: [{j}] {g} vs {r}");
            }
        }
    }
}

#[test]
fn quantize_matches_gguf_bytes() {
    let mut seen = 0;
    for (name, case) in fixture("kquants").iter().filter(|(n, _)| n.starts_with("quantize")) {
        let ty = ggml_type(case["type"].as_str().unwrap());
        let got = ops::quantize_ggml(&args(case)[0], ty).unwrap();
        assert_matches(name, &got, &expected(case), 0.0, 0.0);
        seen += 1;
    }
    assert_eq!(seen, 3);
}

/// Round trips stay within a stated fraction of each block's largest magnitude: half a code
/// step, the f16 scales' rounding, the clipping of Q4_0's far extreme to 7 (a whole step of
/// max/8) and, for the K-quants, the rounding of the sub-block scales (6 bits for Q4_K's
/// scales and minimums, 8 for Q6_K's). Inputs mix magnitudes and offsets per row, and half
/// precision inputs are computed in float32.
#[test]
fn quantize_round_trip_is_within_bounds() {
    let bounds = [(GgmlType::Q8_0, 0.005), (GgmlType::Q4_0, 0.126), (GgmlType::Q4_1, 0.068)];
    let bounds = bounds.into_iter().chain([(GgmlType::Q4_K, 0.1), (GgmlType::Q6_K, 0.032)]);
    for (ty, frac) in bounds {
        for (seed, shape) in [(1u64, vec![6, 512]), (2, vec![2, 3, 256])] {
            let x = values(&shape, seed, 2.0, 1.5);
            for input in [x.clone(), x.astype(Dtype::Float16).unwrap()] {
                let q = ops::quantize_ggml(&input, ty).unwrap();
                let mut want = shape.clone();
                *want.last_mut().unwrap() =
                    shape[shape.len() - 1] / ty.block_size() * ty.type_size();
                assert_eq!(q.shape(), &want[..], "{ty:?}");
                assert_eq!(q.dtype(), Dtype::Uint8);
                let back = ops::dequantize_ggml(&q, ty).unwrap().to_vec::<f32>().unwrap();
                let xs = input.astype(Dtype::Float32).unwrap().to_vec::<f32>().unwrap();
                let bs = ty.block_size();
                for (b, (xb, yb)) in xs.chunks(bs).zip(back.chunks(bs)).enumerate() {
                    let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let err = xb.iter().zip(yb).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                    assert!(err <= frac * amax, "{ty:?} block {b}: error {err}, max {amax}");
                }
            }
        }
    }
}

#[test]
fn quantize_maps_over_a_batch_axis() {
    let x = values(&[3, 2, 256], 5, 1.0, 0.5);
    let f = |xs: &[Array]| Ok(vec![ops::quantize_ggml(&xs[0], GgmlType::Q4_K)?]);
    let mapped =
        ember::transforms::vmap(f, &[Some(1)], &[Some(0)])(std::slice::from_ref(&x)).unwrap();
    let direct = ops::quantize_ggml(&ops::transpose(&x, &[1, 0, 2]).unwrap(), GgmlType::Q4_K);
    assert_eq!(mapped[0].to_vec::<u8>().unwrap(), direct.unwrap().to_vec::<u8>().unwrap());
}

#[test]
fn bad_arguments_are_errors() {
    let err = |r: Result<Array>| r.expect_err("an error").to_string();
    let x = values(&[2, 300], 1, 1.0, 0.0);
    let e = err(ops::quantize_ggml(&x, GgmlType::Q4_K));
    assert!(e.starts_with("[quantize]") && e.contains("multiple of the 256 values"), "{e}");
    let ints = Array::from_slice(&[1i32; 32], &[1, 32]).unwrap();
    let e = err(ops::quantize_ggml(&ints, GgmlType::Q8_0));
    assert!(e.starts_with("[quantize]") && e.contains("floating"), "{e}");
    let e = err(ops::quantize_ggml(&Array::scalar(1f32), GgmlType::Q8_0));
    assert!(e.starts_with("[quantize]") && e.contains("1 or more dims"), "{e}");
    let e = err(ops::quantize_ggml(&values(&[1, 256], 1, 1.0, 0.0), GgmlType::Q5_K));
    assert!(e.starts_with("[quantize]") && e.contains("Q5_K") && e.contains("Q6_K"), "{e}");
    // Products and lookups take K-quant rows of whole 144- or 210-byte blocks.
    let w = Array::from_slice(&[0u8; 2 * 144], &[2, 144]).unwrap();
    assert!(ops::quantized_matmul_ggml(&values(&[1, 256], 1, 1.0, 0.0), &w, GgmlType::Q4_K).is_ok());
    let e = err(ops::quantized_matmul_ggml(&values(&[1, 32], 1, 1.0, 0.0), &w, GgmlType::Q4_K));
    assert!(e.starts_with("[quantized_matmul]") && e.contains("256 values per row"), "{e}");
    let e = err(ops::quantized_matmul_ggml(&values(&[1, 256], 1, 1.0, 0.0), &w, GgmlType::Q6_K));
    assert!(e.contains("not whole Q6_K blocks of 210 bytes"), "{e}");
    let e = err(ops::quantized_matmul_ggml_layout(
        &values(&[1, 256], 1, 1.0, 0.0),
        &Array::from_slice(&[0u8; 8 * 144], &[8, 144]).unwrap(),
        GgmlType::Q4_K,
        GgmlLayout::Packed,
    ));
    assert!(e.contains("Packed layout"), "{e}");
    let e = err(ops::dequantize_ggml(&w, GgmlType::Q5_K));
    assert!(e.starts_with("[dequantize]") && e.contains("Q4_K, Q6_K are"), "{e}");
}
