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

/// A whole key this process presents (`mpk_{id}_{secret}`), e.g. a worker's own key for
/// its calls to the registry. Its `Debug` and `Display` never show the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Checks the form of `text` (surrounding whitespace, as a key file ends with a
    /// newline, is dropped).
    pub fn parse(text: &str) -> Result<Self, String> {
        let key = text.trim();
        match parse_bearer(Some(&format!("Bearer {key}"))) {
            Ok(_) => Ok(Self(key.to_owned())),
            Err(_) => Err(format!(
                "not a modelplane API key: expected {KEY_PREFIX}<{} hex digits>_<{} hex digits>",
                2 * ID_BYTES,
                2 * SECRET_BYTES
            )),
        }
    }

    /// Reads a key from a file holding just the key (as `modelplane keys create
    /// --key-file` and `modelplane up` write them).
    pub fn read_file(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| format!("cannot read the API key file {}: {err}", path.display()))?;
        Self::parse(&text).map_err(|err| format!("{}: {err}", path.display()))
    }

    /// The key's public id (safe to log).
    pub fn id(&self) -> &str {
        &self.0[KEY_PREFIX.len()..KEY_PREFIX.len() + 2 * ID_BYTES]
    }

    /// The whole key, to write once into a file the user owns.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The `authorization` header value, marked sensitive so HTTP/2 never puts it in
    /// its compression table.
    pub fn header_value(&self) -> http::HeaderValue {
        let mut value = http::HeaderValue::from_str(&format!("Bearer {}", self.0))
            .unwrap_or_else(|_| http::HeaderValue::from_static(""));
        value.set_sensitive(true);
        value
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKey({KEY_PREFIX}{}_…)", self.id())
    }
}

impl std::fmt::Display for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{KEY_PREFIX}{}_…", self.id())
    }
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

    #[test]
    fn own_keys_parse_and_never_print_their_secret() {
        let secret = "0123456789abcdef".repeat(4);
        let text = format!("{KEY_PREFIX}{}_{secret}\n", "b".repeat(16));
        let key = ApiKey::parse(&text).expect("a key file's newline is dropped");
        assert_eq!(key.id(), "b".repeat(16));
        for shown in [format!("{key:?}"), key.to_string()] {
            assert!(!shown.contains(&secret) && shown.contains(key.id()), "{shown}");
        }
        assert_eq!(key.header_value().to_str().expect("ascii"), format!("Bearer {}", text.trim()));
        assert!(key.header_value().is_sensitive());
        assert!(ApiKey::parse("mpk_short").expect_err("bad").contains("expected mpk_"));
    }
}
