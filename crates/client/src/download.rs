//! Downloads: the record first, then the bytes into the caller's writer, hashed beside
//! the stream as they arrive and checked against the record's sha256 at the end. A
//! stream that breaks (the registry restarting, a lost connection) resumes from the
//! bytes already written, pinned to the same blob.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use modelplane_proto::registry as pb;
use modelplane_service::StreamHasher;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tonic::{Code, Status, Streaming};

use crate::{Error, Progress, Registry, Result};

/// Attempts at a download whose stream keeps breaking.
const ATTEMPTS: u32 = 4;
const FIRST_RETRY_AFTER: Duration = Duration::from_millis(200);

/// A finished, verified download.
#[derive(Debug)]
pub struct Downloaded<R> {
    /// The registry's record of what was downloaded.
    pub record: R,
    /// Bytes written.
    pub size: u64,
}

/// One message of a download stream, whatever the RPC.
enum Part<H> {
    Head(H),
    Chunk(Bytes),
}

/// How one RPC is driven: how to (re)open it, split its messages and read the sha256.
struct Rpc<H, M, F> {
    what: &'static str,
    open: F,
    split: fn(M) -> Option<Part<H>>,
    sha256: fn(&H) -> &str,
    size: fn(&H) -> u64,
}

/// Codes after which the same request may work: the stream broke, not the request.
fn broken(status: &Status) -> bool {
    matches!(status.code(), Code::Unavailable | Code::Unknown | Code::Aborted)
}

struct Transfer<'a> {
    sink: &'a mut (dyn AsyncWrite + Send + Unpin),
    progress: &'a dyn Progress,
    hasher: Option<StreamHasher>,
    done: u64,
}

async fn download<H, M, F, Fut>(mut rpc: Rpc<H, M, F>, mut transfer: Transfer<'_>) -> Result<Downloaded<H>>
where
    F: FnMut(Option<&H>, u64) -> Fut,
    Fut: Future<Output = Result<Streaming<M>, Status>>,
{
    let mut head: Option<H> = None;
    let mut attempt = 1;
    loop {
        let outcome = match (rpc.open)(head.as_ref(), transfer.done).await {
            Ok(stream) => receive(&rpc, stream, &mut head, &mut transfer).await,
            Err(status) => Err(Received::Status(status)),
        };
        match outcome {
            Ok(()) => break,
            Err(Received::Status(status)) if broken(&status) && attempt < ATTEMPTS => {
                tokio::time::sleep(FIRST_RETRY_AFTER * 2u32.pow(attempt - 1)).await;
                attempt += 1;
                transfer.progress.resumed(transfer.done, attempt);
            }
            Err(Received::Status(status)) => {
                transfer.progress.finished(transfer.done);
                return Err(Error::Status { what: "download failed", status });
            }
            Err(Received::Failed(err)) => {
                transfer.progress.finished(transfer.done);
                return Err(err);
            }
        }
    }
    transfer.progress.finished(transfer.done);
    let head = head.ok_or_else(|| Error::Protocol(format!("the {} download carried no record", rpc.what)))?;
    let hasher = transfer.hasher.take().ok_or_else(|| Error::Protocol("download hasher lost".into()))?;
    let actual = hasher.finish().await.map_err(|err| Error::Io(format!("hashing the download: {err}")))?;
    let expected = (rpc.sha256)(&head);
    if actual != expected {
        return Err(Error::Corrupt { what: rpc.what, expected: expected.to_owned(), actual });
    }
    Ok(Downloaded { record: head, size: transfer.done })
}

enum Received {
    Status(Status),
    Failed(Error),
}

async fn receive<H, M, F>(
    rpc: &Rpc<H, M, F>,
    mut stream: Streaming<M>,
    head: &mut Option<H>,
    transfer: &mut Transfer<'_>,
) -> Result<(), Received> {
    let mut headed = false;
    while let Some(message) = stream.message().await.map_err(Received::Status)? {
        match (rpc.split)(message) {
            Some(Part::Head(this)) if !headed => {
                headed = true;
                match head {
                    Some(first) if (rpc.sha256)(first) != (rpc.sha256)(&this) => {
                        return Err(Received::Failed(Error::Protocol(format!(
                            "the {} changed while the download resumed ({} became {})",
                            rpc.what,
                            (rpc.sha256)(first),
                            (rpc.sha256)(&this)
                        ))));
                    }
                    Some(_) => {}
                    None => {
                        transfer.progress.started(Some((rpc.size)(&this)));
                        *head = Some(this);
                    }
                }
            }
            Some(Part::Chunk(chunk)) if headed => write(transfer, chunk).await.map_err(Received::Failed)?,
            _ => {
                return Err(Received::Failed(Error::Protocol(format!(
                    "the {} download did not send its record first and once",
                    rpc.what
                ))));
            }
        }
    }
    Ok(())
}

async fn write(transfer: &mut Transfer<'_>, chunk: Bytes) -> Result<()> {
    let hasher = transfer.hasher.as_ref().ok_or_else(|| Error::Protocol("download hasher lost".into()))?;
    hasher.update(chunk.clone()).await.map_err(|err| Error::Io(format!("hashing the download: {err}")))?;
    transfer.sink.write_all(&chunk).await.map_err(|err| Error::Io(format!("writing the download: {err}")))?;
    transfer.done += chunk.len() as u64;
    transfer.progress.advanced(transfer.done);
    Ok(())
}

impl Registry {
    /// Downloads a version's artifact (a number or an alias; resumes stay on the version
    /// first resolved) into `sink`.
    pub async fn download_artifact(
        &self,
        model: &str,
        version: &str,
        sink: &mut (dyn AsyncWrite + Send + Unpin),
        progress: &dyn Progress,
    ) -> Result<Downloaded<pb::ModelVersion>> {
        use pb::download_artifact_response::Part as Message;
        let rpc = Rpc {
            what: "artifact",
            open: |first: Option<&pb::ModelVersion>, offset| {
                let version = first.map_or_else(|| version.to_owned(), |first| first.version.to_string());
                let request = pb::DownloadArtifactRequest { model: model.to_owned(), version, offset };
                let mut grpc = self.grpc();
                let request = self.request(request);
                async move { grpc.download_artifact(request).await.map(tonic::Response::into_inner) }
            },
            split: |message: pb::DownloadArtifactResponse| match message.part? {
                Message::Version(version) => Some(Part::Head(version)),
                Message::Chunk(chunk) => Some(Part::Chunk(chunk)),
            },
            sha256: |version| &version.sha256,
            size: |version| version.size_bytes,
        };
        download(rpc, Transfer { sink, progress, hasher: Some(StreamHasher::new()), done: 0 }).await
    }

    /// Downloads a dataset upload (empty `sha256`: the newest under `name`; resumes stay
    /// on the upload first resolved) into `sink`.
    pub async fn download_dataset(
        &self,
        name: &str,
        sha256: &str,
        sink: &mut (dyn AsyncWrite + Send + Unpin),
        progress: &dyn Progress,
    ) -> Result<Downloaded<pb::Dataset>> {
        use pb::download_dataset_response::Part as Message;
        let rpc = Rpc {
            what: "dataset",
            open: |first: Option<&pb::Dataset>, offset| {
                let sha256 = first.map_or_else(|| sha256.to_owned(), |first| first.sha256.clone());
                let request = pb::DownloadDatasetRequest { name: name.to_owned(), sha256, offset };
                let mut grpc = self.grpc();
                let request = self.request(request);
                async move { grpc.download_dataset(request).await.map(tonic::Response::into_inner) }
            },
            split: |message: pb::DownloadDatasetResponse| match message.part? {
                Message::Dataset(dataset) => Some(Part::Head(dataset)),
                Message::Chunk(chunk) => Some(Part::Chunk(chunk)),
            },
            sha256: |dataset| &dataset.sha256,
            size: |dataset| dataset.size_bytes,
        };
        download(rpc, Transfer { sink, progress, hasher: Some(StreamHasher::new()), done: 0 }).await
    }

    /// Downloads a version's artifact to `path`: written beside it under a temporary
    /// name, fsynced, and renamed only once verified, so `path` never holds a partial or
    /// corrupt artifact.
    pub async fn download_artifact_to_file(
        &self,
        model: &str,
        version: &str,
        path: &Path,
        progress: &dyn Progress,
    ) -> Result<Downloaded<pb::ModelVersion>> {
        let temporary = temporary_beside(path);
        let io = |err: std::io::Error| Error::Io(format!("{}: {err}", temporary.display()));
        let mut file = tokio::fs::File::create(&temporary).await.map_err(io)?;
        let outcome = self.download_artifact(model, version, &mut file, progress).await;
        let finished = match outcome {
            Ok(downloaded) => match file.sync_all().await {
                Ok(()) => tokio::fs::rename(&temporary, path).await.map(|()| downloaded).map_err(io),
                Err(err) => Err(io(err)),
            },
            Err(err) => Err(err),
        };
        if finished.is_err() {
            let _ = tokio::fs::remove_file(&temporary).await;
        }
        finished
    }
}

/// A unique name beside `path`, in the same directory so the rename stays atomic.
fn temporary_beside(path: &Path) -> std::path::PathBuf {
    let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.partial-{}", uuid::Uuid::new_v4()))
}
