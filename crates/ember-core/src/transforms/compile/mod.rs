//! `compile`: trace a function once per input signature, simplify and fuse its graph, cache
//! it, and replay it on later calls, as MLX's `mx.compile` does.
//!
//! A call looks up the signature (shapes and dtypes of the arguments, or only ranks and
//! dtypes when `shapeless`). On a miss the function runs on fresh copies of the arguments
//! with the tape recording; the ops that depend on the arguments become the graph, every
//! other array they read is a constant (constant sub-graphs are computed once, at trace
//! time). The graph is simplified (`graph.rs`), its elementwise regions fused into
//! `Op::Compiled` nodes (`fuse.rs`), and cached. Replaying records the graph's ops on the
//! new arguments, so results are lazy arrays and other transforms compose with compiled
//! functions (the compiled op differentiates and batches through its plain ops).
//!
//! As in MLX, the function must be pure: a trace captures what it did for one signature,
//! side effects and values read through `item()` included. A shapeless replay on new shapes
//! re-derives the target shapes of reshapes and `broadcast_to` (`shapeless.rs`), and fails
//! clearly for a reshape it cannot re-derive.

mod fuse;
mod graph;
mod program;
mod shapeless;

pub(crate) use program::{binary_fn, unary_fn};
pub use program::{FusedInstr, FusedProgram};

use super::tape;
use crate::array::Array;
use crate::dtype::Dtype;
use crate::op::Op;
use crate::Result;
use graph::Graph;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns compilation off everywhere: compiled functions then just call the function.
pub fn disable_compile() {
    ENABLED.store(false, Ordering::Relaxed);
}

/// Turns compilation back on (the default).
pub fn enable_compile() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// How a function is compiled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompileOptions {
    /// Trace once per ranks and dtypes instead of per exact shapes.
    pub shapeless: bool,
}

/// What the trace for one signature became.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompileStats {
    /// Nodes replayed per call (a fused region counts once).
    pub nodes: usize,
    /// How many of them are fused regions.
    pub fused: usize,
    /// Instructions in all fused regions together.
    pub instructions: usize,
    /// Captured constants.
    pub constants: usize,
}

/// The cache key of one call: per argument its dtype and shape (or rank when shapeless).
type Signature = Vec<(Dtype, Vec<usize>)>;

/// A compiled function with its cache of traced graphs.
pub struct Compiled<F> {
    f: F,
    options: CompileOptions,
    cache: Mutex<HashMap<Signature, Arc<Graph>>>,
    traces: AtomicUsize,
}

impl<F> Compiled<F>
where
    F: Fn(&[Array]) -> Result<Vec<Array>>,
{
    pub fn new(f: F, options: CompileOptions) -> Self {
        Compiled { f, options, cache: Mutex::new(HashMap::new()), traces: AtomicUsize::new(0) }
    }

    /// Runs the function: replays the graph cached for the arguments' signature (tracing
    /// it first on a miss), or calls the function directly when compilation is disabled.
    pub fn call(&self, args: &[Array]) -> Result<Vec<Array>> {
        if !ENABLED.load(Ordering::Relaxed) {
            return (self.f)(args);
        }
        self.graph(args)?.replay(args)
    }

    /// How many times the function has been traced.
    pub fn trace_count(&self) -> usize {
        self.traces.load(Ordering::Relaxed)
    }

    /// The shape of the graph compiled for these arguments (tracing it if needed).
    pub fn stats(&self, args: &[Array]) -> Result<CompileStats> {
        let g = self.graph(args)?;
        let programs: Vec<&FusedProgram> = g
            .nodes
            .iter()
            .filter_map(|n| match &n.op {
                Op::Compiled(p) => Some(&**p),
                _ => None,
            })
            .collect();
        Ok(CompileStats {
            nodes: g.nodes.len(),
            fused: programs.len(),
            instructions: programs.iter().map(|p| p.instrs.len()).sum(),
            constants: g.consts.len(),
        })
    }

    fn graph(&self, args: &[Array]) -> Result<Arc<Graph>> {
        let key: Signature = args
            .iter()
            .map(|x| {
                let shape =
                    if self.options.shapeless { vec![x.ndim()] } else { x.shape().to_vec() };
                (x.dtype(), shape)
            })
            .collect();
        let cache = || self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = cache().get(&key) {
            return Ok(g.clone());
        }
        // The lock is not held while tracing: the function may call compiled functions.
        let g = Arc::new(self.trace(args)?);
        self.traces.fetch_add(1, Ordering::Relaxed);
        cache().insert(key, g.clone());
        Ok(g)
    }

    /// Traces the function on fresh copies of `args`, on a tape of its own so that an
    /// enclosing transform sees only the replayed graph.
    fn trace(&self, args: &[Array]) -> Result<Graph> {
        tape::paused(|| {
            let (result, ops) = tape::trace(|| {
                let inputs = args.iter().map(super::autodiff::fresh).collect::<Result<Vec<_>>>()?;
                let outputs = (self.f)(&inputs)?;
                Ok::<_, crate::Error>((inputs, outputs))
            });
            let (inputs, outputs) = result?;
            let mut g = Graph::capture(&inputs, &outputs, &ops)?;
            g.simplify()?;
            Ok(fuse::fuse(g))
        })
    }
}

/// `f` compiled (see the module doc); same as [`compile_with`] with default options.
pub fn compile<F>(f: F) -> impl Fn(&[Array]) -> Result<Vec<Array>>
where
    F: Fn(&[Array]) -> Result<Vec<Array>>,
{
    compile_with(f, CompileOptions::default())
}

/// `f` compiled with `options`. Use [`Compiled`] directly to inspect the cache.
pub fn compile_with<F>(f: F, options: CompileOptions) -> impl Fn(&[Array]) -> Result<Vec<Array>>
where
    F: Fn(&[Array]) -> Result<Vec<Array>>,
{
    let compiled = Compiled::new(f, options);
    move |args: &[Array]| compiled.call(args)
}
