//! Gradient cases beyond the op-spec table (tests/grad.rs): higher orders against
//! hand-computed derivatives, a small MLP's cross-entropy against finite differences, MLX's
//! tie and zero conventions (hand-computed), every convolution geometry against finite
//! differences, the quantized product, and the ops whose gradients are errors.

mod gradcheck;

use ember::io::gguf::GgmlType;
use ember::ops::fast::rope;
use ember::prelude::*;
use ember::transforms::{grad, jvp, value_and_grad, vjp};
use gradcheck::{assert_close, check, fd_gradient, Domain, Layout, Rng};

fn arr(v: &[f64]) -> Array {
    Array::from_slice(v, &[v.len()]).unwrap()
}

fn values(a: &Array) -> Vec<f64> {
    a.to_vec::<f64>().unwrap()
}

/// The gradient of `sum(f(x))` at `x`.
fn grad_of_sum(f: impl Fn(&Array) -> Result<Array>, x: &Array) -> Array {
    let (_, g) = vjp(
        |v| Ok(vec![ops::sum(&f(&v[0])?, None, false)?]),
        std::slice::from_ref(x),
        &[Array::scalar(1.0)],
    )
    .unwrap();
    g.into_iter().next().unwrap()
}

#[test]
fn repeated_grads_of_sin_cycle_through_its_derivatives() {
    let xs = [0.3, -1.2, 2.0];
    let x = arr(&xs);
    // d/dx sin = cos, d2 = -sin, d3 = -cos, d4 = sin: each level differentiates the last.
    let d1 = |v: &Array| Ok(grad_of_sum(ops::sin, v));
    let d2 = |v: &Array| Ok(grad_of_sum(d1, v));
    let d3 = |v: &Array| Ok(grad_of_sum(d2, v));
    let d4 = grad_of_sum(d3, &x);
    let want = |g: fn(f64) -> f64| xs.iter().map(|&v| g(v)).collect::<Vec<_>>();
    assert_close("d2 sin", &values(&d2(&x).unwrap()), &want(|v| -v.sin()), 1e-12);
    assert_close("d3 sin", &values(&d3(&x).unwrap()), &want(|v| -v.cos()), 1e-12);
    assert_close("d4 sin", &values(&d4), &want(f64::sin), 1e-12);
}

#[test]
fn hessian_vector_products_match_the_hand_computed_hessian() {
    // f(x) = sum(x^3) + x0 * x1 + sum(exp(x0) * x^2): with e = exp(x0) and s = sum(x^2),
    // H = diag(6 x) + [[0, 1, 0], [1, 0, 0], [0, 0, 0]] + 2 e I
    //     + (first row and column) 2 e x (twice, off the corner) + e s at (0, 0).
    let xs = [0.4f64, -0.7, 1.3];
    let v = [0.5, 2.0, -1.0];
    let f = |x: &Array| -> Result<Array> {
        let cube = ops::sum(&ops::power(x, &Array::scalar(3.0))?, None, false)?;
        let first = ops::slice(x, &[Slice::range(0, 1)])?;
        let second = ops::slice(x, &[Slice::range(1, 2)])?;
        let cross = ops::sum(&ops::multiply(&first, &second)?, None, false)?;
        let sq = ops::sum(&ops::square(x)?, None, false)?;
        let tied = ops::sum(&ops::multiply(&ops::exp(&first)?, &sq)?, None, false)?;
        ops::add(&ops::add(&cube, &cross)?, &tied)
    };
    let e = xs[0].exp();
    let s: f64 = xs.iter().map(|a| a * a).sum();
    let mut h = [[0.0; 3]; 3];
    for i in 0..3 {
        h[i][i] = 6.0 * xs[i] + 2.0 * e;
        h[0][i] += 2.0 * e * xs[i];
        h[i][0] += 2.0 * e * xs[i];
    }
    h[0][0] += e * s;
    h[0][1] += 1.0;
    h[1][0] += 1.0;
    let want: Vec<f64> = (0..3).map(|i| (0..3).map(|j| h[i][j] * v[j]).sum()).collect();
    let gradient = |x: &Array| -> Result<Array> { Ok(grad_of_sum(f, x)) };
    // Forward over reverse: the jvp of the gradient.
    let (_, hv) = jvp(|a| Ok(vec![gradient(&a[0])?]), &[arr(&xs)], &[arr(&v)]).unwrap();
    assert_close("jvp of grad", &values(&hv[0]), &want, 1e-12);
    // Reverse over reverse: the gradient of <grad f, v>.
    let hv = grad_of_sum(|a| ops::multiply(&gradient(a)?, &arr(&v)), &arr(&xs));
    assert_close("grad of grad", &values(&hv), &want, 1e-12);
}

/// A 2-layer MLP's mean cross-entropy (via logsumexp) on fixed inputs and labels.
fn mlp_loss(params: &[Array]) -> Result<Array> {
    let mut rng = Rng::new(99);
    let x = Array::from_slice(&rng.uniform(-1.0, 1.0, 12), &[4, 3])?;
    let labels = Array::from_slice(&[2u32, 0, 1, 2], &[4, 1])?;
    let hidden = ops::add(&ops::matmul(&x, &params[0])?, &params[1])?;
    let hidden = ops::maximum(&hidden, &Array::scalar(0.0))?;
    let logits = ops::add(&ops::matmul(&hidden, &params[2])?, &params[3])?;
    let picked = ops::take_along_axis(&logits, &labels, Some(-1))?;
    let nll = ops::subtract(&ops::logsumexp(&logits, Some(&[-1]), true)?, &picked)?;
    ops::mean(&nll, None, false)
}

#[test]
fn mlp_cross_entropy_gradient_matches_finite_differences() {
    let shapes: Vec<Vec<usize>> = vec![vec![3, 5], vec![5], vec![5, 3], vec![3]];
    let mut rng = Rng::new(5);
    let vals: Vec<Vec<f64>> =
        shapes.iter().map(|s| rng.uniform(-1.0, 1.0, s.iter().product())).collect();
    let params: Vec<Tree> =
        vals.iter().zip(&shapes).map(|(v, s)| Array::from_slice(v, s).unwrap().into()).collect();
    let loss = |args: &[Tree]| -> Result<Tree> {
        let p = args.iter().map(|t| t.as_array().cloned()).collect::<Result<Vec<_>>>()?;
        Ok(mlp_loss(&p)?.into())
    };
    let (value, grads) = value_and_grad(loss, &[0, 1, 2, 3])(&params).unwrap();
    let direct =
        mlp_loss(&params.iter().map(|t| t.as_array().unwrap().clone()).collect::<Vec<_>>())
            .unwrap();
    assert_close(
        "loss",
        &[value.as_array().unwrap().item::<f64>().unwrap()],
        &[direct.item::<f64>().unwrap()],
        1e-12,
    );
    let fd = fd_gradient(&mlp_loss, &vals, &shapes, &[1.0]);
    for (k, g) in grads.iter().enumerate() {
        assert_close(
            &format!("parameter {k}"),
            &values(g.as_array().unwrap()),
            &fd[k],
            gradcheck::TOL,
        );
    }
    // And the same through the generic checker (jvp, adjoint, second order).
    let inputs: Vec<(&[usize], Domain)> = shapes.iter().map(|s| (&s[..], Domain::Any)).collect();
    check("mlp", &inputs, &mlp_loss, Layout::Contiguous, true, 11);
}

#[test]
fn ties_max_splits_maximum_sends_to_b_cummax_to_the_latest() {
    let g = grad_of_sum(|x| ops::max(x, None, false), &arr(&[1.0, 3.0, 3.0, 2.0]));
    assert_eq!(values(&g), [0.0, 0.5, 0.5, 0.0]);
    let g = grad_of_sum(
        |x| ops::min(x, Some(&[1]), false),
        &Array::from_slice(&[1.0, 1.0, 1.0, 4.0, 2.0, 5.0], &[2, 3]).unwrap(),
    );
    let third = 1.0 / 3.0;
    assert_close("min ties", &values(&g), &[third, third, third, 0.0, 1.0, 0.0], 1e-15);
    // cummax of [1, 3, 2, 3, 0] is [1, 3, 3, 3, 3]: each output's cotangent goes to the
    // latest element equal to it, so the second 3 takes over from the first.
    let g = grad_of_sum(|x| ops::cummax(x, Some(0), false, true), &arr(&[1.0, 3.0, 2.0, 3.0, 0.0]));
    assert_eq!(values(&g), [1.0, 2.0, 0.0, 2.0, 0.0]);
    let (a, b) = (arr(&[1.0, 2.0, 3.0]), arr(&[1.0, 0.0, 5.0]));
    let (_, g) =
        vjp(|v| Ok(vec![ops::maximum(&v[0], &v[1])?]), &[a.clone(), b.clone()], &[arr(&[1.0; 3])])
            .unwrap();
    assert_eq!((values(&g[0]), values(&g[1])), (vec![0.0, 1.0, 0.0], vec![1.0, 0.0, 1.0]));
    let (_, g) =
        vjp(|v| Ok(vec![ops::minimum(&v[0], &v[1])?]), &[a, b], &[arr(&[1.0; 3])]).unwrap();
    assert_eq!((values(&g[0]), values(&g[1])), (vec![0.0, 0.0, 1.0], vec![1.0, 1.0, 0.0]));
}

#[test]
fn products_with_zeros_have_exact_gradients() {
    // d prod / dx_i is the product of the others.
    let g = grad_of_sum(|x| ops::prod(x, None, false), &arr(&[2.0, 0.0, 3.0]));
    assert_eq!(values(&g), [0.0, 6.0, 0.0]);
    let g = grad_of_sum(|x| ops::prod(x, None, false), &arr(&[0.0, 0.0, 3.0]));
    assert_eq!(values(&g), [0.0, 0.0, 0.0]);
    // cumprod of [2, 0, 3, 4] is [2, 0, 0, 0]; the sum's derivatives are
    // [1, 2 + 2*3 + 2*3*4, 0, 0].
    let g = grad_of_sum(|x| ops::cumprod(x, Some(0), false, true), &arr(&[2.0, 0.0, 3.0, 4.0]));
    assert_eq!(values(&g), [1.0, 32.0, 0.0, 0.0]);
    // Reversed and exclusive: y0 = x1 x2 x3, y1 = x2 x3, y2 = x3, y3 = 1, so the sum's
    // derivatives are [0, x2 x3, x1 x3 + x3, x1 x2 + x2 + 1].
    let g = grad_of_sum(|x| ops::cumprod(x, Some(0), true, false), &arr(&[2.0, 0.0, 3.0, 4.0]));
    assert_eq!(values(&g), [0.0, 12.0, 4.0, 4.0]);
    // Its jvp is exact too: J v for v = e_1 is d y / d x1 = [x2 x3, 0, 0, 0] = [12, 0, 0, 0].
    let (_, t) = jvp(
        |v| Ok(vec![ops::cumprod(&v[0], Some(0), true, false)?]),
        &[arr(&[2.0, 0.0, 3.0, 4.0])],
        &[arr(&[0.0, 1.0, 0.0, 0.0])],
    )
    .unwrap();
    assert_eq!(values(&t[0]), [12.0, 0.0, 0.0, 0.0]);
}

#[test]
fn astype_passes_gradients_in_the_input_dtype() {
    let x = arr(&[0.25, -1.5]);
    let g = grad_of_sum(|v| ops::multiply(&v.astype(Dtype::Float32)?, &Array::scalar(3.0f32)), &x);
    assert_eq!(g.dtype(), Dtype::Float64);
    assert_eq!(values(&g), [3.0, 3.0]);
    let (_, t) =
        jvp(|v| Ok(vec![v[0].astype(Dtype::Float32)?]), &[x], &[arr(&[2.0, -4.0])]).unwrap();
    assert_eq!((t[0].dtype(), t[0].to_vec::<f32>().unwrap()), (Dtype::Float32, vec![2.0, -4.0]));
}

#[test]
fn every_conv1d_geometry_matches_finite_differences() {
    let mut seed = 100;
    for stride in 1..=3 {
        for padding in 0..=2 {
            for dilation in 1..=2 {
                for groups in [1, 2] {
                    let (len, k) = (8, 3);
                    let f = move |x: &[Array]| {
                        ops::conv1d(&x[0], &x[1], stride, padding, dilation, groups)
                    };
                    let name = format!("conv1d stride {stride} padding {padding} dilation {dilation} groups {groups}");
                    let (xs, ws): (&[usize], &[usize]) = (&[2, len, 4], &[4, k, 4 / groups]);
                    check(
                        &name,
                        &[(xs, Domain::Any), (ws, Domain::Any)],
                        &f,
                        Layout::Contiguous,
                        false,
                        seed,
                    );
                    seed += 1;
                }
            }
        }
    }
}

#[test]
fn conv2d_geometries_match_finite_differences() {
    // (input, weight, stride, padding, dilation, groups), including a kernel as large as the
    // padded input and windows that leave the last rows unused.
    type Geometry =
        (&'static [usize], &'static [usize], (usize, usize), (usize, usize), (usize, usize), usize);
    let cases: [Geometry; 4] = [
        (&[1, 4, 4, 1], &[2, 4, 4, 1], (1, 1), (0, 0), (1, 1), 1),
        (&[1, 7, 6, 2], &[2, 2, 2, 2], (3, 2), (0, 1), (2, 1), 1),
        (&[2, 5, 5, 3], &[3, 3, 1, 1], (2, 2), (2, 0), (1, 1), 3),
        (&[1, 6, 6, 4], &[6, 2, 3, 2], (1, 2), (1, 1), (2, 2), 2),
    ];
    for (i, (xs, ws, stride, padding, dilation, groups)) in cases.into_iter().enumerate() {
        let f = move |x: &[Array]| ops::conv2d(&x[0], &x[1], stride, padding, dilation, groups);
        let name = format!("conv2d {xs:?} {ws:?} {stride:?} {padding:?} {dilation:?} {groups}");
        check(
            &name,
            &[(xs, Domain::Any), (ws, Domain::Any)],
            &f,
            Layout::Contiguous,
            i == 1,
            200 + i as u64,
        );
    }
}

/// A Q8_0 matrix of 2 rows of 32 values: scale 0.5 (f16 0x3800) and int8 quants `q(r, i)`.
fn q8_weights() -> (Array, Vec<f64>) {
    let q = |r: usize, i: usize| ((r * 7 + i * 5) % 17) as i8 - 8;
    let mut bytes = Vec::new();
    let mut dense = Vec::new();
    for r in 0..2 {
        bytes.extend([0x00u8, 0x38]);
        for i in 0..32 {
            bytes.push(q(r, i) as u8);
            dense.push(0.5 * q(r, i) as f64);
        }
    }
    (Array::from_slice(&bytes, &[2, 34]).unwrap(), dense)
}

#[test]
fn quantized_matmul_vjp_is_the_transposed_dequantized_product() {
    let (w, dense) = q8_weights();
    let x = Array::from_slice(
        &Rng::new(1).uniform(-1.0, 1.0, 96).iter().map(|&v| v as f32).collect::<Vec<_>>(),
        &[3, 32],
    )
    .unwrap();
    let cot = [1.0f32, -2.0, 0.5, 0.25, 3.0, -1.0];
    let (_, g) = vjp(
        |v| Ok(vec![ops::quantized_matmul_ggml(&v[0], &w, GgmlType::Q8_0)?]),
        std::slice::from_ref(&x),
        &[Array::from_slice(&cot, &[3, 2]).unwrap()],
    )
    .unwrap();
    // dx[m, i] = sum_n cot[m, n] * W[n, i].
    let want: Vec<f64> = (0..3)
        .flat_map(|m| (0..32).map(move |i| (m, i)))
        .map(|(m, i)| (0..2).map(|n| cot[m * 2 + n] as f64 * dense[n * 32 + i]).sum())
        .collect();
    let got: Vec<f64> = g[0].to_vec::<f32>().unwrap().iter().map(|&v| v as f64).collect();
    assert_close("dx", &got, &want, 1e-6);
    // The jvp is the product of the tangent, the vjp's transpose.
    let t = Array::from_slice(&[1.0f32; 96], &[3, 32]).unwrap();
    let (_, jt) = jvp(
        |v| Ok(vec![ops::quantized_matmul_ggml(&v[0], &w, GgmlType::Q8_0)?]),
        &[x],
        std::slice::from_ref(&t),
    )
    .unwrap();
    let direct = ops::quantized_matmul_ggml(&t, &w, GgmlType::Q8_0).unwrap();
    assert_eq!(jt[0].to_vec::<f32>().unwrap(), direct.to_vec::<f32>().unwrap());
}

fn err_of<T>(r: Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn gradients_that_do_not_exist_are_errors_naming_the_op() {
    let (w, _) = q8_weights();
    let x = Array::from_slice(&[0.5f32; 32], &[1, 32]).unwrap();
    let e = err_of(vjp(
        |v| Ok(vec![ops::quantized_matmul_ggml(&x, &v[0], GgmlType::Q8_0)?]),
        &[w],
        &[Array::from_slice(&[1.0f32, 1.0], &[1, 2]).unwrap()],
    ));
    assert!(e.contains("[quantized_matmul]") && e.contains("quantized weights"), "{e}");
    let (w, _) = q8_weights();
    let e = err_of(vjp(
        |v| Ok(vec![ops::dequantize_ggml(&v[0], GgmlType::Q8_0)?]),
        &[w],
        &[ops::ones(&[2, 32], Dtype::Float32).unwrap()],
    ));
    assert!(e.contains("[dequantize]") && e.contains("quantized weights"), "{e}");

    let x = Array::from_slice(&[1.0, 2.0, 3.0], &[3, 1]).unwrap();
    let idx = Array::from_slice(&[0i32, 0], &[2]).unwrap();
    let upd = Array::from_slice(&[2.0, 3.0], &[2, 1, 1]).unwrap();
    let f = |v: &[Array]| Ok(vec![ops::scatter_prod(&v[0], &[&idx], &v[1], &[0])?]);
    let e = err_of(vjp(
        f,
        &[x.clone(), upd.clone()],
        &[Array::from_slice(&[1.0; 3], &[3, 1]).unwrap()],
    ));
    assert!(e.contains("scatter_prod"), "{e}");
    let tangents = [ops::zeros_like(&x).unwrap(), ops::ones_like(&upd).unwrap()];
    let e = err_of(jvp(f, &[x, upd], &tangents));
    assert!(e.contains("scatter_prod"), "{e}");

    let x = ops::ones(&[1, 2, 4], Dtype::Float32).unwrap();
    let freqs = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    let f = |v: &[Array]| Ok(vec![rope(&x, 4, false, None, 1.0, 0, Some(&v[0]))?]);
    let e = err_of(vjp(f, &[freqs], &[ops::ones(&[1, 2, 4], Dtype::Float32).unwrap()]));
    assert!(e.contains("[rope]") && e.contains("frequencies"), "{e}");
}

#[test]
fn sort_vjp_returns_each_cotangent_to_its_element() {
    // sum(w * sort(x)^2): each element's gradient is 2 x w[rank of x].
    let xs = [0.3, -1.7, 2.5, 0.9];
    let f = |args: &[Tree]| -> Result<Tree> {
        let s = ops::sort(args[0].as_array()?, None)?;
        let w = arr(&[1.0, 2.0, 3.0, 4.0]);
        Ok(ops::sum(&ops::multiply(&ops::square(&s)?, &w)?, None, false)?.into())
    };
    let g = grad(f, &[0])(&[arr(&xs).into()]).unwrap();
    // Sorted order: -1.7, 0.3, 0.9, 2.5 get weights 1, 2, 3, 4.
    let want = [2.0 * 0.3 * 2.0, 2.0 * -1.7 * 1.0, 2.0 * 2.5 * 4.0, 2.0 * 0.9 * 3.0];
    assert_close("sort", &values(g[0].as_array().unwrap()), &want, 1e-12);
}

#[test]
fn quantized_matmul_vjp_is_the_same_for_packed_weights() {
    use ember::ops::quantized::{pack_ggml_in_place, quantized_matmul_ggml_layout, GgmlLayout};
    // Eight Q8_0 rows (one packed group): scale 0.5 (f16 0x3800), values from a pattern.
    let mut bytes = Vec::new();
    for r in 0..8 {
        bytes.extend([0x00u8, 0x38]);
        bytes.extend((0..32).map(|i| (((r * 7 + i * 5) % 17) as i8 - 8) as u8));
    }
    let rows = Array::from_slice(&bytes, &[8, 34]).unwrap();
    assert!(pack_ggml_in_place(GgmlType::Q8_0, &mut bytes, 8));
    let packed = Array::from_slice(&bytes, &[8, 34]).unwrap();
    let x = Array::from_slice(
        &Rng::new(2).uniform(-1.0, 1.0, 64).iter().map(|&v| v as f32).collect::<Vec<_>>(),
        &[2, 32],
    )
    .unwrap();
    let cot = Array::from_slice(
        &Rng::new(3).uniform(-1.0, 1.0, 16).iter().map(|&v| v as f32).collect::<Vec<_>>(),
        &[2, 8],
    )
    .unwrap();
    let grad = |w: &Array, layout| {
        let w = w.clone();
        let f = move |v: &[Array]| {
            Ok(vec![quantized_matmul_ggml_layout(&v[0], &w, GgmlType::Q8_0, layout)?])
        };
        vjp(f, std::slice::from_ref(&x), std::slice::from_ref(&cot)).unwrap().1[0]
            .to_vec::<f32>()
            .unwrap()
    };
    let (want, got) = (grad(&rows, GgmlLayout::Rows), grad(&packed, GgmlLayout::Packed));
    assert_eq!(got.len(), 64);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{got:?} vs {want:?}");
    }
}
