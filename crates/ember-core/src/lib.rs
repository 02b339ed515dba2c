//! ember-core: lazy n-dimensional arrays with MLX's semantics.
//!
//! Ops record nodes of a graph ([`Array`]); [`eval`] (or reading values) computes them on
//! the stream's backend. See docs/ARCHITECTURE.md for the path of `a + b`.

pub mod array;
pub mod backend;
pub mod buffer;
pub mod device;
mod display;
pub mod dtype;
mod error;
mod eval;
pub mod io;
pub mod op;
mod operators;
pub mod ops;
pub mod transforms;

pub use array::{Array, ReadyArray};
pub use buffer::{
    clear_cache, get_active_memory, get_cache_memory, get_memory_limit, get_peak_memory,
    reset_peak_memory, set_cache_limit, set_memory_limit,
};
pub use device::{
    default_device, default_stream, set_default_device, with_device, with_stream, Device, Stream,
};
pub use dtype::{promote_types, Dtype, Element};
pub use error::{Error, Result};
pub use eval::eval;
pub use half::{bf16, f16};
