//! ember's CPU kernels. They know nothing of graphs or arrays: each takes typed slices with a
//! strided layout and writes a contiguous output. `ember-core`'s CPU backend maps ops onto them.

pub mod affine;
pub mod affine_matmul;
pub mod attention;
pub mod conv;
pub mod fast;
pub mod fused;
pub mod gemm_bf16;
pub mod ggml;
pub mod ggml_quantize;
pub mod half_weights;
pub mod index;
pub mod matmul;
pub mod quantized;
mod quantized_k;
pub mod quantized_packed;
pub mod random;
pub mod reduce;
pub mod scalar;
pub mod scan;
pub mod sort;
pub mod stream;
pub mod strided;
pub mod vmap;
pub mod vmath;

pub use half::{bf16, f16};
pub use scalar::num_like;
pub use scalar::{cast, BitOps, Float, FloatElem, Scalar};
pub use strided::View;
