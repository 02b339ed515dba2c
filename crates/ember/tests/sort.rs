//! Sorting against NumPy fixtures (scripts/fixtures/sort.py). sort and argsort must match
//! exactly (argsort is stable, NaNs last); partition, argpartition and topk leave the order
//! within each side unspecified, so they are checked by properties against the sorted array.
mod common;

use common::*;
use ember::prelude::*;
use serde_json::Value;

fn axis(case: &Value) -> Option<isize> {
    case["axis"].as_i64().map(|a| a as isize)
}

/// The case's argument, transposed when the case asks for it.
fn arg(case: &Value) -> Array {
    let a = args(case).remove(0);
    if case["transpose"].as_bool() == Some(true) {
        ops::transpose_all(&a).unwrap()
    } else {
        a
    }
}

/// NumPy's order: NaN after every number.
fn le(a: f64, b: f64) -> bool {
    a <= b || b.is_nan()
}

/// Equal, allowing for the last-digit error of reading fixture floats from JSON.
fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs() || (a.is_nan() && b.is_nan())
}

/// The lines of a row-major array of `shape` along `axis`, as index lists.
fn lines(shape: &[usize], axis: usize) -> Vec<Vec<usize>> {
    let inner: usize = shape[axis + 1..].iter().product();
    let n = shape[axis];
    let outer: usize = shape[..axis].iter().product();
    let mut out = vec![];
    for o in 0..outer {
        for i in 0..inner {
            out.push((0..n).map(|k| (o * n + k) * inner + i).collect());
        }
    }
    out
}

/// Checks `got` (values of a partition around `kth`) against the sorted array, line by line.
fn check_partition(name: &str, got: &[f64], sorted: &Stored, axis: usize, kth: usize) {
    for line in lines(&sorted.shape, axis) {
        let g: Vec<f64> = line.iter().map(|&i| got[i]).collect();
        let s: Vec<f64> = line.iter().map(|&i| sorted.data[i]).collect();
        let pivot = g[kth];
        assert!(same(pivot, s[kth]), "{name}: element {kth} is {pivot}, sorted has {}", s[kth]);
        assert!(g[..kth].iter().all(|&v| le(v, pivot)), "{name}: {g:?} before {kth}");
        assert!(g[kth + 1..].iter().all(|&v| le(pivot, v)), "{name}: {g:?} after {kth}");
        let mut gs = g.clone();
        gs.sort_by(|a, b| a.total_cmp(b));
        let mut ss = s.clone();
        ss.sort_by(|a, b| a.total_cmp(b));
        assert!(
            gs.iter().zip(&ss).all(|(a, b)| same(*a, *b)),
            "{name}: {gs:?} is not a permutation of {ss:?}"
        );
    }
}

#[test]
fn sorting_ops_match_numpy() {
    let cases = fixture("sort");
    assert!(cases.len() >= 30);
    for (name, case) in &cases {
        let x = arg(case);
        let want = expected(case);
        let ax = axis(case);
        // Float fixtures read back from JSON may be off in the last digit.
        let (rtol, atol) = tolerance(want.dtype);
        // Index of the sorted axis in the (possibly flattened) result.
        let along = ax.map_or(0, |a| a.rem_euclid(want.shape.len() as isize) as usize);
        match case["op"].as_str().unwrap() {
            "sort" => assert_matches(name, &ops::sort(&x, ax).unwrap(), &want, rtol, atol),
            "argsort" => assert_matches(name, &ops::argsort(&x, ax).unwrap(), &want, 0.0, 0.0),
            op @ ("partition" | "argpartition") => {
                let kth = case["kth"].as_i64().unwrap() as isize;
                let n = want.shape[along] as isize;
                let k = kth.rem_euclid(n) as usize;
                let values = if op == "partition" {
                    let p = ops::partition(&x, kth, ax).unwrap();
                    assert_eq!((p.shape(), p.dtype()), (&want.shape[..], x.dtype()), "{name}");
                    p
                } else {
                    let p = ops::argpartition(&x, kth, ax).unwrap();
                    assert_eq!((p.shape(), p.dtype()), (&want.shape[..], Dtype::Uint32), "{name}");
                    let flat = if ax.is_none() { ops::ravel(&x).unwrap() } else { x.clone() };
                    ops::take_along_axis(&flat, &p, Some(along as isize)).unwrap()
                };
                check_partition(name, &values.to_vec::<f64>().unwrap(), &want, along, k);
            }
            "topk" => {
                let k = case["k"].as_u64().unwrap() as usize;
                let top = ops::topk(&x, k, ax).unwrap();
                let sorted = ops::sort(&top, Some(along as isize)).unwrap();
                assert_matches(name, &sorted, &want, rtol, atol);
            }
            other => panic!("unknown op {other}"),
        }
    }
}

#[test]
fn argsort_is_stable_on_long_lines_with_ties() {
    // Long enough for the parallel sort; values repeat every 7 elements.
    let n = 200_000;
    let v: Vec<i32> = (0..n).map(|i| (i * 31) % 7).collect();
    let idx = ops::argsort(&Array::from_slice(&v, &[n as usize]).unwrap(), None).unwrap();
    let idx = idx.to_vec::<u32>().unwrap();
    for w in idx.windows(2) {
        let (a, b) = (w[0] as usize, w[1] as usize);
        assert!((v[a], a) < (v[b], b), "not a stable order at {a}, {b}");
    }
}

#[test]
fn topk_returns_the_largest_and_whole_axis_is_identity() {
    let x = Array::from_slice(&[4f32, -1.0, 9.0, 2.0, 7.0, 0.5], &[2, 3]).unwrap();
    let mut t = ops::topk(&x, 2, Some(-1)).unwrap().to_vec::<f32>().unwrap();
    t[..2].sort_by(f32::total_cmp);
    t[2..].sort_by(f32::total_cmp);
    assert_eq!(t, vec![4.0, 9.0, 2.0, 7.0]);
    assert!(ops::topk(&x, 3, Some(1)).unwrap().same_node(&x));
    assert_eq!(ops::topk(&x, 0, Some(0)).unwrap().shape(), &[0, 3]);
}

/// Asserts that `r` failed with a message starting with `want`.
#[track_caller]
fn assert_err<T: std::fmt::Debug>(r: Result<T>, want: &str) {
    let msg = r.unwrap_err().to_string();
    assert!(msg.starts_with(want), "got {msg:?}, expected it to start with {want:?}");
}

#[test]
fn bad_arguments_are_refused_with_the_op_name() {
    let x = Array::from_slice(&[3i32, 1, 2, 5, 4, 0], &[2, 3]).unwrap();
    assert_err(ops::sort(&x, Some(2)), "[sort] axis 2 is out of bounds");
    assert_err(ops::argsort(&x, Some(-3)), "[argsort] axis -3 is out of bounds");
    assert_err(
        ops::partition(&x, 3, Some(1)),
        "[partition] kth 3 is out of range for axis 1 of shape [2, 3]",
    );
    assert_err(ops::argpartition(&x, -3, Some(0)), "[argpartition] kth -3 is out of range");
    assert_err(ops::partition(&x, 0, Some(5)), "[partition] axis 5 is out of bounds");
    assert_err(ops::topk(&x, 4, Some(1)), "[topk] k = 4 is larger than axis 1 of shape [2, 3]");
    assert_err(ops::sort(&Array::scalar(1f32), Some(0)), "[sort] axis 0 is out of bounds");
    // A 0-d array sorts as the flattened one-element array.
    assert_eq!(ops::sort(&Array::scalar(1f32), None).unwrap().shape(), &[1]);
}
