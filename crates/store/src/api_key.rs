//! API keys: made once with a high-entropy random secret, stored only as a salted hash
//! ([`ApiKeyRecord`]), and checked in constant time. A key as a caller sends it is
//! `mpk_{id}_{secret}` (parsed by `modelplane_service::credentials`): the id finds the
//! record, the secret proves possession. An unknown id, a wrong secret, a revoked and an
//! expired key are the same refusal.

use rand::Rng;
use sha2::{Digest, Sha256};

use modelplane_service::access::Role;
use modelplane_service::credentials::{ID_BYTES, KEY_PREFIX, Presented, Refusal, SECRET_BYTES};

use crate::schema::ApiKeyRecord;

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
    let salt = rng.random::<[u8; SALT_BYTES]>();
    let record = ApiKeyRecord {
        id: id.clone(),
        name: spec.name.to_owned(),
        role: spec.role,
        model_prefix: spec.model_prefix.to_owned(),
        salt: hex::encode(salt),
        secret_sha256: hex::encode(salted(&salt, &secret)),
        created_unix_ms: now_unix_ms,
        created_by: spec.created_by.to_owned(),
        expires_unix_ms: spec.expires_unix_ms,
        revoked_unix_ms: None,
    };
    NewKey { record, key: format!("{KEY_PREFIX}{id}_{secret}") }
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
    use modelplane_service::credentials::parse_bearer;

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
}
