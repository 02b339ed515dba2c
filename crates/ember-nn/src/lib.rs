//! ember-nn: layers over ember's lazy arrays, in the shape of `mlx.nn`. A layer holds its
//! parameters as arrays and records ops when called; nothing is computed until evaluation.
//!
//! Dense and quantized layers are interchangeable behind [`Module`] (and [`Embed`] for
//! embeddings), so a model file picks per tensor what its weights are stored as.

pub mod affine;
pub mod embedding;
pub mod linear;
pub mod norm;
pub mod rope;

pub use affine::{AffineQuantizedEmbedding, AffineQuantizedLinear, AffineWeight};
pub use embedding::{Embed, Embedding, QuantizedEmbedding};
pub use linear::{Linear, QuantizedLinear, QuantizedWeight};
pub use norm::RmsNorm;
pub use rope::Rope;

use ember_core::{Array, Result};

/// A layer mapping one array to another.
pub trait Module: Send + Sync {
    /// Records the layer applied to `x`.
    fn forward(&self, x: &Array) -> Result<Array>;
}
