//! Token embeddings: a table of vectors looked up by id, usable in reverse as the output
//! projection of tied-embedding models (`as_linear`, as in `mlx.nn.Embedding`).

use crate::linear::QuantizedWeight;
use ember_core::{bail, ops, Array, Result};

/// An embedding table, dense or quantized.
pub trait Embed: Send + Sync {
    /// The vectors of `ids` (integer array): shape `ids.shape + [dims]`.
    fn forward(&self, ids: &Array) -> Result<Array>;
    /// `x @ table^T`: scores of `x` against every entry.
    fn as_linear(&self, x: &Array) -> Result<Array>;
}

/// A dense (entries, dims) table, as `mlx.nn.Embedding`.
pub struct Embedding {
    weight: Array,
}

impl Embedding {
    pub fn new(weight: Array) -> Result<Embedding> {
        if weight.ndim() != 2 {
            bail!("Embedding", "weight must be 2-d (entries, dims), got {:?}", weight.shape());
        }
        Ok(Embedding { weight })
    }
}

impl Embed for Embedding {
    fn forward(&self, ids: &Array) -> Result<Array> {
        ops::take(&self.weight, ids, Some(0))
    }

    fn as_linear(&self, x: &Array) -> Result<Array> {
        ops::matmul(x, &ops::transpose(&self.weight, &[1, 0])?)
    }
}

/// A table of GGML blocks: a lookup dequantizes only the rows asked for.
pub struct QuantizedEmbedding {
    weight: QuantizedWeight,
}

impl QuantizedEmbedding {
    pub fn new(weight: QuantizedWeight) -> QuantizedEmbedding {
        QuantizedEmbedding { weight }
    }
}

impl Embed for QuantizedEmbedding {
    fn forward(&self, ids: &Array) -> Result<Array> {
        self.weight.rows(ids)
    }

    fn as_linear(&self, x: &Array) -> Result<Array> {
        self.weight.matmul_t(x)
    }
}
