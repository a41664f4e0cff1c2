use thiserror::Error;

/// Errors of the worker.
#[derive(Clone, Debug, Error)]
pub enum Error {
    /// The model or version is unknown here.
    #[error("{0}")]
    NotFound(String),
    /// The request does not match the model.
    #[error("{0}")]
    InvalidArgument(String),
    /// Known but not loaded and ready (yet, or any more); a retry elsewhere may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// The version's queue is full.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The request's deadline passed before it was computed.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// Anything that should not happen.
    #[error("internal: {0}")]
    Internal(String),
}

/// Result with the worker's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<modelplane_model::Error> for Error {
    fn from(err: modelplane_model::Error) -> Self {
        match err {
            modelplane_model::Error::InvalidInput(message) => Error::InvalidArgument(message),
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<modelplane_kserve::Error> for Error {
    fn from(err: modelplane_kserve::Error) -> Self {
        match err {
            modelplane_kserve::Error::InvalidArgument(message) => Error::InvalidArgument(message),
            modelplane_kserve::Error::Internal(message) => Error::Internal(message),
        }
    }
}

impl From<modelplane_onnx::Error> for Error {
    fn from(err: modelplane_onnx::Error) -> Self {
        match err {
            modelplane_onnx::Error::InvalidInput(message) => Error::InvalidArgument(message),
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        let message = err.to_string();
        match err {
            Error::NotFound(_) => tonic::Status::not_found(message),
            Error::InvalidArgument(_) => tonic::Status::invalid_argument(message),
            Error::Unavailable(_) => tonic::Status::unavailable(message),
            Error::ResourceExhausted(_) => tonic::Status::resource_exhausted(message),
            Error::DeadlineExceeded(_) => tonic::Status::deadline_exceeded(message),
            Error::Internal(_) => {
                tracing::error!(error = %message, "worker internal error");
                tonic::Status::internal(message)
            }
        }
    }
}
