//! What a recorded op costs beyond its kernel: records and evaluates chains of small ops on
//! one 576-wide row (a decoding step's sizes, where each op's kernel takes well under a
//! microsecond) and prints the median nanoseconds per op of recording and of evaluating.
//! Run: cargo run --release -p ember-benches --bin op_overhead -- [ops] [runs]

use ember::prelude::*;
use std::time::Instant;

/// Ops recorded per step of the chain.
const OPS_PER_STEP: usize = 4;

fn main() -> Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let steps = args.first().copied().unwrap_or(1000) / OPS_PER_STEP;
    let runs = args.get(1).copied().unwrap_or(20).max(1);
    let x = ops::ones(&[1, 1, 576], Dtype::Float32)?;
    x.eval()?;
    let (mut record, mut evaluate) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let start = Instant::now();
        let mut y = x.clone();
        for i in 0..steps {
            // A view, a unary or binary op, a view back and a binary op.
            let heads = ops::reshape_to(&y, &[1, 9, 64])?;
            let h =
                if i % 2 == 0 { ops::negative(&heads)? } else { ops::multiply(&heads, &heads)? };
            y = ops::add(&ops::reshape_to(&h, &[1, 1, 576])?, &x)?;
        }
        let recorded = Instant::now();
        y.eval()?;
        record.push((recorded - start).as_secs_f64());
        evaluate.push(recorded.elapsed().as_secs_f64());
    }
    let per_op_ns = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2] * 1e9 / (steps * OPS_PER_STEP).max(1) as f64
    };
    println!(
        "ns per op ({} ops, median of {runs} runs): record {:.0}, evaluate {:.0}",
        steps * OPS_PER_STEP,
        per_op_ns(record),
        per_op_ns(evaluate)
    );
    Ok(())
}
