//! The error type of model loading and generation. Messages name the file, the metadata field
//! or the limit involved.

/// Everything that can go wrong loading a model or generating with it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Array or file errors from ember-core (ops, GGUF parsing).
    #[error(transparent)]
    Core(#[from] ember_core::Error),
    /// The model file is readable but describes something ember cannot run.
    #[error("{path}: {msg}")]
    Model { path: String, msg: String },
    #[error("[tokenizer] {0}")]
    Tokenizer(String),
    #[error("[chat template] {0}")]
    Template(String),
    /// Generation arguments that cannot work (a prompt longer than the context, ...).
    #[error("[generate] {0}")]
    Generate(String),
    /// Fetching the default model failed.
    #[error("[default model] {0}")]
    Fetch(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn model(path: impl AsRef<std::path::Path>, msg: impl Into<String>) -> Error {
        Error::Model { path: path.as_ref().display().to_string(), msg: msg.into() }
    }
}
