//! Reductions and scans against NumPy fixtures (scripts/fixtures/reduce.py), large inputs
//! against a naive f64 loop (the parallel paths), properties, and error cases.
mod common;

use common::*;
use ember::prelude::*;
use serde_json::Value;

fn isize_list(v: &Value) -> Option<Vec<isize>> {
    v.as_array().map(|a| a.iter().map(|x| x.as_i64().unwrap() as isize).collect())
}

/// The case's input with its "view" (a transpose or a slice) applied.
fn input(case: &Value) -> Array {
    let x = args(case).remove(0);
    let view = &case["view"];
    if let Some(perm) = isize_list(&view["transpose"]) {
        return ops::transpose(&x, &perm).unwrap();
    }
    if let Some(slices) = view["slice"].as_array() {
        let bound = |v: &Value| v.as_i64().map(|b| b as isize);
        let slices: Vec<Slice> = slices
            .iter()
            .map(|s| Slice::new(bound(&s[0]), bound(&s[1]), s[2].as_i64().unwrap() as isize))
            .collect();
        return ops::slice(&x, &slices).unwrap();
    }
    x
}

fn apply(op: &str, x: &Array, case: &Value) -> Result<Array> {
    let axes = isize_list(&case["axes"]);
    let axes = axes.as_deref();
    let keepdims = case["keepdims"].as_bool().unwrap_or(false);
    let axis = case["axis"].as_i64().map(|a| a as isize);
    let ddof = case["ddof"].as_u64().unwrap_or(0) as usize;
    let (reverse, inclusive) = (case["reverse"].as_bool(), case["inclusive"].as_bool());
    let scan = |f: fn(&Array, Option<isize>, bool, bool) -> Result<Array>| {
        f(x, axis, reverse.unwrap(), inclusive.unwrap())
    };
    match op {
        "sum" => ops::sum(x, axes, keepdims),
        "prod" => ops::prod(x, axes, keepdims),
        "max" => ops::max(x, axes, keepdims),
        "min" => ops::min(x, axes, keepdims),
        "mean" => ops::mean(x, axes, keepdims),
        "all" => ops::all(x, axes, keepdims),
        "any" => ops::any(x, axes, keepdims),
        "var" => ops::var(x, axes, keepdims, ddof),
        "std" => ops::std(x, axes, keepdims, ddof),
        "logsumexp" => ops::logsumexp(x, axes, keepdims),
        "argmax" => ops::argmax(x, axis, keepdims),
        "argmin" => ops::argmin(x, axis, keepdims),
        "cumsum" => scan(ops::cumsum),
        "cumprod" => scan(ops::cumprod),
        "cummax" => scan(ops::cummax),
        "cummin" => scan(ops::cummin),
        other => panic!("unknown op {other}"),
    }
}

#[test]
fn reductions_and_scans_match_numpy() {
    let cases = fixture("reduce");
    assert!(cases.len() > 1000);
    for (name, case) in &cases {
        let x = input(case);
        let out =
            apply(case["op"].as_str().unwrap(), &x, case).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = expected(case);
        let (rtol, atol) = tolerance(want.dtype);
        let atol = atol.max(case["atol"].as_f64().unwrap_or(0.0));
        assert_matches(name, &out, &want, rtol * 4.0, atol);
    }
}

/// A deterministic pseudo-random f32 in [-1, 1).
fn noise(i: usize) -> f32 {
    let h = (i as u64 ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let h = (h ^ (h >> 31)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((h >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

/// Sums of a row-major `shape` array over `axes`, the slow obvious way in f64.
fn naive_sum(data: &[f32], shape: &[usize], axes: &[usize]) -> Vec<f64> {
    let out_shape: Vec<usize> =
        shape.iter().enumerate().map(|(i, &n)| if axes.contains(&i) { 1 } else { n }).collect();
    let mut out = vec![0.0f64; out_shape.iter().product()];
    for (flat, &v) in data.iter().enumerate() {
        let (mut rest, mut o, mut ostride) = (flat, 0, 1);
        for d in (0..shape.len()).rev() {
            let i = rest % shape[d];
            rest /= shape[d];
            o += if axes.contains(&d) { 0 } else { i * ostride };
            ostride *= out_shape[d];
        }
        out[o] += v as f64;
    }
    out
}

fn assert_close_f64(what: &str, got: &[f32], want: &[f64], abs_scale: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let tol = 1e-5 * w.abs() + 2e-7 * abs_scale;
        assert!((g as f64 - w).abs() <= tol, "{what}: element {i}: got {g}, want {w}");
    }
}

#[test]
fn large_sums_take_every_kernel_path_and_match_a_naive_loop() {
    // (shape, axes): inside-one-output splits, many rows, columns (split and not), middle axes,
    // non-adjacent axes.
    let cases: [(&[usize], &[usize]); 7] = [
        (&[1 << 20], &[0]),
        (&[3, 300_000], &[1]),
        (&[2048, 256], &[1]),
        (&[4096, 200], &[0]),
        (&[300_000, 3], &[0]),
        (&[64, 50, 40], &[1]),
        (&[40, 64, 50], &[0, 2]),
    ];
    for (shape, axes) in cases {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(noise).collect();
        let x = Array::from_slice(&data, shape).unwrap();
        let axes_i: Vec<isize> = axes.iter().map(|&a| a as isize).collect();
        let got = ops::sum(&x, Some(&axes_i), false).unwrap().to_vec::<f32>().unwrap();
        let per_out = axes.iter().map(|&a| shape[a]).product::<usize>() as f64;
        assert_close_f64(
            &format!("sum {shape:?} {axes:?}"),
            &got,
            &naive_sum(&data, shape, axes),
            per_out,
        );
        // The same reduction of the transposed array (the other memory order).
        let perm: Vec<isize> = (0..shape.len() as isize).rev().collect();
        let t_axes: Vec<isize> = axes.iter().map(|&a| (shape.len() - 1 - a) as isize).collect();
        let xt = ops::transpose(&x, &perm).unwrap();
        let got_t = ops::sum(&xt, Some(&t_axes), false).unwrap();
        let want_t = ops::transpose_all(&ops::sum(&x, Some(&axes_i), true).unwrap()).unwrap();
        let want_t = ops::squeeze(&want_t, Some(&t_axes)).unwrap();
        assert_close_f64(
            &format!("transposed sum {shape:?} {axes:?}"),
            &got_t.to_vec::<f32>().unwrap(),
            &want_t.to_vec::<f64>().unwrap(),
            per_out,
        );
    }
}

#[test]
fn large_max_argmax_and_half_sums_match_a_naive_loop() {
    let (rows, cols) = (700, 500);
    let data: Vec<f32> = (0..rows * cols).map(noise).collect();
    let x = Array::from_slice(&data, &[rows, cols]).unwrap();
    for axis in [0usize, 1] {
        let maxes = ops::max(&x, Some(&[axis as isize]), false).unwrap().to_vec::<f32>().unwrap();
        let args = ops::argmax(&x, Some(axis as isize), false).unwrap().to_vec::<u32>().unwrap();
        let mins = ops::argmin(&x, Some(axis as isize), false).unwrap().to_vec::<u32>().unwrap();
        let outer = if axis == 0 { cols } else { rows };
        let len = if axis == 0 { rows } else { cols };
        for o in 0..outer {
            let at = |i: usize| if axis == 0 { data[i * cols + o] } else { data[o * cols + i] };
            let (mut best, mut bi, mut worst, mut wi) = (at(0), 0, at(0), 0);
            for i in 1..len {
                if at(i) > best {
                    (best, bi) = (at(i), i);
                }
                if at(i) < worst {
                    (worst, wi) = (at(i), i);
                }
            }
            assert_eq!(
                (maxes[o], args[o], mins[o]),
                (best, bi as u32, wi as u32),
                "axis {axis} {o}"
            );
        }
    }
    let flat = ops::argmax(&x, None, false).unwrap().item::<u32>().unwrap() as usize;
    let best = data.iter().cloned().fold(f32::MIN, f32::max);
    assert_eq!(data[flat], best);
    assert_eq!(data.iter().position(|&v| v == best), Some(flat));
    // Half-precision sums accumulate in f32: 2^16 halves of 0.5 sum exactly to 32768, where a
    // running f16 sum would stall at 2048 (bf16: 256) once adding 0.5 rounds away.
    for dtype in [Dtype::Float16, Dtype::Bfloat16] {
        let h = ops::full(&[1 << 16], &Array::scalar(0.5f32), dtype).unwrap();
        assert_eq!(ops::sum(&h, None, false).unwrap().item::<f32>().unwrap(), 32768.0);
    }
}

#[test]
fn large_scans_match_a_naive_loop() {
    let (rows, cols) = (600, 300);
    let data: Vec<f32> = (0..rows * cols).map(|i| noise(i).round()).collect();
    let x = Array::from_slice(&data, &[rows, cols]).unwrap();
    let along_rows = ops::cumsum(&x, Some(1), false, true).unwrap().to_vec::<f32>().unwrap();
    let along_cols = ops::cumsum(&x, Some(0), true, false).unwrap().to_vec::<f32>().unwrap();
    for r in 0..rows {
        let mut acc = 0.0;
        for c in 0..cols {
            acc += data[r * cols + c];
            assert_eq!(along_rows[r * cols + c], acc, "row scan {r} {c}");
        }
    }
    for c in 0..cols {
        let mut acc = 0.0;
        for r in (0..rows).rev() {
            assert_eq!(along_cols[r * cols + c], acc, "reverse exclusive column scan {r} {c}");
            acc += data[r * cols + c];
        }
    }
}

#[test]
fn sum_over_all_axes_equals_sum_one_axis_at_a_time() {
    for (seed, shape) in [[2usize, 3, 4], [5, 1, 7], [4, 4, 4], [1, 9, 2]].iter().enumerate() {
        let n: usize = shape.iter().product();
        let data: Vec<i32> = (0..n).map(|i| (noise(i + seed * 1000) * 50.0) as i32).collect();
        let x = Array::from_slice(&data, shape).unwrap();
        let total = ops::sum(&x, None, false).unwrap().item::<i64>().unwrap();
        for order in [[0isize, 0, 0], [2, 1, 0], [-1, -1, -1], [1, 1, 0]] {
            let mut y = x.clone();
            for &a in &order {
                y = ops::sum(&y, Some(&[a]), false).unwrap();
            }
            assert_eq!(y.shape(), &[] as &[usize]);
            assert_eq!(y.item::<i64>().unwrap(), total, "{shape:?} {order:?}");
        }
        assert_eq!(total, data.iter().map(|&v| v as i64).sum::<i64>());
    }
}

#[test]
fn output_dtypes_follow_mlx() {
    use Dtype::*;
    for (input, sum_dtype) in [
        (Bool, Int32),
        (Int8, Int32),
        (Int16, Int32),
        (Uint8, Uint32),
        (Uint16, Uint32),
        (Uint32, Uint32),
        (Int64, Int64),
        (Uint64, Uint64),
        (Float16, Float16),
        (Bfloat16, Bfloat16),
    ] {
        let x =
            Array::from_slice(&[1.0f32, 1.0, 0.0, 1.0], &[2, 2]).unwrap().astype(input).unwrap();
        let s = ops::sum(&x, None, false).unwrap();
        assert_eq!((s.dtype(), s.item::<f64>().unwrap()), (sum_dtype, 3.0), "sum {input}");
        assert_eq!(ops::prod(&x, Some(&[1]), false).unwrap().dtype(), sum_dtype);
        assert_eq!(ops::max(&x, None, false).unwrap().dtype(), input);
        assert_eq!(ops::all(&x, None, false).unwrap().dtype(), Bool);
        assert_eq!(ops::argmin(&x, None, false).unwrap().dtype(), Uint32);
        let float = if input.is_float() { input } else { Float32 };
        assert_eq!(ops::mean(&x, None, false).unwrap().dtype(), float);
        assert_eq!(ops::var(&x, None, false, 0).unwrap().dtype(), float);
        assert_eq!(ops::logsumexp(&x, None, false).unwrap().dtype(), float);
        let cumsum = if input == Bool { Int32 } else { input };
        assert_eq!(ops::cumsum(&x, None, false, true).unwrap().dtype(), cumsum);
        assert_eq!(ops::cummax(&x, Some(0), false, true).unwrap().dtype(), input);
    }
}

#[test]
fn keepdims_and_flattening_shapes() {
    let x = Array::from_slice(&[0f32; 24], &[2, 3, 4]).unwrap();
    assert_eq!(ops::sum(&x, Some(&[0, -1]), true).unwrap().shape(), &[1, 3, 1]);
    assert_eq!(ops::sum(&x, Some(&[0, -1]), false).unwrap().shape(), &[3]);
    assert_eq!(ops::sum(&x, Some(&[]), false).unwrap().shape(), &[2, 3, 4]);
    assert_eq!(ops::argmax(&x, None, true).unwrap().shape(), &[1, 1, 1]);
    assert_eq!(ops::argmax(&x, None, false).unwrap().shape(), &[] as &[usize]);
    assert_eq!(ops::cumsum(&x, None, false, true).unwrap().shape(), &[24]);
    assert_eq!(ops::cumsum(&x, Some(1), false, true).unwrap().shape(), &[2, 3, 4]);
}

#[test]
fn bad_arguments_are_errors_naming_the_op() {
    let x = Array::from_slice(&[1f32; 6], &[2, 3]).unwrap();
    let empty = Array::from_slice::<f32>(&[], &[0, 3]).unwrap();
    let err = |r: Result<Array>| r.unwrap_err().to_string();
    assert_eq!(
        err(ops::sum(&x, Some(&[2]), false)),
        "[sum] axis 2 is out of bounds for array with 2 dimensions"
    );
    assert!(err(ops::mean(&x, Some(&[-3]), false)).starts_with("[mean] axis -3"));
    assert!(err(ops::prod(&x, Some(&[1, -1]), false)).starts_with("[prod] repeated axis"));
    assert!(err(ops::max(&empty, Some(&[1]), false)).starts_with("[max] cannot max reduce"));
    assert!(err(ops::min(&empty, None, false)).starts_with("[min]"));
    assert!(err(ops::argmax(&empty, Some(0), false)).starts_with("[argmax]"));
    assert!(err(ops::argmin(&x, Some(2), false)).starts_with("[argmin] axis 2"));
    assert!(err(ops::logsumexp(&empty, None, false)).starts_with("[logsumexp]"));
    assert!(err(ops::var(&x, Some(&[5]), false, 1)).starts_with("[var]"));
    assert!(err(ops::cumsum(&x, Some(-3), false, true)).starts_with("[cumsum] axis -3"));
    assert!(err(ops::cummax(&Array::scalar(1f32), Some(0), false, true)).starts_with("[cummax]"));
    // Reducing an empty array is fine where an identity exists.
    assert_eq!(ops::sum(&empty, None, false).unwrap().item::<f32>().unwrap(), 0.0);
    // As MLX, an empty array has no max even when no axis is reduced.
    assert!(err(ops::max(&empty, Some(&[]), false)).starts_with("[max]"));
}

#[test]
fn long_runs_keep_first_index_of_ties_and_nans() {
    // Long enough for the many-lane and parallel paths; extremes repeat, so ties must go to the
    // first index, and a NaN must win over everything (the first NaN for argmax/argmin).
    let n = 300_001;
    let mut data: Vec<f32> = (0..n).map(|i| (noise(i) * 100.0).round()).collect();
    let check = |data: &[f32], what: &str| {
        let x = Array::from_slice(data, &[data.len()]).unwrap();
        let nan_at = data.iter().position(|v| v.is_nan());
        let (mut hi, mut lo) = (0, 0);
        for (i, &v) in data.iter().enumerate() {
            if v > data[hi] {
                hi = i;
            }
            if v < data[lo] {
                lo = i;
            }
        }
        let (hi, lo) = nan_at.map_or((hi, lo), |i| (i, i));
        let am = ops::argmax(&x, None, false).unwrap().item::<u32>().unwrap() as usize;
        let an = ops::argmin(&x, Some(0), false).unwrap().item::<u32>().unwrap() as usize;
        assert_eq!((am, an), (hi, lo), "{what}");
        let mx = ops::max(&x, None, false).unwrap().item::<f32>().unwrap();
        let mn = ops::min(&x, Some(&[0]), false).unwrap().item::<f32>().unwrap();
        if nan_at.is_some() {
            assert!(mx.is_nan() && mn.is_nan(), "{what}");
        } else {
            assert_eq!((mx, mn), (data[hi], data[lo]), "{what}");
        }
    };
    check(&data, "ties");
    for at in [250_000, 70, 299_999] {
        data[at] = f32::NAN;
        check(&data, &format!("NaN at {at}"));
    }
    // The same through the column kernels: each column holds one NaN, at different rows.
    let (rows, cols) = (1001, 300);
    let mut m: Vec<f32> = (0..rows * cols).map(|i| (noise(i) * 50.0).round()).collect();
    for c in (0..cols).step_by(7) {
        m[((c * 13) % rows) * cols + c] = f32::NAN;
    }
    let x = Array::from_slice(&m, &[rows, cols]).unwrap();
    let args = ops::argmax(&x, Some(0), false).unwrap().to_vec::<u32>().unwrap();
    let maxes = ops::max(&x, Some(&[0]), false).unwrap().to_vec::<f32>().unwrap();
    for c in 0..cols {
        let col: Vec<f32> = (0..rows).map(|r| m[r * cols + c]).collect();
        let want = col
            .iter()
            .position(|v| v.is_nan())
            .unwrap_or_else(|| (0..rows).fold(0, |b, r| if col[r] > col[b] { r } else { b }));
        assert_eq!(args[c] as usize, want, "column {c}");
        assert_eq!(maxes[c].is_nan(), col[want].is_nan(), "column {c}");
        if !col[want].is_nan() {
            assert_eq!(maxes[c], col[want], "column {c}");
        }
    }
}

#[test]
fn large_half_precision_sums_match_a_naive_loop() {
    let (rows, cols) = (1500, 700);
    let data: Vec<f32> = (0..rows * cols).map(|i| (noise(i) * 64.0).round() / 64.0).collect();
    for dtype in [Dtype::Float16, Dtype::Bfloat16] {
        // The values are exact in both half types, so the naive f64 sum is the exact answer.
        let x = Array::from_slice(&data, &[rows, cols]).unwrap().astype(dtype).unwrap();
        for axis in [0usize, 1] {
            let got = ops::sum(&x, Some(&[axis as isize]), false).unwrap();
            assert_eq!(got.dtype(), dtype);
            let want = naive_sum(&data, &[rows, cols], &[axis]);
            let rel = if dtype == Dtype::Float16 { 1e-3 } else { 8e-3 };
            for (i, (g, w)) in got.to_vec::<f64>().unwrap().iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= rel * w.abs() + 0.02,
                    "{dtype} axis {axis} {i}: {g} vs {w}"
                );
            }
        }
    }
}
