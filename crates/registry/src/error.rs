use thiserror::Error;

/// Errors of the registry.
#[derive(Debug, Error)]
pub enum Error {
    /// A model, version, alias, deployment or dataset does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The thing being created exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The request is valid but the current state does not allow it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller's key does not reach this model.
    #[error("{0}")]
    PermissionDenied(String),
    /// A size limit was exceeded.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The caller's stream broke off.
    #[error("{0}")]
    Aborted(String),
    /// A stored blob no longer matches its sha256.
    #[error("{0}")]
    DataLoss(String),
    /// The metadata store failed.
    #[error(transparent)]
    Store(#[from] modelplane_store::Error),
    /// The blob store failed.
    #[error("blob store: {0}")]
    Blob(String),
    /// Anything else that should not happen.
    #[error("internal: {0}")]
    Internal(String),
}

/// Result with the registry's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        let message = err.to_string();
        match err {
            Error::NotFound(_) => tonic::Status::not_found(message),
            Error::AlreadyExists(_) => tonic::Status::already_exists(message),
            Error::InvalidArgument(_) => tonic::Status::invalid_argument(message),
            Error::FailedPrecondition(_) => tonic::Status::failed_precondition(message),
            Error::ResourceExhausted(_) => tonic::Status::resource_exhausted(message),
            Error::PermissionDenied(_) => tonic::Status::permission_denied(message),
            Error::Aborted(_) => tonic::Status::aborted(message),
            Error::DataLoss(_) => {
                tracing::error!(error = %message, "stored blob is corrupt");
                tonic::Status::data_loss(message)
            }
            Error::Store(modelplane_store::Error::Unavailable(_)) => tonic::Status::unavailable(message),
            Error::Store(_) | Error::Blob(_) | Error::Internal(_) => {
                tracing::error!(error = %message, "registry internal error");
                tonic::Status::internal(message)
            }
        }
    }
}
