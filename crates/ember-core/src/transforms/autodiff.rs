//! Reverse and forward mode: `vjp`, `jvp`, `grad`, `value_and_grad`, `stop_gradient`.
//!
//! Each traces the function on fresh copies of the primals (identity views, so that every
//! primal is its own node even when the caller passes one array twice), then walks the
//! recorded ops: backwards with each op's vjp rule, or forwards with its jvp rule. Rules are
//! written with the public ops, so the results are lazy graphs that transforms can trace
//! again (grad of grad).

use super::tape;
use super::tree::Tree;
use crate::array::{Array, OpNode};
use crate::op::Op;
use crate::ops::layout::LayoutOp;
use crate::{bail, ops, Result};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// A new node with `x`'s value (a zero-copy identity view).
pub(super) fn fresh(x: &Array) -> Result<Array> {
    Array::from_op(Op::Layout(LayoutOp::Transpose((0..x.ndim()).collect())), vec![x.clone()])
}

/// The copies of the primals a function was traced on, its outputs and the ops recorded.
type Traced = (Vec<Array>, Vec<Array>, Vec<Arc<OpNode>>);

/// Runs `f` on fresh copies of `primals` while tracing; returns the copies, `f`'s outputs
/// and the ops recorded.
fn trace_on_copies(
    primals: &[Array],
    f: impl FnOnce(&[Array]) -> Result<Vec<Array>>,
) -> Result<Traced> {
    let (result, ops) = tape::trace(|| {
        let inputs = primals.iter().map(fresh).collect::<Result<Vec<_>>>()?;
        let outputs = f(&inputs)?;
        Ok::<_, crate::Error>((inputs, outputs))
    });
    let (inputs, outputs) = result?;
    Ok((inputs, outputs, ops))
}

/// The recorded ops that depend on `inputs`, in order, with which of their inputs do.
fn active_ops(ops: &[Arc<OpNode>], inputs: &[Array]) -> Vec<(Arc<OpNode>, Vec<usize>)> {
    let mut active: HashSet<usize> = inputs.iter().map(Array::id).collect();
    let mut out = Vec::new();
    for op in ops {
        let argnums: Vec<usize> =
            (0..op.inputs.len()).filter(|&i| active.contains(&op.inputs[i].id())).collect();
        if argnums.is_empty() || matches!(op.op, Op::StopGradient) {
            continue;
        }
        active.extend((0..op.specs.len()).map(|i| op.output_id(i)));
        out.push((op.clone(), argnums));
    }
    out
}

/// Every output of `op` as an array (recomputed lazily if the function dropped it).
fn outputs_of(op: &Arc<OpNode>) -> Result<Vec<Array>> {
    (0..op.specs.len()).map(|i| op.output(i)).collect()
}

/// Adds `value` to the entry for `id`.
fn accumulate(map: &mut HashMap<usize, Array>, id: usize, value: Array) -> Result<()> {
    let sum = match map.remove(&id) {
        Some(prev) => ops::add(&prev, &value)?,
        None => value,
    };
    map.insert(id, sum);
    Ok(())
}

/// `value` cast to the dtype of `like` when they differ (a rule may compute in a wider type).
fn match_dtype(value: Array, like: &Array) -> Result<Array> {
    if value.dtype() == like.dtype() {
        Ok(value)
    } else {
        value.astype(like.dtype())
    }
}

/// Reverse mode: `f`'s outputs at `primals`, and the vector-Jacobian products of
/// `cotangents` (one per output, same shapes) with respect to each primal.
pub fn vjp(
    f: impl FnOnce(&[Array]) -> Result<Vec<Array>>,
    primals: &[Array],
    cotangents: &[Array],
) -> Result<(Vec<Array>, Vec<Array>)> {
    let (inputs, outputs, ops) = trace_on_copies(primals, f)?;
    let grads = backward(&ops, &inputs, &outputs, cotangents)?;
    Ok((outputs, grads))
}

/// Walks the recorded ops backwards from `cotangents` of `outputs` to `inputs`.
fn backward(
    ops: &[Arc<OpNode>],
    inputs: &[Array],
    outputs: &[Array],
    cotangents: &[Array],
) -> Result<Vec<Array>> {
    if cotangents.len() != outputs.len() {
        bail!("vjp", "{} cotangents for {} outputs", cotangents.len(), outputs.len());
    }
    let mut cots: HashMap<usize, Array> = HashMap::new();
    for (i, (out, cot)) in outputs.iter().zip(cotangents).enumerate() {
        if out.shape() != cot.shape() {
            bail!(
                "vjp",
                "cotangent {} has shape {:?} but output has {:?}",
                i,
                cot.shape(),
                out.shape()
            );
        }
        accumulate(&mut cots, out.id(), match_dtype(cot.clone(), out)?)?;
    }
    for (op, argnums) in active_ops(ops, inputs).into_iter().rev() {
        let ids: Vec<usize> = (0..op.specs.len()).map(|i| op.output_id(i)).collect();
        if ids.iter().all(|id| !cots.contains_key(id)) {
            continue;
        }
        let outs = outputs_of(&op)?;
        let out_cots = ids
            .iter()
            .zip(&outs)
            .map(|(id, o)| cots.remove(id).map_or_else(|| ops::zeros_like(o), Ok))
            .collect::<Result<Vec<_>>>()?;
        let in_cots = op.op.vjp(&op.inputs, &outs, &out_cots, &argnums)?;
        for (&i, cot) in argnums.iter().zip(in_cots) {
            let input = &op.inputs[i];
            accumulate(&mut cots, input.id(), match_dtype(cot, input)?)?;
        }
    }
    inputs.iter().map(|x| cots.remove(&x.id()).map_or_else(|| ops::zeros_like(x), Ok)).collect()
}

/// Forward mode: `f`'s outputs at `primals`, and the Jacobian-vector products of
/// `tangents` (one per primal, same shapes) for each output.
pub fn jvp(
    f: impl FnOnce(&[Array]) -> Result<Vec<Array>>,
    primals: &[Array],
    tangents: &[Array],
) -> Result<(Vec<Array>, Vec<Array>)> {
    if tangents.len() != primals.len() {
        bail!("jvp", "{} tangents for {} primals", tangents.len(), primals.len());
    }
    for (i, (p, t)) in primals.iter().zip(tangents).enumerate() {
        if p.shape() != t.shape() {
            bail!("jvp", "tangent {} has shape {:?} but primal has {:?}", i, t.shape(), p.shape());
        }
    }
    let (inputs, outputs, ops) = trace_on_copies(primals, f)?;
    let mut tans: HashMap<usize, Array> = HashMap::new();
    for (x, t) in inputs.iter().zip(tangents) {
        tans.insert(x.id(), match_dtype(t.clone(), x)?);
    }
    for (op, _) in active_ops(&ops, &inputs) {
        let in_tans: Vec<Option<Array>> =
            op.inputs.iter().map(|x| tans.get(&x.id()).cloned()).collect();
        let outs = outputs_of(&op)?;
        let out_tans = op.op.jvp(&op.inputs, &outs, &in_tans)?;
        for (i, (t, o)) in out_tans.into_iter().zip(&outs).enumerate() {
            tans.insert(op.output_id(i), match_dtype(t, o)?);
        }
    }
    let out_tans = outputs
        .iter()
        .map(|y| tans.get(&y.id()).cloned().map_or_else(|| ops::zeros_like(y), Ok))
        .collect::<Result<Vec<_>>>()?;
    Ok((outputs, out_tans))
}

/// The loss of a function's output: a scalar array, or the first element of a list (the
/// rest are auxiliary outputs, returned untouched).
fn loss_of(out: &Tree) -> Result<&Array> {
    let loss = match out {
        Tree::List(v) if !v.is_empty() => v[0].as_array()?,
        t => t.as_array()?,
    };
    if loss.size() != 1 {
        bail!("value_and_grad", "the function must return a scalar, got shape {:?}", loss.shape());
    }
    Ok(loss)
}

/// `f` and its gradient with respect to the arguments in `argnums`, as MLX's
/// `value_and_grad`: `f` returns a scalar loss, or a list whose first element is the loss
/// and whose other elements are auxiliary outputs. The gradients mirror the arguments' trees.
pub fn value_and_grad<F>(f: F, argnums: &[usize]) -> impl Fn(&[Tree]) -> Result<(Tree, Vec<Tree>)>
where
    F: Fn(&[Tree]) -> Result<Tree>,
{
    let argnums = argnums.to_vec();
    move |args: &[Tree]| {
        if let Some(&bad) = argnums.iter().find(|&&i| i >= args.len()) {
            bail!("value_and_grad", "argnum {} but the function got {} arguments", bad, args.len());
        }
        let primals: Vec<Array> = argnums.iter().flat_map(|&i| args[i].leaves()).collect();
        let mut value = None;
        let traced = |leaves: &[Array]| -> Result<Vec<Array>> {
            let mut call_args = args.to_vec();
            let mut rest = leaves;
            for &i in &argnums {
                let n = args[i].leaves().len();
                call_args[i] = args[i].with_leaves(rest[..n].to_vec())?;
                rest = &rest[n..];
            }
            let out = f(&call_args)?;
            let loss = loss_of(&out)?.clone();
            value = Some(out);
            Ok(vec![loss])
        };
        let (inputs, outputs, ops) = trace_on_copies(&primals, traced)?;
        let seed = ops::ones_like(&outputs[0])?;
        let grads = backward(&ops, &inputs, &outputs, &[seed])?;
        let value = value.expect("the traced function ran");
        let mut rest = grads.as_slice();
        let mut trees = Vec::with_capacity(argnums.len());
        for &i in &argnums {
            let n = args[i].leaves().len();
            trees.push(args[i].with_leaves(rest[..n].to_vec())?);
            rest = &rest[n..];
        }
        Ok((value, trees))
    }
}

/// The gradient of `f` with respect to the arguments in `argnums` (see [`value_and_grad`]).
pub fn grad<F>(f: F, argnums: &[usize]) -> impl Fn(&[Tree]) -> Result<Vec<Tree>>
where
    F: Fn(&[Tree]) -> Result<Tree>,
{
    let vg = value_and_grad(f, argnums);
    move |args: &[Tree]| vg(args).map(|(_, g)| g)
}

/// `x` with its gradient stopped: the same value, but transforms treat it as a constant.
pub fn stop_gradient(x: &Array) -> Result<Array> {
    Array::from_op(Op::StopGradient, vec![x.clone()])
}
