//! Convolutions over channels-last data, as MLX's: `conv1d` on (N, L, C_in) and `conv2d` on
//! (N, H, W, C_in), with weights (C_out, ..., C_in / groups). One primitive, the 2-d
//! convolution; `conv1d` records it over a height-1 image (zero-copy reshapes).

use super::elementwise::astype;
use super::layout::reshape_to;
use crate::array::Array;
use crate::dtype::promote_types;
use crate::op::{Op, OutSpec, Primitive};
use crate::{bail, Result};
use ember_cpu::conv::Conv2dShape;

/// Convolution primitives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConvOp {
    /// NHWC convolution of (N, H, W, C_in) with (C_out, KH, KW, C_in / groups), one float
    /// dtype for both.
    Conv2d { stride: [usize; 2], padding: [usize; 2], dilation: [usize; 2], groups: usize },
}

impl ConvOp {
    /// The kernel geometry for validated input and weight shapes.
    pub fn geometry(&self, x: &[usize], w: &[usize]) -> Conv2dShape {
        let ConvOp::Conv2d { stride, padding, dilation, groups } = *self;
        Conv2dShape {
            batch: x[0],
            input: [x[1], x[2]],
            in_channels: x[3],
            out_channels: w[0],
            kernel: [w[1], w[2]],
            stride,
            padding,
            dilation,
            groups,
        }
    }
}

impl Primitive for ConvOp {
    fn name(&self) -> &'static str {
        "conv"
    }

    fn infer(&self, inputs: &[&Array]) -> Result<Vec<OutSpec>> {
        let (x, w) = (inputs[0], inputs[1]);
        if x.dtype() != w.dtype() {
            bail!(
                "conv",
                "input and weight must share a dtype, got {} and {}",
                x.dtype(),
                w.dtype()
            );
        }
        let ConvOp::Conv2d { stride, padding, dilation, groups } = *self;
        let p = Params { stride: &stride, padding: &padding, dilation: &dilation, groups };
        Ok(vec![(validate("conv", x, w, &p)?, x.dtype())])
    }
}

/// Per-spatial-axis parameters of one call.
struct Params<'a> {
    stride: &'a [usize],
    padding: &'a [usize],
    dilation: &'a [usize],
    groups: usize,
}

/// Checks a convolution as MLX does and returns the output shape.
fn validate(op: &'static str, x: &Array, w: &Array, p: &Params) -> Result<Vec<usize>> {
    let nd = p.stride.len();
    let (xs, ws) = (x.shape(), w.shape());
    let layout = if nd == 1 { "(N, L, C)" } else { "(N, H, W, C)" };
    if !x.dtype().is_float() {
        bail!(op, "input must have a floating point dtype, got {}", x.dtype());
    }
    if xs.len() != nd + 2 {
        bail!(op, "input with shape {:?} must have {} dimensions {}", xs, nd + 2, layout);
    }
    if ws.len() != nd + 2 {
        bail!(op, "weight with shape {:?} must have {} dimensions (C_out, ..., C_in)", ws, nd + 2);
    }
    if p.groups == 0 || p.stride.contains(&0) || p.dilation.contains(&0) {
        bail!(
            op,
            "groups ({}), stride {:?} and dilation {:?} must be positive",
            p.groups,
            p.stride,
            p.dilation
        );
    }
    let (c_in, c_out) = (xs[nd + 1], ws[0]);
    if c_in % p.groups != 0 {
        bail!(op, "input channels of input {:?} are not divisible by {} groups", xs, p.groups);
    }
    if c_out % p.groups != 0 {
        bail!(op, "output channels of weight {:?} are not divisible by {} groups", ws, p.groups);
    }
    if c_in != p.groups * ws[nd + 1] {
        bail!(
            op,
            "input {:?} has {} channels but weight {:?} with {} groups expects {}",
            xs,
            c_in,
            ws,
            p.groups,
            p.groups * ws[nd + 1]
        );
    }
    let mut out = vec![xs[0]];
    for i in 0..nd {
        let (n, k) = (xs[i + 1], ws[i + 1]);
        let span = p.dilation[i] * k.saturating_sub(1) + 1;
        let padded = n + 2 * p.padding[i];
        if k == 0 || span > padded {
            bail!(
                op,
                "kernel of weight {:?} with dilation {:?} does not fit input {:?} with padding {:?}",
                ws,
                p.dilation,
                xs,
                p.padding
            );
        }
        out.push((padded - span) / p.stride[i] + 1);
    }
    out.push(c_out);
    Ok(out)
}

/// Promotes input and weight to their common dtype.
fn promoted(x: &Array, w: &Array) -> Result<(Array, Array)> {
    let dtype = promote_types(x.dtype(), w.dtype());
    Ok((astype(x, dtype)?, astype(w, dtype)?))
}

/// 1-d convolution of `x` (N, L, C_in) with `weight` (C_out, K, C_in / groups), as
/// `mlx.core.conv1d`: output (N, L_out, C_out) in the promoted dtype, where
/// `L_out = (L + 2 * padding - dilation * (K - 1) - 1) / stride + 1`.
pub fn conv1d(
    x: &Array,
    weight: &Array,
    stride: usize,
    padding: usize,
    dilation: usize,
    groups: usize,
) -> Result<Array> {
    let p = Params { stride: &[stride], padding: &[padding], dilation: &[dilation], groups };
    let out = validate("conv1d", x, weight, &p)?;
    let (x, w) = promoted(x, weight)?;
    let (xs, ws) = (x.shape(), w.shape());
    let x4 = reshape_to(&x, &[xs[0], 1, xs[1], xs[2]])?;
    let w4 = reshape_to(&w, &[ws[0], 1, ws[1], ws[2]])?;
    let op = ConvOp::Conv2d {
        stride: [1, stride],
        padding: [0, padding],
        dilation: [1, dilation],
        groups,
    };
    reshape_to(&Array::from_op(Op::Conv(op), vec![x4, w4])?, &out)
}

/// 2-d convolution of `x` (N, H, W, C_in) with `weight` (C_out, KH, KW, C_in / groups), as
/// `mlx.core.conv2d`; `stride`, `padding` and `dilation` are (height, width) pairs.
///
/// ```
/// use ember_core::{ops, Array};
/// // A 2x2 sum filter over a 3x3 image holding 0..9.
/// let x = ops::reshape_to(&ops::arange(0.0, 9.0, 1.0, ember_core::Dtype::Float32)?, &[1, 3, 3, 1])?;
/// let w = ops::ones(&[1, 2, 2, 1], ember_core::Dtype::Float32)?;
/// let y = ops::conv2d(&x, &w, (1, 1), (0, 0), (1, 1), 1)?;
/// assert_eq!(y.shape(), &[1, 2, 2, 1]);
/// assert_eq!(y.to_vec::<f32>()?, vec![8.0, 12.0, 20.0, 24.0]);
/// # Ok::<(), ember_core::Error>(())
/// ```
pub fn conv2d(
    x: &Array,
    weight: &Array,
    stride: (usize, usize),
    padding: (usize, usize),
    dilation: (usize, usize),
    groups: usize,
) -> Result<Array> {
    let (stride, padding, dilation) =
        ([stride.0, stride.1], [padding.0, padding.1], [dilation.0, dilation.1]);
    let p = Params { stride: &stride, padding: &padding, dilation: &dilation, groups };
    validate("conv2d", x, weight, &p)?;
    let (x, w) = promoted(x, weight)?;
    Array::from_op(Op::Conv(ConvOp::Conv2d { stride, padding, dilation, groups }), vec![x, w])
}
