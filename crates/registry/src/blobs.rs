//! Content-addressed blobs through `object_store` (a local directory by default).

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::{Error, Result};

/// Blobs named by their sha256.
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
}

fn blob_error(err: object_store::Error) -> Error {
    Error::Blob(err.to_string())
}

impl BlobStore {
    /// Opens (creating it if needed) a local blob directory.
    pub fn open(dir: &std::path::Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|err| Error::Blob(format!("create {}: {err}", dir.display())))?;
        let local = object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(blob_error)?;
        Ok(Self { inner: Arc::new(local) })
    }

    fn path(kind: &str, sha256: &str) -> Path {
        Path::from(format!("{kind}/{sha256}"))
    }

    /// Stores bytes under `kind/sha256`. The local store writes to a temporary file and
    /// renames it, so a crash never leaves a partial blob under the final name.
    pub async fn put(&self, kind: &str, sha256: &str, bytes: Bytes) -> Result<()> {
        self.inner.put(&Self::path(kind, sha256), PutPayload::from(bytes)).await.map_err(blob_error)?;
        Ok(())
    }

    /// Reads a whole blob.
    pub async fn get(&self, kind: &str, sha256: &str) -> Result<Bytes> {
        match self.inner.get(&Self::path(kind, sha256)).await {
            Ok(result) => result.bytes().await.map_err(blob_error),
            Err(object_store::Error::NotFound { .. }) => {
                Err(Error::Internal(format!("blob {kind}/{sha256} is missing from the blob store")))
            }
            Err(err) => Err(blob_error(err)),
        }
    }
}
