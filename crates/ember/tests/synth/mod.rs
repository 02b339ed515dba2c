//! Synthetic inputs and a closeness check for tests that compare two ember computations of the
//! same thing (a fused kernel against a composite of ops, a strided input against a copy).
#![allow(dead_code)]

use ember::prelude::*;

/// Deterministic pseudo-random float32 values in [-1, 1) (xorshift).
pub fn noise(shape: &[usize], seed: u64) -> Array {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let data: Vec<f32> = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    Array::from_vec(data, shape).unwrap()
}

/// Asserts equal shapes and `|a - b| <= tol * (1 + |b|)` elementwise (NaNs must match).
pub fn assert_close(what: &str, a: &Array, b: &Array, tol: f64) {
    assert_eq!(a.shape(), b.shape(), "{what}: shape");
    let (a, b) = (a.to_vec::<f64>().unwrap(), b.to_vec::<f64>().unwrap());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let ok = (x.is_nan() && y.is_nan()) || x == y || (x - y).abs() <= tol * (1.0 + y.abs());
        assert!(ok, "{what}: element {i}: {x} vs {y}");
    }
}
