//! Gathers, scatters, concatenation, splitting, tiling and padding against NumPy fixtures
//! (scripts/fixtures/index.py), plus error cases and layouts the fixtures do not cover.
mod common;

use common::*;
use ember::ops::{PadMode, Sections};
use ember::prelude::*;
use serde_json::Value;

fn axis(case: &Value) -> Option<isize> {
    case["axis"].as_i64().map(|a| a as isize)
}

fn isizes(v: &Value) -> Vec<isize> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap() as isize).collect()
}

fn slices(v: &Value) -> Vec<Slice> {
    let opt = |x: &Value| x.as_i64().map(|x| x as isize);
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| Slice::new(opt(&s[0]), opt(&s[1]), s[2].as_i64().unwrap() as isize))
        .collect()
}

/// The case's arguments, the first one transposed when the case asks for it.
fn case_args(case: &Value) -> Vec<Array> {
    let mut a = args(case);
    if case["transpose"].as_bool() == Some(true) {
        a[0] = ops::transpose_all(&a[0]).unwrap();
    }
    a
}

fn apply(case: &Value, a: &[Array]) -> Result<Array> {
    let refs: Vec<&Array> = a.iter().collect();
    let scatter_axes = || isizes(&case["axes"]);
    let last = a.len() - 1;
    match case["op"].as_str().unwrap() {
        "take" => ops::take(&a[0], &a[1], axis(case)),
        "take_along_axis" => ops::take_along_axis(&a[0], &a[1], axis(case)),
        "put_along_axis" => ops::put_along_axis(&a[0], &a[1], &a[2], axis(case)),
        "scatter_add_axis" => ops::scatter_add_axis(&a[0], &a[1], &a[2], axis(case).unwrap()),
        "scatter" => ops::scatter(&a[0], &refs[1..last], &a[last], &scatter_axes()),
        "scatter_add" => ops::scatter_add(&a[0], &refs[1..last], &a[last], &scatter_axes()),
        "scatter_prod" => ops::scatter_prod(&a[0], &refs[1..last], &a[last], &scatter_axes()),
        "scatter_max" => ops::scatter_max(&a[0], &refs[1..last], &a[last], &scatter_axes()),
        "scatter_min" => ops::scatter_min(&a[0], &refs[1..last], &a[last], &scatter_axes()),
        "slice_update" => ops::slice_update(&a[0], &a[1], &slices(&case["slices"])),
        "concatenate" => ops::concatenate(&refs, axis(case).unwrap()),
        "stack" => ops::stack(&refs, axis(case).unwrap()),
        "tile" => {
            let reps: Vec<usize> = isizes(&case["reps"]).iter().map(|&r| r as usize).collect();
            ops::tile(&a[0], &reps)
        }
        "repeat" => ops::repeat(&a[0], case["repeats"].as_u64().unwrap() as usize, axis(case)),
        "pad" => {
            let width: Vec<(usize, usize)> = case["width"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_u64().unwrap() as usize, p[1].as_u64().unwrap() as usize))
                .collect();
            let mode = match case["mode"].as_str().unwrap() {
                "edge" => PadMode::Edge,
                _ => PadMode::Constant,
            };
            ops::pad(&a[0], &width, &a[1], mode)
        }
        other => panic!("unknown op {other}"),
    }
}

#[test]
fn index_ops_match_numpy() {
    let cases = fixture("index");
    assert!(cases.len() >= 50);
    for (name, case) in &cases {
        let a = case_args(case);
        if case["op"] == "split" {
            let sections: Sections = match &case["sections"] {
                Value::Number(n) => (n.as_u64().unwrap() as usize).into(),
                v => isizes(v).into(),
            };
            let parts = ops::split(&a[0], sections, axis(case).unwrap()).unwrap();
            let want: Vec<Stored> =
                case["parts"].as_array().unwrap().iter().map(Stored::from_json).collect();
            assert_eq!(parts.len(), want.len(), "{name}: number of parts");
            for (k, (p, w)) in parts.iter().zip(&want).enumerate() {
                let (rtol, atol) = tolerance(w.dtype);
                assert_matches(&format!("{name}[{k}]"), p, w, rtol, atol);
            }
            continue;
        }
        let out = apply(case, &a).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = expected(case);
        let (rtol, atol) = tolerance(want.dtype);
        assert_matches(name, &out, &want, rtol, atol);
    }
}

fn arange_f32(n: usize, shape: &[usize]) -> Array {
    let v: Vec<f32> = (0..n).map(|i| i as f32).collect();
    Array::from_slice(&v, shape).unwrap()
}

fn ints(v: &[i32], shape: &[usize]) -> Array {
    Array::from_slice(v, shape).unwrap()
}

#[test]
fn embedding_lookup_takes_whole_rows() {
    // A table large enough for the parallel path; every output row is the indexed table row.
    let (vocab, dim) = (1000usize, 256usize);
    let table = arange_f32(vocab * dim, &[vocab, dim]);
    let ids: Vec<i32> = (0..700).map(|i| ((i * 7919) % vocab) as i32 - 500).collect();
    let out = ops::take(&table, &ints(&ids, &[7, 100]), Some(0)).unwrap();
    assert_eq!(out.shape(), &[7, 100, dim]);
    let got = out.to_vec::<f32>().unwrap();
    for (r, &id) in ids.iter().enumerate() {
        let row = id.rem_euclid(vocab as i32) as usize;
        let want: Vec<f32> = (0..dim).map(|j| (row * dim + j) as f32).collect();
        assert_eq!(&got[r * dim..(r + 1) * dim], &want[..], "row {r}");
    }
}

#[test]
fn gathers_read_broadcast_and_sliced_views() {
    // Rows of a broadcast (stride-0) matrix, and columns of a stepped slice.
    let row = Array::from_slice(&[1f32, 2.0, 3.0], &[1, 3]).unwrap();
    let b = ops::broadcast_to(&row, &[4, 3]).unwrap();
    let t = ops::take(&b, &ints(&[3, 0], &[2]), Some(0)).unwrap();
    assert_eq!(t.to_vec::<f32>().unwrap(), vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
    let m = arange_f32(20, &[4, 5]);
    let s = ops::slice(&m, &[Slice::new(None, None, 2), Slice::new(Some(4), None, -2)]).unwrap();
    // s = [[4, 2, 0], [14, 12, 10]]
    let c = ops::take(&s, &ints(&[-1, 0], &[2]), Some(1)).unwrap();
    assert_eq!(c.to_vec::<f32>().unwrap(), vec![0.0, 4.0, 10.0, 14.0]);
    let along = ops::take_along_axis(&s, &ints(&[2, 1], &[2, 1]), Some(1)).unwrap();
    assert_eq!(along.to_vec::<f32>().unwrap(), vec![0.0, 12.0]);
    // Transposed (non-contiguous) indices: [[0, 2], [1, 0]].
    let it = ops::transpose_all(&ints(&[0, 1, 2, 0], &[2, 2])).unwrap();
    let v = Array::from_slice(&[10i64, 20, 30], &[3]).unwrap();
    assert_eq!(ops::take(&v, &it, None).unwrap().to_vec::<i64>().unwrap(), vec![10, 30, 20, 10]);
    let upd = ops::slice_update(&s, &Array::scalar(-1f32), &[Slice::range(1, 2)]).unwrap();
    assert_eq!(upd.to_vec::<f32>().unwrap(), vec![4.0, 2.0, 0.0, -1.0, -1.0, -1.0]);
}

/// Asserts that `r` failed with a message starting with `want`.
#[track_caller]
fn assert_err<T: std::fmt::Debug>(r: Result<T>, want: &str) {
    let msg = r.unwrap_err().to_string();
    assert!(msg.starts_with(want), "got {msg:?}, expected it to start with {want:?}");
}

#[test]
fn out_of_range_indices_fail_at_eval() {
    let x = arange_f32(6, &[2, 3]);
    let eval = |a: Result<Array>| a.unwrap().eval();
    let one = Array::scalar(1f32);
    assert_err(
        eval(ops::take(&x, &ints(&[0, 3], &[2]), Some(1))),
        "[take] index 3 is out of bounds for axis 1 with size 3",
    );
    assert_err(
        eval(ops::take(&x, &ints(&[-7], &[1]), None)),
        "[take] index -7 is out of bounds for axis 0 with size 6",
    );
    assert_err(
        eval(ops::take_along_axis(&x, &ints(&[2, 0], &[2, 1]), Some(0))),
        "[take_along_axis] index 2 is out of bounds",
    );
    assert_err(
        eval(ops::put_along_axis(&x, &ints(&[-4], &[1, 1]), &one, Some(1))),
        "[put_along_axis] index -4 is out of bounds",
    );
    let row2 = ints(&[2], &[1]);
    assert_err(
        eval(ops::scatter_add(&x, &[&row2], &arange_f32(3, &[1, 1, 3]), &[0])),
        "[scatter_add] index 2 is out of bounds",
    );
    // An update slice of 2 columns at column 2 would run past the end.
    assert_err(
        eval(ops::scatter(&x, &[&row2], &arange_f32(4, &[1, 2, 2]), &[1])),
        "[scatter] an update slice of size 2 at index 2 overruns axis 1",
    );
}

#[test]
fn bad_arguments_are_refused_with_the_op_name() {
    let x = arange_f32(6, &[2, 3]);
    let fidx = Array::from_slice(&[0f32], &[1]).unwrap();
    let bidx = Array::from_slice(&[true], &[1]).unwrap();
    let idx = ints(&[0], &[1]);
    let y = arange_f32(4, &[2, 2]);
    let zero = Array::scalar(0f32);
    let u111 = arange_f32(1, &[1, 1, 1]);
    assert_err(ops::take(&x, &idx, Some(2)), "[take] axis 2 is out of bounds");
    assert_err(
        ops::take(&x, &fidx, Some(0)),
        "[take] indices must have an integer dtype, got float32",
    );
    assert_err(ops::take(&x, &bidx, None), "[take] indices must have an integer dtype, got bool");
    assert_err(ops::take(&arange_f32(0, &[0]), &idx, None), "[take] cannot do a non-empty take");
    assert_err(ops::take_along_axis(&x, &idx, Some(0)), "[take_along_axis] indices of shape [1]");
    assert_err(
        ops::take_along_axis(&x, &ints(&[0; 6], &[3, 2]), Some(1)),
        "[take_along_axis] shapes [[2, 3], [3, 2]] do not broadcast outside axis 1",
    );
    assert_err(ops::put_along_axis(&x, &fidx, &x, None), "[put_along_axis] indices must");
    assert_err(
        ops::scatter(&x, &[&idx], &x, &[0]),
        "[scatter] updates of shape [2, 3] must have 3 dimensions",
    );
    assert_err(
        ops::scatter_add(&x, &[&idx], &arange_f32(4, &[1, 4, 1]), &[0]),
        "[scatter_add] updates of shape [1, 4, 1] are too large",
    );
    assert_err(ops::scatter(&x, &[&idx, &idx], &u111, &[0, -2]), "[scatter] repeated axis");
    assert_err(ops::scatter(&x, &[&idx], &u111, &[0, 1]), "[scatter] 1 index arrays for 2 axes");
    assert_err(
        ops::concatenate(&[&x, &y], 0),
        "[concatenate] shapes [[2, 3], [2, 2]] must match except on axis 0",
    );
    assert_err(ops::concatenate(&[&x, &y], 2), "[concatenate] axis 2 is out of bounds");
    assert_err(ops::concatenate(&[&x, &arange_f32(6, &[6])], 0), "[concatenate] shapes");
    assert_err(ops::concatenate(&[], 0), "[concatenate] no arrays given");
    assert_err(
        ops::stack(&[&x, &y], 0),
        "[stack] all arrays must have the same shape, got [2, 3] and [2, 2]",
    );
    assert_err(ops::stack(&[&x], 3), "[stack] axis 3 is out of bounds");
    assert_err(ops::split(&x, 2, 1), "[split] array split does not result in sub arrays");
    assert_err(ops::split(&x, 0, 1), "[split] cannot split into 0 sections");
    assert_err(ops::split(&x, 1, -3), "[split] axis -3 is out of bounds");
    assert_err(ops::repeat(&x, 2, Some(2)), "[repeat] axis 2 is out of bounds");
    assert_err(
        ops::pad(&x, &[(1, 1); 3], &zero, PadMode::Constant),
        "[pad] 3 padding pairs given for an array with 2 dimensions",
    );
    assert_err(
        ops::pad(&x, &[(1, 1)], &y, PadMode::Constant),
        "[pad] pad value must have one element",
    );
    assert_err(
        ops::pad(&arange_f32(0, &[2, 0]), &[(0, 0), (1, 0)], &zero, PadMode::Edge),
        "[pad] cannot edge-pad empty axis 1",
    );
    assert_err(
        ops::slice_update(&x, &y, &[Slice::FULL]),
        "[slice_update] update of shape [2, 2] cannot fill a slice of shape [2, 3]",
    );
    assert_err(ops::slice_update(&x, &y, &[Slice::FULL; 3]), "[slice_update] 3 slices given");
}

#[test]
fn primitives_built_directly_check_their_inputs() {
    use ember::op::Op;
    use ember::ops::index::IndexOp;
    let x = arange_f32(6, &[2, 3]);
    let take = |inputs: Vec<Array>| Array::from_op(Op::Index(IndexOp::Take { axis: 1 }), inputs);
    assert_err(take(vec![x.clone()]), "[take] takes 2 inputs, got 1");
    assert_err(take(vec![x.clone(), x.clone()]), "[take] indices must have an integer dtype");
    let concat = Op::Index(IndexOp::Concatenate { axis: 0 });
    assert_err(Array::from_op(concat, vec![]), "[concatenate] takes 1 inputs, got 0");
}

#[test]
fn mlx_shape_rules_for_edge_cases() {
    let x = arange_f32(6, &[2, 3]);
    // A single array concatenates to itself; stack of one adds the axis.
    assert!(ops::concatenate(&[&x], 1).unwrap().same_node(&x));
    assert_eq!(ops::stack(&[&x], -1).unwrap().shape(), &[2, 3, 1]);
    // repeats == 0 gives an empty 1-d array (MLX), not NumPy's (2, 0).
    let r = ops::repeat(&x, 0, Some(1)).unwrap();
    assert_eq!((r.shape(), r.dtype()), (&[0usize][..], Dtype::Float32));
    // Updating the whole array returns the (broadcast, cast) update.
    let u = ops::slice_update(&x, &Array::scalar(2i32), &[]).unwrap();
    assert_eq!(u.to_vec::<f32>().unwrap(), vec![2.0; 6]);
    // Empty index arrays give empty results; an empty split list gives the array back.
    let e = ops::take(&x, &ints(&[], &[0, 2]), Some(1)).unwrap();
    assert_eq!(e.shape(), &[2, 0, 2]);
    assert_eq!(e.to_vec::<f32>().unwrap(), Vec::<f32>::new());
    let parts = ops::split(&x, &[] as &[isize; 0], 0).unwrap();
    assert_eq!(parts.len(), 1);
    // Zero padding is the identity; padding an empty axis with a constant works.
    let z = ops::pad(&arange_f32(0, &[0, 2]), &[(1, 0)], &Array::scalar(9f32), PadMode::Constant);
    assert_eq!(z.unwrap().to_vec::<f32>().unwrap(), vec![9.0; 3]);
}

#[test]
fn scatter_without_indices_updates_from_the_origin() {
    // MLX allows zero index arrays: the single update slice lands at offset 0.
    let x = arange_f32(6, &[2, 3]);
    let u = Array::from_slice(&[10f32, 20.0], &[1, 2]).unwrap();
    let out = ops::scatter_add(&x, &[], &u, &[]).unwrap();
    assert_eq!(out.to_vec::<f32>().unwrap(), vec![10.0, 21.0, 2.0, 3.0, 4.0, 5.0]);
}

#[test]
fn large_concatenate_and_pad_run_parallel_in_order() {
    let a = arange_f32(300 * 400, &[300, 400]);
    let b = ops::negative(&a).unwrap();
    let sq = ops::negative(&arange_f32(400 * 400, &[400, 400])).unwrap();
    let c = ops::concatenate(&[&a, &ops::transpose_all(&sq).unwrap()], 0).unwrap();
    let got = c.to_vec::<f32>().unwrap();
    assert_eq!(c.shape(), &[700, 400]);
    assert_eq!(got[299 * 400 + 399], (299 * 400 + 399) as f32);
    // Row 300 + i, column j of the transposed part is -(j * 400 + i).
    assert_eq!(got[(300 + 5) * 400 + 7], -((7 * 400 + 5) as f32));
    let p = ops::pad(&a, &[(1, 1)], &Array::scalar(0f32), PadMode::Edge).unwrap();
    let pv = p.to_vec::<f32>().unwrap();
    assert_eq!(p.shape(), &[302, 402]);
    assert_eq!((pv[0], pv[402 + 1], pv[301 * 402 + 401]), (0.0, 0.0, (300 * 400 - 1) as f32));
    let s = ops::stack(&[&a, &b], 1).unwrap();
    assert_eq!(s.to_vec::<f32>().unwrap()[400..402], [-0.0, -1.0]);
}
