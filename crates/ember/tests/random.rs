//! Random ops: bit-exact against MLX fixtures (scripts/fixtures/random_ops.py), Threefry's
//! known answer, and distribution properties from fixed keys.
mod common;

use common::*;
use ember::ops::random;
use ember::prelude::*;
use serde_json::Value;

fn key(seed: u64) -> Array {
    random::key(seed)
}

fn dims(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()
}

/// Runs one fixture case with ember.
fn run_case(case: &Value) -> Array {
    let k = key(case["seed"].as_u64().unwrap());
    let a = args(case);
    let shape = || dims(&case["shape"]);
    let dtype = || dtype_from_name(case["dtype"].as_str().unwrap());
    let axis = || case["axis"].as_i64().unwrap() as isize;
    match case["fn"].as_str().unwrap() {
        "key" => k,
        "split" => random::split(&k, case["num"].as_u64().unwrap() as usize).unwrap(),
        "uniform" => random::uniform(&a[0], &a[1], &shape(), dtype(), Some(&k)).unwrap(),
        "normal" => random::normal(&shape(), dtype(), a.first(), a.get(1), Some(&k)).unwrap(),
        "bernoulli" => {
            let s = case.get("shape").map(dims);
            random::bernoulli(&a[0], s.as_deref(), Some(&k)).unwrap()
        }
        "truncated_normal" => {
            let s = case.get("shape").map(dims);
            random::truncated_normal(&a[0], &a[1], s.as_deref(), dtype(), Some(&k)).unwrap()
        }
        "gumbel" => random::gumbel(&shape(), dtype(), Some(&k)).unwrap(),
        "categorical" => match (case.get("shape"), case.get("num_samples")) {
            (Some(s), _) => random::categorical_shape(&a[0], axis(), &dims(s), Some(&k)).unwrap(),
            (_, n) => {
                let n = n.map(|n| n.as_u64().unwrap() as usize);
                random::categorical(&a[0], axis(), n, Some(&k)).unwrap()
            }
        },
        "permutation" => match case.get("n") {
            Some(n) => random::permutation(n.as_u64().unwrap() as usize, Some(&k)).unwrap(),
            None => random::permutation_of(&a[0], axis(), Some(&k)).unwrap(),
        },
        other => panic!("unknown fn {other}"),
    }
}

#[test]
fn keyed_draws_match_mlx() {
    let cases = fixture("random");
    let mut checked = 0;
    for (name, case) in &cases {
        if case["fn"] == "seed" {
            continue; // uses the global key: see global_key_is_split_per_call
        }
        let out = run_case(case);
        let want = expected(case);
        // bfloat16 outputs are stored as their float32 values.
        if let Some(d) = case.get("dtype") {
            assert_eq!(out.dtype(), dtype_from_name(d.as_str().unwrap()), "{name}: dtype");
        }
        let out =
            if out.dtype() == Dtype::Bfloat16 { out.astype(Dtype::Float32).unwrap() } else { out };
        // Uniform, bits and choices are exact (1e-12 only absorbs the JSON decimal round
        // trip); erf/erfinv/log may differ from MLX's in the last bits.
        let tol = match case["fn"].as_str().unwrap() {
            "normal" | "truncated_normal" | "gumbel" => tolerance(want.dtype).0 * 4.0,
            _ => 1e-12,
        };
        let want = Stored { dtype: out.dtype(), ..want };
        assert_matches(name, &out, &want, tol, tol);
        checked += 1;
    }
    assert!(checked >= 40, "{checked} cases");
}

#[test]
fn threefry_matches_random123_known_answer() {
    // A single word from key (0, 0) is the hash of counter (0, 0).
    let w = random::bits(&[1], 4, Some(&key(0))).unwrap().to_vec::<u32>().unwrap();
    assert_eq!(w, vec![0x6b20_0159]);
}

#[test]
fn narrow_bits_are_the_bytes_of_the_words() {
    let k = key(9);
    let words = random::bits(&[3], 4, Some(&k)).unwrap().to_vec::<u32>().unwrap();
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let b8 = random::bits(&[11], 1, Some(&k)).unwrap();
    assert_eq!(b8.dtype(), Dtype::Uint8);
    assert_eq!(b8.to_vec::<u8>().unwrap(), bytes[..11].to_vec());
    let b16 = random::bits(&[5], 2, Some(&k)).unwrap().to_vec::<u16>().unwrap();
    let halves: Vec<u16> = bytes.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    assert_eq!(b16, halves[..5].to_vec());
}

fn mean_var(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    (m, x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n)
}

const N: usize = 200_000;

#[test]
fn uniform_is_uniform_within_bounds() {
    let (lo, hi) = (Array::scalar(-2.0f32), Array::scalar(3.0f32));
    let x = random::uniform(&lo, &hi, &[N], Dtype::Float32, Some(&key(1))).unwrap();
    let v = x.to_vec::<f64>().unwrap();
    assert!(v.iter().all(|&x| (-2.0..3.0).contains(&x)));
    let (m, var) = mean_var(&v);
    // Standard error of the mean is 5/sqrt(12 N) ~ 0.003.
    assert!((m - 0.5).abs() < 0.02, "mean {m}");
    assert!((var - 25.0 / 12.0).abs() < 0.05, "var {var}");
    // Ten equal bins each hold a tenth.
    let mut bins = [0usize; 10];
    v.iter().for_each(|&x| bins[((x + 2.0) * 2.0) as usize] += 1);
    assert!(bins.iter().all(|&b| (b as f64 - N as f64 / 10.0).abs() < 1000.0), "{bins:?}");
    // Half precision never rounds up to `high`.
    let h = random::uniform(
        &Array::scalar(0f32),
        &Array::scalar(1f32),
        &[N],
        Dtype::Float16,
        Some(&key(2)),
    )
    .unwrap()
    .to_vec::<f32>()
    .unwrap();
    assert!(h.iter().all(|&x| (0.0..1.0).contains(&x)));
}

#[test]
fn normal_has_requested_moments() {
    let x = random::normal(&[N], Dtype::Float32, None, None, Some(&key(3))).unwrap();
    let (m, var) = mean_var(&x.to_vec::<f64>().unwrap());
    assert!(m.abs() < 0.01 && (var - 1.0).abs() < 0.02, "mean {m} var {var}");
    let (loc, scale) = (Array::scalar(5.0f32), Array::scalar(0.5f32));
    let y = random::normal(&[N], Dtype::Float64, Some(&loc), Some(&scale), Some(&key(4))).unwrap();
    assert_eq!(y.dtype(), Dtype::Float64);
    let v = y.to_vec::<f64>().unwrap();
    let (m, var) = mean_var(&v);
    assert!((m - 5.0).abs() < 0.01 && (var - 0.25).abs() < 0.01, "mean {m} var {var}");
    // About 68.3% within one standard deviation.
    let inside = v.iter().filter(|&&x| (x - 5.0).abs() < 0.5).count() as f64 / N as f64;
    assert!((inside - 0.6827).abs() < 0.005, "{inside}");
}

#[test]
fn randint_covers_its_range_evenly() {
    let x = random::randint(
        &Array::scalar(-5i32),
        &Array::scalar(5i32),
        &[N],
        Dtype::Int32,
        Some(&key(5)),
    )
    .unwrap();
    assert_eq!(x.dtype(), Dtype::Int32);
    let mut counts = [0usize; 10];
    for v in x.to_vec::<i32>().unwrap() {
        assert!((-5..5).contains(&v), "{v}");
        counts[(v + 5) as usize] += 1;
    }
    assert!(counts.iter().all(|&c| (c as f64 - N as f64 / 10.0).abs() < 1000.0), "{counts:?}");
}

#[test]
fn randint_is_exact_far_beyond_float_precision() {
    // Around 2^40 a float32 draw cannot tell these integers apart.
    let base = 1i64 << 40;
    let lo = Array::scalar(base);
    let hi = Array::scalar(base + 3);
    let v = random::randint(&lo, &hi, &[1000], Dtype::Int64, Some(&key(6)))
        .unwrap()
        .to_vec::<i64>()
        .unwrap();
    for d in 0..3 {
        let c = v.iter().filter(|&&x| x == base + d).count();
        assert!(c > 250, "{d}: {c}");
    }
    assert!(v.iter().all(|&x| (base..base + 3).contains(&x)));
    // The full int64 range spans both signs; an empty interval yields `low`.
    let full = random::randint(
        &Array::scalar(i64::MIN),
        &Array::scalar(i64::MAX),
        &[1000],
        Dtype::Int64,
        Some(&key(7)),
    )
    .unwrap()
    .to_vec::<i64>()
    .unwrap();
    assert!(full.iter().any(|&x| x < 0) && full.iter().any(|&x| x > 0));
    let empty = random::randint(
        &Array::scalar(4i32),
        &Array::scalar(2i32),
        &[3],
        Dtype::Uint8,
        Some(&key(8)),
    )
    .unwrap();
    assert_eq!(empty.to_vec::<u8>().unwrap(), vec![4, 4, 4]);
    // Per-element bounds broadcast.
    let lo = Array::from_slice(&[0i32, 100], &[2]).unwrap();
    let hi = Array::from_slice(&[2i32, 102], &[2]).unwrap();
    let b = random::randint(&lo, &hi, &[500, 2], Dtype::Int16, Some(&key(9)))
        .unwrap()
        .to_vec::<i16>()
        .unwrap();
    assert!(b.chunks(2).all(|r| (0..2).contains(&r[0]) && (100..102).contains(&r[1])));
}

#[test]
fn bernoulli_frequency_follows_p() {
    let p = Array::scalar(0.3f32);
    let x = random::bernoulli(&p, Some(&[N]), Some(&key(10))).unwrap();
    assert_eq!(x.dtype(), Dtype::Bool);
    let freq = x.to_vec::<f64>().unwrap().iter().sum::<f64>() / N as f64;
    assert!((freq - 0.3).abs() < 0.005, "{freq}");
    let edges = Array::from_slice(&[0.0f32, 1.0], &[2]).unwrap();
    let e = random::bernoulli(&edges, Some(&[1000, 2]), Some(&key(11)))
        .unwrap()
        .to_vec::<bool>()
        .unwrap();
    assert!(e.chunks(2).all(|r| !r[0] && r[1]));
}

#[test]
fn truncated_normal_stays_in_bounds() {
    let (lo, hi) = (Array::scalar(-0.5f32), Array::scalar(2.0f32));
    let v = random::truncated_normal(&lo, &hi, Some(&[N]), Dtype::Float32, Some(&key(12)))
        .unwrap()
        .to_vec::<f64>()
        .unwrap();
    assert!(v.iter().all(|&x| (-0.5..=2.0).contains(&x)));
    // Mean of N(0,1) truncated to [a, b]: (phi(a) - phi(b)) / (Phi(b) - Phi(a))
    // = (0.35207 - 0.05399) / (0.97725 - 0.30854) = 0.4458.
    let (m, _) = mean_var(&v);
    assert!((m - 0.4458).abs() < 0.005, "{m}");
}

#[test]
fn categorical_frequencies_follow_softmax() {
    let probs = [0.1f32, 0.2, 0.3, 0.4];
    let logits = Array::from_slice(&probs.map(f32::ln), &[1, 4]).unwrap();
    let s = random::categorical(&logits, -1, Some(N), Some(&key(13))).unwrap();
    assert_eq!(s.shape(), &[1, N]);
    assert_eq!(s.dtype(), Dtype::Uint32);
    let mut counts = [0usize; 4];
    s.to_vec::<u32>().unwrap().iter().for_each(|&c| counts[c as usize] += 1);
    for (c, p) in counts.iter().zip(probs) {
        let f = *c as f64 / N as f64;
        assert!((f - p as f64).abs() < 0.005, "{counts:?}");
    }
    // A category of -inf logit is never drawn.
    let masked = Array::from_slice(&[0.0f32, f32::NEG_INFINITY, 0.0], &[3]).unwrap();
    let m = random::categorical(&masked, 0, Some(1000), Some(&key(14)))
        .unwrap()
        .to_vec::<u32>()
        .unwrap();
    assert!(m.iter().all(|&c| c != 1) && m.contains(&0) && m.contains(&2));
}

#[test]
fn permutations_are_permutations() {
    let n = 100_000;
    let mut p = random::permutation(n, Some(&key(15))).unwrap().to_vec::<u32>().unwrap();
    assert_ne!(p[..10], (0..10).collect::<Vec<u32>>()[..]);
    p.sort_unstable();
    assert!(p.iter().enumerate().all(|(i, &v)| v == i as u32));
    // Rows of a permuted matrix (axis 0) keep their contents, in a new order.
    let x = Array::from_slice(&(0..60).map(|v| v as f32).collect::<Vec<_>>(), &[20, 3]).unwrap();
    let y = random::permutation_of(&x, 0, Some(&key(16))).unwrap().to_vec::<f32>().unwrap();
    let mut firsts: Vec<u32> = y
        .chunks(3)
        .map(|r| {
            assert!(r[1] == r[0] + 1.0 && r[2] == r[0] + 2.0);
            r[0] as u32 / 3
        })
        .collect();
    assert_ne!(firsts, (0..20).collect::<Vec<u32>>());
    firsts.sort_unstable();
    assert_eq!(firsts, (0..20).collect::<Vec<u32>>());
}

#[test]
fn keys_split_deterministically() {
    let k = key(17);
    let a =
        random::uniform(&Array::scalar(0f32), &Array::scalar(1f32), &[4], Dtype::Float32, Some(&k))
            .unwrap();
    let b =
        random::uniform(&Array::scalar(0f32), &Array::scalar(1f32), &[4], Dtype::Float32, Some(&k))
            .unwrap();
    assert_eq!(a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    let (k1, k2) = random::split_pair(&k).unwrap();
    let both = random::split(&k, 2).unwrap().to_vec::<u32>().unwrap();
    assert_eq!(k1.to_vec::<u32>().unwrap(), both[..2].to_vec());
    assert_eq!(k2.to_vec::<u32>().unwrap(), both[2..].to_vec());
    assert_ne!(both[..2], both[2..]);
}

/// The only test that draws without a key: tests run in parallel and share the global key.
#[test]
fn global_key_is_split_per_call() {
    let cases = fixture("random");
    let want = expected(&cases["global_seed_42"]);
    random::seed(42);
    let unit = || {
        random::uniform(&Array::scalar(0f32), &Array::scalar(1f32), &[3], Dtype::Float32, None)
            .unwrap()
    };
    let (first, second) = (unit(), unit());
    let mut both = first.to_vec::<f32>().unwrap();
    both.extend(second.to_vec::<f32>().unwrap());
    let want32: Vec<f32> = want.data.iter().map(|&v| v as f32).collect();
    assert_eq!(both, want32);

    // Draws from many threads hand out exactly the keys of the sequential order.
    let draw = || random::bits(&[1], 4, None).unwrap().item::<u32>().unwrap();
    random::seed(3);
    let mut serial: Vec<u32> = (0..16).map(|_| draw()).collect();
    random::seed(3);
    let mut parallel: Vec<u32> = std::thread::scope(|s| {
        (0..16)
            .map(|_| s.spawn(draw))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect()
    });
    serial.sort_unstable();
    parallel.sort_unstable();
    assert_eq!(serial, parallel);
}

#[test]
fn bad_arguments_are_errors_naming_the_op() {
    let err = |r: Result<Array>| r.unwrap_err().to_string();
    let bad_key = Array::from_slice(&[1i32, 2], &[2]).unwrap();
    let msg = err(random::bits(&[2], 4, Some(&bad_key)));
    assert!(msg.starts_with("[bits] a key must be a uint32"), "{msg}");
    assert!(err(random::split(&key(0).astype(Dtype::Uint64).unwrap(), 2)).starts_with("[bits]"));
    assert!(err(random::bits(&[2], 3, Some(&key(0)))).contains("bit width"));
    assert!(err(random::split(&key(0), usize::MAX)).contains("too large"));
    let (z, o) = (Array::scalar(0f32), Array::scalar(1f32));
    assert!(
        err(random::uniform(&z, &o, &[2], Dtype::Int32, Some(&key(0)))).starts_with("[uniform]")
    );
    assert!(
        err(random::uniform(&z, &o, &[2], Dtype::Float64, Some(&key(0)))).starts_with("[uniform]")
    );
    let row = Array::from_slice(&[0f32; 3], &[3]).unwrap();
    assert!(err(random::uniform(&row, &o, &[2], Dtype::Float32, Some(&key(0)))).contains("shape"));
    assert!(
        err(random::normal(&[2], Dtype::Int8, None, None, Some(&key(0)))).starts_with("[normal]")
    );
    assert!(
        err(random::randint(&z, &o, &[2], Dtype::Float16, Some(&key(0)))).starts_with("[randint]")
    );
    assert!(err(random::bernoulli(&Array::scalar(1i32), None, Some(&key(0))))
        .starts_with("[bernoulli]"));
    assert!(err(random::bernoulli(&row, Some(&[2]), Some(&key(0)))).starts_with("[bernoulli]"));
    assert!(err(random::categorical(&row, 1, None, Some(&key(0)))).starts_with("[categorical]"));
    let grid = Array::from_slice(&[0f32; 6], &[2, 3]).unwrap();
    assert!(
        err(random::categorical_shape(&grid, -1, &[3], Some(&key(0)))).starts_with("[categorical]")
    );
    assert!(err(random::permutation_of(&Array::scalar(1f32), 0, Some(&key(0))))
        .starts_with("[permutation]"));
}
