use thiserror::Error;

/// Errors of the trainer.
#[derive(Debug, Error)]
pub enum Error {
    /// Unknown job.
    #[error("{0}")]
    NotFound(String),
    /// A malformed job spec.
    #[error("{0}")]
    InvalidArgument(String),
    /// A limit was exceeded.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The store or registry could not be reached.
    #[error("{0}")]
    Unavailable(String),
    /// Metadata store failure.
    #[error(transparent)]
    Store(#[from] modelplane_store::Error),
    /// Anything that should not happen.
    #[error("internal: {0}")]
    Internal(String),
    /// The job was cancelled while it ran.
    #[error("cancelled")]
    Cancelled,
}

/// Result with the trainer's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        let message = err.to_string();
        match err {
            Error::NotFound(_) => tonic::Status::not_found(message),
            Error::InvalidArgument(_) => tonic::Status::invalid_argument(message),
            Error::ResourceExhausted(_) => tonic::Status::resource_exhausted(message),
            Error::Unavailable(_) | Error::Store(modelplane_store::Error::Unavailable(_)) => {
                tonic::Status::unavailable(message)
            }
            Error::Cancelled => tonic::Status::cancelled(message),
            Error::Store(_) | Error::Internal(_) => {
                tracing::error!(error = %message, "trainer internal error");
                tonic::Status::internal(message)
            }
        }
    }
}
