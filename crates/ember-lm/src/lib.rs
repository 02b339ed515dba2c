//! ember-lm: language-model inference on ember, in the manner of mlx-lm. The supported
//! architectures ([`arch`]: Llama, Qwen2) share one decoder ([`llama`]); then loading from
//! GGUF ([`weights`]) or a Hugging Face directory ([`hf`], [`hf_weights`]) with [`load`], the
//! tokenizer and streaming detokenisation ([`tokenizer`]),
//! chat templates ([`chat`]), KV caches ([`cache`]), sampling ([`sample`]), the repetition
//! penalty ([`penalty`]), stop strings ([`stop`]), the generation loop ([`generate`]) and
//! multi-turn chat over one cache ([`conversation`]), and conversion to MLX's layout with
//! optional affine quantization ([`convert`]).
//!
//! ```no_run
//! use ember_lm::{generate::GenerateConfig, load, stream_generate};
//! let m = load(std::path::Path::new("model.gguf")).unwrap();
//! let prompt = m.prompt_tokens("Hello", None, true).unwrap();
//! let config = GenerateConfig { max_tokens: 32, ..Default::default() };
//! for r in stream_generate(&m.model, &m.tokenizer, &prompt, &config).unwrap() {
//!     print!("{}", r.unwrap().text);
//! }
//! ```

pub mod arch;
pub mod cache;
pub mod chat;
pub mod conversation;
pub mod convert;
pub mod default_model;
pub mod error;
pub mod generate;
pub mod hf;
pub mod hf_weights;
pub mod llama;
mod packed_cache;
pub mod penalty;
pub mod sample;
pub mod stop;
pub mod tokenizer;
mod tokenizer_bpe;
mod tokenizer_spm;
pub mod weights;

pub use arch::Arch;
pub use chat::{ChatTemplate, Message};
pub use error::{Error, Result};
pub use generate::{stream_generate, GenerateConfig, Response};
pub use llama::{Llama, LlamaConfig};
pub use tokenizer::Tokenizer;

use ember_core::io::gguf::GgufFile;
use ember_core::{ops, Array, Dtype};
use std::path::{Path, PathBuf};

/// A model ready to generate: the network, its tokenizer and its chat template.
pub struct LoadedModel {
    pub model: Llama,
    pub tokenizer: Tokenizer,
    pub chat_template: Option<ChatTemplate>,
    pub path: PathBuf,
}

/// Wavelengths of Llama 3's scaled RoPE from a GGUF `rope_freqs.weight` (per-pair factors
/// dividing the frequencies): `base^(2i/dims) * factor_i`.
fn rope_wavelengths(file: &GgufFile, config: &LlamaConfig) -> ember_core::Result<Option<Array>> {
    if file.tensor_data("rope_freqs.weight").is_err() {
        return Ok(None);
    }
    let factors = file.dequantize("rope_freqs.weight")?;
    let half = config.rope_dims / 2;
    let exponents = ops::arange(0.0, half as f64, 1.0, Dtype::Float32)?;
    let step = Array::scalar(2.0f32 / config.rope_dims as f32);
    let base = ops::full(&[half], &Array::scalar(config.rope_theta), Dtype::Float32)?;
    let wavelengths = ops::power(&base, &ops::multiply(&exponents, &step)?)?;
    Ok(Some(ops::multiply(&wavelengths, &ops::reshape_to(&factors, &[half])?)?))
}

/// Loads a model: a Hugging Face directory ([`hf::load`]) or a GGUF file, whose quantized
/// blocks are computed on directly.
pub fn load(path: &Path) -> Result<LoadedModel> {
    let model = if path.is_dir() { hf::load(path)? } else { load_gguf(path)? };
    // Loading freed more than the model keeps (parsed metadata, the tokenizer's build,
    // packing buffers): give it back, or it counts in the process's memory from now on.
    ember_core::buffer::clear_cache();
    Ok(model)
}

fn load_gguf(path: &Path) -> Result<LoadedModel> {
    let file = GgufFile::open(path)?;
    let config = LlamaConfig::from_gguf(&file, path)?;
    let freqs = rope_wavelengths(&file, &config)?;
    if freqs.as_ref().is_some_and(|f| f.size() != config.rope_dims / 2) {
        return Err(Error::model(
            path,
            "tensor `rope_freqs.weight` does not have rope dims / 2 values",
        ));
    }
    let tokenizer = Tokenizer::from_gguf(&file, path)?;
    let chat_template = match file.get("tokenizer.chat_template") {
        None => None,
        Some(v) => {
            let src = v.as_str().ok_or_else(|| {
                Error::model(path, "metadata `tokenizer.chat_template` is not a string")
            })?;
            Some(ChatTemplate::new(src)?)
        }
    };
    // Building the tokenizer freed about twice what it keeps: return that before the weights
    // arrive, so that it does not add to the peak.
    ember_core::buffer::clear_cache();
    let model = Llama::new(config, &weights::GgufWeights::new(&file, path)?, freqs)?;
    file.release_resident_pages();
    Ok(LoadedModel { model, tokenizer, chat_template, path: path.to_path_buf() })
}

impl LoadedModel {
    /// The token ids of a user prompt: through the chat template (with an optional system
    /// message) when `use_template` and the model has one, else the raw text.
    pub fn prompt_tokens(
        &self,
        prompt: &str,
        system: Option<&str>,
        use_template: bool,
    ) -> Result<Vec<u32>> {
        if !use_template || self.chat_template.is_none() {
            return self.tokenizer.encode(prompt, true);
        }
        let mut messages: Vec<Message> =
            system.map(|s| Message::new("system", s)).into_iter().collect();
        messages.push(Message::new("user", prompt));
        self.template_tokens(&messages, true)
    }

    /// The token ids of a conversation through the chat template; `add_generation_prompt`
    /// appends the header of the assistant's turn. Errors when the model has no template.
    pub fn template_tokens(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>> {
        let template = self.chat_template.as_ref().ok_or_else(|| {
            Error::model(&self.path, "the model has no chat template (tokenizer.chat_template)")
        })?;
        let token =
            |id: Option<u32>| id.and_then(|i| self.tokenizer.token_text(i)).unwrap_or_default();
        let eos = token(self.tokenizer.eos_ids().first().copied());
        let text = template.apply(
            messages,
            add_generation_prompt,
            &token(self.tokenizer.bos_id()),
            &eos,
        )?;
        self.tokenizer.encode(&text, true)
    }
}
