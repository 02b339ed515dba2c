//! Evaluation: order the pending graph (iteratively), run each op on its stream's backend,
//! and mark outputs ready, dropping each op as soon as it has run so that intermediates
//! nobody holds are freed during the pass.

use crate::array::{Array, OpNode, ReadyArray, State};
use crate::backend::backend_for;
use crate::{bail, Result};
use std::collections::HashSet;
use std::sync::Arc;

/// Computes every array in `arrays` and everything they depend on.
pub fn eval(arrays: &[&Array]) -> Result<()> {
    for op_node in topological_order(arrays) {
        run(&op_node)?;
    }
    Ok(())
}

/// Pending op nodes reachable from `arrays`, inputs before users (iterative DFS).
fn topological_order(arrays: &[&Array]) -> Vec<Arc<OpNode>> {
    let mut order = Vec::new();
    let mut visited: HashSet<*const OpNode> = HashSet::new();
    let mut stack: Vec<(Arc<OpNode>, bool)> =
        arrays.iter().filter_map(|a| a.pending()).map(|n| (n, false)).collect();
    while let Some((node, expanded)) = stack.pop() {
        if expanded {
            order.push(node);
            continue;
        }
        if !visited.insert(Arc::as_ptr(&node)) {
            continue;
        }
        let children: Vec<Arc<OpNode>> =
            node.inputs.iter().filter_map(|a| a.pending()).collect();
        stack.push((node, true));
        for child in children {
            if !visited.contains(&Arc::as_ptr(&child)) {
                stack.push((child, false));
            }
        }
    }
    order
}

fn run(op_node: &OpNode) -> Result<()> {
    let outputs = op_node.outputs.get().map(|o| o.as_slice()).unwrap_or_default();
    let alive: Vec<_> = outputs.iter().map(|w| w.upgrade()).collect();
    let Some(first) = alive.iter().flatten().next() else {
        return Ok(()); // every output was dropped: nothing wants this result
    };
    if matches!(*first.lock(), State::Ready(_)) {
        return Ok(()); // computed meanwhile (another eval on another thread)
    }
    let stream = first.stream;
    let inputs: Vec<ReadyArray> = op_node
        .inputs
        .iter()
        .map(|a| match &*a.0.lock() {
            State::Ready(d) => Ok(d.clone()),
            State::Pending { .. } => bail!("eval", "input of {} not computed", op_node.op.name()),
        })
        .collect::<Result<_>>()?;
    let backend = backend_for(stream.device)?;
    let results = backend.eval(&op_node.op, inputs, &op_node.specs)?;
    if results.len() != outputs.len() {
        bail!("eval", "{} returned {} outputs, expected {}", op_node.op.name(), results.len(), outputs.len());
    }
    for (node, data) in alive.into_iter().zip(results) {
        if let Some(node) = node {
            debug_assert_eq!(node.shape, data.shape, "{}", op_node.op.name());
            *node.lock() = State::Ready(data);
        }
    }
    Ok(())
}
