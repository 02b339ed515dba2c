//! Choosing the next token from logits, as mlx-lm's `make_sampler`: greedy at temperature 0,
//! otherwise top-p, min-p and top-k filters on the log-probabilities, then a draw from
//! `softmax(logprobs / temp)` with a seedable generator.

/// Sampling settings (mlx_lm.generate's flags).
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// 0 means greedy (argmax).
    pub temp: f32,
    /// Keep the most likely tokens whose probabilities add up to `top_p` (0 or 1: off).
    pub top_p: f32,
    /// Keep tokens with probability at least `min_p` times the top one's (0: off).
    pub min_p: f32,
    /// Keep the `top_k` most likely tokens (0: off).
    pub top_k: usize,
    /// Seed of the generator; `None` seeds from the clock.
    pub seed: Option<u64>,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig { temp: 0.0, top_p: 1.0, min_p: 0.0, top_k: 0, seed: None }
    }
}

/// SplitMix64: a small, fast generator; plenty for drawing tokens.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Draws tokens according to a [`SamplerConfig`].
pub struct Sampler {
    config: SamplerConfig,
    rng: SplitMix64,
}

/// The index of the largest value (the first one on ties).
pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

impl Sampler {
    pub fn new(config: SamplerConfig) -> Sampler {
        let seed = config.seed.unwrap_or_else(|| {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            t.map_or(0, |d| d.as_nanos() as u64)
        });
        Sampler { config, rng: SplitMix64(seed) }
    }

    /// The next token for a row of logits.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let c = &self.config;
        if c.temp <= 0.0 || logits.is_empty() {
            return argmax(logits) as u32;
        }
        let logprobs = log_softmax(logits);
        let mut keep = vec![true; logits.len()];
        if c.top_p > 0.0 && c.top_p < 1.0 {
            top_p_filter(&logprobs, c.top_p, &mut keep);
        }
        if c.min_p > 0.0 {
            let floor = logprobs[argmax(&logprobs)] + c.min_p.ln();
            keep.iter_mut().zip(&logprobs).for_each(|(k, &l)| *k &= l >= floor);
        }
        if c.top_k > 0 && c.top_k < logits.len() {
            let mut order: Vec<usize> = (0..logits.len()).collect();
            order.select_nth_unstable_by(c.top_k - 1, |&a, &b| logprobs[b].total_cmp(&logprobs[a]));
            order[c.top_k..].iter().for_each(|&i| keep[i] = false);
        }
        self.draw(&logprobs, &keep)
    }

    /// A draw from `softmax(logprobs / temp)` over the kept tokens.
    fn draw(&mut self, logprobs: &[f32], keep: &[bool]) -> u32 {
        let inv_t = 1.0 / self.config.temp as f64;
        let top =
            logprobs.iter().zip(keep).filter(|(_, &k)| k).map(|(&l, _)| l).fold(f32::MIN, f32::max);
        let weight =
            |i: usize| if keep[i] { ((logprobs[i] - top) as f64 * inv_t).exp() } else { 0.0 };
        let total: f64 = (0..logprobs.len()).map(weight).sum();
        let mut target = self.rng.next_f64() * total;
        let mut last = argmax(logprobs);
        for i in 0..logprobs.len() {
            let w = weight(i);
            if w > 0.0 {
                last = i;
                if target < w {
                    return i as u32;
                }
                target -= w;
            }
        }
        last as u32
    }
}

fn log_softmax(x: &[f32]) -> Vec<f32> {
    let max = x.iter().copied().fold(f32::MIN, f32::max);
    let lse = max + x.iter().map(|&v| ((v - max) as f64).exp()).sum::<f64>().ln() as f32;
    x.iter().map(|&v| v - lse).collect()
}

/// Keeps the smallest set of most likely tokens whose probability reaches `p` (the token
/// that crosses `p` is kept, as in mlx-lm).
fn top_p_filter(logprobs: &[f32], p: f32, keep: &mut [bool]) {
    let mut order: Vec<usize> = (0..logprobs.len()).collect();
    order.sort_unstable_by(|&a, &b| logprobs[b].total_cmp(&logprobs[a]));
    let mut cumulative = 0f64;
    let mut cut = order.len();
    for (rank, &i) in order.iter().enumerate() {
        cumulative += (logprobs[i] as f64).exp();
        if cumulative >= p as f64 {
            cut = rank + 1;
            break;
        }
    }
    order[cut..].iter().for_each(|&i| keep[i] = false);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(temp: f32, top_p: f32, min_p: f32, top_k: usize, seed: u64) -> Sampler {
        Sampler::new(SamplerConfig { temp, top_p, min_p, top_k, seed: Some(seed) })
    }

    /// Counts of each token over `n` draws.
    fn histogram(s: &mut Sampler, logits: &[f32], n: usize) -> Vec<usize> {
        let mut h = vec![0; logits.len()];
        (0..n).for_each(|_| h[s.sample(logits) as usize] += 1);
        h
    }

    #[test]
    fn temperature_zero_is_argmax_with_first_on_ties() {
        let mut s = sampler(0.0, 0.5, 0.3, 2, 1);
        assert_eq!(s.sample(&[0.1, 3.0, -1.0, 3.0]), 1);
    }

    #[test]
    fn same_seed_same_tokens_and_frequencies_follow_softmax() {
        let logits = [0.0f32, 1.0, 2.0];
        let a = histogram(&mut sampler(1.0, 1.0, 0.0, 0, 42), &logits, 20000);
        let b = histogram(&mut sampler(1.0, 1.0, 0.0, 0, 42), &logits, 20000);
        assert_eq!(a, b);
        let z: f64 = logits.iter().map(|&l| (l as f64).exp()).sum();
        for (count, &l) in a.iter().zip(&logits) {
            let expected = (l as f64).exp() / z;
            assert!((*count as f64 / 20000.0 - expected).abs() < 0.015, "{a:?}");
        }
    }

    #[test]
    fn filters_exclude_what_they_should() {
        // probabilities ~ [0.64, 0.24, 0.09, 0.03]
        let logits = [3.0f32, 2.0, 1.0, 0.0];
        let top_k = histogram(&mut sampler(1.0, 1.0, 0.0, 2, 3), &logits, 4000);
        assert!(top_k[2] == 0 && top_k[3] == 0 && top_k[0] > 0 && top_k[1] > 0, "{top_k:?}");
        // 0.64 < 0.8: the second token crosses p and stays; the rest go.
        let top_p = histogram(&mut sampler(1.0, 0.8, 0.0, 0, 4), &logits, 4000);
        assert!(top_p[2] == 0 && top_p[3] == 0 && top_p[1] > 0, "{top_p:?}");
        // min_p 0.2: tokens below 0.2 * 0.64 (only 0.09 and 0.03) go.
        let min_p = histogram(&mut sampler(1.0, 1.0, 0.2, 0, 5), &logits, 4000);
        assert!(min_p[2] == 0 && min_p[3] == 0 && min_p[1] > 0, "{min_p:?}");
        // A high temperature flattens, a low one sharpens.
        let hot = histogram(&mut sampler(5.0, 1.0, 0.0, 0, 6), &logits, 4000);
        let cold = histogram(&mut sampler(0.2, 1.0, 0.0, 0, 6), &logits, 4000);
        assert!(hot[3] > 500 && cold[0] > 3900, "{hot:?} {cold:?}");
    }
}
