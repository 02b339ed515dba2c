//! Rotary position embeddings, as `mlx.nn.RoPE` (with optional precomputed frequencies for
//! scaled variants such as Llama 3's).

use ember_core::{ops, Array, Result};

/// Rotates the first `dims` features of (..., L, D) inputs by position.
pub struct Rope {
    dims: usize,
    traditional: bool,
    base: f32,
    scale: f32,
    freqs: Option<Array>,
}

impl Rope {
    /// `traditional` rotates adjacent pairs (2i, 2i+1) (GGUF's Llama layout); otherwise
    /// halves (i, i + dims/2) (Hugging Face's). Positions are multiplied by `scale`.
    pub fn new(dims: usize, traditional: bool, base: f32, scale: f32) -> Rope {
        Rope { dims, traditional, base, scale, freqs: None }
    }

    /// Uses explicit wavelengths `freqs` (dims / 2, float32) in place of `base^(2i/dims)`.
    pub fn with_freqs(mut self, freqs: Array) -> Rope {
        self.freqs = Some(freqs);
        self
    }

    /// Applies the rotation to `x` whose first position is `offset`.
    pub fn forward(&self, x: &Array, offset: usize) -> Result<Array> {
        let base = if self.freqs.is_some() { None } else { Some(self.base) };
        ops::fast::rope(
            x,
            self.dims,
            self.traditional,
            base,
            self.scale,
            offset,
            self.freqs.as_ref(),
        )
    }
}
