//! Text generation, as mlx-lm's `stream_generate`: the prompt is run in one batched pass
//! (prefill) into a KV cache reserved for the whole generation, then one token at a time;
//! each step applies the repetition penalty, samples, watches for stop strings and yields the
//! text that became complete with running speed figures. The cache is fresh, or the caller's
//! (for multi-turn chat: the prompt then holds only the tokens beyond the cached ones).

use crate::cache::KvCache;
use crate::error::{Error, Result};
use crate::llama::Llama;
use crate::penalty::RepetitionPenalty;
use crate::sample::{Sampler, SamplerConfig};
use crate::stop::StopStrings;
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
    /// Penalise recently seen tokens (mlx-lm's `repetition_penalty`).
    pub repetition_penalty: Option<RepetitionPenalty>,
    /// Stop where the text contains one of these; it is not emitted.
    pub stop: Vec<String>,
    /// Bound the KV cache to this many positions (a rotating cache). Ignored when the caller
    /// passes its own cache.
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
            repetition_penalty: None,
            stop: Vec::new(),
            max_kv_size: None,
            ignore_eos: false,
        }
    }
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-sequence token or a stop string.
    Stop,
    /// `max_tokens` (or the context) reached.
    Length,
}

/// One generated token with the text it completed and the figures so far.
#[derive(Clone, Debug)]
pub struct Response {
    /// Text made complete by this token (may be empty; never a partial UTF-8 character nor
    /// the start of a stop string).
    pub text: String,
    pub token: u32,
    /// Tokens prefilled (beyond those already in a caller's cache).
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

/// The KV caches of a generation: its own, or borrowed from the caller to outlive it.
enum Caches<'a> {
    Owned(Vec<KvCache>),
    Borrowed(&'a mut [KvCache]),
}

impl Caches<'_> {
    fn layers(&mut self) -> &mut [KvCache] {
        match self {
            Caches::Owned(c) => c,
            Caches::Borrowed(c) => c,
        }
    }

    /// Positions seen (every layer's cache advances together).
    fn offset(&self) -> usize {
        let first = match self {
            Caches::Owned(c) => c.first(),
            Caches::Borrowed(c) => c.first(),
        };
        first.map_or(0, KvCache::offset)
    }
}

/// A generation in progress: an iterator of [`Response`]s.
pub struct Generation<'a> {
    model: &'a Llama,
    decoder: StreamDecoder<'a>,
    /// Tokens that end generation (none when ignoring EOS).
    eos: &'a [u32],
    cache: Caches<'a>,
    sampler: Sampler,
    penalty: Option<RepetitionPenalty>,
    stops: StopStrings,
    /// The prompt, then each generated token.
    tokens: Vec<u32>,
    prompt_len: usize,
    max_tokens: usize,
    generated: usize,
    start: Instant,
    first_token: Option<Instant>,
    done: bool,
}

/// Rejects a `max_kv_size` too small to keep the first positions and a few recent ones.
pub fn check_max_kv_size(max_kv_size: Option<usize>) -> Result<()> {
    if max_kv_size.is_some_and(|m| m < MIN_KV_SIZE) {
        return Err(Error::Generate(format!("max_kv_size must be at least {MIN_KV_SIZE}")));
    }
    Ok(())
}

/// Starts generating after `prompt` (token ids) with a fresh cache. Errors for an empty
/// prompt or one that leaves no room in the model's context.
pub fn stream_generate<'a>(
    model: &'a Llama,
    tokenizer: &'a Tokenizer,
    prompt: &[u32],
    config: &GenerateConfig,
) -> Result<Generation<'a>> {
    check_max_kv_size(config.max_kv_size)?;
    let cache = Caches::Owned(model.make_cache(config.max_kv_size));
    start(model, tokenizer, prompt, cache, config)
}

/// Starts generating with the caller's `cache` (one per layer), which already holds the
/// tokens before `prompt` and keeps this generation's tokens for the next (all but the last
/// generated token, which is never run through the model). As mlx-lm's `prompt_cache`.
pub fn stream_generate_with_cache<'a>(
    model: &'a Llama,
    tokenizer: &'a Tokenizer,
    prompt: &[u32],
    cache: &'a mut [KvCache],
    config: &GenerateConfig,
) -> Result<Generation<'a>> {
    start(model, tokenizer, prompt, Caches::Borrowed(cache), config)
}

fn start<'a>(
    model: &'a Llama,
    tokenizer: &'a Tokenizer,
    prompt: &[u32],
    mut cache: Caches<'a>,
    config: &GenerateConfig,
) -> Result<Generation<'a>> {
    let context = model.config().context_length;
    if prompt.is_empty() {
        return Err(Error::Generate("the prompt has no tokens".into()));
    }
    if let Some(p) = &config.repetition_penalty {
        p.validate()?;
    }
    let cached = cache.offset();
    let total = cached + prompt.len();
    if total >= context {
        let held = match cached {
            0 => String::new(),
            n => format!(" ({n} of them already in the cache)"),
        };
        return Err(Error::Generate(format!(
            "the prompt has {total} tokens{held}; the model's context is {context} \
             (context_length), which leaves no room to generate"
        )));
    }
    let max_tokens = config.max_tokens.min(context - total);
    let reserve = total + max_tokens;
    cache
        .layers()
        .iter_mut()
        .for_each(|c| c.reserve(config.max_kv_size.map_or(reserve, |m| m.min(reserve))));
    Ok(Generation {
        model,
        decoder: tokenizer.stream(),
        eos: if config.ignore_eos { &[] } else { tokenizer.eos_ids() },
        cache,
        sampler: Sampler::new(config.sampler.clone()),
        penalty: config.repetition_penalty,
        stops: StopStrings::new(&config.stop),
        tokens: prompt.to_vec(),
        prompt_len: prompt.len(),
        max_tokens,
        generated: 0,
        start: Instant::now(),
        first_token: None,
        done: max_tokens == 0,
    })
}

impl Generation<'_> {
    /// Runs the model on the prompt (first call) or the last token, and samples the next.
    fn step(&mut self) -> Result<u32> {
        let input: Vec<i32> = match self.generated {
            0 => self.tokens.iter().map(|&t| t as i32).collect(),
            _ => self.tokens.last().map(|&t| t as i32).into_iter().collect(),
        };
        let ids = Array::from_slice(&input, &[1, input.len()])?;
        let logits = self.model.forward_last(&ids, self.cache.layers())?;
        let mut logits = logits.astype(Dtype::Float32)?.to_vec::<f32>()?;
        if let Some(p) = &self.penalty {
            p.apply(&self.tokens, &mut logits);
        }
        Ok(self.sampler.sample(&logits))
    }

    /// Positions the cache holds now (the next token's position).
    pub fn cache_offset(&self) -> usize {
        self.cache.offset()
    }

    fn respond(&mut self) -> Result<Response> {
        let token = self.step()?;
        let now = Instant::now();
        let first = *self.first_token.get_or_insert(now);
        self.generated += 1;
        self.tokens.push(token);
        let eos = self.eos.contains(&token);
        let mut piece = if eos { String::new() } else { self.decoder.push(token)? };
        let last = eos || self.generated == self.max_tokens;
        if last {
            piece.push_str(&self.decoder.finish()?);
        }
        let checked = self.stops.push(&piece);
        let mut text = checked.text;
        let finish = if eos || checked.stopped {
            Some(Finish::Stop)
        } else if last {
            Some(Finish::Length)
        } else {
            None
        };
        if finish.is_some() {
            text.push_str(&self.stops.finish());
            self.done = true;
        }
        let prefill = (first - self.start).as_secs_f64();
        let decode = (now - first).as_secs_f64();
        Ok(Response {
            text,
            token,
            prompt_tokens: self.prompt_len,
            prompt_tps: self.prompt_len as f64 / prefill.max(f64::MIN_POSITIVE),
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
