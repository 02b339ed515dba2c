//! Shape, creation and matmul ops against NumPy fixtures (scripts/fixtures/layout.py), plus
//! property tests for views and strides.
mod common;

use common::*;
use ember::prelude::*;
use serde_json::Value;

fn ints(v: &Value) -> Vec<isize> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap() as isize).collect()
}

fn usizes(v: &Value) -> Vec<usize> {
    ints(v).into_iter().map(|x| x as usize).collect()
}

fn params(case: &Value) -> Vec<f64> {
    case["params"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn run(case: &Value) -> Array {
    let a = args(case);
    let x = a.first();
    let dtype = case.get("dtype").and_then(|d| d.as_str()).map(dtype_from_name);
    let r = match case["op"].as_str().unwrap() {
        "slice" => {
            let slices: Vec<Slice> = case["slices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    let s = s.as_array().unwrap();
                    let opt = |v: &Value| v.as_i64().map(|i| i as isize);
                    Slice::new(opt(&s[0]), opt(&s[1]), s[2].as_i64().unwrap_or(1) as isize)
                })
                .collect();
            ops::slice(x.unwrap(), &slices)
        }
        "transpose" => ops::transpose(x.unwrap(), &ints(&case["axes"])),
        "swapaxes" => {
            let ax = ints(&case["axes"]);
            ops::swapaxes(x.unwrap(), ax[0], ax[1])
        }
        "moveaxis" => {
            let ax = ints(&case["axes"]);
            ops::moveaxis(x.unwrap(), ax[0], ax[1])
        }
        "reshape" => {
            // The fixture's input is a transposed (non-contiguous) array: rebuild that view.
            let perm = ints(&case["transpose_first"]);
            let inv: Vec<isize> = (0..perm.len() as isize)
                .map(|i| perm.iter().position(|&p| p == i).unwrap() as isize)
                .collect();
            let base = ops::contiguous(&ops::transpose(x.unwrap(), &inv).unwrap()).unwrap();
            let view = ops::transpose(&base, &perm).unwrap();
            ops::reshape(&view, &ints(&case["shape"]))
        }
        "broadcast_to" => ops::broadcast_to(x.unwrap(), &usizes(&case["shape"])),
        "expand_dims" => ops::expand_dims(x.unwrap(), &ints(&case["axes"])),
        "squeeze" => ops::squeeze(x.unwrap(), Some(&ints(&case["axes"]))),
        "flatten" => {
            let ax = ints(&case["axes"]);
            ops::flatten(x.unwrap(), ax[0], ax[1])
        }
        "as_strided" => ops::as_strided(
            x.unwrap(),
            &usizes(&case["shape"]),
            &ints(&case["strides"]),
            case["offset"].as_u64().unwrap() as usize,
        ),
        "arange" => {
            let p = params(case);
            ops::arange(p[0], p[1], p[2], dtype.unwrap())
        }
        "linspace" => {
            let p = params(case);
            ops::linspace(p[0], p[1], p[2] as usize, dtype.unwrap())
        }
        "eye" => {
            let p = params(case);
            ops::eye(p[0] as usize, p[1] as usize, p[2] as isize, dtype.unwrap())
        }
        "tri" => {
            let p = params(case);
            ops::tri(p[0] as usize, p[1] as usize, p[2] as isize, dtype.unwrap())
        }
        "tril" => ops::tril(x.unwrap(), params(case)[0] as isize),
        "triu" => ops::triu(x.unwrap(), params(case)[0] as isize),
        "matmul" => ops::matmul(&a[0], &a[1]),
        "inner" => ops::inner(&a[0], &a[1]),
        "outer" => ops::outer(&a[0], &a[1]),
        "tensordot" => {
            let ax = case["axes"].as_array().unwrap();
            ops::tensordot(&a[0], &a[1], &ints(&ax[0]), &ints(&ax[1]))
        }
        other => panic!("unknown op {other}"),
    };
    r.unwrap()
}

#[test]
fn layout_creation_and_matmul_match_numpy() {
    let cases = fixture("layout");
    assert!(cases.len() >= 30);
    for (name, case) in &cases {
        let want = expected(case);
        let (rtol, atol) = tolerance(want.dtype);
        assert_matches(name, &run(case), &want, rtol * 8.0, atol * 8.0);
    }
}

/// A tiny deterministic generator for the property tests.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

/// The element of a row-major `shape` at multi-index `idx`.
fn flat(idx: &[usize], shape: &[usize]) -> usize {
    idx.iter().zip(shape).fold(0, |acc, (&i, &n)| acc * n + i)
}

#[test]
fn random_transposes_and_slices_read_the_right_elements() {
    let mut rng = Lcg(7);
    for _ in 0..200 {
        let ndim = 1 + rng.next(4);
        let shape: Vec<usize> = (0..ndim).map(|_| 1 + rng.next(5)).collect();
        let n: usize = shape.iter().product();
        let x = ops::reshape_to(&ops::arange(0.0, n as f64, 1.0, Dtype::Int32).unwrap(), &shape)
            .unwrap();
        // Random permutation.
        let mut perm: Vec<usize> = (0..ndim).collect();
        for i in (1..ndim).rev() {
            perm.swap(i, rng.next(i + 1));
        }
        let t = ops::transpose(&x, &perm.iter().map(|&p| p as isize).collect::<Vec<_>>()).unwrap();
        // Random slice of each axis.
        let tshape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        let slices: Vec<(usize, isize, usize)> = tshape
            .iter()
            .map(|&len| {
                let step = [1isize, 2, -1, -2][rng.next(4)];
                let start = rng.next(len);
                let count = if step > 0 {
                    (len - start).div_ceil(step as usize)
                } else {
                    (start + 1).div_ceil((-step) as usize)
                };
                (start, step, count)
            })
            .collect();
        let sl: Vec<Slice> =
            slices.iter().map(|&(s, st, _)| Slice::new(Some(s as isize), None, st)).collect();
        let v = ops::slice(&t, &sl).unwrap();
        let got = v.to_vec::<i32>().unwrap();
        let out_shape: Vec<usize> = slices.iter().map(|s| s.2).collect();
        assert_eq!(v.shape(), &out_shape[..]);
        // Check every element against index arithmetic.
        let total: usize = out_shape.iter().product();
        for (k, g) in got.iter().enumerate().take(total) {
            let mut rem = k;
            let mut idx_t = vec![0usize; ndim];
            for d in (0..ndim).rev() {
                let i = rem % out_shape[d];
                rem /= out_shape[d];
                idx_t[d] = (slices[d].0 as isize + i as isize * slices[d].1) as usize;
            }
            let mut idx_x = vec![0usize; ndim];
            for d in 0..ndim {
                idx_x[perm[d]] = idx_t[d];
            }
            assert_eq!(*g as usize, flat(&idx_x, &shape));
        }
        // Reshaping a view keeps its values in row-major order.
        let flat_view = ops::reshape(&v, &[-1]).unwrap().to_vec::<i32>().unwrap();
        assert_eq!(flat_view, got);
    }
}

#[test]
fn broadcasting_shapes_follow_numpy_rules() {
    type Case = (&'static [usize], &'static [usize], Option<&'static [usize]>);
    let cases: [Case; 5] = [
        (&[3, 1], &[4], Some(&[3, 4])),
        (&[], &[2, 2], Some(&[2, 2])),
        (&[5, 1, 3], &[4, 1], Some(&[5, 4, 3])),
        (&[2, 3], &[3, 2], None),
        (&[0, 1], &[1, 4], Some(&[0, 4])),
    ];
    for (a, b, want) in cases {
        let x = ops::zeros(a, Dtype::Float32).unwrap();
        let y = ops::ones(b, Dtype::Float32).unwrap();
        match (ops::add(&x, &y), want) {
            (Ok(z), Some(w)) => {
                assert_eq!(z.shape(), w);
                assert!(z.to_vec::<f32>().unwrap().iter().all(|&v| v == 1.0));
            }
            (Err(e), None) => assert!(e.to_string().starts_with("[add]")),
            (r, w) => panic!("{a:?} + {b:?}: got {:?}, want {w:?}", r.map(|z| z.shape().to_vec())),
        }
    }
}

#[test]
fn layout_errors_are_reported_when_building() {
    let x = ops::zeros(&[2, 3], Dtype::Float32).unwrap();
    assert_eq!(
        ops::reshape(&x, &[4, 2]).unwrap_err().to_string(),
        "[reshape] cannot reshape array of size 6 into shape [4, 2]"
    );
    assert!(ops::transpose(&x, &[0, 0]).is_err());
    assert!(ops::transpose(&x, &[0, 2]).unwrap_err().to_string().contains("out of bounds"));
    assert!(ops::squeeze(&x, Some(&[0])).is_err());
    assert!(ops::broadcast_to(&x, &[3, 3]).is_err());
    assert!(ops::as_strided(&x, &[2, 2], &[4, 1], 1).is_err());
    assert!(ops::slice(&x, &[Slice::new(None, None, 0)]).is_err());
    let m = ops::zeros(&[2, 3], Dtype::Float32).unwrap();
    assert_eq!(
        ops::matmul(&m, &m).unwrap_err().to_string(),
        "[matmul] last dimension of a [2, 3] does not match first of b [2, 3]"
    );
    assert!(ops::arange(0.0, 1.0, 0.0, Dtype::Float32).is_err());
    assert!(ops::arange(0.0, f64::INFINITY, 1.0, Dtype::Float32).is_err());
}

#[test]
fn matmul_in_every_float_dtype_matches_f64() {
    let a = ops::reshape_to(&ops::linspace(-1.0, 1.0, 64 * 48, Dtype::Float64).unwrap(), &[64, 48])
        .unwrap();
    let b = ops::reshape_to(&ops::linspace(2.0, -1.0, 48 * 40, Dtype::Float64).unwrap(), &[48, 40])
        .unwrap();
    let want = ops::matmul(&a, &b).unwrap().to_vec::<f64>().unwrap();
    for (dtype, tol) in [(Dtype::Float32, 1e-5), (Dtype::Float16, 0.1), (Dtype::Bfloat16, 0.5)] {
        let c = ops::matmul(&a.astype(dtype).unwrap(), &b.astype(dtype).unwrap()).unwrap();
        assert_eq!(c.dtype(), dtype);
        for (g, w) in c.to_vec::<f64>().unwrap().iter().zip(&want) {
            assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{dtype}: {g} vs {w}");
        }
    }
    // A transposed operand is read through its strides.
    let at =
        ops::transpose_all(&ops::contiguous(&ops::transpose_all(&a).unwrap()).unwrap()).unwrap();
    let c = ops::matmul(&at, &b).unwrap().to_vec::<f64>().unwrap();
    assert!(c.iter().zip(&want).all(|(g, w)| (g - w).abs() < 1e-12));
}

#[test]
fn display_is_numpy_like() {
    let x = Array::from_slice(&[1.5f32, -2.0, f32::NAN], &[3]).unwrap();
    assert_eq!(format!("{x}"), "array([1.5, -2., nan], shape=(3,), dtype=float32)");
    let b = Array::from_slice(&[true, false], &[2]).unwrap();
    assert_eq!(format!("{b}"), "array([ True, False], shape=(2,), dtype=bool)");
    let s = Array::scalar(7u8);
    assert_eq!(format!("{s}"), "array(7, shape=(), dtype=uint8)");
    let big = ops::arange(0.0, 2000.0, 1.0, Dtype::Int32).unwrap();
    assert_eq!(
        format!("{big}"),
        "array([   0,    1,    2, ..., 1997, 1998, 1999], shape=(2000,), dtype=int32)"
    );
}
