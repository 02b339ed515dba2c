//! Gradients of every primitive, driven by one op-spec table: each entry is a small function
//! of float64 inputs (with their shapes and domains) built around one op, often with
//! broadcasting. The checker (gradcheck/mod.rs) runs it with contiguous, transposed and
//! strided inputs and compares the vjp, the jvp and (for contiguous inputs) the second order
//! with finite differences of the function. Ops with integer or bool results are cast to
//! float64, so their zero derivatives are checked the same way.

mod gradcheck;

use ember::ops::fast::{layer_norm, rms_norm, rope, scaled_dot_product_attention, AttentionMask};
use ember::ops::random;
use ember::prelude::*;
use gradcheck::{check, Domain, Layout, LAYOUTS};
use Domain::{AboveOne, Any, Positive, Unit};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Family {
    Elementwise,
    Layout,
    Reduce,
    Linalg,
    Index,
    Sort,
    Conv,
    Fast,
    Random,
}

type F = Box<dyn Fn(&[Array]) -> Result<Array>>;

struct Spec {
    family: Family,
    name: String,
    inputs: Vec<(Vec<usize>, Domain)>,
    f: F,
}

fn spec(family: Family, name: &str, inputs: &[(&[usize], Domain)], f: F) -> Spec {
    let inputs = inputs.iter().map(|(s, d)| (s.to_vec(), *d)).collect();
    Spec { family, name: name.to_string(), inputs, f }
}

fn func(g: impl Fn(&[Array]) -> Result<Array> + 'static) -> F {
    Box::new(g)
}

fn f64s(x: Array) -> Result<Array> {
    x.astype(Dtype::Float64)
}

/// `x` with its infinities replaced by zeros.
fn finite(x: Array) -> Result<Array> {
    ops::where_(&ops::isfinite(&x)?, &x, &Array::scalar(0.0))
}

fn ints(v: &[i32], shape: &[usize]) -> Array {
    Array::from_slice(v, shape).unwrap()
}

fn unary_specs() -> Vec<Spec> {
    type U = fn(&Array) -> Result<Array>;
    let smooth: [(&str, U, Domain); 31] = [
        ("abs", ops::abs, Any),
        ("negative", ops::negative, Any),
        ("sign", ops::sign, Any),
        ("square", ops::square, Any),
        ("exp", ops::exp, Any),
        ("expm1", ops::expm1, Any),
        ("log", ops::log, Positive),
        ("log1p", ops::log1p, Positive),
        ("log2", ops::log2, Positive),
        ("log10", ops::log10, Positive),
        ("sqrt", ops::sqrt, Positive),
        ("rsqrt", ops::rsqrt, Positive),
        ("reciprocal", ops::reciprocal, Positive),
        ("sin", ops::sin, Any),
        ("cos", ops::cos, Any),
        ("tan", ops::tan, Unit),
        ("arcsin", ops::arcsin, Unit),
        ("arccos", ops::arccos, Unit),
        ("arctan", ops::arctan, Any),
        ("sinh", ops::sinh, Any),
        ("cosh", ops::cosh, Any),
        ("tanh", ops::tanh, Any),
        ("arcsinh", ops::arcsinh, Any),
        ("arccosh", ops::arccosh, AboveOne),
        ("arctanh", ops::arctanh, Unit),
        ("sigmoid", ops::sigmoid, Any),
        ("erf", ops::erf, Any),
        ("erfinv", ops::erfinv, Unit),
        ("floor", ops::floor, Any),
        ("ceil", ops::ceil, Any),
        ("round", ops::round, Any),
    ];
    let predicates: [(&str, U); 6] = [
        ("isnan", ops::isnan),
        ("isinf", ops::isinf),
        ("isfinite", ops::isfinite),
        ("isposinf", ops::isposinf),
        ("isneginf", ops::isneginf),
        ("logical_not", ops::logical_not),
    ];
    let mut out: Vec<Spec> = smooth
        .into_iter()
        .map(|(name, u, d)| {
            spec(Family::Elementwise, name, &[(&[2, 3], d)], func(move |x| u(&x[0])))
        })
        .collect();
    out.extend(predicates.into_iter().map(|(name, u)| {
        spec(Family::Elementwise, name, &[(&[2, 3], Any)], func(move |x| f64s(u(&x[0])?)))
    }));
    out.push(spec(
        Family::Elementwise,
        "bitwise_invert",
        &[(&[2, 3], Any)],
        func(|x| f64s(ops::bitwise_invert(&x[0].astype(Dtype::Int32)?)?)),
    ));
    out
}

fn binary_specs() -> Vec<Spec> {
    type B = fn(&Array, &Array) -> Result<Array>;
    let same: &[(&[usize], &[usize])] = &[(&[2, 3], &[2, 3])];
    let broadcast: &[(&[usize], &[usize])] =
        &[(&[2, 3], &[2, 3]), (&[2, 1], &[1, 3]), (&[3], &[2, 3]), (&[2, 3], &[])];
    let smooth: [(&str, B, Domain, Domain, bool); 11] = [
        ("add", ops::add, Any, Any, true),
        ("subtract", ops::subtract, Any, Any, true),
        ("multiply", ops::multiply, Any, Any, true),
        ("divide", ops::divide, Any, Positive, true),
        ("remainder", ops::remainder, Any, Positive, false),
        ("power", ops::power, Positive, Any, true),
        ("maximum", ops::maximum, Any, Any, true),
        ("minimum", ops::minimum, Any, Any, false),
        ("arctan2", ops::arctan2, Any, Any, false),
        ("logaddexp", ops::logaddexp, Any, Any, true),
        ("floor_divide", ops::floor_divide, Any, Positive, false),
    ];
    let mut out = Vec::new();
    for (name, b, da, db, bcast) in smooth {
        for &(sa, sb) in if bcast { broadcast } else { same } {
            let label = format!("{name} {sa:?} {sb:?}");
            out.push(spec(
                Family::Elementwise,
                &label,
                &[(sa, da), (sb, db)],
                func(move |x| b(&x[0], &x[1])),
            ));
        }
    }
    let piecewise: [(&str, B); 8] = [
        ("equal", ops::equal),
        ("not_equal", ops::not_equal),
        ("less", ops::less),
        ("less_equal", ops::less_equal),
        ("greater", ops::greater),
        ("greater_equal", ops::greater_equal),
        ("logical_and", ops::logical_and),
        ("logical_or", ops::logical_or),
    ];
    for (name, b) in piecewise {
        let f: F = func(move |x| f64s(b(&x[0], &x[1])?));
        out.push(spec(Family::Elementwise, name, &[(&[2, 3], Any), (&[3], Any)], f));
    }
    let bitwise: [(&str, B); 5] = [
        ("bitwise_and", ops::bitwise_and),
        ("bitwise_or", ops::bitwise_or),
        ("bitwise_xor", ops::bitwise_xor),
        ("left_shift", ops::left_shift),
        ("right_shift", ops::right_shift),
    ];
    for (name, b) in bitwise {
        let f: F = func(move |x| {
            let (a, c) = (x[0].astype(Dtype::Int32)?, x[1].astype(Dtype::Int32)?);
            f64s(b(&a, &c)?)
        });
        out.push(spec(Family::Elementwise, name, &[(&[2, 3], Positive), (&[2, 3], Positive)], f));
    }
    out
}

fn other_elementwise_specs() -> Vec<Spec> {
    use Family::Elementwise as E;
    vec![
        spec(
            E,
            "where",
            &[(&[2, 3], Any), (&[2, 3], Any), (&[3], Any)],
            func(|x| ops::where_(&ops::greater(&x[0], &Array::scalar(0.0))?, &x[1], &x[2])),
        ),
        spec(
            E,
            "where with a constant condition",
            &[(&[2, 1], Any), (&[], Any)],
            func(|x| {
                let cond = Array::from_slice(&[true, false, false, true, true, false], &[2, 3])?;
                ops::where_(&cond, &x[0], &x[1])
            }),
        ),
        spec(
            E,
            "clip",
            &[(&[2, 3], Any)],
            func(|x| ops::clip(&x[0], Some(&Array::scalar(-0.5)), Some(&Array::scalar(0.7)))),
        ),
        spec(
            E,
            "arange as a constant",
            &[(&[2, 4], Any)],
            func(|x| ops::multiply(&x[0], &ops::arange(1.0, 5.0, 1.0, Dtype::Float64)?)),
        ),
    ]
}

fn layout_specs() -> Vec<Spec> {
    use Family::Layout as L;
    vec![
        spec(L, "copy", &[(&[2, 3], Any)], func(|x| ops::contiguous(&x[0]))),
        spec(L, "reshape", &[(&[2, 3, 2], Any)], func(|x| ops::reshape(&x[0], &[3, -1]))),
        spec(L, "transpose", &[(&[2, 3, 2], Any)], func(|x| ops::transpose(&x[0], &[2, 0, 1]))),
        spec(L, "broadcast_to", &[(&[3, 1], Any)], func(|x| ops::broadcast_to(&x[0], &[2, 3, 4]))),
        spec(
            L,
            "slice with steps",
            &[(&[5, 4], Any)],
            func(|x| {
                ops::slice(&x[0], &[Slice::new(Some(1), None, 2), Slice::new(None, None, -1)])
            }),
        ),
        spec(
            L,
            "slice backwards",
            &[(&[6], Any)],
            func(|x| ops::slice(&x[0], &[Slice::new(Some(4), Some(0), -2)])),
        ),
        spec(
            L,
            "as_strided overlapping windows",
            &[(&[6], Any)],
            func(|x| ops::as_strided(&x[0], &[4, 3], &[1, 1], 0)),
        ),
        spec(
            L,
            "as_strided with offset",
            &[(&[2, 3], Any)],
            func(|x| ops::as_strided(&x[0], &[2, 2], &[3, 1], 1)),
        ),
        spec(
            L,
            "squeeze, expand_dims, moveaxis",
            &[(&[2, 1, 3], Any)],
            func(|x| {
                let y = ops::expand_dims(&ops::squeeze(&x[0], None)?, &[0])?;
                ops::moveaxis(&y, 0, -1)
            }),
        ),
    ]
}

fn reduce_specs() -> Vec<Spec> {
    use Family::Reduce as R;
    type Red = fn(&Array, Option<&[isize]>, bool) -> Result<Array>;
    let mut out = Vec::new();
    let reductions: [(&str, Red); 4] =
        [("sum", ops::sum), ("prod", ops::prod), ("max", ops::max), ("min", ops::min)];
    for (name, r) in reductions {
        out.push(spec(
            R,
            &format!("{name} axis 1"),
            &[(&[2, 3], Any)],
            func(move |x| r(&x[0], Some(&[1]), false)),
        ));
        out.push(spec(
            R,
            &format!("{name} axes 0, 2 keepdims"),
            &[(&[2, 3, 2], Any)],
            func(move |x| r(&x[0], Some(&[0, 2]), true)),
        ));
        out.push(spec(
            R,
            &format!("{name} of all"),
            &[(&[2, 3], Any)],
            func(move |x| r(&x[0], None, false)),
        ));
    }
    let flags: [(&str, Red); 2] = [("all", ops::all), ("any", ops::any)];
    for (name, r) in flags {
        out.push(spec(
            R,
            name,
            &[(&[2, 3], Any)],
            func(move |x| f64s(r(&x[0], Some(&[1]), false)?)),
        ));
    }
    out.push(spec(
        R,
        "argmax",
        &[(&[2, 3], Any)],
        func(|x| f64s(ops::argmax(&x[0], Some(1), false)?)),
    ));
    out.push(spec(
        R,
        "argmin",
        &[(&[2, 3], Any)],
        func(|x| f64s(ops::argmin(&x[0], None, false)?)),
    ));
    type Scan = fn(&Array, Option<isize>, bool, bool) -> Result<Array>;
    let scans: [(&str, Scan); 4] = [
        ("cumsum", ops::cumsum),
        ("cumprod", ops::cumprod),
        ("cummax", ops::cummax),
        ("cummin", ops::cummin),
    ];
    for (name, s) in scans {
        for (reverse, inclusive) in [(false, true), (true, true), (false, false), (true, false)] {
            let label = format!("{name} reverse {reverse} inclusive {inclusive}");
            // Exclusive max/min scans start at -inf/+inf: keep the finite part.
            let f: F = func(move |x| finite(s(&x[0], Some(1), reverse, inclusive)?));
            out.push(spec(R, &label, &[(&[2, 5], Any)], f));
        }
        out.push(spec(
            R,
            &format!("{name} flattened"),
            &[(&[2, 3], Any)],
            func(move |x| s(&x[0], None, false, true)),
        ));
    }
    out.extend([
        spec(R, "mean", &[(&[2, 3], Any)], func(|x| ops::mean(&x[0], Some(&[0]), false))),
        spec(R, "var", &[(&[2, 3], Any)], func(|x| ops::var(&x[0], Some(&[1]), false, 1))),
        spec(R, "std", &[(&[2, 3], Any)], func(|x| ops::std(&x[0], None, false, 0))),
        spec(R, "logsumexp", &[(&[2, 3], Any)], func(|x| ops::logsumexp(&x[0], Some(&[1]), true))),
    ]);
    out
}

fn linalg_specs() -> Vec<Spec> {
    use Family::Linalg as M;
    vec![
        spec(M, "matmul", &[(&[2, 3], Any), (&[3, 4], Any)], func(|x| ops::matmul(&x[0], &x[1]))),
        spec(
            M,
            "matmul with broadcast batches",
            &[(&[2, 1, 2, 3], Any), (&[3, 3, 2], Any)],
            func(|x| ops::matmul(&x[0], &x[1])),
        ),
        spec(
            M,
            "matmul vector matrix",
            &[(&[3], Any), (&[3, 2], Any)],
            func(|x| ops::matmul(&x[0], &x[1])),
        ),
        spec(
            M,
            "matmul matrix vector",
            &[(&[2, 3], Any), (&[3], Any)],
            func(|x| ops::matmul(&x[0], &x[1])),
        ),
        spec(
            M,
            "addmm",
            &[(&[2, 4], Any), (&[2, 3], Any), (&[3, 4], Any)],
            func(|x| ops::addmm(&x[0], &x[1], &x[2], 0.5, 2.0)),
        ),
        spec(
            M,
            "tensordot",
            &[(&[2, 3, 2], Any), (&[3, 2, 2], Any)],
            func(|x| ops::tensordot(&x[0], &x[1], &[1, 2], &[0, 1])),
        ),
        spec(M, "outer", &[(&[3], Any), (&[2], Any)], func(|x| ops::outer(&x[0], &x[1]))),
    ]
}

fn index_specs() -> Vec<Spec> {
    use ops::PadMode;
    use Family::Index as I;
    vec![
        spec(
            I,
            "take along axis 1, repeated index",
            &[(&[3, 4], Any)],
            func(|x| ops::take(&x[0], &ints(&[0, 2, 3, 0], &[2, 2]), Some(1))),
        ),
        spec(
            I,
            "take flattened, negative index",
            &[(&[3, 4], Any)],
            func(|x| ops::take(&x[0], &ints(&[5, -1, 0, 5, 11], &[5]), None)),
        ),
        spec(
            I,
            "take with a 0-d index",
            &[(&[3, 4], Any)],
            func(|x| ops::take(&x[0], &Array::scalar(2i32), Some(0))),
        ),
        spec(
            I,
            "take_along_axis",
            &[(&[3, 4], Any)],
            func(|x| ops::take_along_axis(&x[0], &ints(&[3, 0, 1, 1, 2, 3], &[3, 2]), Some(1))),
        ),
        spec(
            I,
            "put_along_axis",
            &[(&[3, 4], Any), (&[3, 1], Any)],
            func(|x| ops::put_along_axis(&x[0], &ints(&[1, 3, 0], &[3, 1]), &x[1], Some(1))),
        ),
        spec(
            I,
            "scatter_add_axis, repeated indices",
            &[(&[3, 4], Any), (&[3, 2], Any)],
            func(|x| ops::scatter_add_axis(&x[0], &ints(&[1, 1, 0, 3, 2, 2], &[3, 2]), &x[1], 1)),
        ),
        spec(
            I,
            "scatter rows",
            &[(&[4, 3], Any), (&[2, 1, 3], Any)],
            func(|x| ops::scatter(&x[0], &[&ints(&[3, 0], &[2])], &x[1], &[0])),
        ),
        spec(
            I,
            "scatter on two axes, negative index",
            &[(&[4, 3], Any), (&[2, 1, 1], Any)],
            func(|x| {
                ops::scatter(&x[0], &[&ints(&[1, -1], &[2]), &ints(&[0, 2], &[2])], &x[1], &[0, 1])
            }),
        ),
        spec(
            I,
            "scatter_add, repeated indices",
            &[(&[4, 3], Any), (&[3, 1, 2], Any)],
            func(|x| ops::scatter_add(&x[0], &[&ints(&[1, 1, 2], &[3])], &x[1], &[0])),
        ),
        spec(
            I,
            "scatter_max",
            &[(&[4, 3], Any), (&[2, 1, 3], Any)],
            func(|x| ops::scatter_max(&x[0], &[&ints(&[0, 2], &[2])], &x[1], &[0])),
        ),
        spec(
            I,
            "scatter_min",
            &[(&[4, 3], Any), (&[2, 1, 3], Any)],
            func(|x| ops::scatter_min(&x[0], &[&ints(&[3, 2], &[2])], &x[1], &[0])),
        ),
        spec(
            I,
            "slice_update",
            &[(&[4, 5], Any), (&[2, 2], Any)],
            func(|x| {
                let region = [Slice::range(1, 3), Slice::new(Some(0), Some(4), 2)];
                ops::slice_update(&x[0], &x[1], &region)
            }),
        ),
        spec(
            I,
            "slice_update broadcast, backwards",
            &[(&[4, 3], Any), (&[3], Any)],
            func(|x| ops::slice_update(&x[0], &x[1], &[Slice::new(Some(3), None, -2)])),
        ),
        spec(
            I,
            "concatenate",
            &[(&[2, 3], Any), (&[2, 1], Any), (&[2, 2], Any)],
            func(|x| ops::concatenate(&[&x[0], &x[1], &x[2]], 1)),
        ),
        spec(
            I,
            "stack",
            &[(&[2, 3], Any), (&[2, 3], Any)],
            func(|x| ops::stack(&[&x[0], &x[1]], -1)),
        ),
        spec(
            I,
            "pad constant, value differentiated",
            &[(&[2, 3], Any), (&[], Any)],
            func(|x| ops::pad(&x[0], &[(1, 2), (0, 1)], &x[1], PadMode::Constant)),
        ),
        spec(
            I,
            "pad edge",
            &[(&[2, 3], Any)],
            func(|x| ops::pad(&x[0], &[(2, 1), (1, 3)], &Array::scalar(0.0), PadMode::Edge)),
        ),
        spec(
            I,
            "split and reorder",
            &[(&[2, 5], Any)],
            func(|x| {
                let p = ops::split(&x[0], &[1, 3], 1)?;
                ops::concatenate(&[&p[2], &p[0], &p[1]], 1)
            }),
        ),
        spec(I, "tile", &[(&[2, 3], Any)], func(|x| ops::tile(&x[0], &[2, 1, 2]))),
        spec(I, "repeat", &[(&[2, 3], Any)], func(|x| ops::repeat(&x[0], 2, Some(1)))),
    ]
}

fn sort_specs() -> Vec<Spec> {
    use Family::Sort as S;
    vec![
        spec(S, "sort axis 1", &[(&[3, 4], Any)], func(|x| ops::sort(&x[0], Some(1)))),
        spec(S, "sort axis 0", &[(&[3, 4], Any)], func(|x| ops::sort(&x[0], Some(0)))),
        spec(S, "sort flattened", &[(&[2, 3], Any)], func(|x| ops::sort(&x[0], None))),
        spec(S, "argsort", &[(&[2, 3], Any)], func(|x| f64s(ops::argsort(&x[0], Some(1))?))),
        spec(S, "partition", &[(&[3, 5], Any)], func(|x| ops::partition(&x[0], 2, Some(1)))),
        spec(
            S,
            "argpartition",
            &[(&[3, 5], Any)],
            func(|x| f64s(ops::argpartition(&x[0], 1, Some(1))?)),
        ),
        spec(S, "topk", &[(&[3, 5], Any)], func(|x| ops::topk(&x[0], 2, Some(-1)))),
    ]
}

fn conv_specs() -> Vec<Spec> {
    use Family::Conv as C;
    vec![
        spec(
            C,
            "conv1d",
            &[(&[2, 6, 3], Any), (&[4, 3, 3], Any)],
            func(|x| ops::conv1d(&x[0], &x[1], 1, 0, 1, 1)),
        ),
        spec(
            C,
            "conv1d stride 2, padding 1, dilation 2, 2 groups",
            &[(&[2, 9, 4], Any), (&[6, 2, 2], Any)],
            func(|x| ops::conv1d(&x[0], &x[1], 2, 1, 2, 2)),
        ),
        spec(
            C,
            "conv2d stride (2, 1), padding (1, 2), dilation (1, 2)",
            &[(&[2, 5, 6, 2], Any), (&[3, 2, 3, 2], Any)],
            func(|x| ops::conv2d(&x[0], &x[1], (2, 1), (1, 2), (1, 2), 1)),
        ),
        spec(
            C,
            "conv2d 2 groups, stride 2, padding 1, dilation (2, 1)",
            &[(&[1, 6, 5, 4], Any), (&[4, 2, 2, 2], Any)],
            func(|x| ops::conv2d(&x[0], &x[1], (2, 2), (1, 1), (2, 1), 2)),
        ),
    ]
}

fn fast_specs() -> Vec<Spec> {
    use Family::Fast as X;
    let mut out = vec![
        spec(
            X,
            "softmax last axis",
            &[(&[2, 5], Any)],
            func(|x| ops::softmax(&x[0], Some(&[-1]), false)),
        ),
        spec(
            X,
            "softmax axis 0",
            &[(&[3, 4], Any)],
            func(|x| ops::softmax(&x[0], Some(&[0]), false)),
        ),
        spec(X, "rms_norm", &[(&[2, 3, 4], Any)], func(|x| rms_norm(&x[0], None, 1e-5))),
        spec(
            X,
            "rms_norm with weight",
            &[(&[3, 4], Any), (&[4], Any)],
            func(|x| rms_norm(&x[0], Some(&x[1]), 1e-5)),
        ),
    ];
    for (weight, bias) in [(false, false), (true, false), (false, true), (true, true)] {
        let mut inputs: Vec<(&[usize], Domain)> = vec![(&[3, 5], Any)];
        inputs.extend(std::iter::repeat_n((&[5][..], Any), weight as usize + bias as usize));
        let f: F = func(move |x| {
            let w = weight.then(|| &x[1]);
            let b = bias.then(|| &x[1 + weight as usize]);
            layer_norm(&x[0], w, b, 1e-5)
        });
        out.push(spec(X, &format!("layer_norm weight {weight} bias {bias}"), &inputs, f));
    }
    out.extend([
        spec(
            X,
            "rope",
            &[(&[1, 2, 3, 8], Any)],
            func(|x| rope(&x[0], 8, false, Some(10000.0), 1.0, 0, None)),
        ),
        spec(
            X,
            "rope traditional, partial dims, offset, scale",
            &[(&[2, 3, 6], Any)],
            func(|x| rope(&x[0], 4, true, Some(500.0), 0.5, 2, None)),
        ),
        spec(
            X,
            "rope with frequencies",
            &[(&[1, 4, 4], Any)],
            func(|x| {
                let freqs = Array::from_slice(&[1.0f32, 3.0], &[2])?;
                rope(&x[0], 4, false, None, 1.0, 1, Some(&freqs))
            }),
        ),
        spec(
            X,
            "attention",
            &[(&[1, 2, 3, 4], Any), (&[1, 2, 5, 4], Any), (&[1, 2, 5, 3], Any)],
            func(|x| scaled_dot_product_attention(&x[0], &x[1], &x[2], 0.5, AttentionMask::None)),
        ),
        spec(
            X,
            "attention causal, grouped query heads",
            &[(&[1, 4, 3, 4], Any), (&[1, 2, 4, 4], Any), (&[1, 2, 4, 2], Any)],
            func(|x| scaled_dot_product_attention(&x[0], &x[1], &x[2], 0.7, AttentionMask::Causal)),
        ),
        spec(
            X,
            "attention bool mask",
            &[(&[2, 1, 3, 2], Any), (&[2, 1, 4, 2], Any), (&[2, 1, 4, 3], Any)],
            func(|x| {
                let keep =
                    [true, false, true, true, false, true, true, false, true, true, true, false];
                let mask = Array::from_slice(&keep, &[3, 4])?;
                scaled_dot_product_attention(&x[0], &x[1], &x[2], 1.0, AttentionMask::Array(&mask))
            }),
        ),
        spec(
            X,
            "attention additive mask, differentiated",
            &[
                (&[1, 2, 3, 2], Any),
                (&[1, 1, 4, 2], Any),
                (&[1, 1, 4, 2], Any),
                (&[1, 1, 3, 4], Any),
            ],
            func(|x| {
                scaled_dot_product_attention(&x[0], &x[1], &x[2], 0.9, AttentionMask::Array(&x[3]))
            }),
        ),
    ]);
    out
}

fn random_specs() -> Vec<Spec> {
    use Family::Random as N;
    vec![
        spec(
            N,
            "permutation",
            &[(&[3, 4], Any)],
            func(|x| random::permutation_of(&x[0], 1, Some(&random::key(7)))),
        ),
        spec(
            N,
            "times uniform noise",
            &[(&[2, 3], Any)],
            func(|x| {
                let (lo, hi) = (Array::scalar(0.0), Array::scalar(1.0));
                let noise =
                    random::uniform(&lo, &hi, &[2, 3], Dtype::Float32, Some(&random::key(3)))?;
                ops::multiply(&x[0], &noise.astype(Dtype::Float64)?)
            }),
        ),
        spec(
            N,
            "categorical",
            &[(&[2, 4], Any)],
            func(|x| f64s(random::categorical(&x[0], -1, None, Some(&random::key(5)))?)),
        ),
    ]
}

fn specs() -> Vec<Spec> {
    [
        unary_specs(),
        binary_specs(),
        other_elementwise_specs(),
        layout_specs(),
        reduce_specs(),
        linalg_specs(),
        index_specs(),
        sort_specs(),
        conv_specs(),
        fast_specs(),
        random_specs(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Checks every spec of `family` in every layout (second order with contiguous inputs).
fn run(family: Family) {
    let all = specs();
    let chosen: Vec<(usize, &Spec)> =
        all.iter().enumerate().filter(|(_, s)| s.family == family).collect();
    assert!(!chosen.is_empty(), "no specs for {family:?}");
    for (i, s) in chosen {
        let inputs: Vec<(&[usize], Domain)> =
            s.inputs.iter().map(|(sh, d)| (&sh[..], *d)).collect();
        for (j, layout) in LAYOUTS.into_iter().enumerate() {
            let seed = (i * LAYOUTS.len() + j) as u64 + 1;
            check(&s.name, &inputs, &*s.f, layout, layout == Layout::Contiguous, seed);
        }
    }
}

#[test]
fn elementwise_gradients() {
    run(Family::Elementwise);
}

#[test]
fn layout_gradients() {
    run(Family::Layout);
}

#[test]
fn reduce_and_scan_gradients() {
    run(Family::Reduce);
}

#[test]
fn matmul_gradients() {
    run(Family::Linalg);
}

#[test]
fn index_gradients() {
    run(Family::Index);
}

#[test]
fn sort_gradients() {
    run(Family::Sort);
}

#[test]
fn conv_gradients() {
    run(Family::Conv);
}

#[test]
fn fast_op_gradients() {
    run(Family::Fast);
}

#[test]
fn random_op_gradients() {
    run(Family::Random);
}
