//! Hugging Face model directories, as transformers' `save_pretrained` writes them: the
//! architecture and hyper-parameters from config.json, the weights from safetensors
//! ([`crate::hf_weights`]), the tokenizer from tokenizer.json, the chat template from
//! chat_template.jinja or tokenizer_config.json, and the special tokens from
//! tokenizer_config.json, generation_config.json and config.json.
//!
//! Unlike llama.cpp's converter, transformers keeps Llama's Q and K rows as trained, so every
//! architecture here rotates halves (i, i + d/2) in RoPE.

use crate::arch::Arch;
use crate::chat::ChatTemplate;
use crate::error::{Error, Result};
use crate::hf_weights::{Quantization, SafetensorsWeights};
use crate::llama::{Llama, LlamaConfig};
use crate::tokenizer::Tokenizer;
use crate::LoadedModel;
use ember_core::{Array, Dtype};
use serde_json::{Map, Value};
use std::path::Path;

/// The JSON object in `path`, or `None` when the file does not exist.
pub(crate) fn read_json(path: &Path) -> Result<Option<Map<String, Value>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::model(path, format!("cannot read: {e}"))),
    };
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(Error::model(path, "is not a JSON object")),
        Err(e) => Err(Error::model(path, format!("not valid JSON: {e}"))),
    }
}

/// Typed access to the fields of a JSON object read from `path`; `null` counts as absent.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    path: &'a Path,
}

impl Fields<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn bad(&self, key: &str, what: &str) -> Error {
        let value = self.map.get(key).unwrap_or(&Value::Null);
        Error::model(self.path, format!("field `{key}` is {value}, not {what}"))
    }

    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        self.get(key)
            .map(|v| {
                v.as_u64()
                    .and_then(|v| usize::try_from(v).ok())
                    .ok_or_else(|| self.bad(key, "a count"))
            })
            .transpose()
    }

    fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?.ok_or_else(|| Error::model(self.path, format!("missing `{key}`")))
    }

    fn f64(&self, key: &str, default: f64) -> Result<f64> {
        self.get(key).map_or(Ok(default), |v| v.as_f64().ok_or_else(|| self.bad(key, "a number")))
    }

    fn bool(&self, key: &str, default: bool) -> Result<bool> {
        self.get(key)
            .map_or(Ok(default), |v| v.as_bool().ok_or_else(|| self.bad(key, "true or false")))
    }

    fn str(&self, key: &str) -> Result<Option<&str>> {
        self.get(key).map(|v| v.as_str().ok_or_else(|| self.bad(key, "a string"))).transpose()
    }
}

/// The architecture config.json names in `architectures`.
fn architecture(f: &Fields) -> Result<Arch> {
    let class = f.get("architectures").and_then(|v| v.get(0)).and_then(|v| v.as_str());
    let supported = || Arch::ALL.map(Arch::hf_class).join(", ");
    let class = class.ok_or_else(|| {
        Error::model(f.path, format!("missing `architectures` (supported: {})", supported()))
    })?;
    Arch::from_hf_class(class).ok_or_else(|| {
        Error::model(
            f.path,
            format!("architecture `{class}` is not supported yet (supported: {})", supported()),
        )
    })
}

/// How config.json scales RoPE.
enum RopeScaling {
    None,
    /// Positions divided by this factor.
    Linear(f64),
    /// Llama 3's per-frequency scaling: factor, low and high frequency factors, original
    /// context length.
    Llama3([f64; 4]),
}

/// RoPE's base and scaling: transformers 5 keeps both in `rope_parameters`, older versions
/// `rope_theta` and `rope_scaling` at the top level.
fn rope(f: &Fields) -> Result<(f64, RopeScaling)> {
    let params = match f.get("rope_parameters") {
        Some(Value::Object(p)) => Some(p),
        Some(_) => return Err(f.bad("rope_parameters", "an object")),
        None => None,
    };
    let theta = match params.and_then(|p| p.get("rope_theta")).filter(|v| !v.is_null()) {
        Some(v) => v
            .as_f64()
            .ok_or_else(|| Error::model(f.path, "`rope_parameters.rope_theta` is not a number"))?,
        None => f.f64("rope_theta", 10000.0)?,
    };
    let (key, scaling) = match (params, f.get("rope_scaling")) {
        (_, Some(Value::Object(s))) => ("rope_scaling", Some(s)),
        (_, Some(_)) => return Err(f.bad("rope_scaling", "an object")),
        (Some(p), None) => ("rope_parameters", Some(p)),
        (None, None) => ("rope_scaling", None),
    };
    let Some(scaling) = scaling else { return Ok((theta, RopeScaling::None)) };
    let positive = |name: &str| {
        scaling.get(name).and_then(|v| v.as_f64()).filter(|&v| v > 0.0).ok_or_else(|| {
            Error::model(f.path, format!("`{key}.{name}` must be a positive number"))
        })
    };
    let kind = scaling.get("rope_type").or_else(|| scaling.get("type")).and_then(|v| v.as_str());
    Ok((
        theta,
        match kind {
            None | Some("default") => RopeScaling::None,
            Some("linear") => RopeScaling::Linear(positive("factor")?),
            Some("llama3") => {
                let p = [
                    positive("factor")?,
                    positive("low_freq_factor")?,
                    positive("high_freq_factor")?,
                    positive("original_max_position_embeddings")?,
                ];
                if p[2] <= p[1] {
                    return Err(Error::model(
                        f.path,
                        format!("`{key}`: high_freq_factor must exceed low_freq_factor"),
                    ));
                }
                RopeScaling::Llama3(p)
            }
            Some(other) => {
                return Err(Error::model(
                    f.path,
                    format!(
                        "`{key}`: RoPE type `{other}` is not supported yet (supported: default, \
                         linear, llama3)"
                    ),
                ))
            }
        },
    ))
}

/// Llama 3's RoPE wavelengths (1 / frequency) for `dims` rotated features, as transformers'
/// `_compute_llama3_parameters`: long wavelengths are stretched by `factor`, short ones kept,
/// and those between interpolated.
fn llama3_wavelengths(theta: f64, dims: usize, [factor, low, high, context]: [f64; 4]) -> Vec<f32> {
    let (low_wavelen, high_wavelen) = (context / low, context / high);
    (0..dims / 2)
        .map(|i| {
            let freq = theta.powf(-((2 * i) as f64) / dims as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            let scaled = if wavelen > low_wavelen {
                freq / factor
            } else if wavelen < high_wavelen {
                freq
            } else {
                let smooth = (context / wavelen - low) / (high - low);
                (1.0 - smooth) * freq / factor + smooth * freq
            };
            (1.0 / scaled) as f32
        })
        .collect()
}

/// The weights' dtype config.json names, if it does.
fn checkpoint_dtype<'f>(f: &'f Fields) -> Result<Option<&'f str>> {
    match f.str("dtype")? {
        Some(d) => Ok(Some(d)),
        None => f.str("torch_dtype"),
    }
}

/// Rejects config.json settings the shared decoder does not implement.
fn check_supported(f: &Fields, arch: Arch) -> Result<()> {
    let unsupported = |what: String| Err(Error::model(f.path, what));
    if let Some(act) = f.str("hidden_act")?.filter(|&a| a != "silu") {
        return unsupported(format!("`hidden_act` `{act}` is not supported (only silu)"));
    }
    // mlx-lm copies its `quantization` to `quantization_config`; alone, the latter is
    // another tool's scheme (GPTQ, AWQ, bitsandbytes...).
    if f.get("quantization_config").is_some() && f.get("quantization").is_none() {
        return unsupported(
            "quantized checkpoints (`quantization_config`) are not supported, only MLX's affine \
             quantization (`quantization`, as `ember convert -q` and mlx-lm write it)"
                .into(),
        );
    }
    if let Some(d) =
        checkpoint_dtype(f)?.filter(|d| !["float32", "float16", "bfloat16"].contains(d))
    {
        return unsupported(format!(
            "dtype `{d}` is not supported (ember runs float32, float16 and bfloat16 weights)"
        ));
    }
    if f.bool("mlp_bias", false)? {
        return unsupported("`mlp_bias` is not supported".into());
    }
    // Llama's `attention_bias` also adds one to the output projection, which ember lacks.
    if arch == Arch::Llama && f.bool("attention_bias", false)? {
        return unsupported("`attention_bias` is not supported for LlamaForCausalLM".into());
    }
    if f.bool("use_sliding_window", false)? {
        return unsupported("`use_sliding_window` is not supported".into());
    }
    Ok(())
}

/// MLX's affine quantization from config.json's `quantization` (`group_size`, `bits`, and
/// `mode` "affine" if given), as mlx-lm writes it.
fn quantization(f: &Fields) -> Result<Option<Quantization>> {
    let Some(q) = f.get("quantization") else { return Ok(None) };
    let q = q.as_object().ok_or_else(|| f.bad("quantization", "an object"))?;
    let fields = Fields { map: q, path: f.path };
    let (group_size, bits) = (fields.usize("group_size")?, fields.usize("bits")?);
    if let Some(mode) = fields.str("mode")?.filter(|&m| m != "affine") {
        return Err(Error::model(f.path, format!("quantization mode `{mode}` is not supported")));
    }
    if let Some(key) = q.keys().find(|k| !["group_size", "bits", "mode"].contains(&k.as_str())) {
        return Err(Error::model(
            f.path,
            format!("per-layer quantization (`quantization.{key}`) is not supported"),
        ));
    }
    if !ember_core::ops::affine::SUPPORTED_BITS.contains(&bits)
        || !ember_core::ops::affine::SUPPORTED_GROUP_SIZES.contains(&group_size)
    {
        return Err(Error::model(
            f.path,
            format!(
                "quantization with group_size {group_size} and bits {bits} is not supported \
                 (group sizes 32, 64, 128; bits 2, 4, 8)"
            ),
        ));
    }
    Ok(Some(Quantization { group_size, bits }))
}

/// What a config.json describes.
pub struct HfConfig {
    pub config: LlamaConfig,
    /// RoPE wavelengths per rotated pair (Llama 3's scaled RoPE), for [`Llama::new`].
    pub rope_freqs: Option<Vec<f32>>,
    /// How the matrices are quantized, for a directory `ember convert -q` or mlx-lm wrote.
    pub quantization: Option<Quantization>,
}

/// The model config a config.json (read from `path`) describes.
pub fn config_from_json(json: &Map<String, Value>, path: &Path) -> Result<HfConfig> {
    let f = Fields { map: json, path };
    let arch = architecture(&f)?;
    check_supported(&f, arch)?;
    let hidden_size = f.usize("hidden_size")?;
    let num_heads = f.usize("num_attention_heads")?;
    let head_dim = match f.opt_usize("head_dim")? {
        Some(d) => d,
        None if num_heads > 0 && hidden_size % num_heads == 0 => hidden_size / num_heads,
        None => {
            return Err(Error::model(
                path,
                format!("{num_heads} heads do not divide `hidden_size` {hidden_size}"),
            ))
        }
    };
    let (rope_theta, scaling) = rope(&f)?;
    let rope_scale = match scaling {
        RopeScaling::Linear(factor) => (1.0 / factor) as f32,
        _ => 1.0,
    };
    let config = LlamaConfig {
        hidden_size,
        num_layers: f.usize("num_hidden_layers")?,
        intermediate_size: f.usize("intermediate_size")?,
        num_heads,
        num_kv_heads: f.opt_usize("num_key_value_heads")?.unwrap_or(num_heads),
        head_dim,
        vocab_size: f.usize("vocab_size")?,
        rms_norm_eps: f.f64("rms_norm_eps", 1e-6)? as f32,
        rope_theta: rope_theta as f32,
        rope_dims: head_dim,
        rope_traditional: false,
        rope_scale,
        context_length: f.usize("max_position_embeddings")?,
        // transformers' default for both classes.
        tie_word_embeddings: f.bool("tie_word_embeddings", false)?,
        attention_bias: arch.attention_bias(),
        kv_cache_dtype: match checkpoint_dtype(&f)? {
            Some("float16" | "bfloat16") => Dtype::Float16,
            _ => Dtype::Float32,
        },
    };
    config.validate(path)?;
    let rope_freqs = match scaling {
        RopeScaling::Llama3(p) => Some(llama3_wavelengths(rope_theta, head_dim, p)),
        _ => None,
    };
    Ok(HfConfig { config, rope_freqs, quantization: quantization(&f)? })
}

/// The id of a special token as tokenizer_config.json writes it: its text, or an object
/// with its text in `content`.
fn token_id(inner: &tokenizers::Tokenizer, value: &Value) -> Option<u32> {
    let text = value.as_str().or_else(|| value.get("content").and_then(|c| c.as_str()))?;
    inner.token_to_id(text)
}

/// Token ids of a `bos_token_id`/`eos_token_id` field: one id or a list of them.
fn ids_field(f: &Fields, key: &str, vocab: usize) -> Result<Vec<u32>> {
    let Some(v) = f.get(key) else { return Ok(vec![]) };
    let items = match v {
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    items
        .into_iter()
        .map(|i| {
            i.as_u64()
                .filter(|&i| (i as usize) < vocab)
                .map(|i| i as u32)
                .ok_or_else(|| f.bad(key, &format!("a token id below {vocab}")))
        })
        .collect()
}

/// The directory's tokenizer (tokenizer.json) with its BOS and EOS ids: the tokens named in
/// tokenizer_config.json first, then the ids of generation_config.json and config.json.
fn tokenizer(
    dir: &Path,
    config: &Fields,
    tok_config: Option<&Fields>,
    gen_config: Option<&Fields>,
) -> Result<Tokenizer> {
    let path = dir.join("tokenizer.json");
    if !path.is_file() {
        return Err(Error::model(&path, "missing: ember reads tokenizers from tokenizer.json"));
    }
    let inner = tokenizers::Tokenizer::from_file(&path)
        .map_err(|e| Error::model(&path, format!("cannot read the tokenizer: {e}")))?;
    let vocab = inner.get_vocab_size(true);
    let named = |key: &str| -> Result<Option<u32>> {
        let Some(f) = tok_config else { return Ok(None) };
        match f.get(key) {
            None => Ok(None),
            Some(v) => token_id(&inner, v).map(Some).ok_or_else(|| {
                Error::model(f.path, format!("`{key}` {v} is not a token of tokenizer.json"))
            }),
        }
    };
    let mut bos = named("bos_token")?;
    let mut eos: Vec<u32> = named("eos_token")?.into_iter().collect();
    for f in gen_config.into_iter().chain([config]) {
        if bos.is_none() {
            bos = ids_field(f, "bos_token_id", vocab)?.first().copied();
        }
        for id in ids_field(f, "eos_token_id", vocab)? {
            if !eos.contains(&id) {
                eos.push(id);
            }
        }
    }
    // Without an explicit `add_bos_token`, BOS is added when the tokenizer's post-processor
    // adds it (Llama 3's template "<|begin_of_text|> $A").
    let add_bos = match tok_config.filter(|f| f.get("add_bos_token").is_some()) {
        Some(f) => f.bool("add_bos_token", false)?,
        None => {
            let empty = inner
                .encode("", true)
                .map_err(|e| Error::model(&path, format!("cannot encode: {e}")))?;
            bos.is_some() && empty.get_ids().first() == bos.as_ref()
        }
    };
    Ok(Tokenizer::new(inner, bos, add_bos, eos))
}

/// The chat template: chat_template.jinja (transformers 5), else tokenizer_config.json's
/// `chat_template` (a string, or a list of named templates of which "default" is used).
fn chat_template(dir: &Path, tok_config: Option<&Fields>) -> Result<Option<ChatTemplate>> {
    let file = dir.join("chat_template.jinja");
    if file.is_file() {
        let src = std::fs::read_to_string(&file)
            .map_err(|e| Error::model(&file, format!("cannot read: {e}")))?;
        return Ok(Some(ChatTemplate::new(&src)?));
    }
    let Some(f) = tok_config else { return Ok(None) };
    let src = match f.get("chat_template") {
        None => return Ok(None),
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Array(list)) => list
            .iter()
            .find(|t| t["name"] == "default")
            .and_then(|t| t["template"].as_str())
            .ok_or_else(|| f.bad("chat_template", "a list holding a \"default\" template"))?,
        Some(_) => return Err(f.bad("chat_template", "a string")),
    };
    Ok(Some(ChatTemplate::new(src)?))
}

/// Loads a Hugging Face model directory (see the module docs for what is read from where).
pub fn load(dir: &Path) -> Result<LoadedModel> {
    let config_path = dir.join("config.json");
    let config_json = read_json(&config_path)?.ok_or_else(|| {
        Error::model(&config_path, "missing: a Hugging Face model directory needs config.json")
    })?;
    let config_fields = Fields { map: &config_json, path: &config_path };
    let HfConfig { config, rope_freqs, quantization } =
        config_from_json(&config_json, &config_path)?;
    let freqs = rope_freqs.map(|f| Array::from_slice(&f, &[f.len()])).transpose()?;
    let model = Llama::new(config, &SafetensorsWeights::open(dir, quantization)?, freqs)?;
    let (tok_path, gen_path) =
        (dir.join("tokenizer_config.json"), dir.join("generation_config.json"));
    let tok_json = read_json(&tok_path)?;
    let gen_json = read_json(&gen_path)?;
    let tok_config = tok_json.as_ref().map(|map| Fields { map, path: &tok_path });
    let gen_config = gen_json.as_ref().map(|map| Fields { map, path: &gen_path });
    let tokenizer = tokenizer(dir, &config_fields, tok_config.as_ref(), gen_config.as_ref())?;
    let chat_template = chat_template(dir, tok_config.as_ref())?;
    Ok(LoadedModel { model, tokenizer, chat_template, path: dir.to_path_buf() })
}
