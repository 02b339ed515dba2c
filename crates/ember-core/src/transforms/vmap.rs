//! `vmap`: vectorise a function over a batch axis of some of its arguments.
//!
//! The function is traced once on one example (index 0 of each batched argument), then the
//! recorded ops are replayed on the whole batch with each op's batching rule (`batching.rs`),
//! tracking where the batch axis of every array is. Ops that touch no batched value keep
//! their traced result.

use super::tape;
use crate::array::Array;
use crate::ops::{self, normalize_axis, Slice};
use crate::{bail, Result};
use std::collections::HashMap;

/// An array of a batched computation and the position of its batch axis (`None`: the same
/// value for every batch element).
pub(crate) type Batched = (Array, Option<usize>);

/// `f` mapped over axis `in_axes[i]` of argument `i` (`None`: not batched), stacking output
/// `j` along `out_axes[j]`. Negative axes count from the end, as in MLX.
pub fn vmap<F>(
    f: F,
    in_axes: &[Option<isize>],
    out_axes: &[Option<isize>],
) -> impl Fn(&[Array]) -> Result<Vec<Array>>
where
    F: Fn(&[Array]) -> Result<Vec<Array>>,
{
    let (in_axes, out_axes) = (in_axes.to_vec(), out_axes.to_vec());
    move |args: &[Array]| {
        if in_axes.len() != args.len() {
            bail!("vmap", "{} in_axes for {} arguments", in_axes.len(), args.len());
        }
        let mut size = None;
        let mut axes = Vec::with_capacity(args.len());
        for (i, (x, ax)) in args.iter().zip(&in_axes).enumerate() {
            let ax = ax.map(|a| normalize_axis("vmap", a, x.ndim())).transpose()?;
            if let Some(a) = ax {
                let n = x.shape()[a];
                if size.is_some_and(|s| s != n) {
                    bail!(
                        "vmap",
                        "argument {} has {} elements on its batch axis, others {}",
                        i,
                        n,
                        size.unwrap_or(0)
                    );
                }
                size = Some(n);
            }
            axes.push(ax);
        }
        let Some(size) = size else { bail!("vmap", "at least one argument must be batched") };
        // One example of each batched argument stands in for the batch while tracing.
        let examples = args
            .iter()
            .zip(&axes)
            .map(|(x, ax)| match ax {
                Some(a) => example(x, *a),
                None => Ok(x.clone()),
            })
            .collect::<Result<Vec<_>>>()?;
        let (outputs, recorded) = tape::trace(|| f(&examples));
        let outputs = outputs?;
        if out_axes.len() != outputs.len() {
            bail!("vmap", "{} out_axes for {} outputs", out_axes.len(), outputs.len());
        }
        let mut batched: HashMap<usize, Batched> = HashMap::new();
        for ((e, x), ax) in examples.iter().zip(args).zip(&axes) {
            if ax.is_some() {
                batched.insert(e.id(), (x.clone(), *ax));
            }
        }
        for op in &recorded {
            let inputs: Vec<Batched> = op
                .inputs
                .iter()
                .map(|x| batched.get(&x.id()).cloned().unwrap_or((x.clone(), None)))
                .collect();
            if inputs.iter().all(|(_, ax)| ax.is_none()) {
                continue;
            }
            let results = op.op.vmap(&inputs, size)?;
            for (i, r) in results.into_iter().enumerate() {
                batched.insert(op.output_id(i), r);
            }
        }
        outputs
            .iter()
            .zip(&out_axes)
            .map(|(y, out_ax)| {
                let (value, ax) = batched.get(&y.id()).cloned().unwrap_or((y.clone(), None));
                place_batch_axis(&value, ax, *out_ax, size)
            })
            .collect()
    }
}

/// Element 0 of `x` along `axis`, without that axis.
fn example(x: &Array, axis: usize) -> Result<Array> {
    let first = ops::slice_axis(x, axis as isize, Slice::range(0, 1))?;
    ops::squeeze(&first, Some(&[axis as isize]))
}

/// Moves the batch axis of an output to `out_axis` (broadcasting an unbatched output).
fn place_batch_axis(
    value: &Array,
    ax: Option<usize>,
    out_axis: Option<isize>,
    size: usize,
) -> Result<Array> {
    match (ax, out_axis) {
        (None, None) => Ok(value.clone()),
        (Some(_), None) => bail!("vmap", "an output with out_axes None depends on the batch"),
        (ax, Some(out)) => {
            let front = to_front(value, ax, size)?;
            let out = normalize_axis("vmap", out, front.ndim())?;
            ops::moveaxis(&front, 0, out as isize)
        }
    }
}

/// `x` with its batch axis first (an unbatched `x` is broadcast to `size` copies).
pub(crate) fn to_front(x: &Array, ax: Option<usize>, size: usize) -> Result<Array> {
    match ax {
        Some(0) => Ok(x.clone()),
        Some(a) => ops::moveaxis(x, a as isize, 0),
        None => {
            let mut shape = vec![size];
            shape.extend_from_slice(x.shape());
            ops::broadcast_to(&ops::expand_dims(x, &[0])?, &shape)
        }
    }
}
