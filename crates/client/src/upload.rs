//! Uploads: the manifest, the source in chunks of at most 1 MiB, then a commit with the
//! sha256 and size of what was sent. The source is read a few chunks ahead and hashed
//! beside the stream, so reading, hashing and sending overlap.

use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::Stream;
use modelplane_proto::MAX_CHUNK_BYTES;
use modelplane_proto::registry as pb;
use modelplane_service::StreamHasher;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use crate::{Error, Progress, Registry, Result};

/// What an upload reads from.
pub struct Source {
    reader: Box<dyn AsyncRead + Send + Unpin>,
    size: Option<u64>,
}

impl Source {
    /// A file, read as it is sent.
    pub async fn file(path: &Path) -> Result<Self> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|err| Error::Io(format!("cannot read {}: {err}", path.display())))?;
        let size = file.metadata().await.ok().map(|meta| meta.len());
        Ok(Self { reader: Box::new(file), size })
    }

    /// Bytes already in memory (a trained artifact).
    pub fn bytes(bytes: Vec<u8>) -> Self {
        let size = Some(bytes.len() as u64);
        Self { reader: Box::new(std::io::Cursor::new(bytes)), size }
    }

    /// Any reader; `size` when known (it lets the registry refuse an oversized upload
    /// before the bytes are sent).
    pub fn reader(reader: impl AsyncRead + Send + Unpin + 'static, size: Option<u64>) -> Self {
        Self { reader: Box::new(reader), size }
    }

    /// The size, when known.
    pub fn size(&self) -> Option<u64> {
        self.size
    }
}

/// How one RPC's messages are made.
struct Wrap<T> {
    chunk: fn(Bytes) -> T,
    commit: fn(pb::UploadCommit) -> T,
}

/// Where a failure to read the source is kept: the stream cannot carry it, so it ends
/// early (the registry refuses the short upload) and the caller reports this instead.
type Failure = Arc<Mutex<Option<Error>>>;

enum Phase {
    Head,
    Body,
    Done,
}

struct State<T> {
    head: Option<T>,
    chunks: mpsc::Receiver<Result<Bytes>>,
    hasher: Option<StreamHasher>,
    sent: u64,
    phase: Phase,
    wrap: Wrap<T>,
    progress: Arc<dyn Progress>,
    failure: Failure,
}

/// Chunks read ahead of the stream.
const READ_AHEAD_CHUNKS: usize = 2;

fn messages<T: Send + 'static>(
    head: T,
    source: Source,
    wrap: Wrap<T>,
    progress: Arc<dyn Progress>,
    failure: Failure,
) -> impl Stream<Item = T> + Send + 'static {
    progress.started(source.size);
    let state = State {
        head: Some(head),
        chunks: read_ahead(source),
        hasher: Some(StreamHasher::new()),
        sent: 0,
        phase: Phase::Head,
        wrap,
        progress,
        failure,
    };
    futures::stream::unfold(state, |mut state| async move {
        match state.phase {
            Phase::Head => {
                state.phase = Phase::Body;
                let head = state.head.take()?;
                Some((head, state))
            }
            Phase::Body => match next_chunk(&mut state).await {
                Ok(Some(chunk)) => Some(((state.wrap.chunk)(chunk), state)),
                Ok(None) => {
                    state.phase = Phase::Done;
                    let sha256 = match state.hasher.take()?.finish().await {
                        Ok(sha256) => sha256,
                        Err(err) => return state.fail(Error::Io(format!("hashing the upload: {err}"))),
                    };
                    let commit = pb::UploadCommit { sha256, size_bytes: state.sent };
                    state.progress.finished(state.sent);
                    Some(((state.wrap.commit)(commit), state))
                }
                Err(err) => state.fail(err),
            },
            Phase::Done => None,
        }
    })
}

impl<T> State<T> {
    /// Keeps `err` for the caller and ends the stream early.
    fn fail<R>(&mut self, err: Error) -> Option<R> {
        self.progress.finished(self.sent);
        if let Ok(mut failure) = self.failure.lock() {
            *failure = Some(err);
        }
        None
    }
}

/// Reads the source in chunks of [`MAX_CHUNK_BYTES`] on a task of its own, up to
/// [`READ_AHEAD_CHUNKS`] ahead; a read error is the last item. The task stops when the
/// receiver is dropped.
fn read_ahead(mut source: Source) -> mpsc::Receiver<Result<Bytes>> {
    let (ahead, chunks) = mpsc::channel(READ_AHEAD_CHUNKS);
    tokio::spawn(async move {
        let mut read = 0u64;
        loop {
            let mut chunk = Vec::with_capacity(MAX_CHUNK_BYTES);
            let mut failed = None;
            while chunk.len() < MAX_CHUNK_BYTES {
                let mut limited = (&mut source.reader).take((MAX_CHUNK_BYTES - chunk.len()) as u64);
                match limited.read_buf(&mut chunk).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(err) => {
                        let done = read + chunk.len() as u64;
                        failed = Some(Error::Io(format!("reading the upload failed after {done} bytes: {err}")));
                        break;
                    }
                }
            }
            read += chunk.len() as u64;
            let end = chunk.len() < MAX_CHUNK_BYTES;
            if !chunk.is_empty() && failed.is_none() && ahead.send(Ok(Bytes::from(chunk))).await.is_err() {
                return;
            }
            if let Some(err) = failed {
                let _ = ahead.send(Err(err)).await;
                return;
            }
            if end {
                return;
            }
        }
    });
    chunks
}

/// The next chunk, queued for hashing; `None` at the end of the source.
async fn next_chunk<T>(state: &mut State<T>) -> Result<Option<Bytes>> {
    let Some(chunk) = state.chunks.recv().await.transpose()? else {
        return Ok(None);
    };
    let hasher = state.hasher.as_ref().ok_or_else(|| Error::Protocol("upload hasher lost".into()))?;
    hasher.update(chunk.clone()).await.map_err(|err| Error::Io(format!("hashing the upload: {err}")))?;
    state.sent += chunk.len() as u64;
    state.progress.advanced(state.sent);
    Ok(Some(chunk))
}

fn take_failure(failure: &Failure) -> Option<Error> {
    failure.lock().ok().and_then(|mut failure| failure.take())
}

impl Registry {
    /// Uploads an artifact as a new version. `manifest.sha256` may be empty: the commit
    /// declares it; `manifest.size_bytes` is filled from the source when known.
    pub async fn upload_version(
        &self,
        mut manifest: pb::UploadManifest,
        source: Source,
        progress: Arc<dyn Progress>,
    ) -> Result<pb::ModelVersion> {
        use pb::upload_version_request::Part;
        if manifest.size_bytes == 0 {
            manifest.size_bytes = source.size.unwrap_or(0);
        }
        let head = pb::UploadVersionRequest { part: Some(Part::Manifest(manifest)) };
        let wrap = Wrap {
            chunk: |chunk| pb::UploadVersionRequest { part: Some(Part::Chunk(chunk)) },
            commit: |commit| pb::UploadVersionRequest { part: Some(Part::Commit(commit)) },
        };
        let failure = Failure::default();
        let stream = messages(head, source, wrap, progress, failure.clone());
        let answer = self.grpc().upload_version(self.request(stream)).await;
        if let Some(err) = take_failure(&failure) {
            return Err(err);
        }
        answer.map(tonic::Response::into_inner).map_err(Error::status("upload failed"))
    }

    /// Uploads a CSV dataset under `name`.
    pub async fn upload_dataset(&self, name: &str, source: Source, progress: Arc<dyn Progress>) -> Result<pb::Dataset> {
        use pb::upload_dataset_request::Part;
        let manifest =
            pb::DatasetManifest { name: name.to_owned(), sha256: String::new(), size_bytes: source.size.unwrap_or(0) };
        let head = pb::UploadDatasetRequest { part: Some(Part::Manifest(manifest)) };
        let wrap = Wrap {
            chunk: |chunk| pb::UploadDatasetRequest { part: Some(Part::Chunk(chunk)) },
            commit: |commit| pb::UploadDatasetRequest { part: Some(Part::Commit(commit)) },
        };
        let failure = Failure::default();
        let stream = messages(head, source, wrap, progress, failure.clone());
        let answer = self.grpc().upload_dataset(self.request(stream)).await;
        if let Some(err) = take_failure(&failure) {
            return Err(err);
        }
        answer.map(tonic::Response::into_inner).map_err(Error::status("upload failed"))
    }
}
