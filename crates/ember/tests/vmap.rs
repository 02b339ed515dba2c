//! vmap against the loop it replaces: for each function, mapping over a batch axis must equal
//! applying the function to each batch element and stacking the results.

use ember::prelude::*;
use ember::transforms::vmap;

type F = fn(&[Array]) -> Result<Vec<Array>>;

fn random(shape: &[usize], seed: u64) -> Array {
    ember::ops::random::normal(
        shape,
        Dtype::Float64,
        None,
        None,
        Some(&ember::ops::random::key(seed)),
    )
    .unwrap()
}

fn element(x: &Array, axis: usize, b: usize) -> Array {
    let one = ops::slice_axis(x, axis as isize, Slice::range(b as isize, b as isize + 1)).unwrap();
    ops::squeeze(&one, Some(&[axis as isize])).unwrap()
}

/// Checks `vmap(f)` on `args` batched on `in_axes` against a loop, outputs stacked on `out_axis`.
fn check(name: &str, f: F, args: &[Array], in_axes: &[Option<isize>], out_axis: isize) {
    let mapped =
        vmap(f, in_axes, &[Some(out_axis)])(args).unwrap_or_else(|e| panic!("{name}: {e}"));
    let axis =
        |x: &Array, a: isize| if a < 0 { (a + x.ndim() as isize) as usize } else { a as usize };
    let size =
        args.iter().zip(in_axes).find_map(|(x, a)| a.map(|a| x.shape()[axis(x, a)])).unwrap();
    let looped: Vec<Array> = (0..size)
        .map(|b| {
            let one: Vec<Array> = args
                .iter()
                .zip(in_axes)
                .map(|(x, a)| a.map_or_else(|| x.clone(), |a| element(x, axis(x, a), b)))
                .collect();
            f(&one).unwrap().remove(0)
        })
        .collect();
    let refs: Vec<&Array> = looped.iter().collect();
    let expected = ops::stack(&refs, out_axis).unwrap();
    assert_eq!(mapped[0].shape(), expected.shape(), "{name}");
    let (got, want) = (mapped[0].to_vec::<f64>().unwrap(), expected.to_vec::<f64>().unwrap());
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-12 * (1.0 + w.abs()), "{name}: {got:?} vs {want:?}");
    }
}

/// A batched input: `shape` with a batch of 3 inserted at `axis` (negative counts from the end).
fn batched(shape: &[usize], axis: isize, seed: u64) -> Array {
    let at = if axis < 0 { shape.len() as isize + 1 + axis } else { axis } as usize;
    let mut s = shape.to_vec();
    s.insert(at, 3);
    random(&s, seed)
}

/// `f` on inputs of these example shapes against the loop: every input batched on axis 0
/// (outputs stacked on 0), every input on its last axis (outputs on the last axis), and each
/// input batched alone on its middle axis with the others unbatched.
fn check_batchings(name: &str, f: F, shapes: &[Vec<usize>]) {
    let n = shapes.len();
    for (axis, out) in [(0, 0), (-1, -1)] {
        let args: Vec<Array> =
            shapes.iter().enumerate().map(|(i, s)| batched(s, axis, i as u64)).collect();
        check(&format!("{name}, all on axis {axis}"), f, &args, &vec![Some(axis); n], out);
    }
    for alone in 0..n {
        let axis = (shapes[alone].len() / 2) as isize;
        let mut in_axes = vec![None; n];
        in_axes[alone] = Some(axis);
        let args: Vec<Array> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if i == alone {
                    batched(s, axis, 20 + i as u64)
                } else {
                    random(s, 30 + i as u64)
                }
            })
            .collect();
        let out = if alone == 0 { -1 } else { 0 };
        check(&format!("{name}, input {alone} alone on axis {axis}"), f, &args, &in_axes, out);
    }
}

#[test]
fn vmap_equals_a_loop_for_every_op_family() {
    let cases: Vec<(&str, F, Vec<Vec<usize>>)> = vec![
        ("sin", |x| Ok(vec![ops::sin(&x[0])?]), vec![vec![3, 4]]),
        ("add broadcast", |x| Ok(vec![ops::add(&x[0], &x[1])?]), vec![vec![3, 4], vec![4]]),
        (
            "where",
            |x| {
                let c = ops::greater(&x[0], &x[1])?;
                Ok(vec![ops::where_(&c, &x[0], &x[1])?])
            },
            vec![vec![2, 3], vec![2, 3]],
        ),
        ("reshape", |x| Ok(vec![ops::reshape(&x[0], &[6])?]), vec![vec![2, 3]]),
        ("transpose", |x| Ok(vec![ops::transpose(&x[0], &[1, 0])?]), vec![vec![2, 3]]),
        ("broadcast_to", |x| Ok(vec![ops::broadcast_to(&x[0], &[2, 3])?]), vec![vec![3]]),
        (
            "slice",
            |x| Ok(vec![ops::slice(&x[0], &[Slice::new(Some(1), None, 2)])?]),
            vec![vec![5, 2]],
        ),
        ("sum axis", |x| Ok(vec![ops::sum(&x[0], Some(&[1]), false)?]), vec![vec![2, 3]]),
        ("max all", |x| Ok(vec![ops::max(&x[0], None, true)?]), vec![vec![2, 3]]),
        (
            "argmax",
            |x| Ok(vec![ops::argmax(&x[0], Some(0), false)?.astype(Dtype::Float64)?]),
            vec![vec![4, 2]],
        ),
        ("cumsum", |x| Ok(vec![ops::cumsum(&x[0], Some(-1), false, true)?]), vec![vec![2, 3]]),
        ("matmul", |x| Ok(vec![ops::matmul(&x[0], &x[1])?]), vec![vec![2, 3], vec![3, 4]]),
        ("matvec", |x| Ok(vec![ops::matmul(&x[0], &x[1])?]), vec![vec![2, 3], vec![3]]),
        ("softmax", |x| Ok(vec![ops::softmax(&x[0], Some(&[-1]), false)?]), vec![vec![2, 5]]),
        ("sort", |x| Ok(vec![ops::sort(&x[0], Some(0))?]), vec![vec![4, 2]]),
        (
            "concatenate",
            |x| Ok(vec![ops::concatenate(&[&x[0], &x[1]], 0)?]),
            vec![vec![2], vec![3]],
        ),
        (
            "argsort",
            |x| Ok(vec![ops::argsort(&x[0], Some(-1))?.astype(Dtype::Float64)?]),
            vec![vec![2, 4]],
        ),
        ("partition", |x| Ok(vec![ops::partition(&x[0], 1, Some(0))?]), vec![vec![4, 2]]),
    ];
    for (name, f, shapes) in cases {
        check_batchings(name, f, &shapes);
    }
}

/// Indices into an axis of length `n` from the order of `x` (`x` of length n along `axis`).
fn order(x: &Array, axis: isize) -> Result<Array> {
    ops::argsort(x, Some(axis))
}

#[test]
fn vmap_of_gathers_scatters_and_pads_equals_a_loop() {
    let cases: Vec<(&str, F, Vec<Vec<usize>>)> = vec![
        (
            "take",
            |x| {
                let idx = Array::from_slice(&[2u32, 0, 1, 2], &[4])?;
                Ok(vec![ops::take(&x[0], &idx, Some(0))?])
            },
            vec![vec![3, 2]],
        ),
        (
            "take batched indices",
            |x| Ok(vec![ops::take(&x[0], &order(&x[1], 0)?, Some(0))?]),
            vec![vec![3], vec![3]],
        ),
        (
            "take 2-d indices on axis 1",
            |x| Ok(vec![ops::take(&x[0], &order(&x[1], -1)?, Some(1))?]),
            vec![vec![2, 4, 2], vec![2, 3]],
        ),
        (
            "take flattened",
            |x| Ok(vec![ops::take(&x[0], &order(&x[1], 0)?, None)?]),
            vec![vec![2, 3], vec![4]],
        ),
        (
            "take negative indices",
            |x| {
                let idx =
                    ops::subtract(&order(&x[1], 0)?.astype(Dtype::Int32)?, &Array::scalar(3i32))?;
                Ok(vec![ops::take(&x[0], &idx, Some(0))?])
            },
            vec![vec![3, 2], vec![3]],
        ),
        (
            "take scalar index",
            |x| {
                let idx = ops::take(&order(&x[1], 0)?, &Array::scalar(0u32), Some(0))?;
                Ok(vec![ops::take(&x[0], &idx, Some(1))?])
            },
            vec![vec![2, 3], vec![3]],
        ),
        (
            "take_along_axis",
            |x| Ok(vec![ops::take_along_axis(&x[0], &order(&x[1], -1)?, Some(1))?]),
            vec![vec![3, 4], vec![3, 4]],
        ),
        (
            "take_along_axis broadcast",
            |x| Ok(vec![ops::take_along_axis(&x[0], &order(&x[1], -1)?, Some(1))?]),
            vec![vec![3, 4], vec![1, 4]],
        ),
        (
            "put_along_axis",
            |x| Ok(vec![ops::put_along_axis(&x[0], &order(&x[1], -1)?, &x[2], Some(-1))?]),
            vec![vec![3, 4], vec![3, 4], vec![3, 4]],
        ),
        (
            "scatter_add_axis repeated",
            |x| {
                let idx = ops::remainder(&order(&x[1], 0)?, &Array::scalar(2u32))?;
                Ok(vec![ops::scatter_add_axis(&x[0], &idx, &x[2], 0)?])
            },
            vec![vec![4, 2], vec![3, 2], vec![3, 2]],
        ),
        (
            "scatter",
            |x| Ok(vec![ops::scatter(&x[0], &[&order(&x[1], 0)?], &x[2], &[0])?]),
            vec![vec![4, 3], vec![2], vec![2, 1, 3]],
        ),
        (
            "scatter_add two axes repeated",
            |x| {
                let rows = ops::remainder(&order(&x[1], 0)?, &Array::scalar(2u32))?;
                let cols = order(&ops::negative(&x[1])?, 0)?;
                Ok(vec![ops::scatter_add(&x[0], &[&rows, &cols], &x[2], &[0, -1])?])
            },
            vec![vec![4, 3], vec![3], vec![3, 1, 1]],
        ),
        (
            "scatter_max slices",
            |x| Ok(vec![ops::scatter_max(&x[0], &[&order(&x[1], 0)?], &x[2], &[0])?]),
            vec![vec![4, 3], vec![3], vec![3, 2, 3]],
        ),
        (
            "scatter no indices",
            |x| Ok(vec![ops::scatter_prod(&x[0], &[], &x[1], &[])?]),
            vec![vec![4, 3], vec![2, 3]],
        ),
        (
            "slice_update",
            |x| Ok(vec![ops::slice_update(&x[0], &x[1], &[Slice::new(Some(1), None, 2)])?]),
            vec![vec![4, 3], vec![2, 3]],
        ),
        (
            "slice_update broadcast",
            |x| {
                Ok(vec![ops::slice_update(
                    &x[0],
                    &x[1],
                    &[Slice::FULL, Slice::new(Some(2), None, -2)],
                )?])
            },
            vec![vec![4, 3], vec![2]],
        ),
        (
            "pad constant",
            |x| Ok(vec![ops::pad(&x[0], &[(1, 0), (0, 2)], &x[1], ops::PadMode::Constant)?]),
            vec![vec![2, 3], vec![]],
        ),
        (
            "pad edge",
            |x| Ok(vec![ops::pad(&x[0], &[(1, 2)], &x[1], ops::PadMode::Edge)?]),
            vec![vec![2, 3], vec![]],
        ),
    ];
    for (name, f, shapes) in cases {
        check_batchings(name, f, &shapes);
    }
}

#[test]
fn vmap_of_convolutions_equals_a_loop() {
    let cases: Vec<(&str, F, Vec<Vec<usize>>)> = vec![
        (
            "conv2d",
            |x| Ok(vec![ops::conv2d(&x[0], &x[1], (1, 1), (1, 0), (1, 1), 1)?]),
            vec![vec![1, 4, 3, 2], vec![3, 2, 2, 2]],
        ),
        (
            "conv2d grouped",
            |x| Ok(vec![ops::conv2d(&x[0], &x[1], (2, 1), (0, 1), (1, 2), 2)?]),
            vec![vec![2, 4, 3, 4], vec![6, 2, 2, 2]],
        ),
        (
            "conv1d",
            |x| Ok(vec![ops::conv1d(&x[0], &x[1], 2, 1, 1, 1)?]),
            vec![vec![2, 5, 2], vec![3, 3, 2]],
        ),
        (
            "conv1d dilated grouped",
            |x| Ok(vec![ops::conv1d(&x[0], &x[1], 1, 0, 2, 2)?]),
            vec![vec![1, 6, 4], vec![4, 2, 2]],
        ),
    ];
    for (name, f, shapes) in cases {
        check_batchings(name, f, &shapes);
    }
}

#[test]
fn vmap_of_fused_ops_equals_a_loop() {
    use ember::ops::fast::{self, AttentionMask};
    let cases: Vec<(&str, F, Vec<Vec<usize>>)> = vec![
        (
            "rms_norm",
            |x| Ok(vec![fast::rms_norm(&x[0], Some(&x[1]), 1e-5)?]),
            vec![vec![2, 4], vec![4]],
        ),
        (
            "layer_norm",
            |x| Ok(vec![fast::layer_norm(&x[0], Some(&x[1]), None, 1e-5)?]),
            vec![vec![2, 4], vec![4]],
        ),
        (
            "layer_norm weight and bias",
            |x| Ok(vec![fast::layer_norm(&x[0], Some(&x[1]), Some(&x[2]), 1e-5)?]),
            vec![vec![2, 4], vec![4], vec![4]],
        ),
        (
            "layer_norm bias",
            |x| Ok(vec![fast::layer_norm(&x[0], None, Some(&x[1]), 1e-5)?]),
            vec![vec![3, 2, 4], vec![4]],
        ),
        (
            "rope",
            |x| Ok(vec![fast::rope(&x[0], 4, false, Some(10000.0), 1.0, 3, None)?]),
            vec![vec![2, 3, 4]],
        ),
        (
            "rope freqs",
            |x| Ok(vec![fast::rope(&x[0], 4, true, None, 0.5, 1, Some(&ops::exp(&x[1])?))?]),
            vec![vec![2, 3, 6], vec![2]],
        ),
        (
            "sdpa causal",
            |x| {
                Ok(vec![fast::scaled_dot_product_attention(
                    &x[0],
                    &x[1],
                    &x[2],
                    0.5,
                    AttentionMask::Causal,
                )?])
            },
            vec![vec![1, 2, 3, 4], vec![1, 1, 3, 4], vec![1, 1, 3, 4]],
        ),
        (
            "sdpa additive mask",
            |x| {
                let mask = AttentionMask::Array(&x[3]);
                Ok(vec![fast::scaled_dot_product_attention(&x[0], &x[1], &x[2], 0.5, mask)?])
            },
            vec![vec![2, 2, 3, 4], vec![2, 1, 2, 4], vec![2, 1, 2, 3], vec![3, 2]],
        ),
        (
            "sdpa bool mask",
            |x| {
                let keep = ops::greater(&x[3], &Array::scalar(-1.0))?;
                let mask = AttentionMask::Array(&keep);
                Ok(vec![fast::scaled_dot_product_attention(&x[0], &x[1], &x[2], 0.5, mask)?])
            },
            vec![vec![2, 2, 3, 4], vec![2, 2, 3, 4], vec![2, 2, 3, 4], vec![2, 1, 3, 3]],
        ),
    ];
    for (name, f, shapes) in cases {
        check_batchings(name, f, &shapes);
    }
}

/// Q8_0 weights from a float input: bytes up to 100, so every block scale is finite.
fn q8_weights(x: &Array) -> Result<Array> {
    let scaled =
        ops::minimum(&ops::multiply(&ops::abs(x)?, &Array::scalar(50.0))?, &Array::scalar(100.0))?;
    scaled.astype(Dtype::Uint8)
}

/// A uint32 key from two floats.
fn key_from(x: &Array) -> Result<Array> {
    ops::multiply(&ops::abs(x)?, &Array::scalar(1e6))?.astype(Dtype::Uint32)
}

#[test]
fn vmap_of_quantized_random_and_custom_ops_equals_a_loop() {
    use ember::io::gguf::GgmlType;
    use ember::ops::quantized::GgmlLayout;
    use ember::ops::random;
    let cases: Vec<(&str, F, Vec<Vec<usize>>)> = vec![
        (
            "quantized_matmul",
            |x| {
                let y = ops::quantized_matmul_ggml(&x[0], &q8_weights(&x[1])?, GgmlType::Q8_0)?;
                Ok(vec![y.astype(Dtype::Float64)?])
            },
            vec![vec![2, 32], vec![2, 34]],
        ),
        (
            "dequantize_rows",
            |x| {
                let y = ops::dequantize_rows_ggml(
                    &q8_weights(&x[0])?,
                    &order(&x[1], 0)?,
                    GgmlType::Q8_0,
                    GgmlLayout::Rows,
                )?;
                Ok(vec![y.astype(Dtype::Float64)?])
            },
            vec![vec![3, 34], vec![3]],
        ),
        (
            "dequantize",
            |x| {
                Ok(vec![ops::dequantize_ggml(&q8_weights(&x[0])?, GgmlType::Q8_0)?
                    .astype(Dtype::Float64)?])
            },
            vec![vec![2, 34]],
        ),
        (
            "bits",
            |x| Ok(vec![random::bits(&[5], 4, Some(&key_from(&x[0])?))?.astype(Dtype::Float64)?]),
            vec![vec![2]],
        ),
        (
            "bits narrow",
            |x| {
                Ok(vec![random::bits(&[2, 3], 1, Some(&key_from(&x[0])?))?.astype(Dtype::Float64)?])
            },
            vec![vec![2]],
        ),
        (
            "normal with loc",
            |x| {
                Ok(vec![random::normal(
                    &[4],
                    Dtype::Float64,
                    Some(&x[1]),
                    None,
                    Some(&key_from(&x[0])?),
                )?])
            },
            vec![vec![2], vec![4]],
        ),
        (
            "randint int64 (split keys)",
            |x| {
                let y = random::randint(
                    &Array::scalar(-5i64),
                    &Array::scalar(100i64),
                    &[3],
                    Dtype::Int64,
                    Some(&key_from(&x[0])?),
                )?;
                Ok(vec![y.astype(Dtype::Float64)?])
            },
            vec![vec![2]],
        ),
        (
            "categorical",
            |x| {
                let y = random::categorical(&x[0], -1, None, Some(&random::key(3)))?;
                Ok(vec![y.astype(Dtype::Float64)?])
            },
            vec![vec![2, 4]],
        ),
        (
            "permutation",
            |x| Ok(vec![random::permutation_of(&x[0], 1, Some(&key_from(&x[1])?))?]),
            vec![vec![2, 5], vec![2]],
        ),
        (
            "custom function",
            |x| {
                let f = ember::transforms::CustomFunction::new(|a| {
                    Ok(vec![ops::multiply(&ops::sin(&a[0])?, &a[1])?])
                });
                Ok(vec![f.call(&[x[0].clone(), x[1].clone()])?.remove(0)])
            },
            vec![vec![3], vec![3]],
        ),
    ];
    for (name, f, shapes) in cases {
        check_batchings(name, f, &shapes);
    }
}

/// The vjp of `vmap(f)` (every input batched on axis 0) against the vjp of the loop.
fn check_vjp(name: &str, f: F, shapes: &[Vec<usize>]) {
    let n = shapes.len();
    let args: Vec<Array> =
        shapes.iter().enumerate().map(|(i, s)| batched(s, 0, 40 + i as u64)).collect();
    let mapped = move |xs: &[Array]| vmap(f, &vec![Some(0); n], &[Some(0)])(xs);
    let looped = move |xs: &[Array]| -> Result<Vec<Array>> {
        let outs = (0..3)
            .map(|b| {
                let one: Vec<Array> = xs.iter().map(|x| element(x, 0, b)).collect();
                Ok(f(&one)?.remove(0))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(vec![ops::stack(&outs.iter().collect::<Vec<_>>(), 0)?])
    };
    let cotangent = random(mapped(&args).unwrap()[0].shape(), 99);
    let (_, got) = transforms::vjp(mapped, &args, std::slice::from_ref(&cotangent))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let (_, want) = transforms::vjp(looped, &args, &[cotangent]).unwrap();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.shape(), w.shape(), "{name}: input {i}");
        let (g, w) = (g.to_vec::<f64>().unwrap(), w.to_vec::<f64>().unwrap());
        let close = g.iter().zip(&w).all(|(a, b)| (a - b).abs() <= 1e-10 * (1.0 + b.abs()));
        assert!(close, "{name}: input {i}: {g:?} vs {w:?}");
    }
}

#[test]
fn gradients_flow_through_the_batching_rules() {
    use ember::ops::fast::{self, AttentionMask};
    let cases: Vec<(&str, F, Vec<Vec<usize>>)> = vec![
        (
            "take",
            |x| Ok(vec![ops::take(&x[0], &order(&x[1], 0)?, Some(0))?]),
            vec![vec![3, 2], vec![3]],
        ),
        (
            "scatter_add",
            |x| {
                let rows = ops::remainder(&order(&x[1], 0)?, &Array::scalar(2u32))?;
                Ok(vec![ops::scatter_add(&x[0], &[&rows], &x[2], &[0])?])
            },
            vec![vec![4, 3], vec![3], vec![3, 1, 3]],
        ),
        (
            "pad",
            |x| Ok(vec![ops::pad(&x[0], &[(1, 1)], &x[1], ops::PadMode::Constant)?]),
            vec![vec![2, 3], vec![]],
        ),
        (
            "conv2d grouped",
            |x| Ok(vec![ops::conv2d(&x[0], &x[1], (1, 1), (1, 0), (1, 1), 2)?]),
            vec![vec![1, 3, 3, 4], vec![4, 2, 2, 2]],
        ),
        (
            "layer_norm",
            |x| Ok(vec![fast::layer_norm(&x[0], Some(&x[1]), Some(&x[2]), 1e-5)?]),
            vec![vec![2, 4], vec![4], vec![4]],
        ),
        (
            "sdpa",
            |x| {
                let mask = AttentionMask::Causal;
                Ok(vec![fast::scaled_dot_product_attention(&x[0], &x[1], &x[2], 0.5, mask)?])
            },
            vec![vec![1, 2, 3, 4], vec![1, 1, 3, 4], vec![1, 1, 3, 4]],
        ),
        (
            "custom function",
            |x| {
                let f = transforms::CustomFunction::new(|a| {
                    Ok(vec![ops::multiply(&ops::sin(&a[0])?, &a[1])?])
                });
                Ok(vec![f.call(&[x[0].clone(), x[1].clone()])?.remove(0)])
            },
            vec![vec![3], vec![3]],
        ),
    ];
    for (name, f, shapes) in cases {
        check_vjp(name, f, &shapes);
    }
}

#[test]
fn vmap_of_as_strided_is_an_error_naming_it() {
    // MLX has no batching rule for as_strided: its strides address the whole input.
    let f = vmap(
        |x: &[Array]| Ok(vec![ops::as_strided(&x[0], &[2], &[2], 0)?]),
        &[Some(0)],
        &[Some(0)],
    );
    let err = f(&[random(&[3, 4], 1)]).unwrap_err().to_string();
    assert!(err.contains("as_strided"), "{err}");
}

#[test]
fn nested_vmap_maps_two_axes() {
    let inner = vmap(
        |x: &[Array]| Ok(vec![ops::sum(&ops::square(&x[0])?, None, false)?]),
        &[Some(0)],
        &[Some(0)],
    );
    let outer = vmap(move |x: &[Array]| inner(x), &[Some(1)], &[Some(0)]);
    let x = random(&[2, 3, 4], 1);
    let got = outer(std::slice::from_ref(&x)).unwrap().remove(0);
    // got[j][i] = sum_k x[i][j][k]^2
    let expected =
        ops::transpose(&ops::sum(&ops::square(&x).unwrap(), Some(&[2]), false).unwrap(), &[1, 0])
            .unwrap();
    assert_eq!(got.shape(), &[3, 2]);
    let (g, e) = (got.to_vec::<f64>().unwrap(), expected.to_vec::<f64>().unwrap());
    assert!(g.iter().zip(&e).all(|(a, b)| (a - b).abs() < 1e-12), "{g:?} vs {e:?}");
}

#[test]
fn vmap_rejects_mismatched_batches_and_axes() {
    let f = vmap(|x: &[Array]| Ok(vec![ops::add(&x[0], &x[1])?]), &[Some(0), Some(0)], &[Some(0)]);
    let err = f(&[random(&[2, 3], 1), random(&[3, 3], 2)]).unwrap_err().to_string();
    assert!(err.contains("batch axis"), "{err}");
    let g = vmap(|x: &[Array]| Ok(vec![x[0].clone()]), &[Some(2)], &[Some(0)]);
    let err = g(&[random(&[2], 1)]).unwrap_err().to_string();
    assert!(err.contains("out of bounds"), "{err}");
    let h = vmap(|x: &[Array]| Ok(vec![x[0].clone()]), &[None], &[Some(0)]);
    assert!(h(&[random(&[2], 1)]).unwrap_err().to_string().contains("at least one"));
}
