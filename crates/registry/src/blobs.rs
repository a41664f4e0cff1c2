//! Content-addressed blobs through `object_store`: a local directory by default, an
//! S3-compatible bucket by URL. Uploads are written as they arrive to a staging object
//! (never held whole) and renamed to `kind/sha256` once verified; reads stream from the
//! store and check the sha256 the blob is named by.

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use modelplane_proto::MAX_CHUNK_BYTES;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore, ObjectStoreExt, RetryConfig};
use sha2::{Digest, Sha256};

pub use crate::blob_upload::{BlobWriter, StagedBlob};
use crate::{BlobLocation, Error, Result};

/// Where uploads are written before they are verified and renamed.
pub(crate) const STAGING: &str = "staging";

/// The bytes of a blob as they are read, in chunks of at most [`MAX_CHUNK_BYTES`].
pub type BlobStream = BoxStream<'static, Result<Bytes>>;

/// Blobs named by their sha256.
#[derive(Clone)]
pub struct BlobStore {
    pub(crate) inner: Arc<dyn ObjectStore>,
    /// The directory behind `inner` when it is local, for reading files directly and for
    /// the orphan sweep of half-written files; `None` for object stores.
    pub(crate) dir: Option<PathBuf>,
}

pub(crate) fn blob_error(err: object_store::Error) -> Error {
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

    /// Checks `location`'s settings as [`Self::open`] reads them, making no request and
    /// no directory (`--check-config`).
    pub fn check_settings(location: &BlobLocation) -> Result<()> {
        match location {
            BlobLocation::Local(_) => Ok(()),
            BlobLocation::S3 { bucket, .. } => {
                let _ = rustls::crypto::ring::default_provider().install_default();
                AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map(|_| ())
                    .map_err(|err| Error::Blob(format!("S3 bucket {bucket:?}: {err}")))
            }
        }
    }

    /// A local directory. Files are fsynced before they are renamed into place and the
    /// directories after, so a record written once a blob is published never points at
    /// a blob a power cut could lose.
    fn open_local(dir: &std::path::Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|err| Error::Blob(format!("create {}: {err}", dir.display())))?;
        let local = object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(blob_error)?.with_fsync(true);
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

    pub(crate) fn path(kind: &str, sha256: &str) -> Path {
        Path::from(format!("{kind}/{sha256}"))
    }

    /// Starts an upload to a new staging object; see [`BlobWriter`].
    pub async fn begin(&self) -> Result<BlobWriter> {
        BlobWriter::begin(self).await
    }

    /// Makes a verified upload visible as `kind/sha256` (a rename: atomic and fsynced
    /// locally, a server-side copy on S3). An existing blob of that name has the same
    /// bytes, so overwriting it is harmless.
    pub async fn publish(&self, staged: &StagedBlob, kind: &str) -> Result<()> {
        self.inner.rename(&staged.location, &Self::path(kind, &staged.sha256)).await.map_err(blob_error)
    }

    /// Removes a staged upload that will not be published.
    pub async fn discard(&self, staged: &StagedBlob) {
        if let Err(err) = self.inner.delete(&staged.location).await {
            tracing::warn!(staging = %staged.location, error = %err, "could not remove a refused upload");
        }
    }

    /// Reads `kind/sha256` from `offset`. Read from the start, the bytes are hashed as
    /// they go and a blob that does not hash to its name ends the stream with DATA_LOSS.
    pub async fn read(&self, kind: &str, sha256: &str, offset: u64) -> Result<BlobStream> {
        let location = Self::path(kind, sha256);
        let mut options = GetOptions::default();
        if offset > 0 {
            let size = self.size(&location).await?;
            if offset > size {
                return Err(Error::InvalidArgument(format!(
                    "offset {offset} is past the end of the {size}-byte {kind} blob"
                )));
            }
            if offset == size {
                return Ok(futures::stream::empty().boxed());
            }
            options.range = Some(GetRange::Offset(offset));
        }
        let result = self.inner.get_opts(&location, options).await.map_err(|err| missing(kind, sha256, err))?;
        let check = (offset == 0).then(|| Check { kind: kind.to_owned(), expected: sha256.to_owned() });
        let range = result.range.clone();
        Ok(read_ahead(match result.payload {
            GetResultPayload::File(file, _) => file_chunks(file, range.start, range.end, check),
            GetResultPayload::Stream(stream) => coalesced(stream.map_err(blob_error).boxed(), check),
        }))
    }

    async fn size(&self, location: &Path) -> Result<u64> {
        match self.inner.head(location).await {
            Ok(meta) => Ok(meta.size),
            Err(err) => Err(missing("blob", location.as_ref(), err)),
        }
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
}

fn missing(kind: &str, sha256: &str, err: object_store::Error) -> Error {
    match err {
        object_store::Error::NotFound { .. } => {
            Error::Internal(format!("blob {kind}/{sha256} is missing from the blob store"))
        }
        other => blob_error(other),
    }
}

/// The sha256 a blob read from its start must hash to.
struct Check {
    kind: String,
    expected: String,
}

impl Check {
    fn verdict(&self, hasher: Sha256) -> Result<()> {
        let actual = hex::encode(hasher.finalize());
        if actual == self.expected {
            return Ok(());
        }
        Err(Error::DataLoss(format!(
            "stored {} blob {} is corrupt: its bytes hash to {actual}",
            self.kind.trim_end_matches('s'),
            self.expected
        )))
    }
}

/// Chunks read (and hashed) ahead of the reader.
const READ_AHEAD_CHUNKS: usize = 4;

/// `chunks` driven by a task of its own, up to [`READ_AHEAD_CHUNKS`] ahead, so reading
/// and hashing the next chunks overlaps with sending this one. The task stops when the
/// returned stream is dropped.
fn read_ahead(mut chunks: BlobStream) -> BlobStream {
    let (ahead, queue) = tokio::sync::mpsc::channel(READ_AHEAD_CHUNKS);
    tokio::spawn(async move {
        while let Some(chunk) = chunks.next().await {
            if ahead.send(chunk).await.is_err() {
                break;
            }
        }
    });
    futures::stream::unfold(queue, |mut queue| async move { queue.recv().await.map(|chunk| (chunk, queue)) }).boxed()
}

/// A local file read in chunks on the blocking pool (and hashed there when checked).
fn file_chunks(file: std::fs::File, start: u64, end: u64, check: Option<Check>) -> BlobStream {
    struct State {
        file: Option<std::fs::File>,
        position: u64,
        end: u64,
        hasher: Option<Sha256>,
        check: Option<Arc<Check>>,
        done: bool,
    }
    let hasher = check.as_ref().map(|_| Sha256::new());
    let state = State { file: Some(file), position: start, end, hasher, check: check.map(Arc::new), done: false };
    futures::stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        let (file, hasher) = (state.file.take()?, state.hasher.take());
        let (position, end) = (state.position, state.end);
        let read = tokio::task::spawn_blocking(move || read_chunk(file, position, end, hasher)).await;
        let (file, hasher, chunk) = match read {
            Ok(Ok(read)) => read,
            Ok(Err(err)) => {
                state.done = true;
                return Some((Err(Error::Blob(format!("reading a blob: {err}"))), state));
            }
            Err(err) => {
                state.done = true;
                return Some((Err(Error::Internal(err.to_string())), state));
            }
        };
        if chunk.is_empty() {
            state.done = true;
            // The file ended (early, when something truncated it): the hash says so.
            return match (&state.check, hasher) {
                (Some(check), Some(hasher)) => check.verdict(hasher).err().map(|err| (Err(err), state)),
                _ => None,
            };
        }
        state.position += chunk.len() as u64;
        state.file = Some(file);
        state.hasher = hasher;
        Some((Ok(chunk), state))
    })
    .boxed()
}

fn read_chunk(
    mut file: std::fs::File,
    position: u64,
    end: u64,
    hasher: Option<Sha256>,
) -> std::io::Result<(std::fs::File, Option<Sha256>, Bytes)> {
    let want = usize::try_from(end.saturating_sub(position)).unwrap_or(usize::MAX).min(MAX_CHUNK_BYTES);
    let mut buffer = vec![0u8; want];
    file.seek(SeekFrom::Start(position))?;
    let mut filled = 0;
    while filled < want {
        match file.read(&mut buffer[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    buffer.truncate(filled);
    let hasher = hasher.map(|mut hasher| {
        hasher.update(&buffer);
        hasher
    });
    Ok((file, hasher, Bytes::from(buffer)))
}

/// An object store's stream regrouped into chunks of up to [`MAX_CHUNK_BYTES`] (HTTP
/// bodies arrive in pieces of a few KiB), hashed on the blocking pool when checked.
fn coalesced(stream: BlobStream, check: Option<Check>) -> BlobStream {
    struct State {
        stream: BlobStream,
        hasher: Option<Sha256>,
        check: Option<Check>,
        done: bool,
    }
    let hasher = check.as_ref().map(|_| Sha256::new());
    futures::stream::unfold(State { stream, hasher, check, done: false }, |mut state| async move {
        if state.done {
            return None;
        }
        let mut buffer = BytesMut::new();
        while buffer.len() < MAX_CHUNK_BYTES {
            match state.stream.next().await {
                Some(Ok(piece)) => buffer.extend_from_slice(&piece),
                Some(Err(err)) => {
                    state.done = true;
                    return Some((Err(err), state));
                }
                None => break,
            }
        }
        let mut chunk = buffer.freeze();
        if chunk.len() > MAX_CHUNK_BYTES {
            // The rest goes back in front of the stream.
            let rest = chunk.split_off(MAX_CHUNK_BYTES);
            let tail = std::mem::replace(&mut state.stream, futures::stream::empty().boxed());
            state.stream = futures::stream::once(async move { Ok(rest) }).chain(tail).boxed();
        }
        if let Some(mut hasher) = state.hasher.take() {
            let piece = chunk.clone();
            hasher = match tokio::task::spawn_blocking(move || {
                hasher.update(&piece);
                hasher
            })
            .await
            {
                Ok(hasher) => hasher,
                Err(err) => {
                    state.done = true;
                    return Some((Err(Error::Internal(err.to_string())), state));
                }
            };
            if chunk.is_empty() {
                state.done = true;
                let check = state.check.take()?;
                return check.verdict(hasher).err().map(|err| (Err(err), state));
            }
            state.hasher = Some(hasher);
        } else if chunk.is_empty() {
            return None;
        }
        Some((Ok(chunk), state))
    })
    .boxed()
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
