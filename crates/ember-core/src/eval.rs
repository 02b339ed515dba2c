//! Evaluation: order the pending graph (iteratively), run each op on its stream's backend,
//! and mark outputs ready, dropping each op as soon as it has run so that intermediates
//! nobody holds are freed during the pass.

use crate::array::{Array, OpNode, State};
use crate::backend::backend_for;
use crate::{bail, Result};
use std::collections::HashSet;
use std::sync::Arc;

/// Computes every array in `arrays` and everything they depend on.
///
/// The ops run on a thread of rayon's pool: kernels split their work with rayon, and from
/// inside the pool each split is a cheap steal by an idle worker, where from any other
/// thread every kernel would hand its work to the pool and sleep until it came back.
pub fn eval(arrays: &[&Array]) -> Result<()> {
    let order = topological_order(arrays);
    if order.is_empty() {
        return Ok(());
    }
    let run_all = move || order.into_iter().try_for_each(|op_node| run(&op_node));
    if rayon::current_thread_index().is_some() {
        run_all()
    } else {
        rayon::scope(|_| run_all())
    }
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
    let mut done = op_node.done.lock().unwrap_or_else(|e| e.into_inner());
    if *done {
        return Ok(()); // run by another thread's eval
    }
    let outputs = op_node.outputs.get().map(|o| o.as_slice()).unwrap_or_default();
    let alive: Vec<_> = outputs.iter().map(|w| w.upgrade()).collect();
    let Some(first) = alive.iter().flatten().next() else {
        return Ok(()); // every output was dropped: nothing wants this result
    };
    let stream = first.stream;
    let tracing = crate::transforms::tape::is_tracing();
    let mut inputs = Vec::with_capacity(op_node.inputs.len());
    let mut donated = Vec::new();
    for (i, a) in op_node.inputs.iter().enumerate() {
        // Held only by this op: hand the data over so the kernel may reuse its buffer
        // (unless a transform is tracing: its backward pass may still read the input).
        let unique = Arc::strong_count(&a.0) == 1 && !tracing;
        let mut state = a.0.lock();
        match &*state {
            State::Ready(d) if !unique => inputs.push(d.clone()),
            State::Ready(_) => {
                let State::Ready(d) = std::mem::replace(&mut *state, State::Donated) else {
                    unreachable!("matched Ready above")
                };
                inputs.push(d);
                donated.push(i);
            }
            State::Pending { .. } => bail!("eval", "input {i} of {} still pending", op_node.op.name()),
            State::Donated => bail!("eval", "input {i} of {} was donated", op_node.op.name()),
        }
    }
    let backend = backend_for(stream.device)?;
    let results = match backend.eval(&op_node.op, &mut inputs, &op_node.specs) {
        Ok(r) => r,
        Err(e) => {
            // Give donated inputs back so that a later eval can retry.
            for i in donated {
                *op_node.inputs[i].0.lock() = State::Ready(inputs[i].clone());
            }
            return Err(e);
        }
    };
    if results.len() != outputs.len() {
        bail!("eval", "{} returned {} outputs, expected {}", op_node.op.name(), results.len(), outputs.len());
    }
    for (node, data) in alive.into_iter().zip(results) {
        if let Some(node) = node {
            debug_assert_eq!(node.shape, data.shape, "{}", op_node.op.name());
            *node.lock() = State::Ready(data);
        }
    }
    *done = true;
    Ok(())
}
