//! `ember bench llm`: the speed of a model on a random prompt, as mlx_lm.benchmark. The model
//! is loaded once; each trial prefills the same prompt into a fresh KV cache and generates
//! exactly `--generation-tokens` greedy tokens past any end-of-sequence token, after one
//! untimed warm-up run. One line per trial goes to stderr; the summary (medians with min and
//! max) to stdout.

use crate::args::ModelArgs;
use crate::report;
use clap::{Args, Subcommand};
use ember_core::ops::random;
use ember_core::{Array, Dtype};
use ember_lm::generate::{GenerateConfig, Response};
use ember_lm::{stream_generate, LoadedModel};
use std::num::NonZeroUsize;

type CliResult<T> = Result<T, Box<dyn std::error::Error>>;

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Prompt and generation speed of a language model on a random prompt (as
    /// mlx_lm.benchmark).
    Llm(BenchLlmArgs),
}

#[derive(Args)]
pub struct BenchLlmArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Length of the prompt in tokens.
    #[arg(long, short = 'p', default_value = "128")]
    prompt_tokens: NonZeroUsize,
    /// Tokens to generate per trial.
    #[arg(long, short = 'g', default_value = "128")]
    generation_tokens: NonZeroUsize,
    /// Number of timed trials.
    #[arg(long, short = 'n', default_value = "5")]
    num_trials: NonZeroUsize,
    /// Seed of the random prompt.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn bench(args: BenchArgs) -> CliResult<()> {
    match args.command {
        BenchCommand::Llm(args) => bench_llm(args),
    }
}

fn bench_llm(args: BenchLlmArgs) -> CliResult<()> {
    let (m, load_time) = args.model.load_timed()?;
    let (prompt_len, generation_len) = (args.prompt_tokens.get(), args.generation_tokens.get());
    check_context(&m, prompt_len, generation_len)?;
    let prompt = random_prompt(&m, prompt_len, args.seed)?;
    let config =
        GenerateConfig { max_tokens: generation_len, ignore_eos: true, ..Default::default() };
    // Untimed, as mlx_lm.benchmark's warm-up: the first pass pages in the weights.
    eprintln!("Warm-up run (not counted)");
    run_trial(&m, &prompt, &config)?;
    let trials = args.num_trials.get();
    let mut results = Vec::with_capacity(trials);
    for trial in 1..=trials {
        let r = run_trial(&m, &prompt, &config)?;
        eprintln!(
            "Trial {trial}/{trials}: prompt {} tokens, {:.3} tokens-per-sec; generation {} \
             tokens, {:.3} tokens-per-sec; time to first token {:.3} ms",
            r.prompt_tokens,
            r.prompt_tps,
            r.generation_tokens,
            r.generation_tps,
            r.time_to_first_token * 1e3
        );
        results.push(r);
    }
    let figures = |f: fn(&Response) -> f64| Spread::of(results.iter().map(f).collect());
    println!("{}", report::load(load_time, &m.path));
    println!("Trials: {trials}, prompt {prompt_len} tokens, generation {generation_len} tokens");
    println!("Prompt tokens-per-sec: {}", figures(|r| r.prompt_tps));
    println!("Generation tokens-per-sec: {}", figures(|r| r.generation_tps));
    // In milliseconds: a short prompt on a small model takes well under a second.
    println!("Time to first token (ms): {}", figures(|r| r.time_to_first_token * 1e3));
    println!("{}", report::peak_memory());
    Ok(())
}

/// Rejects a benchmark longer than the model's context: generation would stop short of
/// `--generation-tokens` and the trials would not measure what was asked.
fn check_context(m: &LoadedModel, prompt_len: usize, generation_len: usize) -> CliResult<()> {
    let context = m.model.config().context_length;
    if prompt_len + generation_len > context {
        return Err(format!(
            "--prompt-tokens ({prompt_len}) plus --generation-tokens ({generation_len}) is {}, \
             more than the model's context of {context} tokens (context_length)",
            prompt_len + generation_len
        )
        .into());
    }
    Ok(())
}

/// `len` token ids drawn uniformly from the model's vocabulary with MLX's `randint`, leaving
/// out the BOS and end-of-sequence ids (the special ids the tokenizer names).
fn random_prompt(m: &LoadedModel, len: usize, seed: u64) -> CliResult<Vec<u32>> {
    let vocab = m.model.config().vocab_size;
    let mut special: Vec<u32> =
        m.tokenizer.eos_ids().iter().copied().chain(m.tokenizer.bos_id()).collect();
    special.retain(|&id| (id as usize) < vocab);
    special.sort_unstable();
    special.dedup();
    let ordinary = vocab - special.len();
    if ordinary == 0 {
        return Err("the model's vocabulary has no token besides its special ones".into());
    }
    let draws = random::randint(
        &Array::scalar(0u32),
        &Array::scalar(ordinary as u32),
        &[len],
        Dtype::Uint32,
        Some(&random::key(seed)),
    )?;
    Ok(draws.to_vec::<u32>()?.into_iter().map(|i| skip_special(i, &special)).collect())
}

/// The `index`-th id not in `special` (sorted ascending): each special id at or below the
/// running id pushes it one further.
fn skip_special(index: u32, special: &[u32]) -> u32 {
    special.iter().fold(index, |id, &s| if id >= s { id + 1 } else { id })
}

/// One trial: a fresh cache, the whole generation, and its final figures.
fn run_trial(m: &LoadedModel, prompt: &[u32], config: &GenerateConfig) -> CliResult<Response> {
    let mut last = None;
    for r in stream_generate(&m.model, &m.tokenizer, prompt, config)? {
        last = Some(r?);
    }
    Ok(last.ok_or("the model generated no token")?)
}

/// Median, min and max of one figure over the trials.
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

impl Spread {
    /// The spread of `values` (not empty: there is at least one trial).
    fn of(mut values: Vec<f64>) -> Spread {
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = (values[(n - 1) / 2] + values[n / 2]) / 2.0;
        Spread { median, min: values[0], max: values[n - 1] }
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "median {:.3} (min {:.3}, max {:.3})", self.median, self.min, self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_special_enumerates_the_ordinary_ids_in_order() {
        let special = [0, 3, 4, 9];
        let ids: Vec<u32> = (0..6).map(|i| skip_special(i, &special)).collect();
        assert_eq!(ids, [1, 2, 5, 6, 7, 8]);
    }

    #[test]
    fn spread_takes_the_middle_of_sorted_values() {
        let odd = Spread::of(vec![5.0, 1.0, 3.0]);
        assert_eq!((odd.median, odd.min, odd.max), (3.0, 1.0, 5.0));
        let even = Spread::of(vec![4.0, 1.0, 2.0, 10.0]);
        assert_eq!((even.median, even.min, even.max), (3.0, 1.0, 10.0));
    }
}
