//! The gradient checker behind the op-spec table (tests/grad.rs) and the special cases
//! (tests/grad_cases.rs). For a function of float64 arrays it checks, against central finite
//! differences of the function itself:
//! - the vjp, element by element (`d<u, f(x)>/dx_i` for a random cotangent `u`);
//! - the jvp, as the directional derivative along a random tangent `v`;
//! - the adjoint identity `<u, J v> = <J^T u, v>` between the two;
//! - optionally the second order: the vjp of `x -> <w, J(x)^T u>` along `v`.
//!
//! Inputs are random, and may be non-contiguous views (transposed or strided) with the same
//! values, so rules see the layouts user code produces.
#![allow(dead_code)]

use ember::prelude::*;
use ember::transforms::{jvp, vjp};

/// A deterministic xorshift generator, so a failure reproduces.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn uniform(&mut self, lo: f64, hi: f64, n: usize) -> Vec<f64> {
        (0..n).map(|_| lo + (hi - lo) * self.next_f64()).collect()
    }
}

/// Where an input's values are drawn from (each op's domain of differentiability).
#[derive(Clone, Copy, Debug)]
pub enum Domain {
    /// `[-2, 2]`.
    Any,
    /// `[0.5, 2]`.
    Positive,
    /// `[-0.8, 0.8]`.
    Unit,
    /// `[1.2, 3]`.
    AboveOne,
}

impl Domain {
    fn sample(self, rng: &mut Rng, n: usize) -> Vec<f64> {
        let (lo, hi) = match self {
            Domain::Any => (-2.0, 2.0),
            Domain::Positive => (0.5, 2.0),
            Domain::Unit => (-0.8, 0.8),
            Domain::AboveOne => (1.2, 3.0),
        };
        rng.uniform(lo, hi, n)
    }
}

/// How the checked primals are laid out in memory.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Layout {
    Contiguous,
    /// A transposed view of a buffer holding the values in reversed axis order.
    Transposed,
    /// Every other element of a buffer twice as long on the last axis.
    Strided,
}

pub const LAYOUTS: [Layout; 3] = [Layout::Contiguous, Layout::Transposed, Layout::Strided];

/// An array of `shape` holding `values` (row-major) with the given memory layout.
pub fn laid_out(values: &[f64], shape: &[usize], layout: Layout) -> Array {
    let nd = shape.len();
    let view = match layout {
        _ if nd == 0 => Array::from_slice(values, shape).unwrap(),
        Layout::Contiguous => Array::from_slice(values, shape).unwrap(),
        Layout::Transposed => {
            let rev: Vec<usize> = shape.iter().rev().copied().collect();
            let mut data = vec![0.0; values.len()];
            for (flat, &v) in values.iter().enumerate() {
                // The multi-index of `flat` in `shape`, read backwards, places it in `rev`.
                let mut idx = vec![0; nd];
                let mut r = flat;
                for d in (0..nd).rev() {
                    idx[d] = r % shape[d];
                    r /= shape[d];
                }
                let at = idx.iter().rev().zip(&rev).fold(0, |at, (&i, &n)| at * n + i);
                data[at] = v;
            }
            ops::transpose_all(&Array::from_slice(&data, &rev).unwrap()).unwrap()
        }
        Layout::Strided => {
            let mut wide = shape.to_vec();
            wide[nd - 1] *= 2;
            let data: Vec<f64> = values.iter().flat_map(|&v| [v, 1234.5]).collect();
            let base = Array::from_slice(&data, &wide).unwrap();
            ops::slice_axis(&base, -1, Slice::new(None, None, 2)).unwrap()
        }
    };
    assert_eq!(view.to_vec::<f64>().unwrap(), values, "{layout:?} view of {shape:?}");
    view
}

pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Asserts `got` is within `tol * (1 + |want|)` of `want`, element by element.
pub fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}: element {i}: got {g}, finite differences give {w}\n got {got:?}\nwant {want:?}"
        );
    }
}

/// A function of float64 arrays to one float64 array.
pub type Func<'a> = &'a dyn Fn(&[Array]) -> Result<Array>;

/// Finite-difference step and tolerance (float64 central differences are accurate to about
/// 1e-9 here; a wrong rule is off by order one).
pub const STEP: f64 = 1e-6;
pub const TOL: f64 = 1e-5;

/// `f` at `values` (contiguous inputs), as float64 values.
fn eval(f: Func, values: &[Vec<f64>], shapes: &[Vec<usize>]) -> Vec<f64> {
    let xs: Vec<Array> =
        values.iter().zip(shapes).map(|(v, s)| Array::from_slice(v, s).unwrap()).collect();
    f(&xs).unwrap().to_vec::<f64>().unwrap()
}

/// `values + t * dir`, input by input.
fn along(values: &[Vec<f64>], dir: &[Vec<f64>], t: f64) -> Vec<Vec<f64>> {
    values.iter().zip(dir).map(|(v, d)| v.iter().zip(d).map(|(a, b)| a + t * b).collect()).collect()
}

/// Central finite differences of `<u, f(x)>` with respect to every element of every input.
pub fn fd_gradient(
    f: Func,
    values: &[Vec<f64>],
    shapes: &[Vec<usize>],
    u: &[f64],
) -> Vec<Vec<f64>> {
    let mut unit: Vec<Vec<f64>> = values.iter().map(|v| vec![0.0; v.len()]).collect();
    let mut grads = Vec::new();
    for k in 0..values.len() {
        let mut g = Vec::with_capacity(values[k].len());
        for e in 0..values[k].len() {
            unit[k][e] = 1.0;
            let plus = dot(u, &eval(f, &along(values, &unit, STEP), shapes));
            let minus = dot(u, &eval(f, &along(values, &unit, -STEP), shapes));
            unit[k][e] = 0.0;
            g.push((plus - minus) / (2.0 * STEP));
        }
        grads.push(g);
    }
    grads
}

/// `<w, J(x)^T u>` summed over the inputs, as a 0-d array built with ember ops (so that it
/// can be differentiated again).
fn weighted_vjp(f: Func, xs: &[Array], u: &Array, w: &[Array]) -> Result<Array> {
    let (_, g) = vjp(|a| Ok(vec![f(a)?]), xs, std::slice::from_ref(u))?;
    let mut total = Array::scalar(0.0f64);
    for (gi, wi) in g.iter().zip(w) {
        total = ops::add(&total, &ops::sum(&ops::multiply(gi, wi)?, None, false)?)?;
    }
    Ok(total)
}

/// Checks `f`'s vjp and jvp (and with `second_order` its vjp's vjp) at random inputs of
/// `inputs` (shape, domain) laid out as `layout`.
pub fn check(
    name: &str,
    inputs: &[(&[usize], Domain)],
    f: Func,
    layout: Layout,
    second_order: bool,
    seed: u64,
) {
    let mut rng = Rng::new(seed);
    let shapes: Vec<Vec<usize>> = inputs.iter().map(|(s, _)| s.to_vec()).collect();
    let values: Vec<Vec<f64>> =
        inputs.iter().map(|(s, d)| d.sample(&mut rng, s.iter().product())).collect();
    let primals: Vec<Array> =
        values.iter().zip(&shapes).map(|(v, s)| laid_out(v, s, layout)).collect();
    let what = |check: &str| format!("{name} ({layout:?}): {check}");
    let y = f(&primals).unwrap();
    let y_values = y.to_vec::<f64>().unwrap();
    assert_close(&what("forward"), &y_values, &eval(f, &values, &shapes), 1e-12);

    // vjp against finite differences of <u, f(x)>, one input element at a time.
    let u_values = rng.uniform(-1.0, 1.0, y.size());
    let u = Array::from_slice(&u_values, y.shape()).unwrap();
    let (out, grads) = vjp(|a| Ok(vec![f(a)?]), &primals, std::slice::from_ref(&u)).unwrap();
    assert_close(&what("vjp forward"), &out[0].to_vec::<f64>().unwrap(), &y_values, 1e-12);
    let fd = fd_gradient(f, &values, &shapes, &u_values);
    let mut grad_values = Vec::new();
    for (k, g) in grads.iter().enumerate() {
        assert_eq!(g.shape(), &shapes[k][..], "{}", what("vjp shape"));
        assert_eq!(g.dtype(), Dtype::Float64, "{}", what("vjp dtype"));
        let got = g.to_vec::<f64>().unwrap();
        assert_close(&what(&format!("vjp of input {k}")), &got, &fd[k], TOL);
        grad_values.push(got);
    }

    // jvp against the directional finite difference, and the adjoint identity.
    let dir: Vec<Vec<f64>> = values.iter().map(|v| rng.uniform(-1.0, 1.0, v.len())).collect();
    let tangents: Vec<Array> =
        dir.iter().zip(&shapes).map(|(d, s)| laid_out(d, s, layout)).collect();
    let (out, tans) = jvp(|a| Ok(vec![f(a)?]), &primals, &tangents).unwrap();
    assert_close(&what("jvp forward"), &out[0].to_vec::<f64>().unwrap(), &y_values, 1e-12);
    assert_eq!(tans[0].shape(), y.shape(), "{}", what("jvp shape"));
    let jv = tans[0].to_vec::<f64>().unwrap();
    let plus = eval(f, &along(&values, &dir, STEP), &shapes);
    let minus = eval(f, &along(&values, &dir, -STEP), &shapes);
    let fd: Vec<f64> = plus.iter().zip(&minus).map(|(p, m)| (p - m) / (2.0 * STEP)).collect();
    assert_close(&what("jvp"), &jv, &fd, TOL);
    let lhs = dot(&u_values, &jv);
    let rhs: f64 = grad_values.iter().zip(&dir).map(|(g, d)| dot(g, d)).sum();
    assert_close(&what("<u, Jv> = <J^T u, v>"), &[lhs], &[rhs], 1e-9);

    if second_order {
        // h(x) = <w, J(x)^T u>: its gradient (a vjp of the vjp) along v, against h's
        // directional finite difference.
        let w_values: Vec<Vec<f64>> =
            values.iter().map(|v| rng.uniform(-1.0, 1.0, v.len())).collect();
        let w: Vec<Array> =
            w_values.iter().zip(&shapes).map(|(v, s)| Array::from_slice(v, s).unwrap()).collect();
        let h = |xs: &[Array]| weighted_vjp(f, xs, &u, &w);
        let (_, hess) = vjp(|a| Ok(vec![h(a)?]), &primals, &[Array::scalar(1.0f64)]).unwrap();
        let got: f64 =
            hess.iter().zip(&dir).map(|(g, d)| dot(&g.to_vec::<f64>().unwrap(), d)).sum();
        let h_at = |t: f64| {
            let xs: Vec<Array> = along(&values, &dir, t)
                .iter()
                .zip(&shapes)
                .map(|(v, s)| Array::from_slice(v, s).unwrap())
                .collect();
            h(&xs).unwrap().item::<f64>().unwrap()
        };
        let fd = (h_at(STEP) - h_at(-STEP)) / (2.0 * STEP);
        assert_close(&what("second order"), &[got], &[fd], TOL);
    }
}
