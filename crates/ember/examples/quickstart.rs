//! The README's example: build `relu(x @ w + b)` lazily, evaluate it, print it.
//! Run: cargo run --release -p ember --example quickstart

use ember::prelude::*;

fn main() -> Result<()> {
    let x = ops::reshape(&ops::arange(0.0, 12.0, 1.0, Dtype::Float32)?, &[3, 4])?;
    let w = ops::linspace(-1.0, 1.0, 8, Dtype::Float32)?;
    let w = ops::reshape(&w, &[4, 2])?;
    let b = Array::from_slice(&[0.5f32, -0.5], &[2])?;
    let y = ops::maximum(&ops::add(&ops::matmul(&x, &w)?, &b)?, &Array::scalar(0.0f32))?;
    println!("pending: {}", !y.is_evaluated());
    eval(&[&y])?;
    println!("{y}");
    Ok(())
}
