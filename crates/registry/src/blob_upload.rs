//! An upload on its way into the blob store: chunks go to a multipart upload of a
//! staging object as they arrive (hashed beside them on the blocking pool), so the registry holds a
//! few MiB of an upload, never the whole of it.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use modelplane_service::StreamHasher;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use tokio::io::AsyncWriteExt;

use crate::blobs::{BlobStore, STAGING, blob_error};
use crate::{Error, Result};

/// Parts of an upload in flight to the store at once.
const PARTS_IN_FLIGHT: usize = 2;

/// Writes one upload to a staging object; [`BlobWriter::finish`] or
/// [`BlobWriter::abort`] ends it (dropped, a local staging file is removed too).
pub struct BlobWriter {
    upload: WriteMultipart,
    location: Path,
    hasher: StreamHasher,
    size: u64,
}

/// An upload stored under its staging name, with what it hashed to.
#[derive(Debug)]
pub struct StagedBlob {
    pub(crate) location: Path,
    /// Lowercase hex sha256 of the bytes.
    pub sha256: String,
    /// Number of bytes.
    pub size: u64,
}

impl BlobWriter {
    pub(crate) async fn begin(blobs: &BlobStore) -> Result<Self> {
        let location = Path::from(format!("{STAGING}/{}", uuid::Uuid::new_v4()));
        let upload = blobs.inner.put_multipart(&location).await.map_err(blob_error)?;
        Ok(Self { upload: WriteMultipart::new(upload), location, hasher: StreamHasher::new(), size: 0 })
    }

    /// Bytes received so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Hashes and writes a chunk; waits while too many parts are in flight, so a fast
    /// sender is slowed to the store's pace instead of filling memory. The hash is made
    /// beside the upload (see [`StreamHasher`]), not in its way.
    pub async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.hasher.update(chunk.clone()).await.map_err(|err| Error::Internal(err.to_string()))?;
        self.size += chunk.len() as u64;
        self.upload.put(chunk);
        self.upload.wait_for_capacity(PARTS_IN_FLIGHT).await.map_err(blob_error)
    }

    /// Completes the staging object (durably, locally) and says what it hashed to.
    pub async fn finish(self) -> Result<StagedBlob> {
        self.upload.finish().await.map_err(blob_error)?;
        let sha256 = self.hasher.finish().await.map_err(|err| Error::Internal(err.to_string()))?;
        Ok(StagedBlob { location: self.location, sha256, size: self.size })
    }

    /// Abandons the upload; nothing of it stays.
    pub async fn abort(self) {
        if let Err(err) = self.upload.abort().await {
            tracing::warn!(staging = %self.location, error = %err, "could not abort an upload");
        }
    }
}

/// A staged blob as a local file, to load it for checking: the file itself in a local
/// store, a temporary copy (removed on drop) from an object store.
pub(crate) struct LocalBlob {
    pub path: PathBuf,
    temporary: bool,
}

impl Drop for LocalBlob {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl BlobStore {
    /// The staged blob as a local file; see [`LocalBlob`].
    pub(crate) async fn local_file(&self, staged: &StagedBlob) -> Result<LocalBlob> {
        if let Some(dir) = &self.dir {
            let path = staged.location.parts().fold(dir.clone(), |path, part| path.join(part.as_ref()));
            return Ok(LocalBlob { path, temporary: false });
        }
        copy_to_temporary(&self.inner, &staged.location).await
    }
}

async fn copy_to_temporary(store: &Arc<dyn ObjectStore>, location: &Path) -> Result<LocalBlob> {
    let path = std::env::temp_dir().join(format!("modelplane-check-{}", uuid::Uuid::new_v4()));
    let blob = LocalBlob { path, temporary: true };
    let io = |err: std::io::Error| Error::Blob(format!("temporary copy {}: {err}", blob.path.display()));
    let mut file = tokio::fs::File::create(&blob.path).await.map_err(io)?;
    let mut stream = store.get(location).await.map_err(blob_error)?.into_stream();
    while let Some(piece) = stream.try_next().await.map_err(blob_error)? {
        file.write_all(&piece).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    Ok(blob)
}
