//! The transform engine: vjp/jvp/grad/value_and_grad over trees, stop_gradient, custom
//! functions and checkpoint, nesting (grad of grad), and evaluation inside a traced function.
//! Expected values are hand-computed derivatives.

use ember::prelude::*;
use ember::transforms::{
    checkpoint, grad, jvp, stop_gradient, value_and_grad, vjp, CustomFunction,
};
use std::collections::BTreeMap;

fn arr(v: &[f64]) -> Array {
    Array::from_slice(v, &[v.len()]).unwrap()
}

fn close(a: &Array, expected: &[f64]) {
    let got = a.to_vec::<f64>().unwrap();
    assert_eq!(got.len(), expected.len(), "{got:?} vs {expected:?}");
    for (g, e) in got.iter().zip(expected) {
        assert!((g - e).abs() <= 1e-9 * (1.0 + e.abs()), "{got:?} vs {expected:?}");
    }
}

/// The scalar loss `sum(f(x))` as a tree function of one argument.
fn summed(f: fn(&Array) -> Result<Array>) -> impl Fn(&[Tree]) -> Result<Tree> {
    move |args: &[Tree]| Ok(Tree::from(ops::sum(&f(args[0].as_array()?)?, None, false)?))
}

#[test]
fn vjp_of_product_gives_the_other_factor() {
    let (a, b) = (arr(&[1.0, 2.0, 3.0]), arr(&[4.0, 5.0, 6.0]));
    let cot = arr(&[1.0, 10.0, 100.0]);
    let (out, grads) = vjp(|x| Ok(vec![ops::multiply(&x[0], &x[1])?]), &[a, b], &[cot]).unwrap();
    close(&out[0], &[4.0, 10.0, 18.0]);
    close(&grads[0], &[4.0, 50.0, 600.0]);
    close(&grads[1], &[1.0, 20.0, 300.0]);
}

#[test]
fn one_array_passed_twice_gets_both_contributions() {
    let x = arr(&[3.0]);
    let (_, g) =
        vjp(|v| Ok(vec![ops::multiply(&v[0], &v[1])?]), &[x.clone(), x], &[arr(&[1.0])]).unwrap();
    close(&g[0], &[3.0]);
    close(&g[1], &[3.0]);
    // x * x through one argument: 2x.
    let (_, g) =
        vjp(|v| Ok(vec![ops::multiply(&v[0], &v[0])?]), &[arr(&[3.0])], &[arr(&[1.0])]).unwrap();
    close(&g[0], &[6.0]);
}

#[test]
fn broadcasting_sums_the_cotangent_back() {
    let a = Array::from_slice(&[1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
    let b = arr(&[1.0, 1.0, 1.0]);
    let f = |v: &[Tree]| -> Result<Tree> {
        let prod = ops::multiply(v[0].as_array()?, v[1].as_array()?)?;
        Ok(ops::sum(&prod, None, false)?.into())
    };
    let g = grad(f, &[0, 1])(&[a.into(), b.into()]).unwrap();
    close(g[0].as_array().unwrap(), &[1.0; 6]);
    close(g[1].as_array().unwrap(), &[5.0, 7.0, 9.0]);
}

#[test]
fn grad_of_grad_of_sin_is_minus_sin() {
    let x = arr(&[0.3, -1.2, 2.0]);
    let first = grad(summed(ops::sin), &[0]);
    let second = grad(
        move |args: &[Tree]| {
            let g = first(args)?.remove(0);
            Ok(ops::sum(g.as_array()?, None, false)?.into())
        },
        &[0],
    );
    let g2 = second(&[x.clone().into()]).unwrap();
    let expected: Vec<f64> = [0.3f64, -1.2, 2.0].iter().map(|v| -v.sin()).collect();
    close(g2[0].as_array().unwrap(), &expected);
}

#[test]
fn jvp_matches_the_derivative() {
    let x = arr(&[0.5, 1.5]);
    let t = arr(&[1.0, 2.0]);
    let (y, ty) = jvp(|v| Ok(vec![ops::exp(&ops::sin(&v[0])?)?]), &[x], &[t]).unwrap();
    let expected: Vec<f64> =
        [(0.5f64, 1.0), (1.5, 2.0)].iter().map(|&(x, t)| t * x.cos() * x.sin().exp()).collect();
    close(&y[0], &[0.5f64.sin().exp(), 1.5f64.sin().exp()]);
    close(&ty[0], &expected);
}

#[test]
fn value_and_grad_over_a_parameter_tree_with_aux() {
    // loss = sum(w * x) + b, aux = w * x; grads: d/dw = x, d/db = 1.
    let mut params = BTreeMap::new();
    params.insert("w".to_string(), Tree::from(arr(&[1.0, 2.0])));
    params.insert("b".to_string(), Tree::from(arr(&[0.5])));
    let params = Tree::Dict(params);
    let x = arr(&[3.0, 4.0]);
    let loss = |args: &[Tree]| -> Result<Tree> {
        let flat: BTreeMap<String, Array> = args[0].flatten().into_iter().collect();
        let wx = ops::multiply(&flat["w"], args[1].as_array()?)?;
        let l = ops::add(&ops::sum(&wx, None, false)?, &ops::sum(&flat["b"], None, false)?)?;
        Ok(Tree::List(vec![l.into(), wx.into()]))
    };
    let (value, grads) = value_and_grad(loss, &[0])(&[params, x.into()]).unwrap();
    let Tree::List(v) = value else { panic!("value keeps the list") };
    close(v[0].as_array().unwrap(), &[11.5]);
    close(v[1].as_array().unwrap(), &[3.0, 8.0]);
    let g: BTreeMap<String, Array> = grads[0].flatten().into_iter().collect();
    close(&g["w"], &[3.0, 4.0]);
    close(&g["b"], &[1.0]);
}

#[test]
fn value_and_grad_rejects_a_non_scalar_loss_and_bad_argnums() {
    let f = |args: &[Tree]| Ok(args[0].clone());
    let err = value_and_grad(f, &[0])(&[arr(&[1.0, 2.0]).into()]).unwrap_err().to_string();
    assert!(err.contains("scalar"), "{err}");
    let err = grad(f, &[3])(&[arr(&[1.0]).into()]).unwrap_err().to_string();
    assert!(err.contains("argnum 3"), "{err}");
}

#[test]
fn stop_gradient_blocks_one_path() {
    // f = x * stop_gradient(x): d/dx = stop_gradient(x) = x.
    let (_, g) = vjp(
        |v| Ok(vec![ops::multiply(&v[0], &stop_gradient(&v[0])?)?]),
        &[arr(&[2.0, -3.0])],
        &[arr(&[1.0, 1.0])],
    )
    .unwrap();
    close(&g[0], &[2.0, -3.0]);
}

#[test]
fn evaluating_inside_the_function_keeps_the_graph() {
    let (_, g) = vjp(
        |v| {
            let y = ops::sin(&v[0])?;
            y.eval()?; // e.g. to print or branch on a value
            Ok(vec![ops::multiply(&y, &y)?])
        },
        &[arr(&[0.7])],
        &[arr(&[1.0])],
    )
    .unwrap();
    close(&g[0], &[2.0 * 0.7f64.sin() * 0.7f64.cos()]);
}

#[test]
fn custom_vjp_replaces_the_derivative() {
    // Forward sin, with a made-up rule: cotangent * 10.
    let f = CustomFunction::new(|x| Ok(vec![ops::sin(&x[0])?]))
        .with_vjp(|_, cots, _| Ok(vec![ops::multiply(&cots[0], &Array::scalar(10.0f64))?]));
    let (out, g) = vjp(|x| f.call(x), &[arr(&[1.0])], &[arr(&[2.0])]).unwrap();
    close(&out[0], &[1.0f64.sin()]);
    close(&g[0], &[20.0]);
    // jvp without a jvp rule differentiates the forward.
    let (_, t) = jvp(|x| f.call(x), &[arr(&[1.0])], &[arr(&[1.0])]).unwrap();
    close(&t[0], &[1.0f64.cos()]);
}

#[test]
fn checkpoint_gives_the_same_gradient() {
    let block = checkpoint(|x| Ok(vec![ops::exp(&ops::sin(&x[0])?)?]));
    let (_, g) = vjp(|x| block(x), &[arr(&[0.4, 1.1])], &[arr(&[1.0, 1.0])]).unwrap();
    let expected: Vec<f64> = [0.4f64, 1.1].iter().map(|x| x.cos() * x.sin().exp()).collect();
    close(&g[0], &expected);
}

#[test]
fn cotangent_count_and_shape_are_checked() {
    let f = |v: &[Array]| Ok(vec![ops::sin(&v[0])?]);
    let err = vjp(f, &[arr(&[1.0])], &[]).unwrap_err().to_string();
    assert!(err.contains("cotangents"), "{err}");
    let err = vjp(f, &[arr(&[1.0])], &[arr(&[1.0, 2.0])]).unwrap_err().to_string();
    assert!(err.contains("shape"), "{err}");
    let err = jvp(f, &[arr(&[1.0])], &[arr(&[1.0, 2.0])]).unwrap_err().to_string();
    assert!(err.contains("shape"), "{err}");
}

#[test]
fn tree_flatten_and_unflatten_round_trip() {
    let mut inner = BTreeMap::new();
    inner.insert("weight".to_string(), Tree::from(arr(&[1.0])));
    let layers = Tree::List(vec![Tree::Dict(inner.clone()), Tree::Dict(inner)]);
    let mut top = BTreeMap::new();
    top.insert("layers".to_string(), layers);
    top.insert("bias".to_string(), Tree::from(arr(&[2.0])));
    let tree = Tree::Dict(top);
    let flat = tree.flatten();
    let names: Vec<&str> = flat.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["bias", "layers.0.weight", "layers.1.weight"]);
    let back = Tree::unflatten(&flat).unwrap();
    let again: Vec<String> = back.flatten().into_iter().map(|(n, _)| n).collect();
    assert_eq!(again, names);
    assert!(matches!(&back, Tree::Dict(m) if matches!(m["layers"], Tree::List(_))));
    let doubled = tree.map(|a| ops::multiply(a, &Array::scalar(2.0f64))).unwrap();
    close(&doubled.leaves()[0], &[4.0]);
    let gap = [("0".to_string(), arr(&[1.0])), ("2".to_string(), arr(&[1.0]))];
    assert!(Tree::unflatten(&gap).unwrap_err().to_string().contains("not 0..2"));
}
