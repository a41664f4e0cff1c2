//! API keys: made once with a high-entropy random secret, stored only as a salted hash
//! ([`ApiKeyRecord`]), and checked in constant time. A key as a caller sends it is
//! `mpk_{id}_{secret}` (parsed by `modelplane_service::credentials`): the id finds the
//! record, the secret proves possession. An unknown id, a wrong secret, a revoked and an
//! expired key are the same refusal.

use rand::Rng;
use sha2::{Digest, Sha256};

use modelplane_service::access::Role;
use modelplane_service::credentials::{ApiKey, ID_BYTES, KEY_PREFIX, Presented, Refusal, SECRET_BYTES, parse_bearer};

use crate::KvStore;
use crate::schema::{self, ApiKeyRecord};

const SALT_BYTES: usize = 16;

/// A key just made: its record (to store) and the key itself (shown once, never stored).
pub struct NewKey {
    pub record: ApiKeyRecord,
    pub key: String,
}

/// What a new key is for.
pub struct KeySpec<'a> {
    pub name: &'a str,
    pub role: Role,
    pub model_prefix: &'a str,
    pub expires_unix_ms: Option<i64>,
    pub created_by: &'a str,
}

/// Makes a key with fresh random id, secret and salt (the thread's CSPRNG).
pub fn create(spec: &KeySpec<'_>, now_unix_ms: i64) -> NewKey {
    let mut rng = rand::rng();
    let id = hex::encode(rng.random::<[u8; ID_BYTES]>());
    let secret = hex::encode(rng.random::<[u8; SECRET_BYTES]>());
    NewKey { record: record_for(&id, &secret, spec, now_unix_ms), key: format!("{KEY_PREFIX}{id}_{secret}") }
}

/// The record of a key with this id and secret (salted afresh).
fn record_for(id: &str, secret: &str, spec: &KeySpec<'_>, now_unix_ms: i64) -> ApiKeyRecord {
    let salt = rand::rng().random::<[u8; SALT_BYTES]>();
    ApiKeyRecord {
        id: id.to_owned(),
        name: spec.name.to_owned(),
        role: spec.role,
        model_prefix: spec.model_prefix.to_owned(),
        salt: hex::encode(salt),
        secret_sha256: hex::encode(salted(&salt, secret)),
        created_unix_ms: now_unix_ms,
        created_by: spec.created_by.to_owned(),
        expires_unix_ms: spec.expires_unix_ms,
        revoked_unix_ms: None,
    }
}

/// Why [`ensure_key_file`] could not give a key.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("API key file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("the key in {path} was revoked; remove the file to make a new key")]
    Revoked { path: String },
    #[error(transparent)]
    Store(#[from] crate::Error),
}

/// The key in `path`, with its record in `store`: a file that does not exist yet gets a
/// new key (mode 0600); a key that is in the file but not in the store (a bootstrap key
/// from a Kubernetes Secret) is stored as `spec` says. A revoked key is not brought
/// back.
pub async fn ensure_key_file(
    store: &dyn KvStore,
    path: &std::path::Path,
    spec: &KeySpec<'_>,
) -> Result<ApiKey, KeyFileError> {
    let file_error = |reason: String| KeyFileError::File { path: path.display().to_string(), reason };
    let now = schema::now_unix_ms();
    if !path.exists() {
        let new = create(spec, now);
        write_private(path, &new.key).map_err(|err| file_error(err.to_string()))?;
        store.put(&schema::api_key_key(&new.record.id), schema::encode(&new.record), None).await?;
        audit_stored(store, &new.record, "create_key").await?;
        return ApiKey::parse(&new.key).map_err(file_error);
    }
    let key = ApiKey::read_file(path).map_err(file_error)?;
    let header = format!("Bearer {}", key.expose());
    let presented = parse_bearer(Some(&header)).map_err(|refusal| file_error(refusal.message().to_owned()))?;
    let record_key = schema::api_key_key(presented.id);
    match store.get(&record_key).await? {
        Some(stored) => {
            let record: ApiKeyRecord = schema::decode(&record_key, &stored.value)?;
            if record.revoked_unix_ms.is_some() {
                return Err(KeyFileError::Revoked { path: path.display().to_string() });
            }
            verify(&record, &presented, now)
                .map_err(|_| file_error("its id is taken by another key, or it expired".into()))?;
        }
        None => {
            let record = record_for(presented.id, presented.secret, spec, now);
            store.put(&record_key, schema::encode(&record), None).await?;
            audit_stored(store, &record, "import_key").await?;
        }
    }
    Ok(key)
}

/// [`ensure_key_file`], retried for up to `patience` while the store does not answer: a
/// service may start before etcd does (pods on Kubernetes start in any order), and one
/// that gave up at once would only be restarted later by its supervisor.
pub async fn ensure_key_file_patiently(
    store: &dyn KvStore,
    path: &std::path::Path,
    spec: &KeySpec<'_>,
    patience: std::time::Duration,
) -> Result<ApiKey, KeyFileError> {
    let deadline = std::time::Instant::now() + patience;
    let mut pause = std::time::Duration::from_millis(200);
    loop {
        match ensure_key_file(store, path, spec).await {
            Err(KeyFileError::Store(crate::Error::Unavailable(reason)))
                if std::time::Instant::now() + pause < deadline =>
            {
                tracing::warn!(%reason, path = %path.display(), "the store does not answer yet; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(2));
            }
            done => return done,
        }
    }
}

/// Records in the audit log that a service stored the key `record` (as the registry
/// records the keys it makes), with the service as the actor.
async fn audit_stored(store: &dyn KvStore, record: &ApiKeyRecord, action: &str) -> crate::Result<()> {
    let entry = schema::AuditRecord {
        unix_ms: record.created_unix_ms,
        actor: record.created_by.clone(),
        action: action.to_owned(),
        model: String::new(),
        subject: format!("{} ({})", record.name, record.id),
        before: String::new(),
        after: format!("role {}", record.role.name()),
        reason: String::new(),
    };
    store.put(&schema::audit_key(entry.unix_ms, &record.id), schema::encode(&entry), None).await.map(|_| ())
}

/// Writes `key` to a new file only its owner may read (its directory is made if need be).
pub fn write_private(path: &std::path::Path, key: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(format!("{key}\n").as_bytes())?;
    file.sync_all()
}

/// Checks a presented key against its record at `now_unix_ms`.
pub fn verify(record: &ApiKeyRecord, presented: &Presented<'_>, now_unix_ms: i64) -> Result<(), Refusal> {
    let salt = hex::decode(&record.salt).map_err(|_| Refusal::Invalid)?;
    let stored = hex::decode(&record.secret_sha256).map_err(|_| Refusal::Invalid)?;
    let matches = constant_time_eq(&salted(&salt, presented.secret), &stored);
    let live = record.revoked_unix_ms.is_none() && record.expires_unix_ms.is_none_or(|at| now_unix_ms < at);
    if record.id == presented.id && matches && live { Ok(()) } else { Err(Refusal::Invalid) }
}

fn salted(salt: &[u8], secret: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(secret.as_bytes());
    hasher.finalize().into()
}

/// Equal without an early exit, so the time taken says nothing about where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {

    use super::*;

    fn spec(expires_unix_ms: Option<i64>) -> KeySpec<'static> {
        KeySpec { name: "ci", role: Role::Predictor, model_prefix: "team-a/", expires_unix_ms, created_by: "admin" }
    }

    #[test]
    fn a_new_key_verifies_and_its_record_holds_no_secret() {
        let NewKey { record, key } = create(&spec(None), 1_000);
        let header = format!("Bearer {key}");
        let presented = parse_bearer(Some(&header)).expect("well formed");
        assert_eq!(presented.id, record.id);
        assert_eq!(verify(&record, &presented, 2_000), Ok(()));
        let stored = serde_json::to_string(&record).expect("encodes");
        let secret = key.rsplit('_').next().expect("secret part");
        assert!(!stored.contains(secret), "the record must not hold the secret: {stored}");
        assert_eq!((record.role, record.model_prefix.as_str()), (Role::Predictor, "team-a/"));
        let other = create(&spec(None), 1_000);
        assert_ne!((&other.record.id, &other.record.salt), (&record.id, &record.salt), "fresh randomness");
    }

    #[test]
    fn wrong_revoked_and_expired_keys_read_the_same() {
        let NewKey { mut record, key } = create(&spec(Some(5_000)), 1_000);
        let header = format!("Bearer {key}");
        let presented = parse_bearer(Some(&header)).expect("well formed");
        assert_eq!(verify(&record, &presented, 5_000), Err(Refusal::Invalid), "expired at 5000");
        let mut flipped = key.clone();
        let last = flipped.pop().expect("non-empty");
        flipped.push(if last == '0' { '1' } else { '0' });
        let wrong_header = format!("Bearer {flipped}");
        let wrong = parse_bearer(Some(&wrong_header)).expect("well formed");
        assert_eq!(verify(&record, &wrong, 2_000), Err(Refusal::Invalid), "wrong secret");
        record.revoked_unix_ms = Some(3_000);
        assert_eq!(verify(&record, &presented, 2_000), Err(Refusal::Invalid), "revoked");
        let other = create(&spec(None), 1_000);
        assert_eq!(verify(&other.record, &presented, 2_000), Err(Refusal::Invalid), "another key's record");
    }

    #[tokio::test]
    async fn key_files_are_made_once_imported_when_given_and_never_revived() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::EmbeddedStore::open(dir.path().join("store.redb")).expect("store");
        let spec =
            KeySpec { name: "admin", role: Role::Admin, model_prefix: "", expires_unix_ms: None, created_by: "up" };
        let path = dir.path().join("keys/admin.key");
        let made = ensure_key_file(&store, &path, &spec).await.expect("made");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "only the owner reads a key file");
        }
        assert_eq!(ensure_key_file(&store, &path, &spec).await.expect("again"), made, "the same key on restart");

        let given = create(&spec, 0).key;
        let given_path = dir.path().join("given.key");
        std::fs::write(&given_path, format!("{given}\n")).expect("write");
        let imported = ensure_key_file(&store, &given_path, &spec).await.expect("imported");
        let record_key = schema::api_key_key(imported.id());
        let stored = store.get(&record_key).await.expect("get").expect("stored");
        let mut record: ApiKeyRecord = schema::decode(&record_key, &stored.value).expect("record");
        assert_eq!((record.role, record.name.as_str()), (Role::Admin, "admin"));

        record.revoked_unix_ms = Some(1);
        store.put(&record_key, schema::encode(&record), None).await.expect("revoke");
        let err = ensure_key_file(&store, &given_path, &spec).await.expect_err("revoked stays revoked");
        assert!(matches!(err, KeyFileError::Revoked { .. }), "{err}");
        assert!(!err.to_string().contains(given.split('_').nth(2).expect("secret")), "{err}");
    }
}
