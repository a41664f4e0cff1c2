//! The store-backed [`Authenticator`]: every key record under
//! [`KEYS`](crate::schema::KEYS), mirrored by a watch, and the keys already verified, so a
//! call with a known key costs a map lookup and two comparisons, not a hash. A record
//! that changes (revoked, rewritten) or disappears no longer matches its verification, so
//! revocation takes effect as soon as the watch delivers it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use modelplane_service::credentials::{Presented, Refusal};
use modelplane_service::{Authenticator, Caller};

use crate::schema::{self, ApiKeyRecord};
use crate::{KvStore, Mirror};

/// A key that verified: the record bytes it verified against, the secret presented, and
/// the caller it stands for.
struct Verified {
    record: Vec<u8>,
    secret: String,
    expires_unix_ms: Option<i64>,
    caller: Caller,
}

/// See the module docs.
pub struct KeyCache {
    keys: Mirror,
    verified: Mutex<HashMap<String, Verified>>,
}

impl KeyCache {
    /// Starts mirroring the keys of `store`.
    pub fn start(store: Arc<dyn KvStore>) -> Self {
        Self { keys: Mirror::start(store, schema::KEYS), verified: Mutex::new(HashMap::new()) }
    }

    /// The authentication layer of a server over `store`'s keys, once they have been read
    /// (so the first calls are not refused for want of a key list).
    pub async fn auth_layer(
        store: Arc<dyn KvStore>,
        access: &modelplane_service::access::ServerAccess,
    ) -> crate::Result<modelplane_service::AuthLayer> {
        let cache = Self::start(store);
        if !cache.keys.wait_synced(std::time::Duration::from_secs(30)).await {
            return Err(crate::Error::Unavailable("could not read the API keys from the store within 30 s".into()));
        }
        let layer = modelplane_service::AuthLayer::new(Arc::new(cache), access.anonymous, access.failures_per_minute);
        Ok(layer.with_certificate_roles(access.certificate_roles.clone()))
    }

    /// The mirror, e.g. to wait until it has read the keys once.
    pub fn mirror(&self) -> &Mirror {
        &self.keys
    }

    fn authenticate_at(&self, presented: &Presented<'_>, now_unix_ms: i64) -> Result<Caller, Refusal> {
        let keys = self.keys.current();
        let key = schema::api_key_key(presented.id);
        let Some(record_bytes) = keys.entries.get(&key) else {
            return Err(Refusal::Invalid);
        };
        let mut verified = self.verified.lock().map_err(|_| Refusal::Invalid)?;
        if let Some(known) = verified.get(presented.id)
            && known.record == *record_bytes
            && crate::api_key::constant_time_eq(known.secret.as_bytes(), presented.secret.as_bytes())
            && known.expires_unix_ms.is_none_or(|at| now_unix_ms < at)
        {
            return Ok(known.caller.clone());
        }
        let record: ApiKeyRecord = schema::decode(&key, record_bytes).map_err(|_| Refusal::Invalid)?;
        crate::api_key::verify(&record, presented, now_unix_ms)?;
        let caller = Caller { name: record.name.clone(), role: record.role, model_prefix: record.model_prefix.clone() };
        verified.insert(
            presented.id.to_owned(),
            Verified {
                record: record_bytes.clone(),
                secret: presented.secret.to_owned(),
                expires_unix_ms: record.expires_unix_ms,
                caller: caller.clone(),
            },
        );
        Ok(caller)
    }
}

impl Authenticator for KeyCache {
    fn authenticate(&self, presented: &Presented<'_>) -> Result<Caller, Refusal> {
        self.authenticate_at(presented, schema::now_unix_ms())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use modelplane_service::access::Role;
    use modelplane_service::credentials::parse_bearer;

    use super::*;
    use crate::EmbeddedStore;
    use crate::api_key::{KeySpec, create};

    async fn settled(cache: &KeyCache, revision: crate::Revision) {
        let mut state = cache.mirror().subscribe();
        tokio::time::timeout(Duration::from_secs(5), state.wait_for(|s| s.revision >= revision))
            .await
            .expect("the mirror follows the store")
            .expect("mirror alive");
    }

    #[tokio::test]
    async fn known_keys_pass_and_revoked_or_deleted_ones_stop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn KvStore> = Arc::new(EmbeddedStore::open(dir.path().join("store.redb")).expect("store"));
        let cache = KeyCache::start(store.clone());
        let spec =
            KeySpec { name: "ci", role: Role::Trainer, model_prefix: "", expires_unix_ms: None, created_by: "admin" };
        let new = create(&spec, 0);
        let key = schema::api_key_key(&new.record.id);
        let revision = store.put(&key, schema::encode(&new.record), None).await.expect("put");
        settled(&cache, revision).await;

        let header = format!("Bearer {}", new.key);
        let presented = parse_bearer(Some(&header)).expect("well formed");
        let caller = cache.authenticate(&presented).expect("a stored key passes");
        assert_eq!((caller.name.as_str(), caller.role), ("ci", Role::Trainer));
        assert_eq!(cache.authenticate(&presented), Ok(caller), "and again, from the cache");

        let last = if new.key.ends_with('0') { "1" } else { "0" };
        let wrong_header = format!("Bearer {}{last}", &new.key[..new.key.len() - 1]);
        let wrong = parse_bearer(Some(&wrong_header)).expect("well formed");
        assert_eq!(cache.authenticate(&wrong), Err(Refusal::Invalid), "a cached id with another secret");

        let mut revoked = new.record.clone();
        revoked.revoked_unix_ms = Some(1);
        let revision = store.put(&key, schema::encode(&revoked), None).await.expect("revoke");
        settled(&cache, revision).await;
        assert_eq!(cache.authenticate(&presented), Err(Refusal::Invalid), "revoked");

        let revision = store.put(&key, schema::encode(&new.record), None).await.expect("restore");
        settled(&cache, revision).await;
        assert!(cache.authenticate(&presented).is_ok());
        store.delete(&key).await.expect("delete");
        let revision = store.put(&schema::api_key_key("other"), b"{}".to_vec(), None).await.expect("put");
        settled(&cache, revision).await;
        assert_eq!(cache.authenticate(&presented), Err(Refusal::Invalid), "deleted");
    }

    #[tokio::test]
    async fn a_cached_key_expires_on_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn KvStore> = Arc::new(EmbeddedStore::open(dir.path().join("store.redb")).expect("store"));
        let cache = KeyCache::start(store.clone());
        let spec = KeySpec {
            name: "short",
            role: Role::Viewer,
            model_prefix: "",
            expires_unix_ms: Some(10_000),
            created_by: "admin",
        };
        let new = create(&spec, 0);
        let revision =
            store.put(&schema::api_key_key(&new.record.id), schema::encode(&new.record), None).await.expect("put");
        settled(&cache, revision).await;
        let header = format!("Bearer {}", new.key);
        let presented = parse_bearer(Some(&header)).expect("well formed");
        assert!(cache.authenticate_at(&presented, 9_999).is_ok());
        assert_eq!(cache.authenticate_at(&presented, 10_000), Err(Refusal::Invalid), "expired, though cached");
    }
}
