//! A local copy of every key under a prefix, fed by a watch.
//!
//! The copy is rebuilt from a prefix read and then follows a watch from that read's
//! revision. When the store is unreachable the last copy stays in place, so readers keep
//! serving; the mirror retries and reconverges when the store returns.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::sync::watch;

use crate::{EventKind, KvStore, Revision, WatchEvent};

/// The mirrored keys at one point in time.
#[derive(Debug, Default)]
pub struct MirrorState {
    /// Key → value, for every key under the prefix.
    pub entries: BTreeMap<String, Vec<u8>>,
    /// The store revision this state reflects.
    pub revision: Revision,
    /// False until the first successful read.
    pub synced: bool,
}

/// A watched copy of a prefix. Cloning shares the copy.
#[derive(Clone)]
pub struct Mirror {
    state: watch::Receiver<Arc<MirrorState>>,
}

const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

impl Mirror {
    /// Starts mirroring `prefix`; the background task ends when every clone and
    /// subscriber is dropped.
    pub fn start(store: Arc<dyn KvStore>, prefix: impl Into<String>) -> Self {
        let (sender, state) = watch::channel(Arc::new(MirrorState::default()));
        tokio::spawn(follow(store, prefix.into(), sender));
        Self { state }
    }

    /// The current copy.
    pub fn current(&self) -> Arc<MirrorState> {
        self.state.borrow().clone()
    }

    /// A receiver that is notified on every change of the copy.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MirrorState>> {
        self.state.clone()
    }

    /// Waits until the first read succeeded (or `timeout` passed); returns whether it did.
    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        let mut receiver = self.state.clone();
        tokio::time::timeout(timeout, receiver.wait_for(|state| state.synced))
            .await
            .map(|result| result.is_ok())
            .unwrap_or(false)
    }
}

fn apply(entries: &mut BTreeMap<String, Vec<u8>>, event: WatchEvent) {
    match event.kind {
        EventKind::Put => {
            entries.insert(event.key, event.value);
        }
        EventKind::Delete => {
            entries.remove(&event.key);
        }
    }
}

async fn follow(store: Arc<dyn KvStore>, prefix: String, sender: watch::Sender<Arc<MirrorState>>) {
    let mut backoff = RETRY_MIN;
    loop {
        let synced = tokio::select! {
            _ = sender.closed() => return,
            result = sync_and_watch(&*store, &prefix, &sender) => result,
        };
        if let Err(err) = synced {
            tracing::debug!(prefix = %prefix, error = %err, "mirror lost the store; keeping the last copy");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RETRY_MAX);
        } else {
            backoff = RETRY_MIN;
        }
    }
}

/// Reads the prefix, publishes it and follows the watch until it fails.
async fn sync_and_watch(
    store: &dyn KvStore,
    prefix: &str,
    sender: &watch::Sender<Arc<MirrorState>>,
) -> crate::Result<()> {
    let snapshot = store.range(prefix).await?;
    let mut entries: BTreeMap<String, Vec<u8>> = snapshot.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
    let mut revision = snapshot.revision;
    let mut stream = store.watch(prefix, revision + 1).await?;
    sender.send_replace(Arc::new(MirrorState { entries: entries.clone(), revision, synced: true }));
    while let Some(event) = stream.next().await {
        let event = event?;
        revision = revision.max(event.revision);
        apply(&mut entries, event);
        // Fold every change that is already waiting into one published copy.
        while let Some(Some(next)) = stream.next().now_or_never() {
            let next = next?;
            revision = revision.max(next.revision);
            apply(&mut entries, next);
        }
        sender.send_replace(Arc::new(MirrorState { entries: entries.clone(), revision, synced: true }));
    }
    Err(crate::Error::Unavailable(format!("watch on {prefix} ended")))
}
