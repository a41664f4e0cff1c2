use thiserror::Error;

/// Errors of the KvStore.
#[derive(Debug, Error)]
pub enum Error {
    /// The store could not be reached or failed; callers may retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The lease expired or was revoked.
    #[error("lease {0} not found (expired or revoked)")]
    LeaseNotFound(i64),
    /// A watch asked for revisions the store no longer keeps; re-read and watch again.
    #[error("revision {requested} is compacted; oldest kept is {oldest}")]
    Compacted {
        /// The revision asked for.
        requested: i64,
        /// The oldest revision still available.
        oldest: i64,
    },
    /// The embedded store file could not be opened or written.
    #[error("embedded store: {0}")]
    Embedded(String),
    /// The settings to reach the store do not fit together.
    #[error("store settings: {0}")]
    InvalidArgument(String),
    /// A stored value could not be decoded.
    #[error("corrupt record at {key}: {reason}")]
    Corrupt {
        /// The key holding the value.
        key: String,
        /// What was wrong with it.
        reason: String,
    },
}

/// Result with the store's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<etcd_client::Error> for Error {
    fn from(err: etcd_client::Error) -> Self {
        let text = err.to_string();
        if text.contains("lease not found") {
            // etcd reports an expired lease this way; the id is not in the message.
            return Error::LeaseNotFound(0);
        }
        Error::Unavailable(text)
    }
}

impl From<redb::Error> for Error {
    fn from(err: redb::Error) -> Self {
        Error::Embedded(err.to_string())
    }
}

macro_rules! redb_error {
    ($($ty:ty),*) => {$(
        impl From<$ty> for Error {
            fn from(err: $ty) -> Self {
                Error::Embedded(err.to_string())
            }
        }
    )*};
}
redb_error!(redb::DatabaseError, redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);
