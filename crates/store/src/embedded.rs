//! The embedded implementation of [`KvStore`]: a redb file for data, with etcd's watch
//! and lease semantics emulated in process. Used by `modelplane up` on one node.
//!
//! Every write takes one new revision. Watches replay from an in-memory history of the
//! latest changes (older revisions answer [`Error::Compacted`], as etcd does after a
//! compaction). Leases live in memory; keys bound to a lease of an earlier process are
//! deleted at open, because that process and its leases are gone.

mod leases;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use self::leases::Leases;
use crate::{Error, EventKind, KeyValue, KvStore, LeaseId, Result, Revision, Snapshot, WatchEvent, WatchStream};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
const REVISION_KEY: &str = "revision";
/// Changes kept for watches that start in the past.
const HISTORY: usize = 16_384;

/// A redb-backed store; cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    /// Held by writes across their commit. Lock order: `state`, then `leases`.
    state: Mutex<State>,
    /// Never held across a commit, so keep-alives answer while a write syncs.
    leases: Mutex<Leases>,
    events: broadcast::Sender<WatchEvent>,
}

struct State {
    revision: Revision,
    /// Oldest revision a watch can start from.
    history_floor: Revision,
    history: VecDeque<WatchEvent>,
    /// Keys bound to each lease, deleted when it ends.
    lease_keys: HashMap<LeaseId, BTreeSet<String>>,
}

/// A stored entry: mod revision, lease (0 for none), then the value.
fn encode(mod_revision: Revision, lease: LeaseId, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + value.len());
    out.extend_from_slice(&mod_revision.to_le_bytes());
    out.extend_from_slice(&lease.to_le_bytes());
    out.extend_from_slice(value);
    out
}

fn decode(key: &str, raw: &[u8]) -> Result<(Revision, LeaseId, Vec<u8>)> {
    if raw.len() < 16 {
        return Err(Error::Corrupt {
            key: key.to_owned(),
            reason: format!("entry of {} bytes is shorter than its 16-byte header", raw.len()),
        });
    }
    let mut word = [0u8; 8];
    word.copy_from_slice(&raw[..8]);
    let revision = i64::from_le_bytes(word);
    word.copy_from_slice(&raw[8..16]);
    let lease = i64::from_le_bytes(word);
    Ok((revision, lease, raw[16..].to_vec()))
}

impl EmbeddedStore {
    /// Opens (or creates) the store file. Must be called inside a tokio runtime: a task
    /// expires leases.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        if let Some(parent) = path.as_ref().parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .map_err(|err| Error::Embedded(format!("create {}: {err}", parent.display())))?;
        }
        let db = Database::create(path.as_ref())?;
        let revision = Self::clear_orphaned_leases(&db)?;
        let (events, _) = broadcast::channel(HISTORY);
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(1);
        let inner = Arc::new(Inner {
            db,
            state: Mutex::new(State {
                revision,
                history_floor: revision + 1,
                history: VecDeque::new(),
                lease_keys: HashMap::new(),
            }),
            leases: Mutex::new(Leases::new(seed << 16, Instant::now())),
            events,
        });
        tokio::spawn(expire_leases(Arc::downgrade(&inner)));
        Ok(Self { inner })
    }

    /// Deletes keys bound to leases of an earlier process; returns the current revision.
    fn clear_orphaned_leases(db: &Database) -> Result<Revision> {
        let txn = db.begin_write()?;
        let revision;
        {
            let mut kv = txn.open_table(KV)?;
            let mut meta = txn.open_table(META)?;
            let mut current = meta.get(REVISION_KEY)?.map(|v| v.value()).unwrap_or(0);
            let mut orphans = Vec::new();
            for entry in kv.iter()? {
                let (key, value) = entry?;
                let (_, lease, _) = decode(key.value(), value.value())?;
                if lease != 0 {
                    orphans.push(key.value().to_owned());
                }
            }
            if !orphans.is_empty() {
                current += 1;
                for key in &orphans {
                    kv.remove(key.as_str())?;
                }
                meta.insert(REVISION_KEY, current)?;
            }
            revision = current;
        }
        txn.commit()?;
        Ok(revision)
    }
}

enum Change {
    Put {
        value: Vec<u8>,
        lease: LeaseId,
        expected: Option<Revision>,
    },
    Delete,
    /// Deletes the key only while it is still bound to this lease: a key put again under
    /// another lease after its old lease ended belongs to the new one.
    DeleteOfLease(LeaseId),
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data in redb (the transaction
        // was not committed); the in-memory state is still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn leases(&self) -> MutexGuard<'_, Leases> {
        self.leases.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies one change under the write lock. Returns the new revision, or `None` when
    /// a compare failed or a delete found nothing.
    fn apply(&self, key: &str, change: Change) -> Result<Option<Revision>> {
        let mut state = self.lock();
        if let Change::Put { lease, .. } = &change
            && *lease != 0
            && !self.leases().is_live(*lease)
        {
            return Err(Error::LeaseNotFound(*lease));
        }
        let revision = state.revision + 1;
        let txn = self.db.begin_write()?;
        let (previous_lease, event) = {
            let mut kv = txn.open_table(KV)?;
            let previous = match kv.get(key)? {
                Some(raw) => Some(decode(key, raw.value())?),
                None => None,
            };
            let previous_lease = previous.as_ref().map(|(_, lease, _)| *lease).unwrap_or(0);
            let event = match change {
                Change::Put { value, lease, expected } => {
                    if let Some(expected) = expected {
                        let current = previous.as_ref().map(|(rev, _, _)| *rev).unwrap_or(0);
                        if current != expected {
                            return Ok(None);
                        }
                    }
                    kv.insert(key, encode(revision, lease, &value).as_slice())?;
                    (lease, WatchEvent { kind: EventKind::Put, key: key.to_owned(), value, revision })
                }
                delete @ (Change::Delete | Change::DeleteOfLease(_)) => {
                    let bound_elsewhere = matches!(delete, Change::DeleteOfLease(ended) if ended != previous_lease);
                    if previous.is_none() || bound_elsewhere {
                        return Ok(None);
                    }
                    kv.remove(key)?;
                    (0, WatchEvent { kind: EventKind::Delete, key: key.to_owned(), value: Vec::new(), revision })
                }
            };
            txn.open_table(META)?.insert(REVISION_KEY, revision)?;
            (previous_lease, event)
        };
        txn.commit()?;

        let (new_lease, event) = event;
        if previous_lease != 0
            && let Some(keys) = state.lease_keys.get_mut(&previous_lease)
        {
            keys.remove(key);
        }
        if new_lease != 0 {
            // Even if the lease ended since the check above: its revoke then waits for
            // this lock and finds the key here.
            state.lease_keys.entry(new_lease).or_default().insert(key.to_owned());
        }
        state.revision = revision;
        state.history.push_back(event.clone());
        if state.history.len() > HISTORY
            && let Some(oldest) = state.history.pop_front()
        {
            state.history_floor = oldest.revision + 1;
        }
        // No receiver is fine: nobody watches.
        let _ = self.events.send(event);
        Ok(Some(revision))
    }

    fn read_range(&self, prefix: &str, start: &str, limit: usize) -> Result<Snapshot> {
        let txn = self.db.begin_read()?;
        let kv = txn.open_table(KV)?;
        let revision = txn.open_table(META)?.get(REVISION_KEY)?.map(|v| v.value()).unwrap_or(0);
        let mut kvs = Vec::new();
        let mut more = false;
        let from = if start > prefix { start } else { prefix };
        for entry in kv.range(from..)? {
            let (key, value) = entry?;
            if !key.value().starts_with(prefix) {
                break;
            }
            if kvs.len() == limit {
                more = true;
                break;
            }
            let (mod_revision, _, value) = decode(key.value(), value.value())?;
            kvs.push(KeyValue { key: key.value().to_owned(), value, mod_revision });
        }
        Ok(Snapshot { kvs, revision, more })
    }

    /// Deletes the keys of a lease that is no longer live (removed from `leases` first,
    /// so no write can bind another key to it).
    fn delete_lease_keys(&self, lease: LeaseId) -> Result<()> {
        let keys = self.lock().lease_keys.remove(&lease).unwrap_or_default();
        for key in keys {
            self.apply(&key, Change::DeleteOfLease(lease))?;
        }
        Ok(())
    }
}

async fn expire_leases(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(leases::EXPIRY_TICK);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let expired = inner.leases().sweep(Instant::now());
        if expired.is_empty() {
            continue;
        }
        let result = tokio::task::spawn_blocking(move || {
            expired.into_iter().try_for_each(|lease| inner.delete_lease_keys(lease))
        })
        .await;
        if let Ok(Err(err)) = result {
            tracing::warn!(error = %err, "expiring leases failed");
        }
    }
}

impl EmbeddedStore {
    async fn blocking<T: Send + 'static>(&self, work: impl FnOnce(&Inner) -> Result<T> + Send + 'static) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|err| Error::Embedded(format!("store task failed: {err}")))?
    }
}

#[async_trait::async_trait]
impl KvStore for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_owned();
        self.blocking(move |inner| {
            let txn = inner.db.begin_read()?;
            let kv = txn.open_table(KV)?;
            let Some(raw) = kv.get(key.as_str())? else {
                return Ok(None);
            };
            let (mod_revision, _, value) = decode(&key, raw.value())?;
            Ok(Some(KeyValue { key: key.clone(), value, mod_revision }))
        })
        .await
    }

    async fn range(&self, prefix: &str) -> Result<Snapshot> {
        let prefix = prefix.to_owned();
        self.blocking(move |inner| inner.read_range(&prefix, "", usize::MAX)).await
    }

    async fn range_from(&self, prefix: &str, start: &str, limit: usize) -> Result<Snapshot> {
        let (prefix, start) = (prefix.to_owned(), start.to_owned());
        self.blocking(move |inner| inner.read_range(&prefix, &start, limit)).await
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<Revision> {
        let key = key.to_owned();
        let change = Change::Put { value, lease: lease.unwrap_or(0), expected: None };
        let revision = self.blocking(move |inner| inner.apply(&key, change)).await?;
        Ok(revision.unwrap_or_default())
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let key = key.to_owned();
        Ok(self.blocking(move |inner| inner.apply(&key, Change::Delete)).await?.is_some())
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Revision,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<bool> {
        let key = key.to_owned();
        let change = Change::Put { value, lease: lease.unwrap_or(0), expected: Some(expected) };
        Ok(self.blocking(move |inner| inner.apply(&key, change)).await?.is_some())
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<WatchStream> {
        let (replay, receiver) = {
            let state = self.inner.lock();
            if from_revision < state.history_floor && from_revision <= state.revision {
                return Err(Error::Compacted { requested: from_revision, oldest: state.history_floor });
            }
            let replay: Vec<WatchEvent> = state
                .history
                .iter()
                .filter(|e| e.revision >= from_revision && e.key.starts_with(prefix))
                .cloned()
                .collect();
            // Subscribing under the lock that writers hold while they broadcast means no
            // change falls between the replay and the live stream.
            (replay, self.inner.events.subscribe())
        };
        let prefix = prefix.to_owned();
        let live = BroadcastStream::new(receiver).filter_map(move |message| {
            let item = match message {
                Ok(event) if event.revision >= from_revision && event.key.starts_with(&prefix) => Some(Ok(event)),
                Ok(_) => None,
                Err(_lagged) => Some(Err(Error::Compacted { requested: from_revision, oldest: 0 })),
            };
            futures::future::ready(item)
        });
        Ok(Box::pin(futures::stream::iter(replay.into_iter().map(Ok)).chain(live)))
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId> {
        Ok(self.inner.leases().grant(ttl, Instant::now()))
    }

    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<()> {
        if self.inner.leases().keep_alive(lease, Instant::now()) { Ok(()) } else { Err(Error::LeaseNotFound(lease)) }
    }

    async fn lease_revoke(&self, lease: LeaseId) -> Result<()> {
        self.inner.leases().remove(lease);
        self.blocking(move |inner| inner.delete_lease_keys(lease)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lease no test outlives, however slow the machine.
    const LONG_LEASE: Duration = Duration::from_secs(600);

    /// A fresh store (kept open as long as the returned directory) with `key` put under a
    /// new lease.
    async fn store_with_leased(key: &str, value: &[u8]) -> (tempfile::TempDir, EmbeddedStore, LeaseId) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(dir.path().join("store.redb")).expect("open");
        let lease = store.lease_grant(LONG_LEASE).await.expect("grant");
        store.put(key, value.to_vec(), Some(lease)).await.expect("put");
        (dir, store, lease)
    }

    #[tokio::test]
    async fn a_keep_alive_does_not_wait_for_a_write_in_progress() {
        let (_dir, store, lease) = store_with_leased("/t/leased", b"v").await;
        // A write holds this lock across its commit, which may wait seconds on a slow disk.
        let writing = store.inner.lock();
        let (answer, answered) = std::sync::mpsc::channel();
        let refresher = store.clone();
        std::thread::spawn(move || {
            let _ = answer.send(futures::executor::block_on(refresher.lease_keep_alive(lease)));
        });
        // A keep-alive that waited for the write would wait until after this (the lock is
        // held until then); the timeout only bounds that wait.
        let refreshed = answered.recv_timeout(Duration::from_secs(60));
        drop(writing);
        assert!(matches!(refreshed, Ok(Ok(()))), "the keep-alive waited for the write: {refreshed:?}");
        store.lease_revoke(lease).await.expect("revoke");
        assert!(store.get("/t/leased").await.expect("get").is_none(), "a revoked lease's key survived");
    }

    /// An ended lease's keys are listed, then deleted one by one; a key put again under a
    /// new lease in between (a worker back under the same id) must survive that delete.
    #[tokio::test]
    async fn a_key_put_again_under_a_new_lease_outlives_the_old_lease() {
        let (_dir, store, old) = store_with_leased("/workers/w", b"old").await;
        let listed = store.inner.lock().lease_keys.remove(&old).unwrap_or_default();
        assert_eq!(listed.iter().collect::<Vec<_>>(), ["/workers/w"]);
        let new = store.lease_grant(LONG_LEASE).await.expect("grant");
        store.put("/workers/w", b"new".to_vec(), Some(new)).await.expect("put again");
        let deleted = store.inner.apply("/workers/w", Change::DeleteOfLease(old)).expect("apply");
        assert_eq!(deleted, None, "the key belongs to the new lease now");
        let kept = store.get("/workers/w").await.expect("get").expect("kept");
        assert_eq!(kept.value, b"new");
        store.lease_revoke(new).await.expect("revoke");
        assert!(store.get("/workers/w").await.expect("get").is_none(), "the new lease's key outlived it");
    }
}
