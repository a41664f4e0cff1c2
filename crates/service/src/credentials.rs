//! Credentials as callers send them: `authorization: Bearer mpk_{id}_{secret}`, parsed
//! strictly, and the refusals a call without valid credentials gets (each is
//! UNAUTHENTICATED). The records keys are checked against live in the store
//! (`modelplane_store::api_key`).

/// What every key starts with (so a leaked key is recognisable to secret scanners).
pub const KEY_PREFIX: &str = "mpk_";
/// Random bytes of a key id (public) and of its secret.
pub const ID_BYTES: usize = 8;
pub const SECRET_BYTES: usize = 32;

/// Why a call's credentials were refused. Refusals never say whether a key id exists:
/// an unknown id, a wrong secret, a revoked and an expired key are all [`Refusal::Invalid`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No `authorization` header.
    Missing,
    /// A header that is not `Bearer mpk_{id}_{secret}`.
    Malformed,
    /// An unknown id, a wrong secret, a revoked or an expired key.
    Invalid,
}

impl Refusal {
    /// What the caller is told.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Missing => "no API key; send the header `authorization: Bearer <key>`",
            Refusal::Malformed => "the authorization header is not `Bearer mpk_…`, the form of a modelplane API key",
            Refusal::Invalid => "the API key is not valid (unknown, revoked or expired)",
        }
    }
}

/// A key as presented: the id to look up and the secret to check.
#[derive(Debug, PartialEq, Eq)]
pub struct Presented<'a> {
    pub id: &'a str,
    pub secret: &'a str,
}

/// Splits an `authorization` header value (`None`: the header is absent).
pub fn parse_bearer(header: Option<&str>) -> Result<Presented<'_>, Refusal> {
    let header = header.ok_or(Refusal::Missing)?;
    let (scheme, key) = header.trim().split_once(' ').ok_or(Refusal::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Refusal::Malformed);
    }
    let (id, secret) =
        key.trim().strip_prefix(KEY_PREFIX).and_then(|rest| rest.split_once('_')).ok_or(Refusal::Malformed)?;
    let hex_of = |text: &str, bytes: usize| text.len() == 2 * bytes && text.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex_of(id, ID_BYTES) || !hex_of(secret, SECRET_BYTES) {
        return Err(Refusal::Malformed);
    }
    Ok(Presented { id, secret })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_parsed_strictly() {
        let key = format!("{KEY_PREFIX}{}_{}", "a".repeat(16), "0".repeat(64));
        assert_eq!(parse_bearer(None), Err(Refusal::Missing));
        let cases = ["", "Bearer", "Basic abc", "Bearer mpk_", "Bearer sk_123_456", &key, &format!("Bearer {key}x")];
        for bad in cases {
            assert_eq!(parse_bearer(Some(bad)), Err(Refusal::Malformed), "{bad:?}");
        }
        let spaced = format!("bearer  {key} ");
        let presented = parse_bearer(Some(&spaced)).expect("scheme is case-insensitive");
        assert_eq!(presented, Presented { id: &key[4..20], secret: &key[21..] });
        for refusal in [Refusal::Missing, Refusal::Malformed, Refusal::Invalid] {
            assert!(!refusal.message().contains(&key[4..20]), "messages never echo a key");
        }
    }
}
