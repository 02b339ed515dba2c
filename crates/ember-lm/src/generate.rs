//! Text generation, as mlx-lm's `stream_generate`: the prompt is run in one batched pass
//! (prefill) into a KV cache reserved for the whole generation, then one token at a time;
//! each step yields the text that became complete and running speed figures.

use crate::cache::KvCache;
use crate::error::{Error, Result};
use crate::llama::Llama;
use crate::sample::{Sampler, SamplerConfig};
use crate::tokenizer::{StreamDecoder, Tokenizer};
use ember_core::{Array, Dtype};
use std::time::Instant;

/// Smallest `max_kv_size` accepted: the kept first positions plus a few recent ones.
const MIN_KV_SIZE: usize = 8;

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateConfig {
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    /// Bound the KV cache to this many positions (a rotating cache).
    pub max_kv_size: Option<usize>,
    /// Keep going past end-of-sequence tokens (for benchmarks of a fixed length).
    pub ignore_eos: bool,
}

impl Default for GenerateConfig {
    /// 100 greedy tokens, as mlx_lm.generate.
    fn default() -> Self {
        GenerateConfig {
            max_tokens: 100,
            sampler: SamplerConfig::default(),
            max_kv_size: None,
            ignore_eos: false,
        }
    }
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-sequence token.
    Stop,
    /// `max_tokens` (or the context) reached.
    Length,
}

/// One generated token with the text it completed and the figures so far.
#[derive(Clone, Debug)]
pub struct Response {
    /// Text made complete by this token (may be empty; never a partial UTF-8 character).
    pub text: String,
    pub token: u32,
    pub prompt_tokens: usize,
    /// Prompt tokens per second of the prefill (up to the first token).
    pub prompt_tps: f64,
    pub generation_tokens: usize,
    /// Tokens per second of the one-at-a-time steps after the first token.
    pub generation_tps: f64,
    /// Seconds from the start to the first token.
    pub time_to_first_token: f64,
    pub finish: Option<Finish>,
}

/// A generation in progress: an iterator of [`Response`]s.
pub struct Generation<'a> {
    model: &'a Llama,
    decoder: StreamDecoder<'a>,
    /// Tokens that end generation (none when ignoring EOS).
    eos: &'a [u32],
    cache: Vec<KvCache>,
    sampler: Sampler,
    prompt: Vec<u32>,
    max_tokens: usize,
    generated: usize,
    last: Option<u32>,
    start: Instant,
    first_token: Option<Instant>,
    done: bool,
}

/// Starts generating after `prompt` (token ids). Errors for an empty prompt or one that
/// leaves no room in the model's context.
pub fn stream_generate<'a>(
    model: &'a Llama,
    tokenizer: &'a Tokenizer,
    prompt: &[u32],
    config: &GenerateConfig,
) -> Result<Generation<'a>> {
    let context = model.config().context_length;
    if prompt.is_empty() {
        return Err(Error::Generate("the prompt has no tokens".into()));
    }
    if prompt.len() >= context {
        return Err(Error::Generate(format!(
            "the prompt has {} tokens; the model's context is {context} (context_length), \
             which leaves no room to generate",
            prompt.len()
        )));
    }
    if config.max_kv_size.is_some_and(|m| m < MIN_KV_SIZE) {
        return Err(Error::Generate(format!("max_kv_size must be at least {MIN_KV_SIZE}")));
    }
    let max_tokens = config.max_tokens.min(context - prompt.len());
    let mut cache = model.make_cache(config.max_kv_size);
    let total = prompt.len() + max_tokens;
    cache.iter_mut().for_each(|c| c.reserve(config.max_kv_size.map_or(total, |m| m.min(total))));
    Ok(Generation {
        model,
        decoder: tokenizer.stream(),
        eos: if config.ignore_eos { &[] } else { tokenizer.eos_ids() },
        cache,
        sampler: Sampler::new(config.sampler.clone()),
        prompt: prompt.to_vec(),
        max_tokens,
        generated: 0,
        last: None,
        start: Instant::now(),
        first_token: None,
        done: max_tokens == 0,
    })
}

impl Generation<'_> {
    /// Runs the model on the prompt (first call) or the last token, and samples the next.
    fn step(&mut self) -> Result<u32> {
        let input: Vec<i32> = match self.last {
            None => self.prompt.iter().map(|&t| t as i32).collect(),
            Some(t) => vec![t as i32],
        };
        let ids = Array::from_slice(&input, &[1, input.len()])?;
        let (model, cache) = (self.model, &mut self.cache);
        // Evaluate on a worker of the thread pool: the parallel kernels of the step then fork
        // with cheap joins instead of each entering the pool from outside.
        let logits = rayon::scope(|_| -> Result<Vec<f32>> {
            let logits = model.forward_last(&ids, cache)?;
            Ok(logits.astype(Dtype::Float32)?.to_vec::<f32>()?)
        })?;
        Ok(self.sampler.sample(&logits))
    }

    fn respond(&mut self) -> Result<Response> {
        let token = self.step()?;
        let now = Instant::now();
        let first = *self.first_token.get_or_insert(now);
        self.generated += 1;
        let mut finish = None;
        let mut text = String::new();
        if self.eos.contains(&token) {
            finish = Some(Finish::Stop);
        } else {
            text = self.decoder.push(token)?;
            if self.generated == self.max_tokens {
                finish = Some(Finish::Length);
            }
        }
        if finish.is_some() {
            text.push_str(&self.decoder.finish()?);
            self.done = true;
        }
        self.last = Some(token);
        let prefill = (first - self.start).as_secs_f64();
        let decode = (now - first).as_secs_f64();
        Ok(Response {
            text,
            token,
            prompt_tokens: self.prompt.len(),
            prompt_tps: self.prompt.len() as f64 / prefill.max(f64::MIN_POSITIVE),
            generation_tokens: self.generated,
            generation_tps: if decode > 0.0 { (self.generated - 1) as f64 / decode } else { 0.0 },
            time_to_first_token: prefill,
            finish,
        })
    }
}

impl Iterator for Generation<'_> {
    type Item = Result<Response>;

    fn next(&mut self) -> Option<Result<Response>> {
        if self.done {
            return None;
        }
        let r = self.respond();
        if r.is_err() {
            self.done = true;
        }
        Some(r)
    }
}
