//! The gRPC side of uploads and downloads: a client stream split into its manifest and
//! the [`UploadPart`]s after it, and a blob stream sent as a head message then chunks.

use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use modelplane_proto::registry as pb;
use tonic::{Status, Streaming};

use crate::blobs::BlobStream;
use crate::upload::UploadPart;
use crate::{Error, Result};

/// One message of an upload stream, whatever the RPC.
pub(crate) enum Part<M> {
    Manifest(M),
    Chunk(Bytes),
    Commit(pb::UploadCommit),
}

type Parts = Pin<Box<dyn Stream<Item = Result<UploadPart>> + Send>>;

/// Waits for the first message, which must be the manifest, and returns it with the rest
/// of the stream as upload parts (a second manifest, an empty message or a broken stream
/// is an error part, which ends the upload).
pub(crate) async fn manifest_then_parts<T, M>(
    mut stream: Streaming<T>,
    split: fn(T) -> Option<Part<M>>,
) -> Result<(M, Parts), Status>
where
    T: Send + 'static,
    M: Send + 'static,
{
    let first = stream
        .message()
        .await?
        .ok_or_else(|| Status::invalid_argument("empty upload; expected a manifest message first"))?;
    let Some(Part::Manifest(manifest)) = split(first) else {
        return Err(Status::invalid_argument("the first upload message must carry the manifest"));
    };
    let mut received = 0u64;
    let parts = stream.map(move |message| match message.map(split) {
        Ok(Some(Part::Chunk(chunk))) => {
            received += chunk.len() as u64;
            Ok(UploadPart::Chunk(chunk))
        }
        Ok(Some(Part::Commit(commit))) => {
            Ok(UploadPart::Commit { sha256: commit.sha256, size_bytes: commit.size_bytes })
        }
        Ok(Some(Part::Manifest(_))) => {
            Err(Error::InvalidArgument("only the first upload message may carry a manifest".into()))
        }
        Ok(None) => Err(Error::InvalidArgument("upload message carries neither manifest, chunk nor commit".into())),
        // A message over the size limit is the sender's to fix, not a broken stream.
        Err(status) if status.code() == tonic::Code::OutOfRange => {
            Err(Error::ResourceExhausted(format!("{}; nothing was stored", status.message())))
        }
        Err(status) => Err(Error::Aborted(format!(
            "the upload stream broke after {received} bytes ({}); nothing was stored",
            status.message()
        ))),
    });
    Ok((manifest, Box::pin(parts)))
}

/// `head`, then each chunk of `bytes` wrapped; an error reading the blob (DATA_LOSS for
/// a corrupt one) ends the stream with its status.
pub(crate) fn head_then_chunks<T: Send + 'static>(
    head: T,
    bytes: BlobStream,
    wrap: fn(Bytes) -> T,
) -> Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>> {
    let chunks = bytes.map(move |chunk| chunk.map(wrap).map_err(Status::from));
    Box::pin(futures::stream::once(async move { Ok(head) }).chain(chunks))
}
