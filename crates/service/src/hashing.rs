//! SHA-256 of a stream, computed beside it: chunks are handed to a blocking thread that
//! hashes while the caller already receives or sends the next ones, so a transfer takes
//! about as long as the slower of the two, not their sum.

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Chunks queued for hashing before [`StreamHasher::update`] waits (bounds the memory).
const QUEUED_CHUNKS: usize = 4;

/// Hashes the chunks given to it, in order, on the blocking pool.
pub struct StreamHasher {
    queue: mpsc::Sender<Bytes>,
    task: JoinHandle<Sha256>,
}

/// The hashing thread ended before the stream did (it panicked).
#[derive(Debug)]
pub struct HasherGone;

impl std::fmt::Display for HasherGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the sha256 hashing task ended early")
    }
}

impl std::error::Error for HasherGone {}

impl StreamHasher {
    /// Starts hashing; must be called within a Tokio runtime.
    pub fn new() -> Self {
        let (queue, mut chunks) = mpsc::channel::<Bytes>(QUEUED_CHUNKS);
        let task = tokio::task::spawn_blocking(move || {
            let mut hasher = Sha256::new();
            while let Some(chunk) = chunks.blocking_recv() {
                hasher.update(&chunk);
            }
            hasher
        });
        Self { queue, task }
    }

    /// Queues the next chunk (a cheap clone of a `Bytes` is enough); waits while
    /// [`QUEUED_CHUNKS`] are still unhashed.
    pub async fn update(&self, chunk: Bytes) -> Result<(), HasherGone> {
        self.queue.send(chunk).await.map_err(|_| HasherGone)
    }

    /// Waits for every queued chunk; the lowercase hex sha256 of all of them.
    pub async fn finish(self) -> Result<String, HasherGone> {
        drop(self.queue);
        let hasher = self.task.await.map_err(|_| HasherGone)?;
        Ok(hex::encode(hasher.finalize()))
    }
}

impl Default for StreamHasher {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_the_chunks_in_order() {
        let hasher = StreamHasher::new();
        for chunk in ["ab", "c", "", "def"] {
            hasher.update(Bytes::from(chunk)).await.expect("queued");
        }
        let whole = hex::encode(Sha256::digest(b"abcdef"));
        assert_eq!(hasher.finish().await.expect("hashed"), whole);
        assert_eq!(
            StreamHasher::new().finish().await.expect("hashed"),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
