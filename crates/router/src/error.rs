use thiserror::Error;

/// Errors of the router.
#[derive(Debug, Error)]
pub enum Error {
    /// Unknown model, version or alias.
    #[error("{0}")]
    NotFound(String),
    /// Malformed request.
    #[error("{0}")]
    InvalidArgument(String),
    /// No ready replica could answer.
    #[error("{0}")]
    Unavailable(String),
    /// A limit was reached (the client's requests in flight).
    #[error("{0}")]
    ResourceExhausted(String),
    /// Anything that should not happen.
    #[error("internal: {0}")]
    Internal(String),
}

/// Result with the router's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        let message = err.to_string();
        match err {
            Error::NotFound(_) => tonic::Status::not_found(message),
            Error::InvalidArgument(_) => tonic::Status::invalid_argument(message),
            Error::Unavailable(_) => tonic::Status::unavailable(message),
            Error::ResourceExhausted(_) => tonic::Status::resource_exhausted(message),
            Error::Internal(_) => {
                tracing::error!(error = %message, "router internal error");
                tonic::Status::internal(message)
            }
        }
    }
}
