//! Layers over matrices in MLX's affine group quantization (`ops::quantize`): the
//! [`AffineWeight`] (codes, scales, biases), a linear layer over it as
//! `mlx.nn.QuantizedLinear` and an embedding as `mlx.nn.QuantizedEmbedding`. Products run on
//! the codes (`ops::quantized_matmul`); a lookup expands only the rows asked for.

use crate::linear::{add_bias, check_shapes};
use crate::{Embed, Module};
use ember_core::ops::affine::check_quantized;
use ember_core::{bail, ops, Array, Result};

/// A 2-d matrix quantized with MLX's affine scheme: uint32 `codes` (rows, cols * bits / 32),
/// `scales` and `biases` (rows, cols / group_size), as `mx.quantize` returns them.
#[derive(Clone)]
pub struct AffineWeight {
    codes: Array,
    scales: Array,
    biases: Array,
    group_size: usize,
    bits: usize,
    cols: usize,
}

impl AffineWeight {
    /// Wraps a quantized matrix, checking that the three arrays agree (as `mx.dequantize`).
    pub fn new(
        codes: Array,
        scales: Array,
        biases: Array,
        group_size: usize,
        bits: usize,
    ) -> Result<AffineWeight> {
        if codes.ndim() != 2 {
            bail!("AffineWeight", "codes must be 2-d (rows, words), got {:?}", codes.shape());
        }
        let cols = check_quantized("AffineWeight", &[&codes, &scales, &biases], group_size, bits)?;
        Ok(AffineWeight { codes, scales, biases, group_size, bits, cols })
    }

    /// Quantizes a dense 2-d matrix (`mx.quantize(w, group_size, bits)`).
    pub fn quantize(w: &Array, group_size: usize, bits: usize) -> Result<AffineWeight> {
        let (codes, scales, biases) = ops::quantize(w, group_size, bits)?;
        AffineWeight::new(codes, scales, biases, group_size, bits)
    }

    /// The logical (rows, cols) of the matrix.
    pub fn shape(&self) -> [usize; 2] {
        [self.codes.shape()[0], self.cols]
    }

    /// The uint32 codes, scales and biases, as stored.
    pub fn parts(&self) -> [&Array; 3] {
        [&self.codes, &self.scales, &self.biases]
    }

    pub fn group_size(&self) -> usize {
        self.group_size
    }

    pub fn bits(&self) -> usize {
        self.bits
    }

    /// `x @ W^T`, computed on the codes.
    pub fn matmul_t(&self, x: &Array) -> Result<Array> {
        let [c, s, b] = self.parts();
        ops::quantized_matmul(x, c, s, b, true, self.group_size, self.bits)
    }

    /// Rows `ids` of the matrix in the scales' dtype (shape `ids.shape + [cols]`); only those
    /// rows are expanded.
    pub fn rows(&self, ids: &Array) -> Result<Array> {
        let [c, s, b] = self.parts().map(|a| ops::take(a, ids, Some(0)));
        let flat = |a: Result<Array>| -> Result<Array> {
            let a = a?;
            let last = a.shape()[a.ndim() - 1];
            ops::reshape_to(&a, &[a.size() / last.max(1), last])
        };
        let values = ops::dequantize(&flat(c)?, &flat(s)?, &flat(b)?, self.group_size, self.bits)?;
        let mut shape = ids.shape().to_vec();
        shape.push(self.cols);
        ops::reshape_to(&values, &shape)
    }
}

/// `y = x @ W^T + b` over an [`AffineWeight`], as `mlx.nn.QuantizedLinear`.
pub struct AffineQuantizedLinear {
    weight: AffineWeight,
    bias: Option<Array>,
}

impl AffineQuantizedLinear {
    pub fn new(weight: AffineWeight, bias: Option<Array>) -> Result<AffineQuantizedLinear> {
        check_shapes("AffineQuantizedLinear", &weight.shape(), bias.as_ref())?;
        Ok(AffineQuantizedLinear { weight, bias })
    }

    /// The layer of a dense `weight` (out, in) quantized, as
    /// `mlx.nn.QuantizedLinear.from_linear`.
    pub fn from_linear(
        weight: &Array,
        bias: Option<Array>,
        group_size: usize,
        bits: usize,
    ) -> Result<AffineQuantizedLinear> {
        AffineQuantizedLinear::new(AffineWeight::quantize(weight, group_size, bits)?, bias)
    }

    pub fn weight(&self) -> &AffineWeight {
        &self.weight
    }
}

impl Module for AffineQuantizedLinear {
    fn forward(&self, x: &Array) -> Result<Array> {
        add_bias(self.weight.matmul_t(x)?, self.bias.as_ref())
    }
}

/// An embedding table as an [`AffineWeight`], as `mlx.nn.QuantizedEmbedding`.
pub struct AffineQuantizedEmbedding {
    weight: AffineWeight,
}

impl AffineQuantizedEmbedding {
    pub fn new(weight: AffineWeight) -> AffineQuantizedEmbedding {
        AffineQuantizedEmbedding { weight }
    }
}

impl Embed for AffineQuantizedEmbedding {
    fn forward(&self, ids: &Array) -> Result<Array> {
        self.weight.rows(ids)
    }

    fn as_linear(&self, x: &Array) -> Result<Array> {
        self.weight.matmul_t(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Linear;
    use ember_core::Dtype;

    fn randn(shape: &[usize], seed: u64) -> Array {
        let key = ops::random::key(seed);
        ops::random::normal(shape, Dtype::Float32, None, None, Some(&key)).unwrap()
    }

    /// The layers equal their dense counterparts over the dequantized matrix.
    #[test]
    fn layers_match_the_dequantized_matrix() {
        let (w, bias, x) = (randn(&[10, 64], 1), randn(&[10], 2), randn(&[2, 3, 64], 3));
        let q = AffineQuantizedLinear::from_linear(&w, Some(bias.clone()), 32, 4).unwrap();
        let [c, s, b] = q.weight().parts();
        let dense = ops::dequantize(c, s, b, 32, 4).unwrap();
        let want = Linear::new(dense.clone(), Some(bias)).unwrap().forward(&x).unwrap();
        let got = q.forward(&x).unwrap();
        assert_eq!(got.shape(), [2, 3, 10]);
        let (got, want) = (got.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
        for (g, e) in got.iter().zip(&want) {
            assert!((g - e).abs() <= 1e-4 * (1.0 + e.abs()), "{g} vs {e}");
        }
        let table = AffineQuantizedEmbedding::new(q.weight().clone());
        let ids = Array::from_slice(&[3i32, 0, 9, 3], &[2, 2]).unwrap();
        let rows = table.forward(&ids).unwrap();
        assert_eq!(rows.shape(), [2, 2, 64]);
        let rows = rows.to_vec::<f32>().unwrap();
        let all = dense.to_vec::<f32>().unwrap();
        for (i, id) in [3, 0, 9, 3].into_iter().enumerate() {
            assert_eq!(rows[i * 64..][..64], all[id * 64..][..64], "id {id}");
        }
    }

    #[test]
    fn mismatched_parts_are_refused() {
        let q = AffineWeight::quantize(&randn(&[8, 64], 4), 64, 4).unwrap();
        let [c, s, b] = q.parts();
        let err = AffineWeight::new(c.clone(), s.clone(), b.clone(), 32, 4).err().unwrap();
        assert!(err.to_string().contains("[AffineWeight]"), "{err}");
        let bias = Some(randn(&[7], 5));
        let err = AffineQuantizedLinear::new(q, bias).err().unwrap();
        assert!(err.to_string().contains("[AffineQuantizedLinear]"), "{err}");
    }
}
