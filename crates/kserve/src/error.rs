//! What a protocol check says back: the request was wrong (the caller's to fix), or a
//! model's signature or answer is (ours). Each service maps it into its own error.

/// An error reading or writing protocol values.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request does not follow the protocol or the model's signature.
    #[error("{0}")]
    InvalidArgument(String),
    /// A model's signature or answer is inconsistent: a bug, not the caller's.
    #[error("{0}")]
    Internal(String),
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
