//! API key management: keys are made, listed and revoked here (admin only, by the
//! access table); every service checks them from its own watched copy of the records.

use std::time::Duration;

use modelplane_service::access::Role;
use modelplane_store::api_key::{self, KeySpec, NewKey};
use modelplane_store::schema::{self, ApiKeyRecord};

use crate::{Error, Registry, Result};

/// Longest key name.
const MAX_NAME_CHARS: usize = 64;

fn check_key_name(name: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._-/@".contains(c);
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || !name.chars().all(allowed) {
        return Err(Error::InvalidArgument(format!(
            "key name {name:?}: expected 1 to {MAX_NAME_CHARS} letters, digits or ._-/@"
        )));
    }
    Ok(())
}

fn describe(record: &ApiKeyRecord) -> String {
    let models = if record.model_prefix.is_empty() { "all".to_owned() } else { format!("{}*", record.model_prefix) };
    let expires = record.expires_unix_ms.map_or("never".to_owned(), |at| at.to_string());
    format!("role={} models={models} expires={expires}", record.role.name())
}

impl Registry {
    /// Makes a key for `name` with `role`, limited to models under `model_prefix` and
    /// expiring after `expires_in` (none: never). The answer is the only place the key
    /// appears.
    pub async fn create_key(
        &self,
        name: &str,
        role: Role,
        model_prefix: &str,
        expires_in: Option<Duration>,
    ) -> Result<NewKey> {
        check_key_name(name)?;
        let prefix_chars = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if model_prefix.len() > 128 || !model_prefix.chars().all(prefix_chars) {
            return Err(Error::InvalidArgument(format!(
                "model prefix {model_prefix:?}: expected up to 128 letters, digits, '_', '-' or '.' (the start of model names)"
            )));
        }
        let now = schema::now_unix_ms();
        if self.list_keys().await?.iter().any(|key| key.name == name && live(key, now)) {
            return Err(Error::AlreadyExists(format!("a live key named {name:?} exists; revoke it first")));
        }
        let expires_unix_ms = expires_in
            .map(|after| i64::try_from(after.as_millis()).ok().and_then(|ms| now.checked_add(ms)))
            .map(|at| at.ok_or_else(|| Error::InvalidArgument("expiry too far in the future".into())))
            .transpose()?;
        let actor = self.actor().to_owned();
        let spec = KeySpec { name, role, model_prefix, expires_unix_ms, created_by: &actor };
        let new = api_key::create(&spec, now);
        self.store.put(&schema::api_key_key(&new.record.id), schema::encode(&new.record), None).await?;
        self.audit("create_key", "", &format!("{name} ({})", new.record.id), String::new(), describe(&new.record), "")
            .await;
        Ok(new)
    }

    /// Every key record (live, expired and revoked), oldest first.
    pub async fn list_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        let snapshot = self.store.range(schema::KEYS).await?;
        let mut keys: Vec<ApiKeyRecord> =
            snapshot.kvs.iter().map(|kv| schema::decode(&kv.key, &kv.value)).collect::<Result<_, _>>()?;
        keys.sort_by_key(|key| (key.created_unix_ms, key.id.clone()));
        Ok(keys)
    }

    /// Revokes the key `id` (revoking it again changes nothing).
    pub async fn revoke_key(&self, id: &str) -> Result<ApiKeyRecord> {
        let key = schema::api_key_key(id);
        let stored =
            self.store.get(&key).await?.ok_or_else(|| Error::NotFound(format!("no API key with id {id:?}")))?;
        let mut record: ApiKeyRecord = schema::decode(&key, &stored.value)?;
        if record.revoked_unix_ms.is_some() {
            return Ok(record);
        }
        let before = describe(&record);
        record.revoked_unix_ms = Some(schema::now_unix_ms());
        self.store.put(&key, schema::encode(&record), None).await?;
        self.audit("revoke_key", "", &format!("{} ({id})", record.name), before, "revoked".into(), "").await;
        Ok(record)
    }
}

fn live(key: &ApiKeyRecord, now: i64) -> bool {
    key.revoked_unix_ms.is_none() && key.expires_unix_ms.is_none_or(|at| now < at)
}
