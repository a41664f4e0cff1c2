//! Receiving an upload: the bytes after the manifest go to the blob store as they
//! arrive, the size limit is enforced as soon as it is passed, and the sha256 and size
//! the sender declared (in the manifest, in a final commit, or both) are checked against
//! what arrived before anything is published.

use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::{BlobStore, Error, Result, StagedBlob};

/// A message of an upload after its manifest.
#[derive(Debug)]
pub enum UploadPart {
    /// The next bytes.
    Chunk(Bytes),
    /// The sender's own sha256 (lowercase hex) and size of everything it sent.
    Commit { sha256: String, size_bytes: u64 },
}

/// What the sender declared in the manifest.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Declared<'a> {
    /// "artifact" or "dataset", for messages.
    pub what: &'a str,
    /// sha256 from the manifest; empty when not given there.
    pub sha256: &'a str,
    /// Size from the manifest; 0 when not given.
    pub size_bytes: u64,
    /// Whether a sha256 must be declared (manifest or commit).
    pub sha256_required: bool,
    pub limit: u64,
}

fn check_hex(what: &str, sha256: &str) -> Result<String> {
    let sha256 = sha256.to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::InvalidArgument(format!(
            "declared {what} sha256 {sha256:?} is invalid; expected 64 hex characters"
        )));
    }
    Ok(sha256)
}

/// Streams `parts` into a staging blob and checks it against `declared`. On any error
/// the staging blob is removed, so a refused or broken upload leaves nothing behind.
pub(crate) async fn receive<S>(blobs: &BlobStore, declared: Declared<'_>, parts: S) -> Result<StagedBlob>
where
    S: Stream<Item = Result<UploadPart>> + Send + Unpin,
{
    let what = declared.what;
    let manifest_sha = match declared.sha256 {
        "" => None,
        sha => Some(check_hex(what, sha)?),
    };
    if declared.size_bytes > declared.limit {
        return Err(too_large(what, declared.size_bytes, declared.limit));
    }
    let mut writer = blobs.begin().await?;
    let commit = match write_all(&mut writer, declared, parts).await {
        Ok(commit) => commit,
        Err(err) => {
            writer.abort().await;
            return Err(err);
        }
    };
    let staged = writer.finish().await?;
    match verify(&staged, declared, manifest_sha, commit) {
        Ok(()) => Ok(staged),
        Err(err) => {
            blobs.discard(&staged).await;
            Err(err)
        }
    }
}

/// Chunks queued for an upload's check before the upload waits for it.
const CHECK_QUEUE_CHUNKS: usize = 4;

/// [`receive`], with `check` reading the same bytes as they arrive, on the blocking pool
/// (a reader fed chunk by chunk), so checking overlaps with receiving instead of
/// rereading the stored file after it. A check that fails early stops the upload with
/// its error; a receive error wins otherwise. Either way nothing stays staged.
pub(crate) async fn receive_checked<S, T, C>(
    blobs: &BlobStore,
    declared: Declared<'_>,
    parts: S,
    check: C,
) -> Result<(StagedBlob, T)>
where
    S: Stream<Item = Result<UploadPart>> + Send + Unpin,
    T: Send + 'static,
    C: FnOnce(ChunkReader) -> Result<T> + Send + 'static,
{
    let (feed, chunks) = tokio::sync::mpsc::channel::<Bytes>(CHECK_QUEUE_CHUNKS);
    let checking = tokio::task::spawn_blocking(move || check(ChunkReader { chunks, current: Bytes::new() }));
    let stopped_early = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stopped_early.clone();
    let fed = parts.then(move |part| {
        let (feed, stopped) = (feed.clone(), stopped.clone());
        async move {
            if let Ok(UploadPart::Chunk(chunk)) = &part
                && feed.send(chunk.clone()).await.is_err()
            {
                stopped.store(true, std::sync::atomic::Ordering::Relaxed);
                return Err(Error::Aborted("the upload's check stopped reading".into()));
            }
            part
        }
    });
    // The stream (and with it the feed) is dropped when receive returns: the check sees
    // the end of the bytes.
    let received = receive(blobs, declared, Box::pin(fed)).await;
    let checked = checking.await.map_err(|err| Error::Internal(format!("upload check failed: {err}")))?;
    match (received, checked) {
        (Ok(staged), Ok(value)) => Ok((staged, value)),
        (Ok(staged), Err(err)) => {
            blobs.discard(&staged).await;
            Err(err)
        }
        (Err(_), Err(err)) if stopped_early.load(std::sync::atomic::Ordering::Relaxed) => Err(err),
        (Err(err), _) => Err(err),
    }
}

/// The bytes of an upload as they arrive, as a blocking [`std::io::Read`].
pub(crate) struct ChunkReader {
    chunks: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

fn too_large(what: &str, size: u64, limit: u64) -> Error {
    Error::ResourceExhausted(format!(
        "the {what} is larger than this registry's limit of {limit} bytes ({}) at {size} bytes; nothing was stored \
         (the limit is --max-{what}-bytes)",
        bytesize::ByteSize::b(limit).display().iec()
    ))
}

/// Writes chunks until the stream ends; returns the commit if one came last.
async fn write_all<S>(
    writer: &mut crate::BlobWriter,
    declared: Declared<'_>,
    mut parts: S,
) -> Result<Option<(String, u64)>>
where
    S: Stream<Item = Result<UploadPart>> + Send + Unpin,
{
    let mut commit = None;
    while let Some(part) = parts.next().await {
        match part? {
            UploadPart::Chunk(_) if commit.is_some() => {
                return Err(Error::InvalidArgument(format!(
                    "{} bytes came after the commit message; the commit must be the last message",
                    declared.what
                )));
            }
            UploadPart::Chunk(chunk) => {
                let size = writer.size() + chunk.len() as u64;
                if size > declared.limit {
                    return Err(too_large(declared.what, size, declared.limit));
                }
                writer.write(chunk).await?;
            }
            UploadPart::Commit { .. } if commit.is_some() => {
                return Err(Error::InvalidArgument("an upload carries at most one commit message".into()));
            }
            UploadPart::Commit { sha256, size_bytes } => {
                commit = Some((check_hex(declared.what, &sha256)?, size_bytes));
            }
        }
    }
    Ok(commit)
}

fn verify(
    staged: &StagedBlob,
    declared: Declared<'_>,
    manifest_sha: Option<String>,
    commit: Option<(String, u64)>,
) -> Result<()> {
    let what = declared.what;
    let nothing = if what == "artifact" { "nothing was registered" } else { "nothing was stored" };
    let (commit_sha, commit_size) = commit.map_or((None, None), |(sha, size)| (Some(sha), Some(size)));
    if manifest_sha.is_none() && commit_sha.is_none() && declared.sha256_required {
        return Err(Error::InvalidArgument(format!(
            "the {what} upload declared no sha256; expected it in the manifest or in a final commit message; \
             {nothing}"
        )));
    }
    for (source, expected) in [("declared", manifest_sha), ("committed", commit_sha)] {
        if let Some(expected) = expected
            && expected != staged.sha256
        {
            return Err(Error::InvalidArgument(format!(
                "{what} sha256 mismatch: {source} {expected}, received {} bytes hashing to {}; {nothing}",
                staged.size, staged.sha256
            )));
        }
    }
    let sizes = [("declared", (declared.size_bytes != 0).then_some(declared.size_bytes)), ("committed", commit_size)];
    for (source, expected) in sizes {
        if let Some(expected) = expected
            && expected != staged.size
        {
            return Err(Error::InvalidArgument(format!(
                "{what} size mismatch: {source} {expected} bytes, received {}; {nothing}",
                staged.size
            )));
        }
    }
    Ok(())
}
