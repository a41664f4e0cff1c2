//! Keeps a lease alive for as long as its owner runs, and grants a new one when the old
//! one expired (say, after the store was unreachable for longer than the TTL).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{Error, KvStore, LeaseId, Result};

/// A lease refreshed in the background. Owners put their keys under [`Self::current`] and
/// put them again whenever [`Self::changes`] reports a new lease.
pub struct LeaseKeeper {
    store: Arc<dyn KvStore>,
    lease: watch::Receiver<LeaseId>,
    task: JoinHandle<()>,
}

impl LeaseKeeper {
    /// Grants a lease with `ttl` and starts refreshing it every third of the TTL.
    pub async fn start(store: Arc<dyn KvStore>, ttl: Duration) -> Result<Self> {
        let first = store.lease_grant(ttl).await?;
        let (sender, lease) = watch::channel(first);
        let task = tokio::spawn(refresh(store.clone(), ttl, sender));
        Ok(Self { store, lease, task })
    }

    /// The lease to bind keys to now.
    pub fn current(&self) -> LeaseId {
        *self.lease.borrow()
    }

    /// Notified each time a new lease replaced an expired one.
    pub fn changes(&self) -> watch::Receiver<LeaseId> {
        self.lease.clone()
    }

    /// Stops refreshing and revokes the lease, deleting its keys at once.
    pub async fn revoke(self) -> Result<()> {
        self.task.abort();
        self.store.lease_revoke(self.current()).await
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn refresh(store: Arc<dyn KvStore>, ttl: Duration, sender: watch::Sender<LeaseId>) {
    let period = (ttl / 3).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(period).await;
        let lease = *sender.borrow();
        match store.lease_keep_alive(lease).await {
            Ok(()) => {}
            Err(Error::LeaseNotFound(_)) => match store.lease_grant(ttl).await {
                Ok(new_lease) => {
                    tracing::warn!(old = lease, new = new_lease, "lease expired; granted a new one");
                    let _ = sender.send(new_lease);
                }
                Err(err) => tracing::warn!(error = %err, "granting a new lease failed; retrying"),
            },
            Err(err) => tracing::warn!(error = %err, lease, "lease keep-alive failed; retrying"),
        }
    }
}
