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
/// view of a GGUF file's tensor, in the row layout or the packed one.
#[derive(Clone)]
pub struct QuantizedWeight {
    blocks: Array,
    ty: GgmlType,
    layout: GgmlLayout,
    cols: usize,
}

impl QuantizedWeight {
    /// Wraps `blocks` (uint8, rows x bytes per row) holding values of type `ty` in `layout`.
    pub fn new(blocks: Array, ty: GgmlType, layout: GgmlLayout) -> Result<QuantizedWeight> {
        if blocks.dtype() != Dtype::Uint8 || blocks.ndim() != 2 {
            bail!(
                "QuantizedWeight",
                "blocks must be a 2-d uint8 array, got {} {:?}",
                blocks.dtype(),
                blocks.shape()
            );
        }
        let bytes = blocks.shape()[1];
        if !ty.is_quantized() || bytes % ty.type_size() != 0 {
            bail!("QuantizedWeight", "rows of {} bytes are not whole {} blocks", bytes, ty.name());
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
        let cols = bytes / ty.type_size() * ty.block_size();
        Ok(QuantizedWeight { blocks, ty, layout, cols })
    }

    /// The logical (rows, cols) of the matrix.
    pub fn shape(&self) -> [usize; 2] {
        [self.blocks.shape()[0], self.cols]
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
        ops::quantized_matmul_ggml_layout(x, &self.blocks, self.ty, self.layout)
    }

    /// Rows `ids` of the matrix as float32 (shape `ids.shape + [cols]`); only those rows are
    /// dequantized.
    pub fn rows(&self, ids: &Array) -> Result<Array> {
        ops::dequantize_rows_ggml(&self.blocks, ids, self.ty, self.layout)
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
