//! GEMM throughput: bf16 (`gemm_bf16`, bf16 and f32 output) against f32 (`gemm` crate), square
//! sizes, on rayon pools of 1 and 2 threads. Prints best and median wall-clock GFLOP/s over
//! several timed runs after a warm-up, and "cpu": the median rate per CPU-second the pool's
//! threads actually got, times the thread count, i.e. the speed had each thread owned a core.
//! It stays meaningful when other processes share the cores (idle spinning counts as used).
//!
//! `cargo run --release -p ember-cpu --example gemm_bench [sizes...]` (default 256 1024 2048 4096).

use ember_cpu::bf16;
use ember_cpu::gemm_bf16::{matmul_bf16, matmul_bf16_f32};
use ember_cpu::matmul::{Gemm, MatRef};
use rayon::ThreadPool;
use std::time::{Duration, Instant};

/// CPU time the calling thread has used, in seconds.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime failed");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// CPU seconds used so far by all threads of `pool`.
fn pool_cpu(pool: &ThreadPool) -> f64 {
    pool.broadcast(|_| thread_cpu()).iter().sum()
}

/// Runs `f` on `pool` (after one warm-up call) until ~1 s has passed or 15 runs, and prints
/// the GFLOP/s of an n x n x n product.
fn bench(name: &str, n: usize, pool: &ThreadPool, mut f: impl FnMut() + Send) {
    pool.install(&mut f);
    let start = Instant::now();
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    while wall.len() < 3 || (wall.len() < 15 && start.elapsed() < Duration::from_secs(1)) {
        let (t, c) = (Instant::now(), pool_cpu(pool));
        pool.install(&mut f);
        wall.push(t.elapsed().as_secs_f64());
        cpu.push((pool_cpu(pool) - c) / pool.current_num_threads() as f64);
    }
    wall.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    let gf = |s: f64| 2.0 * (n as f64).powi(3) / s / 1e9;
    println!(
        "{name:<9} n={n:<4} threads={}  best {:>6.1}  median {:>6.1}  cpu {:>6.1} GFLOP/s  ({} runs)",
        pool.current_num_threads(),
        gf(wall[0]),
        gf(wall[wall.len() / 2]),
        gf(cpu[cpu.len() / 2]),
        wall.len()
    );
}

fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).map(|s| s.parse().expect("size")).collect();
    let sizes = if sizes.is_empty() { vec![256, 1024, 2048, 4096] } else { sizes };
    // Deterministic pseudo-random values in [-1, 1).
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    };
    for &n in &sizes {
        let a32: Vec<f32> = (0..n * n).map(|_| next()).collect();
        let b32: Vec<f32> = (0..n * n).map(|_| next()).collect();
        let a16: Vec<bf16> = a32.iter().map(|&x| bf16::from_f32(x)).collect();
        let b16: Vec<bf16> = b32.iter().map(|&x| bf16::from_f32(x)).collect();
        let mut o16 = vec![bf16::ZERO; n * n];
        let mut o32 = vec![0f32; n * n];
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let (a, b) = (MatRef::dense(&a16, n), MatRef::dense(&b16, n));
            bench("bf16", n, &pool, || matmul_bf16(&mut o16, a, b, n, n, n));
            bench("bf16->f32", n, &pool, || matmul_bf16_f32(&mut o32, a, b, n, n, n));
            let (a, b) = (MatRef::dense(&a32, n), MatRef::dense(&b32, n));
            bench("f32", n, &pool, || f32::matmul(&mut o32, a, b, n, n, n));
        }
    }
}
