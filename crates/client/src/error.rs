/// What went wrong talking to the registry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry answered with an error status.
    #[error("{what}: {} ({:?})", status.message(), status.code())]
    Status {
        /// What was being done.
        what: &'static str,
        /// The registry's answer.
        status: tonic::Status,
    },
    /// Reading the source or writing the destination failed.
    #[error("{0}")]
    Io(String),
    /// The bytes that arrived do not hash to the sha256 the registry's record names.
    #[error("downloaded {what} is corrupt: its bytes hash to {actual}, the record says {expected} (DataLoss)")]
    Corrupt {
        /// "artifact" or "dataset".
        what: &'static str,
        /// The record's sha256.
        expected: String,
        /// What arrived hashes to this.
        actual: String,
    },
    /// The registry's stream did not follow the protocol.
    #[error("{0}")]
    Protocol(String),
    /// The registry address is not usable.
    #[error("{0}")]
    Endpoint(String),
}

/// Result with the client's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The gRPC code this error stands for (the registry's own, or the closest one).
    pub fn code(&self) -> tonic::Code {
        match self {
            Self::Status { status, .. } => status.code(),
            Self::Io(_) => tonic::Code::Unavailable,
            Self::Corrupt { .. } => tonic::Code::DataLoss,
            Self::Protocol(_) => tonic::Code::Internal,
            Self::Endpoint(_) => tonic::Code::InvalidArgument,
        }
    }

    /// The registry's message, or this error's text.
    pub fn message(&self) -> String {
        match self {
            Self::Status { status, .. } => status.message().to_owned(),
            other => other.to_string(),
        }
    }

    pub(crate) fn status(what: &'static str) -> impl Fn(tonic::Status) -> Self {
        move |status| Self::Status { what, status }
    }
}
