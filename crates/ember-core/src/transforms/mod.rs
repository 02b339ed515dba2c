//! Function transforms. Each traces the user's function on the [`tape`] and then walks the
//! recorded ops with every op's rule (`rules/`).

mod autodiff;
pub(crate) mod batching;
pub(crate) mod compile;
mod custom;
mod rules;
pub(crate) mod tape;
mod tree;
mod vmap;

pub use autodiff::{grad, jvp, stop_gradient, value_and_grad, vjp};
pub use compile::{
    compile, compile_with, disable_compile, enable_compile, CompileOptions, CompileStats, Compiled,
    FusedInstr, FusedProgram,
};
pub use custom::{checkpoint, CustomFunction, CustomOp};
pub use tree::Tree;
pub use vmap::vmap;
