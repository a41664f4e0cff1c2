//! Content-addressed blobs through `object_store`: a local directory by default, an
//! S3-compatible bucket by URL.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};

use crate::{BlobLocation, Error, Result};

/// Blobs named by their sha256.
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
    /// The directory behind `inner` when it is local, for fsync and the orphan sweep of
    /// half-written files; `None` for object stores, whose PUT is atomic.
    dir: Option<PathBuf>,
}

fn blob_error(err: object_store::Error) -> Error {
    Error::Blob(err.to_string())
}

impl BlobStore {
    /// Opens the blob store at `location`: creates a local directory if needed, or
    /// checks that the bucket answers, so a wrong endpoint, bucket or credential stops
    /// the registry at start-up rather than at the first upload.
    pub async fn open(location: &BlobLocation) -> Result<Self> {
        match location {
            BlobLocation::Local(dir) => Self::open_local(dir),
            BlobLocation::S3 { bucket, prefix } => Self::open_s3(bucket, prefix).await,
        }
    }

    fn open_local(dir: &std::path::Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|err| Error::Blob(format!("create {}: {err}", dir.display())))?;
        let local = object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(blob_error)?;
        Ok(Self { inner: Arc::new(local), dir: Some(dir.to_path_buf()) })
    }

    /// An S3 bucket configured from the standard `AWS_*` variables (`AWS_ENDPOINT` for
    /// MinIO/Ceph/moto, `AWS_ALLOW_HTTP=true` for plain HTTP, `AWS_REGION`, credentials).
    async fn open_s3(bucket: &str, prefix: &str) -> Result<Self> {
        // reqwest is built with rustls and no bundled provider: use ring, as tonic does.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let retry = RetryConfig { max_retries: 3, retry_timeout: Duration::from_secs(15), ..Default::default() };
        let s3 = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(retry)
            .build()
            .map_err(|err| Error::Blob(format!("S3 bucket {bucket:?}: {err}")))?;
        let inner: Arc<dyn ObjectStore> =
            if prefix.is_empty() { Arc::new(s3) } else { Arc::new(PrefixStore::new(s3, prefix)) };
        // A listing, not a HEAD: a HEAD in a missing bucket is an ordinary 404.
        match inner.list_with_delimiter(Some(&Path::from("artifacts"))).await {
            Ok(_) => Ok(Self { inner, dir: None }),
            Err(err) => Err(Error::Blob(format!("S3 bucket {bucket:?} cannot be listed: {err}"))),
        }
    }

    fn path(kind: &str, sha256: &str) -> Path {
        Path::from(format!("{kind}/{sha256}"))
    }

    /// Stores bytes under `kind/sha256` durably. The local store writes a temporary file
    /// and renames it, so a crash never leaves a partial blob under the final name; the
    /// file and its directory are then fsynced, so a record written after this returns
    /// never points at a blob a power cut could lose. An S3 PUT is atomic and durable
    /// when it answers.
    pub async fn put(&self, kind: &str, sha256: &str, bytes: Bytes) -> Result<()> {
        self.inner.put(&Self::path(kind, sha256), PutPayload::from(bytes)).await.map_err(blob_error)?;
        let Some(dir) = &self.dir else { return Ok(()) };
        let folder = dir.join(kind);
        let file = folder.join(sha256);
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::File::open(&file)?.sync_all()?;
            std::fs::File::open(&folder)?.sync_all()
        })
        .await
        .map_err(|err| Error::Internal(err.to_string()))?
        .map_err(|err| Error::Blob(format!("fsync {kind}/{sha256}: {err}")))
    }

    /// Deletes blobs under `kind/` that no record references (or, locally, that a crash
    /// left half written) and that are older than `grace`, so uploads in flight on
    /// another registry replica are spared. Returns the names removed.
    pub async fn sweep(&self, kind: &str, referenced: HashSet<String>, grace: Duration) -> Result<Vec<String>> {
        match &self.dir {
            Some(dir) => sweep_dir(dir.join(kind), kind, referenced, grace).await,
            None => self.sweep_objects(kind, referenced, grace).await,
        }
    }

    async fn sweep_objects(&self, kind: &str, referenced: HashSet<String>, grace: Duration) -> Result<Vec<String>> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let cutoff = i64::try_from(now.saturating_sub(grace).as_secs()).unwrap_or(i64::MAX);
        let listed: Vec<_> = self.inner.list(Some(&Path::from(kind))).try_collect().await.map_err(blob_error)?;
        let mut removed = Vec::new();
        for meta in listed {
            let Some(name) = meta.location.filename().map(str::to_owned) else { continue };
            if referenced.contains(&name) || meta.last_modified.timestamp() > cutoff {
                continue;
            }
            self.inner.delete(&meta.location).await.map_err(blob_error)?;
            removed.push(name);
        }
        Ok(removed)
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

async fn sweep_dir(folder: PathBuf, kind: &str, referenced: HashSet<String>, grace: Duration) -> Result<Vec<String>> {
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
