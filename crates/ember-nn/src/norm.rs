//! Root-mean-square normalisation, as `mlx.nn.RMSNorm`.

use crate::Module;
use ember_core::{ops, Array, Result};

/// `x * rsqrt(mean(x^2) + eps) * weight` over the last axis.
pub struct RmsNorm {
    weight: Array,
    eps: f32,
}

impl RmsNorm {
    /// A norm with `weight` (1-d, the feature size) and `eps`.
    pub fn new(weight: Array, eps: f32) -> RmsNorm {
        RmsNorm { weight, eps }
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Array) -> Result<Array> {
        ops::fast::rms_norm(x, Some(&self.weight), self.eps)
    }
}
