//! Unary and binary ops against NumPy fixtures (scripts/fixtures/elementwise.py).
mod common;

use common::*;
use ember::prelude::*;

fn apply(op: &str, args: &[Array]) -> Result<Array> {
    let un: fn(&Array) -> Result<Array> = match op {
        "abs" => ops::abs,
        "negative" => ops::negative,
        "sign" => ops::sign,
        "square" => ops::square,
        "exp" => ops::exp,
        "expm1" => ops::expm1,
        "log" => ops::log,
        "log1p" => ops::log1p,
        "log2" => ops::log2,
        "log10" => ops::log10,
        "sqrt" => ops::sqrt,
        "rsqrt" => ops::rsqrt,
        "reciprocal" => ops::reciprocal,
        "sin" => ops::sin,
        "cos" => ops::cos,
        "tan" => ops::tan,
        "arcsin" => ops::arcsin,
        "arccos" => ops::arccos,
        "arctan" => ops::arctan,
        "sinh" => ops::sinh,
        "cosh" => ops::cosh,
        "tanh" => ops::tanh,
        "arcsinh" => ops::arcsinh,
        "arccosh" => ops::arccosh,
        "arctanh" => ops::arctanh,
        "sigmoid" => ops::sigmoid,
        "floor" => ops::floor,
        "ceil" => ops::ceil,
        "round" => ops::round,
        "isnan" => ops::isnan,
        "isinf" => ops::isinf,
        "isfinite" => ops::isfinite,
        _ => return apply_binary(op, &args[0], &args[1]),
    };
    un(&args[0])
}

fn apply_binary(op: &str, a: &Array, b: &Array) -> Result<Array> {
    let f: fn(&Array, &Array) -> Result<Array> = match op {
        "add" => ops::add,
        "subtract" => ops::subtract,
        "multiply" => ops::multiply,
        "divide" => ops::divide,
        "floor_divide" => ops::floor_divide,
        "remainder" => ops::remainder,
        "power" => ops::power,
        "maximum" => ops::maximum,
        "minimum" => ops::minimum,
        "arctan2" => ops::arctan2,
        "logaddexp" => ops::logaddexp,
        "equal" => ops::equal,
        "not_equal" => ops::not_equal,
        "less" => ops::less,
        "less_equal" => ops::less_equal,
        "greater" => ops::greater,
        "greater_equal" => ops::greater_equal,
        "logical_and" => ops::logical_and,
        "logical_or" => ops::logical_or,
        "bitwise_and" => ops::bitwise_and,
        "bitwise_or" => ops::bitwise_or,
        "bitwise_xor" => ops::bitwise_xor,
        "left_shift" => ops::left_shift,
        "right_shift" => ops::right_shift,
        other => panic!("unknown op {other}"),
    };
    f(a, b)
}

#[test]
fn elementwise_ops_match_numpy() {
    let cases = fixture("elementwise");
    assert!(cases.len() > 100);
    for (name, case) in &cases {
        let out = apply(case["op"].as_str().unwrap(), &args(case)).unwrap();
        let want = expected(case);
        let (rtol, atol) = tolerance(want.dtype);
        assert_matches(name, &out, &want, rtol * 4.0, atol * 4.0);
    }
}

#[test]
fn half_precision_math_rounds_through_f32() {
    let x = Array::from_slice(&[0.5f32, 1.0, 2.0], &[3]).unwrap();
    for dtype in [Dtype::Float16, Dtype::Bfloat16] {
        let y = ops::exp(&x.astype(dtype).unwrap()).unwrap();
        assert_eq!(y.dtype(), dtype);
        let got = y.to_vec::<f32>().unwrap();
        for (g, e) in got.iter().zip([0.5f32.exp(), 1f32.exp(), 2f32.exp()]) {
            assert!((g - e).abs() <= e * 8e-3, "{dtype}: {g} vs {e}");
        }
    }
}

#[test]
fn erf_and_erfinv_are_inverse() {
    let y = Array::from_slice(&[-0.9f64, -0.3, 0.0, 0.5, 0.99], &[5]).unwrap();
    let back = ops::erf(&ops::erfinv(&y).unwrap()).unwrap().to_vec::<f64>().unwrap();
    for (b, e) in back.iter().zip([-0.9, -0.3, 0.0, 0.5, 0.99]) {
        assert!((b - e).abs() < 1e-12);
    }
    // erf(1) = 0.8427007929497149 (Abramowitz & Stegun table value).
    let e1 = ops::erf(&Array::scalar(1.0f64)).unwrap().item::<f64>().unwrap();
    assert!((e1 - 0.842_700_792_949_714_9).abs() < 1e-15);
}

#[test]
fn shape_errors_name_the_op_and_shapes() {
    let a = Array::from_slice(&[1f32; 6], &[2, 3]).unwrap();
    let b = Array::from_slice(&[1f32; 4], &[4]).unwrap();
    let err = ops::add(&a, &b).unwrap_err().to_string();
    assert_eq!(err, "[add] shapes [2, 3] and [4] cannot be broadcast");
    let err = ops::bitwise_and(&a, &a).unwrap_err().to_string();
    assert!(err.starts_with("[bitwise_and]"), "{err}");
    let t = Array::scalar(true);
    assert!(ops::negative(&t).unwrap_err().to_string().contains("logical_not"));
}

#[test]
fn where_and_clip_broadcast() {
    let c = Array::from_slice(&[true, false, true], &[3]).unwrap();
    let a = Array::from_slice(&[1i32, 2, 3], &[3]).unwrap();
    let b = Array::scalar(-1.5f32);
    let w = ops::where_(&c, &a, &b).unwrap();
    assert_eq!(w.dtype(), Dtype::Float32);
    assert_eq!(w.to_vec::<f32>().unwrap(), vec![1.0, -1.5, 3.0]);
    let x = Array::from_slice(&[-5f32, 0.5, 9.0], &[3]).unwrap();
    let lo = Array::scalar(0f32);
    let hi = Array::scalar(1f32);
    let y = ops::clip(&x, Some(&lo), Some(&hi)).unwrap();
    assert_eq!(y.to_vec::<f32>().unwrap(), vec![0.0, 0.5, 1.0]);
    assert!(ops::clip(&x, None, None).is_err());
}

#[test]
fn casts_to_half_types_round_to_nearest_even() {
    let p = |e: i32| 2f32.powi(e);
    // (float32 input, its float16 and bfloat16 values), ties included.
    let cases = [
        (1.0 + p(-11), 1.0, 1.0),
        (1.0 + 3.0 * p(-11), 1.0 + p(-9), 1.0),
        (1.0 + p(-8), 1.0 + p(-8), 1.0),
        (1.0 + 3.0 * p(-8), 1.0 + 3.0 * p(-8), 1.0 + p(-6)),
        (65519.0, 65504.0, 65536.0),
        (65520.0, f32::INFINITY, 65536.0),
        (p(-25), 0.0, p(-25)),
        (3.0 * p(-26), p(-24), 3.0 * p(-26)),
        (-0.0, -0.0, -0.0),
        (f32::NEG_INFINITY, f32::NEG_INFINITY, f32::NEG_INFINITY),
    ];
    let n = cases.len();
    let x: Vec<f32> = cases.iter().map(|c| c.0).chain([f32::NAN]).collect();
    let contiguous = Array::from_slice(&x, &[n + 1]).unwrap();
    // The same values as a strided view (every other element of a (n + 1, 2) array's column).
    let doubled: Vec<f32> = x.iter().flat_map(|&v| [v, 7.0]).collect();
    let pairs = Array::from_slice(&doubled, &[n + 1, 2]).unwrap();
    let strided =
        ops::reshape_to(&ops::slice_axis(&pairs, 1, Slice::range(0, 1)).unwrap(), &[n + 1])
            .unwrap();
    for (dtype, want) in
        [(Dtype::Float16, cases.map(|c| c.1)), (Dtype::Bfloat16, cases.map(|c| c.2))]
    {
        for (layout, a) in [("contiguous", &contiguous), ("strided", &strided)] {
            let half = a.astype(dtype).unwrap();
            // Widening back is exact, through the contiguous path.
            let got = half.astype(Dtype::Float32).unwrap().to_vec::<f32>().unwrap();
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                assert!(g.to_bits() == w.to_bits(), "{dtype} {layout} case {i}: {g} vs {w}");
            }
            assert!(got[n].is_nan(), "{dtype} {layout}: NaN stays NaN");
        }
    }
}
