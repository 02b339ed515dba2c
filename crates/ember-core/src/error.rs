//! The one error type. Op errors read `[op] what was wrong`, as MLX's do; file errors name the
//! file and the field.

/// Everything that can go wrong in ember.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An op was given arguments it cannot accept (shapes, axes, dtypes).
    #[error("[{op}] {msg}")]
    Op { op: &'static str, msg: String },
    /// A file could not be read or written, or its contents are malformed.
    #[error("{path}: {msg}")]
    File { path: String, msg: String },
    /// Evaluation would exceed the memory limit.
    #[error("[eval] {0}")]
    Memory(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn op(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Op { op, msg: msg.into() }
    }

    pub fn file(path: impl AsRef<std::path::Path>, msg: impl Into<String>) -> Self {
        Error::File { path: path.as_ref().display().to_string(), msg: msg.into() }
    }
}

/// Returns early with an op error: `bail!("matmul", "shapes {:?} and {:?}", a, b)`.
#[macro_export]
macro_rules! bail {
    ($op:expr, $($arg:tt)*) => {
        return Err($crate::Error::op($op, format!($($arg)*)))
    };
}
