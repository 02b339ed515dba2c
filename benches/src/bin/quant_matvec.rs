//! Decode-shaped quantized products (one activation row times a GGML weight matrix in the
//! layout the model loader picks), at SmolLM2-135M's and a Llama-7B's shapes: microseconds per
//! product and the weight bytes streamed per second. It isolates the kernels that take most of
//! a decode step from the graph around them.
//! Run: RAYON_NUM_THREADS=2 cargo run --release -p ember-benches --bin quant_matvec -- [runs]
//! [name filter]

use ember::buffer::Buffer;
use ember_cpu::ggml::GgmlType;
use ember_cpu::ggml_quantize::quantize;
use ember_cpu::quantized::{matmul, Layout};
use ember_cpu::quantized_packed::{pack, packed_is_fast};
use std::time::Instant;

/// A matrix of `n` rows of `k` values in `ty`, in the layout the loader would use, in an
/// ember buffer (on huge pages when large, as the loader's weights are).
fn weights(ty: GgmlType, n: usize, k: usize) -> (Buffer, Layout) {
    let x: Vec<f32> = (0..n * k).map(|i| ((i as f32) * 0.618).sin()).collect();
    let mut w = Buffer::zeroed(n * k / ty.block_size() * ty.type_size()).expect("memory");
    assert!(quantize(ty, &x, w.bytes_mut()));
    if packed_is_fast() && pack(ty, w.bytes_mut(), n) {
        (w, Layout::Packed)
    } else {
        (w, Layout::Rows)
    }
}

fn main() {
    // On a thread of the pool, as ember's `eval` runs kernels.
    rayon::scope(|_| products());
}

fn products() {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let shapes = [
        ("smollm qkv", GgmlType::Q4_1, 960, 576),
        ("smollm gate_up", GgmlType::Q4_1, 3072, 576),
        ("smollm down", GgmlType::Q4_1, 576, 1536),
        ("smollm lm_head", GgmlType::Q8_0, 49152, 576),
        ("7b gate_up", GgmlType::Q4_0, 22016, 4096),
    ];
    let filter = std::env::args().nth(2).unwrap_or_default();
    println!("threads: {}", rayon::current_num_threads());
    for (name, ty, n, k) in shapes.into_iter().filter(|s| s.0.contains(&filter)) {
        let (w, layout) = weights(ty, n, k);
        let x: Vec<f32> = (0..k).map(|i| ((i as f32) * 0.37).cos()).collect();
        let mut out = vec![0f32; n];
        let mut us: Vec<f64> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                matmul(ty, layout, &mut out, &x, w.bytes(), 1, n, k);
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        us.sort_by(f64::total_cmp);
        let med = us[runs / 2];
        println!(
            "{name:>16} {:>5} {n:>6}x{k:<5} {layout:?}: {med:8.1} us  {:6.1} GB/s",
            ty.name(),
            w.len() as f64 / med / 1e3
        );
    }
}
