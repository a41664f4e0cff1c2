//! The KvStore: one trait, two implementations.
//!
//! - [`EtcdStore`]: etcd through etcd-client, for clusters.
//! - [`EmbeddedStore`]: a redb file with watches and leases emulated in process, for
//!   `modelplane up` on a single node.
//!
//! Everything above this crate talks to `Arc<dyn KvStore>`. [`Mirror`] keeps a local copy
//! of a prefix fed by a watch, so that readers keep serving when the store is unreachable.
#![forbid(unsafe_code)]

pub mod api_key;
mod catalog;
mod embedded;
mod error;
mod etcd;
mod format;
mod key_cache;
mod lease;
mod mirror;
pub mod placement;
pub mod schema;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;

pub use catalog::{Catalog, Requested, ResolvedTarget, find_dataset, workers};
pub use embedded::EmbeddedStore;
pub use error::{Error, Result};
pub use etcd::EtcdStore;
pub use key_cache::KeyCache;
pub use lease::LeaseKeeper;
pub use mirror::{Mirror, MirrorState};
pub use placement::Placement;

/// A store revision: every write gets a higher one.
pub type Revision = i64;
/// A lease: keys bound to it are deleted when it expires or is revoked.
pub type LeaseId = i64;

/// One key with its value and revisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The full key.
    pub key: String,
    /// The value bytes.
    pub value: Vec<u8>,
    /// Revision of the last write of this key; the token for compare-and-swap.
    pub mod_revision: Revision,
}

/// The keys under a prefix and the store revision they were read at.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Keys in ascending order.
    pub kvs: Vec<KeyValue>,
    /// Revision of the read; watch from `revision + 1` to see every later change.
    pub revision: Revision,
    /// A limited read stopped before the end of the prefix.
    pub more: bool,
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created or overwritten.
    Put,
    /// The key was deleted (directly or by its lease expiring).
    Delete,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// Put or delete.
    pub kind: EventKind,
    /// The key that changed.
    pub key: String,
    /// The new value; empty for a delete.
    pub value: Vec<u8>,
    /// Revision of the change.
    pub revision: Revision,
}

/// A stream of changes under a prefix, in revision order.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent>> + Send>>;

/// The operations modelplane needs from a metadata store.
#[async_trait::async_trait]
pub trait KvStore: Send + Sync + 'static {
    /// One key, or `None`.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;
    /// Every key starting with `prefix`, and the revision of the read.
    async fn range(&self, prefix: &str) -> Result<Snapshot>;
    /// At most `limit` keys starting with `prefix` and not below `start`, in key order;
    /// `more` says whether keys were left. Paged listings read in these chunks so their
    /// cost follows the page, not the whole prefix.
    async fn range_from(&self, prefix: &str, start: &str, limit: usize) -> Result<Snapshot>;
    /// Writes a key, bound to `lease` when given; returns the new revision.
    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<Revision>;
    /// Deletes a key; returns whether it existed.
    async fn delete(&self, key: &str) -> Result<bool>;
    /// Writes `key` only if its mod revision is still `expected` (0: the key must not
    /// exist). Returns whether the write happened.
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Revision,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<bool>;
    /// Streams every change under `prefix` with a revision ≥ `from_revision`.
    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<WatchStream>;
    /// Grants a lease that expires after `ttl` without a keep-alive.
    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId>;
    /// Refreshes a lease once; [`Error::LeaseNotFound`] when it already expired.
    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<()>;
    /// Revokes a lease and deletes its keys.
    async fn lease_revoke(&self, lease: LeaseId) -> Result<()>;
}

/// Opens the store a URL names: `http://host:2379[,http://host2:2379]` for etcd,
/// `file:///path/to/modelplane.redb` (or a plain path) for the embedded store.
pub async fn connect(url: &str) -> Result<Arc<dyn KvStore>> {
    connect_with(url, &EtcdAccess::default()).await
}

/// How a process reaches a secured etcd: TLS (`https://` endpoints; the CA, and a client
/// certificate when etcd asks for one) and etcd's own user and password.
#[derive(Clone, Debug, Default)]
pub struct EtcdAccess {
    pub tls: Option<modelplane_service::tls::ClientTls>,
    pub user: Option<EtcdUser>,
}

/// An etcd user; `Debug` never shows the password.
#[derive(Clone)]
pub struct EtcdUser {
    pub name: String,
    pub password: String,
}

impl std::fmt::Debug for EtcdUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdUser").field("name", &self.name).finish_non_exhaustive()
    }
}

/// [`connect`] with etcd's TLS and credentials (ignored by the embedded store).
pub async fn connect_with(url: &str, access: &EtcdAccess) -> Result<Arc<dyn KvStore>> {
    if let Some(endpoints) = etcd_endpoints(url, access)? {
        Ok(Arc::new(EtcdStore::connect_with(&endpoints, access).await?))
    } else {
        let path = url.strip_prefix("file://").unwrap_or(url);
        Ok(Arc::new(EmbeddedStore::open(path)?))
    }
}

/// Checks `url` and `access` as [`connect_with`] would, connecting to nothing.
pub fn check_connect_settings(url: &str, access: &EtcdAccess) -> Result<()> {
    etcd_endpoints(url, access).map(|_| ())
}

/// The etcd endpoints `url` lists (`None`: it names an embedded store's file).
fn etcd_endpoints<'a>(url: &'a str, access: &EtcdAccess) -> Result<Option<Vec<&'a str>>> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Ok(None);
    }
    let endpoints: Vec<&str> = url.split(',').map(str::trim).collect();
    if let Some(bad) = endpoints.iter().find(|e| !(e.starts_with("http://") || e.starts_with("https://"))) {
        return Err(Error::InvalidArgument(format!(
            "etcd endpoint {bad:?} in {url} is not http://HOST:PORT or https://HOST:PORT"
        )));
    }
    if access.tls.is_some() && endpoints.iter().any(|e| e.starts_with("http://")) {
        return Err(Error::InvalidArgument(format!("etcd TLS is set but {url} has http:// endpoints; use https://")));
    }
    Ok(Some(endpoints))
}
