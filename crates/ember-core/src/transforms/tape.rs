//! The tape: while a transform traces a function, every op recorded on this thread is also
//! appended here, in creation order (which is a topological order). Transforms read the ops
//! their function created; the tape's strong references keep those ops and their inputs
//! alive even if the function evaluates intermediates, and evaluation stops donating input
//! buffers while tracing so that the values a backward pass needs are never overwritten.
//!
//! Nested traces share the one tape: an inner transform's ops (its forward and its backward
//! pass) stay on it for the outer transform, which is what makes grad of grad work.

use crate::array::{Array, OpNode};
use std::cell::RefCell;
use std::sync::Arc;

#[derive(Default)]
struct Tape {
    depth: usize,
    ops: Vec<Arc<OpNode>>,
}

thread_local! {
    static TAPE: RefCell<Tape> = RefCell::new(Tape::default());
}

/// True while some transform on this thread is tracing.
pub(crate) fn is_tracing() -> bool {
    TAPE.with(|t| t.borrow().depth > 0)
}

/// Appends a newly recorded op when tracing.
pub(crate) fn record(op: &Arc<OpNode>) {
    TAPE.with(|t| {
        let mut t = t.borrow_mut();
        if t.depth > 0 {
            t.ops.push(op.clone());
        }
    })
}

/// The ops recorded while `f` ran, in creation order, with `f`'s result. The tape is
/// cleared when the outermost trace ends, even if `f` panics.
pub(crate) fn trace<R>(f: impl FnOnce() -> R) -> (R, Vec<Arc<OpNode>>) {
    struct Depth;
    impl Drop for Depth {
        fn drop(&mut self) {
            TAPE.with(|t| {
                let mut t = t.borrow_mut();
                t.depth -= 1;
                if t.depth == 0 {
                    t.ops.clear();
                }
            })
        }
    }
    let start = TAPE.with(|t| {
        let mut t = t.borrow_mut();
        t.depth += 1;
        t.ops.len()
    });
    let depth = Depth;
    let result = f();
    let ops = TAPE.with(|t| t.borrow().ops[start..].to_vec());
    drop(depth);
    (result, ops)
}

impl OpNode {
    /// Output `i` of this op: the live array if someone still holds it, else the same op
    /// recorded again on the same inputs (so a rule can use a value the function dropped).
    pub(crate) fn output(self: &Arc<Self>, i: usize) -> crate::Result<Array> {
        if let Some(node) = self.outputs.get().and_then(|o| o[i].upgrade()) {
            return Ok(Array(node));
        }
        let mut outs = Array::from_op_multi(self.op.clone(), self.inputs.clone())?;
        Ok(outs.swap_remove(i))
    }

    /// The identity of output `i` (see [`Array::id`]); stable while this op node lives,
    /// because its weak reference keeps the output's allocation from being reused.
    pub(crate) fn output_id(&self, i: usize) -> usize {
        self.outputs.get().map_or(0, |o| o[i].as_ptr() as usize)
    }
}

impl Array {
    /// The identity of this array's node, for maps keyed by node during a transform.
    pub(crate) fn id(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }
}

/// Runs `f` with recording paused (a custom function's forward): ops it creates are not on
/// the tape, and nested traces inside `f` get a tape of their own.
pub(crate) fn paused<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Tape>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let saved = self.0.take().unwrap_or_default();
            TAPE.with(|t| *t.borrow_mut() = saved);
        }
    }
    let _restore = Restore(Some(TAPE.with(|t| std::mem::take(&mut *t.borrow_mut()))));
    f()
}
