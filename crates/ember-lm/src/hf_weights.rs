//! The weights of a Hugging Face model directory: `model.safetensors`, or the shards that
//! `model.safetensors.index.json` lists, memory-mapped by ember-core's safetensors loader
//! (tensors are views of the files, no copy) and served by their Hugging Face names.
//!
//! Matrices quantized by `ember convert` or mlx-lm (MLX's affine scheme: `<name>.weight`
//! uint32 codes with `<name>.scales` and `<name>.biases`, config.json's `quantization`
//! giving the group size and bits) become layers computing on the codes.
//!
//! Float32 matrices are used as stored. Float16 and bfloat16 matrices also stay in the file's
//! precision, and their products run in it: the input is rounded to the weight's type and
//! the result widened back to the float32 residual stream, as MLX runs half-precision
//! checkpoints. (Mixing types in one `matmul` would promote, widening the whole weight to
//! float32 on every product.) Norm weights and biases are widened once at load.

use crate::error::{Error, Result};
use crate::weights::WeightSource;
use ember_core::io::load_safetensors;
use ember_core::{Array, Dtype};
use ember_nn::{
    AffineQuantizedEmbedding, AffineQuantizedLinear, AffineWeight, Embed, Embedding, Linear, Module,
};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The single-file weights of a directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The index of sharded weights: `weight_map` from tensor name to shard file.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// MLX's affine quantization of a directory's matrices (config.json's `quantization`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quantization {
    pub group_size: usize,
    pub bits: usize,
}

/// The tensors of a directory's safetensors file(s), by Hugging Face name.
pub struct SafetensorsWeights {
    /// The weights file or the shard index (error messages name it).
    origin: PathBuf,
    /// Each tensor and the file it came from.
    tensors: HashMap<String, (Array, PathBuf)>,
    /// How quantized matrices are quantized, when there are any.
    quantization: Option<Quantization>,
}

/// Whether ember computes on tensors of `dtype` (dense float checkpoints).
fn supported(dtype: Dtype) -> bool {
    matches!(dtype, Dtype::Float32 | Dtype::Float16 | Dtype::Bfloat16)
}

/// The shard files of an index and the tensors each holds.
fn read_index(path: &Path) -> Result<BTreeMap<String, Vec<String>>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::model(path, format!("cannot read: {e}")))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::model(path, format!("not valid JSON: {e}")))?;
    let map = json["weight_map"]
        .as_object()
        .ok_or_else(|| Error::model(path, "`weight_map` is missing or not an object"))?;
    let mut shards: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, file) in map {
        let file = file.as_str().filter(|f| !f.contains(['/', '\\'])).ok_or_else(|| {
            Error::model(path, format!("weight_map: `{name}` maps to {file}, not a file name"))
        })?;
        shards.entry(file.to_string()).or_default().push(name.clone());
    }
    Ok(shards)
}

impl SafetensorsWeights {
    /// Maps the weights of the model directory `dir`: the shards of its index when it has
    /// one, else its `model.safetensors`. Quantized matrices are read with `quantization`.
    pub fn open(dir: &Path, quantization: Option<Quantization>) -> Result<SafetensorsWeights> {
        let (index, single) = (dir.join(INDEX_FILE), dir.join(WEIGHTS_FILE));
        let mut tensors = HashMap::new();
        if index.is_file() {
            for (file, names) in read_index(&index)? {
                let shard = dir.join(&file);
                let (mut arrays, _) = load_safetensors(&shard)?;
                for name in names {
                    let array = arrays.remove(&name).ok_or_else(|| {
                        Error::model(&index, format!("tensor `{name}` is not in shard `{file}`"))
                    })?;
                    tensors.insert(name, (array, shard.clone()));
                }
            }
            return Ok(SafetensorsWeights { origin: index, tensors, quantization });
        }
        if !single.is_file() {
            return Err(Error::model(
                dir,
                format!("no weights: neither {WEIGHTS_FILE} nor {INDEX_FILE} is in the directory"),
            ));
        }
        let (arrays, _) = load_safetensors(&single)?;
        tensors.extend(arrays.into_iter().map(|(name, a)| (name, (a, single.clone()))));
        Ok(SafetensorsWeights { origin: single, tensors, quantization })
    }

    /// Every tensor, by name, as stored.
    pub fn tensors(&self) -> impl Iterator<Item = (&str, &Array)> {
        self.tensors.iter().map(|(name, (array, _))| (name.as_str(), array))
    }

    /// The matrix `name` when it is stored quantized (`<module>.weight` with
    /// `<module>.scales` and `<module>.biases`).
    fn affine(&self, name: &str) -> Result<Option<AffineWeight>> {
        let Some(module) = name.strip_suffix(".weight") else { return Ok(None) };
        let scales = format!("{module}.scales");
        if !self.tensors.contains_key(&scales) {
            return Ok(None);
        }
        let Some(q) = self.quantization else {
            return Err(Error::model(
                &self.origin,
                format!("`{name}` is quantized (`{scales}`) but config.json has no `quantization`"),
            ));
        };
        let (codes, file) = self.entry(name)?;
        let (scales, biases) = (self.get(&scales)?, self.get(&format!("{module}.biases"))?);
        AffineWeight::new(codes.clone(), scales.clone(), biases.clone(), q.group_size, q.bits)
            .map(Some)
            .map_err(|e| Error::model(file, format!("quantized matrix `{name}`: {e}")))
    }

    /// The tensor `name` and its file.
    fn entry(&self, name: &str) -> Result<&(Array, PathBuf)> {
        self.tensors
            .get(name)
            .ok_or_else(|| Error::model(&self.origin, format!("no tensor `{name}`")))
    }

    /// The tensor `name`, checked to be of a float type ember computes on.
    fn get(&self, name: &str) -> Result<&Array> {
        let (array, file) = self.entry(name)?;
        if !supported(array.dtype()) {
            return Err(Error::model(
                file,
                format!(
                    "tensor `{name}` is {:?}; ember runs float32, float16 and bfloat16 weights",
                    array.dtype()
                ),
            ));
        }
        Ok(array)
    }
}

/// A dense layer over a float16 or bfloat16 weight, computed in the weight's type.
struct HalfLinear {
    inner: Linear,
    dtype: Dtype,
}

impl Module for HalfLinear {
    fn forward(&self, x: &Array) -> ember_core::Result<Array> {
        self.inner.forward(&x.astype(self.dtype)?)?.astype(Dtype::Float32)
    }
}

/// A float16 or bfloat16 embedding table; as the output projection, computed in its type.
struct HalfEmbedding {
    inner: Embedding,
    dtype: Dtype,
}

impl Embed for HalfEmbedding {
    fn forward(&self, ids: &Array) -> ember_core::Result<Array> {
        self.inner.forward(ids)
    }

    fn as_linear(&self, x: &Array) -> ember_core::Result<Array> {
        self.inner.as_linear(&x.astype(self.dtype)?)?.astype(Dtype::Float32)
    }
}

impl WeightSource for SafetensorsWeights {
    fn origin(&self) -> &Path {
        &self.origin
    }

    fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        match self.affine(name)? {
            Some(w) => Ok(w.shape().to_vec()),
            None => Ok(self.get(name)?.shape().to_vec()),
        }
    }

    fn array(&self, name: &str) -> Result<Array> {
        Ok(self.get(name)?.astype(Dtype::Float32)?)
    }

    fn linear(&self, name: &str) -> Result<Box<dyn Module>> {
        if let Some(w) = self.affine(name)? {
            return Ok(Box::new(AffineQuantizedLinear::new(w, None)?));
        }
        let w = self.get(name)?;
        let inner = Linear::new(w.clone(), None)?;
        Ok(match w.dtype() {
            Dtype::Float32 => Box::new(inner),
            dtype => Box::new(HalfLinear { inner, dtype }),
        })
    }

    fn embedding(&self, name: &str) -> Result<Box<dyn Embed>> {
        if let Some(w) = self.affine(name)? {
            return Ok(Box::new(AffineQuantizedEmbedding::new(w)));
        }
        let w = self.get(name)?;
        let inner = Embedding::new(w.clone())?;
        Ok(match w.dtype() {
            Dtype::Float32 => Box::new(inner),
            dtype => Box::new(HalfEmbedding { inner, dtype }),
        })
    }
}
