//! Matrix products: `matmul` with batch broadcasting, and `addmm`, `inner`, `outer`,
//! `tensordot` built on it.

use super::elementwise::{add, astype, multiply};
use super::layout::{expand_dims, reshape_to, squeeze, transpose};
use super::{broadcast_shapes, normalize_axis};
use crate::array::Array;
use crate::dtype::promote_types;
use crate::op::{Op, OutSpec, Primitive};
use crate::{bail, Result};

/// Linear-algebra primitives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LinalgOp {
    /// `a (..., m, k) @ b (..., k, n)` with broadcast batch dims; both at least 2-d.
    Matmul,
}

impl Primitive for LinalgOp {
    fn name(&self) -> &'static str {
        "matmul"
    }

    fn infer(&self, inputs: &[&Array]) -> Result<Vec<OutSpec>> {
        let (a, b) = (inputs[0], inputs[1]);
        let (sa, sb) = (a.shape(), b.shape());
        if sa.len() < 2 || sb.len() < 2 {
            bail!("matmul", "inputs must be at least 2-d, got {:?} and {:?}", sa, sb);
        }
        let (m, k) = (sa[sa.len() - 2], sa[sa.len() - 1]);
        let (k2, n) = (sb[sb.len() - 2], sb[sb.len() - 1]);
        if k != k2 {
            bail!("matmul", "last dimension of a {:?} does not match first of b {:?}", sa, sb);
        }
        let mut shape = broadcast_shapes("matmul", &sa[..sa.len() - 2], &sb[..sb.len() - 2])?;
        shape.extend([m, n]);
        Ok(vec![(shape, a.dtype())])
    }
}

/// Matrix product with NumPy's rules: 1-d operands are promoted to matrices and the added
/// axis removed afterwards; batch dimensions broadcast.
pub fn matmul(a: &Array, b: &Array) -> Result<Array> {
    if a.ndim() == 0 || b.ndim() == 0 {
        bail!("matmul", "inputs must be at least 1-d, got {:?} and {:?}", a.shape(), b.shape());
    }
    let dtype = promote_types(a.dtype(), b.dtype());
    let a2 = if a.ndim() == 1 { expand_dims(a, &[0])? } else { a.clone() };
    let b2 = if b.ndim() == 1 { expand_dims(b, &[1])? } else { b.clone() };
    let out = Array::from_op(
        Op::Linalg(LinalgOp::Matmul),
        vec![astype(&a2, dtype)?, astype(&b2, dtype)?],
    )?;
    match (a.ndim(), b.ndim()) {
        (1, 1) => squeeze(&out, Some(&[-2, -1])),
        (1, _) => squeeze(&out, Some(&[-2])),
        (_, 1) => squeeze(&out, Some(&[-1])),
        _ => Ok(out),
    }
}

/// `alpha * (a @ b) + beta * c`.
pub fn addmm(c: &Array, a: &Array, b: &Array, alpha: f32, beta: f32) -> Result<Array> {
    let ab = matmul(a, b)?;
    let ab =
        if alpha == 1.0 { ab } else { multiply(&ab, &astype(&Array::scalar(alpha), ab.dtype())?)? };
    let c = if beta == 1.0 {
        c.clone()
    } else {
        multiply(c, &astype(&Array::scalar(beta), c.dtype())?)?
    };
    add(&ab, &c)
}

/// Sum product over the last axes of `a` and `b`.
pub fn inner(a: &Array, b: &Array) -> Result<Array> {
    if a.ndim() == 0 || b.ndim() == 0 {
        return multiply(a, b);
    }
    tensordot(a, b, &[-1], &[-1])
}

/// Outer product of the flattened inputs.
pub fn outer(a: &Array, b: &Array) -> Result<Array> {
    let a = reshape_to(a, &[a.size(), 1])?;
    let b = reshape_to(b, &[1, b.size()])?;
    multiply(&a, &b)
}

/// Sum products over `axes_a` of `a` and `axes_b` of `b`.
pub fn tensordot(a: &Array, b: &Array, axes_a: &[isize], axes_b: &[isize]) -> Result<Array> {
    if axes_a.len() != axes_b.len() {
        bail!("tensordot", "{} axes for a but {} for b", axes_a.len(), axes_b.len());
    }
    let ca: Vec<usize> =
        axes_a.iter().map(|&x| normalize_axis("tensordot", x, a.ndim())).collect::<Result<_>>()?;
    let cb: Vec<usize> =
        axes_b.iter().map(|&x| normalize_axis("tensordot", x, b.ndim())).collect::<Result<_>>()?;
    for (&i, &j) in ca.iter().zip(&cb) {
        if a.shape()[i] != b.shape()[j] {
            bail!(
                "tensordot",
                "axis {} of a {:?} and axis {} of b {:?} differ",
                i,
                a.shape(),
                j,
                b.shape()
            );
        }
    }
    let free_a: Vec<usize> = (0..a.ndim()).filter(|i| !ca.contains(i)).collect();
    let free_b: Vec<usize> = (0..b.ndim()).filter(|i| !cb.contains(i)).collect();
    let k: usize = ca.iter().map(|&i| a.shape()[i]).product();
    let perm_a: Vec<isize> = free_a.iter().chain(&ca).map(|&i| i as isize).collect();
    let perm_b: Vec<isize> = cb.iter().chain(&free_b).map(|&i| i as isize).collect();
    let m: usize = free_a.iter().map(|&i| a.shape()[i]).product();
    let n: usize = free_b.iter().map(|&i| b.shape()[i]).product();
    let a2 = reshape_to(&transpose(a, &perm_a)?, &[m, k])?;
    let b2 = reshape_to(&transpose(b, &perm_b)?, &[k, n])?;
    let out_shape: Vec<usize> =
        free_a.iter().map(|&i| a.shape()[i]).chain(free_b.iter().map(|&i| b.shape()[i])).collect();
    reshape_to(&matmul(&a2, &b2)?, &out_shape)
}
