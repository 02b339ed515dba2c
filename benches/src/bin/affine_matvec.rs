//! Decode-shaped products with MLX affine-quantized matrices (`ember_cpu::affine_matmul`):
//! one to four activation rows times a 4096 x 4096 matrix (and SmolLM2's MLP shape), 4 and
//! 8 bits in groups of 64 with bfloat16 scales (mlx-lm's usual checkpoint): microseconds per
//! product (median) and the weight bytes streamed per second.
//! Run: RAYON_NUM_THREADS=2 cargo run --release -p ember-benches --bin affine_matvec -- [runs]

use ember::bf16;
use ember_cpu::affine::quantize;
use ember_cpu::affine_matmul::{matmul_t, Quantized};
use std::time::Instant;

fn main() {
    // On a thread of the pool, as ember's `eval` runs kernels.
    rayon::scope(|_| products());
}

fn products() {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    println!("threads: {}", rayon::current_num_threads());
    for (n, k) in [(4096, 4096), (3072, 576)] {
        let w: Vec<bf16> = (0..n * k).map(|i| bf16::from_f32(((i as f32) * 0.618).sin())).collect();
        for bits in [4, 8] {
            let group = 64;
            let mut codes = vec![0u32; n * k * bits / 32];
            let (mut s, mut b) = (vec![bf16::ZERO; n * k / group], vec![bf16::ZERO; n * k / group]);
            quantize(&w, group, bits, &mut codes, &mut s, &mut b);
            let q = Quantized { codes: &codes, scales: &s, biases: &b, group, bits };
            let bytes = (codes.len() * 4 + s.len() * 4) as f64;
            for m in [1, 4] {
                let x: Vec<f32> = (0..m * k).map(|i| ((i as f32) * 0.37).cos()).collect();
                let mut out = vec![0f32; m * n];
                let mut us: Vec<f64> = (0..runs)
                    .map(|_| {
                        let t = Instant::now();
                        matmul_t(&mut out, &x, q, m, n, k);
                        t.elapsed().as_secs_f64() * 1e6
                    })
                    .collect();
                us.sort_by(f64::total_cmp);
                let med = us[runs / 2];
                println!(
                    "{n:>5}x{k:<5} {bits}-bit g{group} m={m}: {med:8.1} us  {:6.1} GB/s",
                    bytes / med / 1e3
                );
            }
        }
    }
}
