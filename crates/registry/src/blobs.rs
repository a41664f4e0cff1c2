//! Content-addressed blobs through `object_store` (a local directory by default).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::{Error, Result};

/// Blobs named by their sha256.
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
    /// The local directory behind `inner`, for fsync and the orphan sweep.
    dir: PathBuf,
}

fn blob_error(err: object_store::Error) -> Error {
    Error::Blob(err.to_string())
}

impl BlobStore {
    /// Opens (creating it if needed) a local blob directory.
    pub fn open(dir: &std::path::Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|err| Error::Blob(format!("create {}: {err}", dir.display())))?;
        let local = object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(blob_error)?;
        Ok(Self { inner: Arc::new(local), dir: dir.to_path_buf() })
    }

    fn path(kind: &str, sha256: &str) -> Path {
        Path::from(format!("{kind}/{sha256}"))
    }

    /// Stores bytes under `kind/sha256` durably. The local store writes a temporary file
    /// and renames it, so a crash never leaves a partial blob under the final name; the
    /// file and its directory are then fsynced, so a record written after this returns
    /// never points at a blob a power cut could lose.
    pub async fn put(&self, kind: &str, sha256: &str, bytes: Bytes) -> Result<()> {
        self.inner.put(&Self::path(kind, sha256), PutPayload::from(bytes)).await.map_err(blob_error)?;
        let folder = self.dir.join(kind);
        let file = folder.join(sha256);
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::File::open(&file)?.sync_all()?;
            std::fs::File::open(&folder)?.sync_all()
        })
        .await
        .map_err(|err| Error::Internal(err.to_string()))?
        .map_err(|err| Error::Blob(format!("fsync {kind}/{sha256}: {err}")))
    }

    /// Deletes files under `kind/` that no record references (or that a crash left half
    /// written) and that are older than `grace`, so uploads in flight on another
    /// registry replica are spared. Returns the names removed.
    pub async fn sweep(&self, kind: &str, referenced: HashSet<String>, grace: Duration) -> Result<Vec<String>> {
        let folder = self.dir.join(kind);
        tokio::task::spawn_blocking(move || -> std::io::Result<Vec<String>> {
            let mut removed = Vec::new();
            let entries = match std::fs::read_dir(&folder) {
                Ok(entries) => entries,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
                Err(err) => return Err(err),
            };
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let age = entry.metadata()?.modified()?.elapsed().unwrap_or_default();
                if !referenced.contains(&name) && age >= grace {
                    std::fs::remove_file(entry.path())?;
                    removed.push(name);
                }
            }
            Ok(removed)
        })
        .await
        .map_err(|err| Error::Internal(err.to_string()))?
        .map_err(|err| Error::Blob(format!("sweeping {kind}: {err}")))
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
