//! MLX's affine group quantization: [`quantize`], [`dequantize`] and [`quantized_matmul`]
//! (`mx.quantize`, `mx.dequantize`, `mx.quantized_matmul` with mode "affine"). A matrix's
//! rows are cut into groups of `group_size` values along the last axis; each group is stored
//! as `bits`-bit codes packed into uint32 words (`32 / bits` per word, first value lowest)
//! with a scale and a bias of the matrix's float type, the value being `scale * code + bias`.
//! The kernels are in `ember_cpu::affine` and `ember_cpu::affine_matmul`.

use super::elementwise::astype;
use crate::array::Array;
use crate::dtype::{promote_types, Dtype};
use crate::op::{Op, OutSpec, Primitive};
use crate::{bail, Result};

pub use ember_cpu::affine::{BITS as SUPPORTED_BITS, GROUP_SIZES as SUPPORTED_GROUP_SIZES};

/// Affine quantization primitives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AffineOp {
    /// Input `w (..., k)` float: outputs codes `(..., k * bits / 32)` uint32, scales and
    /// biases `(..., k / group_size)` of w's dtype.
    Quantize { group_size: usize, bits: usize },
    /// Inputs `[codes, scales, biases]`: the values `(..., words * 32 / bits)` in the scales'
    /// dtype.
    Dequantize { group_size: usize, bits: usize },
    /// Inputs `[x (..., k) float32, codes, scales, biases]` of a 2-d matrix `W`: float32
    /// `x @ W^T` (`transpose`) or `x @ W`.
    Matmul { group_size: usize, bits: usize, transpose: bool },
}

impl Primitive for AffineOp {
    fn name(&self) -> &'static str {
        match self {
            AffineOp::Quantize { .. } => "quantize",
            AffineOp::Dequantize { .. } => "dequantize",
            AffineOp::Matmul { .. } => "quantized_matmul",
        }
    }

    fn infer(&self, inputs: &[&Array]) -> Result<Vec<OutSpec>> {
        let name = self.name();
        match *self {
            AffineOp::Quantize { group_size, bits } => {
                let w = inputs[0];
                check_params(name, group_size, bits)?;
                check_float(name, "w", w.dtype())?;
                if w.ndim() < 2 {
                    bail!(
                        name,
                        "The matrix to be quantized must have at least 2 dimensions but it has \
                         only {}.",
                        w.ndim()
                    );
                }
                let k = w.shape()[w.ndim() - 1];
                if !k.is_multiple_of(group_size) {
                    bail!(
                        name,
                        "The last dimension of the matrix needs to be divisible by the \
                         quantization group size {}. However the provided matrix has shape {:?}",
                        group_size,
                        w.shape()
                    );
                }
                let lead = &w.shape()[..w.ndim() - 1];
                let with_last = |last: usize| [lead, &[last][..]].concat();
                Ok(vec![
                    (with_last(k * bits / 32), Dtype::Uint32),
                    (with_last(k / group_size), w.dtype()),
                    (with_last(k / group_size), w.dtype()),
                ])
            }
            AffineOp::Dequantize { group_size, bits } => {
                let k = check_quantized(name, inputs, group_size, bits)?;
                let w = inputs[0];
                let mut shape = w.shape().to_vec();
                *shape.last_mut().expect("checked 2-d") = k;
                Ok(vec![(shape, inputs[1].dtype())])
            }
            AffineOp::Matmul { group_size, bits, transpose } => {
                let (x, w) = (inputs[0], inputs[1]);
                let k = check_quantized(name, &inputs[1..], group_size, bits)?;
                if w.ndim() != 2 {
                    bail!(
                        name,
                        "only a 2-d quantized matrix is supported, got weight of shape {:?}",
                        w.shape()
                    );
                }
                let rows = w.shape()[0];
                let (inner, outer) = if transpose { (k, rows) } else { (rows, k) };
                if x.ndim() == 0 || x.shape()[x.ndim() - 1] != inner {
                    bail!(
                        name,
                        "Last dimension of first input with shape {:?} does not match the \
                         expanded quantized matrix ({}, {}) computed from shape {:?} with \
                         group_size={}, bits={} and transpose={}",
                        x.shape(),
                        inner,
                        outer,
                        w.shape(),
                        group_size,
                        bits,
                        transpose
                    );
                }
                if x.dtype() != Dtype::Float32 {
                    bail!(name, "x must be float32 here, got {}", x.dtype());
                }
                let mut shape = x.shape().to_vec();
                *shape.last_mut().expect("checked 1-d") = outer;
                Ok(vec![(shape, Dtype::Float32)])
            }
        }
    }
}

/// Rejects a group size or width the kernels do not implement.
fn check_params(op: &'static str, group_size: usize, bits: usize) -> Result<()> {
    if !SUPPORTED_GROUP_SIZES.contains(&group_size) {
        bail!(
            op,
            "The requested group size {} is not supported. The supported group sizes are 32, \
             64, and 128.",
            group_size
        );
    }
    if !SUPPORTED_BITS.contains(&bits) {
        bail!(
            op,
            "The requested number of bits {} is not supported. The supported bits are 2, 4 and \
             8.",
            bits
        );
    }
    Ok(())
}

/// Rejects a dtype the kernels do not compute in (float64 included, as MLX's CPU backend).
fn check_float(op: &'static str, what: &str, dtype: Dtype) -> Result<()> {
    if !matches!(dtype, Dtype::Float32 | Dtype::Float16 | Dtype::Bfloat16) {
        bail!(
            op,
            "Only float32, float16 and bfloat16 can be quantized or used as scales, but {} has \
             type {}.",
            what,
            dtype
        );
    }
    Ok(())
}

/// Checks `[codes, scales, biases]` of a quantized matrix (as MLX's
/// `validate_quantized_input`, errors naming `op`); returns the values per row.
pub fn check_quantized(
    op: &'static str,
    q: &[&Array],
    group_size: usize,
    bits: usize,
) -> Result<usize> {
    let (w, scales, biases) = (q[0], q[1], q[2]);
    check_params(op, group_size, bits)?;
    if w.dtype() != Dtype::Uint32 {
        bail!(op, "The matrix should be given as a uint32, got {}.", w.dtype());
    }
    if w.ndim() < 2 {
        bail!(
            op,
            "The matrix to be dequantized must have at least 2 dimensions but it has only {}.",
            w.ndim()
        );
    }
    check_float(op, "scales", scales.dtype())?;
    if scales.dtype() != biases.dtype() {
        bail!(
            op,
            "scales and biases must share a dtype, got {} and {}",
            scales.dtype(),
            biases.dtype()
        );
    }
    if scales.shape() != biases.shape() {
        bail!(
            op,
            "Scales and biases should have the same shape. Received scales with shape {:?} and \
             biases with {:?}",
            scales.shape(),
            biases.shape()
        );
    }
    let nd = w.ndim();
    let k = w.shape()[nd - 1] * 32 / bits;
    if scales.ndim() != nd
        || scales.shape()[..nd - 1] != w.shape()[..nd - 1]
        || scales.shape()[nd - 1] * group_size != k
    {
        bail!(
            op,
            "The shapes of the weight and scales are incompatible based on bits and group_size. \
             w.shape() == {:?} and scales.shape() == {:?} with group_size={} and bits={}",
            w.shape(),
            scales.shape(),
            group_size,
            bits
        );
    }
    Ok(k)
}

/// Quantizes `w` (float32, float16 or bfloat16, at least 2-d, its last dim a multiple of
/// `group_size`) in groups of `group_size` values along the last axis with `bits`-bit codes,
/// as `mx.quantize(w, group_size, bits)`: returns `(codes, scales, biases)`, the codes packed
/// in uint32 `(..., k * bits / 32)`, scales and biases of w's dtype `(..., k / group_size)`.
/// Group sizes 32, 64, 128; bits 2, 4, 8 (MLX's 3, 5 and 6 are not implemented).
pub fn quantize(w: &Array, group_size: usize, bits: usize) -> Result<(Array, Array, Array)> {
    let mut outs =
        Array::from_op_multi(Op::Affine(AffineOp::Quantize { group_size, bits }), vec![w.clone()])?;
    let biases = outs.pop().expect("three outputs");
    let scales = outs.pop().expect("three outputs");
    Ok((outs.pop().expect("three outputs"), scales, biases))
}

/// The values `scales * codes + biases` of a matrix from [`quantize`], in the scales'
/// dtype, as `mx.dequantize(w, scales, biases, group_size, bits)`.
pub fn dequantize(
    w: &Array,
    scales: &Array,
    biases: &Array,
    group_size: usize,
    bits: usize,
) -> Result<Array> {
    Array::from_op(
        Op::Affine(AffineOp::Dequantize { group_size, bits }),
        vec![w.clone(), scales.clone(), biases.clone()],
    )
}

/// `x @ W^T` (`transpose`, the layout of a linear layer's weight) or `x @ W`, for a 2-d
/// matrix `W` quantized by [`quantize`], as `mx.quantized_matmul(x, w, scales, biases,
/// transpose, group_size, bits)`. `W` is never expanded as a whole. The result has the type
/// of `x` promoted with the scales (float32 for an integer `x`); it is computed in float32.
#[allow(clippy::too_many_arguments)]
pub fn quantized_matmul(
    x: &Array,
    w: &Array,
    scales: &Array,
    biases: &Array,
    transpose: bool,
    group_size: usize,
    bits: usize,
) -> Result<Array> {
    let dtype = match promote_types(x.dtype(), scales.dtype()) {
        d if d.is_float() => d,
        _ => Dtype::Float32,
    };
    let y = Array::from_op(
        Op::Affine(AffineOp::Matmul { group_size, bits, transpose }),
        vec![astype(x, Dtype::Float32)?, w.clone(), scales.clone(), biases.clone()],
    )?;
    astype(&y, dtype)
}
