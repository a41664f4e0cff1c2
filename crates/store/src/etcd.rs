//! The etcd implementation of [`KvStore`].

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KvClient, LeaseClient, PutOptions, Txn, TxnOp,
    WatchClient, WatchOptions,
};
use futures::StreamExt;

use crate::{Error, EventKind, KeyValue, KvStore, LeaseId, Result, Revision, Snapshot, WatchEvent, WatchStream};

/// Unary calls fail after this long, so callers fall back on their local state instead
/// of hanging while etcd is unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest etcd response accepted: a prefix read of a large registry (10,000 version
/// records is about 6.5 MB) exceeds etcd-client's 4 MiB default.
const MAX_RESPONSE_BYTES: usize = 256 << 20;

/// etcd through etcd-client; cheap to clone.
#[derive(Clone)]
pub struct EtcdStore {
    kv: KvClient,
    watch: WatchClient,
    lease: LeaseClient,
}

impl EtcdStore {
    /// Connects to the given endpoints (`http://host:2379`).
    pub async fn connect(endpoints: &[&str]) -> Result<Self> {
        Self::connect_with(endpoints, &crate::EtcdAccess::default()).await
    }

    /// Connects with TLS and etcd credentials (`https://host:2379` for TLS).
    pub async fn connect_with(endpoints: &[&str], access: &crate::EtcdAccess) -> Result<Self> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3));
        if let Some(tls) = &access.tls {
            options = options.with_tls(tls.tonic_config());
        }
        if let Some(user) = &access.user {
            options = options.with_user(user.name.clone(), user.password.clone());
        }
        // etcd's refusal of a password names neither it nor the user's secret.
        let client = within(Client::connect(endpoints, Some(options))).await?;
        Ok(Self {
            kv: client.kv_client().max_decoding_message_size(MAX_RESPONSE_BYTES),
            watch: client.watch_client().max_decoding_message_size(MAX_RESPONSE_BYTES),
            lease: client.lease_client(),
        })
    }
}

async fn within<T>(call: impl Future<Output = Result<T, etcd_client::Error>>) -> Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result.map_err(Error::from),
        Err(_) => Err(Error::Unavailable(format!("etcd did not answer within {CALL_TIMEOUT:?}"))),
    }
}

fn convert(kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    let key = String::from_utf8(kv.key().to_vec()).map_err(|_| Error::Corrupt {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        reason: "key is not UTF-8".into(),
    })?;
    Ok(KeyValue { key, value: kv.value().to_vec(), mod_revision: kv.mod_revision() })
}

fn put_options(lease: Option<LeaseId>) -> Option<PutOptions> {
    lease.map(|id| PutOptions::new().with_lease(id))
}

#[async_trait::async_trait]
impl KvStore for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let mut client = self.kv.clone();
        let response = within(client.get(key, None)).await?;
        response.kvs().first().map(convert).transpose()
    }

    async fn range(&self, prefix: &str) -> Result<Snapshot> {
        let mut client = self.kv.clone();
        let response = within(client.get(prefix, Some(GetOptions::new().with_prefix()))).await?;
        let revision = response.header().map(|h| h.revision()).unwrap_or_default();
        let kvs = response.kvs().iter().map(convert).collect::<Result<_>>()?;
        Ok(Snapshot { kvs, revision, more: response.more() })
    }

    async fn range_from(&self, prefix: &str, start: &str, limit: usize) -> Result<Snapshot> {
        let mut client = self.kv.clone();
        let from = if start > prefix { start } else { prefix };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let options = GetOptions::new().with_range(prefix_end(prefix)).with_limit(limit);
        let response = within(client.get(from, Some(options))).await?;
        let revision = response.header().map(|h| h.revision()).unwrap_or_default();
        let kvs = response.kvs().iter().map(convert).collect::<Result<_>>()?;
        Ok(Snapshot { kvs, revision, more: response.more() })
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<Revision> {
        let mut client = self.kv.clone();
        let response = within(client.put(key, value, put_options(lease))).await?;
        Ok(response.header().map(|h| h.revision()).unwrap_or_default())
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let mut client = self.kv.clone();
        let response = within(client.delete(key, None)).await?;
        Ok(response.deleted() > 0)
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Revision,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<bool> {
        let compare = if expected == 0 {
            Compare::create_revision(key, CompareOp::Equal, 0)
        } else {
            Compare::mod_revision(key, CompareOp::Equal, expected)
        };
        let txn = Txn::new().when([compare]).and_then([TxnOp::put(key, value, put_options(lease))]);
        let mut client = self.kv.clone();
        let response = within(client.txn(txn)).await?;
        Ok(response.succeeded())
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<WatchStream> {
        let mut client = self.watch.clone();
        let options = WatchOptions::new().with_prefix().with_start_revision(from_revision);
        let stream = within(client.watch(prefix, Some(options))).await?;
        let events = stream.flat_map(move |message| {
            let batch: Vec<Result<WatchEvent>> = match message {
                Err(err) => vec![Err(Error::from(err))],
                Ok(response) if response.compact_revision() > 0 => {
                    vec![Err(Error::Compacted { requested: from_revision, oldest: response.compact_revision() })]
                }
                Ok(response) if response.canceled() => {
                    vec![Err(Error::Unavailable(format!("watch canceled by etcd: {}", response.cancel_reason())))]
                }
                Ok(response) => response
                    .events()
                    .iter()
                    .filter_map(|event| {
                        let kv = event.kv()?;
                        Some(convert(kv).map(|kv| WatchEvent {
                            kind: match event.event_type() {
                                EventType::Put => EventKind::Put,
                                EventType::Delete => EventKind::Delete,
                            },
                            revision: kv.mod_revision,
                            key: kv.key,
                            value: kv.value,
                        }))
                    })
                    .collect(),
            };
            futures::stream::iter(batch)
        });
        Ok(Box::pin(events))
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId> {
        let mut client = self.lease.clone();
        let seconds = ttl.as_secs().max(1) as i64;
        Ok(within(client.grant(seconds, None)).await?.id())
    }

    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<()> {
        let mut client = self.lease.clone();
        let (mut keeper, mut responses) = within(client.keep_alive(lease)).await?;
        within(keeper.keep_alive()).await?;
        match within(responses.message()).await? {
            Some(response) if response.ttl() > 0 => Ok(()),
            _ => Err(Error::LeaseNotFound(lease)),
        }
    }

    async fn lease_revoke(&self, lease: LeaseId) -> Result<()> {
        let mut client = self.lease.clone();
        match within(client.revoke(lease)).await {
            Ok(_) | Err(Error::LeaseNotFound(_)) => Ok(()),
            Err(err) => Err(err),
        }
    }
}

/// The first key after every key that starts with `prefix` (etcd's range end).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: "\0" means "to the end of the keyspace" to etcd.
    vec![0]
}
