//! Evaluation: order the pending graph (iteratively), run each op on its stream's backend,
//! and mark outputs ready, dropping each op as soon as it has run so that intermediates
//! nobody holds are freed during the pass.

use crate::array::{Array, OpNode, State};
use crate::backend::backend_for;
use crate::{bail, Result};
use smallvec::SmallVec;
use std::cell::Cell;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Graphs of at least this many ops keep the pool's other workers polling for work while they
/// run; for fewer, waking them costs more than it saves.
const POLLING_FROM_OPS: usize = 32;

/// How long a polling worker goes without finding work before it returns to rayon's own
/// idling, which soon sleeps: far longer than the serial stretch between two ops' parallel
/// loops in a decoding step (tens of microseconds), and a bound on how long polling can hold
/// up whatever that worker was doing beneath it.
const POLL_IDLE_LIMIT: Duration = Duration::from_micros(500);

thread_local! {
    /// Whether this worker is polling for an evaluation already.
    static POLLING: Cell<bool> = const { Cell::new(false) };
}

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
    let polling = order.len() >= POLLING_FROM_OPS;
    let run_all = move || order.into_iter().try_for_each(|op_node| run(&op_node));
    let done = &AtomicBool::new(false);
    // `scope` runs its closure on this thread when it is a worker, else on a worker.
    rayon::scope(|s| {
        if polling {
            let owner = rayon::current_thread_index();
            for _ in 1..rayon::current_num_threads() {
                s.spawn(move |_| poll_for_work(owner, done));
            }
        }
        let result = run_all();
        done.store(true, Ordering::Relaxed);
        result
    })
}

/// Takes the pool's pending work until `done`, spinning in between. A worker with nothing to
/// do soon sleeps, and waking it costs more (tens of microseconds on a VM) than most ops of a
/// decoding step take: kept polling, it joins each op's parallel loop at once (+7% F16 and
/// +5-16% Q4_1 generation speed on SmolLM2-135M). Never on the evaluating thread, which can
/// pick this job up while it waits inside a kernel and must go back to the graph, nor on a
/// worker polling already.
fn poll_for_work(owner: Option<usize>, done: &AtomicBool) {
    if rayon::current_thread_index() == owner || POLLING.get() {
        return;
    }
    POLLING.set(true);
    let mut idle_since = None;
    while !done.load(Ordering::Relaxed) {
        if rayon::yield_now() == Some(rayon::Yield::Executed) {
            idle_since = None;
        } else if idle_since.get_or_insert_with(Instant::now).elapsed() > POLL_IDLE_LIMIT {
            break;
        } else {
            std::hint::spin_loop();
        }
    }
    POLLING.set(false);
}

/// Hashes a node's address: one multiply, where the default SipHash cost as much as running
/// a small op's bookkeeping.
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    /// Only addresses are hashed here; other keys still hash, byte by byte. (Calling
    /// `write_u64` from here would recurse: its default implementation calls `write`.)
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(FIBONACCI);
        }
    }

    fn write_usize(&mut self, address: usize) {
        // Fibonacci hashing: the high bits the table uses mix every bit of the address.
        self.0 = (address as u64).wrapping_mul(FIBONACCI);
    }
}

/// 2^64 divided by the golden ratio, odd: multiplying by it spreads keys over the high bits.
const FIBONACCI: u64 = 0x9e37_79b9_7f4a_7c15;

/// Pending op nodes reachable from `arrays`, inputs before users (iterative DFS).
fn topological_order(arrays: &[&Array]) -> Vec<Arc<OpNode>> {
    let mut order = Vec::new();
    let mut visited: HashSet<*const OpNode, BuildHasherDefault<AddressHasher>> = HashSet::default();
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
        let at = stack.len();
        stack.extend(
            node.inputs
                .iter()
                .filter_map(|a| a.pending())
                .filter(|child| !visited.contains(&Arc::as_ptr(child)))
                .map(|child| (child, false)),
        );
        // The node is finished after its inputs, so it goes beneath them on the stack.
        stack.insert(at, (node, true));
    }
    order
}

fn run(op_node: &OpNode) -> Result<()> {
    let mut done = op_node.done.lock().unwrap_or_else(|e| e.into_inner());
    if *done {
        return Ok(()); // run by another thread's eval
    }
    let outputs = op_node.outputs.get().map(|o| o.as_slice()).unwrap_or_default();
    let alive: SmallVec<[_; 2]> = outputs.iter().map(|w| w.upgrade()).collect();
    let Some(first) = alive.iter().flatten().next() else {
        return Ok(()); // every output was dropped: nothing wants this result
    };
    let stream = first.stream;
    let tracing = crate::transforms::tape::is_tracing();
    let mut inputs: SmallVec<[_; 4]> = SmallVec::with_capacity(op_node.inputs.len());
    let mut donated: SmallVec<[usize; 4]> = SmallVec::new();
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
            State::Pending { .. } => {
                bail!("eval", "input {i} of {} still pending", op_node.op.name())
            }
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
        bail!(
            "eval",
            "{} returned {} outputs, expected {}",
            op_node.op.name(),
            results.len(),
            outputs.len()
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn the_address_hasher_spreads_addresses_and_hashes_other_keys() {
        let build = BuildHasherDefault::<AddressHasher>::default();
        // Neighbouring nodes differ in the high bits that a hash table indexes by.
        let top = |address: usize| build.hash_one(address as *const OpNode) >> 57;
        let tops: HashSet<u64> = (0..64).map(|i| top(0x7f00_0000_1000 + 176 * i)).collect();
        assert!(tops.len() > 32, "{} distinct of 64", tops.len());
        // Keys that are not addresses go through `write`, which must not recurse.
        assert_ne!(build.hash_one(1u32), build.hash_one(2u32));
        assert_ne!(build.hash_one("ab"), build.hash_one("ba"));
    }
}
