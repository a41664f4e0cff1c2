//! The audit log: one record per mutation under `/audit/`, keyed by time.

use modelplane_store::KvStore;
use modelplane_store::schema::{self, AuditRecord};

use crate::Result;

/// Metadata key naming who makes a request.
pub const ACTOR_METADATA: &str = "x-modelplane-actor";
/// The actor recorded when a request names none.
pub const ANONYMOUS: &str = "anonymous";

/// Writes one audit record. Called after the mutation it records succeeded; the store
/// has no multi-key transaction, so a failure here is logged loudly rather than undoing
/// the mutation.
pub(crate) async fn record(store: &dyn KvStore, entry: AuditRecord) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let key = schema::audit_key(entry.unix_ms, &id[..12]);
    if let Err(err) = store.put(&key, schema::encode(&entry), None).await {
        tracing::error!(error = %err, action = %entry.action, model = %entry.model, "audit record not written");
    }
}

/// Audit records in `[since, until)` (0 = unbounded) for `model` (empty = all), oldest
/// first, at most the newest `limit`.
pub(crate) async fn list(
    store: &dyn KvStore,
    model: &str,
    since: i64,
    until: i64,
    limit: usize,
) -> Result<Vec<AuditRecord>> {
    let snapshot = store.range(schema::AUDIT).await?;
    let mut entries: Vec<AuditRecord> =
        snapshot.kvs.iter().map(|kv| schema::decode::<AuditRecord>(&kv.key, &kv.value)).collect::<Result<_, _>>()?;
    entries
        .retain(|e| (model.is_empty() || e.model == model) && e.unix_ms >= since && (until == 0 || e.unix_ms < until));
    let skip = entries.len().saturating_sub(limit);
    Ok(entries.split_off(skip))
}
