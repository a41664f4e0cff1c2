use thiserror::Error;

/// Errors of training, inference and artifacts.
#[derive(Debug, Error)]
pub enum Error {
    /// The CSV could not be used for training.
    #[error("dataset: {0}")]
    Dataset(String),
    /// A training parameter is out of range.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParam {
        /// The parameter's name.
        name: String,
        /// What was wrong and what is allowed.
        reason: String,
    },
    /// An inference input does not match the model's signature.
    #[error("{0}")]
    InvalidInput(String),
    /// The artifact is not a valid modelplane artifact.
    #[error("artifact: {0}")]
    Artifact(String),
    /// Training was stopped by its caller.
    #[error("training cancelled")]
    Cancelled,
}

/// Result with the model crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
