//! The Llama-style decoder, as mlx-lm's `models/llama.py` and `models/qwen2.py`: a config,
//! grouped-query [`Attention`] with RoPE (and Qwen2's Q/K/V biases), a SwiGLU [`Mlp`],
//! pre-norm [`Block`]s and the [`Llama`] model with tied or separate output embeddings. What
//! differs between the families ([`Arch`]) is data in [`LlamaConfig`].

use crate::arch::Arch;
use crate::cache::KvCache;
use crate::error::{Error, Result};
use crate::weights::WeightSource;
use ember_core::io::gguf::GgufFile;
use ember_core::ops::fast::{scaled_dot_product_attention, AttentionMask};
use ember_core::ops::{self, Slice};
use ember_core::{Array, Dtype};
use ember_nn::{Embed, Module, RmsNorm, Rope};
use std::path::Path;

/// The hyper-parameters of a Llama-family model (any [`Arch`]).
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    pub hidden_size: usize,
    pub num_layers: usize,
    pub intermediate_size: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    /// Features rotated per head (`head_dim` unless the file says otherwise).
    pub rope_dims: usize,
    /// Pairs (2i, 2i+1) are rotated, as llama.cpp's layout of Q and K needs; else (i, i+d/2).
    pub rope_traditional: bool,
    /// Positions are multiplied by this (linear RoPE scaling: 1 / factor).
    pub rope_scale: f32,
    /// Longest sequence the model was trained for.
    pub context_length: usize,
    pub tie_word_embeddings: bool,
    /// The query, key and value projections add a bias (Qwen2).
    pub attention_bias: bool,
    /// What the KV cache keeps keys and values in: float16 (llama.cpp's default) unless the
    /// weights are float32 ones.
    pub kv_cache_dtype: Dtype,
}

/// Reads a required unsigned integer from GGUF metadata.
fn meta_usize(file: &GgufFile, path: &Path, key: &str) -> Result<usize> {
    let v = file.get(key).ok_or_else(|| Error::model(path, format!("missing metadata `{key}`")))?;
    v.as_u64()
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| Error::model(path, format!("metadata `{key}` is {v:?}, not a count")))
}

fn meta_f32(file: &GgufFile, path: &Path, key: &str, default: f32) -> Result<f32> {
    match file.get(key) {
        None => Ok(default),
        Some(v) => v
            .as_f64()
            .map(|v| v as f32)
            .ok_or_else(|| Error::model(path, format!("metadata `{key}` is {v:?}, not a number"))),
    }
}

impl LlamaConfig {
    /// The config of a GGUF file of a supported architecture (`general.architecture`, whose
    /// name prefixes the other keys: `qwen2.block_count`).
    pub fn from_gguf(file: &GgufFile, path: &Path) -> Result<LlamaConfig> {
        let name = file.get("general.architecture").and_then(|v| v.as_str()).unwrap_or("");
        let arch = Arch::from_name(name).ok_or_else(|| {
            Error::model(
                path,
                format!(
                    "general.architecture `{name}` is not supported yet (supported: {})",
                    Arch::supported()
                ),
            )
        })?;
        let key = |k: &str| format!("{}.{k}", arch.name());
        let hidden_size = meta_usize(file, path, &key("embedding_length"))?;
        let num_heads = meta_usize(file, path, &key("attention.head_count"))?;
        let num_kv_heads = match file.get(&key("attention.head_count_kv")) {
            Some(_) => meta_usize(file, path, &key("attention.head_count_kv"))?,
            None => num_heads,
        };
        if num_heads == 0 || hidden_size % num_heads != 0 {
            return Err(Error::model(
                path,
                format!("{} heads do not divide the hidden size {hidden_size}", num_heads),
            ));
        }
        let head_dim = match file.get(&key("attention.key_length")) {
            Some(_) => meta_usize(file, path, &key("attention.key_length"))?,
            None => hidden_size / num_heads,
        };
        let rope_dims = match file.get(&key("rope.dimension_count")) {
            Some(_) => meta_usize(file, path, &key("rope.dimension_count"))?,
            None => head_dim,
        };
        let vocab_size = match file.get(&key("vocab_size")) {
            Some(_) => meta_usize(file, path, &key("vocab_size"))?,
            None => file.tensor_data("token_embd.weight")?.shape[0],
        };
        let rope_scale = match file.get(&key("rope.scaling.type")).and_then(|v| v.as_str()) {
            None | Some("none") => 1.0,
            Some("linear") => 1.0 / meta_f32(file, path, &key("rope.scaling.factor"), 1.0)?,
            Some(other) => {
                return Err(Error::model(
                    path,
                    format!(
                        "metadata `{}`: RoPE scaling `{other}` is not supported",
                        key("rope.scaling.type")
                    ),
                ))
            }
        };
        let config = LlamaConfig {
            hidden_size,
            num_layers: meta_usize(file, path, &key("block_count"))?,
            intermediate_size: meta_usize(file, path, &key("feed_forward_length"))?,
            num_heads,
            num_kv_heads,
            head_dim,
            vocab_size,
            rms_norm_eps: meta_f32(file, path, &key("attention.layer_norm_rms_epsilon"), 1e-5)?,
            rope_theta: meta_f32(file, path, &key("rope.freq_base"), 10000.0)?,
            rope_dims,
            rope_traditional: arch.rope_traditional(),
            rope_scale,
            context_length: meta_usize(file, path, &key("context_length"))?,
            tie_word_embeddings: file.tensor_data("output.weight").is_err(),
            attention_bias: arch.attention_bias(),
            kv_cache_dtype: Dtype::Float16,
        };
        config.validate(path)?;
        Ok(config)
    }

    /// Rejects configs no model can have.
    pub fn validate(&self, origin: &Path) -> Result<()> {
        let c = self;
        let bad = |msg: String| Err(Error::model(origin, msg));
        if c.num_kv_heads == 0 || !c.num_heads.is_multiple_of(c.num_kv_heads) {
            return bad(format!(
                "{} query heads are not a multiple of {} key/value heads",
                c.num_heads, c.num_kv_heads
            ));
        }
        if c.rope_dims == 0 || !c.rope_dims.is_multiple_of(2) || c.rope_dims > c.head_dim {
            return bad(format!(
                "RoPE dimension {} must be even and at most the head size {}",
                c.rope_dims, c.head_dim
            ));
        }
        if c.num_layers == 0 || c.vocab_size == 0 || c.context_length == 0 {
            return bad(format!(
                "layers ({}), vocabulary ({}) and context ({}) must be positive",
                c.num_layers, c.vocab_size, c.context_length
            ));
        }
        Ok(())
    }
}

/// Several projections of one input: one fused matrix whose output is split (one product
/// instead of several), or separate matrices when the weights are not stored so. Biases, when
/// present, are added after the product (concatenated into one for the fused matrix).
enum Projections {
    Fused { layer: Box<dyn Module>, sizes: Vec<usize>, bias: Option<Array> },
    Separate(Vec<(Box<dyn Module>, Option<Array>)>),
}

/// `x + bias`, or `x` without one.
fn add_bias(x: Array, bias: &Option<Array>) -> Result<Array> {
    Ok(match bias {
        Some(b) => ops::add(&x, b)?,
        None => x,
    })
}

impl Projections {
    /// Matrices `{p}.{name}.weight` of output sizes `sizes`, with biases `{p}.{name}.bias`
    /// when `bias`.
    fn load(
        w: &dyn WeightSource,
        p: &str,
        names: &[&str],
        sizes: &[usize],
        bias: bool,
    ) -> Result<Self> {
        let biases = names
            .iter()
            .zip(sizes)
            .filter(|_| bias)
            .map(|(n, &size)| {
                let name = format!("{p}.{n}.bias");
                w.expect_shape(&name, &[size])?;
                w.array(&name)
            })
            .collect::<Result<Vec<_>>>()?;
        let names: Vec<String> = names.iter().map(|n| format!("{p}.{n}.weight")).collect();
        Ok(match w.fused_linear(&names)? {
            Some(layer) => {
                let bias = match biases.len() {
                    0 => None,
                    _ => Some(ops::concatenate(&biases.iter().collect::<Vec<_>>(), 0)?),
                };
                Projections::Fused { layer, sizes: sizes.to_vec(), bias }
            }
            None => {
                let mut biases = biases.into_iter();
                Projections::Separate(
                    names
                        .iter()
                        .map(|n| Ok((w.linear(n)?, biases.next())))
                        .collect::<Result<Vec<_>>>()?,
                )
            }
        })
    }

    /// Each projection of `x`, in order.
    fn forward(&self, x: &Array) -> Result<Vec<Array>> {
        Ok(match self {
            Projections::Fused { layer, sizes, bias } => {
                let at: Vec<isize> = sizes
                    .iter()
                    .scan(0, |end, &s| {
                        *end += s;
                        Some(*end as isize)
                    })
                    .take(sizes.len() - 1)
                    .collect();
                ops::split(&add_bias(layer.forward(x)?, bias)?, at, -1)?
            }
            Projections::Separate(layers) => layers
                .iter()
                .map(|(l, b)| add_bias(l.forward(x)?, b))
                .collect::<Result<Vec<_>>>()?,
        })
    }
}

/// Multi-head attention with grouped key/value heads and RoPE.
pub struct Attention {
    qkv: Projections,
    o_proj: Box<dyn Module>,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    scale: f32,
    rope: Rope,
}

/// (B, L, heads * dim) to (B, heads, L, dim).
fn split_heads(x: &Array, heads: usize, dim: usize) -> Result<Array> {
    let (b, l) = (x.shape()[0], x.shape()[1]);
    Ok(ops::transpose(&ops::reshape_to(x, &[b, l, heads, dim])?, &[0, 2, 1, 3])?)
}

impl Attention {
    fn new(c: &LlamaConfig, w: &dyn WeightSource, p: &str, rope: Rope) -> Result<Attention> {
        let (q, kv) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
        let h = c.hidden_size;
        for (name, shape) in
            [("q_proj", [q, h]), ("k_proj", [kv, h]), ("v_proj", [kv, h]), ("o_proj", [h, q])]
        {
            w.expect_shape(&format!("{p}.{name}.weight"), &shape)?;
        }
        Ok(Attention {
            qkv: Projections::load(
                w,
                p,
                &["q_proj", "k_proj", "v_proj"],
                &[q, kv, kv],
                c.attention_bias,
            )?,
            o_proj: w.linear(&format!("{p}.o_proj.weight"))?,
            num_heads: c.num_heads,
            num_kv_heads: c.num_kv_heads,
            head_dim: c.head_dim,
            scale: (c.head_dim as f32).powf(-0.5),
            rope,
        })
    }

    /// Attends `x` (B, L, hidden) over the cached positions and its own (causally).
    pub fn forward(&self, x: &Array, cache: &mut KvCache) -> Result<Array> {
        let (b, l) = (x.shape()[0], x.shape()[1]);
        let qkv = self.qkv.forward(x)?;
        let q = split_heads(&qkv[0], self.num_heads, self.head_dim)?;
        let k = split_heads(&qkv[1], self.num_kv_heads, self.head_dim)?;
        let v = split_heads(&qkv[2], self.num_kv_heads, self.head_dim)?;
        let offset = cache.offset();
        let q = self.rope.forward(&q, offset)?;
        let k = self.rope.forward(&k, offset)?;
        let (k, v) = cache.update_and_fetch(&k, &v)?;
        let mask = if l > 1 { AttentionMask::Causal } else { AttentionMask::None };
        let o = scaled_dot_product_attention(&q, &k, &v, self.scale, mask)?;
        let o = ops::reshape_to(
            &ops::transpose(&o, &[0, 2, 1, 3])?,
            &[b, l, self.num_heads * self.head_dim],
        )?;
        Ok(self.o_proj.forward(&o)?)
    }
}

/// The SwiGLU feed-forward: `down(silu(gate(x)) * up(x))`.
pub struct Mlp {
    gate_up: Projections,
    down_proj: Box<dyn Module>,
}

impl Mlp {
    fn new(c: &LlamaConfig, w: &dyn WeightSource, p: &str) -> Result<Mlp> {
        let (h, i) = (c.hidden_size, c.intermediate_size);
        for (name, shape) in [("gate_proj", [i, h]), ("up_proj", [i, h]), ("down_proj", [h, i])] {
            w.expect_shape(&format!("{p}.{name}.weight"), &shape)?;
        }
        Ok(Mlp {
            gate_up: Projections::load(w, p, &["gate_proj", "up_proj"], &[i, i], false)?,
            down_proj: w.linear(&format!("{p}.down_proj.weight"))?,
        })
    }

    pub fn forward(&self, x: &Array) -> Result<Array> {
        let gu = self.gate_up.forward(x)?;
        let g = &gu[0];
        let silu = ops::multiply(g, &ops::sigmoid(g)?)?;
        let h = ops::multiply(&silu, &gu[1])?;
        Ok(self.down_proj.forward(&h)?)
    }
}

/// A pre-norm transformer block: `h = x + attn(norm(x)); h + mlp(norm(h))`.
pub struct Block {
    attention: Attention,
    mlp: Mlp,
    input_norm: RmsNorm,
    post_attention_norm: RmsNorm,
}

impl Block {
    pub fn forward(&self, x: &Array, cache: &mut KvCache) -> Result<Array> {
        let h = ops::add(x, &self.attention.forward(&self.input_norm.forward(x)?, cache)?)?;
        Ok(ops::add(&h, &self.mlp.forward(&self.post_attention_norm.forward(&h)?)?)?)
    }
}

/// A Llama-family language model.
pub struct Llama {
    config: LlamaConfig,
    embed_tokens: Box<dyn Embed>,
    layers: Vec<Block>,
    norm: RmsNorm,
    /// `None` when the output projection is the embedding table (tied).
    lm_head: Option<Box<dyn Module>>,
}

impl Llama {
    /// Builds the model from `weights`, checking every tensor's shape against `config`.
    /// `rope_freqs`, when given, holds the wavelengths of scaled RoPE (Llama 3).
    pub fn new(
        config: LlamaConfig,
        weights: &dyn WeightSource,
        rope_freqs: Option<Array>,
    ) -> Result<Llama> {
        let c = &config;
        c.validate(weights.origin())?;
        let norm = |name: &str| -> Result<RmsNorm> {
            weights.expect_shape(name, &[c.hidden_size])?;
            Ok(RmsNorm::new(weights.array(name)?, c.rms_norm_eps))
        };
        let rope = || {
            let r = Rope::new(c.rope_dims, c.rope_traditional, c.rope_theta, c.rope_scale);
            match &rope_freqs {
                Some(f) => r.with_freqs(f.clone()),
                None => r,
            }
        };
        let layers = (0..c.num_layers)
            .map(|i| {
                let p = format!("model.layers.{i}");
                Ok(Block {
                    attention: Attention::new(c, weights, &format!("{p}.self_attn"), rope())?,
                    mlp: Mlp::new(c, weights, &format!("{p}.mlp"))?,
                    input_norm: norm(&format!("{p}.input_layernorm.weight"))?,
                    post_attention_norm: norm(&format!("{p}.post_attention_layernorm.weight"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let embed_shape = [c.vocab_size, c.hidden_size];
        weights.expect_shape("model.embed_tokens.weight", &embed_shape)?;
        let lm_head = if c.tie_word_embeddings {
            None
        } else {
            weights.expect_shape("lm_head.weight", &embed_shape)?;
            Some(weights.linear("lm_head.weight")?)
        };
        Ok(Llama {
            embed_tokens: weights.embedding("model.embed_tokens.weight")?,
            layers,
            norm: norm("model.norm.weight")?,
            lm_head,
            config,
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// One fresh cache per layer.
    pub fn make_cache(&self, max_kv_size: Option<usize>) -> Vec<KvCache> {
        let dtype = self.config.kv_cache_dtype;
        (0..self.layers.len()).map(|_| KvCache::new(max_kv_size, dtype)).collect()
    }

    /// The final hidden states (B, L, hidden) of token ids `ids` (B, L), advancing `cache`.
    pub fn hidden(&self, ids: &Array, cache: &mut [KvCache]) -> Result<Array> {
        if ids.ndim() != 2 {
            return Err(Error::Generate(format!(
                "token ids must be (batch, length), got {:?}",
                ids.shape()
            )));
        }
        if cache.len() != self.layers.len() {
            return Err(Error::Generate(format!(
                "{} caches for {} layers",
                cache.len(),
                self.layers.len()
            )));
        }
        // The residual stream is float32 whatever the table's storage type.
        let mut h = self.embed_tokens.forward(ids)?.astype(Dtype::Float32)?;
        for (layer, c) in self.layers.iter().zip(cache.iter_mut()) {
            h = layer.forward(&h, c)?;
        }
        Ok(self.norm.forward(&h)?)
    }

    /// Vocabulary logits of hidden states.
    pub fn logits(&self, hidden: &Array) -> Result<Array> {
        Ok(match &self.lm_head {
            Some(head) => head.forward(hidden)?,
            None => self.embed_tokens.as_linear(hidden)?,
        })
    }

    /// Logits (B, L, vocab) of every position of `ids` (B, L).
    pub fn forward(&self, ids: &Array, cache: &mut [KvCache]) -> Result<Array> {
        self.logits(&self.hidden(ids, cache)?)
    }

    /// Logits (B, vocab) of the last position only: the output projection runs on one row.
    pub fn forward_last(&self, ids: &Array, cache: &mut [KvCache]) -> Result<Array> {
        let h = self.hidden(ids, cache)?;
        let last = ops::slice_axis(&h, 1, Slice::range(-1, h.shape()[1] as isize))?;
        Ok(ops::squeeze(&self.logits(&last)?, Some(&[1]))?)
    }
}
