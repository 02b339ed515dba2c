//! Where a model's tensors come from. Architecture files ask for tensors by their Hugging Face
//! names (`model.layers.0.self_attn.q_proj.weight`); a [`WeightSource`] maps those to its own
//! storage and builds the right layer for how each tensor is stored (dense or GGML blocks).

use crate::error::{Error, Result};
use ember_core::array::new_output;
use ember_core::io::gguf::{GgmlType, GgufFile};
use ember_core::ops::{self, Slice};
use ember_core::{Array, Dtype};
use ember_nn::{
    Embed, Embedding, Linear, Module, QuantizedEmbedding, QuantizedLinear, QuantizedWeight,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A model's tensors, by Hugging Face name.
pub trait WeightSource {
    /// What the weights were loaded from, for error messages.
    fn origin(&self) -> &Path;
    fn contains(&self, name: &str) -> bool;
    /// The logical row-major shape of a tensor.
    fn shape(&self, name: &str) -> Result<Vec<usize>>;
    /// A dense float tensor (norm weights, biases), as float32.
    fn array(&self, name: &str) -> Result<Array>;
    /// A matrix `name` (out, in) as a layer computing `x @ W^T`.
    fn linear(&self, name: &str) -> Result<Box<dyn Module>>;
    /// An embedding table `name` (entries, dims).
    fn embedding(&self, name: &str) -> Result<Box<dyn Embed>>;

    /// Checks that `name` exists with `expected` shape.
    fn expect_shape(&self, name: &str, expected: &[usize]) -> Result<()> {
        let shape = self.shape(name)?;
        if shape != expected {
            return Err(Error::model(
                self.origin(),
                format!("tensor `{name}` has shape {shape:?}, the config implies {expected:?}"),
            ));
        }
        Ok(())
    }
}

/// Dense arrays in memory, by Hugging Face name (tests, and later safetensors directories).
pub struct ArrayWeights {
    origin: PathBuf,
    arrays: HashMap<String, Array>,
}

impl ArrayWeights {
    pub fn new(origin: impl Into<PathBuf>, arrays: HashMap<String, Array>) -> ArrayWeights {
        ArrayWeights { origin: origin.into(), arrays }
    }

    fn get(&self, name: &str) -> Result<&Array> {
        self.arrays
            .get(name)
            .ok_or_else(|| Error::model(&self.origin, format!("no tensor `{name}`")))
    }
}

impl WeightSource for ArrayWeights {
    fn origin(&self) -> &Path {
        &self.origin
    }

    fn contains(&self, name: &str) -> bool {
        self.arrays.contains_key(name)
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.get(name)?.shape().to_vec())
    }

    fn array(&self, name: &str) -> Result<Array> {
        Ok(self.get(name)?.astype(Dtype::Float32)?)
    }

    fn linear(&self, name: &str) -> Result<Box<dyn Module>> {
        Ok(Box::new(Linear::new(self.get(name)?.clone(), None)?))
    }

    fn embedding(&self, name: &str) -> Result<Box<dyn Embed>> {
        Ok(Box::new(Embedding::new(self.get(name)?.clone())?))
    }
}

/// The tensors of a GGUF file, named as llama.cpp's converter names them.
///
/// Quantized matrices are copied at load into one buffer from ember's allocator, which backs
/// large buffers with huge pages: decoding streams every weight once per token, and over the
/// file's 4 KiB pages the TLB misses of that walk cost about as much as the reads. They are
/// read with `pread`, so the file's pages are never mapped into the process (no double count
/// in its resident memory). Dense tensors (norms, F16 matrices) stay views of the file.
pub struct GgufWeights<'a> {
    file: &'a GgufFile,
    path: &'a Path,
    arena: Option<Array>,
    /// Byte offset in `arena` of each quantized tensor.
    offsets: HashMap<String, usize>,
}

/// Tensor starts in the arena are rounded up to this (a cache line).
const ARENA_ALIGN: usize = 64;

/// Copies `len` bytes at `offset` of the file into `out`.
#[cfg(unix)]
fn read_at(file: &std::fs::File, out: &mut [u8], offset: usize) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, out, offset as u64)
}

#[cfg(not(unix))]
fn read_at(file: &std::fs::File, out: &mut [u8], offset: usize) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = file;
    f.seek(SeekFrom::Start(offset as u64))?;
    f.read_exact(out)
}

/// llama.cpp's tensor name for a Hugging Face one (Llama-family layouts).
fn gguf_name(hf: &str) -> Option<String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, part) = rest.split_once('.')?;
    let (module, param) = part.rsplit_once('.')?;
    let short = match module {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{short}.{param}"))
}

/// How a tensor is stored, as far as the layers care.
enum Storage {
    Dense,
    Blocks(GgmlType),
}

impl<'a> GgufWeights<'a> {
    /// Reads the quantized tensors of `file` (opened from `path`) into memory.
    pub fn new(file: &'a GgufFile, path: &'a Path) -> Result<GgufWeights<'a>> {
        let quantized =
            |ty: GgmlType| matches!(ty, GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1);
        let mut offsets = HashMap::new();
        let mut total = 0usize;
        for info in file.tensor_infos().iter().filter(|i| quantized(i.ggml_type)) {
            offsets.insert(info.name.clone(), total);
            total += info.nbytes.next_multiple_of(ARENA_ALIGN);
        }
        if total == 0 {
            return Ok(GgufWeights { file, path, arena: None, offsets });
        }
        let handle = std::fs::File::open(path)
            .map_err(|e| Error::model(path, format!("cannot open: {e}")))?;
        let arena = new_output::<u8>(&[total], |out| {
            for info in file.tensor_infos().iter().filter(|i| quantized(i.ggml_type)) {
                let at = offsets[&info.name];
                read_at(&handle, &mut out[at..at + info.nbytes], file.data_offset() + info.offset)
                    .map_err(|e| {
                        ember_core::Error::file(path, format!("tensor `{}`: {e}", info.name))
                    })?;
            }
            Ok(())
        })?;
        Ok(GgufWeights { file, path, arena: Some(Array::from_ready(arena)), offsets })
    }

    fn name(&self, hf: &str) -> Result<String> {
        gguf_name(hf)
            .ok_or_else(|| Error::model(self.path, format!("no GGUF name for tensor `{hf}`")))
    }

    fn storage(&self, name: &str) -> Result<Storage> {
        let ty = self.file.tensor_data(name)?.ggml_type;
        match ty {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => Ok(Storage::Dense),
            GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1 => Ok(Storage::Blocks(ty)),
            t => Err(Error::model(
                self.path,
                format!(
                    "tensor `{name}` is {}, which ember cannot compute yet (supported: F32, F16, \
                     BF16, Q8_0, Q4_0, Q4_1)",
                    t.name()
                ),
            )),
        }
    }

    fn blocks(&self, name: &str, ty: GgmlType) -> Result<QuantizedWeight> {
        let t = self.file.tensor_data(name)?;
        let (Some(arena), Some(&at), [rows, cols]) = (&self.arena, self.offsets.get(name), t.shape)
        else {
            return Err(Error::model(
                self.path,
                format!("tensor `{name}` must be a 2-d quantized matrix, has shape {:?}", t.shape),
            ));
        };
        let bytes = ops::slice(arena, &[Slice::range(at as isize, (at + t.bytes.len()) as isize)])?;
        let row_bytes = cols / ty.block_size() * ty.type_size();
        let blocks = ops::reshape_to(&bytes, &[*rows, row_bytes])?;
        blocks.eval()?;
        Ok(QuantizedWeight::new(blocks, ty)?)
    }

    fn shape_of(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.file.tensor_data(name)?.shape.to_vec())
    }
}

impl WeightSource for GgufWeights<'_> {
    fn origin(&self) -> &Path {
        self.path
    }

    fn contains(&self, name: &str) -> bool {
        gguf_name(name).is_some_and(|n| self.file.tensor_data(&n).is_ok())
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        self.shape_of(&self.name(name)?)
    }

    fn array(&self, name: &str) -> Result<Array> {
        Ok(self.file.dequantize(&self.name(name)?)?)
    }

    fn linear(&self, name: &str) -> Result<Box<dyn Module>> {
        let n = self.name(name)?;
        Ok(match self.storage(&n)? {
            Storage::Dense => Box::new(Linear::new(self.file.tensor(&n)?, None)?),
            Storage::Blocks(ty) => Box::new(QuantizedLinear::new(self.blocks(&n, ty)?, None)?),
        })
    }

    fn embedding(&self, name: &str) -> Result<Box<dyn Embed>> {
        let n = self.name(name)?;
        Ok(match self.storage(&n)? {
            Storage::Dense => Box::new(Embedding::new(self.file.tensor(&n)?)?),
            Storage::Blocks(ty) => Box::new(QuantizedEmbedding::new(self.blocks(&n, ty)?)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::gguf_name;

    #[test]
    fn hugging_face_names_map_to_llama_cpp_names() {
        let cases = [
            ("model.embed_tokens.weight", "token_embd.weight"),
            ("lm_head.weight", "output.weight"),
            ("model.layers.3.self_attn.o_proj.weight", "blk.3.attn_output.weight"),
            ("model.layers.12.self_attn.q_proj.bias", "blk.12.attn_q.bias"),
            ("model.layers.0.mlp.down_proj.weight", "blk.0.ffn_down.weight"),
            ("model.layers.0.post_attention_layernorm.weight", "blk.0.ffn_norm.weight"),
        ];
        for (hf, gguf) in cases {
            assert_eq!(gguf_name(hf).as_deref(), Some(gguf), "{hf}");
        }
        assert_eq!(gguf_name("model.layers.0.mystery.weight"), None);
    }
}
