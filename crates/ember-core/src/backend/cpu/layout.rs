//! Layout ops on the CPU: views share the input's buffer; copies are strided gathers.

use crate::array::{contiguous_strides, new_output, ReadyArray};
use crate::ops::layout::LayoutOp;
use crate::{dispatch, Result};

pub fn eval(op: &LayoutOp, x: &ReadyArray) -> Result<ReadyArray> {
    match op {
        LayoutOp::Copy => copy(x),
        LayoutOp::Reshape(shape) => reshape(x, shape),
        LayoutOp::Transpose(perm) => {
            let shape = perm.iter().map(|&p| x.shape[p]).collect();
            let strides = perm.iter().map(|&p| x.strides[p]).collect();
            Ok(x.with_layout(shape, strides, x.offset))
        }
        LayoutOp::Broadcast(shape) => Ok(broadcast(x, shape)),
        LayoutOp::Slice { start, step, shape } => {
            let mut offset = x.offset as isize;
            for (i, &s) in start.iter().enumerate() {
                offset += s as isize * x.strides[i];
            }
            let strides = x.strides.iter().zip(step).map(|(&s, &k)| s * k).collect();
            Ok(x.with_layout(shape.clone(), strides, offset as usize))
        }
        LayoutOp::AsStrided { shape, strides, offset } => {
            let base = if x.is_contiguous() { x.clone() } else { copy(x)? };
            Ok(base.with_layout(shape.clone(), strides.clone(), base.offset + offset))
        }
    }
}

/// A row-major contiguous copy.
pub fn copy(x: &ReadyArray) -> Result<ReadyArray> {
    dispatch!(x.dtype, T => new_output::<T>(&x.shape, |out| {
        ember_cpu::strided::map1(out, x.view::<T>(), |v| v);
        Ok(())
    }))
}

/// `x` itself when contiguous, else a contiguous copy.
pub fn to_contiguous(x: &ReadyArray) -> Result<ReadyArray> {
    if x.is_contiguous() {
        Ok(x.clone())
    } else {
        copy(x)
    }
}

/// A stride-0 view of `x` broadcast to `shape` (leading axes added).
pub fn broadcast(x: &ReadyArray, shape: &[usize]) -> ReadyArray {
    let lead = shape.len() - x.shape.len();
    let strides =
        shape
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                if i < lead || (x.shape[i - lead] == 1 && n != 1) {
                    0
                } else {
                    x.strides[i - lead]
                }
            })
            .collect();
    x.with_layout(shape.to_vec(), strides, x.offset)
}

fn reshape(x: &ReadyArray, shape: &[usize]) -> Result<ReadyArray> {
    if let Some(strides) = reshape_strides(&x.shape, &x.strides, shape) {
        return Ok(x.with_layout(shape.to_vec(), strides, x.offset));
    }
    let c = copy(x)?;
    Ok(c.with_layout(shape.to_vec(), contiguous_strides(shape), c.offset))
}

/// Strides that view `shape` over the same elements without a copy, if they exist: each group
/// of old axes merged or split must be contiguous within itself (NumPy's no-copy reshape).
fn reshape_strides(old: &[usize], old_strides: &[isize], new: &[usize]) -> Option<Vec<isize>> {
    if old.iter().product::<usize>() == 0 {
        return Some(contiguous_strides(new));
    }
    let dims: Vec<(usize, isize)> =
        old.iter().zip(old_strides).filter(|(&n, _)| n != 1).map(|(&n, &s)| (n, s)).collect();
    let mut out = vec![0isize; new.len()];
    let (mut i, mut j) = (0usize, 0usize);
    while j < new.len() {
        if new[j] == 1 {
            out[j] = 0;
            j += 1;
            continue;
        }
        // Take old axes until their product equals the new axes' product.
        let (i0, j0) = (i, j);
        let (mut po, mut pn) = (dims.get(i)?.0, new[j]);
        i += 1;
        j += 1;
        while po != pn {
            if po < pn {
                po *= dims.get(i)?.0;
                i += 1;
            } else {
                pn *= *new.get(j)?;
                j += 1;
            }
        }
        for k in i0..i - 1 {
            if dims[k].1 != dims[k + 1].1 * dims[k + 1].0 as isize {
                return None;
            }
        }
        let mut stride = dims[i - 1].1;
        for k in (j0..j).rev() {
            out[k] = stride;
            stride *= new[k] as isize;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::reshape_strides;

    #[test]
    fn reshape_of_transposed_matrix_needs_copy() {
        assert_eq!(reshape_strides(&[3, 2], &[1, 3], &[6]), None);
    }

    #[test]
    fn splitting_a_strided_axis_is_a_view() {
        // Every other row of a (8, 4) matrix, reshaped (2, 2, 4).
        assert_eq!(reshape_strides(&[4, 4], &[8, 1], &[2, 2, 4]), Some(vec![16, 8, 1]));
        assert_eq!(reshape_strides(&[2, 3], &[3, 1], &[3, 1, 2]), Some(vec![2, 2, 1]));
    }
}
