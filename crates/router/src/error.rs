//! The router's one error: what it refuses itself (unknown model, a limit, no replica…)
//! and what a worker or the registry answered, passed on as it came. gRPC gets it through
//! `From<Error> for tonic::Status`, REST through the one HTTP mapping in `rest.rs`.

use thiserror::Error;
use tonic::Code;

/// Errors of the router.
#[derive(Debug, Error)]
pub enum Error {
    /// Unknown model, version or alias.
    #[error("{0}")]
    NotFound(String),
    /// Malformed request.
    #[error("{0}")]
    InvalidArgument(String),
    /// The request cannot be served in the router's present state (no registry address,
    /// no version to deploy).
    #[error("{0}")]
    FailedPrecondition(String),
    /// No ready replica could answer.
    #[error("{0}")]
    Unavailable(String),
    /// A limit was reached (the client's requests in flight).
    #[error("{0}")]
    ResourceExhausted(String),
    /// The call needs credentials the caller did not send.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller's deadline passed before a worker answered.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// Anything that should not happen.
    #[error("internal: {0}")]
    Internal(String),
    /// A worker's or the registry's answer, passed on to the caller with its own code
    /// and message: the router proxies it, it does not judge it.
    #[error("{}", .0.message())]
    Passed(tonic::Status),
}

/// Result with the router's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The gRPC code the caller gets.
    pub fn code(&self) -> Code {
        match self {
            Error::NotFound(_) => Code::NotFound,
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Unavailable(_) => Code::Unavailable,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::Internal(_) => Code::Internal,
            Error::Passed(status) => status.code(),
        }
    }
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Error::Passed(status)
    }
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        let code = err.code();
        match err {
            Error::Passed(status) => status,
            Error::Internal(_) => {
                let message = err.to_string();
                tracing::error!(error = %message, "router internal error");
                tonic::Status::internal(message)
            }
            Error::NotFound(message)
            | Error::InvalidArgument(message)
            | Error::FailedPrecondition(message)
            | Error::Unavailable(message)
            | Error::ResourceExhausted(message)
            | Error::DeadlineExceeded(message)
            | Error::Unauthenticated(message) => tonic::Status::new(code, message),
        }
    }
}
