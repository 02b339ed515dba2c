//! ember's side of the core-ops benchmark: prints one JSON line per workload with the median,
//! min and max milliseconds over the runs. benches/run_core.py runs it beside the peers.
//! Run alone: cargo run --release -p ember-benches --bin core_ops -- [threads] [runs]

use ember::prelude::*;
use std::time::Instant;

fn time(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<(f64, f64, f64)> {
    f()?; // warm-up
    let mut ms: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f().map(|_| t.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_>>()?;
    ms.sort_by(f64::total_cmp);
    Ok((ms[ms.len() / 2], ms[0], ms[ms.len() - 1]))
}

fn report(name: &str, threads: usize, (med, min, max): (f64, f64, f64), extra: &str) {
    println!(
        "{{\"workload\":\"{name}\",\"threads\":{threads},\"median_ms\":{med:.3},\"min_ms\":{min:.3},\"max_ms\":{max:.3}{extra}}}"
    );
}

fn random(shape: &[usize], dtype: Dtype) -> Result<Array> {
    let n: usize = shape.iter().product();
    let x = ops::reshape_to(&ops::linspace(-1.0, 1.0, n, Dtype::Float32)?, shape)?;
    let x = ops::sin(&ops::multiply(&x, &Array::scalar(12345.678f32))?)?;
    let x = x.astype(dtype)?;
    x.eval()?;
    Ok(x)
}

/// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`, written as MLX's `nn.gelu_approx`.
fn gelu_tanh(x: &Array) -> Result<Array> {
    let c = Array::scalar((2.0f32 / std::f32::consts::PI).sqrt());
    let cube = ops::power(x, &Array::scalar(3f32))?;
    let inner = ops::add(x, &ops::multiply(&Array::scalar(0.044715f32), &cube)?)?;
    let t = ops::tanh(&ops::multiply(&c, &inner)?)?;
    ops::multiply(&ops::multiply(&Array::scalar(0.5f32), x)?, &ops::add(&Array::scalar(1f32), &t)?)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let runs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let filter = args.get(3).cloned().unwrap_or_default();
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().expect("rayon pool");
    let want = |name: &str| filter.is_empty() || name.contains(&filter);

    for (n, dtype, tag) in [
        (1024, Dtype::Float32, "matmul_f32_1024"),
        (4096, Dtype::Float32, "matmul_f32_4096"),
        (1024, Dtype::Bfloat16, "matmul_bf16_1024"),
        (4096, Dtype::Bfloat16, "matmul_bf16_4096"),
    ] {
        if !want(tag) {
            continue;
        }
        let (a, b) = (random(&[n, n], dtype)?, random(&[n, n], dtype)?);
        let r = time(runs, || ops::matmul(&a, &b)?.eval())?;
        let gflops = 2.0 * (n as f64).powi(3) / (r.0 * 1e-3) / 1e9;
        report(tag, threads, r, &format!(",\"gflops\":{gflops:.1}"));
    }

    let n = 1 << 24;
    if want("sum_16m") {
        let x = random(&[n], Dtype::Float32)?;
        let r = time(runs, || ops::sum(&x, None, false)?.eval())?;
        let gbs = (n * 4) as f64 / (r.0 * 1e-3) / 1e9;
        report("sum_16m", threads, r, &format!(",\"gb_per_s\":{gbs:.1}"));
    }
    if want("chain_relu_xw_b") {
        let (x, w, b) = (
            random(&[n], Dtype::Float32)?,
            random(&[n], Dtype::Float32)?,
            random(&[n], Dtype::Float32)?,
        );
        let zero = Array::scalar(0f32);
        let r =
            time(runs, || ops::maximum(&ops::add(&ops::multiply(&x, &w)?, &b)?, &zero)?.eval())?;
        report("chain_relu_xw_b", threads, r, "");
    }
    if want("gelu_16m_compiled") {
        // MLX's nn.gelu_approx formula; the compiled run fuses the chain into one pass.
        let x = random(&[n], Dtype::Float32)?;
        let uncompiled = |x: &[Array]| Ok(vec![gelu_tanh(&x[0])?]);
        let compiled = transforms::compile(uncompiled);
        let args = [x];
        let gbs = |ms: f64| (2 * n * 4) as f64 / (ms * 1e-3) / 1e9;
        if want("gelu_16m") {
            let r = time(runs, || uncompiled(&args)?[0].eval())?;
            report("gelu_16m", threads, r, &format!(",\"gb_per_s\":{:.1}", gbs(r.0)));
        }
        let r = time(runs, || compiled(&args)?[0].eval())?;
        report("gelu_16m_compiled", threads, r, &format!(",\"gb_per_s\":{:.1}", gbs(r.0)));
    }
    if want("softmax_rows_4096") {
        let x = random(&[4096, 4096], Dtype::Float32)?;
        let r = time(runs, || ops::softmax(&x, Some(&[-1]), false)?.eval())?;
        report("softmax_rows_4096", threads, r, "");
    }
    if want("transpose_copy_4096") {
        let x = random(&[4096, 4096], Dtype::Float32)?;
        let r = time(runs, || ops::contiguous(&ops::transpose_all(&x)?)?.eval())?;
        report("transpose_copy_4096", threads, r, "");
    }
    if want("mlp_value_and_grad") {
        report("mlp_value_and_grad", threads, time(runs, mlp_step()?)?, "");
    }
    Ok(())
}

/// One training step's gradient of a 4-layer MLP (width 1024, batch 256, relu, mean squared
/// error): `value_and_grad` of the loss over the parameter tree, loss and gradients evaluated.
fn mlp_step() -> Result<impl FnMut() -> Result<()>> {
    use ember::transforms::{value_and_grad, Tree};
    let (width, batch, layers) = (1024, 256, 4);
    let scale = Array::scalar(1.0f32 / (width as f32).sqrt());
    let params = Tree::List(
        (0..layers)
            .map(|_| {
                let w = ops::multiply(&random(&[width, width], Dtype::Float32)?, &scale)?;
                let b = random(&[width], Dtype::Float32)?;
                Ok(Tree::from(vec![w, b]))
            })
            .collect::<Result<_>>()?,
    );
    let (x, y) =
        (random(&[batch, width], Dtype::Float32)?, random(&[batch, width], Dtype::Float32)?);
    let loss = move |args: &[Tree]| -> Result<Tree> {
        let leaves = args[0].leaves();
        let mut h = args[1].as_array()?.clone();
        for (i, wb) in leaves.chunks(2).enumerate() {
            h = ops::add(&ops::matmul(&h, &wb[0])?, &wb[1])?;
            if i + 1 < layers {
                h = ops::maximum(&h, &Array::scalar(0f32))?;
            }
        }
        let err = ops::subtract(&h, args[2].as_array()?)?;
        Ok(ops::mean(&ops::square(&err)?, None, false)?.into())
    };
    let step = value_and_grad(loss, &[0]);
    Ok(move || {
        let (value, grads) = step(&[params.clone(), x.clone().into(), y.clone().into()])?;
        let mut outs = vec![value.as_array()?.clone()];
        outs.extend(grads[0].leaves());
        eval(&outs.iter().collect::<Vec<_>>())
    })
}
