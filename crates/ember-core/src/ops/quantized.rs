//! Quantized weights: products, dequantization and quantization over GGML blocks (Q8_0,
//! Q4_0, Q4_1 of 32 values, the K-quants Q4_K, Q6_K of 256), the formats GGUF files store. A
//! quantized matrix is a uint8 array of shape `(rows, bytes per row)` holding whole blocks, as
//! `GgufFile::raw` returns it, so weights stay in the mapped file and are never expanded to
//! float as a whole. A Q8_0, Q4_0 or Q4_1 matrix may also be in the packed layout
//! ([`GgmlLayout::Packed`]: eight rows interleaved, for the AVX-512 VNNI kernels), which
//! loaders produce with [`pack_ggml_in_place`] or, while reading, [`pack_ggml_groups`].

use super::elementwise::astype;
use super::layout::reshape_to;
use crate::array::Array;
use crate::dtype::Dtype;
use crate::io::gguf::GgmlType;
use crate::op::{Op, OutSpec, Primitive};
use crate::{bail, Result};

pub use ember_cpu::quantized::{supports, valid_layout, Layout as GgmlLayout};
pub use ember_cpu::quantized_packed::{
    pack as pack_ggml_in_place, pack_groups as pack_ggml_groups, packed_is_fast,
    LANES as PACK_LANES,
};

/// Quantized primitives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum QuantizedOp {
    /// Inputs `[x (..., k) float32, w (n, k / block values * block bytes) uint8]`:
    /// `x @ dequantize(w)^T`.
    GgmlMatmul { ty: GgmlType, layout: GgmlLayout },
    /// Input `w (..., bytes) uint8` (row layout): float32 values
    /// `(..., bytes / block bytes * block values)`.
    GgmlDequantize { ty: GgmlType },
    /// Input `x (..., k) float32`: its blocks, uint8 `(..., k / block values * block bytes)`.
    GgmlQuantize { ty: GgmlType },
    /// Inputs `[w (n, bytes) uint8, ids (integer)]`: rows `ids` of `w` as float32,
    /// `ids.shape + [values per row]`.
    GgmlRows { ty: GgmlType, layout: GgmlLayout },
}

impl Primitive for QuantizedOp {
    fn name(&self) -> &'static str {
        match self {
            QuantizedOp::GgmlMatmul { .. } => "quantized_matmul",
            QuantizedOp::GgmlDequantize { .. } => "dequantize",
            QuantizedOp::GgmlRows { .. } => "dequantize_rows",
            QuantizedOp::GgmlQuantize { .. } => "quantize",
        }
    }

    fn infer(&self, inputs: &[&Array]) -> Result<Vec<OutSpec>> {
        let name = self.name();
        match self {
            QuantizedOp::GgmlMatmul { ty, layout } => {
                let (x, parts) = (inputs[0], &inputs[1..]);
                if parts.is_empty() {
                    bail!(name, "needs at least one weight matrix");
                }
                let mut n = 0;
                for w in parts {
                    let k = check_blocks(name, *ty, w)?;
                    check_layout(name, *ty, *layout, w)?;
                    if x.ndim() == 0 || x.shape()[x.ndim() - 1] != k || w.ndim() != 2 {
                        bail!(
                            name,
                            "x {:?} must end in the {} values per row of the 2-d {} weight {:?}",
                            x.shape(),
                            k,
                            ty.name(),
                            w.shape()
                        );
                    }
                    n += w.shape()[0];
                }
                if x.dtype() != Dtype::Float32 {
                    bail!(name, "x must be float32, got {}", x.dtype());
                }
                let mut shape = x.shape().to_vec();
                *shape.last_mut().expect("x is at least 1-d") = n;
                Ok(vec![(shape, Dtype::Float32)])
            }
            QuantizedOp::GgmlDequantize { ty } => {
                let w = inputs[0];
                let mut shape = w.shape().to_vec();
                *shape.last_mut().expect("checked 1-d") = check_blocks(name, *ty, w)?;
                Ok(vec![(shape, Dtype::Float32)])
            }
            QuantizedOp::GgmlRows { ty, layout } => {
                let (w, ids) = (inputs[0], inputs[1]);
                let k = check_blocks(name, *ty, w)?;
                if w.ndim() != 2 {
                    bail!(name, "weight must be 2-d (rows, bytes), got {:?}", w.shape());
                }
                check_layout(name, *ty, *layout, w)?;
                if !ids.dtype().is_integer() {
                    bail!(name, "ids must have an integer dtype, got {}", ids.dtype());
                }
                let mut shape = ids.shape().to_vec();
                shape.push(k);
                Ok(vec![(shape, Dtype::Float32)])
            }
            QuantizedOp::GgmlQuantize { ty } => {
                let x = inputs[0];
                if !ember_cpu::ggml_quantize::can_quantize(*ty) {
                    bail!(name, "cannot write {} blocks ({} can)", ty.name(), QUANTIZABLE);
                }
                if x.dtype() != Dtype::Float32 || x.ndim() == 0 {
                    bail!(
                        name,
                        "x must be a float32 array of 1 or more dims, got {} {:?}",
                        x.dtype(),
                        x.shape()
                    );
                }
                let mut shape = x.shape().to_vec();
                let k = shape.last_mut().expect("checked 1-d");
                if !k.is_multiple_of(ty.block_size()) {
                    bail!(
                        name,
                        "the last dim of x {:?} is not a multiple of the {} values of a {} block",
                        x.shape(),
                        ty.block_size(),
                        ty.name()
                    );
                }
                *k = *k / ty.block_size() * ty.type_size();
                Ok(vec![(shape, Dtype::Uint8)])
            }
        }
    }
}

/// The block types the ops compute with (all of them for every op).
const QUANTIZABLE: &str = "Q8_0, Q4_0, Q4_1, Q4_K, Q6_K";

/// Checks that a 2-d `w` can be in `layout` (packed matrices have whole groups of rows).
fn check_layout(op: &'static str, ty: GgmlType, layout: GgmlLayout, w: &Array) -> Result<()> {
    let rows = w.shape()[0];
    if !ember_cpu::quantized::valid_layout(ty, layout, rows) {
        bail!(op, "a {} matrix of {} rows cannot be in the {:?} layout", ty.name(), rows, layout);
    }
    Ok(())
}

/// Checks that `w` is uint8 rows of whole `ty` blocks; returns the values per row.
fn check_blocks(op: &'static str, ty: GgmlType, w: &Array) -> Result<usize> {
    if !ember_cpu::quantized::supports(ty) {
        bail!(op, "weights of type {} are not supported ({} are)", ty.name(), QUANTIZABLE);
    }
    if w.dtype() != Dtype::Uint8 || w.ndim() == 0 {
        bail!(op, "weight must be a uint8 array of blocks, got {} {:?}", w.dtype(), w.shape());
    }
    let bytes = w.shape()[w.ndim() - 1];
    if !bytes.is_multiple_of(ty.type_size()) {
        bail!(
            op,
            "rows of {} bytes are not whole {} blocks of {} bytes",
            bytes,
            ty.name(),
            ty.type_size()
        );
    }
    Ok(bytes / ty.type_size() * ty.block_size())
}

/// `x @ W^T` for a matrix `W` of `n` rows stored as GGML blocks of `ty` (`w` is uint8 of
/// shape `(n, bytes per row)`), as `mlx.core.quantized_matmul` with `transpose=True`. `x`
/// (..., k) is computed in float32; the result is (..., n) float32. The weights are never
/// dequantized as a whole: each block's dot product is taken on the fly.
pub fn quantized_matmul_ggml(x: &Array, w: &Array, ty: GgmlType) -> Result<Array> {
    quantized_matmul_ggml_layout(x, w, ty, GgmlLayout::Rows)
}

/// [`quantized_matmul_ggml`] for a matrix stored in `layout`.
pub fn quantized_matmul_ggml_layout(
    x: &Array,
    w: &Array,
    ty: GgmlType,
    layout: GgmlLayout,
) -> Result<Array> {
    quantized_matmul_ggml_parts(x, std::slice::from_ref(w), ty, layout)
}

/// [`quantized_matmul_ggml_layout`] for `W` the rows of `parts` stacked (each uint8 blocks
/// of `ty` in `layout`, all with the same values per row): the result ends in their rows
/// together. Matrices applied to one input (a layer's q/k/v) make one product this way
/// without being copied next to each other.
pub fn quantized_matmul_ggml_parts(
    x: &Array,
    parts: &[Array],
    ty: GgmlType,
    layout: GgmlLayout,
) -> Result<Array> {
    let inputs = std::iter::once(astype(x, Dtype::Float32)?).chain(parts.iter().cloned());
    Array::from_op(Op::Quantized(QuantizedOp::GgmlMatmul { ty, layout }), inputs.collect())
}

/// Rows `ids` (any integer array; an out-of-range id is an error at evaluation) of a matrix
/// of GGML blocks `w` (uint8 `(rows, bytes per row)` in `layout`) as float32, shape
/// `ids.shape + [values per row]`: an embedding lookup that expands only those rows.
pub fn dequantize_rows_ggml(
    w: &Array,
    ids: &Array,
    ty: GgmlType,
    layout: GgmlLayout,
) -> Result<Array> {
    Array::from_op(
        Op::Quantized(QuantizedOp::GgmlRows { ty, layout }),
        vec![w.clone(), ids.clone()],
    )
}

/// The float32 values of GGML blocks of `ty` (`w` uint8 of shape `(..., bytes per row)`),
/// shape `(..., values per row)`. Gather rows first (`take`) to expand only those.
pub fn dequantize_ggml(w: &Array, ty: GgmlType) -> Result<Array> {
    let flat = if w.ndim() == 0 { reshape_to(w, &[1])? } else { w.clone() };
    Array::from_op(Op::Quantized(QuantizedOp::GgmlDequantize { ty }), vec![flat])
}

/// The GGML blocks of `ty` for the values of `x` (any float dtype, computed in float32; the
/// last dim a multiple of the block's values), as uint8 of shape `(..., bytes per row)`:
/// what [`dequantize_ggml`] and [`quantized_matmul_ggml`] take. The blocks are those of
/// llama.cpp's reference quantizers (`quantize_row_*_ref`, no importance matrix).
pub fn quantize_ggml(x: &Array, ty: GgmlType) -> Result<Array> {
    if !x.dtype().is_float() {
        bail!("quantize", "x must have a floating dtype, got {}", x.dtype());
    }
    let x = astype(x, Dtype::Float32)?;
    Array::from_op(Op::Quantized(QuantizedOp::GgmlQuantize { ty }), vec![x])
}
