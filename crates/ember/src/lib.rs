//! ember: an array framework in the spirit of MLX — lazy arrays, unified memory, MLX's op
//! names and semantics.
//!
//! ```
//! use ember::prelude::*;
//! let x = Array::from_slice(&[1.0f32, -2.0, 3.0, -4.0], &[2, 2]).unwrap();
//! let w = Array::from_slice(&[0.5f32, 1.0, -1.0, 2.0], &[2, 2]).unwrap();
//! let y = ops::maximum(&ops::matmul(&x, &w).unwrap(), &Array::scalar(0.0f32)).unwrap();
//! eval(&[&y]).unwrap();
//! assert_eq!(y.to_vec::<f32>().unwrap(), vec![2.5, 0.0, 5.5, 0.0]);
//! ```

pub use ember_core::*;

/// Everything needed for everyday use: `use ember::prelude::*`.
pub mod prelude {
    pub use ember_core::ops::{self, Slice};
    pub use ember_core::transforms::{self, Tree};
    pub use ember_core::{eval, Array, Device, Dtype, Error, Result, Stream};
}
