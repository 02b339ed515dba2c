//! ember's side of the training-step benchmark: `value_and_grad` of a 4-layer ReLU MLP (batch
//! 256, width 1024, float32) with a mean-squared-error loss; each step evaluates the loss and
//! every gradient. Prints one JSON line in core_ops' format; benches/peers_mlp_grad.py times
//! PyTorch autograd and MLX's `value_and_grad` on the same workload.
//! Run: cargo run --release -p ember-benches --bin mlp_grad -- [threads] [runs]

use ember::prelude::*;
use ember::transforms::value_and_grad;
use std::time::Instant;

const BATCH: usize = 256;
const WIDTH: usize = 1024;
const LAYERS: usize = 4;

/// Deterministic values in [-scale, scale], as the peers make them.
fn filled(shape: &[usize], scale: f32) -> Result<Array> {
    let n: usize = shape.iter().product();
    let x = ops::linspace(-1.0, 1.0, n, Dtype::Float32)?;
    let x = ops::sin(&ops::multiply(&x, &Array::scalar(12345.678f32))?)?;
    let x = ops::reshape_to(&ops::multiply(&x, &Array::scalar(scale))?, shape)?;
    x.eval()?;
    Ok(x)
}

/// Mean squared error of the MLP on `args = [params, x, target]`, params `[w0, b0, w1, ...]`.
fn loss(args: &[Tree]) -> Result<Tree> {
    let params = args[0].leaves();
    let mut h = args[1].as_array()?.clone();
    for (i, layer) in params.chunks(2).enumerate() {
        h = ops::add(&ops::matmul(&h, &layer[0])?, &layer[1])?;
        if i + 1 < LAYERS {
            h = ops::maximum(&h, &Array::scalar(0.0f32))?;
        }
    }
    let err = ops::subtract(&h, args[2].as_array()?)?;
    Ok(ops::mean(&ops::square(&err)?, None, false)?.into())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let runs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().expect("rayon pool");

    let scale = 1.0 / (WIDTH as f32).sqrt();
    let mut params = Vec::new();
    for _ in 0..LAYERS {
        params.push(filled(&[WIDTH, WIDTH], scale)?);
        params.push(filled(&[WIDTH], 0.1)?);
    }
    let inputs = [
        Tree::from(params),
        filled(&[BATCH, WIDTH], 1.0)?.into(),
        filled(&[BATCH, WIDTH], 0.5)?.into(),
    ];
    let step = value_and_grad(loss, &[0]);
    let run = || -> Result<f64> {
        let t = Instant::now();
        let (value, grads) = step(&inputs)?;
        let mut outs = vec![value.as_array()?.clone()];
        outs.extend(grads[0].leaves());
        eval(&outs.iter().collect::<Vec<_>>())?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    run()?; // warm-up
    let mut ms = (0..runs).map(|_| run()).collect::<Result<Vec<_>>>()?;
    ms.sort_by(f64::total_cmp);
    let (med, min, max) = (ms[ms.len() / 2], ms[0], ms[ms.len() - 1]);
    println!(
        "{{\"workload\":\"mlp_grad_4x1024_b256\",\"threads\":{threads},\"median_ms\":{med:.3},\"min_ms\":{min:.3},\"max_ms\":{max:.3}}}"
    );
    Ok(())
}
