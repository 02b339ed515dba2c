//! conv1d and conv2d against NumPy fixtures (scripts/fixtures/conv.py), against dense
//! re-formulations of grouped and depthwise convolutions, and their error cases.
mod common;
mod synth;

use common::*;
use ember::prelude::*;
use serde_json::Value;
use synth::{assert_close, noise};

fn pair(v: &Value) -> (usize, usize) {
    let a: Vec<usize> =
        v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
    (a[0], a[1])
}

fn single(v: &Value) -> usize {
    v.as_array().unwrap()[0].as_u64().unwrap() as usize
}

#[test]
fn convolutions_match_numpy() {
    let cases = fixture("conv");
    assert!(cases.len() >= 20);
    for (name, case) in &cases {
        let a = args(case);
        let groups = case["groups"].as_u64().unwrap() as usize;
        let out = match case["op"].as_str().unwrap() {
            "conv1d" => ops::conv1d(
                &a[0],
                &a[1],
                single(&case["stride"]),
                single(&case["padding"]),
                single(&case["dilation"]),
                groups,
            ),
            _ => ops::conv2d(
                &a[0],
                &a[1],
                pair(&case["stride"]),
                pair(&case["padding"]),
                pair(&case["dilation"]),
                groups,
            ),
        }
        .unwrap();
        let want = expected(case);
        let (rtol, atol) = match want.dtype {
            Dtype::Float16 => (8e-3, 8e-3),
            Dtype::Float64 => (1e-12, 1e-12),
            _ => (1e-5, 1e-5),
        };
        assert_matches(name, &out, &want, rtol, atol);
    }
}

/// Expands grouped weights (C_out, KH, KW, C_in / g) into dense block-diagonal ones
/// (C_out, KH, KW, C_in) with zeros outside each output channel's group.
fn block_diagonal(w: &Array, groups: usize) -> Array {
    let s = w.shape().to_vec();
    let (o, cg) = (s[0], s[3]);
    let og = o / groups;
    let mut sel = vec![0f32; o * cg * groups * cg];
    // sel[oc, c_local, c_full] = 1 when c_full = group(oc) * cg + c_local.
    for oc in 0..o {
        for c in 0..cg {
            sel[(oc * cg + c) * groups * cg + (oc / og) * cg + c] = 1.0;
        }
    }
    let sel = Array::from_vec(sel, &[o, 1, cg, groups * cg]).unwrap();
    // (O, KH*KW, 1, Cg) @ (O, 1, Cg, C) -> (O, KH*KW, 1, C)
    let w4 = ops::reshape_to(w, &[o, s[1] * s[2], 1, cg]).unwrap();
    let dense = ops::matmul(&w4, &sel).unwrap();
    ops::reshape_to(&dense, &[o, s[1], s[2], groups * cg]).unwrap()
}

#[test]
fn grouped_and_depthwise_equal_dense_block_diagonal_convolutions() {
    // Sizes large enough for the parallel paths of both kernels.
    for (c, o, groups, stride) in [(32, 32, 32, (1, 1)), (16, 32, 16, (2, 1)), (12, 18, 3, (1, 2))]
    {
        let x = noise(&[2, 40, 36, c], c as u64);
        let w = noise(&[o, 3, 3, c / groups], o as u64 + 7);
        let grouped = ops::conv2d(&x, &w, stride, (1, 1), (1, 1), groups).unwrap();
        let dense =
            ops::conv2d(&x, &block_diagonal(&w, groups), stride, (1, 1), (1, 1), 1).unwrap();
        assert_close(&format!("groups {groups}"), &grouped, &dense, 1e-5);
    }
}

#[test]
fn chunked_batch_equals_each_image_alone() {
    // 8 images: the im2col matrix is built in several chunks on several threads; one image
    // alone fits one chunk.
    let x = noise(&[8, 16, 16, 16], 3);
    let w = noise(&[32, 3, 3, 16], 4);
    let all = ops::conv2d(&x, &w, (1, 1), (1, 1), (1, 1), 1).unwrap();
    for n in [0, 5, 7] {
        let xn = ops::slice_axis(&x, 0, Slice::range(n, n + 1)).unwrap();
        let one = ops::conv2d(&xn, &w, (1, 1), (1, 1), (1, 1), 1).unwrap();
        let alln = ops::slice_axis(&all, 0, Slice::range(n, n + 1)).unwrap();
        assert_close(&format!("image {n}"), &alln, &one, 1e-5);
    }
}

#[test]
fn pointwise_convolution_is_a_matmul() {
    let x = noise(&[2, 5, 7, 12], 5);
    let w = noise(&[9, 1, 1, 12], 6);
    let y = ops::conv2d(&x, &w, (1, 1), (0, 0), (1, 1), 1).unwrap();
    let w2 = ops::transpose(&ops::reshape_to(&w, &[9, 12]).unwrap(), &[1, 0]).unwrap();
    let want = ops::matmul(&x, &w2).unwrap();
    assert_close("1x1", &y, &want, 1e-6);
}

#[test]
fn strided_inputs_give_the_same_result() {
    // NCHW data viewed as NHWC: the kernel sees a transposed, non-contiguous input.
    let nchw = noise(&[2, 3, 6, 5], 8);
    let x = ops::transpose(&nchw, &[0, 2, 3, 1]).unwrap();
    let w = noise(&[4, 3, 3, 3], 9);
    let strided = ops::conv2d(&x, &w, (1, 1), (1, 1), (1, 1), 1).unwrap();
    let dense = ops::conv2d(&ops::contiguous(&x).unwrap(), &w, (1, 1), (1, 1), (1, 1), 1).unwrap();
    assert_close("strided", &strided, &dense, 0.0);
}

#[test]
fn half_precision_tracks_float32() {
    let x = noise(&[1, 9, 9, 8], 10);
    let w = noise(&[6, 3, 3, 8], 11);
    let want = ops::conv2d(&x, &w, (2, 2), (1, 1), (1, 1), 1).unwrap();
    for dtype in [Dtype::Bfloat16, Dtype::Float16] {
        let (xh, wh) = (x.astype(dtype).unwrap(), w.astype(dtype).unwrap());
        let y = ops::conv2d(&xh, &wh, (2, 2), (1, 1), (1, 1), 1).unwrap();
        assert_eq!(y.dtype(), dtype);
        assert_close(&format!("{dtype}"), &y, &want, 0.06);
    }
}

#[test]
fn empty_inputs_give_empty_or_zero_outputs() {
    // No images: an empty output of the right shape.
    let y = ops::conv2d(
        &noise(&[0, 5, 5, 2], 20),
        &noise(&[3, 3, 3, 2], 21),
        (1, 1),
        (0, 0),
        (1, 1),
        1,
    );
    assert_eq!(y.unwrap().shape(), &[0, 3, 3, 3]);
    // No input channels: every output is an empty sum.
    let x = ops::zeros(&[1, 4, 4, 0], Dtype::Float32).unwrap();
    let w = ops::zeros(&[2, 3, 3, 0], Dtype::Float32).unwrap();
    let y = ops::conv2d(&x, &w, (1, 1), (1, 1), (1, 1), 1).unwrap();
    assert_eq!(y.shape(), &[1, 4, 4, 2]);
    assert!(y.to_vec::<f32>().unwrap().iter().all(|&v| v == 0.0));
}

#[test]
fn output_dtype_is_promoted() {
    let x = noise(&[1, 4, 2], 12).astype(Dtype::Float16).unwrap();
    let w = Array::from_slice(&[1i32, 2, 3, 4], &[1, 2, 2]).unwrap();
    assert_eq!(ops::conv1d(&x, &w, 1, 0, 1, 1).unwrap().dtype(), Dtype::Float16);
    let w32 = w.astype(Dtype::Float32).unwrap();
    assert_eq!(ops::conv1d(&x, &w32, 1, 0, 1, 1).unwrap().dtype(), Dtype::Float32);
}

fn err(r: Result<Array>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn bad_arguments_are_errors_naming_op_and_shapes() {
    let x = noise(&[1, 5, 5, 4], 13);
    let w = noise(&[2, 3, 3, 3], 14);
    let e = err(ops::conv2d(&x, &w, (1, 1), (0, 0), (1, 1), 1));
    assert!(
        e.starts_with("[conv2d]") && e.contains("[1, 5, 5, 4]") && e.contains("[2, 3, 3, 3]"),
        "{e}"
    );
    // 4 input channels cannot split into 3 groups; 3 output channels cannot either.
    let e = err(ops::conv2d(&x, &noise(&[3, 3, 3, 1], 15), (1, 1), (0, 0), (1, 1), 3));
    assert!(e.starts_with("[conv2d]") && e.contains("not divisible by 3 groups"), "{e}");
    let e = err(ops::conv2d(&x, &noise(&[3, 3, 3, 2], 15), (1, 1), (0, 0), (1, 1), 2));
    assert!(e.contains("output channels") && e.contains("[3, 3, 3, 2]"), "{e}");
    let e = err(ops::conv2d(&x, &noise(&[2, 3, 3, 4], 16), (1, 1), (0, 0), (1, 1), 0));
    assert!(e.contains("must be positive"), "{e}");
    let e = err(ops::conv2d(&x, &noise(&[2, 3, 3, 4], 16), (0, 1), (0, 0), (1, 1), 1));
    assert!(e.contains("must be positive"), "{e}");
    // Wrong ranks.
    let e = err(ops::conv1d(&x, &w, 1, 0, 1, 1));
    assert!(
        e.starts_with("[conv1d]") && e.contains("[1, 5, 5, 4]") && e.contains("3 dimensions"),
        "{e}"
    );
    let e = err(ops::conv2d(&x, &noise(&[2, 3, 4], 17), (1, 1), (0, 0), (1, 1), 1));
    assert!(e.starts_with("[conv2d]") && e.contains("weight with shape [2, 3, 4]"), "{e}");
    // A dilated kernel wider than the padded input.
    let e = err(ops::conv2d(&x, &noise(&[2, 3, 3, 4], 18), (1, 1), (0, 0), (3, 1), 1));
    assert!(e.contains("does not fit"), "{e}");
    // Integer input, as in MLX, is refused.
    let xi = Array::from_slice(&[1i32; 8], &[1, 4, 2]).unwrap();
    let e = err(ops::conv1d(&xi, &noise(&[1, 1, 2], 19), 1, 0, 1, 1));
    assert!(e.contains("floating point") && e.contains("int32"), "{e}");
}
