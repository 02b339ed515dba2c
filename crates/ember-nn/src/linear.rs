//! Affine layers: [`Linear`] over a dense weight and [`QuantizedLinear`] over GGML blocks,
//! both computing `x @ W^T + b` for `W` of shape (output dims, input dims), as `mlx.nn`.

use crate::Module;
use ember_core::io::gguf::GgmlType;
use ember_core::ops::quantized::GgmlLayout;
use ember_core::{bail, ops, Array, Dtype, Result};

/// `y = x @ W^T + b`, as `mlx.nn.Linear`.
pub struct Linear {
    weight: Array,
    bias: Option<Array>,
}

impl Linear {
    /// A layer over `weight` (output dims, input dims) and an optional `bias` (output dims).
    pub fn new(weight: Array, bias: Option<Array>) -> Result<Linear> {
        check_shapes("Linear", weight.shape(), bias.as_ref())?;
        Ok(Linear { weight, bias })
    }

    pub fn weight(&self) -> &Array {
        &self.weight
    }
}

/// Checks a 2-d weight shape and a bias of its output size.
pub(crate) fn check_shapes(layer: &'static str, w: &[usize], bias: Option<&Array>) -> Result<()> {
    if w.len() != 2 {
        bail!(layer, "weight must be 2-d (output dims, input dims), got {:?}", w);
    }
    if let Some(b) = bias {
        if b.shape() != [w[0]] {
            bail!(
                layer,
                "bias {:?} must have the {} output dims of weight {:?}",
                b.shape(),
                w[0],
                w
            );
        }
    }
    Ok(())
}

/// `y + bias`, or `y` without one.
pub(crate) fn add_bias(y: Array, bias: Option<&Array>) -> Result<Array> {
    match bias {
        Some(b) => ops::add(&y, b),
        None => Ok(y),
    }
}

impl Module for Linear {
    fn forward(&self, x: &Array) -> Result<Array> {
        let y = ops::matmul(x, &ops::transpose(&self.weight, &[1, 0])?)?;
        add_bias(y, self.bias.as_ref())
    }
}

/// A matrix stored as rows of GGML blocks: a uint8 array (rows, bytes per row), typically a
/// view of a GGUF file's tensor, in the row layout or the packed one. It may be several such
/// arrays whose rows stack (a layer's q/k/v, held apart in the file).
#[derive(Clone)]
pub struct QuantizedWeight {
    parts: Vec<Array>,
    ty: GgmlType,
    layout: GgmlLayout,
    cols: usize,
}

impl QuantizedWeight {
    /// Wraps `blocks` (uint8, rows x bytes per row) holding values of type `ty` in `layout`.
    pub fn new(blocks: Array, ty: GgmlType, layout: GgmlLayout) -> Result<QuantizedWeight> {
        Self::stacked(vec![blocks], ty, layout)
    }

    /// The matrix whose rows are those of `parts` in order, each as [`QuantizedWeight::new`]
    /// takes it, all with the same bytes per row. Nothing is copied.
    pub fn stacked(parts: Vec<Array>, ty: GgmlType, layout: GgmlLayout) -> Result<QuantizedWeight> {
        let Some(first) = parts.first() else {
            bail!("QuantizedWeight", "needs at least one block matrix");
        };
        let bytes = first.shape().get(1).copied().unwrap_or(0);
        if !ember_core::ops::quantized::supports(ty) {
            bail!("QuantizedWeight", "{} matrices have no quantized kernel", ty.name());
        }
        for blocks in &parts {
            if blocks.dtype() != Dtype::Uint8 || blocks.ndim() != 2 || blocks.shape()[1] != bytes {
                bail!(
                    "QuantizedWeight",
                    "blocks must be 2-d uint8 arrays of {} bytes per row, got {} {:?}",
                    bytes,
                    blocks.dtype(),
                    blocks.shape()
                );
            }
            if !ember_core::ops::quantized::valid_layout(ty, layout, blocks.shape()[0]) {
                bail!(
                    "QuantizedWeight",
                    "{} rows of {} cannot be in the {:?} layout",
                    blocks.shape()[0],
                    ty.name(),
                    layout
                );
            }
        }
        if bytes % ty.type_size() != 0 {
            bail!("QuantizedWeight", "rows of {} bytes are not whole {} blocks", bytes, ty.name());
        }
        let cols = bytes / ty.type_size() * ty.block_size();
        Ok(QuantizedWeight { parts, ty, layout, cols })
    }

    /// The logical (rows, cols) of the matrix.
    pub fn shape(&self) -> [usize; 2] {
        [self.parts.iter().map(|p| p.shape()[0]).sum(), self.cols]
    }

    pub fn ggml_type(&self) -> GgmlType {
        self.ty
    }

    /// How the rows' blocks are laid out (as read, or packed for the VNNI kernels).
    pub fn layout(&self) -> GgmlLayout {
        self.layout
    }

    /// `x @ W^T`, computed on the blocks.
    pub fn matmul_t(&self, x: &Array) -> Result<Array> {
        ops::quantized_matmul_ggml_parts(x, &self.parts, self.ty, self.layout)
    }

    /// Rows `ids` of the matrix as float32 (shape `ids.shape + [cols]`); only those rows are
    /// dequantized (of a stacked matrix, after joining its parts).
    pub fn rows(&self, ids: &Array) -> Result<Array> {
        let joined;
        let blocks = match &self.parts[..] {
            [blocks] => blocks,
            parts => {
                joined = ops::concatenate(&parts.iter().collect::<Vec<_>>(), 0)?;
                &joined
            }
        };
        ops::dequantize_rows_ggml(blocks, ids, self.ty, self.layout)
    }
}

/// `y = x @ W^T + b` over a [`QuantizedWeight`], as `mlx.nn.QuantizedLinear`. The product
/// goes through `quantized_matmul`: the weight is never expanded to float.
pub struct QuantizedLinear {
    weight: QuantizedWeight,
    bias: Option<Array>,
}

impl QuantizedLinear {
    pub fn new(weight: QuantizedWeight, bias: Option<Array>) -> Result<QuantizedLinear> {
        check_shapes("QuantizedLinear", &weight.shape(), bias.as_ref())?;
        Ok(QuantizedLinear { weight, bias })
    }

    pub fn weight(&self) -> &QuantizedWeight {
        &self.weight
    }
}

impl Module for QuantizedLinear {
    fn forward(&self, x: &Array) -> Result<Array> {
        add_bias(self.weight.matmul_t(x)?, self.bias.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(rows: usize, cols: usize, seed: u64) -> Array {
        let key = ops::random::key(seed);
        let w = ops::random::normal(&[rows, cols], Dtype::Float32, None, None, Some(&key));
        ops::quantize_ggml(&w.unwrap(), GgmlType::Q8_0).unwrap()
    }

    #[test]
    fn a_stacked_weight_is_its_parts_rows_in_order() {
        let parts = vec![blocks(8, 64, 1), blocks(16, 64, 2)];
        let joined = ops::concatenate(&parts.iter().collect::<Vec<_>>(), 0).unwrap();
        let stacked = QuantizedWeight::stacked(parts, GgmlType::Q8_0, GgmlLayout::Rows).unwrap();
        let whole = QuantizedWeight::new(joined, GgmlType::Q8_0, GgmlLayout::Rows).unwrap();
        assert_eq!(stacked.shape(), [24, 64]);
        let key = ops::random::key(3);
        let x = ops::random::normal(&[2, 64], Dtype::Float32, None, None, Some(&key)).unwrap();
        let values = |a: Result<Array>| a.unwrap().to_vec::<f32>().unwrap();
        assert_eq!(values(stacked.matmul_t(&x)), values(whole.matmul_t(&x)));
        let ids = Array::from_slice(&[20i32, 3, 8], &[3]).unwrap();
        assert_eq!(values(stacked.rows(&ids)), values(whole.rows(&ids)));
    }

    #[test]
    fn stacked_parts_must_agree() {
        let err = |parts| {
            QuantizedWeight::stacked(parts, GgmlType::Q8_0, GgmlLayout::Rows).err().unwrap()
        };
        assert!(err(vec![]).to_string().contains("at least one"));
        let e = err(vec![blocks(8, 64, 1), blocks(8, 96, 2)]).to_string();
        assert!(e.contains("68 bytes per row") && e.contains("[8, 102]"), "{e}");
    }
}
