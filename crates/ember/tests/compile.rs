//! `compile`: compiled functions equal their uncompiled selves (200 seeded random graphs of
//! elementwise, broadcast, reduce and matmul ops over random shapes and dtypes), the
//! simplifications are observable (CSE, constant folding and merging, fusion), traces are
//! cached per signature (or per ranks when shapeless, re-deriving reshapes), `disable_compile`
//! bypasses the cache, compiled steps overwrite dead inputs, and gradients through and of
//! compiled functions equal hand-computed derivatives.

use ember::bf16;
use ember::prelude::*;
use ember::transforms::{
    compile, compile_with, disable_compile, enable_compile, grad, jvp, vmap, CompileOptions,
    Compiled,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Serialises the tests that flip or depend on the global compile switch.
static SWITCH: Mutex<()> = Mutex::new(());

fn switch_lock() -> std::sync::MutexGuard<'static, ()> {
    SWITCH.lock().unwrap_or_else(|e| e.into_inner())
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn random_array(rng: &mut Rng, shape: &[usize], dtype: Dtype) -> Array {
    let n: usize = shape.iter().product();
    let data: Vec<f64> = (0..n).map(|_| rng.uniform() * 4.0 - 2.0).collect();
    Array::from_slice(&data, shape).unwrap().astype(dtype).unwrap()
}

/// Values equal within `tol` relative to their magnitude; NaNs and infinities must match.
fn assert_close(got: &Array, want: &Array, tol: f64, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes");
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtypes");
    let (g, w) = (got.to_vec::<f64>().unwrap(), want.to_vec::<f64>().unwrap());
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let ok = if b.is_nan() || b.is_infinite() {
            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
        } else {
            (a - b).abs() <= tol * (1.0 + b.abs())
        };
        assert!(ok, "{what}: element {i}: compiled {a} vs uncompiled {b}");
    }
}

/// One step of a random graph: an op applied to earlier values (by index).
#[derive(Clone, Debug)]
enum Step {
    Unary(u8, usize),
    Binary(u8, usize, usize),
    Where(usize, usize, usize),
    Cast(Dtype, usize),
    Scale(f32, usize),
    Sum(usize, usize),
    MatmulT(usize),
}

fn apply(step: &Step, v: &[Array]) -> Result<Array> {
    Ok(match *step {
        Step::Unary(k, a) => {
            let x = &v[a];
            match k % 8 {
                0 => ops::exp(&ops::sin(x)?)?,
                1 => ops::tanh(x)?,
                2 => ops::sigmoid(x)?,
                3 => ops::negative(&ops::abs(x)?)?,
                4 => ops::sqrt(&ops::square(x)?)?,
                5 => ops::log(&ops::add(&ops::square(x)?, &Array::scalar(1.0f32))?)?,
                6 => ops::erf(x)?,
                _ => ops::cos(x)?,
            }
        }
        Step::Binary(k, a, b) => {
            let (x, y) = (&v[a], &v[b]);
            match k % 6 {
                0 => ops::add(x, y)?,
                1 => ops::subtract(x, y)?,
                2 => ops::multiply(x, &ops::tanh(y)?)?,
                3 => ops::divide(x, &ops::add(&ops::square(y)?, &Array::scalar(1.0f32))?)?,
                4 => ops::maximum(x, y)?,
                _ => ops::minimum(x, y)?,
            }
        }
        Step::Where(c, a, b) => {
            ops::where_(&ops::greater(&v[c], &Array::scalar(0.25f32))?, &v[a], &v[b])?
        }
        Step::Cast(d, a) => v[a].astype(d)?,
        Step::Scale(s, a) => ops::multiply(&v[a], &Array::scalar(s))?,
        Step::Sum(a, axis) => {
            let x = &v[a];
            if x.ndim() == 0 {
                ops::sum(x, None, false)?
            } else {
                ops::sum(x, Some(&[(axis % x.ndim()) as isize]), axis % 2 == 0)?
            }
        }
        Step::MatmulT(a) => ops::matmul(&v[a], &ops::transpose_all(&v[a])?)?,
    })
}

/// A random program over `inputs` arrays, and the values it returns.
fn random_steps(rng: &mut Rng, inputs: &[Array]) -> (Vec<Step>, Vec<usize>) {
    let mut steps = Vec::new();
    let mut values: Vec<Array> = inputs.to_vec();
    let dtypes = [Dtype::Float32, Dtype::Float64, Dtype::Float16, Dtype::Bfloat16];
    while steps.len() < 4 + rng.below(10) {
        let n = values.len();
        let pick = |rng: &mut Rng| {
            if rng.below(3) == 0 {
                rng.below(n)
            } else {
                n - 1 - rng.below(n.min(3))
            }
        };
        let (a, b, c) = (pick(rng), pick(rng), pick(rng));
        let step = match rng.below(20) {
            0..=6 => Step::Unary(rng.below(8) as u8, a),
            7..=12 => Step::Binary(rng.below(6) as u8, a, b),
            13 | 14 => Step::Where(c, a, b),
            15 => Step::Cast(dtypes[rng.below(4)], a),
            16 => Step::Scale([0.5f32, 1.5, -0.75][rng.below(3)], a),
            17 => Step::Sum(a, rng.below(4)),
            18 if values[a].ndim() == 2 => Step::MatmulT(a),
            _ => Step::Unary(1, a),
        };
        // Steps whose operands cannot broadcast together are skipped.
        if let Ok(y) = apply(&step, &values) {
            values.push(y);
            steps.push(step);
        }
    }
    let last = values.len() - 1;
    let other = inputs.len() + rng.below(steps.len());
    (steps, vec![last, other])
}

fn random_shapes(rng: &mut Rng) -> Vec<Vec<usize>> {
    let rank = rng.below(4);
    let base: Vec<usize> = (0..rank).map(|_| 1 + rng.below(5)).collect();
    (0..1 + rng.below(3))
        .map(|_| {
            // Broadcastable variants: drop leading axes or set some to 1.
            let drop = rng.below(rank + 1).min(rank) * usize::from(rng.below(3) == 0);
            base[drop..].iter().map(|&d| if rng.below(4) == 0 { 1 } else { d }).collect()
        })
        .collect()
}

#[test]
fn random_graphs_compile_to_the_same_values() {
    let _g = switch_lock();
    let mut rng = Rng(0x5eed_1234_abcd_0042);
    for case in 0..200 {
        let dtype =
            [Dtype::Float32, Dtype::Float32, Dtype::Float64, Dtype::Float16, Dtype::Bfloat16]
                [rng.below(5)];
        let inputs: Vec<Array> =
            random_shapes(&mut rng).iter().map(|s| random_array(&mut rng, s, dtype)).collect();
        let (steps, outs) = random_steps(&mut rng, &inputs);
        let f = move |x: &[Array]| -> Result<Vec<Array>> {
            let mut v = x.to_vec();
            for s in &steps {
                let y = apply(s, &v)?;
                v.push(y);
            }
            Ok(outs.iter().map(|&o| v[o].clone()).collect())
        };
        let want = f(&inputs).unwrap();
        let compiled = Compiled::new(f, CompileOptions::default());
        let got = compiled.call(&inputs).unwrap();
        let again = compiled.call(&inputs).unwrap();
        assert_eq!(compiled.trace_count(), 1, "case {case}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let tol = match w.dtype() {
                Dtype::Float16 | Dtype::Bfloat16 => 3e-2,
                _ => 1e-4,
            };
            assert_close(g, w, tol, &format!("case {case} output {i}"));
            assert_close(&again[i], w, tol, &format!("case {case} output {i}, replayed"));
        }
    }
}

fn vec_f32(v: &[f32]) -> Array {
    Array::from_slice(v, &[v.len()]).unwrap()
}

#[test]
fn common_subexpressions_are_computed_once() {
    let f = |x: &[Array]| -> Result<Vec<Array>> {
        Ok(vec![ops::add(&ops::exp(&x[0])?, &ops::exp(&x[0])?)?])
    };
    let c = Compiled::new(f, CompileOptions::default());
    let x = vec_f32(&[0.0, 1.0, -2.0]);
    let stats = c.stats(std::slice::from_ref(&x)).unwrap();
    // One fused node: exp once, then the add.
    assert_eq!((stats.nodes, stats.fused, stats.instructions), (1, 1, 2));
    let y = c.call(&[x]).unwrap().remove(0).to_vec::<f32>().unwrap();
    let want = [2.0f32, 2.0 * 1f32.exp(), 2.0 * (-2f32).exp()];
    for (a, b) in y.iter().zip(want) {
        assert!((a - b).abs() <= 1e-6 * b, "{a} vs {b}");
    }
}

#[test]
fn constant_subgraphs_fold_and_equal_scalars_merge() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let f = move |x: &[Array]| -> Result<Vec<Array>> {
        seen.fetch_add(1, Ordering::Relaxed);
        // (ones * 2 + 1) does not depend on x: folded into one constant [3, 3].
        let k = ops::add(
            &ops::multiply(&ops::ones(&[2], Dtype::Float32)?, &Array::scalar(2f32))?,
            &Array::scalar(1f32),
        )?;
        // Two separate scalar 0.5 arrays merge, so the two products are one.
        let a = ops::multiply(&x[0], &Array::scalar(0.5f32))?;
        let b = ops::multiply(&x[0], &Array::scalar(0.5f32))?;
        Ok(vec![ops::multiply(&ops::add(&a, &b)?, &k)?])
    };
    let c = Compiled::new(f, CompileOptions::default());
    let x = vec_f32(&[4.0, -6.0]);
    let stats = c.stats(std::slice::from_ref(&x)).unwrap();
    assert_eq!(stats.constants, 2, "{stats:?}"); // the folded k and one 0.5
    assert_eq!((stats.nodes, stats.fused, stats.instructions), (1, 1, 3), "{stats:?}");
    assert_eq!(c.call(&[x]).unwrap()[0].to_vec::<f32>().unwrap(), [12.0, -18.0]);
    assert_eq!(calls.load(Ordering::Relaxed), 1);
}

#[test]
fn no_op_casts_and_reshapes_disappear_and_reductions_split_regions() {
    let f = |x: &[Array]| -> Result<Vec<Array>> {
        let y = ops::reshape_to(&ops::exp(&x[0])?, &[2, 3])?;
        let s = ops::sum(&ops::tanh(&y)?, Some(&[1]), true)?;
        Ok(vec![ops::multiply(&ops::negative(&y)?, &s)?])
    };
    let c = Compiled::new(f, CompileOptions::default());
    let x = Array::from_slice(&[0.1f32, 0.2, 0.3, -0.1, -0.2, -0.3], &[2, 3]).unwrap();
    let stats = c.stats(std::slice::from_ref(&x)).unwrap();
    // exp, tanh and negative fused (the reshape is gone), then the sum, then the multiply,
    // which reads the sum and so cannot join the region the sum reads.
    assert_eq!((stats.nodes, stats.fused, stats.instructions), (3, 1, 3), "{stats:?}");
    let got = c.call(std::slice::from_ref(&x)).unwrap().remove(0);
    assert_close(&got, &f(&[x]).unwrap()[0], 1e-6, "split regions");
}

fn gelu(x: &Array) -> Result<Array> {
    let inner = ops::add(
        x,
        &ops::multiply(&Array::scalar(0.044715f32), &ops::power(x, &Array::scalar(3f32))?)?,
    )?;
    let t =
        ops::tanh(&ops::multiply(&Array::scalar((2.0f32 / std::f32::consts::PI).sqrt()), &inner)?)?;
    ops::multiply(&ops::multiply(&Array::scalar(0.5f32), x)?, &ops::add(&Array::scalar(1f32), &t)?)
}

fn gelu_f64(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
}

#[test]
fn gelu_fuses_into_one_pass_over_large_and_strided_inputs() {
    let f = |x: &[Array]| -> Result<Vec<Array>> { Ok(vec![gelu(&x[0])?]) };
    let c = Compiled::new(f, CompileOptions::default());
    // Large enough to run tiles in parallel; the transpose makes the input strided.
    let (r, k) = (317, 331);
    let data: Vec<f32> = (0..r * k).map(|i| ((i as f32) * 0.013).sin() * 5.0).collect();
    let x = ops::transpose_all(&Array::from_slice(&data, &[r, k]).unwrap()).unwrap();
    let stats = c.stats(std::slice::from_ref(&x)).unwrap();
    assert_eq!((stats.nodes, stats.fused, stats.instructions), (1, 1, 8), "{stats:?}");
    let got = c.call(&[x]).unwrap().remove(0).to_vec::<f32>().unwrap();
    for i in (0..k).step_by(7) {
        for j in (0..r).step_by(5) {
            let v = data[j * k + i] as f64;
            let (g, w) = (got[i * r + j] as f64, gelu_f64(v));
            assert!((g - w).abs() <= 1e-6 * (1.0 + w.abs()), "gelu({v}) = {g}, want {w}");
        }
    }
}

#[test]
fn outputs_too_large_for_the_cache_stream_out_the_same_values() {
    // Above 16 MiB a fused output leaves its registers by streaming stores; a length that is
    // no multiple of a tile or a cache line checks the ragged ends too.
    let n = (16 << 20) / 4 + 4099;
    let data: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.0007).sin() * 4.0).collect();
    let x = Array::from_slice(&data, &[n]).unwrap();
    let f = |x: &[Array]| -> Result<Vec<Array>> { Ok(vec![gelu(&x[0])?]) };
    let got = compile(f)(&[x]).unwrap().remove(0).to_vec::<f32>().unwrap();
    for i in (0..n).step_by(4093).chain(n - 70..n) {
        let (g, w) = (got[i] as f64, gelu_f64(data[i] as f64));
        assert!((g - w).abs() <= 1e-6 * (1.0 + w.abs()), "element {i}: {g}, want {w}");
    }
}

#[test]
fn half_precision_regions_round_like_the_ops() {
    let f = |x: &[Array]| -> Result<Vec<Array>> {
        let y = ops::add(&ops::multiply(&x[0], &x[0])?, &Array::scalar(bf16::from_f32(1.0)))?;
        Ok(vec![ops::divide(&y, &ops::add(&x[0], &Array::scalar(bf16::from_f32(3.0)))?)?])
    };
    let x = Array::from_slice(&[0.3f32, 1.7, -0.9, 2.2, -1.3], &[5])
        .unwrap()
        .astype(Dtype::Bfloat16)
        .unwrap();
    let got = compile(f)(std::slice::from_ref(&x)).unwrap().remove(0);
    // Only +, *, / on bf16: rounding each op's result in f32 matches the ops exactly.
    assert_eq!(got.to_vec::<f32>().unwrap(), f(&[x]).unwrap()[0].to_vec::<f32>().unwrap());
}

#[test]
fn scalar_scales_and_shifts_fold_without_changing_a_bit() {
    // Each scalar `*`, `+`, `-` here becomes an epilogue of the step before it (or a
    // three-operand step); with exact ops only, compiled must equal op by op bit for bit.
    let f = |x: &[Array]| -> Result<Vec<Array>> {
        let s = |v: f32| Array::scalar(v).astype(x[0].dtype());
        let t = ops::subtract(
            &ops::multiply(&ops::sqrt(&ops::abs(&ops::add(&x[0], &x[1])?)?)?, &s(0.7)?)?,
            &s(0.25)?,
        )?;
        let u = ops::subtract(&s(2.0)?, &ops::add(&ops::multiply(&x[0], &x[0])?, &x[1])?)?;
        let m = ops::multiply(&ops::multiply(&x[0], &s(0.5)?)?, &t)?;
        let e = ops::multiply(&x[0], &s(3.0)?)?;
        Ok(vec![t, u, m, ops::add(&e, &s(1.0)?)?, e])
    };
    let mut rng = Rng(0x0fa1_d5ca_1e00_0001);
    for dtype in [Dtype::Float32, Dtype::Float16, Dtype::Bfloat16, Dtype::Float64] {
        // Parallel tiles, a ragged last tile and a broadcast row.
        let x =
            [random_array(&mut rng, &[300, 257], dtype), random_array(&mut rng, &[1, 257], dtype)];
        let want = f(&x).unwrap();
        let got = compile(f)(&x).unwrap();
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.dtype(), dtype);
            let (g, w) = (g.to_vec::<f64>().unwrap(), w.to_vec::<f64>().unwrap());
            assert!(
                g.iter().zip(&w).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{dtype:?} output {k}"
            );
        }
    }
}

#[test]
fn traces_are_cached_per_signature() {
    let _g = switch_lock();
    let f =
        |x: &[Array]| -> Result<Vec<Array>> { Ok(vec![ops::sin(&ops::multiply(&x[0], &x[0])?)?]) };
    let c = Compiled::new(f, CompileOptions::default());
    let a = vec_f32(&[1.0, 2.0, 3.0]);
    c.call(std::slice::from_ref(&a)).unwrap();
    c.call(&[vec_f32(&[4.0, 5.0, 6.0])]).unwrap();
    assert_eq!(c.trace_count(), 1);
    let y = c.call(&[vec_f32(&[0.5, 1.5])]).unwrap().remove(0);
    assert_eq!(c.trace_count(), 2, "a new shape retraces");
    assert_close(&y, &vec_f32(&[0.25f32.sin(), 2.25f32.sin()]), 1e-6, "new shape");
    c.call(&[a.astype(Dtype::Float64).unwrap()]).unwrap();
    assert_eq!(c.trace_count(), 3, "a new dtype retraces");
}

#[test]
fn shapeless_traces_once_per_rank() {
    let _g = switch_lock();
    let f = |x: &[Array]| -> Result<Vec<Array>> { Ok(vec![ops::add(&ops::exp(&x[0])?, &x[1])?]) };
    let c = Compiled::new(f, CompileOptions { shapeless: true });
    for n in [3usize, 7, 1] {
        let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
        let y = c.call(&[vec_f32(&x), Array::scalar(1f32)]).unwrap().remove(0);
        let want: Vec<f32> = x.iter().map(|v| v.exp() + 1.0).collect();
        assert_close(&y, &vec_f32(&want), 1e-6, "shapeless");
    }
    assert_eq!(c.trace_count(), 1);
    let m = Array::from_slice(&[0f32, 1.0, 2.0, 3.0], &[2, 2]).unwrap();
    assert_eq!(c.call(&[m, Array::scalar(1f32)]).unwrap()[0].shape(), [2, 2]);
    assert_eq!(c.trace_count(), 2, "a new rank retraces");
}

#[test]
fn disable_compile_calls_the_function_directly() {
    let _g = switch_lock();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let f = move |x: &[Array]| -> Result<Vec<Array>> {
        seen.fetch_add(1, Ordering::Relaxed);
        Ok(vec![ops::exp(&x[0])?])
    };
    let c = Compiled::new(f, CompileOptions::default());
    let x = vec_f32(&[0.0, 1.0]);
    disable_compile();
    let off = (0..2).map(|_| c.call(std::slice::from_ref(&x)).unwrap().remove(0)).last().unwrap();
    enable_compile();
    assert_eq!((calls.load(Ordering::Relaxed), c.trace_count()), (2, 0));
    let on = (0..2).map(|_| c.call(std::slice::from_ref(&x)).unwrap().remove(0)).last().unwrap();
    assert_eq!((calls.load(Ordering::Relaxed), c.trace_count()), (3, 1));
    assert_close(&on, &off, 1e-6, "enabled vs disabled");
}

fn loss(x: &Array) -> Result<Array> {
    ops::sum(&ops::multiply(&ops::sin(x)?, &ops::exp(x)?)?, None, false)
}

/// d/dx sum(sin(x) e^x) = (sin x + cos x) e^x.
fn loss_grad(x: &[f64]) -> Vec<f64> {
    x.iter().map(|v| (v.sin() + v.cos()) * v.exp()).collect()
}

#[test]
fn grad_of_compiled_and_compiled_grad_match_the_derivative() {
    let xs = [0.3f64, -1.1, 2.0, 0.0];
    let x = Array::from_slice(&xs, &[4]).unwrap();
    let want = Array::from_slice(&loss_grad(&xs), &[4]).unwrap();
    // grad(compile(f))
    let cf = compile(|x: &[Array]| Ok(vec![loss(&x[0])?]));
    let g =
        grad(move |a: &[Tree]| Ok(Tree::from(cf(&[a[0].as_array()?.clone()])?.remove(0))), &[0]);
    assert_close(
        g(&[x.clone().into()]).unwrap()[0].as_array().unwrap(),
        &want,
        1e-12,
        "grad of compile",
    );
    // compile(grad(f))
    let g = grad(|a: &[Tree]| Ok(Tree::from(loss(a[0].as_array()?)?)), &[0]);
    let cg =
        compile(move |x: &[Array]| Ok(vec![g(&[x[0].clone().into()])?[0].as_array()?.clone()]));
    assert_close(&cg(std::slice::from_ref(&x)).unwrap()[0], &want, 1e-12, "compile of grad");
    // jvp through the compiled op.
    let cf = compile(|x: &[Array]| Ok(vec![ops::multiply(&ops::sin(&x[0])?, &ops::exp(&x[0])?)?]));
    let ones = ops::ones_like(&x).unwrap();
    let (_, t) = jvp(|a| cf(a), std::slice::from_ref(&x), &[ones]).unwrap();
    assert_close(&t[0], &want, 1e-12, "jvp of compile");
}

#[test]
fn vmap_of_compiled_equals_each_row() {
    let cf = compile(|x: &[Array]| Ok(vec![gelu(&ops::multiply(&x[0], &x[1])?)?]));
    let rows = Array::from_slice(&[0.5f32, -1.0, 2.0, 1.5, 0.25, -3.0], &[2, 3]).unwrap();
    let w = vec_f32(&[1.0, 2.0, -0.5]);
    let batched =
        vmap(|a| cf(a), &[Some(0), None], &[Some(0)])(&[rows.clone(), w.clone()]).unwrap();
    let got = batched[0].to_vec::<f32>().unwrap();
    let data = rows.to_vec::<f32>().unwrap();
    let wv = w.to_vec::<f32>().unwrap();
    for (i, g) in got.iter().enumerate() {
        let want = gelu_f64((data[i] * wv[i % 3]) as f64);
        assert!((*g as f64 - want).abs() < 1e-6 * (1.0 + want.abs()), "{g} vs {want}");
    }
}

#[test]
fn errors_of_the_function_surface_from_the_call() {
    let cf = compile_with(
        |x: &[Array]| Ok(vec![ops::matmul(&x[0], &x[0])?]),
        CompileOptions { shapeless: true },
    );
    let err = cf(&[Array::from_slice(&[1f32; 6], &[2, 3]).unwrap()]).unwrap_err();
    assert!(err.to_string().contains("[matmul]"), "{err}");
}

/// The address of an evaluated array's buffer.
fn buffer_ptr(x: &Array) -> usize {
    x.eval().unwrap();
    x.ready().unwrap().buffer.as_ptr() as usize
}

/// `x * 2` evaluated: a fresh buffer that only the returned array holds.
fn doubled(x: &Array) -> Array {
    let y = ops::multiply(x, &Array::scalar(2f32).astype(x.dtype()).unwrap()).unwrap();
    y.eval().unwrap();
    y
}

#[test]
fn compiled_steps_write_over_dead_inputs() {
    // One fused region with two outputs of the inputs' dtype, y = tanh(0.7 a) + b and y * b:
    // each overwrites an input.
    let f = |x: &[Array]| -> Result<Vec<Array>> {
        let c = Array::scalar(0.7f32).astype(x[0].dtype())?;
        let y = ops::add(&ops::tanh(&ops::multiply(&x[0], &c)?)?, &x[1])?;
        Ok(vec![y.clone(), ops::multiply(&y, &x[1])?])
    };
    let c = Compiled::new(f, CompileOptions::default());
    let mut rng = Rng(0xd0_4a7e);
    // Up to large enough (in f32) for the parallel, streaming-store path; ragged last tiles.
    for (case, n) in [7usize, 1000, 70_001, (1 << 22) + 5].into_iter().enumerate() {
        let dtype = [Dtype::Float64, Dtype::Float16, Dtype::Bfloat16, Dtype::Float32][case];
        let (a, b) = (random_array(&mut rng, &[n], dtype), random_array(&mut rng, &[n], dtype));
        let want = f(&[doubled(&a), doubled(&b)]).unwrap();
        let (a2, b2) = (doubled(&a), doubled(&b));
        assert_eq!(c.stats(&[a2.clone(), b2.clone()]).unwrap().nodes, 1, "one fused node");
        let mut ptrs = [buffer_ptr(&a2), buffer_ptr(&b2)];
        let got = c.call(&[a2, b2]).unwrap(); // the arguments die here
        let mut reused = [buffer_ptr(&got[0]), buffer_ptr(&got[1])];
        ptrs.sort();
        reused.sort();
        assert_eq!(reused, ptrs, "case {case}: the outputs took the inputs' buffers");
        let tol = if dtype.size() == 2 { 3e-2 } else { 1e-5 };
        for i in 0..2 {
            assert_close(&got[i], &want[i], tol, &format!("case {case} output {i}"));
        }
    }
    // Held or broadcast inputs are never overwritten.
    let a = doubled(&random_array(&mut rng, &[300], Dtype::Float32));
    let b = doubled(&random_array(&mut rng, &[1], Dtype::Float32));
    let before = a.to_vec::<f32>().unwrap();
    let got = c.call(&[a.clone(), b.clone()]).unwrap();
    let want = f(&[a.clone(), b]).unwrap();
    for i in 0..2 {
        assert_close(&got[i], &want[i], 1e-6, "held");
        assert_ne!(buffer_ptr(&got[i]), buffer_ptr(&a));
    }
    assert_eq!(a.to_vec::<f32>().unwrap(), before);
}

#[test]
fn shapeless_replays_rederive_reshapes_and_broadcasts() {
    // MLX's test_shapeless_compile_with_reshape: the flattened size is traced as a number.
    let f = |x: &[Array]| -> Result<Vec<Array>> {
        let s = x[0].shape();
        let y = ops::reshape(&ops::exp(&x[0])?, &[(s[0] * s[1]) as isize, -1])?;
        Ok(vec![ops::expand_dims(&ops::squeeze(&ops::flatten(&y, 0, -1)?, None)?, &[0])?, y])
    };
    let c = Compiled::new(f, CompileOptions { shapeless: true });
    let mut rng = Rng(0x5a_9e1e55);
    for shape in [[2usize, 3, 4], [2, 3, 8], [5, 5, 5], [1, 7, 1]] {
        let x = random_array(&mut rng, &shape, Dtype::Float32);
        let (got, want) = (c.call(std::slice::from_ref(&x)).unwrap(), f(&[x]).unwrap());
        for (g, w) in got.iter().zip(&want) {
            assert_close(g, w, 1e-6, &format!("reshapes at {shape:?}"));
        }
    }
    assert_eq!(c.trace_count(), 1);
    // Splitting an axis whose extent changed cannot be re-derived: a clear error.
    let split = |x: &[Array]| -> Result<Vec<Array>> { Ok(vec![ops::reshape(&x[0], &[2, 3])?]) };
    let c = Compiled::new(split, CompileOptions { shapeless: true });
    assert_eq!(c.call(&[vec_f32(&[1.0; 6])]).unwrap()[0].shape(), [2, 3]);
    let err = c.call(&[vec_f32(&[1.0; 12])]).unwrap_err().to_string();
    assert!(err.contains("[compile]") && err.contains("reshape"), "{err}");
    // broadcast_to keeps its traced extents on broadcast axes; the others follow the input.
    let bc = |x: &[Array]| -> Result<Vec<Array>> {
        Ok(vec![ops::broadcast_to(&ops::negative(&x[0])?, &[3, x[0].shape()[1]])?])
    };
    let c = Compiled::new(bc, CompileOptions { shapeless: true });
    for cols in [4usize, 6] {
        let x = random_array(&mut rng, &[1, cols], Dtype::Float32);
        assert_close(
            &c.call(std::slice::from_ref(&x)).unwrap()[0],
            &bc(&[x]).unwrap()[0],
            0.0,
            "bcast",
        );
    }
    let err = c.call(&[random_array(&mut rng, &[2, 6], Dtype::Float32)]).unwrap_err();
    assert!(err.to_string().contains("broadcast"), "{err}");
}
