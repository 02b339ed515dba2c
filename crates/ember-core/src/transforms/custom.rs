//! Custom gradients (`CustomFunction`, MLX's `mx.custom_function`) and `checkpoint`.
//!
//! Calling a custom function runs its forward with the tape paused, then records one
//! `Op::Custom` whose inputs are the primals followed by the forward's outputs and whose
//! outputs are those values passed through. Transforms therefore see a single op and use
//! the user's rule; without a rule they differentiate the forward again, which recomputes it
//! in the backward pass: that is what `checkpoint` is.

use super::{autodiff, tape};
use crate::array::Array;
use crate::op::{Op, OutSpec};
use crate::Result;
use std::sync::Arc;

type ForwardFn = dyn Fn(&[Array]) -> Result<Vec<Array>> + Send + Sync;
/// `(primals, cotangents, outputs) -> one cotangent per primal`.
type VjpFn = dyn Fn(&[Array], &[Array], &[Array]) -> Result<Vec<Array>> + Send + Sync;
/// `(primals, tangents) -> one tangent per output`.
type JvpFn = dyn Fn(&[Array], &[Array]) -> Result<Vec<Array>> + Send + Sync;

/// A function with optional user-defined vjp and jvp rules.
#[derive(Clone)]
pub struct CustomFunction {
    forward: Arc<ForwardFn>,
    vjp: Option<Arc<VjpFn>>,
    jvp: Option<Arc<JvpFn>>,
}

/// The recorded op of a custom function call; compared by the function's identity.
#[derive(Clone)]
pub struct CustomOp {
    function: CustomFunction,
    primals: usize,
}

impl CustomFunction {
    pub fn new(forward: impl Fn(&[Array]) -> Result<Vec<Array>> + Send + Sync + 'static) -> Self {
        CustomFunction { forward: Arc::new(forward), vjp: None, jvp: None }
    }

    /// Sets the vjp rule: `(primals, cotangents, outputs)` to one cotangent per primal.
    pub fn with_vjp(
        mut self,
        vjp: impl Fn(&[Array], &[Array], &[Array]) -> Result<Vec<Array>> + Send + Sync + 'static,
    ) -> Self {
        self.vjp = Some(Arc::new(vjp));
        self
    }

    /// Sets the jvp rule: `(primals, tangents)` to one tangent per output.
    pub fn with_jvp(
        mut self,
        jvp: impl Fn(&[Array], &[Array]) -> Result<Vec<Array>> + Send + Sync + 'static,
    ) -> Self {
        self.jvp = Some(Arc::new(jvp));
        self
    }

    /// Applies the function.
    pub fn call(&self, primals: &[Array]) -> Result<Vec<Array>> {
        let outputs = tape::paused(|| (self.forward)(primals))?;
        let op = CustomOp { function: self.clone(), primals: primals.len() };
        Array::from_op_multi(Op::Custom(op), [primals, outputs.as_slice()].concat())
    }
}

/// `f` recomputed in the backward pass instead of keeping its intermediates alive.
pub fn checkpoint(
    f: impl Fn(&[Array]) -> Result<Vec<Array>> + Send + Sync + 'static,
) -> impl Fn(&[Array]) -> Result<Vec<Array>> {
    let function = CustomFunction::new(f);
    move |xs| function.call(xs)
}

impl CustomOp {
    /// How many inputs are primals (the rest are the forward's outputs).
    pub(crate) fn primals(&self) -> usize {
        self.primals
    }

    /// The user's forward on `primals`, recorded like any other function.
    pub(crate) fn forward(&self, primals: &[Array]) -> Result<Vec<Array>> {
        (self.function.forward)(primals)
    }

    pub(crate) fn infer(&self, inputs: &[&Array]) -> Vec<OutSpec> {
        inputs[self.primals..].iter().map(|a| (a.shape().to_vec(), a.dtype())).collect()
    }

    /// The primals' cotangents for `argnums`; the forward's outputs (inputs past the
    /// primals) get zeros, since their gradient flows through the rule.
    pub(crate) fn vjp(
        &self,
        inputs: &[Array],
        outputs: &[Array],
        cotangents: &[Array],
        argnums: &[usize],
    ) -> Result<Vec<Array>> {
        let primals = &inputs[..self.primals];
        let cots = match &self.function.vjp {
            Some(rule) => rule(primals, cotangents, outputs)?,
            None => autodiff::vjp(|xs| (self.function.forward)(xs), primals, cotangents)?.1,
        };
        if cots.len() != self.primals {
            crate::bail!(
                "custom_function",
                "vjp returned {} cotangents for {} primals",
                cots.len(),
                self.primals
            );
        }
        argnums
            .iter()
            .map(|&i| {
                if i < self.primals {
                    Ok(cots[i].clone())
                } else {
                    crate::ops::zeros_like(&inputs[i])
                }
            })
            .collect()
    }

    pub(crate) fn jvp(&self, inputs: &[Array], tangents: &[Option<Array>]) -> Result<Vec<Array>> {
        let primals = &inputs[..self.primals];
        let tans = primals
            .iter()
            .zip(tangents)
            .map(|(p, t)| t.clone().map_or_else(|| crate::ops::zeros_like(p), Ok))
            .collect::<Result<Vec<_>>>()?;
        match &self.function.jvp {
            Some(rule) => rule(primals, &tans),
            None => Ok(autodiff::jvp(|xs| (self.function.forward)(xs), primals, &tans)?.1),
        }
    }
}

impl PartialEq for CustomOp {
    fn eq(&self, o: &Self) -> bool {
        Arc::ptr_eq(&self.function.forward, &o.function.forward) && self.primals == o.primals
    }
}
impl Eq for CustomOp {}
impl std::hash::Hash for CustomOp {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        (Arc::as_ptr(&self.function.forward) as *const u8 as usize).hash(h);
        self.primals.hash(h);
    }
}
impl std::fmt::Debug for CustomOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CustomOp({} primals)", self.primals)
    }
}
